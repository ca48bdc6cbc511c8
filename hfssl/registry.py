"""Methods declare themselves: each ``hfssl/models/<method>/__init__.py`` registers a :class:`MethodSpec`.

A spec holds real callables, not strings, so a reader can follow a batch from the engine to the
loss: the config and model classes, how the method's inputs are built on the device
(``build_inputs``), optionally its own data loading (``build_data``; otherwise the modality's
loader in :mod:`hfssl.data`), how its transferable part is exported (``export``, see
:mod:`hfssl.export`), what evaluation it can serve (``provides``), its pictures for the model card
(``pictures``), recipe checks of its own (``check_recipe``), and its paper.

Discovery: importing :mod:`hfssl` calls :func:`discover_methods`, which imports every package
under ``hfssl/models/`` (each registers itself) and every ``hfssl.methods`` entry point of other
installed distributions. Adding a method therefore edits no shared file. Registration also adds
the config and model to transformers' ``AutoConfig`` / ``AutoModel`` / ``AutoModelForPreTraining``,
so ``AutoModel.from_pretrained(run_dir)`` returns the full SSL model.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, PretrainedConfig, PreTrainedModel

from hfssl.data.config import IMAGE, IMAGE_TEXT, TEXT  # noqa: F401 - re-exported for method specs
from hfssl.data import image_text, images, text
from hfssl.data.training import TrainingData
from hfssl.model_cards import builtin_templates

if TYPE_CHECKING:
    from accelerate import Accelerator

# The recipe and the export context are defined in modules that look methods up here
# (hfssl.recipe, hfssl.export), so they are named, not imported: no cycle, even for type checkers.
#: A :class:`hfssl.recipe.Recipe`.
Recipe = Any
#: A :class:`hfssl.export.ExportContext`.
ExportContext = Any

logger = logging.getLogger(__name__)

MODALITIES = (IMAGE, TEXT, IMAGE_TEXT)


@dataclass(frozen=True)
class Capability:
    """Something a trained model can hand to evaluation protocols and to ``hfssl embed``.

    Attributes:
        name: what protocols list in ``needs`` and methods in ``provides`` (``image-features``).
        accessor: the declared method of :class:`hfssl.modeling_utils.HfsslPreTrainedModel` that serves it.
        description: one line for messages and ``hfssl eval --help``.
    """

    name: str
    accessor: str
    description: str


#: Every known capability by name; :func:`register_capability` adds one (an installed package may too).
CAPABILITIES: dict[str, Capability] = {}


def register_capability(capability: Capability) -> str:
    """Add a capability and return its name (the value protocols and specs use)."""
    CAPABILITIES[capability.name] = capability
    return capability.name


IMAGE_FEATURES = register_capability(Capability(
    "image-features", "get_embeddings", "pooled image features (batch, hidden) of the transferable encoder"))
LAYER_FEATURES = register_capability(Capability(
    "layer-features", "get_layer_embeddings",
    "pooled image features of every stage (convolutional) or block (ViT) of the encoder, [(batch, width)] per layer"))
WORD_VECTORS = register_capability(Capability("word-vectors", "get_word_vectors", "the words and their vectors"))
TEXT_FEATURES = register_capability(Capability(
    "text-features", "get_text_encoder", "token features of a text encoder with its tokenizer (mean or [CLS] pooled)"))
#: A masked-language-model head with its tokenizer (held-out masked-token accuracy, fill-mask).
MASKED_LM = register_capability(Capability(
    "masked-lm", "get_masked_lm", "a masked-language-model head with its tokenizer"))
#: A causal (next-token) language model with its tokenizer (held-out perplexity, text-generation).
CAUSAL_LM = register_capability(Capability(
    "causal-lm", "get_causal_lm", "a causal (next-token) language model with its tokenizer"))
IMAGE_TEXT_EMBEDDINGS = register_capability(Capability(
    "image-text-embeddings", "get_dual_encoder", "image and text embeddings of a dual encoder in one space"))
#: A hand-crafted pretext task's classifier (rotation, jigsaw, relative patch position): its predictions and
#: the labels of the task made from clean images, for the held-out pretext accuracy.
PRETEXT_TASK = register_capability(Capability(
    "pretext-task", "get_pretext_predictions",
    "the pretext task's logits and labels on clean images (rotation, jigsaw, relative patch position)"))
#: A reconstruction method's output on clean images (autoencoders, colorization, inpainting, MAE): the original, the
#: corrupted input and the reconstruction (``hfssl.reconstruction.Reconstruction``), for the held-out
#: reconstruction error and the card's triplets.
RECONSTRUCTION = register_capability(Capability(
    "reconstruction", "get_reconstructions",
    "the original, corrupted input and reconstruction of clean images (autoencoders, colorization, inpainting)"))


@dataclass(frozen=True)
class Family:
    """A kind of method that shares a model card: its template (``hfssl/model_cards/<name>.md.j2`` for the
    built-in families) and a card part registered by :mod:`hfssl.hub.cards` (``register_family_card``)."""

    name: str
    template: Path


#: Model-card families by name; the built-in ones are the templates shipped in :mod:`hfssl.model_cards`.
FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a model-card family (an installed package adds its own template this way)."""
    FAMILIES[family.name] = family
    return family


for _name, _template in builtin_templates().items():
    register_family(Family(_name, _template))
#: The grid pretext tasks' family (jigsaw, relative patch position): the vision-ssl template with its own card
#: part (hfssl/hub/cards/patch_pretext.py), which says the encoder was trained on tiles or patches.
PATCH_PRETEXT = register_family(Family("patch-pretext", FAMILIES["vision-ssl"].template)).name

#: Package whose sub-packages are the built-in methods, and the entry-point group of plug-in methods.
BUILTIN_PACKAGE = "hfssl.models"
ENTRY_POINT_GROUP = "hfssl.methods"

#: The default ``build_data`` of each modality: ``(data_config, accelerator) -> TrainingData``.
MODALITY_LOADERS: dict[str, Callable[..., TrainingData]] = {
    IMAGE: images.build_training_data,
    TEXT: text.build_training_data,
    IMAGE_TEXT: image_text.build_training_data,
}

InputBuilder = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Paper:
    """The method paper, quoted in the model card."""

    title: str
    url: str
    bibtex: str


@dataclass(frozen=True)
class MethodSpec:
    """Everything the engine, evaluation, export and the model card need to know about a method.

    Attributes:
        name: recipe name (``simclr``); the config's ``model_type`` must be ``hfssl_<name>``.
        config_class / model_class: the ``PretrainedConfig`` and ``PreTrainedModel`` classes.
        modality: ``image``, ``text`` or ``image-text``: which ``data`` section and loader.
        family: model-card family (a name in :data:`FAMILIES`).
        paper: title, link and BibTeX.
        build_inputs: ``(recipe, training_data) -> make_inputs``, where ``make_inputs(batch,
            generator) -> model inputs`` runs on the training device with the whole batch
            (views, masks, pretext targets, negatives), seeded by the generator.
        export: ``(model, output_dir, context) -> Path`` writing the transferable part (see
            :mod:`hfssl.export`).
        provides: capabilities for evaluation protocols (:data:`CAPABILITIES`).
        build_data: ``(recipe, accelerator) -> TrainingData`` when the method loads its data itself
            (word2vec builds a vocabulary); ``None`` uses the modality's loader.
        display_name: how cards and logs name the method (``SimCLR``); defaults to ``name``.
        pictures: ``(model, context) -> list[Path]``: method-specific pictures for the card
            (MAE's reconstructions); the context is :class:`hfssl.export.PictureContext`.
        check_recipe: ``(recipe) -> None`` raising ``RecipeError`` for settings the method
            cannot train with (word2vec needs plain SGD).
    """

    name: str
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    modality: str
    family: str
    paper: Paper
    build_inputs: Callable[[Recipe, TrainingData], InputBuilder]
    export: Callable[[PreTrainedModel, Path, ExportContext], Path]
    provides: tuple[str, ...] = field(default=())
    display_name: str | None = None
    build_data: Callable[[Recipe, Accelerator], TrainingData] | None = None
    pictures: Callable[..., list[Path]] | None = None
    check_recipe: Callable[[Recipe], None] | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"method {self.name!r}: modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name!r}: family must be one of {', '.join(FAMILIES)} (or a family registered "
                             f"with hfssl.registry.register_family), got {self.family!r}")
        unknown = [item for item in self.provides if item not in CAPABILITIES]
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)} "
                             "(a new one is added with hfssl.registry.register_capability)")
        model_type = getattr(self.config_class, "model_type", "")
        if model_type != f"hfssl_{self.name}":
            raise ValueError(f"{self.config_class.__name__}.model_type must be 'hfssl_{self.name}', got {model_type!r}")

    @property
    def title(self) -> str:
        """The display name, or the recipe name."""
        return self.display_name or self.name

    # Kept for readers of the card templates and older code: the paper's fields.
    @property
    def paper_title(self) -> str:
        return self.paper.title

    @property
    def paper_url(self) -> str:
        return self.paper.url

    @property
    def bibtex(self) -> str:
        return self.paper.bibtex

    def load_training_data(self, recipe: Recipe, accelerator: Accelerator) -> TrainingData:
        """The method's data: its own ``build_data`` or its modality's loader, plus its input builder."""
        if self.build_data is not None:
            data = self.build_data(recipe, accelerator)
        else:
            data = MODALITY_LOADERS[self.modality](recipe.data, accelerator)
        if data.make_inputs is None:
            data.make_inputs = self.build_inputs(recipe, data)
        return data


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry and to transformers' Auto classes; returns the spec."""
    METHODS[spec.name] = spec
    model_type = spec.config_class.model_type
    AutoConfig.register(model_type, spec.config_class, exist_ok=True)
    AutoModel.register(spec.config_class, spec.model_class, exist_ok=True)
    AutoModelForPreTraining.register(spec.config_class, spec.model_class, exist_ok=True)
    return spec


def unregister_method(name: str) -> None:
    """Remove a method from the registry (tests that register throw-away methods)."""
    METHODS.pop(name, None)


_discovered = False


def discover_methods() -> dict[str, MethodSpec]:
    """Import every built-in method package and every ``hfssl.methods`` entry point (once)."""
    global _discovered
    if _discovered:
        return METHODS
    _discovered = True
    import_plugins(BUILTIN_PACKAGE, ENTRY_POINT_GROUP, "method", packages_only=True)
    return METHODS


def import_plugins(package_name: str, group: str, what: str, packages_only: bool = False) -> None:
    """Import every module (or sub-package) of ``package_name`` and every entry point of ``group``: each
    registers itself (methods, protocols). A plug-in that fails to load is logged, never fatal."""
    package = importlib.import_module(package_name)
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda item: item.name):
        if module.ispkg or not packages_only:
            importlib.import_module(f"{package_name}.{module.name}")
    for entry_point in importlib.metadata.entry_points(group=group):
        try:
            entry_point.load()
        except Exception as error:  # a broken plug-in must not break hfssl itself
            logger.warning("could not load hfssl %s plug-in %s (%s): %s", what, entry_point.name, entry_point.value, error)


def get_method(name: str) -> MethodSpec:
    discover_methods()
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def read_hfssl_config(path: str | Path) -> dict[str, Any] | None:
    """The ``config.json`` of a folder holding a full hfssl model (``model_type: hfssl_*``), else ``None``
    (no folder, no config, unreadable JSON, or another library's model)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(config, dict) and str(config.get("model_type", "")).startswith("hfssl_"):
        return config
    return None


def is_hfssl_run(path: str | Path) -> bool:
    """Whether ``path`` holds a full hfssl model (a run directory, as training leaves it)."""
    return read_hfssl_config(path) is not None


def method_for_config(config: PretrainedConfig) -> MethodSpec:
    discover_methods()
    for spec in METHODS.values():
        if spec.config_class.model_type == config.model_type:
            return spec
    raise ValueError(f"{config.model_type!r} is not an hfssl model type; known: {', '.join(sorted(METHODS))}")
