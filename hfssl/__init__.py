"""hfssl: Hugging Face-native self-supervised learning.

Importing hfssl discovers every method (each ``hfssl/models/<method>/`` registers its spec, and
plug-ins register through the ``hfssl.methods`` entry point), which registers their configs and
models with transformers' Auto classes, so ``AutoModel.from_pretrained(run_dir)`` returns the full
SSL model. The transferable encoder in ``run_dir/encoder`` loads with plain transformers and needs
no hfssl. Every method's classes are reachable here by name (``hfssl.SimCLRConfig``).
"""

from typing import Any

from hfssl import hub  # noqa: F401 - installs HfsslPreTrainedModel.push_to_hub
from hfssl.pipeline import load_training_recipe, run
from hfssl.recipe import Recipe, load_recipe
from hfssl.registry import METHODS, MethodSpec, Paper, discover_methods, get_method, register_method

__version__ = "0.1.0"

discover_methods()


def _method_classes() -> dict[str, Any]:
    classes: dict[str, Any] = {}
    for spec in METHODS.values():
        classes[spec.config_class.__name__] = spec.config_class
        classes[spec.model_class.__name__] = spec.model_class
    return classes


def __getattr__(name: str) -> Any:
    classes = _method_classes()
    if name in classes:
        return classes[name]
    raise AttributeError(f"module 'hfssl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_method_classes()])


__all__ = [
    "METHODS",
    "MethodSpec",
    "Paper",
    "discover_methods",
    "get_method",
    "register_method",
    "Recipe",
    "load_recipe",
    "load_training_recipe",
    "run",
]
