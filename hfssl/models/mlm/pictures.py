"""The MLM card's picture: the training curve (loss per logged step), read from the run's TensorBoard logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hfssl.plots import Picture, figure, register_picture

logger = logging.getLogger(__name__)

CURVE_FILE = "training_curve.png"


def _curve_caption(description: dict[str, str], name: str) -> str:
    nsp = ", plus the next-sentence loss" if description.get("nsp") == "1" else ""
    return f"The pre-training loss (cross-entropy over the masked tokens{nsp}) as logged during training."


register_picture(Picture(CURVE_FILE, "Training loss per optimiser step", _curve_caption, heading="Training curve", order=20))


def read_scalars(log_dir: Path, tags: tuple[str, ...] = ("train/loss", "train/mlm_loss", "train/nsp_loss")
                 ) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value)]`` from every TensorBoard event file under ``log_dir`` (empty when there is none)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        logger.info("tensorboard is not installed: no training curve")
        return {}
    scalars: dict[str, dict[int, float]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in tags:
            if tag in accumulator.Tags().get("scalars", []):
                scalars.setdefault(tag, {}).update({event.step: event.value for event in accumulator.Scalars(tag)})
    return {tag: sorted(values.items()) for tag, values in scalars.items()}


def draw_training_curve(model: Any, context: Any) -> list[Path]:
    """``MethodSpec.pictures`` of MLM: ``images/training_curve.png`` when the run logged to TensorBoard."""
    run_dir = Path(context.images_dir).parent
    scalars = read_scalars(run_dir / "logs")
    if not scalars.get("train/loss"):
        return []
    if "train/nsp_loss" not in scalars:
        scalars.pop("train/mlm_loss", None)  # the same curve as the loss
    fig = figure(6.0, 3.5)
    axes = fig.add_subplot(1, 1, 1)
    for tag, values in scalars.items():
        steps, losses = zip(*values)
        axes.plot(steps, losses, label=tag.split("/", 1)[1].replace("_", " "))
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("loss")
    axes.legend()
    axes.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(context.images_dir) / CURVE_FILE
    fig.savefig(path, dpi=100, metadata={"Description": f"hfssl curve=training_loss nsp={int('train/nsp_loss' in scalars)}"})
    return [path]
