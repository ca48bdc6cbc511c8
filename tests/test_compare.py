"""``hfssl compare`` on run folders whose results are known: the settings that differ, the shared result
columns (a linear probe's chosen C does not split them), seeds folded into mean ± sd, the baselines, and a
self-contained HTML page read back with an HTML parser."""

from __future__ import annotations

import base64
import json
import math
import statistics
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hfssl.compare import build_comparison, collect_runs, compare, find_runs, group_table
from hfssl.recipe import load_recipe
from hfssl.settings import RecipeError

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _fake_run(folder: Path, lr: float, seed: int, knn: float, linear: float, linear_c: float, fraction_top1: float,
              seconds: float, examples: int = 6400) -> Path:
    """A finished run's files as hfssl writes them (recipe through the real loader), with chosen results."""
    folder.mkdir(parents=True)
    recipe = load_recipe(REPO / "recipes/simclr/digits.yaml", [f"optim.lr={lr}", f"train.seed={seed}"])
    (folder / "recipe.yaml").write_text(recipe.to_yaml())
    (folder / "config.json").write_text(json.dumps({"model_type": "hfssl_simclr"}))
    rows = [
        {"protocol": "knn", "features": "model", "k": 20, "temperature": 0.07, "top1": knn, "top5": 0.99},
        {"protocol": "linear", "features": "model", "solver": "torch", "C": linear_c, "top1": linear, "top5": 1.0},
        {"protocol": "linear", "features": "model", "solver": "torch", "C": 1.0, "label_fraction": 0.1,
         "num_labelled": 143, "top1": fraction_top1, "top5": 0.9},
    ]
    baselines = [
        {"protocol": "knn", "features": "raw_pixels", "k": 20, "temperature": 0.07, "top1": 0.5, "top5": 0.9},
        {"protocol": "linear", "features": "raw_pixels", "solver": "torch", "C": 0.01, "top1": 0.6, "top5": 0.9},
    ]
    (folder / "eval_results.json").write_text(json.dumps(
        {"dataset": "builtin:digits", "train_split": "train", "test_split": "test", "num_train": 1437, "num_test": 360,
         "num_classes": 10, "results": rows, "baselines": baselines}))
    (folder / "training.json").write_text(json.dumps(
        {"steps": 100, "examples": examples, "seconds": seconds, "examples_per_second": examples / seconds,
         "cpu_seconds": 1.5 * seconds, "cores_used": 1.5, "processes": 1, "device": "cpu", "device_name": "AMD EPYC",
         "cpu_capability": "AVX2", "cpu_cores": 2, "mixed_precision": "no", "torch": "2.13.0", "segments": 1}))
    return folder


@pytest.fixture
def runs(tmp_path):
    sweep = tmp_path / "sweep"
    return [
        _fake_run(sweep / "lr=0.1_seed=0", 0.1, 0, knn=0.80, linear=0.85, linear_c=0.1, fraction_top1=0.70, seconds=60),
        _fake_run(sweep / "lr=0.1_seed=1", 0.1, 1, knn=0.90, linear=0.87, linear_c=1.0, fraction_top1=0.72, seconds=120),
        _fake_run(sweep / "lr=0.2_seed=0", 0.2, 0, knn=0.60, linear=0.65, linear_c=0.1, fraction_top1=0.50, seconds=30),
    ]


def test_settings_columns_seed_groups_and_baselines(runs):
    comparison = build_comparison(collect_runs([runs[0].parent]))  # a folder of runs stands for its runs
    assert [run.name for run in comparison.runs] == ["lr=0.1_seed=0", "lr=0.1_seed=1", "lr=0.2_seed=0"]
    # A sweep's folder lists its runs in the order of its plan.
    (runs[0].parent / "sweep.json").write_text(json.dumps({"runs": [{"name": "lr=0.2_seed=0"}, {"name": "lr=0.1_seed=0"},
                                                                    {"name": "lr=0.1_seed=1"}]}))
    assert [path.name for path in find_runs([runs[0].parent])] == ["lr=0.2_seed=0", "lr=0.1_seed=0", "lr=0.1_seed=1"]
    (runs[0].parent / "sweep.json").unlink()
    assert comparison.differing == ["optim.lr", "train.seed"]
    # A key one recipe lacks (an older hfssl's) equals a null one; a value it lacks is a difference.
    comparison.runs[0].settings.pop("train.early_stop")
    assert comparison.runs[1].settings["train.early_stop"] is None
    assert build_comparison(comparison.runs).differing == ["optim.lr", "train.seed"]
    comparison.runs[0].settings["views.new_option"] = 3
    assert build_comparison(comparison.runs).differing == ["optim.lr", "train.seed", "views.new_option"]
    comparison.runs[0].settings.pop("views.new_option")
    labels = [column.label for column in comparison.columns]
    # knn, linear at all labels (C chosen per run: one column), linear at 10 % of the labels
    assert len(labels) == 3, labels
    assert labels[0].startswith("kNN k=20") and "C=" not in labels[1] and "label_fraction=0.1" in labels[2]
    assert [len(group) for group in comparison.groups] == [2, 1]

    table = group_table(comparison)
    header = table.columns
    first, second, baseline = table.rows[0], table.rows[1], table.rows[-1]
    knn = header.index(labels[0])
    assert first[0] == "lr=0.1 (2 seeds)" and first[header.index("optim.lr")] == "0.1"
    assert "train.seed" not in header
    assert first[knn] == f"{85.0:.1f} ± {statistics.stdev([80.0, 90.0]):.1f}" == "85.0 ± 7.1"
    assert second[knn] == "60.0"
    assert first[header.index("n")] == "2" and first[header.index("train min")] == "1.50"
    assert first[header.index("examples/s")] == f"{(6400 / 60 + 6400 / 120) / 2:,.0f}"
    assert first[header.index("device")] == "2 cores of AMD EPYC, AVX2"
    assert baseline[0] == "baseline: raw_pixels"
    assert baseline[knn] == "50.0" and baseline[header.index(labels[1])] == "60.0"
    assert baseline[header.index(labels[2])] == "-"  # no raw-pixel row at 10 % labels
    # Sorting keys: the mean as a number.
    assert table.sort_values[0][knn] == pytest.approx(0.85)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, dict[str, str]]]]] = []
        self.images: list[dict[str, str]] = []
        self.scripts = 0
        self.links: list[str] = []
        self._cell: list[str] | None = None
        self._attrs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._attrs = [], attrs
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "script":
            self.scripts += 1
            if "src" in attrs:
                self.links.append(attrs["src"])
        elif tag in ("link", "a") and (attrs.get("href")):
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell), self._attrs))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_report_files_and_a_self_contained_sortable_page(runs, tmp_path):
    paths = compare(runs, tmp_path / "report", title="lr sweep")
    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# lr sweep")
    assert "| lr=0.1 (2 seeds) | simclr | 0.1 | 85.0 ± 7.1 |" in markdown
    assert "## Runs" in markdown and "| lr=0.1_seed=1 |" in markdown
    for link in ("images/accuracy_vs_minutes.png", "images/accuracy_vs_label_fraction.png", "images/cost.png"):
        assert f"]({link})" in markdown and (tmp_path / "report" / link).read_bytes().startswith(PNG)
    assert "accuracy_vs_parameters" not in markdown  # no encoder folders: nothing to plot

    page = _Page()
    page.feed(paths["html"].read_text())
    assert page.links == [], "the page must not load anything"
    assert page.scripts == 1
    assert len(page.images) == 4
    for image in page.images:
        assert image["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(image["src"].split(",", 1)[1]).startswith(PNG)
    groups, per_run = page.tables
    header = [text for text, _ in groups[0]]
    assert header[:3] == ["run", "method", "optim.lr"]
    body = {row[0][0]: row for row in groups[1:]}
    assert set(body) == {"lr=0.1 (2 seeds)", "lr=0.2_seed=0", "baseline: raw_pixels"}
    knn = next(index for index, text in enumerate(header) if text.startswith("kNN"))
    assert body["lr=0.1 (2 seeds)"][knn][0] == "85.0 ± 7.1"
    assert float(body["lr=0.1 (2 seeds)"][knn][1]["data-sort"]) == pytest.approx(0.85)
    assert float(body["baseline: raw_pixels"][header.index("train min")][1]["data-sort"]) < 0
    assert len(per_run) == 4 and {row[0][0] for row in per_run[1:]} == {run.name for run in runs}

    data = json.loads(paths["json"].read_text())
    assert data["differing_settings"] == ["optim.lr", "train.seed"]
    assert data["runs"][2]["results"][data["columns"][0]["label"]] == 0.6
    assert data["baselines"]["raw_pixels"][data["columns"][0]["label"]] == 0.5

    # The same folder takes a new report; a folder of other files does not.
    compare(runs[:1], tmp_path / "report")
    assert "## Runs" not in paths["markdown"].read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="holds other files"):
        compare(runs, other)
    with pytest.raises(RecipeError, match="run or export folder"):
        compare(runs, runs[0])
    assert (other / "notes.txt").read_text() == "mine"


def test_inputs_that_are_not_runs_are_named(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        find_runs([tmp_path / "missing"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no finished hfssl run"):
        find_runs([empty])
    # The same run named twice is one run.
    assert len(find_runs([runs[0], runs[0].parent / ".." / "sweep" / runs[0].name])) == 1


def test_metrics_that_are_not_numbers_are_dashes(tmp_path):
    run = _fake_run(tmp_path / "a", 0.1, 0, knn=math.nan, linear=0.5, linear_c=1.0, fraction_top1=0.4, seconds=10)
    table = group_table(build_comparison(collect_runs([run])))
    assert table.rows[0][table.columns.index(next(c for c in table.columns if c.startswith("kNN")))] == "-"
