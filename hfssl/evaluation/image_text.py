"""Zero-shot classification and image-text retrieval on any transformers dual encoder.

A :class:`DualEncoder` wraps a transformers model with ``get_image_features`` / ``get_text_features``
(``CLIPModel``, ``VisionTextDualEncoderModel``, ...) and its processor: exactly what
``AutoModel.from_pretrained(path)`` and ``AutoProcessor.from_pretrained(path)`` load from an hfssl
export, a Hub id such as ``openai/clip-vit-base-patch32``, or the in-memory model at the end of
training (``model.get_dual_encoder(...)``, the same objects the export writes). Images are the prepared
uint8 pixels of an image-text split, passed through the model's own processor.

* Zero-shot (Radford et al. 2021, sec. 3.1.4): each class name is put into every prompt template,
  the normalised text embeddings of one class are averaged over templates and normalised again
  (prompt ensembling), and an image is assigned the class of highest cosine similarity.
* Retrieval: recall@K for image-to-text (an image's query succeeds when one of the K most similar
  captions is its own; identical caption strings count as the same caption) and text-to-image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: model_type values of transformers dual encoders (config.json) that the protocols take as they are
#: (``pooled-vision-text-dual-encoder``: hfssl's mean/cls-pooled text tower, registered by the CLIP method).
DUAL_ENCODER_TYPES = ("clip", "vision-text-dual-encoder", "pooled-vision-text-dual-encoder", "siglip", "siglip2",
                      "chinese_clip", "altclip", "align", "metaclip_2")


@dataclass
class DualEncoder:
    """A transformers dual encoder and its processor; embeddings are L2-normalised float32 numpy arrays."""

    model: Any
    processor: Any
    batch_size: int = 256
    name: str = "model"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` uint8 -> ``(N, D)`` normalised image embeddings (grey images as R = G = B)."""
        self.model.eval()
        chunks = []
        for start in range(0, len(pixels), self.batch_size):
            batch = np.asarray(pixels[start:start + self.batch_size])
            if batch.shape[1] == 1:
                batch = np.repeat(batch, 3, axis=1)
            images = [image.transpose(1, 2, 0) for image in batch]  # (H, W, 3) uint8, as PIL would give
            inputs = self.processor.image_processor(images=images, return_tensors="pt")
            features = _features(self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device)))
            chunks.append(torch.nn.functional.normalize(features.float(), dim=1).cpu().numpy())
        return np.concatenate(chunks)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``M`` strings -> ``(M, D)`` normalised text embeddings."""
        self.model.eval()
        tokenizer = self.processor.tokenizer
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            tokens = tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                               return_tensors="pt")
            tokens = {key: value.to(self.device) for key, value in tokens.items()
                      if key in ("input_ids", "attention_mask", "token_type_ids")}
            features = _features(self.model.get_text_features(**tokens))
            chunks.append(torch.nn.functional.normalize(features.float(), dim=1).cpu().numpy())
        return np.concatenate(chunks)


def _features(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def load_dual_encoder(path: str, batch_size: int = 256) -> DualEncoder:
    """``AutoModel`` + ``AutoProcessor`` of a dual-encoder folder or Hub id, checked to be one."""
    from transformers import AutoModel, AutoProcessor

    try:
        model = AutoModel.from_pretrained(path).eval()
    except OSError as error:
        raise ValueError(f"cannot load a dual encoder from {path!r}: {error}. Give a folder (or Hub id) that holds a "
                         "CLIPModel / VisionTextDualEncoderModel and its processor") from error
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not an image-text dual encoder (it has no "
                         "get_image_features / get_text_features); zero-shot and retrieval need one")
    try:
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path!r} has no processor that transformers can load ({error}); save the dual encoder's "
                         "processor (image processor + tokenizer) beside it") from error
    if not (hasattr(processor, "tokenizer") and hasattr(processor, "image_processor")):
        raise ValueError(f"{path!r} has no processor with both an image processor and a tokenizer "
                         "(processor_config.json / preprocessor_config.json + tokenizer files)")
    return DualEncoder(model, processor, batch_size, name=str(path))


def class_text_embeddings(encoder: DualEncoder, class_names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """``(K, D)``: per class, the mean of its normalised prompt embeddings over templates, normalised."""
    prompts = [template.format(name) for name in class_names for template in templates]
    embeddings = encoder.embed_texts(prompts).reshape(len(class_names), len(templates), -1).mean(axis=1)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-12)


def top_k_hits(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's target is among its ``k`` highest scores (ties broken by index)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top == targets[:, None]).any(axis=1)


def zero_shot_scores(image_embeddings: np.ndarray, labels: np.ndarray, class_embeddings: np.ndarray) -> dict[str, float]:
    """Top-1 and top-5 accuracy of assigning each image the class of highest cosine similarity."""
    scores = image_embeddings @ class_embeddings.T  # (N, K)
    return {"top1": float(top_k_hits(scores, labels, 1).mean()), "top5": float(top_k_hits(scores, labels, 5).mean())}


def retrieval_recalls(image_embeddings: np.ndarray, captions: Sequence[str], text_embeddings: np.ndarray,
                      ks: Sequence[int]) -> list[dict[str, Any]]:
    """Image-to-text and text-to-image recall@K of paired rows (row i of both is a pair).

    A caption string that occurs several times is one caption: for image-to-text, any of its copies
    among the top K is a hit; for text-to-image, any image paired with that string is.
    """
    similarity = image_embeddings @ text_embeddings.T  # (N images, N texts)
    _, caption_ids = np.unique(np.asarray(captions, dtype=object).astype(str), return_inverse=True)
    same = caption_ids[:, None] == caption_ids[None, :]  # (N, N): image i's caption equals text j
    rows = []
    for direction, scores in (("image-to-text", similarity), ("text-to-image", similarity.T)):
        order = np.argsort(-scores, axis=1, kind="stable")
        # the rank of the first correct item of each query
        correct = np.take_along_axis(same, order, axis=1)
        first = correct.argmax(axis=1)
        row: dict[str, Any] = {"direction": direction}
        for k in ks:
            row[f"recall_at_{k}"] = float((first < k).mean())
        rows.append(row)
    return rows


__all__ = ["DUAL_ENCODER_TYPES", "DualEncoder", "class_text_embeddings", "load_dual_encoder", "retrieval_recalls",
           "top_k_hits", "zero_shot_scores"]


def pairs_arrays(split: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(N, C, H, W)`` uint8 pixels, ``(N,)`` labels and the captions of a prepared image-text split."""
    from hfssl.data.images import read_labels, read_pixels

    return read_pixels(split), read_labels(split), list(split.with_format(None)["text"])
