"""``hfssl compare RUN... --output DIR``: runs side by side, in one table and a few plots.

:func:`collect_runs` reads each run folder (a folder of runs, such as a sweep's, stands for the runs in
it): its resolved ``recipe.yaml``, ``eval_results.json`` (model rows and the raw-pixel / TF-IDF
baselines), ``training.json`` (what training cost: :mod:`hfssl.training.record`), the parameters of its
exported encoder and the online kNN curve of its TensorBoard logs. :func:`build_comparison` makes
the table:

* the settings that differ between the runs (recipe keys, dotted), the method first;
* one column per result that the runs share by protocol and settings (``kNN k=20 top-1``): a
  protocol's own choices per feature set (the linear probe's ``C``, ``ProtocolCard.chosen``) do not
  split columns, and the headline metric of the row is shown (the first of its card's metrics);
* cost: steps, training minutes, examples/s, the main process's cores used, the device, encoder
  parameters;
* runs that differ only in ``train.seed`` are one row: mean +- sample standard deviation over the
  seeds, with ``n`` (every run is still listed in the per-run table);
* baselines (the same protocol and settings on raw pixels or TF-IDF) as rows of their own.

:func:`write_report` writes ``compare.md`` (Markdown, pictures under ``images/``), ``compare.html``
(one self-contained page: the pictures embedded as data URIs, the tables sortable by clicking a column
header, no external file or network access) and ``compare.json`` (the table as data). The pictures:
accuracy against training minutes, against steps (with the online kNN and zero-shot curves), against label
fraction, against encoder parameters, and each run's cost.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hfssl.evaluation.protocols import METRICS, Metric
from hfssl.files import atomic_write_text
from hfssl.hub.card import protocol_card, row_settings
from hfssl.hub.run import count_parameters, read_json
from hfssl.plots import figure, read_scalars
from hfssl.recipe import ZERO_SHOT_METRIC
from hfssl.settings import RecipeError
from hfssl.training.record import TRAINING_RECORD_FILE

REPORT_FILES = ("compare.md", "compare.html", "compare.json")
SEED_KEY = "train.seed"
#: Recipe keys that never make two runs different experiments (where the logs go, how often they are written).
_NOT_SETTINGS = ("train.trackers", "train.progress_bar", "train.log_every", "train.checkpoint_every",
                 "train.keep_checkpoints", "eval.")
#: The curves of evaluation during training drawn against the steps: online kNN and online zero-shot top-1.
_CURVE_PREFIXES = ("knn/top1", ZERO_SHOT_METRIC)


@dataclass
class RunSummary:
    """One run as the comparison sees it."""

    name: str
    path: Path
    method: str
    settings: dict[str, Any]
    results: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    dataset: str | None
    training: dict[str, Any] | None
    parameters: int | None
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def minutes(self) -> float | None:
        return self.training["seconds"] / 60 if self.training and self.training.get("seconds") else None

    @property
    def steps(self) -> int | None:
        if self.training and self.training.get("steps") is not None:
            return int(self.training["steps"])
        value = self.settings.get("train.max_steps")
        return int(value) if isinstance(value, int) else None


@dataclass(frozen=True)
class Column:
    """A result the runs share: a protocol with its settings, and the metric shown."""

    key: str
    label: str
    protocol: str
    settings: tuple[tuple[str, Any], ...]
    metric: Metric

    @property
    def fraction(self) -> float | None:
        """The label fraction of the result (1.0 when it has none)."""
        for key, value in self.settings:
            if "fraction" in key and isinstance(value, (int, float)):
                return float(value)
        return None


@dataclass
class Comparison:
    runs: list[RunSummary]
    differing: list[str]
    columns: list[Column]
    groups: list[list[RunSummary]]
    baselines: list[tuple[str, dict[str, float]]]  # (features, column key -> value)

    def value(self, run: RunSummary, column: Column) -> float | None:
        for row in run.results:
            if _column_key(row) == column.key:
                value = row.get(column.metric.key)
                return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
        return None


# ---- reading runs ------------------------------------------------------------------------------


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """The run folders ``paths`` name: each a run (``recipe.yaml`` and ``config.json``), or a folder whose
    sub-folders hold runs (a sweep). A path that is neither is refused with what it lacks."""
    runs: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder: pass hfssl run folders (the --output-dir of `hfssl "
                                    "train`) or a folder of runs (the output of `hfssl sweep`)")
        if _is_run(path):
            runs.append(path)
            continue
        inside = sorted(child for child in path.iterdir() if child.is_dir() and _is_run(child))
        plan = path / "sweep.json"  # a sweep's runs in the order of its plan
        if plan.is_file():
            order = [str(run.get("name")) for run in json.loads(plan.read_text()).get("runs", [])]
            inside.sort(key=lambda child: order.index(child.name) if child.name in order else len(order))
        if not inside:
            raise FileNotFoundError(f"{path} holds no finished hfssl run: a run folder has recipe.yaml and config.json "
                                    "(written when training ends); neither it nor its sub-folders have them")
        runs.extend(inside)
    unique = list(dict.fromkeys(path.resolve() for path in runs))
    if not unique:
        raise RecipeError("hfssl compare needs at least one run folder")
    return unique


def _is_run(path: Path) -> bool:
    return (path / "recipe.yaml").is_file() and (path / "config.json").is_file()


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def read_run_summary(path: Path, name: str | None = None) -> RunSummary:
    """One run folder's summary (see the module docstring); what it lacks is left empty."""
    recipe = yaml.safe_load((path / "recipe.yaml").read_text()) or {}
    if not isinstance(recipe, dict) or "method" not in recipe:
        raise ValueError(f"{path / 'recipe.yaml'} is not an hfssl recipe (no method): pass hfssl run folders")
    settings = _flatten({key: value for key, value in recipe.items() if key != "method"})
    results: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    dataset = None
    if (path / "eval_results.json").is_file():
        data = read_json(path / "eval_results.json")
        results = [row for row in data.get("results", []) if row.get("features", "model") == "model"]
        baselines = list(data.get("baselines", []))
        dataset = data.get("dataset")
    training = read_json(path / TRAINING_RECORD_FILE) if (path / TRAINING_RECORD_FILE).is_file() else None
    encoder = path / "encoder"
    parameters = count_parameters(encoder) if encoder.is_dir() else None
    return RunSummary(name or path.name, path, str(recipe["method"]), settings, results, baselines,
                      dataset or settings.get("data.source"), training, parameters,
                      read_scalars(path / "logs", tags=(), prefixes=_CURVE_PREFIXES))


def collect_runs(paths: Iterable[str | Path]) -> list[RunSummary]:
    """Every run ``paths`` name (:func:`find_runs`), read; runs of the same folder name get their parent's too."""
    folders = find_runs(paths)
    names = [folder.name for folder in folders]
    duplicated = {name for name in names if names.count(name) > 1}
    return [read_run_summary(folder, f"{folder.parent.name}/{folder.name}" if folder.name in duplicated else None)
            for folder in folders]


# ---- the table ---------------------------------------------------------------------------------


def _column_settings(row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    card = protocol_card(row["protocol"])
    settings = row_settings(row, card)
    if isinstance(row.get("dataset"), str):
        settings = {"dataset": row["dataset"], **settings}
    return tuple((key, value) for key, value in settings.items() if key not in card.chosen)


def _column_key(row: dict[str, Any]) -> str:
    return json.dumps([row["protocol"], _column_settings(row)], default=str)


def _headline_metric(row: dict[str, Any]) -> Metric | None:
    card = protocol_card(row["protocol"])
    for metric in (*card.metrics, *METRICS.values()):
        value = row.get(metric.key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return metric
    return None


def _format_setting(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_format_setting(item) for item in value) + "]"
    return str(value)


def result_columns(runs: Sequence[RunSummary]) -> list[Column]:
    """One column per (protocol, settings) result of any run, in the order the runs first report them."""
    columns: dict[str, Column] = {}
    for run in runs:
        for row in run.results:
            key = _column_key(row)
            metric = _headline_metric(row)
            if key in columns or metric is None:
                continue
            card = protocol_card(row["protocol"])
            settings = _column_settings(row)
            shown = " ".join(f"{card.setting_labels.get(name, name)}={_format_setting(value)}" for name, value in settings)
            label = f"{card.title}{' ' + shown if shown else ''} {metric.name}"
            columns[key] = Column(key, label, row["protocol"], settings, metric)
    return list(columns.values())


def differing_settings(runs: Sequence[RunSummary]) -> list[str]:
    """Recipe keys whose values are not the same in every run (``train.seed`` included), in recipe order; a key
    one run lacks is equal to a null one."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.settings))
    differing = []
    for key in keys:
        if key.startswith(_NOT_SETTINGS):
            continue
        # A key a run's recipe lacks (written by an hfssl before the key existed) counts as its default, null.
        values = {json.dumps(run.settings.get(key), default=str) for run in runs}
        if len(values) > 1:
            differing.append(key)
    return differing


def _group_runs(runs: Sequence[RunSummary], differing: Sequence[str]) -> list[list[RunSummary]]:
    """Runs whose differing settings are equal but for the seed, together (in the order of their first run)."""
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        identity = json.dumps([run.method, *[run.settings.get(key) for key in differing if key != SEED_KEY]],
                              default=str)
        groups.setdefault(identity, []).append(run)
    return list(groups.values())


def build_comparison(runs: Sequence[RunSummary]) -> Comparison:
    runs = list(runs)
    differing = differing_settings(runs)
    columns = result_columns(runs)
    baselines: dict[str, dict[str, float]] = {}
    keys = {column.key: column for column in columns}
    for run in runs:
        for row in run.baselines:
            key = _column_key(row)
            column = keys.get(key)
            value = row.get(column.metric.key) if column else None
            if column is not None and isinstance(value, (int, float)):
                baselines.setdefault(str(row.get("features")), {}).setdefault(key, float(value))
    return Comparison(runs, differing, columns, _group_runs(runs, differing), sorted(baselines.items()))


# ---- cells -------------------------------------------------------------------------------------


def _metric_text(values: Sequence[float], metric: Metric) -> str:
    if not values:
        return "-"
    scale = 100.0 if metric.percent else 1.0
    digits = 1 if metric.percent else 3
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    spread = statistics.stdev(values) * scale
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if present else None


def _device_text(training: dict[str, Any] | None) -> str:
    if not training:
        return "-"
    name = training.get("device_name") or training.get("device", "")
    if training.get("device") == "cpu":
        return f"{training.get('cpu_cores', '?')} cores of {name}, {training.get('cpu_capability', '?')}"
    return f"{training.get('processes', 1)}x {name}"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _parameters_text(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}k"


def _shown_path(path: Path) -> str:
    """A run's folder relative to the working directory when it lies below it (reports stay portable)."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _without_seed(name: str) -> str:
    """A sweep's run name without its seed (``lr=0.1_seed=0`` -> ``lr=0.1``)."""
    return re.sub(r"_?seed=\d+$", "", name) or name


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    sort_values: list[list[float | str]]  # what a click on the column header sorts by


def group_table(comparison: Comparison) -> Table:
    """One row per group of runs (mean ± sd over seeds), then the baselines."""
    settings = [key for key in comparison.differing if key != SEED_KEY]
    headers = ["run", "method", *settings, *(column.label for column in comparison.columns),
               "n", "steps", "train min", "examples/s", "cores used", "device", "encoder params"]
    rows: list[list[str]] = []
    sorts: list[list[float | str]] = []
    for group in comparison.groups:
        first = group[0]
        name = first.name if len(group) == 1 else f"{_without_seed(first.name)} ({len(group)} seeds)"
        cells: list[str] = [name, first.method, *(_format_setting(first.settings.get(key, "-")) for key in settings)]
        keys: list[float | str] = list(cells)
        for column in comparison.columns:
            values = [value for value in (comparison.value(run, column) for run in group) if value is not None]
            cells.append(_metric_text(values, column.metric))
            keys.append(statistics.fmean(values) if values else -math.inf)
        minutes = _mean([run.minutes for run in group])
        speed = _mean([run.training.get("examples_per_second") if run.training else None for run in group])
        cores = _mean([run.training.get("cores_used") if run.training else None for run in group])
        steps = first.steps
        cost = [str(len(group)), "-" if steps is None else f"{steps:,}", _number(minutes, 2), _number(speed, 0),
                _number(cores, 2), _device_text(first.training), _parameters_text(first.parameters)]
        cells += cost
        keys += [len(group), steps if steps is not None else -math.inf, minutes if minutes is not None else math.inf,
                 speed if speed is not None else -math.inf, cores if cores is not None else -math.inf,
                 cost[5], first.parameters if first.parameters is not None else -math.inf]
        rows.append(cells)
        sorts.append(keys)
    for features, values in comparison.baselines:
        cells = [f"baseline: {features}", "-", *("-" for _ in settings)]
        keys = list(cells)
        for column in comparison.columns:
            value = values.get(column.key)
            cells.append(_metric_text([value] if value is not None else [], column.metric))
            keys.append(value if value is not None else -math.inf)
        cells += ["-"] * 7
        keys += [-math.inf] * 7
        rows.append(cells)
        sorts.append(keys)
    return Table(headers, rows, sorts)


def run_table(comparison: Comparison) -> Table:
    """Every run with its seed, folder and headline results."""
    headers = ["run", "folder", *comparison.differing, *(column.label for column in comparison.columns),
               "train min", "examples/s"]
    rows, sorts = [], []
    for run in comparison.runs:
        cells = [run.name, _shown_path(run.path), *(_format_setting(run.settings.get(key, "-")) for key in comparison.differing)]
        keys: list[float | str] = list(cells)
        for column in comparison.columns:
            value = comparison.value(run, column)
            cells.append(_metric_text([value] if value is not None else [], column.metric))
            keys.append(value if value is not None else -math.inf)
        speed = run.training.get("examples_per_second") if run.training else None
        cells += [_number(run.minutes, 2), _number(speed, 0)]
        keys += [run.minutes if run.minutes is not None else math.inf, speed if speed is not None else -math.inf]
        rows.append(cells)
        sorts.append(keys)
    return Table(headers, rows, sorts)


# ---- pictures ----------------------------------------------------------------------------------


def _plotted_columns(comparison: Comparison, limit: int = 6) -> list[Column]:
    """The percent-valued columns of frozen-feature and tuned protocols, at most ``limit``."""
    return [column for column in comparison.columns if column.metric.percent][:limit]


def _scatter(comparison: Comparison, x_of, x_label: str, title: str, path: Path, log_x: bool = False) -> Path | None:
    columns = _plotted_columns(comparison)
    points = [(column, [(x_of(run), comparison.value(run, column), run.name) for run in comparison.runs])
              for column in columns]
    points = [(column, [(x, y, name) for x, y, name in series if x is not None and y is not None])
              for column, series in points]
    points = [(column, series) for column, series in points if series]
    if not points:
        return None
    fig = figure(7.5, 4.5)
    axes = fig.add_subplot(1, 1, 1)
    markers = "os^Dvx"
    for index, (column, series) in enumerate(points):
        axes.scatter([x for x, _, _ in series], [100 * y for _, y, _ in series], label=column.label,
                     marker=markers[index % len(markers)], alpha=0.8)
    if len(comparison.runs) <= 12:
        for x, y, name in points[0][1]:
            axes.annotate(name, (x, 100 * y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel("%")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _steps_plot(comparison: Comparison, path: Path) -> Path | None:
    """Online kNN and zero-shot curves over the steps, with each run's final results at its last step."""
    curves = [(run, tag, values) for run in comparison.runs for tag, values in run.curves.items() if values]
    columns = _plotted_columns(comparison, limit=2)
    finals = [(run, column, run.steps, comparison.value(run, column)) for run in comparison.runs for column in columns]
    finals = [item for item in finals if item[2] is not None and item[3] is not None]
    if not curves and not finals:
        return None
    fig = figure(7.5, 4.5)
    axes = fig.add_subplot(1, 1, 1)
    for run, tag, values in curves:
        axes.plot([step for step, _ in values], [100 * value for _, value in values], label=f"{run.name} {tag}",
                  linewidth=1)
    for index, column in enumerate(columns):
        chosen = [(steps, value) for _, item_column, steps, value in finals if item_column == column]
        if chosen:
            axes.scatter([steps for steps, _ in chosen], [100 * value for _, value in chosen],
                         marker="os"[index], label=f"end of run: {column.label}", zorder=3)
    axes.set_xlabel("training steps")
    axes.set_ylabel("%")
    axes.set_title("Accuracy against training steps (lines: online kNN / zero-shot during training)")
    axes.grid(alpha=0.3)
    if len(curves) + len(columns) <= 14:
        axes.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _fraction_plot(comparison: Comparison, path: Path) -> Path | None:
    """Results at several label fractions: one line per run and protocol."""
    by_protocol: dict[tuple[str, tuple[tuple[str, Any], ...]], list[Column]] = {}
    for column in comparison.columns:
        if column.fraction is None or not column.metric.percent:
            continue
        rest = tuple(item for item in column.settings if "fraction" not in item[0])
        by_protocol.setdefault((column.protocol, rest), []).append(column)
    # A protocol's rows without a fraction are its all-labels rows.
    for (protocol, rest), columns in by_protocol.items():
        for column in comparison.columns:
            if column.protocol == protocol and column.fraction is None and column.settings == rest \
                    and column.metric.percent:
                columns.append(column)
    lines = []
    for (protocol, _), columns in by_protocol.items():
        for run in comparison.runs:
            points = sorted((column.fraction if column.fraction is not None else 1.0, comparison.value(run, column))
                            for column in columns)
            points = [(x, y) for x, y in points if y is not None]
            if len(points) > 1:
                lines.append((f"{run.name} {protocol_card(protocol).title}", points))
    if not lines:
        return None
    fig = figure(7.5, 4.5)
    axes = fig.add_subplot(1, 1, 1)
    for label, points in lines:
        axes.plot([x * 100 for x, _ in points], [100 * y for _, y in points], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_xlabel("labelled training images (%)")
    axes.set_ylabel("top-1 %")
    axes.set_title("Accuracy against label fraction")
    axes.grid(alpha=0.3)
    if len(lines) <= 14:
        axes.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _cost_plot(comparison: Comparison, path: Path) -> Path | None:
    runs = [run for run in comparison.runs if run.minutes is not None]
    if not runs:
        return None
    fig = figure(7.5, max(2.4, 0.8 + 0.3 * len(runs)))
    axes = fig.add_subplot(1, 1, 1)
    positions = list(range(len(runs)))
    axes.barh(positions, [run.minutes for run in runs], color="#4c72b0")
    for position, run in zip(positions, runs):
        speed = run.training.get("examples_per_second") if run.training else None
        axes.annotate(f"{speed:,.0f} ex/s" if speed else "", (run.minutes, position), fontsize=7, xytext=(3, -3),
                      textcoords="offset points")
    axes.set_yticks(positions)
    axes.set_yticklabels([run.name for run in runs], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("training minutes (wall)")
    axes.set_title("Cost of each run")
    fig.tight_layout()
    fig.savefig(path)
    return path


#: (file, alt text) of each picture, in report order.
PICTURES = (
    ("accuracy_vs_minutes.png", "Accuracy against training minutes"),
    ("accuracy_vs_steps.png", "Accuracy against training steps"),
    ("accuracy_vs_label_fraction.png", "Accuracy against label fraction"),
    ("accuracy_vs_parameters.png", "Accuracy against encoder parameters"),
    ("cost.png", "Training minutes of each run"),
)


def draw_pictures(comparison: Comparison, images: Path) -> list[tuple[Path, str]]:
    images.mkdir(parents=True, exist_ok=True)
    drawers = {
        "accuracy_vs_minutes.png": lambda path: _scatter(
            comparison, lambda run: run.minutes, "training minutes (wall)", "Accuracy against training time", path),
        "accuracy_vs_steps.png": lambda path: _steps_plot(comparison, path),
        "accuracy_vs_label_fraction.png": lambda path: _fraction_plot(comparison, path),
        "accuracy_vs_parameters.png": lambda path: _scatter(
            comparison, lambda run: run.parameters, "encoder parameters", "Accuracy against encoder size", path,
            log_x=True),
        "cost.png": lambda path: _cost_plot(comparison, path),
    }
    drawn = []
    for name, alt in PICTURES:
        target = images / name
        target.unlink(missing_ok=True)  # a picture of an earlier report that has no data now
        if drawers[name](target) is not None:
            drawn.append((target, alt))
    return drawn


# ---- the report --------------------------------------------------------------------------------


def _markdown(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(header) for header in table.columns) + " |",
             "|" + "|".join("---" if index == 0 else "---:" for index in range(len(table.columns))) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _notes(comparison: Comparison) -> list[str]:
    notes = [f"{len(comparison.runs)} runs; settings that differ: "
             f"{', '.join(f'`{key}`' for key in comparison.differing) or 'none'}."]
    if any(len(group) > 1 for group in comparison.groups):
        notes.append("Runs that differ only in `train.seed` are one row: mean ± sample standard deviation over the "
                     "seeds (`n` runs); every run is in the table of runs.")
    notes.append("Accuracies in %; `train min` is the training loop's wall time (not evaluation); `cores used` the "
                 "main process's CPU seconds per wall second (hfssl's training.json).")
    missing = [run.name for run in comparison.runs if run.training is None]
    if missing:
        notes.append(f"No training.json (trained by an hfssl before it recorded costs): {', '.join(missing)}.")
    return notes


def markdown_report(comparison: Comparison, pictures: list[tuple[Path, str]], title: str) -> str:
    parts = [f"# {title}", "", *(f"- {note}" for note in _notes(comparison)), "", _markdown(group_table(comparison))]
    if any(len(group) > 1 for group in comparison.groups):
        parts += ["", "## Runs", "", _markdown(run_table(comparison))]
    for path, alt in pictures:
        parts += ["", f"![{alt}](images/{path.name})"]
    return "\n".join(parts) + "\n"


_SORT_SCRIPT = """
for (const table of document.querySelectorAll('table.sortable')) {
  table.querySelectorAll('th').forEach((th, index) => th.addEventListener('click', () => {
    const body = table.tBodies[0];
    const ascending = th.dataset.order !== 'asc';
    table.querySelectorAll('th').forEach(other => delete other.dataset.order);
    th.dataset.order = ascending ? 'asc' : 'desc';
    const key = row => {
      const value = row.cells[index].dataset.sort;
      const number = Number(value);
      return value !== '' && !Number.isNaN(number) ? number : value;
    };
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      const order = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return ascending ? order : -order;
    });
    rows.forEach(row => body.appendChild(row));
  }));
}
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; cursor: pointer; }
th[data-order=asc]::after { content: " \\25B2"; } th[data-order=desc]::after { content: " \\25BC"; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def _sort_text(value: float | str) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "-1e308" if value < 0 else "1e308"
    return str(value)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header in table.columns)
    body = "".join(
        "<tr>" + "".join(f'<td data-sort="{html.escape(_sort_text(key))}">{html.escape(value)}</td>'
                         for value, key in zip(row, keys)) + "</tr>"
        for row, keys in zip(table.rows, table.sort_values))
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def html_report(comparison: Comparison, pictures: list[tuple[Path, str]], title: str) -> str:
    """One page that opens offline: no file or network reference, pictures as data URIs."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<ul>",
             *(f"<li>{html.escape(note)}</li>" for note in _notes(comparison)), "</ul>",
             _html_table(group_table(comparison))]
    if any(len(group) > 1 for group in comparison.groups):
        parts += ["<h2>Runs</h2>", _html_table(run_table(comparison))]
    for path, alt in pictures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(parts) + f"\n<script>{_SORT_SCRIPT}</script>\n</body></html>\n")


def comparison_data(comparison: Comparison) -> dict[str, Any]:
    """``compare.json``: every run with its differing settings, results by column and cost."""
    return {
        "differing_settings": comparison.differing,
        "columns": [{"key": column.key, "label": column.label, "protocol": column.protocol,
                     "settings": dict(column.settings), "metric": column.metric.key} for column in comparison.columns],
        "runs": [{"name": run.name, "path": _shown_path(run.path), "method": run.method,
                  "settings": {key: run.settings.get(key) for key in comparison.differing},
                  "results": {column.label: comparison.value(run, column) for column in comparison.columns},
                  "training": run.training, "encoder_parameters": run.parameters} for run in comparison.runs],
        "baselines": {features: {column.label: values.get(column.key) for column in comparison.columns}
                      for features, values in comparison.baselines},
    }


def check_report_folder(output: Path) -> None:
    """The report goes to a new or empty folder, or one that holds an earlier report (its files are replaced);
    never into a run folder or over other files."""
    if output.exists() and not output.is_dir():
        raise RecipeError(f"--output {output} is a file; give a folder for the report")
    if output.is_dir():
        if _is_run(output) or (output / ".hfssl-manifest.json").exists():
            raise RecipeError(f"--output {output} is an hfssl run or export folder; give another folder for the report")
        names = {path.name for path in output.iterdir()}
        if names and not (names & set(REPORT_FILES)):
            raise RecipeError(f"--output {output} holds other files ({', '.join(sorted(names)[:3])}); give a new or "
                              "empty folder, or the folder of an earlier `hfssl compare` report")


def write_report(comparison: Comparison, output: str | Path, title: str = "hfssl comparison") -> dict[str, Path]:
    output = Path(output)
    check_report_folder(output)
    output.mkdir(parents=True, exist_ok=True)
    pictures = draw_pictures(comparison, output / "images")
    paths = {"markdown": output / "compare.md", "html": output / "compare.html", "json": output / "compare.json"}
    atomic_write_text(paths["markdown"], markdown_report(comparison, pictures, title))
    atomic_write_text(paths["html"], html_report(comparison, pictures, title))
    atomic_write_text(paths["json"], json.dumps(comparison_data(comparison), indent=2, default=str) + "\n")
    return paths


def compare(paths: Iterable[str | Path], output: str | Path, title: str = "hfssl comparison") -> dict[str, Path]:
    """Read the runs, build the comparison and write the report (see the module docstring)."""
    return write_report(build_comparison(collect_runs(paths)), output, title)


__all__ = ["Column", "Comparison", "RunSummary", "build_comparison", "collect_runs", "compare", "differing_settings",
           "find_runs", "group_table", "html_report", "markdown_report", "read_run_summary", "result_columns",
           "run_table", "write_report"]
