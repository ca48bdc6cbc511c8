"""The MLM card's picture: the training curve (loss per logged step), read from the run's TensorBoard logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfssl.plots import Picture, figure, read_scalars, register_picture

CURVE_FILE = "training_curve.png"


def _curve_caption(description: dict[str, str], name: str) -> str:
    nsp = ", plus the next-sentence loss" if description.get("nsp") == "1" else ""
    return f"The pre-training loss (cross-entropy over the masked tokens{nsp}) as logged during training."


register_picture(Picture(CURVE_FILE, "Training loss per optimiser step", _curve_caption, heading="Training curve", order=20))


def draw_training_curve(model: Any, context: Any) -> list[Path]:
    """``MethodSpec.pictures`` of MLM: ``images/training_curve.png`` when the run logged to TensorBoard."""
    run_dir = Path(context.images_dir).parent
    scalars = read_scalars(run_dir / "logs", ("train/loss", "train/mlm_loss", "train/nsp_loss"))
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
