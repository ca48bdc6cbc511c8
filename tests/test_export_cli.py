"""``hfssl export`` for every registered method, and an export never replaces files it does not own.

Each method's transferable part is written by its own ``MethodSpec.export``: the exported folder
loads with plain transformers in a process that never imports hfssl. An output that is the run,
lies above it, or is a non-empty folder that is not an earlier export is refused with exit code 2
and every file left as it was.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hfssl.cli import main as hfssl_main
from hfssl.data.config import IMAGE, TEXT
from hfssl.data.text import build_word_tokenizer
from hfssl.recipe import recipe_from_dict
from hfssl.registry import METHODS
from tiny import TINY, tiny_model

EXPORTABLE = sorted(name for name in METHODS if name in TINY)
DERIVED_FROM_DATA = ("image_size", "pixel_mean", "pixel_std")
BPE_VOCAB = 300


def make_run(method: str, run: Path) -> Path:
    """A run directory as training leaves it: the full model, its recipe and its data artifacts."""
    # A byte-level BPE holds at least its 257 base tokens: the tiny GPT-2 gets embeddings for all of them.
    model = (tiny_model(method, vocab_size=BPE_VOCAB) if method == "clm" else tiny_model(method)).eval()
    spec = METHODS[method]
    if spec.modality == IMAGE:
        # No grey views: the colour-prediction methods refuse them (their colours are the targets).
        raw = {"method": method, "data": {"source": "builtin:digits", "image_size": TINY[method].image_size, "channels": 3},
               "views": {"grayscale_prob": 0.0}}
    elif spec.modality == TEXT:
        raw = {"method": method, "data": {"source": "builtin:english_corpus"},
               "optim": {"name": "sgd", "momentum": 0.0, "weight_decay": 0.0}}
    else:
        raw = {"method": method, "data": {"source": "captions", "image_size": 16}}
    model.save_pretrained(run)
    # Values a method takes from the data and views sections (the reconstruction methods' image size and
    # normalisation) are refused in the model section: the saved config already holds them.
    model_section = {key: value for key, value in TINY[method][0].items() if key not in DERIVED_FROM_DATA}
    recipe_from_dict({**raw, "model": model_section}, check_model=False).save(run / "recipe.yaml")
    if method == "word2vec":
        words = [f"word{index}" for index in range(1, model.config.vocab_size)]
        build_word_tokenizer(words, True, r"[\w']+").save_pretrained(run)
    texts = ["the quick brown fox jumps over the lazy dog", "pack my box with five dozen liquor jugs"] * 10
    if method in ("mlm", "simcse"):  # a WordPiece vocabulary that fits the tiny BERT's embeddings
        from hfssl.models.mlm.data import train_wordpiece

        train_wordpiece(iter(texts), vocab_size=TINY[method][0].get("encoder_config", {}).get("vocab_size")
                        or model.config.vocab_size).save_pretrained(run)
    if method == "clm":  # a byte-level BPE of BPE_VOCAB tokens, as many as the model's embeddings
        from hfssl.models.clm.data import train_byte_level_bpe

        tokenizer = train_byte_level_bpe(iter(texts), vocab_size=BPE_VOCAB, min_frequency=1)
        assert len(tokenizer) == BPE_VOCAB
        tokenizer.save_pretrained(run)
    return run


def snapshot(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


LOAD_SCRIPT = """
import json, sys, traceback
from transformers import AutoModel
reports = {}
for method, paths in json.loads(sys.argv[1]).items():
    try:
        reports[method] = {"classes": [type(AutoModel.from_pretrained(path)).__name__ for path in paths]}
    except Exception:
        reports[method] = {"error": traceback.format_exc()[-3000:]}
print(json.dumps({"reports": reports, "hfssl_imported": "hfssl" in sys.modules}))
"""


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, dict]:
    """Every method's run exported by ``hfssl export`` (into RUN/encoder, then twice into another folder: the
    second replaces the first), and every export loaded by one fresh process without hfssl."""
    results, to_load = {}, {}
    for method in EXPORTABLE:
        root = tmp_path_factory.mktemp(method)
        try:
            run = make_run(method, root / "run")
        except Exception as error:  # reported by this method's own test
            results[method] = {"error": f"making the run failed: {error!r}"}
            continue
        codes = [hfssl_main(["export", str(run)]),
                 hfssl_main(["export", str(run), "--output", str(root / "elsewhere")]),
                 hfssl_main(["export", str(run), "--output", str(root / "elsewhere")])]  # an earlier export: replaced
        results[method] = {"codes": codes, "run": run, "elsewhere": root / "elsewhere"}
        if codes == [0, 0, 0]:
            to_load[method] = [str(run / "encoder"), str(root / "elsewhere")]
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, json.dumps(to_load)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for method, report in loaded["reports"].items():
        results[method].update(report, hfssl_imported=loaded["hfssl_imported"])
    return results


@pytest.mark.parametrize("method", EXPORTABLE)
def test_export_writes_a_transferable_part_that_loads_without_hfssl(method: str, exports: dict[str, dict]) -> None:
    report = exports[method]
    assert "error" not in report, report["error"]
    assert report["codes"] == [0, 0, 0]
    if METHODS[method].provides == ("word-vectors",):
        assert (report["run"] / "vectors.txt").is_file() and (report["run"] / "vectors.bin").is_file()  # beside RUN/encoder
        assert (report["elsewhere"] / "vectors.txt").is_file()  # inside a standalone export
    assert report["hfssl_imported"] is False
    assert report["classes"][0] == report["classes"][1] and not report["classes"][0].startswith("Hfssl")


def test_export_refuses_outputs_that_would_replace_files_it_does_not_own(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run("simclr", tmp_path / "project" / "run")
    (tmp_path / "project" / "notes.txt").write_text("the user's own notes")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("\\documentclass{article}")
    before = snapshot(tmp_path)
    for output, reason in ((run, "holds the run"), (run.parent, "holds the run"), (foreign, "not an earlier export"),
                           (foreign / "thesis.tex", "is a file")):
        assert hfssl_main(["export", str(run), "--output", str(output)]) == 2
        assert reason in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    assert hfssl_main(["export", str(tmp_path / "project")]) == 2  # not a run directory
    assert "is not an hfssl run directory" in capsys.readouterr().err
