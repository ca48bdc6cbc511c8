"""Tiny test configurations: the shared backbones and inputs, and the table of every method's tiny config.

Each method registers its own tiny config next to its tests, in ``tests/models/<method>/tiny_<method>.py``::

    from tiny import TINY_RESNET, register_tiny, two_views

    register_tiny("simclr", {"backbone_config": TINY_RESNET, "projection_dim": 16}, two_views)

:data:`TINY` imports every ``tests/models/*/tiny_*.py`` the first time it is read (the shared tests in
tests/models/test_common.py read it when they are collected), so adding a method edits no shared list;
``test_every_registered_method_has_a_tiny_config`` fails for a method that registers none. A method defined
in tests only (tests/toy_method.py) calls :func:`register_tiny` and :func:`unregister_tiny` with its
``register_method`` and ``unregister_method``.

The files are named ``tiny_<method>.py``, not ``tiny.py``: pytest puts each test folder at the front of
``sys.path`` (rootdir-relative "prepend" imports, no ``__init__.py``), where a ``tiny.py`` would hide this one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

TESTS_DIR = Path(__file__).resolve().parent

if __name__ != "tiny":
    # Imported as ``tests.tiny`` (a script run from the repository root, as
    # tests/training/test_acceleration.py's subprocess is): hand out the one ``tiny`` module, the one whose
    # table ``from tiny import register_tiny`` in the tests/models/*/tiny_*.py files fills. The rest of this
    # file then runs once more in the discarded module object, harmlessly.
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    sys.modules[__name__] = importlib.import_module("tiny")

TINY_RESNET = {"model_type": "resnet", "layer_type": "basic", "depths": [1, 1], "hidden_sizes": [16, 32],
               "embedding_size": 16}
TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 64}
TINY_CONVNEXT = {"model_type": "convnext", "patch_size": 2, "num_stages": 2, "depths": [1, 1], "hidden_sizes": [16, 32]}
TINY_VIT_MAE = {"model_type": "vit_mae", "image_size": 16, "patch_size": 4, "hidden_size": 32,
                "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
                "decoder_intermediate_size": 64}

IMAGE_SIZE = 16

TINY_BERT = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}

# CLIP's tiny text tower: a full BertConfig over all-MiniLM-L6-v2's WordPiece vocabulary.
TINY_TEXT_TOWER = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}


# ---------------------------------------------------------------- inputs shared by several methods


def two_views(batch_size: int = 4, generator: torch.Generator | None = None, *,
              channels: int = 3) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(batch_size, 2, channels, IMAGE_SIZE, IMAGE_SIZE, generator=generator)}


def one_view(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)}


def multi_crop(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """2 global crops of 16 px and 2 local crops of 8 px per image (DINO, SwAV)."""
    return {"pixel_values": torch.randn(batch_size, 2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
            "local_pixel_values": torch.randn(batch_size, 2, 3, IMAGE_SIZE // 2, IMAGE_SIZE // 2, generator=generator)}


# ---------------------------------------------------------------- the table of tiny configs

InputsFactory = Callable[..., dict[str, torch.Tensor]]


class Tiny(NamedTuple):
    """One method's tiny config: ``TINY[method][0]`` are the config's keyword arguments, ``[1]`` makes inputs
    ``(batch_size, generator) -> model(**inputs)``'s keywords; ``image_size`` is the ``data.image_size`` of a
    recipe for it (a method that cuts tiles from whole images needs more than the shared 16 px)."""

    config_kwargs: dict[str, Any]
    inputs: InputsFactory
    image_size: int = IMAGE_SIZE


_REGISTERED: dict[str, Tiny] = {}
_SOURCES: dict[str, Path] = {}
_DISCOVERED: list[Path] = []


def register_tiny(method: str, config_kwargs: dict[str, Any], inputs: InputsFactory,
                  image_size: int = IMAGE_SIZE) -> Tiny:
    """Register ``method``'s tiny config, from the file that calls it (its ``tiny_<method>.py``)."""
    source = Path(sys._getframe(1).f_globals.get("__file__", "<unknown>")).resolve()
    if _SOURCES.get(method, source) != source:
        raise ValueError(f"tiny config for {method!r} registered twice: in {_SOURCES[method]} and in {source}")
    _REGISTERED[method], _SOURCES[method] = Tiny(config_kwargs, inputs, image_size), source
    return _REGISTERED[method]


def unregister_tiny(method: str) -> None:
    _REGISTERED.pop(method, None)
    _SOURCES.pop(method, None)


def tiny_source(method: str) -> Path:
    """The file that registered ``method``'s tiny config."""
    TINY[method]  # noqa: B018 - discovers, or names the missing file
    return _SOURCES[method]


def discover_tiny_configs() -> list[Path]:
    """Import every ``tests/models/*/tiny_*.py`` once (each under its file name, so that a test's own
    ``from tiny_<method> import ...`` finds the same module) and return their paths."""
    if not _DISCOVERED:
        for path in sorted((TESTS_DIR / "models").glob("*/tiny_*.py")):
            if path.stem not in sys.modules:
                spec = importlib.util.spec_from_file_location(path.stem, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[path.stem]
                    raise
            _DISCOVERED.append(path)
    return list(_DISCOVERED)


class _TinyConfigs(Mapping[str, Tiny]):
    """``TINY``: the registered tiny configs, discovered on first read."""

    def _table(self) -> dict[str, Tiny]:
        discover_tiny_configs()
        return _REGISTERED

    def __getitem__(self, method: str) -> Tiny:
        try:
            return self._table()[method]
        except KeyError:
            raise KeyError(f"no tiny config for {method!r}: add tests/models/{method}/tiny_{method}.py "
                           f"calling tiny.register_tiny({method!r}, ...)") from None

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._table()))

    def __len__(self) -> int:
        return len(self._table())


TINY: Mapping[str, Tiny] = _TinyConfigs()


def tiny_model(method: str, **overrides: Any) -> torch.nn.Module:
    from hfssl.registry import get_method

    spec = get_method(method)
    kwargs = TINY[method].config_kwargs
    torch.manual_seed(0)
    return spec.model_class(spec.config_class(**{**kwargs, **overrides}))


def tiny_inputs(method: str, batch_size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    factory = TINY[method].inputs
    return factory(batch_size, torch.Generator().manual_seed(seed))
