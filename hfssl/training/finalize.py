"""End of a vision run (main process): export the encoder, evaluate, draw, write the model card."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.training.recipe import Recipe

logger = logging.getLogger(__name__)


def finalize_vision_run(run_dir: Path, model: torch.nn.Module, recipe: Recipe, data: Any) -> dict[str, Any]:
    """Write ``encoder/``, ``eval_results.json``, ``images/`` and ``README.md`` into ``run_dir``."""
    from hfssl.hub.export import export_encoder

    run_dir = Path(run_dir)
    image_size = recipe.views.crop_size or recipe.data.image_size
    export_encoder(model, run_dir / "encoder", image_size, recipe.views.mean, recipe.views.std, recipe.data.channels)
    outputs: dict[str, Any] = {"encoder": str(run_dir / "encoder")}
    model.eval()
    if recipe.eval.protocols and data.eval_train_dataset is not None and data.eval_test_dataset is not None:
        results, test_features, test_labels = evaluate_run_model(model, recipe, data)
        (run_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        outputs["eval_results"] = results
        _draw_pictures(run_dir, model, recipe, data, test_features, test_labels)
    from hfssl.hub.card import write_model_card

    outputs["card"] = str(write_model_card(run_dir))
    return outputs


@torch.no_grad()
def evaluate_run_model(model: torch.nn.Module, recipe: Recipe, data: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """kNN / linear protocols on the model's features and on raw pixels, in the eval_results schema."""
    from hfssl.evaluation.features import extract_features_with
    from hfssl.evaluation.runner import image_results
    from hfssl.views import build_eval_transform

    train_set, test_set = _capped(data.eval_train_dataset, recipe.eval.max_train_samples), _capped(
        data.eval_test_dataset, recipe.eval.max_test_samples
    )
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    train_f, train_y = extract_features_with(model.get_embeddings, transform, train_set, recipe.eval.batch_size)
    test_f, test_y = extract_features_with(model.get_embeddings, transform, test_set, recipe.eval.batch_size)
    num_classes = len(data.label_names) if data.label_names else int(max(train_y.max(), test_y.max())) + 1
    results: dict[str, Any] = {
        "dataset": recipe.data.source,
        "train_split": recipe.data.train_split,
        "test_split": recipe.data.eval_split,
        **image_results(train_f, train_y, test_f, test_y, train_set, test_set, recipe.eval,
                        list(recipe.eval.protocols), num_classes),
    }
    for entry in results["results"] + results["baselines"]:
        logger.info("eval %s (%s): %s", entry.get("protocol"), entry.get("features"),
                    {k: v for k, v in entry.items() if k in ("k", "C", "top1", "top5")})
    return results, test_f, test_y


def _capped(dataset: Any, limit: int | None) -> Any:
    if limit is None or len(dataset) <= limit:
        return dataset
    return dataset.select(range(limit))


def _draw_pictures(run_dir: Path, model: torch.nn.Module, recipe: Recipe, data: Any,
                   test_features: np.ndarray, test_labels: np.ndarray) -> None:
    from hfssl.hub.card import save_projection_plot, save_reconstruction_plot

    images = run_dir / "images"
    images.mkdir(exist_ok=True)
    limit = 2000
    save_projection_plot(test_features[:limit], test_labels[:limit], data.label_names, images / "embeddings_2d.png")
    if hasattr(model, "mae"):
        originals, reconstructions, masked = mae_reconstructions(model, recipe, data.eval_test_dataset, count=8)
        save_reconstruction_plot(originals, reconstructions, masked, images / "reconstructions.png")


@torch.no_grad()
def mae_reconstructions(model: torch.nn.Module, recipe: Recipe, dataset: Any, count: int = 8
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Originals, reconstructions (visible patches pasted back) and masked inputs, ``(N, H, W, C)`` in [0, 1]."""
    from hfssl.views import build_eval_transform

    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    from hfssl.data import read_pixels

    pixels = torch.as_tensor(read_pixels(dataset, 0, min(count, len(dataset))))
    device = next(model.parameters()).device
    pixel_values = transform(pixels.to(device))
    generator = torch.Generator(device="cpu").manual_seed(0)
    patch = model.config.backbone_config.patch_size
    num_patches = (pixel_values.shape[-1] // patch) ** 2
    noise = torch.rand(pixel_values.shape[0], num_patches, generator=generator).to(device)
    outputs = model(pixel_values=pixel_values, noise=noise)
    mae = model.mae
    prediction = outputs.logits
    if model.config.norm_pix_loss:
        # Undo the per-patch normalisation with the true patch statistics (MAE's visualisation).
        target = mae.patchify(pixel_values)
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        prediction = prediction * (var + 1e-6) ** 0.5 + mean
    mask = outputs.mask.unsqueeze(-1)  # (B, num_patches, 1), 1 = removed
    visible = mae.patchify(pixel_values)
    pasted = mae.unpatchify(visible * (1 - mask) + prediction * mask)
    masked = mae.unpatchify(visible * (1 - mask))
    mean = torch.tensor(recipe.views.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(recipe.views.std, device=device).view(1, -1, 1, 1)

    def to_images(tensor: torch.Tensor) -> np.ndarray:
        return (tensor * std + mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    return to_images(pixel_values), to_images(pasted), to_images(masked)
