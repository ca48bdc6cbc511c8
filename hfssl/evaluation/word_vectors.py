"""Intrinsic evaluation of word vectors: word similarity and analogies.

* ``word-similarity``: Spearman (and Pearson) correlation between cosine similarities and human
  scores on WordSim-353 (Finkelstein et al. 2002) and SimLex-999 (Hill et al. 2015). Pairs with a
  word outside the vocabulary are left out of the correlation and counted (``oov_pairs``,
  ``oov_ratio``), as gensim's ``evaluate_word_pairs`` does by default.
* ``analogy``: the Google analogy set (Mikolov et al. 2013a, 19,544 questions in 14 sections)
  answered with 3CosAdd: ``argmax_d cos(d, b - a + c)`` over the ``restrict_vocab`` most frequent
  words, excluding ``a, b, c``; questions with a word outside those words are skipped and counted.
  Accuracy per section and overall (fractions in [0, 1]).

The three data files ship in gensim's wheel (``gensim.test.utils.datapath``); they are parsed
here. Words are matched case-insensitively, the most frequent spelling winning, like gensim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.data.word2vec_format import load_word2vec_format
from hfssl.registry import WORD_VECTORS, discover_methods, method_for_config

logger = logging.getLogger(__name__)

SIMILARITY_SETS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
ANALOGY_SET = "questions-words.txt"
DEFAULT_RESTRICT_VOCAB = 30000


def data_file(name: str) -> str:
    """Path of one of gensim's evaluation files (``wordsim353.tsv``, ``simlex999.txt``, ``questions-words.txt``)."""
    try:
        from gensim.test.utils import datapath
    except ImportError as error:
        raise ImportError(f"the word-vector benchmarks read {name} from gensim's wheel: pip install gensim") from error
    path = datapath(name)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{name} is missing from gensim's test data ({path}); reinstall gensim")
    return path


def read_word_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """``word1 <tab> word2 <tab> score`` lines; ``#`` comments and blank lines are skipped."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise ValueError(f"{path}:{number}: expected 'word1<TAB>word2<TAB>score', got {line!r}")
        pairs.append((parts[0].strip(), parts[1].strip(), float(parts[2])))
    return pairs


def read_analogies(path: str | Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections of ``a b c d`` questions; a line ``: name`` starts a section."""
    sections: list[tuple[str, list[tuple[str, str, str, str]]]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
            continue
        words = line.split()
        if len(words) != 4:
            logger.debug("skipping %s:%d, not four words: %r", path, number, line)
            continue
        if not sections:
            raise ValueError(f"{path}:{number}: a question before the first ': section' line")
        sections[-1][1].append((words[0], words[1], words[2], words[3]))
    return sections


@dataclass
class WordVectors:
    """Words in descending frequency order and their vectors ``(V, d)`` (float32 numpy)."""

    words: list[str]
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if len(self.words) != len(self.vectors):
            raise ValueError(f"{len(self.words)} words but {len(self.vectors)} vectors")
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = (self.vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        # Case-insensitive lookup: the first (most frequent) spelling wins.
        self.index: dict[str, int] = {}
        for position, word in enumerate(self.words):
            self.index.setdefault(word.lower(), position)

    @classmethod
    def from_model(cls, model: Any) -> WordVectors:
        """The ``word-vectors`` of an hfssl model (``model.get_word_vectors()``: trained words, most frequent first)."""
        words, vectors = model.get_word_vectors()
        return cls(words, vectors.float().numpy())

    @classmethod
    def from_keyed_vectors(cls, keyed_vectors: Any) -> WordVectors:
        """A gensim ``KeyedVectors`` (its order is the frequency order of the trained model)."""
        return cls(list(keyed_vectors.index_to_key), np.asarray(keyed_vectors.vectors, dtype=np.float32))


def evaluate_word_similarity(vectors: WordVectors, path: str | Path, name: str | None = None) -> dict[str, Any]:
    """Spearman/Pearson correlation of cosine similarities with the human scores of ``path``.

    Returns:
        ``{"dataset", "spearman", "pearson", "num_pairs", "oov_pairs", "oov_ratio"}``; ``num_pairs``
        is the number of pairs in the file, ``oov_pairs`` those left out of the correlation. The
        correlations are ``None`` when fewer than two pairs are in the vocabulary (valid JSON, unlike NaN).
    """
    from scipy.stats import pearsonr, spearmanr

    pairs = read_word_pairs(path)
    gold, predicted, oov = [], [], 0
    for word_a, word_b, score in pairs:
        a, b = vectors.index.get(word_a.lower()), vectors.index.get(word_b.lower())
        if a is None or b is None:
            oov += 1
            continue
        gold.append(score)
        predicted.append(float(vectors.unit[a] @ vectors.unit[b]))
    result: dict[str, Any] = {"dataset": name or Path(path).stem, "spearman": None, "pearson": None}
    if len(gold) >= 2:
        result["spearman"] = float(spearmanr(gold, predicted).statistic)
        result["pearson"] = float(pearsonr(gold, predicted).statistic)
    result.update(num_pairs=len(pairs), oov_pairs=oov, oov_ratio=oov / max(1, len(pairs)))
    return result


def evaluate_analogies(
    vectors: WordVectors, path: str | Path, restrict_vocab: int = DEFAULT_RESTRICT_VOCAB, batch_size: int = 1024
) -> dict[str, Any]:
    """3CosAdd accuracy on an analogy file, over the ``restrict_vocab`` most frequent words.

    Returns:
        ``{"accuracy", "correct", "evaluated", "num_questions", "oov_questions", "restrict_vocab",
        "sections": [{"section", "accuracy", "correct", "evaluated", "num_questions"}]}``; an accuracy
        is ``None`` where no question could be evaluated.
    """
    limit = min(restrict_vocab, len(vectors.words))
    allowed = {word: index for word, index in vectors.index.items() if index < limit}
    unit = torch.from_numpy(vectors.unit[:limit])
    sections = []
    total_correct = total_evaluated = total_questions = 0
    for name, questions in read_analogies(path):
        rows = [[allowed.get(word.lower()) for word in question] for question in questions]
        rows = [row for row in rows if None not in row]
        correct = 0
        for start in range(0, len(rows), batch_size):
            ids = torch.tensor(rows[start : start + batch_size], dtype=torch.long)  # (q, 4): a b c d
            query = unit[ids[:, 1]] - unit[ids[:, 0]] + unit[ids[:, 2]]  # (q, d)
            scores = query @ unit.T  # (q, limit); the query's norm does not change the argmax
            scores.scatter_(1, ids[:, :3], -float("inf"))
            correct += int((scores.argmax(1) == ids[:, 3]).sum())
        sections.append({"section": name, "accuracy": correct / len(rows) if rows else None,
                         "correct": correct, "evaluated": len(rows), "num_questions": len(questions)})
        total_correct += correct
        total_evaluated += len(rows)
        total_questions += len(questions)
    return {
        "accuracy": total_correct / total_evaluated if total_evaluated else None,
        "correct": total_correct,
        "evaluated": total_evaluated,
        "num_questions": total_questions,
        "oov_questions": total_questions - total_evaluated,
        "restrict_vocab": restrict_vocab,
        "sections": sections,
    }


def load_word_vectors(path: str | Path) -> WordVectors:
    """Word vectors from an hfssl word2vec run directory or a word2vec text/binary file."""
    path = Path(path)
    if path.is_file():
        words, vectors = load_word2vec_format(path)
        return WordVectors(words, vectors)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is neither a word2vec file nor a model directory with config.json")
    from transformers import AutoModel

    discover_methods()  # registers the hfssl_* model types with the Auto classes
    model = AutoModel.from_pretrained(path)
    if WORD_VECTORS not in method_for_config(model.config).provides:
        raise ValueError(f"{str(path)!r} holds a {model.config.model_type!r} model, which has no word vectors; word "
                         "similarity and analogies need word vectors (a word2vec model or file)")
    return WordVectors.from_model(model)


def word_similarity_rows(vectors: WordVectors) -> list[dict[str, Any]]:
    """``eval_results.json`` rows of the ``word-similarity`` protocol (WordSim-353 and SimLex-999)."""
    return [evaluate_word_similarity(vectors, data_file(file), name) for name, file in SIMILARITY_SETS.items()]


def analogy_rows(vectors: WordVectors, restrict_vocab: int = DEFAULT_RESTRICT_VOCAB) -> list[dict[str, Any]]:
    """``eval_results.json`` rows of the ``analogy`` protocol: the overall row then one per section."""
    result = evaluate_analogies(vectors, data_file(ANALOGY_SET), restrict_vocab)
    overall = {"dataset": "google_analogies", "section": "all", "restrict_vocab": restrict_vocab,
               **{key: result[key] for key in ("accuracy", "correct", "evaluated", "num_questions", "oov_questions")}}
    rows = [overall]
    for section in result["sections"]:
        rows.append({"dataset": "google_analogies", "section": section["section"], "restrict_vocab": restrict_vocab,
                     **{key: section[key] for key in ("accuracy", "correct", "evaluated", "num_questions")}})
    return rows
