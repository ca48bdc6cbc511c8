"""A catalogue of bad inputs: each one gets one clear message, a documented exit code, no traceback,
and leaves every file that was there before exactly as it was.

Every case hashes every file under its test folder before and after the command. Most cases call
``hfssl.cli.main`` in-process; a few go through a real ``python -m hfssl.cli`` subprocess, where a
traceback would show up on the real standard error. Exit codes: 2 usage, recipe, data, path or
run-directory error; 3 non-finite training; 4 a file could not be written; 130 Ctrl-C
(:mod:`hfssl.errors`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from accelerate import Accelerator

from hfssl.cli import main as hfssl_main
from signal_defaults import default_signal_handlers, restore_default_signals
from hfssl.errors import EXIT_INTERRUPTED, EXIT_NONFINITE, EXIT_STORAGE, EXIT_USAGE

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "recipes" / "simclr" / "digits.yaml")
CLIP_RECIPE = str(REPO / "recipes" / "clip" / "emoji.yaml")
MOCO_RECIPE = str(REPO / "recipes" / "moco" / "digits.yaml")
DINO_RECIPE = str(REPO / "recipes" / "dino" / "digits.yaml")
MLM_RECIPE = str(REPO / "recipes" / "mlm" / "lee.yaml")
WORD2VEC_RECIPE = str(REPO / "recipes" / "word2vec" / "lee.yaml")
TINY = ["model.backbone_config={model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, "
        "hidden_sizes: [8, 16], depths: [1, 1]}", "model.projection_hidden_dim=32", "model.projection_dim=16",
        "train.batch_size=32", "eval.protocols=[]", "train.trackers=[]", "train.progress_bar=false",
        "train.knn_every=null", "train.log_every=1"]
FAST = [*TINY, "train.max_steps=2", "train.checkpoint_every=1"]
#: A ResNet of two tiny stages for the MoCo and DINO recipes (the digits recipes' own is larger).
TINY_BACKBONE = TINY[0]
QUIET = ["train.trackers=[]", "train.progress_bar=false", "train.max_steps=2"]
#: Diverges at once: plain SGD with an absurd constant learning rate.
DIVERGE = ["optim.name=sgd", "optim.lr=1e30", "optim.warmup_ratio=0", "optim.schedule=constant"]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``hfssl.cli.main(argv)`` in-process: (exit code, standard output + error)."""
    try:
        code = hfssl_main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run with checkpoints at steps 1 and 2 (trained once for the module)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert hfssl_main(["--log-level", "WARNING", "train", RECIPE, "--output-dir", str(run), *FAST]) == 0
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]
    return run


@dataclass
class Case:
    """One bad input: ``argv`` (with ``{tmp}`` and ``{run}`` filled in), the exit code and the fragments
    of the message (the named input and the fix); ``prepare`` arranges the test folder first."""

    argv: list[str]
    code: int
    fragments: list[str]
    prepare: Callable[[Path, Path], None] | None = None
    needs_run: bool = False
    extra: list[str] = field(default_factory=list)


def _write(relative: str, text: str) -> Callable[[Path, Path], None]:
    def prepare(tmp: Path, run: Path) -> None:
        path = tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return prepare


def _damage_all(how: str) -> Callable[[Path, Path], None]:
    """Damage every checkpoint of the copied run the same way."""
    def prepare(tmp: Path, run: Path) -> None:
        for checkpoint in sorted((run / "checkpoints").iterdir()):
            if how == "truncate":
                weights = checkpoint / "model.safetensors"
                weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
            elif how == "no-optimizer":
                (checkpoint / "optimizer.bin").unlink()
            elif how == "bad-json":
                (checkpoint / "trainer_state.json").write_text('{"state": {"global_step": ')
            elif how == "no-recipe":
                (checkpoint / "recipe.yaml").unlink()
            elif how == "empty-rng":
                (checkpoint / "random_states_0.pkl").write_bytes(b"")
            elif how == "malicious-optimizer":  # a torch.save archive whose pickle would run a command
                import torch

                torch.save({"state": _RunsACommand(tmp / "pwned")}, checkpoint / "optimizer.bin")
            elif how == "plain-pickle-rng":  # a plain pickle (Accelerate's load_state skipped it with a log line)
                import pickle

                (checkpoint / "random_states_0.pkl").write_bytes(pickle.dumps({"state": _RunsACommand(tmp / "pwned")}))
    return prepare


class _RunsACommand:
    """Unpickles into ``os.system("touch PATH")``: the file appearing would mean the pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


def _nan_results(tmp: Path, run: Path) -> None:
    """A finished run's eval_results.json with a NaN accuracy (what a diverged model once got written)."""
    rows = [{"protocol": "knn", "features": "model", "k": 20, "temperature": 0.07, "top1": float("nan"), "top5": 1.0}]
    (run / "eval_results.json").write_text(json.dumps({"dataset": "builtin:digits", "results": rows, "baselines": []}))


def _nan_weights(relative: str) -> Callable[[Path, Path], None]:
    """One NaN in the first floating-point tensor of ``run/relative`` (a safetensors file)."""
    def prepare(tmp: Path, run: Path) -> None:
        import numpy as np
        from safetensors.numpy import load_file, save_file

        tensors = load_file(run / relative)
        name = next(key for key in sorted(tensors) if tensors[key].dtype.kind == "f")
        tensors[name] = tensors[name].copy()
        tensors[name].flat[0] = np.nan
        save_file(tensors, run / relative, metadata={"format": "pt"})
    return prepare


def _truncate(relative: str) -> Callable[[Path, Path], None]:
    def prepare(tmp: Path, run: Path) -> None:
        path = run / relative
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return prepare


def _train(*overrides: str, output: str = "{tmp}/new", flags: tuple[str, ...] = ()) -> list[str]:
    return ["train", RECIPE, "--output-dir", output, *flags, *TINY, *overrides]


CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- recipes
    "recipe-missing": Case(["train", "{tmp}/nope.yaml"], EXIT_USAGE, ["nope.yaml", "does not exist"]),
    "recipe-not-yaml": Case(["train", "{tmp}/bad.yaml"], EXIT_USAGE, ["bad.yaml", "is not valid YAML"],
                            _write("bad.yaml", "method: [simclr\n")),
    "recipe-a-list": Case(["train", "{tmp}/list.yaml"], EXIT_USAGE, ["YAML mapping"], _write("list.yaml", "- a\n- b\n")),
    "recipe-no-method": Case(["train", "{tmp}/empty.yaml"], EXIT_USAGE, ["needs a 'method'"],
                             _write("empty.yaml", "train: {max_steps: 2}\n")),
    "unknown-method": Case(_train("method=simclrr"), EXIT_USAGE, ["unknown method 'simclrr'", "simclr"]),
    "unknown-section": Case(_train("trian.max_steps=2"), EXIT_USAGE, ["'trian'", "train"]),
    "misspelt-key": Case(_train("train.max_stepz=3"), EXIT_USAGE, ["train.max_stepz", "max_steps"]),
    "lr-not-a-number": Case(_train("optim.lr=fast"), EXIT_USAGE, ["optim.lr", "number", "fast"]),
    "lr-negative": Case(_train("optim.lr=-3e-4"), EXIT_USAGE, ["optim.lr", "> 0"]),
    "max-steps-zero": Case(_train("train.max_steps=0"), EXIT_USAGE, ["train.max_steps", ">= 1"]),
    "max-steps-negative": Case(_train("train.max_steps=-5"), EXIT_USAGE, ["train.max_steps", "-5"]),
    "log-every-zero": Case(_train("train.log_every=0"), EXIT_USAGE, ["train.log_every", ">= 1"]),
    "accumulation-zero": Case(_train("train.gradient_accumulation_steps=0"), EXIT_USAGE,
                              ["train.gradient_accumulation_steps"]),
    "batch-size-fraction": Case(_train("train.batch_size=2.5"), EXIT_USAGE, ["train.batch_size", "integer"]),
    "boolean-not-boolean": Case(_train("train.progress_bar=nope"), EXIT_USAGE, ["train.progress_bar", "nope"]),
    "on-nonfinite-unknown": Case(_train("train.on_nonfinite=ignore"), EXIT_USAGE, ["train.on_nonfinite", "stop or skip"]),
    "nonfinite-skips-negative": Case(_train("train.max_nonfinite_skips=-1"), EXIT_USAGE, ["train.max_nonfinite_skips"]),
    "optimizer-unknown": Case(_train("optim.name=adam"), EXIT_USAGE, ["optim.name", "adamw"]),
    "model-key-misspelt": Case(_train("model.temprature=0.1"), EXIT_USAGE, ["model.temprature", "temperature"]),
    "protocol-misspelt": Case(_train("eval.protocols=[knnn]"), EXIT_USAGE, ["'knnn'", "Did you mean 'knn'"]),
    "protocol-setting-misspelt": Case(_train("eval.knn.temprature=0.1"), EXIT_USAGE, ["eval.knn.temprature"]),
    "protocol-not-served": Case(_train("eval.protocols=[analogy]"), EXIT_USAGE, ["'analogy'", "word-vectors"]),
    "crop-scale-reversed": Case(_train("views.crop_scale=[0.9,0.1]"), EXIT_USAGE, ["views.crop_scale"]),
    "zero-shot-template-two-slots": Case(["train", CLIP_RECIPE, "--output-dir", "{tmp}/new",
                                          "eval.zero-shot.templates=['a {} of {}']"], EXIT_USAGE,
                                         ["eval.zero-shot.templates", "exactly once", "'a {} of {}'"]),
    "zero-shot-template-named-slot": Case(["train", CLIP_RECIPE, "--output-dir", "{tmp}/new",
                                           "eval.zero-shot.templates=['a photo of {name}']"], EXIT_USAGE,
                                          ["eval.zero-shot.templates", "'a photo of {name}'"]),
    "model-number-in-scientific-notation": Case(_train("model.temperature=2e+1"), EXIT_USAGE,
                                                ["temperature", "got 20.0"]),  # read as 20.0, then range-checked
    "model-int-given-a-list": Case(["train", MOCO_RECIPE, "--output-dir", "{tmp}/new", "model.queue_size=[1024]"],
                                   EXIT_USAGE, ["model.queue_size must be an integer, got [1024]"]),
    "model-int-given-a-fraction": Case(["train", MOCO_RECIPE, "--output-dir", "{tmp}/new", "model.queue_size=2.5"],
                                       EXIT_USAGE, ["model.queue_size must be an integer, got 2.5"]),
    "model-int-given-a-boolean": Case(["train", MOCO_RECIPE, "--output-dir", "{tmp}/new", "model.queue_size=true"],
                                      EXIT_USAGE, ["model.queue_size must be an integer, got True"]),
    "recipe-a-string-with-override": Case(["train", "{tmp}/string.yaml", "train.max_steps=2"], EXIT_USAGE,
                                          ["string.yaml", "must be a YAML mapping", "'hello'"],
                                          _write("string.yaml", '"hello"\n')),
    "override-invalid-yaml": Case(_train("train.max_steps=[1"), EXIT_USAGE, ["train.max_steps=[1", "YAML"]),
    # ---------------------------------------------------------------- data
    "data-path-missing": Case(_train("data.source={tmp}/no-such-images"), EXIT_USAGE, ["no-such-images", "data.source"]),
    "data-builtin-unknown": Case(_train("data.source=builtin:nosuch"), EXIT_USAGE, ["builtin:nosuch"]),
    "data-column-unknown": Case(_train("data.image_column=picture"), EXIT_USAGE, ["data.image_column='picture'"]),
    "data-split-unknown": Case(_train("data.train_split=training"), EXIT_USAGE, ["'training'", "data.train_split"]),
    "data-batch-too-large": Case(_train("train.batch_size=100000"), EXIT_USAGE, ["train.batch_size=100000"]),
    "data-image-size-zero": Case(_train("data.image_size=0"), EXIT_USAGE, ["data.image_size"]),
    # ---------------------------------------------------------------- refused before training (issue 27 item 6)
    "moco-queue-larger-than-the-data": Case(["train", MOCO_RECIPE, "--output-dir", "{tmp}/new", TINY_BACKBONE, *QUIET,
                                             "model.queue_size=4096"], EXIT_USAGE,
                                            ["model.queue_size=4096", "1437 training examples", "below 1437"]),
    "local-crops-larger-than-global": Case(["train", DINO_RECIPE, "--output-dir", "{tmp}/new",
                                            "views.local_crop_size=24"], EXIT_USAGE,
                                           ["views.local_crop_size=24", "data.image_size=16"]),
    "last-layer-frozen-for-the-whole-run": Case(["train", DINO_RECIPE, "--output-dir", "{tmp}/new", TINY_BACKBONE,
                                                 *QUIET, "train.batch_size=32"], EXIT_USAGE,
                                                ["model.freeze_last_layer_epochs", "the whole run of 2 steps"]),
    "nsp-on-one-sentence-documents": Case(["train", MLM_RECIPE, "--output-dir", "{tmp}/new", *QUIET,
                                           "data.source={tmp}/sentences.csv", "model.next_sentence_prediction=true"],
                                          EXIT_USAGE, ["model.next_sentence_prediction=true", "two or more sentences",
                                                       "sentences.csv"],
                                          _write("sentences.csv", "text\n" + "".join(
                                              f"the cat number {index} sat on the mat\n" for index in range(120)))),
    "mlm-one-line-corpus": Case(["train", MLM_RECIPE, "--output-dir", "{tmp}/new", *QUIET, "train.batch_size=1",
                                 "data.source={tmp}/line.csv"], EXIT_USAGE,
                                ["line.csv", "1 document(s)", "mlm-accuracy", "data.eval_split"],
                                _write("line.csv", "text\nthe cat sat on the mat. The dog ran.\n")),
    "word2vec-vocabulary-below-the-negatives": Case(["train", WORD2VEC_RECIPE, "--output-dir", "{tmp}/new", *QUIET,
                                                     "train.batch_size=1", "data.source={tmp}/words.csv",
                                                     "model.negative=10"], EXIT_USAGE,
                                                    ["5 word(s)", "model.negative=10", "words.csv"],
                                                    _write("words.csv", "text\n" + "the cat sat on mat " * 50 + "\n")),
    "online-linear-on-a-text-method": Case(["train", MLM_RECIPE, "--output-dir", "{tmp}/new", *QUIET,
                                            "train.online_linear=true"], EXIT_USAGE,
                                           ["train.online_linear", "the mlm model (text data) does not serve "
                                            "image-features", "remove train.online_linear"]),
    "online-linear-on-data-without-a-held-out-split": Case(["train", RECIPE, "--output-dir", "{tmp}/new", *FAST,
                                                            "data.eval_split=null", "train.online_linear=true"],
                                                           EXIT_USAGE, ["train.online_linear needs labelled data",
                                                                        "builtin:digits", "data.eval_split"]),
    "early-stop-on-a-metric-the-run-does-not-log": Case(
        ["train", RECIPE, "--output-dir", "{tmp}/new", *FAST, "train.early_stop={metric: knn/top1_k20, min: 0.5, step: 2}"],
        EXIT_USAGE, ["train.early_stop.metric='knn/top1_k20' is not logged by this run", "train.knn_every"]),
    # ---------------------------------------------------------------- command-line paths
    "output-dir-is-a-file": Case(_train(output="{tmp}/notes.txt"), EXIT_USAGE, ["notes.txt", "is a file"],
                                 _write("notes.txt", "mine")),
    "resume-from-missing": Case(_train(flags=("--resume-from", "{tmp}/no-checkpoint")), EXIT_USAGE,
                                ["no-checkpoint", "not a complete hfssl checkpoint"]),
    "unknown-flag": Case(_train(flags=("--resum",)), EXIT_USAGE, ["--resum"]),
    "resume-and-overwrite": Case(_train(flags=("--resume", "--overwrite")), EXIT_USAGE, ["--overwrite", "--resume"]),
    "export-not-a-run": Case(["export", "{tmp}/nothing"], EXIT_USAGE, ["nothing", "not an hfssl run directory"]),
    "export-onto-the-run": Case(["export", "{run}", "--output", "{run}"], EXIT_USAGE, ["holds the run"], needs_run=True),
    "eval-missing-path": Case(["eval", "{tmp}/nothing"], EXIT_USAGE, ["nothing", "--dataset"]),
    "eval-output-is-a-folder": Case(["eval", "{run}", "--protocol", "knn", "--max-train-samples", "64",
                                     "--max-test-samples", "32", "--no-baselines", "--output", "{tmp}/folder"],
                                    EXIT_USAGE, ["{tmp}/folder", "is a folder", "eval_results.json"],
                                    lambda tmp, run: (tmp / "folder").mkdir(), needs_run=True),  # no temporary left
    "card-missing-path": Case(["card", "{tmp}/nothing"], EXIT_USAGE, ["nothing", "config.json"]),
    # ---------------------------------------------------------------- run directories
    "train-into-a-finished-run": Case(_train(output="{run}"), EXIT_USAGE,
                                      ["already holds another run", "--resume", "--overwrite", "new --output-dir"],
                                      needs_run=True),
    "train-into-user-files": Case(_train(output="{tmp}/mine"), EXIT_USAGE, ["mine", "already holds files", "--overwrite"],
                                  lambda tmp, run: (_write("mine/README.md", "# my notes")(tmp, run),
                                                    _write("mine/config.json", "{}")(tmp, run))),
    "resume-empty-folder": Case(_train(output="{tmp}/empty", flags=("--resume",)), EXIT_USAGE,
                                ["empty", "nothing to continue", "--resume-or-start"],
                                lambda tmp, run: (tmp / "empty").mkdir()),
    "resume-missing-folder": Case(_train(output="{tmp}/typo", flags=("--resume",)), EXIT_USAGE,
                                  ["typo", "does not exist"]),
    "resume-changed-model": Case(_train("train.max_steps=4", "model.temperature=0.5", output="{run}", flags=("--resume",)),
                                 EXIT_USAGE, ["model.temperature: 0.2 -> 0.5"], needs_run=True),
    "resume-changed-data": Case(_train("train.max_steps=4", "data.image_size=24", output="{run}", flags=("--resume",)),
                                EXIT_USAGE, ["data.image_size: 16 -> 24"], needs_run=True),
    "resume-changed-seed": Case(_train("train.max_steps=4", "train.seed=7", output="{run}", flags=("--resume",)),
                                EXIT_USAGE, ["train.seed: 0 -> 7"], needs_run=True),
    "resume-changed-optimizer": Case(_train("train.max_steps=4", "optim.name=sgd", output="{run}", flags=("--resume",)),
                                     EXIT_USAGE, ["optim.name: 'adamw' -> 'sgd'"], needs_run=True),
    "resume-shorter-than-reached": Case(_train("train.max_steps=1", output="{run}", flags=("--resume",)),
                                        EXIT_USAGE, ["train.max_steps=1", "step 2"], needs_run=True),
    # ---------------------------------------------------------------- damaged checkpoints
    "damaged-truncated-weights": Case(_train("train.max_steps=4", output="{run}", flags=("--resume",)), EXIT_USAGE,
                                      ["no intact checkpoint", "model.safetensors is truncated"],
                                      _damage_all("truncate"), needs_run=True),
    "damaged-no-optimizer": Case(_train("train.max_steps=4", output="{run}", flags=("--resume",)), EXIT_USAGE,
                                 ["no intact checkpoint", "optimizer.bin"], _damage_all("no-optimizer"), needs_run=True),
    "damaged-trainer-state": Case(_train("train.max_steps=4", output="{run}", flags=("--resume",)), EXIT_USAGE,
                                  ["no intact checkpoint", "trainer_state.json does not parse"], _damage_all("bad-json"),
                                  needs_run=True),
    "damaged-no-recipe": Case(_train("train.max_steps=4", output="{run}", flags=("--resume",)), EXIT_USAGE,
                              ["no intact checkpoint", "recipe.yaml is missing"], _damage_all("no-recipe"), needs_run=True),
    "damaged-empty-rng": Case(_train("train.max_steps=4", output="{run}", flags=("--resume",)), EXIT_USAGE,
                              ["no intact checkpoint", "random_states_0.pkl is empty"], _damage_all("empty-rng"),
                              needs_run=True),
    "damaged-resume-from": Case(_train("train.max_steps=4", output="{run}",
                                       flags=("--resume-from", "{run}/checkpoints/step-00000002")), EXIT_USAGE,
                                ["step-00000002", "damaged", "model.safetensors is truncated"],
                                _damage_all("truncate"), needs_run=True),
    "malicious-pickle-optimizer": Case(_train("train.max_steps=4", output="{run}", flags=("--resume",)), EXIT_USAGE,
                                       ["no intact checkpoint", "optimizer.bin cannot be loaded safely",
                                        "GLOBAL posix.system"], _damage_all("malicious-optimizer"), needs_run=True),
    "plain-pickle-rng-states": Case(_train("train.max_steps=4", output="{run}", flags=("--resume",)), EXIT_USAGE,
                                    ["no intact checkpoint", "random_states_0.pkl is not a torch.save archive"],
                                    _damage_all("plain-pickle-rng"), needs_run=True),
    # ---------------------------------------------------------------- nothing non-finite is described or published
    "card-nan-results": Case(["card", "{run}"], EXIT_NONFINITE, ["eval_results.json", "top1=nan", "hfssl eval"],
                             _nan_results, needs_run=True),
    "push-nan-results": Case(["push", "{run}", "--repo-id", "me/x"], EXIT_NONFINITE,
                             ["eval_results.json", "top1=nan", "not published"], _nan_results, needs_run=True),
    "card-nan-weights": Case(["card", "{run}"], EXIT_NONFINITE, ["model.safetensors holds non-finite weights", "optim.lr"],
                             _nan_weights("model.safetensors"), needs_run=True),
    "push-nan-encoder": Case(["push", "{run}", "--repo-id", "me/x"], EXIT_NONFINITE,
                             ["encoder/model.safetensors holds non-finite weights", "not published"],
                             _nan_weights("encoder/model.safetensors"), needs_run=True),
    "push-truncated-encoder": Case(["push", "{run}", "--repo-id", "me/x"], EXIT_USAGE,
                                   ["encoder/model.safetensors is damaged", "hfssl export {run}"],
                                   _truncate("encoder/model.safetensors"), needs_run=True),
    "card-truncated-model": Case(["card", "{run}"], EXIT_USAGE, ["model.safetensors is damaged", "nothing was described"],
                                 _truncate("model.safetensors"), needs_run=True),
}


def _fill(argv: list[str], tmp: Path, run: Path) -> list[str]:
    return [item.replace("{tmp}", str(tmp)).replace("{run}", str(run)) for item in argv]


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_gets_one_message_a_code_and_changes_nothing(name: str, tmp_path: Path, finished_run: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    run = tmp_path / "run"
    if case.needs_run:
        shutil.copytree(finished_run, run)
    if case.prepare is not None:
        case.prepare(tmp_path, run)
    before = snapshot(tmp_path)
    code, output = call(["--log-level", "WARNING", *_fill(case.argv, tmp_path, run)], capsys)
    assert code == case.code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for fragment in case.fragments:
        assert _fill([fragment], tmp_path, run)[0] in output, (fragment, output[-3000:])
    assert snapshot(tmp_path) == before, "a refused command changed or added files"


def test_enough_cases() -> None:
    assert len(CASES) >= 40


# ---------------------------------------------------------------- training that goes wrong


def test_a_non_finite_loss_stops_before_anything_is_written_from_it(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.txt").write_text("the user's own file beside the run")
    before = snapshot(tmp_path)
    run = tmp_path / "diverged"
    code, output = call(["--log-level", "WARNING", "train", RECIPE, "--output-dir", str(run), *TINY,
                         "train.max_steps=6", *DIVERGE], capsys)
    assert code == EXIT_NONFINITE, output[-3000:]
    assert "Traceback" not in output
    assert "loss is nan at step 2" in output and "optim.lr" in output and "optim.max_grad_norm" in output
    for name in ("model.safetensors", "config.json", "encoder", "eval_results.json", "README.md", "checkpoints"):
        assert not (run / name).exists(), name
    assert {key: value for key, value in snapshot(tmp_path).items() if key in before} == before


def test_a_diverged_model_with_finite_weights_is_neither_scored_exported_nor_described(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27: one step at lr 1e30 leaves finite weights (~1e30) whose features are NaN; kNN over NaN
    similarities still "scored" 0.9 and the card said so. The features are checked before anything is written."""
    run = tmp_path / "diverged"
    evaluation = ["eval.protocols=[knn]", "eval.baselines=false", "eval.max_train_samples=64", "eval.max_test_samples=32"]
    code, output = call(["--log-level", "WARNING", "train", RECIPE, "--output-dir", str(run), *TINY, *evaluation,
                         "train.max_steps=1", "optim.lr=1.0e+30", "optim.warmup_ratio=0.0"], capsys)
    assert code == EXIT_NONFINITE, output[-3000:]
    assert "Traceback" not in output and "the simclr model gives non-finite features" in output and "optim.lr" in output
    for name in ("eval_results.json", "encoder", "README.md", "images"):
        assert not (run / name).exists(), name
    before = snapshot(tmp_path)
    code, output = call(["--log-level", "WARNING", "eval", str(run), "--protocol", "knn", "--max-train-samples", "64",
                         "--max-test-samples", "32", "--no-baselines"], capsys)
    assert code == EXIT_NONFINITE and "Traceback" not in output, output[-3000:]
    assert f"'{run}' gives non-finite features" in output and "nothing was scored" in output
    assert snapshot(tmp_path) == before


def test_skipped_non_finite_steps_are_bounded_and_the_last_good_checkpoint_stays_newest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "skipping"
    code, output = call(["--log-level", "WARNING", "train", RECIPE, "--output-dir", str(run), *TINY, "train.max_steps=8",
                         "train.checkpoint_every=1", "train.on_nonfinite=skip", "train.max_nonfinite_skips=2",
                         *DIVERGE], capsys)
    assert code == EXIT_NONFINITE, output[-3000:]
    assert "Traceback" not in output and "3 steps in a row" in output and "train.max_nonfinite_skips=2" in output
    assert "step 2: non-finite loss, step skipped (1 in a row, at most 2)" in caplog.text
    checkpoints = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert checkpoints[-1] == "step-00000003" and "step-00000004" not in checkpoints  # skipped steps keep finite weights
    assert str(run / "checkpoints" / "step-00000003") in output
    assert not (run / "model.safetensors").exists() and not (run / "README.md").exists()


def test_a_full_disk_during_a_checkpoint_is_reported_and_keeps_the_previous_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    saves = []
    original = Accelerator.save_state

    def save_state(self: Accelerator, output_dir: str, **kwargs: object) -> str:
        saves.append(output_dir)
        if len(saves) == 2:  # the second checkpoint: half written, then the disk is full
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(output_dir) / "optimizer.bin"))
        return original(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    run = tmp_path / "full-disk"
    code, output = call(["--log-level", "WARNING", "train", RECIPE, "--output-dir", str(run), *TINY,
                         "train.max_steps=3", "train.checkpoint_every=1"], capsys)
    assert code == EXIT_STORAGE, output[-3000:]
    assert "Traceback" not in output and "disk is full" in output and "MiB needed" in output
    assert str(run / "checkpoints" / ".tmp-step-00000002") in output
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step-00000001"]
    assert not (run / "model.safetensors").exists()


def test_resume_falls_back_from_a_damaged_newest_checkpoint_and_says_so(
        tmp_path: Path, finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "checkpoints" / "step-00000002" / "optimizer.bin").unlink()
    code, output = call(["train", RECIPE, "--output-dir", str(run), "--resume", *TINY, "train.max_steps=3",
                         "train.checkpoint_every=1", "optim.lr=5e-4"], capsys)
    assert code == 0, output[-3000:]
    assert "skipped damaged  " + str(run / "checkpoints" / "step-00000002") + " (optimizer.bin is missing (the optimizer state))" in output
    assert f"resumed from       {run / 'checkpoints' / 'step-00000001'} (step 1)" in output
    assert "recipe change    optim.lr: 0.002 -> 0.0005" in output and "train.max_steps: 2 -> 3" in output
    state = json.loads((run / "checkpoints" / "step-00000003" / "trainer_state.json").read_text())
    original = json.loads((finished_run / "checkpoints" / "step-00000001" / "trainer_state.json").read_text())
    assert state["run_id"] == original["run_id"] and state["state"]["global_step"] == 3


def test_overwrite_replaces_hfssl_outputs_and_keeps_the_users_files(
        tmp_path: Path, finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "notes.txt").write_text("mine")
    old_id = json.loads((run / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())["run_id"]
    code, output = call(["--log-level", "WARNING", "train", RECIPE, "--output-dir", str(run), "--overwrite", *TINY,
                         "train.max_steps=1"], capsys)
    assert code == 0, output[-3000:]
    assert (run / "notes.txt").read_text() == "mine"
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step-00000001"]
    new_id = json.loads((run / "checkpoints" / "step-00000001" / "trainer_state.json").read_text())["run_id"]
    assert new_id != old_id


def test_resume_or_start_starts_in_a_new_folder_and_continues_an_existing_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "job"
    argv = ["--log-level", "WARNING", "train", RECIPE, "--output-dir", str(run), "--resume-or-start", *TINY,
            "train.checkpoint_every=1"]
    code, output = call([*argv, "train.max_steps=1"], capsys)
    assert code == 0 and "resumed from" not in output, output[-3000:]
    code, output = call([*argv, "train.max_steps=2"], capsys)
    assert code == 0 and "(step 1)" in output, output[-3000:]


# ---------------------------------------------------------------- real processes


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfssl.cli", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("args", "code", "fragments"), [
    (["train", RECIPE, "--output-dir", "{tmp}/new", "optim.lr=-1"], EXIT_USAGE, ["optim.lr"]),
    (["train", RECIPE, "--output-dir", "{run}", *TINY], EXIT_USAGE, ["already holds another run", "--overwrite"]),
    (["export", "{run}", "--output", "{tmp}"], EXIT_USAGE, ["holds the run"]),
    (["--debug", "train", RECIPE, "--output-dir", "{tmp}/new", "optim.lr=-1"], 1, ["Traceback", "RecipeError"]),
    # Issue 27: model-section numbers in scientific notation are numbers (the later key's error shows the
    # earlier one parsed), a list for an integer and a two-slot zero-shot template are one message each.
    (["train", MOCO_RECIPE, "--output-dir", "{tmp}/new", "model.temperature=2e-1", "model.queue_size=[1024]"],
     EXIT_USAGE, ["model.queue_size must be an integer, got [1024]"]),
    (["train", WORD2VEC_RECIPE, "--output-dir", "{tmp}/new", "model.sample=1e-3", "model.max_vocab_size=many"],
     EXIT_USAGE, ["model.max_vocab_size must be an integer, got 'many'"]),
    (["train", CLIP_RECIPE, "--output-dir", "{tmp}/new", "eval.zero-shot.templates=['a {} of {}']"], EXIT_USAGE,
     ["eval.zero-shot.templates", "exactly once"]),
])
def test_bad_inputs_through_a_real_process(args: list[str], code: int, fragments: list[str], tmp_path: Path,
                                           finished_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = snapshot(tmp_path)
    result = _cli(*_fill(args, tmp_path, run))
    assert result.returncode == code, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-3000:])
    if "--debug" not in args:
        assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1
    assert snapshot(tmp_path) == before


def test_a_hugging_face_cache_that_cannot_be_written_is_refused_before_training(tmp_path: Path) -> None:
    """Issue 27: with HF_HOME read-only, a run trained and then failed in its evaluation (evaluate.load
    copies the metric module into HF_HOME/modules). A path under a file stands in for a read-only
    folder (the tests may run as root, for whom permission bits do not stop a write)."""
    (tmp_path / "a-file").write_text("not a folder")
    before = snapshot(tmp_path)
    unwritable = tmp_path / "a-file" / "hf"
    env = {**_env(), "HF_HOME": str(unwritable), "HF_MODULES_CACHE": str(unwritable / "modules")}
    result = subprocess.run([sys.executable, "-m", "hfssl.cli", "train", RECIPE, "--output-dir", str(tmp_path / "new"),
                             *TINY, "eval.protocols=[knn]", "train.max_steps=2"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == EXIT_USAGE, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1
    assert f"{unwritable / 'modules'}' cannot be written" in result.stderr and "knn" in result.stderr
    assert "HF_HOME" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_datasets_cache_that_cannot_be_written_is_refused_before_loading_a_file_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "words.csv").write_text("text\n" + "the cat sat on the mat and the dog ran away\n" * 20)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "a-file" / "datasets"))
    before = snapshot(tmp_path)
    code, output = call(["--log-level", "WARNING", "train", WORD2VEC_RECIPE, "--output-dir", str(tmp_path / "new"),
                         *QUIET, f"data.source={tmp_path / 'words.csv'}"], capsys)
    assert code == EXIT_USAGE and "Traceback" not in output, output[-3000:]
    assert "a-file/datasets' cannot be written" in output and "words.csv" in output and "HF_DATASETS_CACHE" in output
    assert snapshot(tmp_path) == before


def test_ctrl_c_saves_a_checkpoint_at_the_step_boundary_and_exits_130(tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "hfssl.cli", "train", RECIPE, "--output-dir", str(run), *TINY,
                                "train.max_steps=2000", "train.checkpoint_every=1000"],
                               cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=restore_default_signals)  # also when the suite runs in the background
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "recipe.yaml").is_file():  # written once training starts
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    assert "Traceback" not in stderr and "interrupted (Ctrl-C) at step" in stderr and "--resume" in stderr
    checkpoints = sorted((run / "checkpoints").glob("step-*"))
    assert len(checkpoints) == 1 and not list((run / "checkpoints").glob(".tmp-*"))
    step = json.loads((checkpoints[0] / "trainer_state.json").read_text())["state"]["global_step"]
    assert 0 < step < 1000 and f"at step {step} of 2000" in stderr
    assert not (run / "model.safetensors").exists()


def test_a_second_ctrl_c_stops_at_once() -> None:
    from hfssl.training.trainer import AT_ONCE_AFTER_S, _InterruptRequest

    # Python's Ctrl-C handler, also when the suite was started with SIGINT ignored (a background job of a script).
    with default_signal_handlers():
        with _InterruptRequest() as interrupt:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            assert interrupt.requested  # the first one only asks for a checkpoint at the step boundary
            os.kill(os.getpid(), signal.SIGINT)  # at once again: the same Ctrl-C passed on by a launcher
            time.sleep(AT_ONCE_AFTER_S)
            with pytest.raises(KeyboardInterrupt):  # a second later: a person's second Ctrl-C
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1.0)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's handler is back
