"""The SimCSE card's picture: cosine similarities between the embeddings of fixed example sentences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hfssl.plots import Picture, figure, register_picture

SIMILARITY_FILE = "sentence_similarity.png"
#: Pairs of sentences on one topic each (sport, business, science, politics): a good sentence encoder puts the
#: two of a pair closer to each other than to the others.
EXAMPLE_SENTENCES = (
    "The striker scored twice in the second half.",
    "The team won the cup final after extra time.",
    "Shares fell sharply after the quarterly results.",
    "The bank raised interest rates by half a point.",
    "The telescope observed light from a distant galaxy.",
    "Astronomers discovered a planet orbiting another star.",
    "The parliament passed the new election law.",
    "The minister resigned after the vote.",
)

register_picture(Picture(
    SIMILARITY_FILE, "Cosine similarity matrix of example sentence embeddings",
    "Cosine similarities between the embeddings of eight fixed sentences, two per topic (sport, business, "
    "science, politics), computed by the trained encoder when the card was written.",
    heading="Sentence similarities", order=20))


def draw_similarity_matrix(model: Any, context: Any) -> list[Path]:
    """``MethodSpec.pictures`` of SimCSE: ``images/sentence_similarity.png`` (needs the run's tokenizer)."""
    images_dir = Path(context.images_dir)
    tokenizer = model.get_tokenizer(images_dir.parent)
    if tokenizer is None:
        return []
    batch = tokenizer(list(EXAMPLE_SENTENCES), padding=True, truncation=True, max_length=model.config.max_seq_length,
                      return_tensors="pt", return_token_type_ids=False).to(model.device)
    with torch.no_grad():
        embeddings = torch.nn.functional.normalize(model.eval().get_embeddings(**batch).float(), dim=1)
    similarity = (embeddings @ embeddings.T).cpu().numpy()
    fig = figure(6.5, 5.5)
    axes = fig.add_subplot(1, 1, 1)
    image = axes.imshow(similarity, vmin=-1, vmax=1, cmap="RdBu_r")
    labels = [sentence if len(sentence) < 40 else sentence[:37] + "..." for sentence in EXAMPLE_SENTENCES]
    axes.set_xticks(range(len(labels)), [str(index + 1) for index in range(len(labels))])
    axes.set_yticks(range(len(labels)), [f"{index + 1}. {label}" for index, label in enumerate(labels)], fontsize=7)
    for row in range(len(labels)):
        for column in range(len(labels)):
            axes.text(column, row, f"{similarity[row, column]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=axes, fraction=0.046)
    fig.tight_layout()
    path = images_dir / SIMILARITY_FILE
    fig.savefig(path, dpi=100, metadata={"Description": "hfssl sentence_similarity"})
    return [path]
