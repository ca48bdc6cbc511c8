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
import textwrap
from pathlib import Path

import pytest

from hfssl.cli import main as hfssl_main
from hfssl.data.config import IMAGE, TEXT
from hfssl.data.text import build_word_tokenizer
from hfssl.recipe import recipe_from_dict
from hfssl.registry import METHODS
from tiny import TINY, tiny_model

EXPORTABLE = sorted(name for name in METHODS if name in TINY)


def make_run(method: str, run: Path) -> Path:
    """A run directory as training leaves it: the full model, its recipe and its data artifacts."""
    model = tiny_model(method).eval()
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
    recipe_from_dict({**raw, "model": TINY[method][0]}, check_model=False).save(run / "recipe.yaml")
    if method == "word2vec":
        words = [f"word{index}" for index in range(1, model.config.vocab_size)]
        build_word_tokenizer(words, True, r"[\w']+").save_pretrained(run)
    if method == "mlm":  # a WordPiece vocabulary that fits the tiny BERT's embeddings
        from hfssl.models.mlm.data import train_wordpiece

        texts = ["the quick brown fox jumps over the lazy dog", "pack my box with five dozen liquor jugs"] * 10
        train_wordpiece(iter(texts), vocab_size=model.config.vocab_size).save_pretrained(run)
    return run


def snapshot(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("method", EXPORTABLE)
def test_export_writes_a_transferable_part_that_loads_without_hfssl(method: str, tmp_path: Path) -> None:
    run = make_run(method, tmp_path / "run")
    assert hfssl_main(["export", str(run)]) == 0
    assert hfssl_main(["export", str(run), "--output", str(tmp_path / "elsewhere")]) == 0
    assert hfssl_main(["export", str(run), "--output", str(tmp_path / "elsewhere")]) == 0  # an earlier export: replaced
    if METHODS[method].provides == ("word-vectors",):
        assert (run / "vectors.txt").is_file() and (run / "vectors.bin").is_file()  # beside the run's encoder/
        assert (tmp_path / "elsewhere" / "vectors.txt").is_file()  # inside a standalone export
    script = textwrap.dedent(f"""
        import json, sys
        from transformers import AutoConfig, AutoModel
        loaded = []
        for path in ({str(run / 'encoder')!r}, {str(tmp_path / 'elsewhere')!r}):
            model = AutoModel.from_pretrained(path)
            loaded.append(type(model).__name__)
        print(json.dumps({{"classes": loaded, "hfssl_imported": "hfssl" in sys.modules}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
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
