"""``pretext``: held-out accuracy of a hand-crafted pretext task (rotation, jigsaw, relative patch position).

How well the trained model solves its own task on images it never trained on, the first number the
seeds report for RotNet (Gidaris et al. 2018), Jigsaw (Noroozi & Favaro 2016) and relative patch
position (Doersch et al. 2015). The test split goes through the run's evaluation transform (clean,
normalised images, no augmentation), in batches of ``batch_size``; the model's ``pretext-task``
capability (``get_pretext_predictions(pixel_values, generator)``) builds the task from each batch with
the method's own training builder and returns the classifier's logits and the task's labels. One
generator seeded with ``seed`` is drawn from batch after batch on the model's device, so the task (which
permutations, which patches) is fixed by ``seed`` and ``batch_size``, both recorded in the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.features import iter_image_batches
from hfssl.evaluation.protocols import IMAGE, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.registry import PRETEXT_TASK
from hfssl.settings import RecipeError

#: Top-5 accuracy is reported only for tasks of more than this many classes (RotNet's 4 would always score 100 %).
TOP5_MIN_CLASSES = 5


@dataclass
class PretextSettings:
    """``eval.pretext``: the seed of the generator that builds the held-out task, and the images per batch
    (the generator is drawn from batch after batch, so both fix the task)."""

    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise RecipeError(f"eval.pretext.batch_size must be >= 1, got {self.batch_size!r}")


@torch.no_grad()
def run_pretext(context: EvaluationContext, settings: PretextSettings) -> Rows:
    """Top-1 (and top-5 for more than 5 classes) pretext accuracy over the whole test split."""
    splits = context.image_splits()
    _, _, transform, device, model = context.image_encoder()
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    correct = {1: 0, 5: 0}
    examples, classes = 0, None
    try:
        for pixels, _ in iter_image_batches(splits.test, settings.batch_size):
            pixel_values = transform(torch.from_numpy(pixels).to(device)).to(device)
            logits, labels = model.get_pretext_predictions(pixel_values, generator)
            if logits.ndim != 2 or labels.shape != (logits.shape[0],):
                raise ValueError(f"{type(model).__name__}.get_pretext_predictions must return logits (N, classes) and "
                                 f"labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
            classes = int(logits.shape[1])
            top = logits.topk(min(5, classes), dim=1).indices  # (N, k)
            hits = top == labels.to(top.device).unsqueeze(1)
            correct[1] += int(hits[:, 0].sum())
            correct[5] += int(hits.any(dim=1).sum())
            examples += int(labels.shape[0])
    finally:
        model.train(was_training)
    if not examples:
        raise ValueError(f"the test split of {splits.source!r} is empty: no images to build the pretext task from")
    row = {"features": "model", "split": "test", "seed": settings.seed, "batch_size": settings.batch_size,
           "pretext_classes": classes, "examples": examples, "top1": correct[1] / examples}
    if classes > TOP5_MIN_CLASSES:
        row["top5"] = correct[5] / examples
    return [row]


PRETEXT = register_protocol(Protocol(
    "pretext", (PRETEXT_TASK,), run_pretext, PretextSettings,
    "held-out accuracy of the model's own pretext task (rotation, jigsaw, relative patch) on the test split, fixed seed",
    data=IMAGE, held_out=True,
    # Not "image-classification": the model-index would list a pretext accuracy as a classification result.
    card=ProtocolCard("Pretext task", "**Pretext task**: the model's own pretext task (rotation, jigsaw permutation, "
                      "relative patch position) built with a fixed seed from the clean test images, scored against "
                      "its labels: how well the task it was trained on is solved on unseen images; chance is "
                      "1 / the number of pretext classes.", "other", "other",
                      setting_labels={"pretext_classes": "classes"}, bookkeeping=("examples",))))
