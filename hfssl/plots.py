"""Pictures for model cards, drawn with matplotlib's Agg canvas (no pyplot state, no display needed).

Shared plots (:func:`save_projection_plot`, :func:`save_reconstruction_plot`) live here; a method's
own pictures come from its ``MethodSpec.pictures`` hook, ``(model, context) -> list[Path]``, with a
:class:`PictureContext` (MAE's reconstructions in ``hfssl/models/mae/pictures.py``, word2vec's
word map in ``hfssl/models/word2vec/pictures.py``). Each PNG records in its ``Description`` text
what it shows, which the model card quotes.

Pictures declare themselves: the code that draws a picture registers a :class:`Picture` (its file under
``images/``, alt text, caption, the card section it heads), and the model card shows every registered
picture whose file a run holds (:func:`card_pictures`), naming no method or protocol itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: ``(words of the PNG's Description, file name) -> text``: alt text or a caption that quotes what the PNG records.
PictureText = Callable[[dict[str, str], str], str]


@dataclass(frozen=True)
class Picture:
    """A picture some code draws into a run's ``images/`` folder, as the model card shows it.

    Attributes:
        file: its file name under ``images/``; a glob (``confusion_*.png``) declares a family of files.
        alt: the alt text, or a function of the PNG's description words and file name.
        caption: the caption under it, the same way.
        heading: the card section it opens (``Attention maps``), or ``None`` to follow the pictures before it.
        order: its place among the card's pictures (then the file name).
    """

    file: str
    alt: str | PictureText
    caption: str | PictureText
    heading: str | None = None
    order: int = 50

    def text(self, value: str | PictureText, path: Path) -> str:
        return value if isinstance(value, str) else value(png_description(path), path.name)


#: Every declared picture by file (pattern).
PICTURES: dict[str, Picture] = {}


def register_picture(picture: Picture) -> Picture:
    """Declare a picture (by the module that draws it); returns it."""
    PICTURES[picture.file] = picture
    return picture


def card_pictures(run_dir: Path) -> list[dict[str, Any]]:
    """``[{"path", "alt", "caption", "heading", "order"}]`` of the declared pictures that ``run_dir/images`` holds,
    in their order; a heading is given once, to the first picture under it."""
    found = []
    for picture in PICTURES.values():
        for path in sorted((Path(run_dir) / "images").glob(picture.file)):
            found.append((picture.order, path.name, picture, path))
    entries, headings = [], set()
    for _, name, picture, path in sorted(found, key=lambda item: item[:2]):
        heading = picture.heading if picture.heading not in headings else None
        headings.add(picture.heading)
        entries.append({"path": f"images/{name}", "alt": picture.text(picture.alt, path),
                        "caption": picture.text(picture.caption, path), "heading": heading, "order": picture.order})
    return entries


def png_description(path: Path) -> dict[str, str]:
    """The ``key=value`` words of a PNG's ``Description`` (``hfssl projection=pca count=50``)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = image.info.get("Description", "")
    except OSError:
        return {}
    return dict(part.split("=", 1) for part in str(text).split() if "=" in part)


@dataclass
class PictureContext:
    """What a method's picture hook can draw from.

    Attributes:
        images_dir: the folder to write PNGs into (``RUN/images``).
        recipe: the run's recipe (views for the evaluation transform), or ``None``.
        eval_dataset: prepared labelled test images (``pixels``/``label``), or ``None``.
        label_names: class names of the labels, or ``None``.
        extras: anything else a caller passes on (kept for methods' own use).
    """

    images_dir: Path
    recipe: Any = None
    eval_dataset: Any = None
    label_names: list[str] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def figure(width: float, height: float) -> Figure:
    """A matplotlib figure on the Agg canvas: no pyplot global state, no display, safe in threads."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    result = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(result)
    return result


PROJECTIONS = ("pca", "tsne", "umap")
PROJECTION_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def umap_available() -> bool:
    """Whether ``umap-learn`` (the optional ``umap`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def project_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project ``(N, D)`` features to ``(N, 2)`` with PCA, t-SNE (scikit-learn) or UMAP (``umap-learn``,
    the optional ``umap`` extra), deterministically for a given seed."""
    if method == "pca":
        from sklearn.decomposition import PCA

        if features.shape[1] < 2:  # a 1-D feature: plot it against zero
            return np.concatenate([features, np.zeros_like(features)], axis=1)
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    if method == "umap":
        if not umap_available():
            raise ValueError("UMAP projections need umap-learn: pip install 'hfssl[umap]' (or choose pca / tsne)")
        import umap

        neighbours = int(min(15, max(2, len(features) - 1)))
        return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed).fit_transform(features)
    raise ValueError(f"projection method must be one of {', '.join(PROJECTIONS)}, got {method!r}")


def save_projection_plot(
    features: np.ndarray, labels: np.ndarray, label_names: list[str] | None, path: Path, method: str = "pca"
) -> Path:
    """Draw a 2-D projection of embeddings coloured by label and save it as a PNG.

    Args:
        features: ``(N, D)`` embeddings (test-set features from ``get_embeddings``).
        labels: ``(N,)`` integer labels; ``-1`` marks unlabelled points (drawn in grey).
        label_names: class names indexed by label, or ``None`` to show the label numbers.
        path: the PNG to write (``DIR/images/embeddings_2d.png``); parent folders are created.
        method: ``pca``, ``tsne`` or ``umap``.

    Returns:
        ``path``. The PNG's ``Description`` text records the method and the point count, which
        the model card quotes.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D array (samples, dimensions), got shape {features.shape}")
    if len(labels) != len(features):
        raise ValueError(f"features has {len(features)} rows but labels has {len(labels)} entries")
    if len(features) < 3:
        raise ValueError(f"a projection plot needs at least 3 points, got {len(features)}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values; the model's embeddings have diverged")
    points = project_2d(features, method)
    canvas = figure(6.4, 5.2)
    axes = canvas.add_subplot()
    classes = [int(value) for value in np.unique(labels) if value >= 0]
    from matplotlib import colormaps

    colormap = colormaps["tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "viridis"]
    unlabelled = labels < 0
    if unlabelled.any():
        axes.scatter(points[unlabelled, 0], points[unlabelled, 1], s=6, color="0.7", label="unlabelled")
    for index, value in enumerate(classes):
        chosen = labels == value
        name = label_names[value] if label_names is not None and value < len(label_names) else str(value)
        color = colormap(index / max(1, len(classes) - 1)) if len(classes) > 20 else colormap(index)
        axes.scatter(points[chosen, 0], points[chosen, 1], s=6, color=color, label=name)
    if len(classes) <= 20:
        axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", markerscale=2, frameon=False)
    axes.set_title(f"{PROJECTION_TITLES.get(method, method)} of {len(features):,} test embeddings")
    axes.set_xticks([])
    axes.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(path, format="png", bbox_inches="tight",
                   metadata={"Description": f"hfssl projection={method} count={len(features)}"})
    return path


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` counts: row = true class, column = predicted class."""
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    bad = (predictions < 0) | (predictions >= num_classes) | (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(f"predictions and labels must be class indices in [0, {num_classes})")
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def save_reliability_diagram(edges: np.ndarray, count: np.ndarray, confidence: np.ndarray, accuracy: np.ndarray,
                             ece: float, path: Path, title: str = "reliability", subject: str | None = None) -> Path:
    """Draw a reliability diagram (Guo et al. 2017) as a PNG: per confidence bin (``edges``, M + 1), the accuracy of
    its top-1 predictions as a bar against the diagonal of perfect calibration, the gap to the bin's mean
    ``confidence`` shaded, and the share of examples per bin below. The PNG's ``Description`` records
    ``reliability=<title>``, ``count``, ``ece`` and, when given, ``subject`` (what classifier it is: ``fine-tuned
    classifier``), which the model card quotes."""
    count = np.asarray(count)
    total = int(count.sum())
    filled = count > 0
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    canvas = figure(5.0, 6.0)
    top, bottom = canvas.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres[filled], accuracy[filled], width=width, color="tab:blue", edgecolor="black", label="accuracy")
    # The gap to the bin's mean confidence: above the bar when over-confident, inside it when under-confident.
    top.bar(centres[filled], np.abs(confidence - accuracy)[filled], bottom=np.minimum(confidence, accuracy)[filled],
            width=width, color="tab:red", alpha=0.35, edgecolor="tab:red", label="gap to confidence")
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize="small")
    top.set_title(f"{title}: ECE {100 * ece:.1f} % on {total:,} test examples")
    bottom.bar(centres, count / max(1, total), width=width, color="grey", edgecolor="black")
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("share")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(path, format="png", bbox_inches="tight",
                   metadata={"Description": f"hfssl reliability={title.replace(' ', '_')} count={total} ece={ece:.4f}"
                             + (f" subject={subject.replace(' ', '_')}" if subject else "")})
    return path


def save_confusion_matrix(predictions: np.ndarray, labels: np.ndarray, label_names: list[str] | None, path: Path,
                          title: str = "confusion matrix") -> Path:
    """Draw a row-normalised confusion matrix (true class by row, predicted by column) as a PNG.

    Each cell shows the share of the row's test examples predicted as the column's class, so the
    diagonal is the per-class recall. The PNG's ``Description`` records ``confusion=<title>``,
    ``count`` and ``accuracy``, which the model card quotes.
    """
    labels = np.asarray(labels).reshape(-1)
    num_classes = max(int(np.max(labels)) + 1, int(np.max(predictions)) + 1, len(label_names or ()))
    counts = confusion_matrix(predictions, labels, num_classes)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    side = min(12.0, 2.5 + 0.45 * num_classes)
    canvas = figure(side + 1.0, side)
    axes = canvas.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    canvas.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    names = [str(label_names[index]) if label_names and index < len(label_names) else str(index)
             for index in range(num_classes)]
    if num_classes <= 30:
        axes.set_xticks(range(num_classes), names, rotation=90, fontsize="small")
        axes.set_yticks(range(num_classes), names, fontsize="small")
    if num_classes <= 15:
        for row in range(num_classes):
            for column in range(num_classes):
                value = shares[row, column]
                if value >= 0.005:
                    axes.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize="x-small",
                              color="white" if value > 0.5 else "black")
    accuracy = float(np.trace(counts) / max(1, counts.sum()))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"{title}: {100 * accuracy:.1f} % of {int(counts.sum()):,} test examples")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(path, format="png", bbox_inches="tight",
                   metadata={"Description": f"hfssl confusion={title.replace(' ', '_')} count={int(counts.sum())} "
                                            f"accuracy={accuracy:.4f}"})
    return path


def save_reconstruction_plot(originals: np.ndarray, reconstructions: np.ndarray, masked: np.ndarray, path: Path,
                             mask_ratio: float | None = None) -> Path:
    """Save MAE reconstructions as a PNG grid: masked inputs, reconstructions, originals (one row each).

    Args:
        originals / reconstructions / masked: ``(N, H, W, C)`` arrays in [0, 1], ``C`` 1 or 3
            (He et al. 2022, fig. 2 layout).
        path: the PNG to write (``DIR/images/reconstructions.png``).

    Returns:
        ``path``.
    """
    arrays = {"originals": np.asarray(originals, dtype=np.float64),
              "reconstructions": np.asarray(reconstructions, dtype=np.float64),
              "masked": np.asarray(masked, dtype=np.float64)}
    shape = arrays["originals"].shape
    for name, array in arrays.items():
        if array.ndim != 4 or array.shape[-1] not in (1, 3):
            raise ValueError(f"{name} must have shape (N, H, W, C) with C = 1 or 3, got {array.shape}")
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape} but originals has {shape}")
        if not np.isfinite(array).all() or array.min() < -1e-3 or array.max() > 1 + 1e-3:
            raise ValueError(f"{name} must hold values in [0, 1] (undo the normalisation first), "
                             f"got range [{np.nanmin(array):.3f}, {np.nanmax(array):.3f}]")
    count = shape[0]
    canvas = figure(1.2 * count + 1.2, 3.9)
    rows = (("masked", "masked input"), ("reconstructions", "reconstruction"), ("originals", "original"))
    for row, (name, title) in enumerate(rows):
        for column in range(count):
            axes = canvas.add_subplot(3, count, row * count + column + 1)
            image = np.clip(arrays[name][column], 0.0, 1.0)
            if image.shape[-1] == 1:
                axes.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axes.imshow(image)
            axes.set_xticks([])
            axes.set_yticks([])
            if column == 0:
                axes.set_ylabel(title, fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(path, format="png", bbox_inches="tight",
                   metadata={"Description": f"hfssl reconstructions count={count}"
                                            + (f" mask_ratio={mask_ratio:g}" if mask_ratio is not None else "")})
    return path


def save_attention_plot(originals: np.ndarray, attentions: np.ndarray, path: Path) -> Path:
    """Save ViT [CLS] self-attention maps as a PNG grid (Caron et al. 2021, fig. 1 and 3): the test
    images in the first row, then one row per attention head of the last layer.

    Args:
        originals: ``(N, H, W, C)`` images in [0, 1], ``C`` 1 or 3.
        attentions: ``(heads, N, H, W)`` attention of the [CLS] token to every patch, upsampled to
            the image size; each map is scaled to its own maximum for display.
        path: the PNG to write (``DIR/images/attention_maps.png``).

    Returns:
        ``path``.
    """
    originals = np.asarray(originals, dtype=np.float64)
    attentions = np.asarray(attentions, dtype=np.float64)
    if originals.ndim != 4 or originals.shape[-1] not in (1, 3):
        raise ValueError(f"originals must have shape (N, H, W, C) with C = 1 or 3, got {originals.shape}")
    if attentions.ndim != 4 or attentions.shape[1:] != originals.shape[:3]:
        raise ValueError(f"attentions must have shape (heads, N, H, W) = (heads, {originals.shape[:3]}), "
                         f"got {attentions.shape}")
    if not np.isfinite(attentions).all():
        raise ValueError("attentions hold non-finite values")
    heads, count = attentions.shape[:2]
    canvas = figure(1.2 * count + 1.2, 1.3 * (heads + 1))
    for column in range(count):
        axes = canvas.add_subplot(heads + 1, count, column + 1)
        image = np.clip(originals[column], 0.0, 1.0)
        axes.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                    vmin=0.0, vmax=1.0)
        axes.set_xticks([])
        axes.set_yticks([])
        if column == 0:
            axes.set_ylabel("image", fontsize="small")
        for head in range(heads):
            axes = canvas.add_subplot(heads + 1, count, (head + 1) * count + column + 1)
            attention = attentions[head, column]
            axes.imshow(attention / max(float(attention.max()), 1e-12), cmap="inferno", vmin=0.0, vmax=1.0)
            axes.set_xticks([])
            axes.set_yticks([])
            if column == 0:
                axes.set_ylabel(f"head {head + 1}", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(path, format="png", bbox_inches="tight",
                   metadata={"Description": f"hfssl attention maps count={count} heads={heads}"})
    return path


def read_scalars(log_dir: Path, tags: tuple[str, ...] = ("train/loss",),
                 prefixes: tuple[str, ...] = ()) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value)]`` from every TensorBoard event file under ``log_dir`` (empty when there is none
    or tensorboard is not installed): the training curves that methods draw for their cards, and any tag that
    starts with one of ``prefixes`` (``hfssl compare``'s online kNN curves, ``knn/top1``)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return {}
    scalars: dict[str, dict[int, float]] = {}
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            if tag in tags or tag.startswith(prefixes):
                scalars.setdefault(tag, {}).update({event.step: event.value for event in accumulator.Scalars(tag)})
    return {tag: sorted(values.items()) for tag, values in scalars.items()}
