"""Local `evaluate` metric modules shipped inside hfssl, loaded offline.

Each metric lives in ``hfssl/evaluation/metrics/<name>/<name>.py`` (the layout `evaluate.load`
expects of a local module: a folder holding a script of the same name) and is installed as package
data (``pyproject.toml``: ``evaluation/metrics/*/*.py``). Loading a local script never touches the
Hub, so evaluation works with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).resolve().parent


def available_metrics() -> list[str]:
    """Names of the metric modules shipped with hfssl."""
    return sorted(path.parent.name for path in METRICS_DIR.glob("*/*.py") if path.stem == path.parent.name)


@functools.lru_cache(maxsize=None)
def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load a shipped metric module with ``evaluate.load`` from its path inside the installed package.

    Args:
        name: folder name under ``hfssl/evaluation/metrics`` (``"top_k_accuracy"``).

    Raises:
        ValueError: no such metric module is shipped.
    """
    script = METRICS_DIR / name / f"{name}.py"
    if not script.is_file():
        raise ValueError(f"unknown hfssl metric {name!r}; shipped metrics: {', '.join(available_metrics())}")
    import evaluate  # imported on first use: half a second that `import hfssl` need not pay

    from hfssl.data.sources import check_cache_writable

    for folder in metric_cache_folders():  # a read-only cache: one message naming the folder and the fix
        check_cache_writable(folder, f"evaluate, loading the {name} metric module,")
    # keep_in_memory: predictions are small and no cache files are left behind in ~/.cache.
    return evaluate.load(str(script), keep_in_memory=True)


def metric_cache_folders() -> list[Path]:
    """The folders ``evaluate.load`` writes even for a local script kept in memory: its copy of the
    module (``HF_MODULES_CACHE``) and the metric's cache folder (``HF_METRICS_CACHE``)."""
    import evaluate.config

    return [Path(evaluate.config.HF_MODULES_CACHE), Path(evaluate.config.HF_METRICS_CACHE)]


def top_k_accuracies(scores: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies of class scores through the ``top_k_accuracy`` metric module.

    Args:
        scores: ``(N, C)`` class scores (logits, probabilities or kNN votes).
        labels: ``(N,)`` true class indices.
        ks: the k values; each gives a key ``top{k}``.

    Returns:
        ``{"top1": ..., "top5": ...}``, fractions in [0, 1].
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().double().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    metric = load_metric("top_k_accuracy")
    return {f"top{k}": metric.compute(predictions=scores, references=labels, top_k=k)["top_k_accuracy"] for k in ks}
