"""CLIP's picture for the model card: a few test images with their top predicted captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.data.images import read_pixels
from hfssl.plots import Picture, PictureContext, figure, register_picture
from hfssl.views import build_eval_transform

PREDICTIONS_PICTURE = "predictions.png"
register_picture(Picture(
    PREDICTIONS_PICTURE, "Held-out images with their true caption and the model's three most likely captions",
    "Held-out images with their true caption and the three captions of the test split that the model ranks\n"
    "highest for them, with softmax probabilities (`*` marks the true caption; `…` stands for the prefix all\n"
    "captions share, such as \"an emoji of\").", heading="Predicted captions of test images", order=10))


@torch.no_grad()
def top_captions(model: Any, recipe: Any, dataset: Any, count: int = 8, top: int = 3
                 ) -> tuple[np.ndarray, list[str], list[list[tuple[str, float]]]]:
    """The first ``count`` test images ``(N, H, W, C)`` in [0, 1], their own captions, and for each the
    ``top`` captions of the whole test split ranked by the model, with softmax probabilities."""
    from hfssl.models.clip.modeling_clip import load_tokenizer

    captions = [str(text) for text in dataset.with_format(None)["text"]]
    unique = sorted(set(captions))
    device = next(model.parameters()).device
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    pixels = torch.as_tensor(read_pixels(dataset, 0, min(count, len(dataset))))
    images = torch.nn.functional.normalize(model.get_image_features(transform(pixels.to(device))), dim=1)
    tokenizer = load_tokenizer(model.config)
    texts = []
    for start in range(0, len(unique), 256):
        tokens = tokenizer(unique[start:start + 256], padding=True, truncation=True, return_tensors="pt")
        tokens = {key: value.to(device) for key, value in tokens.items()
                  if key in ("input_ids", "attention_mask", "token_type_ids")}
        texts.append(torch.nn.functional.normalize(model.get_text_features(**tokens), dim=1))
    logits = model.clipped_logit_scale() * images @ torch.cat(texts).T  # (N, unique captions)
    probabilities = logits.softmax(dim=1).cpu()
    values, indices = probabilities.topk(min(top, len(unique)), dim=1)
    ranked = [[(unique[int(index)], float(value)) for value, index in zip(row_values, row_indices)]
              for row_values, row_indices in zip(values, indices)]
    shown = pixels.permute(0, 2, 3, 1).float().numpy() / 255.0
    return shown, captions[: len(shown)], ranked


def save_predictions_plot(images: np.ndarray, truths: list[str], ranked: list[list[tuple[str, float]]],
                          path: Path) -> Path:
    """A grid of images, each with its true caption and the model's top captions (probabilities in %)."""
    count = len(images)
    # Captions that share a prefix ("an emoji of ...") are shown without it, so the differences fit.
    import os.path

    shared = os.path.commonprefix([truths[0]] + [text for row in ranked for text, _ in row])
    shared = shared[: shared.rfind(" ") + 1] if len(shared) >= 4 else ""
    def short(text: str) -> str:
        return ("…" + text[len(shared):]) if shared else text
    columns = min(4, count)
    rows = (count + columns - 1) // columns
    canvas = figure(3.6 * columns, 3.5 * rows)
    for index in range(count):
        axes = canvas.add_subplot(rows, columns, index + 1)
        image = np.clip(images[index], 0.0, 1.0)
        axes.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        axes.set_xticks([])
        axes.set_yticks([])
        lines = [f"true: {short(truths[index])}"] + [
            f"{'*' if text == truths[index] else ' '}{100 * p:4.1f}% {short(text)}" for text, p in ranked[index]]
        axes.set_xlabel("\n".join(line[:44] for line in lines), fontsize=7, loc="left", family="monospace")
    canvas.subplots_adjust(hspace=0.5, wspace=0.35)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(path, format="png", bbox_inches="tight",
                   metadata={"Description": f"hfssl picture=predictions count={count}"})
    return path


def draw_predictions(model: Any, context: PictureContext) -> list[Path]:
    """``MethodSpec.pictures`` of CLIP: ``images/predictions.png`` from 8 held-out pairs."""
    if context.eval_dataset is None or context.recipe is None or "text" not in context.eval_dataset.column_names:
        return []
    images, truths, ranked = top_captions(model, context.recipe, context.eval_dataset)
    return [save_predictions_plot(images, truths, ranked, context.images_dir / PREDICTIONS_PICTURE)]
