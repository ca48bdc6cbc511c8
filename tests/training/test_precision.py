"""``train.mixed_precision: auto`` (issue 28, item 6): bf16 on CUDA devices that support it and on CPUs with
native bf16 (AMX-BF16, AVX512-BF16, ARM BF16), float32 elsewhere; the choice and its reason in the run's
recipe.yaml and card; a resumed auto run keeps its precision; an explicit bf16 on a CPU without native
bf16 warns once with the measured cost.

The CPU's capabilities and CUDA are mocked both ways (this machine has AMX, so auto is bf16 on it).
The suite sets ``HFSSL_AUTO_MIXED_PRECISION=no`` (tests/conftest.py); these tests remove it.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import torch
import yaml

import hfssl.training.precision as precision
from hfssl.pipeline import run
from hfssl.recipe import RecipeError, load_recipe
from hfssl.training.precision import (
    choose_mixed_precision,
    precision_environment,
    resolve_mixed_precision,
    warn_emulated_bf16,
)

from tests.training.test_acceleration import tiny_recipe

AVX2_EPYC = {"architecture": "x86_64", "avx2": True, "fma3": True}  # the CPU of issue 28: no AVX-512, no AMX
SAPPHIRE_RAPIDS = {"architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": True}
SKYLAKE_X = {"architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bw": True}  # AVX-512 without BF16
GRAVITON3 = {"architecture": "arm64", "neon": True, "bf16": True, "sve": True}


@pytest.fixture
def hardware(monkeypatch: pytest.MonkeyPatch):
    """Set the CPU's capabilities; auto decides by the hardware (no environment override)."""
    monkeypatch.delenv("HFSSL_AUTO_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(precision, "_warned", set())

    def set_cpu(capabilities: dict) -> None:
        monkeypatch.setattr(precision, "_cpu_capabilities", lambda: dict(capabilities))

    return set_cpu


@pytest.mark.parametrize("cpu,expected", [(AVX2_EPYC, "no"), (SKYLAKE_X, "no"), (SAPPHIRE_RAPIDS, "bf16"),
                                          (GRAVITON3, "bf16")])
def test_auto_on_the_cpu_is_bf16_only_with_native_bf16(hardware, cpu: dict, expected: str) -> None:
    hardware(cpu)
    choice = choose_mixed_precision("cpu")
    assert choice.value == expected
    assert choice.reason.startswith("auto: CPU with" + ("out" if expected == "no" else "") + " native bf16")
    assert torch.backends.cpu.get_cpu_capability() in choice.reason  # torch's capability is named too


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_on_cuda_follows_the_device(hardware, monkeypatch: pytest.MonkeyPatch, bf16: bool) -> None:
    hardware(AVX2_EPYC)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args, **kwargs: "NVIDIA H100 80GB HBM3")
    choice = choose_mixed_precision("cuda")
    assert choice.value == ("bf16" if bf16 else "no") and "NVIDIA H100" in choice.reason
    assert choose_mixed_precision("mps").value == "no"


def test_the_environment_and_the_accelerate_config_decide_before_the_hardware(hardware,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    hardware(SAPPHIRE_RAPIDS)
    assert precision_environment() is None
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # accelerate launch's default: the hardware decides
    assert precision_environment() is None
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert precision_environment().value == "fp16"
    monkeypatch.setenv("HFSSL_AUTO_MIXED_PRECISION", "no")
    assert precision_environment().value == "no"
    monkeypatch.setenv("HFSSL_AUTO_MIXED_PRECISION", "float32")
    with pytest.raises(RecipeError, match="HFSSL_AUTO_MIXED_PRECISION='float32'.*no, fp16, bf16"):
        precision_environment()


def _recipe_yaml(folder: Path) -> dict:
    return yaml.safe_load((folder / "recipe.yaml").read_text())["train"]


def test_auto_is_resolved_into_the_recipe_and_card_and_kept_on_resume(hardware, tmp_path: Path) -> None:
    """A run with native bf16 trains under bf16 autocast and says why; resumed on a CPU without it, the run
    keeps bf16 (it continues as it began) instead of being refused as a changed recipe."""
    hardware(SAPPHIRE_RAPIDS)
    result = run(tiny_recipe("simclr", max_steps=1, checkpoint_every=1), tmp_path)
    assert result.accelerator.mixed_precision == "bf16"
    train = _recipe_yaml(tmp_path)
    assert train["mixed_precision"] == "bf16" and train["mixed_precision_reason"].startswith("auto: CPU with native bf16")
    saved = yaml.safe_load((tmp_path / "checkpoints" / "step-00000001" / "recipe.yaml").read_text())["train"]
    assert saved["mixed_precision"] == "bf16"
    card = (tmp_path / "README.md").read_text()
    assert "| train.mixed_precision | bf16 (auto: CPU with native bf16 (amx_bf16" in card

    hardware(AVX2_EPYC)
    resumed = run(tiny_recipe("simclr", max_steps=2, checkpoint_every=1), tmp_path, resume=True)
    assert resumed.steps == 2 and resumed.recipe_changes == ["train.max_steps: 1 -> 2"]
    assert resumed.accelerator.mixed_precision == "bf16" and _recipe_yaml(tmp_path) == {**train, "max_steps": 2}


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_the_wide_recipes_train_in_float32_without_native_bf16_and_in_bf16_with_it(hardware, method: str) -> None:
    """The ``*_wide`` recipes (bf16 + channels_last before: 0.12x / 0.09x the float32 speed on an AVX2 CPU)."""
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / method / "fashion_mnist_wide.yaml")
    assert recipe.train.mixed_precision == "auto"
    hardware(AVX2_EPYC)
    assert resolve_mixed_precision(recipe, "cpu").train.mixed_precision == "no"
    hardware(SAPPHIRE_RAPIDS)
    assert resolve_mixed_precision(recipe, "cpu").train.mixed_precision == "bf16"


def test_a_new_run_without_native_bf16_trains_in_float32(hardware, tmp_path: Path) -> None:
    hardware(AVX2_EPYC)
    result = run(tiny_recipe("byol", max_steps=1), tmp_path)
    assert result.accelerator.mixed_precision == "no"
    train = _recipe_yaml(tmp_path)
    assert train["mixed_precision"] == "no" and "without native bf16" in train["mixed_precision_reason"]


def test_an_explicit_bf16_on_a_cpu_without_native_bf16_warns_once_with_the_cost(
        hardware, caplog: pytest.LogCaptureFixture) -> None:
    hardware(AVX2_EPYC)
    recipe = tiny_recipe("simclr", mixed_precision="bf16")
    with caplog.at_level(logging.WARNING, logger="hfssl.training.precision"):
        warn_emulated_bf16(recipe, "cuda")  # a GPU: nothing to say
        warn_emulated_bf16(recipe, "cpu")
        warn_emulated_bf16(recipe, "cpu")
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "0.12x" in warnings[0] and "0.09x" in warnings[0]
    assert "train.mixed_precision=auto" in warnings[0]
    hardware(SAPPHIRE_RAPIDS)
    caplog.clear()
    warn_emulated_bf16(recipe, "cpu")
    assert not caplog.records


def test_bench_vision_modes_prints_the_cpu_capability(hardware) -> None:
    """``scripts/bench_vision.py --modes`` prints this line beside its table: whether its bf16 rows are native."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_vision.py"
    spec = importlib.util.spec_from_file_location("bench_vision", script)
    bench_vision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_vision)
    capability = torch.backends.cpu.get_cpu_capability()
    hardware(AVX2_EPYC)
    assert bench_vision.cpu_line() == (f"CPU: native bf16 no (no amx_bf16/avx512_bf16/bf16; torch capability "
                                       f"{capability}); train.mixed_precision=auto picks fp32 here")
    hardware(SAPPHIRE_RAPIDS)
    assert bench_vision.cpu_line() == (f"CPU: native bf16 yes (amx_bf16, avx512_bf16; torch capability {capability}); "
                                       "train.mixed_precision=auto picks bf16 here")


def test_a_bare_no_override_means_float32_and_other_values_are_refused() -> None:
    """``train.mixed_precision=no`` (YAML reads a bare ``no`` as false) is "no", not a type error."""
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "simclr" / "digits.yaml"
    assert load_recipe(recipe, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    assert load_recipe(recipe, ['train.mixed_precision="no"']).train.mixed_precision == "no"
    with pytest.raises(RecipeError, match="must be auto, no, fp16 or bf16"):
        load_recipe(recipe, ["train.mixed_precision=fp32"])
    with pytest.raises(RecipeError, match="must be a string"):
        load_recipe(recipe, ["train.mixed_precision=true"])
