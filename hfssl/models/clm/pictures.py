"""The causal LM card's picture: the training curve (next-token loss and, on a second axis, the share of
next tokens predicted exactly, per logged step), read from the run's TensorBoard logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfssl.plots import Picture, figure, read_scalars, register_picture

CURVE_FILE = "next_token_curve.png"

register_picture(Picture(
    CURVE_FILE, "Next-token loss per optimiser step",
    "The pre-training loss (mean cross-entropy of the next token over the batch's tokens) and the training batches' "
    "next-token accuracy as logged during training.", heading="Training curve", order=20))


def draw_training_curve(model: Any, context: Any) -> list[Path]:
    """``MethodSpec.pictures``: ``images/next_token_curve.png`` when the run logged to TensorBoard."""
    run_dir = Path(context.images_dir).parent
    scalars = read_scalars(run_dir / "logs", ("train/loss", "train/next_token_accuracy"))
    if not scalars.get("train/loss"):
        return []
    fig = figure(6.0, 3.5)
    axes = fig.add_subplot(1, 1, 1)
    steps, losses = zip(*scalars["train/loss"])
    axes.plot(steps, losses, color="tab:blue", label="loss")
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("next-token loss")
    axes.grid(alpha=0.3)
    if scalars.get("train/next_token_accuracy"):
        other = axes.twinx()
        steps, accuracies = zip(*scalars["train/next_token_accuracy"])
        other.plot(steps, accuracies, color="tab:orange", label="accuracy")
        other.set_ylabel("next-token accuracy")
    fig.legend(loc="upper right")
    fig.tight_layout()
    path = Path(context.images_dir) / CURVE_FILE
    fig.savefig(path, dpi=100, metadata={"Description": "hfssl curve=next_token_loss"})
    return [path]
