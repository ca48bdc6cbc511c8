"""Model cards for hfssl runs, rendered from ``model_cards/<family>.md.j2`` with huggingface_hub.

:func:`write_model_card` reads a run directory (:func:`hfssl.hub.run.read_run`: ``config.json``,
``recipe.yaml``, ``eval_results.json``, ``encoder/``, ``images/``; see ARCHITECTURE.md) and writes
``README.md`` with ``huggingface_hub.ModelCard.from_template`` and ``ModelCardData``. Missing
optional parts (no recipe, no evaluation, no pictures) leave their sections out or say what is
missing; nothing is invented.

Where things are:

* this module: the parts every card shares: metadata and ``model-index``
  (:func:`build_eval_results`), the evaluation table, the recipe table, the limitations every
  card has, :func:`validate_card`, and the writers;
* :mod:`hfssl.hub.run`: reading a run directory and naming its data source;
* :mod:`hfssl.hub.cards`: each family's part (pipeline tag, tags, snippets' context, its
  limitation, picture captions), one module per family next to its template;
* :mod:`hfssl.hub.cards.modalities`: what depends on the kind of training data (image rows of the
  recipe table, the data's limitation, "images" or "examples", the model-index task).

Metadata decisions:

* ``library_name: hfssl`` on a run's repo. Its root ``config.json`` has ``model_type:
  hfssl_<method>``, which loads only with hfssl imported; declaring ``transformers`` would make the
  Hub offer an ``AutoModel.from_pretrained(repo)`` snippet that fails without hfssl. The plain
  transformers path (``subfolder="encoder"``) is the first snippet of the card body, and the
  ``transformers`` tag keeps the repo discoverable. A separate encoder repo (``push_run(...,
  encoder_repo_id=...)``) loads at its root with plain transformers, so its card declares
  ``library_name: transformers``; a sentence-embedding encoder (``modules.json`` beside its weights)
  declares ``sentence-transformers``, whose ``SentenceTransformer(repo)`` applies the trained pooling.
* ``datasets``: the training source when it is a Hub dataset id; ``builtin:fashion_mnist`` is
  reported as the Hub's copy of Fashion-MNIST (``zalando-datasets/fashion_mnist``); built-in
  sources with no Hub copy (``builtin:digits``) and local paths are described in the body only.
* ``model-index``: one ``EvalResult`` per metric of every ``results`` entry of
  ``eval_results.json`` (``top1`` -> ``accuracy``, ``top5`` -> ``top_5_accuracy``, ...), values as
  fractions as in the file. Raw-pixel baselines appear only in the body's table.
* ``pipeline_tag`` by family, set by the family's module in :mod:`hfssl.hub.cards`:
  ``image-feature-extraction`` (vision SSL, masked image modelling), ``fill-mask``,
  ``feature-extraction`` (word embeddings), ``zero-shot-image-classification``.
* ``base_model`` only when the config's ``backbone_name_or_path`` is a Hub id.
* ``tags``: ``hfssl``, the method, the family's learning tag (``self-supervised-learning``, or
  ``supervised-learning`` for the supervised baseline, whose card says throughout that it was trained on
  labels), the family's tags, the encoder's ``model_type`` and ``transformers``.

Pictures are drawn by :mod:`hfssl.plots` and the methods' picture hooks; the card links only those
that exist.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results
from transformers import PretrainedConfig

from hfssl.files import atomic_write_text
from hfssl.hub.cards import FamilyCard, family_card
from hfssl.hub.cards.common import LEARNING_TAGS, format_count, format_value, hidden_size
from hfssl.hub.cards.modalities import modality_card
from hfssl.hub.run import (  # noqa: F401 - re-exported: the names callers know from hfssl.hub.card
    BUILTIN_DATASETS,
    DatasetDescription,
    RunContents,
    count_parameters,
    describe_data_source,
    is_hub_id,
    read_run,
    training_data,
)
from hfssl.evaluation.protocols import METRICS, PROTOCOLS, ROW_BOOKKEEPING, CardTable, ProtocolCard, discover_protocols
from hfssl.recipe import Recipe
from hfssl.registry import FAMILIES, MethodSpec

logger = logging.getLogger(__name__)

LIBRARY_NAME = "hfssl"
REQUIRED_TAGS = ("hfssl",)  # and one of LEARNING_TAGS
DEFAULT_ENDPOINT = "https://huggingface.co"

# Files of a run directory that the card describes by name (word vectors, tokenizers).
KNOWN_EXTRA_FILES = {
    "vectors.txt": "the word vectors in word2vec text format (gensim: `KeyedVectors.load_word2vec_format`)",
    "vectors.bin": "the word vectors in word2vec binary format (gensim: `KeyedVectors.load_word2vec_format(binary=True)`)",
    "vocab.txt": "the vocabulary, one token a line",
    "tokenizer.json": "the tokenizer (🤗 tokenizers)",
}
_STANDARD_FILES = {"config.json", "model.safetensors", "model.safetensors.index.json", "recipe.yaml",
                   "eval_results.json", "README.md", "generation_config.json"}

def _architecture(encoder_config: dict[str, Any]) -> str:
    architectures = encoder_config.get("architectures") or []
    if architectures:
        return str(architectures[0])
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    model_type = encoder_config.get("model_type", "")
    return MODEL_MAPPING_NAMES.get(model_type, model_type or "unknown")


def describe_backbone(encoder_config: dict[str, Any]) -> str:
    """A one-line description of an encoder from its config (``ResNet, depths [2, 2], widths [64, 128]``)."""
    parts = []
    keys = (("layer_type", "{} blocks"), ("depths", "depths {}"), ("hidden_sizes", "widths {}"),
            ("patch_size", "{} px patches"), ("hidden_size", "width {}"), ("num_hidden_layers", "{} layers"),
            ("num_attention_heads", "{} heads"), ("vocab_size", "vocabulary {}"))
    for key, pattern in keys:
        value = encoder_config.get(key)
        if value is None or (key == "hidden_size" and "hidden_sizes" in encoder_config):
            continue
        parts.append(pattern.format(format_value(value)))
    model_type = encoder_config.get("model_type", "unknown")
    return f"{model_type}" + (f" ({', '.join(parts)})" if parts else "")


def _backbone_context(contents: RunContents, encoder_parameters: int | None, family: FamilyCard) -> dict[str, Any]:
    """The template's ``backbone``: what every family says about the encoder, plus the family's own entries."""
    encoder_config = contents.encoder_config
    context: dict[str, Any] = {
        "architecture": _architecture(encoder_config),
        "model_type": encoder_config.get("model_type", "unknown"),
        "description": describe_backbone(encoder_config),
        "num_parameters": encoder_parameters,
        "num_parameters_text": format_count(encoder_parameters),
        "hidden_size": hidden_size(encoder_config),
    }
    context.update(family.backbone)
    return context


def _recipe_rows(recipe: Recipe, spec: MethodSpec, backbone_description: str) -> list[tuple[str, str]]:
    """The rows of the card's recipe table: the settings a reader needs to judge and repeat the run."""
    words = modality_card(spec.modality)
    rows: list[tuple[str, str]] = [("method", recipe.method)]
    for key, value in recipe.model.items():
        rows.append((f"model.{key}", backbone_description if key == "backbone_config" else format_value(value)))
    data = recipe.data
    rows += [("data.source", describe_data_source(data.source, data.config_name).name), ("data.train_split", data.train_split)]
    rows += words.data_rows(recipe)
    if data.max_train_samples is not None:
        rows.append(("data.max_train_samples", str(data.max_train_samples)))
    rows += words.views_rows(recipe)
    return rows + _optim_train_rows(recipe)


def _optim_train_rows(recipe: Recipe) -> list[tuple[str, str]]:
    """The recipe-table rows of the ``optim`` and ``train`` sections."""
    optim = recipe.optim
    warmup = f"{optim.warmup_steps} steps" if optim.warmup_steps is not None else f"{optim.warmup_ratio:g} of the steps"
    rows = [("optim.name", optim.name), ("optim.lr", format_value(optim.lr)),
            ("optim.weight_decay", format_value(optim.weight_decay)),
            ("optim.schedule", f"{optim.schedule}, warmup {warmup}")]
    train = recipe.train
    rows.append(("train.batch_size", f"{train.batch_size} per process"))
    if train.gradient_accumulation_steps > 1:
        rows.append(("train.gradient_accumulation_steps", str(train.gradient_accumulation_steps)))
    if train.max_steps is not None:
        rows.append(("train.max_steps", str(train.max_steps)))
    else:
        rows.append(("train.epochs", format_value(train.epochs)))
    for name, changes in train.schedules.items():
        rows.append((f"train.schedules.{name}", format_value(changes)))
    precision = train.mixed_precision or "Accelerate's setting"
    rows.append(("train.mixed_precision", f"{precision} ({train.mixed_precision_reason})" if train.mixed_precision_reason
                 else precision))
    if train.channels_last:
        rows.append(("train.channels_last", "true"))
    if train.compile:
        rows.append(("train.compile", f"true ({train.compile_mode} mode)"))
    rows.append(("train.seed", str(train.seed)))
    return rows


def protocol_card(name: str) -> ProtocolCard:
    """The card part a protocol registered, or one made from its name (results of a protocol not installed here)."""
    discover_protocols()
    if name in PROTOCOLS:
        return PROTOCOLS[name].card_entry
    return ProtocolCard(name.replace("_", " ").capitalize(), f"**{name}**", "feature-extraction", "feature-extraction", ())


def row_settings(entry: dict[str, Any], card: ProtocolCard) -> dict[str, Any]:
    """A row's settings: what is neither bookkeeping nor a metric, scalars only."""
    return {key: value for key, value in entry.items() if key not in ROW_BOOKKEEPING and key not in card.bookkeeping
            and key not in METRICS and not isinstance(value, (dict, list))}


def _protocol_label(entry: dict[str, Any]) -> str:
    card = protocol_card(entry["protocol"])
    label = card.title
    settings = [f"{card.setting_labels.get(key, key)}={format_value(value)}" for key, value in row_settings(entry, card).items()]
    if entry.get("dataset") and isinstance(entry["dataset"], str):
        settings.insert(0, describe_data_source(entry["dataset"]).short)
    return f"{label} ({', '.join(settings)})" if settings else label


def _metric_keys(entries: list[dict[str, Any]]) -> list[str]:
    return [key for key in METRICS if any(isinstance(entry.get(key), (int, float)) for entry in entries)]


def _format_metric(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{100 * value:.1f}" if METRICS[key].percent else f"{value:.3f}"


def _matching_baseline(entry: dict[str, Any], baselines: list[dict[str, Any]]) -> dict[str, Any] | None:
    # Same protocol and, where they matter for the comparison, the same k and dataset; a linear
    # probe's C is chosen per feature set, so it is not matched.
    for baseline in baselines:
        if all(baseline.get(key) == entry.get(key) for key in ("protocol", "k", "dataset")):
            return baseline
    return None


def _table_sections(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Split off the rows of protocols whose card entry renders its own table (``ProtocolCard.table``):
    returns the rows left for the shared table and the Markdown of those sections, in the order the
    protocols first appear."""
    own: dict[str, list[dict[str, Any]]] = {}
    shared = []
    for entry in entries:
        if protocol_card(entry["protocol"]).table is not None:
            own.setdefault(entry["protocol"], []).append(entry)
        else:
            shared.append(entry)
    sections = [_markdown_table(protocol_card(name).table(rows)) for name, rows in own.items()]
    return shared, "".join(sections)


def _markdown_table(table: CardTable) -> str:
    """A protocol's table section: a bold title line, the table and its note."""
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---" if index == 0 else "---:" for index in range(len(table.columns))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n" + "\n".join(lines) + "\n"


def _evaluation_context(contents: RunContents) -> dict[str, Any]:
    results = contents.eval_results
    if not results or not results.get("results"):
        return {"available": False}
    all_entries = results["results"]
    entries, sections_text = _table_sections(all_entries)
    baselines = results.get("baselines") or []
    dataset = describe_data_source(str(results.get("dataset", "unknown")))
    keys = _metric_keys(entries)
    baseline_name = str(baselines[0].get("features", "baseline")).replace("_", " ") if baselines else None
    columns = []
    for key in keys:
        columns.append(f"{METRICS[key].name}, model" if baseline_name else METRICS[key].name)
        if baseline_name:
            columns.append(f"{METRICS[key].name}, {baseline_name}")
    rows = []
    for entry in entries:
        baseline = _matching_baseline(entry, baselines)
        cells = []
        for key in keys:
            cells.append(_format_metric(key, entry.get(key)))
            if baseline_name:
                cells.append(_format_metric(key, baseline.get(key)) if baseline else "-")
        rows.append({"label": _protocol_label(entry), "cells": cells})
    unit = modality_card(contents.spec.modality).unit
    facts = []
    if results.get("num_test") is not None:
        facts.append(f"{results['num_test']:,} {unit}")
    if results.get("num_classes") is not None:
        facts.append(f"{results['num_classes']} classes")
    split = results.get("test_split") or "test"
    setup = f"Test set: the {split} split of {dataset.name}" + (f" ({', '.join(facts)})" if facts else "") + "."
    if results.get("num_train") is not None:
        setup += f" The probes use {results['num_train']:,} {unit} of the {results.get('train_split', 'train')} split."
    if any(METRICS[key].percent for key in _metric_keys(all_entries)):
        setup += " Accuracies in %."
    if baseline_name:
        setup += f" The {baseline_name} columns run the same protocol on {baseline_name} instead of the model's features."
    explained = []
    for entry in all_entries:
        text = protocol_card(entry["protocol"]).explanation
        if text not in explained:
            explained.append(text)
    opening = ("The encoder's frozen features, and the encoder fine-tuned, evaluated with:"
               if any(protocol_card(entry["protocol"]).tuned for entry in all_entries)
               else "Frozen features of the encoder, evaluated with:")
    protocols_text = opening + "\n\n" + "\n".join(f"- {text}" for text in explained) + "\n"
    return {"available": True, "columns": columns, "rows": rows, "setup_text": setup,
            "protocols_text": protocols_text, "split": split, "baseline_name": baseline_name or "none",
            "dataset": dataset, "sections_text": sections_text}


def build_eval_results(contents: RunContents) -> list[EvalResult]:
    """One ``EvalResult`` per metric of every ``results`` entry of ``eval_results.json`` (no baselines)."""
    results = contents.eval_results
    if not results:
        return []
    dataset = describe_data_source(str(results.get("dataset", "unknown")))
    image_tasks = modality_card(contents.spec.modality).image_tasks
    evals = []
    # The model-index groups results by task and data set under one task name: with fine-tuned rows
    # among them it cannot say "frozen features"; each metric's name says its protocol.
    tuned = any(protocol_card(entry["protocol"]).tuned for entry in results.get("results", []))
    qualifier = "" if tuned else " (frozen features)"
    for entry in results.get("results", []):
        protocol = entry["protocol"]
        card = protocol_card(protocol)
        task_type = card.image_task if image_tasks else card.text_task
        entry_dataset = describe_data_source(entry["dataset"]) if isinstance(entry.get("dataset"), str) else dataset
        settings = {key: value for key, value in row_settings(entry, card).items() if isinstance(value, (int, float, str))}
        label = _protocol_label(entry)
        for key in METRICS:
            value = entry.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric_type, metric_name = METRICS[key].type, METRICS[key].name
            evals.append(EvalResult(
                task_type=task_type, task_name=f"{task_type.replace('-', ' ').capitalize()}{qualifier}",
                dataset_type=entry_dataset.dataset_type,
                dataset_name=entry_dataset.name, dataset_config=entry_dataset.config_name,
                dataset_split=entry.get("split") or results.get("test_split"), metric_type=metric_type,
                metric_value=round(float(value), 6), metric_name=f"{label} {metric_name}", metric_config=protocol,
                metric_args=settings or None,
            ))
    return evals


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _limitations(contents: RunContents, data: DatasetDescription, evaluation: dict[str, Any],
                 family: FamilyCard) -> list[str]:
    """The "Limitations" section: shared lines, the training data's line and the family's own."""
    lines = [family.supervision_limitation]
    if contents.recipe is not None:
        lines.append(modality_card(contents.spec.modality).data_limitation(contents.recipe, data))
    if contents.steps is not None and contents.steps < 5000:
        lines.append(f"A short run ({contents.steps:,} optimisation steps), far below the method paper's schedule: the "
                     "numbers show what this recipe reached, not what the method can reach.")
    lines.append(family.limitation)
    if not evaluation.get("available"):
        lines.append("No evaluation is recorded for this model yet.")
    lines.append("Whatever biases the training data has carry over into the representations.")
    return lines


def _extra_files(run_dir: Path) -> list[tuple[str, str]]:
    """The run directory's files beyond the standard ones, each with what it is (word vectors, a tokenizer)."""
    files = []
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and path.name not in _STANDARD_FILES and not path.name.startswith("."):
            files.append((path.name, KNOWN_EXTRA_FILES.get(path.name, "an artifact of the run")))
    return files


def _method_context(spec: MethodSpec, config: PretrainedConfig) -> dict[str, Any]:
    """The template's ``method``: names, paper, whether it has an EMA teacher, its mask ratio."""
    mask_ratio = getattr(config, "mask_ratio", None)
    return {"name": spec.name, "display_name": spec.title, "family": spec.family,
            "paper_title": spec.paper_title, "paper_url": spec.paper_url, "bibtex": spec.bibtex.strip(),
            "has_teacher": bool(getattr(spec.model_class, "teacher_pairs", ())),
            "mask_ratio_text": f"{100 * mask_ratio:.0f} %" if isinstance(mask_ratio, float) else "a fraction"}


def _card_data(contents: RunContents, data: DatasetDescription, model_name: str, family: FamilyCard, *,
               encoder_card: bool) -> ModelCardData:
    """The card's YAML metadata (see the module docstring for the decisions)."""
    spec = contents.spec
    tags = ["hfssl", spec.name, family.learning_tag, *family.tags]
    if contents.encoder_config.get("model_type"):
        tags.append(str(contents.encoder_config["model_type"]))
    if not encoder_card:
        tags.append("transformers")
    base_model = getattr(contents.config, "backbone_name_or_path", None)
    license_name = contents.recipe.hub.license if contents.recipe is not None else None
    eval_results = build_eval_results(contents) or None
    return ModelCardData(
        library_name=family.encoder_library if encoder_card else LIBRARY_NAME,
        license=license_name,
        tags=tags,
        datasets=[data.hub_id] if data.hub_id else None,
        pipeline_tag=family.pipeline_tag,
        base_model=base_model if base_model and is_hub_id(base_model) else None,
        metrics=sorted({result.metric_type for result in eval_results}) if eval_results else None,
        model_name=model_name,
        eval_results=eval_results,
    )


def _repo_context(run_dir: Path, repo_id: str | None, encoder_repo_id: str | None, encoder_card: bool) -> dict[str, Any]:
    """The template's ``repo``: where the snippets load from and the links between run and encoder repos."""
    endpoint = _endpoint()
    return {
        "id": encoder_repo_id if encoder_card else (repo_id or str(run_dir)),
        "is_hub": repo_id is not None,
        "encoder_id": encoder_repo_id,
        "encoder_url": f"{endpoint}/{encoder_repo_id}" if encoder_repo_id else None,
        "parent_id": repo_id or str(run_dir),
        "parent_url": f"{endpoint}/{repo_id}" if repo_id else str(run_dir),
        "local_hint": str(run_dir) if repo_id is None else "RUN_DIR",
    }


def _card_repos(contents: RunContents, repo_id: str | None, encoder_repo_id: str | None,
                encoder_card: bool) -> tuple[str | None, str | None]:
    """The run's and the encoder's repo ids, defaulting to the recipe's ``hub`` section."""
    recipe = contents.recipe
    if repo_id is None and recipe is not None:
        repo_id = recipe.hub.repo_id
    if encoder_repo_id is None and recipe is not None and repo_id == recipe.hub.repo_id:
        encoder_repo_id = recipe.hub.encoder_repo_id
    if encoder_card and not encoder_repo_id:
        raise ValueError("an encoder card needs encoder_repo_id (the repo that holds only the encoder)")
    return repo_id, encoder_repo_id


def _headline(contents: RunContents, data: DatasetDescription, backbone: dict[str, Any],
              family: FamilyCard) -> tuple[str, str]:
    """The card's title and its one-paragraph summary (how it was trained: the family's ``training_text``)."""
    spec = contents.spec
    short_architecture = re.sub(r"Model$", "", backbone["architecture"]) or backbone["model_type"]
    recorded = contents.recipe is not None and bool(contents.recipe.data.source)
    title = f"{spec.title} {short_architecture}" + (f" on {data.short}" if recorded else "")
    summary = (f"A `{backbone['architecture']}` encoder ({backbone['num_parameters_text']} parameters) "
               f"{family.training_text} with **{spec.title}** ([{spec.paper_title}]({spec.paper_url})) on {data.name}, "
               "trained, evaluated and exported with hfssl.")
    return title, summary


def _training_context(contents: RunContents, backbone_description: str) -> dict[str, Any]:
    """The template's ``training``: the recipe (table and YAML) and the length of the run."""
    recipe = contents.recipe
    steps_text = f"{contents.steps:,} optimisation steps" if contents.steps is not None else "steps not recorded"
    if recipe is not None:
        steps_text += f", batch size {recipe.train.batch_size} per process"
    cost = training_cost_text(contents.training)
    if cost:
        steps_text += f"; {cost}"
    return {"has_recipe": recipe is not None, "recipe_yaml": contents.recipe_yaml,
            "recipe_rows": _recipe_rows(recipe, contents.spec, backbone_description) if recipe else [],
            "summary": steps_text}


def training_cost_text(record: dict[str, Any] | None) -> str:
    """``trained in 9.3 minutes on 1 process on 2 cores of AMD EPYC (AVX2), 138 examples/s, float32`` (``training.json``)."""
    if not record or not record.get("seconds"):
        return ""
    processes = int(record.get("processes") or 1)
    where = (f"{processes} x {record.get('device_name') or 'GPU'}" if record.get("device") == "cuda"
             else f"{processes} process{'es' if processes > 1 else ''} on {record.get('cpu_cores', '?')} cores of "
                  f"{record.get('device_name') or 'a CPU'} ({record.get('cpu_capability', '?')})")
    speed = record.get("examples_per_second")
    return (f"trained in {record['seconds'] / 60:.1f} minutes on {where}"
            + (f", {speed:,.0f} examples/s" if speed else "") + f", {_precision_text(record.get('mixed_precision'))}")


def _precision_text(mixed_precision: str | None) -> str:
    return "float32" if mixed_precision in (None, "no") else f"{mixed_precision} mixed precision"


def _card_context(contents: RunContents, family: FamilyCard, data: DatasetDescription) -> dict[str, Any]:
    """The template context every family shares, with the family's parts put in."""
    run_dir, spec = contents.run_dir, contents.spec
    backbone = _backbone_context(contents, count_parameters(run_dir / "encoder"), family)
    evaluation = _evaluation_context(contents)
    method = _method_context(spec, contents.config)
    title, summary = _headline(contents, data, backbone, family)
    labels_note = family.labels_note or data.labels_note
    recipe = contents.recipe
    return {
        "title": title,
        "summary": summary,
        "method": method,
        "backbone": backbone,
        "full_model": {"class_name": spec.model_class.__name__,
                       "num_parameters_text": format_count(count_parameters(run_dir)),
                       "extra_parts": family.extra_parts + (" and an EMA teacher" if method["has_teacher"] else "")},
        "data": {"name": data.name, "description": data.description + (f" {labels_note}" if labels_note else "")
                 + (f" More: <{data.url}>." if data.url and data.hub_id is None else "")},
        "training": _training_context(contents, backbone["description"]),
        "evaluation": evaluation,
        "images": family.images,
        "limitations": _limitations(contents, data, evaluation, family),
        "license": (recipe.hub.license if recipe is not None else None) or "not stated",
        "extra_files": _extra_files(run_dir),
        "hfssl_version": hfssl_version(),
        **family.template,
    }


def build_card(
    run_dir: str | Path, *, repo_id: str | None = None, encoder_repo_id: str | None = None, encoder_card: bool = False
) -> ModelCard:
    """Render the card of a run directory (or, with ``encoder_card``, of its separate encoder repo).

    Args:
        run_dir: an hfssl run directory.
        repo_id: the Hub repo of the run; defaults to the recipe's ``hub.repo_id``. Without either,
            the snippets load from ``run_dir`` itself.
        encoder_repo_id: the separate encoder repo, when the encoder is published on its own.
        encoder_card: render the short card of ``encoder_repo_id`` instead of the run's card.

    Returns:
        The ``huggingface_hub.ModelCard``, already checked by :func:`validate_card`.
    """
    contents = read_run(run_dir)
    repo_id, encoder_repo_id = _card_repos(contents, repo_id, encoder_repo_id, encoder_card)
    data = training_data(contents)
    family = family_card(contents)
    context = _card_context(contents, family, data)
    context["card_kind"] = "encoder" if encoder_card else "run"
    context["repo"] = _repo_context(contents.run_dir, repo_id, encoder_repo_id, encoder_card)
    model_name = (repo_id or str(contents.run_dir.resolve().name)).split("/")[-1]
    card_data = _card_data(contents, data, model_name, family, encoder_card=encoder_card)
    spec = contents.spec
    card = ModelCard.from_template(card_data, template_path=str(template_path(spec.family)), **context)
    validate_card(card, spec)
    return card


def hfssl_version() -> str:
    """The installed hfssl version (``unknown`` outside an installed distribution)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hfssl")
    except PackageNotFoundError:
        return "unknown"


def template_path(family: str) -> Path:
    """The template of a method family (:data:`hfssl.registry.FAMILIES`: shipped in ``hfssl/model_cards`` for
    the built-in families); ``ValueError`` naming the known families."""
    if family not in FAMILIES or not FAMILIES[family].template.is_file():
        raise ValueError(f"no model-card template for family {family!r}; known families: {', '.join(FAMILIES)}")
    return FAMILIES[family].template


def validate_card(card: ModelCard | str, spec: MethodSpec | None = None) -> None:
    """Check a card's metadata with huggingface_hub's own parsers (the offline part of the Hub's checks).

    The YAML block must parse as a mapping, load back into ``ModelCardData`` without
    ``ignore_metadata_errors``, and its ``model-index`` must convert back into ``EvalResult``s;
    the hfssl tags (``hfssl`` and a learning tag, :data:`~hfssl.hub.cards.common.LEARNING_TAGS`), a licence and a
    pipeline tag must be present.

    Args:
        card: a rendered card, or the text of a README.md.
        spec: the method, whose name must be among the tags.

    Raises:
        ValueError: naming the first problem found.
    """
    text = card if isinstance(card, str) else str(card)
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.DOTALL)
    if match is None:
        raise ValueError("the model card has no YAML metadata block between '---' lines at its top")
    metadata = yaml.safe_load(match.group(1))
    if not isinstance(metadata, dict):
        raise ValueError(f"the card's YAML metadata must be a mapping, got {type(metadata).__name__}")
    try:
        parsed = ModelCard(text, ignore_metadata_errors=False).data
    except ValueError as error:
        raise ValueError(f"the card's metadata does not load with huggingface_hub: {error}") from error
    if "model-index" in metadata:
        _, results = model_index_to_eval_results(metadata["model-index"])
        if len(results) != len(parsed.eval_results or []):
            raise ValueError("the card's model-index does not round-trip through huggingface_hub's EvalResult")
    tags = metadata.get("tags") or []
    missing = [tag for tag in (*REQUIRED_TAGS, *([spec.name] if spec else [])) if tag not in tags]
    if not any(tag in tags for tag in LEARNING_TAGS):
        missing.append(" or ".join(LEARNING_TAGS))
    if missing:
        raise ValueError(f"the card's tags lack {missing}")
    for key in ("library_name", "pipeline_tag"):
        if not metadata.get(key):
            raise ValueError(f"the card's metadata has no {key}")


def write_model_card(
    run_dir: str | Path,
    *,
    repo_id: str | None = None,
    encoder_repo_id: str | None = None,
    output_path: str | Path | None = None,
) -> Path:
    """Render ``run_dir/README.md`` (or ``output_path``) from the family's template.

    Args:
        run_dir: an hfssl run directory (``config.json`` at least; ``recipe.yaml``,
            ``eval_results.json``, ``encoder/`` and ``images/`` are described when present).
        repo_id: the Hub repo the card is for (fills the loading snippets); defaults to the
            recipe's ``hub.repo_id``, else the snippets load from ``run_dir``.
        encoder_repo_id: the encoder's own repo, when it is published separately.
        output_path: where to write; ``run_dir/README.md`` by default. ``hfssl push`` writes to a
            staging folder so that the run directory is never modified.

    Returns:
        The path written.
    """
    card = build_card(run_dir, repo_id=repo_id, encoder_repo_id=encoder_repo_id)
    path = Path(output_path) if output_path is not None else Path(run_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a crash or a full disk never leaves a half-written card in place of the last good one.
    atomic_write_text(path, str(card), "model card")
    logger.info("wrote the model card %s", path)
    return path


def write_encoder_card(run_dir: str | Path, output_path: str | Path, *, repo_id: str, encoder_repo_id: str) -> Path:
    """Write the short card of a separate encoder repo (``library_name: transformers``) to ``output_path``."""
    card = build_card(run_dir, repo_id=repo_id, encoder_repo_id=encoder_repo_id, encoder_card=True)
    path = Path(output_path)
    path.write_text(str(card), encoding="utf-8")
    return path
