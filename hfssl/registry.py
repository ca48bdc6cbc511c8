"""Method name -> (config class, model class, views, family); Auto-class registration.

Adding a method is one :func:`register_method` call at the bottom of this file. Importing hfssl
imports this module, so ``AutoConfig``/``AutoModel``/``AutoModelForPreTraining`` know every
``hfssl_<method>`` model type and ``AutoModel.from_pretrained(run_dir)`` returns the full SSL model.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, PretrainedConfig, PreTrainedModel


@dataclass(frozen=True)
class MethodSpec:
    """Everything the engine, the CLI and the model card need to know about a method.

    Attributes:
        name: recipe name (``simclr``).
        config_class / model_class: the ``PretrainedConfig`` and ``PreTrainedModel`` classes.
        views: name of the view generator in :mod:`hfssl.views` (``multi_view``, ``single_view``)
            or of the method's own input generator (``word2vec_pairs``).
        modality: ``image`` or ``text``: which data pipeline feeds the method.
        family: model-card family: ``vision-ssl``, ``masked-image-modeling``,
            ``masked-language-modeling``, ``word-embeddings`` or ``image-text``.
        paper_title / paper_url / bibtex: the method paper, quoted in the model card.
        build_data: ``module:function`` ``(recipe, accelerator) -> TrainingData`` that loads the
            data, and returns the collate function, the on-device input generator and any model
            config values derived from the data (word2vec's vocabulary size).
        finalize: ``module:function`` ``(run_dir, model, recipe, training_data) -> dict`` run on the
            main process after training: export, evaluation and model card.
    """

    name: str
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    views: str
    modality: str
    family: str
    paper_title: str
    paper_url: str
    bibtex: str
    build_data: str = "hfssl.data.images:build_training_data"
    finalize: str = "hfssl.training.finalize:finalize_vision_run"

    def load_hook(self, name: str):  # noqa: ANN201 - returns the hook function
        """Import the ``module:function`` named by ``build_data`` or ``finalize``."""
        import importlib

        module_name, function_name = getattr(self, name).split(":")
        return getattr(importlib.import_module(module_name), function_name)


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> None:
    """Add a method to the registry and to transformers' Auto classes."""
    METHODS[spec.name] = spec
    model_type = spec.config_class.model_type
    if not model_type.startswith("hfssl_"):
        raise ValueError(f"{spec.config_class.__name__}.model_type must start with 'hfssl_', got {model_type!r}")
    AutoConfig.register(model_type, spec.config_class, exist_ok=True)
    AutoModel.register(spec.config_class, spec.model_class, exist_ok=True)
    AutoModelForPreTraining.register(spec.config_class, spec.model_class, exist_ok=True)


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_for_config(config: PretrainedConfig) -> MethodSpec:
    for spec in METHODS.values():
        if spec.config_class.model_type == config.model_type:
            return spec
    raise ValueError(f"{config.model_type!r} is not an hfssl model type; known: {', '.join(sorted(METHODS))}")


def _register_builtin_methods() -> None:
    from hfssl.models.byol import BYOLConfig, BYOLForPreTraining
    from hfssl.models.mae import MAEConfig, MAEForPreTraining
    from hfssl.models.simclr import SimCLRConfig, SimCLRForPreTraining
    from hfssl.models.word2vec import Word2VecConfig, Word2VecModel
    from hfssl.papers import PAPERS

    register_method(MethodSpec("simclr", SimCLRConfig, SimCLRForPreTraining, "multi_view", "image", "vision-ssl", **PAPERS["simclr"]))
    register_method(MethodSpec("byol", BYOLConfig, BYOLForPreTraining, "multi_view", "image", "vision-ssl", **PAPERS["byol"]))
    register_method(MethodSpec("mae", MAEConfig, MAEForPreTraining, "single_view", "image", "masked-image-modeling", **PAPERS["mae"]))
    register_method(MethodSpec("word2vec", Word2VecConfig, Word2VecModel, "word2vec_pairs", "text", "word-embeddings", **PAPERS["word2vec"], build_data="hfssl.models.word2vec.data:build_training_data", finalize="hfssl.models.word2vec.finalize:finalize_word2vec_run"))


_register_builtin_methods()
