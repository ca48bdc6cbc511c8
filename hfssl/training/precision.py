"""``train.mixed_precision: auto`` (the default): the precision the hardware runs fastest (issue 28, item 6).

``auto`` resolves, once per run and before anything is built, to

* ``bf16`` on a CUDA device that supports it (``torch.cuda.is_bf16_supported()``: compute capability
  8.0 and up), ``no`` (float32) on an older one (fp16 needs loss scaling and can overflow: choose it
  explicitly with ``train.mixed_precision: fp16``);
* ``bf16`` on a CPU with native bf16 instructions: AMX-BF16 or AVX512-BF16 on x86 (Intel Cooper Lake,
  Sapphire Rapids and later, AMD Zen 4 and later), the BF16 extension (or SVE-BF16) on ARM; ``no`` on any
  other CPU, where oneDNN emulates bf16 through float32 and a bf16 step costs 8-11x a float32 one
  (BENCHMARKS.md: SimCLR at 0.12x and BYOL at 0.09x the float32 images/s on an AVX2-only AMD EPYC);
* ``no`` on any other device (MPS, XPU, ...), not measured here;
* the Accelerate config's ``mixed_precision`` when it names one (``accelerate launch --mixed_precision
  bf16`` or a config file: ``ACCELERATE_MIXED_PRECISION`` other than ``no``), and the given
  Accelerator's when :func:`hfssl.training.trainer.train` is handed one;
* what ``HFSSL_AUTO_MIXED_PRECISION`` says (``no``, ``bf16``, ``fp16``) when it is set: for a machine
  whose detection is wrong, and for the test suite, whose float32 expectations must not depend on
  the CPU it runs on (tests/conftest.py sets ``no``).

Which CPU check, and why: ``torch.cpu.get_capabilities()`` (cpuinfo, the library torch's own
dispatch uses; every OS torch runs on) reports the instruction sets themselves (``amx_bf16``,
``avx512_bf16``; ``bf16``, ``sve_bf16`` on ARM). ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is
not the question: it is true on every AVX-512 CPU (avx512bw/vl/dq), also on those without BF16
instructions (Skylake-X, Cascade Lake), where oneDNN runs bf16 by conversion, slower than float32.
``torch.backends.cpu.get_cpu_capability()`` (``AVX2``, ``AVX512``) names the vector width of torch's
kernels, not bf16. ``/proc/cpuinfo``'s flags say the same as cpuinfo but only on Linux; they are the
fallback for a torch without ``torch.cpu.get_capabilities``.

The resolved value goes into the run's recipe (``recipe.yaml`` beside the model and in every
checkpoint, and the model card) with the reason in ``train.mixed_precision_reason``; it is logged
once. A resumed ``auto`` run keeps the precision it started with (the checkpoint's), also on other
hardware, so that it continues bit for bit. An explicit ``bf16`` on a CPU without native bf16 is
kept, with one warning that names the cost.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from hfssl.recipe import Recipe
from hfssl.settings import RecipeError, load_yaml
from hfssl.training.checkpoint import RECIPE_FILE

logger = logging.getLogger(__name__)

__all__ = ["AUTO", "PrecisionChoice", "cpu_bf16_support", "choose_mixed_precision", "resolve_mixed_precision",
           "warn_emulated_bf16", "precision_environment", "saved_precision"]

AUTO = "auto"
#: What a run uses: ``auto`` resolves to one of these (``null``: the Accelerate config's setting).
RESOLVED = ("no", "fp16", "bf16")
#: The capability names (``torch.cpu.get_capabilities()``, ``/proc/cpuinfo`` flags) of native bf16 arithmetic.
NATIVE_BF16 = ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")
ENVIRONMENT = "HFSSL_AUTO_MIXED_PRECISION"
#: Measured cost of bf16 emulation (BENCHMARKS.md, issue 28), quoted by the warning.
EMULATED_COST = ("SimCLR ran at 0.12x and BYOL at 0.09x the float32 images/s on an AVX2-only AMD EPYC "
                 "(BENCHMARKS.md)")


@dataclass(frozen=True)
class PrecisionChoice:
    """A resolved ``train.mixed_precision`` (``no``, ``fp16`` or ``bf16``) and why."""

    value: str | None  # None: the Accelerate config's setting (a resumed run that began with it)
    reason: str


def _cpu_capabilities() -> dict[str, Any]:
    """The CPU's instruction sets: torch's cpuinfo view, else Linux's ``/proc/cpuinfo`` flags."""
    get_capabilities = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if get_capabilities is not None:
        return dict(get_capabilities())
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags: dict[str, Any] = {}
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):  # x86, ARM
                flags.update({flag: True for flag in value.split()})
        return flags
    return {}


def cpu_bf16_support() -> tuple[bool, str]:
    """``(native bf16, description)``: whether this CPU has bf16 instructions, with the instructions
    found and torch's CPU capability, e.g. ``(True, "amx_bf16, avx512_bf16; torch capability AVX512")``."""
    found = [name for name in NATIVE_BF16 if _cpu_capabilities().get(name)]
    capability = torch.backends.cpu.get_cpu_capability()
    if found:
        return True, f"{', '.join(found)}; torch capability {capability}"
    return False, f"no amx_bf16/avx512_bf16/bf16; torch capability {capability}"


def choose_mixed_precision(device_type: str) -> PrecisionChoice:
    """What ``auto`` means on a device of type ``device_type`` (``cpu``, ``cuda``, ...)."""
    if device_type == "cuda":
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", f"auto: CUDA device {name} supports bf16")
        return PrecisionChoice("no", f"auto: CUDA device {name} has no bf16 (compute capability below 8.0): float32; "
                                     "set train.mixed_precision=fp16 for fp16 with loss scaling")
    if device_type == "cpu":
        native, description = cpu_bf16_support()
        if native:
            return PrecisionChoice("bf16", f"auto: CPU with native bf16 ({description})")
        return PrecisionChoice("no", f"auto: CPU without native bf16 ({description}), where bf16 is emulated and "
                                     "slower than float32: float32")
    return PrecisionChoice("no", f"auto: {device_type} device: float32 (auto picks bf16 on CUDA and on CPUs with "
                                 "native bf16 only)")


def precision_environment() -> PrecisionChoice | None:
    """The choice that ``HFSSL_AUTO_MIXED_PRECISION`` or the Accelerate config makes for ``auto``, if any."""
    forced = os.environ.get(ENVIRONMENT, "").strip().lower()
    if forced:
        if forced not in RESOLVED:
            raise RecipeError(f"{ENVIRONMENT}={forced!r}: must be one of {', '.join(RESOLVED)} (what "
                              "train.mixed_precision: auto resolves to), or unset to choose by the hardware")
        return PrecisionChoice(forced, f"auto: {ENVIRONMENT}={forced}")
    accelerate = os.environ.get("ACCELERATE_MIXED_PRECISION", "").strip().lower()
    if accelerate in ("fp16", "bf16"):
        return PrecisionChoice(accelerate, f"auto: the Accelerate config's mixed_precision ({accelerate})")
    return None


def saved_precision(checkpoint: Path) -> tuple[str | None, str | None]:
    """``(train.mixed_precision, train.mixed_precision_reason)`` of a checkpoint's recipe."""
    train = (load_yaml((Path(checkpoint) / RECIPE_FILE).read_text()) or {}).get("train") or {}
    return train.get("mixed_precision"), train.get("mixed_precision_reason")


def resolve_mixed_precision(recipe: Recipe, device_type: str, checkpoint: Path | None = None,
                            given: str | None = None) -> Recipe:
    """``recipe`` with ``train.mixed_precision: auto`` resolved and its reason recorded (unchanged otherwise).

    Args:
        device_type: the device the run trains on (``cpu``, ``cuda``, ...).
        checkpoint: the checkpoint a resumed run continues: its precision is kept, whatever it was
            (:func:`hfssl.training.run_directory.recipe_differences` lets ``auto`` match it).
        given: the ``mixed_precision`` of an Accelerator handed to ``train``, which decides.
    """
    train = recipe.train
    if train.mixed_precision != AUTO:
        return recipe
    if given is not None:  # what the run computes in, whatever else says
        choice = PrecisionChoice(given, f"auto: the Accelerator given to train() (mixed_precision={given})")
    elif checkpoint is not None:
        value, reason = saved_precision(checkpoint)
        choice = PrecisionChoice(value, reason or f"auto: kept the resumed checkpoint's train.mixed_precision ({value})")
    else:
        choice = precision_environment() or choose_mixed_precision(device_type)
    return replace(recipe, train=replace(train, mixed_precision=choice.value, mixed_precision_reason=choice.reason))


_warned: set[str] = set()


def warn_emulated_bf16(recipe: Recipe, device_type: str) -> None:
    """One warning per process (the first run that asks) when an explicit bf16 trains on a CPU
    without native bf16."""
    train = recipe.train
    if (train.mixed_precision != "bf16" or device_type != "cpu" or (train.mixed_precision_reason or "").startswith("auto")
            or "emulated" in _warned):
        return
    native, description = cpu_bf16_support()
    if native:
        return
    _warned.add("emulated")
    logger.warning("train.mixed_precision=bf16 on a CPU without native bf16 (%s): oneDNN emulates it, slower than "
                   "float32: %s. Fix: train.mixed_precision=auto (float32 here, bf16 where the hardware has it) or no",
                   description, EMULATED_COST)
