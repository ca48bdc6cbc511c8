"""Card part of the ``causal-language-modeling`` family: template ``hfssl/model_cards/causal-language-modeling.md.j2``.

Besides the snippets' text, the card shows continuations of fixed prompts sampled when the card is
written (``pipeline("text-generation")`` on ``RUN/encoder``, exactly as a user would run it, with a fixed
seed so that the same model always gives the same card) and the training curve drawn from the run's logs
(``images/training_curve.png``, the method's picture hook).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hfssl.hub.cards.common import (FamilyCard, images_context, labelled_embeddings_captions, register_family_card,
                                     vocab_size)
from hfssl.hub.run import RunContents

logger = logging.getLogger(__name__)

LIMITATION = ("Generated text reproduces the word statistics of the training corpus, including its biases and "
              "errors; it is not a source of facts.")
PROMPT_EXAMPLE = "The government said"
EXAMPLE_SENTENCES = ["The first sentence.", "Another, longer sentence to embed."]
#: Prompts continued when the card is written, and how.
PROMPTS = ("The government said", "In the first half of the season,", "The film is", "Scientists have found")
SEED = 0
MAX_NEW_TOKENS = 30
TOP_K = 50


def sample_completions(encoder_dir: Path) -> list[dict[str, str]]:
    """``[{"prompt", "continuation"}]`` from ``pipeline("text-generation")`` on the exported model, sampled (top-k)
    with the fixed seed :data:`SEED` per prompt; empty when the model cannot be loaded (the card then says nothing
    it did not run)."""
    if not (encoder_dir / "config.json").is_file():
        return []
    try:
        from transformers import pipeline, set_seed

        generate = pipeline("text-generation", model=str(encoder_dir), tokenizer=str(encoder_dir), device="cpu")
        examples = []
        for prompt in PROMPTS:
            set_seed(SEED)
            text = generate(prompt, max_new_tokens=MAX_NEW_TOKENS, do_sample=True, top_k=TOP_K,
                            pad_token_id=generate.tokenizer.pad_token_id)[0]["generated_text"]
            continuation = text[len(prompt):] if text.startswith(prompt) else text
            examples.append({"prompt": prompt, "continuation": continuation.replace("\n", " ").replace("|", "\\|")})
        return examples
    except Exception as error:  # the card is still written; it only leaves out what did not run
        logger.warning("sample completions for the card failed on %s: %s", encoder_dir, error)
        return []


def family_card(contents: RunContents) -> FamilyCard:
    """A text-generation pipeline and text features; ``text`` holds the completions that ran."""
    config = contents.config
    start = getattr(config, "backbone_name_or_path", None)
    summary_note = f"Continued pre-training of `{start}`." if start else None
    images = images_context(contents.run_dir, labelled_embeddings_captions("test texts"))
    eos = "<|endoftext|>"
    tokenizer_file = contents.run_dir / "encoder" / "tokenizer_config.json"
    if tokenizer_file.is_file():
        eos = str(json.loads(tokenizer_file.read_text()).get("eos_token") or eos)
    return FamilyCard(
        pipeline_tag="text-generation",
        tags=("text-generation", "causal-lm"),
        extra_parts="nothing more",
        limitation=LIMITATION,
        images=images,
        backbone={"vocab_size": vocab_size(contents.encoder_config)},
        template={"text": {"prompt_example": PROMPT_EXAMPLE, "examples": json.dumps(EXAMPLE_SENTENCES),
                           "completions": sample_completions(contents.run_dir / "encoder"),
                           "sampling": f"top-k sampling, k = {TOP_K}, {MAX_NEW_TOKENS} new tokens, seed {SEED} per prompt",
                           "max_seq_length": getattr(config, "max_seq_length", None), "eos_token": eos,
                           "head_note": summary_note}},
    )


register_family_card("causal-language-modeling", family_card)
