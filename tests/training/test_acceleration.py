"""Speed options of the engine: train.mixed_precision=bf16, train.channels_last, train.compile.

Tiny SimCLR/BYOL runs on 192 digits (16 px) through the real engine (:func:`hfssl.training.trainer.train`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from hfssl.errors import ResumeError
from hfssl.losses import BYOLLoss, NTXentLoss
from hfssl.recipe import RecipeError, load_recipe, recipe_from_dict
from hfssl.training.acceleration import apply_channels_last
from hfssl.training.trainer import train

from tests.tiny import TINY

REPO = Path(__file__).resolve().parents[2]


def tiny_recipe(method: str = "simclr", optim: dict | None = None, **train_settings) -> object:
    backbone = {**TINY[method][0]["backbone_config"], "num_channels": 1}
    return recipe_from_dict({
        "method": method,
        "model": {**TINY[method][0], "backbone_config": backbone},
        "data": {"source": "builtin:digits", "image_size": 16, "channels": 1, "max_train_samples": 192},
        "views": {"mean": [0.5], "std": [0.5], "crop_scale": [0.5, 1.0]},
        "optim": {"lr": 0.01, "warmup_steps": 0, **(optim or {})},
        "train": {"batch_size": 32, "max_steps": 4, "checkpoint_every": 2, "trackers": [], "progress_bar": False,
                  "knn_every": None, "log_every": 1, **train_settings},
        "eval": {"protocols": []},
    })


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_bf16_channels_last_trains_and_saves_plain_float32(method, tmp_path):
    result = train(tiny_recipe(method, mixed_precision="bf16", channels_last=True, max_steps=2), tmp_path)
    assert result.steps == 2 and result.final_loss is not None and torch.isfinite(torch.tensor(result.final_loss))
    # The trained model is back in the default layout, float32, and so are the saved weights.
    for name, tensor in result.model.state_dict().items():
        assert tensor.is_contiguous(), name
    saved = _weights(tmp_path)
    assert all(t.dtype in (torch.float32, torch.int64) for t in saved.values()), {t.dtype for t in saved.values()}
    assert all(t.is_contiguous() for t in saved.values())
    checkpoint = _weights(tmp_path / "checkpoints" / "step-00000002")
    assert checkpoint.keys() == saved.keys()
    for name in saved:
        assert torch.equal(checkpoint[name], saved[name]), name


def test_the_exported_encoder_is_a_plain_float32_transformers_model(tmp_path):
    from hfssl.pipeline import run

    recipe = tiny_recipe("simclr", mixed_precision="bf16", channels_last=True, max_steps=2)
    result = run(recipe, tmp_path / "run")
    encoder = AutoModel.from_pretrained(tmp_path / "run" / "encoder")
    assert type(encoder).__name__ == "ResNetModel"
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in encoder.parameters())
    assert getattr(encoder.config, "dtype", None) in (None, torch.float32, "float32")
    grey = torch.randn(3, 1, 16, 16)
    trained = result.model.get_backbone().eval()
    with torch.no_grad():  # the grey model is exported as an RGB one computing it on the luma (hfssl.export)
        exported = encoder.eval()(pixel_values=grey.expand(-1, encoder.config.num_channels, -1, -1)).pooler_output
        torch.testing.assert_close(exported, trained(pixel_values=grey).pooler_output, rtol=1e-4, atol=1e-5)


def compare_layouts(folder: str) -> None:
    """One SGD step in NCHW and in channels_last from the same weights and views: the loss and the updated
    weights agree to rounding (plain SGD: AdamW's first steps turn rounding-level gradients into lr-sized
    weight changes)."""
    import datasets
    import numpy as np
    import PIL.Image

    folder = Path(folder)
    # Noise images, not digits: the digits' flat background gives exact ties at positive values in the
    # stem's max-pool, which NHWC and NCHW kernels may break differently (they did with one thread),
    # routing a gradient to another pixel. That is tie-breaking, not the layout change tested here.
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 16, 16), dtype=np.uint8)
    datasets.Dataset.from_dict({"image": [PIL.Image.fromarray(picture) for picture in noise], "label": [0] * 64},
                               features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
                               ).save_to_disk(folder / "noise")
    sgd = {"name": "sgd", "momentum": 0.0, "weight_decay": 0.0}

    def recipe(**settings):  # noqa: ANN202
        recipe = tiny_recipe("simclr", optim=sgd, max_steps=1, **settings)
        recipe.data.source, recipe.data.max_train_samples = str(folder / "noise"), None
        return recipe

    plain = train(recipe(), folder / "plain")
    nhwc = train(recipe(channels_last=True), folder / "nhwc")
    assert abs(plain.final_loss - nhwc.final_loss) < 1e-4, (plain.final_loss, nhwc.final_loss)
    a, b = _weights(folder / "plain"), _weights(folder / "nhwc")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-4, msg=name)


def test_channels_last_changes_float32_results_only_by_rounding(tmp_path):
    # In a fresh process, away from what earlier tests set in this one (threads, seeds, caches).
    script = f"from tests.training.test_acceleration import compare_layouts; compare_layouts({str(tmp_path)!r})"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("method,settings", [("simclr", {"mixed_precision": "bf16", "channels_last": True}),
                                             ("byol", {"mixed_precision": "bf16"})])
def test_bf16_resume_is_bit_exact(method, settings, tmp_path):
    full = train(tiny_recipe(method, **settings), tmp_path / "full").output_dir
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(full / "checkpoints" / "step-00000002", resumed_dir / "checkpoints" / "step-00000002")
    result = train(tiny_recipe(method, **settings), resumed_dir, resume=True)
    assert result.resumed_from.name == "step-00000002" and result.steps == 4
    released, resumed = _weights(full), _weights(resumed_dir)
    assert released.keys() == resumed.keys()
    for name in released:
        assert torch.equal(released[name], resumed[name]), f"{name} differs after a bf16 resume"


def test_a_resume_may_not_change_the_layout_or_precision(tmp_path):
    train(tiny_recipe("simclr", max_steps=2, mixed_precision="bf16"), tmp_path)
    with pytest.raises(ResumeError, match="train.channels_last: False -> True"):
        train(tiny_recipe("simclr", max_steps=4, mixed_precision="bf16", channels_last=True), tmp_path, resume=True)
    with pytest.raises(ResumeError, match="train.compile: False -> True"):
        train(tiny_recipe("simclr", max_steps=4, mixed_precision="bf16", compile=True), tmp_path, resume=True)


@pytest.mark.parametrize("override,message", [
    ("train.channels_last=nhwc", "train.channels_last"),
    ("train.compile=1", "train.compile"),
    ("train.compile_mode=fast", "train.compile_mode must be one of default, reduce-overhead, max-autotune"),
    ("train.mixed_precision=bfloat16", "train.mixed_precision must be auto, no, fp16 or bf16"),
    ("train.channel_last=true", "unknown key train.channel_last in recipe. Did you mean 'channels_last'"),
])
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(RecipeError, match=message.replace(".", r"\.")):
        load_recipe(REPO / "recipes" / "simclr" / "fashion_mnist.yaml", [override])


def test_channels_last_on_a_model_without_convolutions_is_refused():
    with pytest.raises(RecipeError, match="train.channels_last=true: the word2vec model .* has no 2-d convolution"):
        apply_channels_last(torch.nn.Sequential(torch.nn.Linear(4, 4)), "word2vec")


def test_losses_are_float32_under_bf16_autocast():
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    reference = NTXentLoss(0.2)(z1, z2), BYOLLoss()(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ntxent = NTXentLoss(0.2)(z1.bfloat16(), z2.bfloat16())
        byol = BYOLLoss()(z1.bfloat16(), z2.bfloat16())
    assert ntxent.dtype == byol.dtype == torch.float32
    # Only the inputs' bf16 rounding differs: the logits themselves are not rounded to bf16.
    torch.testing.assert_close(ntxent, reference[0], rtol=2e-2, atol=0)
    torch.testing.assert_close(byol, reference[1], rtol=2e-2, atol=1e-3)


def test_a_compiler_failure_falls_back_to_eager_with_a_warning_and_the_same_result(tmp_path, monkeypatch, caplog):
    eager = train(tiny_recipe("byol", max_steps=2), tmp_path / "eager")
    original = torch.compile

    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler found (test)")

    monkeypatch.setattr(torch, "compile", lambda model, backend=None, **kw: original(model, backend=failing_backend))
    with caplog.at_level(logging.WARNING, logger="hfssl.training.acceleration"):
        fallback = train(tiny_recipe("byol", max_steps=2, compile=True), tmp_path / "fallback")
    warnings = [r.getMessage() for r in caplog.records if "could not compile" in r.getMessage()]
    assert len(warnings) == 1 and "no C++ compiler found (test)" in warnings[0] and "train.compile=false" in warnings[0]
    # The failed attempt's batch-norm updates and random draws were undone: the run equals the eager one.
    a, b = _weights(tmp_path / "eager"), _weights(tmp_path / "fallback")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert eager.final_loss == fallback.final_loss


def test_compile_trains_like_eager_up_to_rounding(tmp_path, caplog):
    pytest.importorskip("torch._inductor")
    if shutil.which("g++") is None and shutil.which("clang++") is None:
        pytest.skip("inductor needs a C++ compiler on the CPU")
    # One step: the loss is computed before any update; Adam's first update is lr * sign(gradient), so
    # an element whose gradient is ~0 may move either way: compare almost all elements, not all.
    eager = train(tiny_recipe("simclr", max_steps=1), tmp_path / "eager")
    with caplog.at_level(logging.INFO, logger="hfssl.training.acceleration"):
        compiled = train(tiny_recipe("simclr", max_steps=1, compile=True), tmp_path / "compiled")
    assert any("compiled the simclr model's forward" in r.getMessage() for r in caplog.records)
    assert not any("could not compile" in r.getMessage() for r in caplog.records)
    assert abs(eager.final_loss - compiled.final_loss) < 1e-4
    a, b = _weights(tmp_path / "eager"), _weights(tmp_path / "compiled")
    close = sum(int(torch.isclose(a[n], b[n], rtol=1e-4, atol=1e-5).sum()) for n in a if a[n].is_floating_point())
    total = sum(a[n].numel() for n in a if a[n].is_floating_point())
    assert close / total > 0.99, f"only {close} of {total} weights match after one compiled step"
