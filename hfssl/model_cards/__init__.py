"""Model-card templates, one per method family, rendered by :mod:`hfssl.hub.card`.

Each ``<family>.md.j2`` is a Jinja2 template for ``huggingface_hub.ModelCard.from_template``: it
starts with the YAML block (``{{ card_data }}``, built from ``ModelCardData``) and lays out the
body from the context that :func:`hfssl.hub.card.build_card` gathers from a run directory: the
shared parts from :mod:`hfssl.hub.card`, the family's own (``text``, ``preprocessing``, pooling
snippets, picture captions) from its module in :mod:`hfssl.hub.cards` (``hfssl/hub/cards/<family>.py``,
the family name with underscores). This package holds templates only and imports no hub code. Every
template renders two kinds of card, chosen by ``card_kind``:

* ``"run"``: the full card of a run directory / Hub repo (full SSL model at the root, the
  plain-transformers encoder in ``encoder/`` or in its own repo);
* ``"encoder"``: the short card of a separate encoder repo whose root loads with plain
  transformers, pointing back to the run's repo.

Families (``MethodSpec.family``, registered in :data:`hfssl.registry.FAMILIES`): one per template shipped
here (``vision-ssl``, ``masked-image-modeling``, ``masked-language-modeling``, ``word-embeddings``,
``image-text``, ``supervised`` for the supervised baseline, ...); an installed package registers its own family with its template path.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent

def builtin_templates() -> dict[str, Path]:
    """The shipped templates by family name (``vision-ssl.md.j2`` -> ``vision-ssl``): hfssl's built-in families,
    which :mod:`hfssl.registry` registers."""
    return {path.name.removesuffix(".md.j2"): path for path in sorted(TEMPLATE_DIR.glob("*.md.j2"))}
