"""hfssl: Hugging Face-native self-supervised learning.

Importing hfssl registers every method's config and model with transformers' Auto classes, so
``AutoModel.from_pretrained(run_dir)`` returns the full SSL model. The transferable encoder in
``run_dir/encoder`` loads with plain transformers and needs no hfssl.
"""

from hfssl.registry import METHODS, MethodSpec, get_method, register_method  # noqa: I001 (registers Auto classes)
from hfssl.models.byol import BYOLConfig, BYOLForPreTraining
from hfssl.models.mae import MAEConfig, MAEForPreTraining
from hfssl.models.simclr import SimCLRConfig, SimCLRForPreTraining
from hfssl.models.word2vec import Word2VecConfig, Word2VecModel
from hfssl.training.recipe import Recipe, load_recipe

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "MethodSpec",
    "get_method",
    "register_method",
    "SimCLRConfig",
    "SimCLRForPreTraining",
    "BYOLConfig",
    "BYOLForPreTraining",
    "MAEConfig",
    "MAEForPreTraining",
    "Word2VecConfig",
    "Word2VecModel",
    "Recipe",
    "load_recipe",
]
