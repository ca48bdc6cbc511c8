"""Evaluation protocols register themselves: one module per protocol in this package (or in an installed
package, through the ``hfssl.protocols`` entry point), each declaring a :class:`Protocol`.

A protocol declares everything the rest of hfssl needs to know about it:

* ``name``: what recipes (``eval.protocols``) and ``hfssl eval --protocol`` use;
* ``needs``: the capabilities the evaluated model must provide (:data:`hfssl.registry.CAPABILITIES`): a
  recipe asking for a protocol its model cannot serve is refused before training starts
  (:func:`hfssl.evaluation.runner.check_eval_config`);
* ``settings``: a dataclass read from the recipe's ``eval.<name>`` mapping, checked like every recipe section;
* ``run(context, settings) -> rows``: result rows with the protocol's own metric names (accuracies as
  fractions in [0, 1]); rows of feature protocols carry ``"features": "model"`` or a baseline's name;
* ``data``: which data it reads (``image``, ``text``, ``image-text``, or ``None`` when it brings its own:
  word similarity): ``hfssl eval`` builds the data section from it;
* ``held_out``: whether it measures on the held-out split of the run's data (skipped at the end of a
  run whose data has none);
* ``card``: its part of the model card (:class:`ProtocolCard`: title, explanation, model-index task types,
  metric names, how its settings are labelled, and optionally ``table``: a hook that turns its rows into a
  table section of its own (:class:`CardTable`, the per-layer probe's layer x accuracy table) instead of
  rows of the shared evaluation table);
* ``pictures``: the pictures it draws (:class:`hfssl.plots.Picture`, found by the card by file name) and
  ``draw(context, images_dir) -> [Path]`` to draw them.

Adding a protocol: a module here (or in your own package, listed under the ``hfssl.protocols`` entry point)
that calls :func:`register_protocol`. Nothing else changes: the CLI's lists, ``hfssl eval --help``, the card's
tables and the end of a run read this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hfssl.data.config import IMAGE, IMAGE_TEXT, TEXT
from hfssl.plots import Picture
from hfssl.registry import CAPABILITIES, IMAGE_FEATURES, import_plugins

if TYPE_CHECKING:
    from hfssl.evaluation.context import EvaluationContext

Rows = list[dict[str, Any]]
Score = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any, int], Rows]
#: The kinds of data a protocol may read.
DATA_KINDS = (IMAGE, TEXT, IMAGE_TEXT)
_ALL = object()
#: Entry-point group of protocols that other installed distributions add.
ENTRY_POINT_GROUP = "hfssl.protocols"


@dataclass(frozen=True)
class Metric:
    """A metric of result rows: the row key, its model-index ``type``, a readable name, shown in % or not."""

    key: str
    type: str
    name: str
    percent: bool


TOP1 = Metric("top1", "accuracy", "top-1 accuracy", True)
TOP5 = Metric("top5", "top_5_accuracy", "top-5 accuracy", True)
ACCURACY = Metric("accuracy", "accuracy", "accuracy", True)
F1 = Metric("f1", "f1", "F1", True)
SPEARMAN = Metric("spearman", "spearmanr", "Spearman correlation", False)
PEARSON = Metric("pearson", "pearsonr", "Pearson correlation", False)
RECALL_AT_1 = Metric("recall_at_1", "recall", "recall@1", True)
RECALL_AT_5 = Metric("recall_at_5", "recall", "recall@5", True)
PERPLEXITY = Metric("perplexity", "perplexity", "perplexity", False)
RECALL_AT_10 = Metric("recall_at_10", "recall", "recall@10", True)
#: Every metric by row key, in the order cards show their columns; protocols' own metrics are added on registration.
METRICS: dict[str, Metric] = {metric.key: metric for metric in (
    TOP1, TOP5, ACCURACY, F1, SPEARMAN, PEARSON, RECALL_AT_1, RECALL_AT_5, PERPLEXITY, RECALL_AT_10)}
#: Row keys that are neither settings nor metrics (where a row was measured, counts, diagnostics, bookkeeping).
ROW_BOOKKEEPING = frozenset({"protocol", "features", "dataset", "split", "num_train", "num_test", "num_classes",
                             "masked_tokens", "tokens", "loss", "mlm_head", "model_dir", "steps", "ci95",
                             "num_labelled", "queries"})


@dataclass(frozen=True)
class CardTable:
    """A protocol's own table section of the model card (the card renders it; it names no protocol).

    Attributes:
        title: the section's heading (``Linear probe per layer``).
        columns: the column headers.
        rows: one list of cell strings per row, as many as ``columns``.
        note: a Markdown line under the table (what the rows are, how they were measured).
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""

    def __post_init__(self) -> None:
        bad = [row for row in self.rows if len(row) != len(self.columns)]
        if bad:
            raise ValueError(f"card table {self.title!r}: rows must have {len(self.columns)} cells "
                             f"({', '.join(self.columns)}), got {bad[0]!r}")


@dataclass(frozen=True)
class ProtocolCard:
    """A protocol's part of the model card.

    Attributes:
        title: how the evaluation table names it (``kNN``).
        explanation: the Markdown line under the table that says what it measures.
        image_task / text_task: the model-index task type when the run's data are images / texts.
        metrics: the metrics its rows hold (the shared ones above, or its own).
        setting_labels: short labels of settings in the table (``{"temperature": "T"}``).
        bookkeeping: its row keys that are neither settings nor metrics, beyond :data:`ROW_BOOKKEEPING`.
        tuned: its rows measure a trained classifier, not frozen features (fine-tuning).
        chosen: its settings that the protocol picks itself for each feature set (the linear probe's ``C``, on a
            validation split): shown in the card, never used to match rows of different runs (``hfssl compare``).
        table: ``(rows) -> CardTable`` (the protocol's ``eval_results.json`` rows, baselines left out):
            its rows are shown in this table section of their own instead of the shared evaluation
            table (the model-index still lists every row); ``None``: rows of the shared table.
    """

    title: str
    explanation: str
    image_task: str = "image-classification"
    text_task: str = "text-classification"
    metrics: tuple[Metric, ...] = (TOP1, TOP5)
    setting_labels: dict[str, str] = field(default_factory=dict)
    bookkeeping: tuple[str, ...] = ()
    tuned: bool = False
    chosen: tuple[str, ...] = ()
    table: Callable[[Rows], CardTable] | None = None


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol; see the module docstring.

    Attributes:
        name: the name in ``eval.protocols`` and ``--protocol``.
        needs: capabilities the evaluated model must provide.
        run: ``(context, settings) -> rows``.
        settings: the dataclass of its settings (``None``: it has none).
        description: one line for ``hfssl eval --help`` and error messages.
        score: for feature protocols, the function on ``(N, D)`` features (else ``None``).
        data: the kind of data it reads (``image``, ``text``, ``image-text``), ``None`` for none.
        held_out: it measures on the held-out split of the run's data.
        card: its part of the model card (default: its name and description).
        pictures: the pictures it draws, for the card.
        draw: ``(context, images_dir) -> [Path]`` drawing them after it ran (``None``: nothing to draw).
    """

    name: str
    needs: tuple[str, ...]
    run: Callable[[EvaluationContext, Any], Rows]
    settings: type | None = None
    description: str = ""
    score: Score | None = None
    data: str | None = IMAGE
    held_out: bool = False
    card: ProtocolCard | None = None
    pictures: tuple[Picture, ...] = ()
    draw: Callable[[EvaluationContext, Path], list[Path]] | None = None

    def __post_init__(self) -> None:
        unknown = [need for need in self.needs if need not in CAPABILITIES]
        if unknown:
            raise ValueError(f"protocol {self.name!r}: unknown needs {unknown}; known capabilities: "
                             f"{', '.join(CAPABILITIES)}")
        if self.data is not None and self.data not in DATA_KINDS:
            raise ValueError(f"protocol {self.name!r}: data must be one of {', '.join(DATA_KINDS)} or None, got {self.data!r}")

    @property
    def card_entry(self) -> ProtocolCard:
        """Its card part, or one made from its name and description."""
        if self.card is not None:
            return self.card
        return ProtocolCard(self.name.replace("_", " ").replace("-", " ").capitalize(),
                            f"**{self.name}**" + (f": {self.description}" if self.description else ""),
                            "feature-extraction", "feature-extraction", ())


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add (or replace) a protocol and its metrics; returns it."""
    PROTOCOLS[protocol.name] = protocol
    for metric in protocol.card_entry.metrics:
        METRICS.setdefault(metric.key, metric)
    return protocol


def unregister_protocol(name: str) -> None:
    """Remove a protocol (tests that register throw-away protocols)."""
    PROTOCOLS.pop(name, None)


_discovered = False


def discover_protocols() -> dict[str, Protocol]:
    """Import every protocol module of this package and every ``hfssl.protocols`` entry point (once)."""
    global _discovered
    if _discovered:
        return PROTOCOLS
    _discovered = True
    import_plugins(__name__, ENTRY_POINT_GROUP, "protocol")
    return PROTOCOLS


def available_protocols(data: Any = _ALL) -> list[str]:
    """Names of every registered protocol, or of those that read ``data`` (``image``, ``text``, ...)."""
    discover_protocols()
    return sorted(name for name, protocol in PROTOCOLS.items() if data is _ALL or protocol.data == data)


def get_protocol(name: str) -> Protocol:
    """Look up a protocol by name, with the list of known ones in the error."""
    discover_protocols()
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; known protocols: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def feature_protocol(name: str, score: Score, settings: type, description: str, card: ProtocolCard,
                     pictures: tuple[Picture, ...] = ()) -> Protocol:
    """A protocol on frozen image features: ``score`` on the model's features, and on raw pixels
    when ``eval.baselines`` is set; probes' test predictions go to the context (confusion matrices)."""

    def run(context: EvaluationContext, options: Any) -> Rows:
        features = context.image_features()
        rows = [{"features": "model", **row} for row in score(*features.as_tuple(), options, context.num_classes)]
        for row in rows:
            predictions = row.pop("predictions", None)
            if predictions is not None:
                context.record_predictions(probe_label(name, row), predictions, features.test_labels)
        if context.eval_config.baselines:
            rows += [{"features": "raw_pixels", **row}
                     for row in score(*context.raw_pixel_features().as_tuple(), options, context.num_classes)]
            for row in rows:
                row.pop("predictions", None)
        return rows

    return Protocol(name, (IMAGE_FEATURES,), run, settings, description, score, data=IMAGE, held_out=True,
                    card=card, pictures=pictures)


def probe_label(name: str, row: dict[str, Any]) -> str:
    """A file-name-safe label of one probe's row: ``linear``, ``linear-fraction-0.01``, ``finetune-random``,
    ``finetune-freeze-2`` (the stem and two stages frozen)."""
    label = name
    if row.get("init", "pretrained") != "pretrained":
        label += f"-{row['init']}"
    if row.get("freeze_stages"):
        label += f"-freeze-{row['freeze_stages']}"
    if row.get("label_fraction") is not None:
        label += f"-fraction-{row['label_fraction']:g}"
    return label


discover_protocols()

__all__ = ["ACCURACY", "CardTable", "DATA_KINDS", "METRICS", "Metric", "PROTOCOLS", "Protocol", "ProtocolCard", "ROW_BOOKKEEPING", "TOP1", "TOP5",
           "available_protocols", "discover_protocols", "feature_protocol", "get_protocol", "probe_label",
           "register_protocol", "unregister_protocol"]
