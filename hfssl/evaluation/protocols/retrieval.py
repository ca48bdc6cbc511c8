"""``retrieval``: image-to-text and text-to-image recall@K on held-out image-caption pairs."""

from __future__ import annotations

from dataclasses import dataclass

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.image_text import pairs_arrays, retrieval_recalls
from hfssl.evaluation.protocols import (IMAGE_TEXT, RECALL_AT_1, RECALL_AT_5, RECALL_AT_10, Protocol, ProtocolCard, Rows,
                                        register_protocol)
from hfssl.registry import IMAGE_TEXT_EMBEDDINGS
from hfssl.settings import RecipeError


@dataclass
class RetrievalSettings:
    """``eval.retrieval``: the K of recall@K."""

    ks: tuple[int, ...] = (1, 5, 10)

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise RecipeError(f"eval.retrieval.ks must be positive ranks, got {self.ks!r}")


def run_retrieval(context: EvaluationContext, settings: RetrievalSettings) -> Rows:
    encoder = context.dual_encoder()
    pixels, _, captions = pairs_arrays(context.image_text_pairs().test)
    return retrieval_recalls(encoder.embed_images(pixels), captions, encoder.embed_texts(captions), settings.ks)


RETRIEVAL = register_protocol(Protocol(
    "retrieval", (IMAGE_TEXT_EMBEDDINGS,), run_retrieval, RetrievalSettings,
    "image-to-text and text-to-image recall@1/5/10 on held-out pairs (image-text models)", data=IMAGE_TEXT, held_out=True,
    card=ProtocolCard("Retrieval", "**Retrieval**: recall@K of the held-out pairs, image-to-text (is the image's own "
                      "caption among the K most similar captions) and text-to-image.", "image-text-retrieval",
                      "image-text-retrieval", (RECALL_AT_1, RECALL_AT_5, RECALL_AT_10))))
