"""Card part of the ``sentence-embeddings`` family (SimCSE): template ``hfssl/model_cards/sentence-embeddings.md.j2``.

The snippets load the exported encoder with sentence-transformers and with plain transformers (the same
pooling), the objective line says unsupervised (dropout views) or supervised (pairs, hard negatives), and
the continued-training note names the starting encoder.
"""

from __future__ import annotations

import json

from hfssl.hub.cards.common import FamilyCard, images_context, labelled_embeddings_captions, register_family_card, vocab_size
from hfssl.hub.run import RunContents

LIMITATION = ("Sentence similarities reflect the training sentences (their topics, language and biases); sentences much "
              "longer than the training length are truncated.")
EXAMPLE_SENTENCES = ["The team won the final after extra time.", "Shares fell sharply after the results."]


def _objective(contents: RunContents) -> str:
    recipe = contents.recipe
    data = getattr(recipe, "data", None) if recipe is not None else None
    config = contents.config
    base = (f"in-batch-negative contrastive loss (InfoNCE, temperature {getattr(config, 'temperature', 0.05)}), "
            "negatives from the whole global batch")
    if data is not None and getattr(data, "pair_column", None):
        negatives = " and hard negatives" if getattr(data, "negative_column", None) else ""
        return f"supervised SimCSE: sentence pairs (`{data.pair_column}`) as positives{negatives}; {base}"
    return f"unsupervised SimCSE: each sentence against itself under another dropout mask; {base}"


def family_card(contents: RunContents) -> FamilyCard:
    """sentence-transformers and transformers snippets, the objective and the starting encoder."""
    config = contents.config
    pooling = getattr(config, "pooling", "mean")
    start = getattr(config, "backbone_name_or_path", None)
    return FamilyCard(
        pipeline_tag="sentence-similarity",
        tags=("sentence-similarity", "sentence-transformers", "feature-extraction"),
        extra_parts="nothing more (no training-only head)",
        limitation=LIMITATION,
        images=images_context(contents.run_dir, labelled_embeddings_captions("test texts")),
        backbone={"vocab_size": vocab_size(contents.encoder_config)},
        template={"text": {
            "examples": json.dumps(EXAMPLE_SENTENCES), "pooling": pooling,
            "pooling_text": "the first token's state" if pooling == "cls" else "the mean of the token states over the "
                                                                                "real tokens",
            "max_seq_length": int(getattr(config, "max_seq_length", 128)),
            "objective": _objective(contents),
            "head_note": f"Continued training of the encoder `{start}`." if start else None}},
        encoder_library="sentence-transformers",
    )


register_family_card("sentence-embeddings", family_card)
