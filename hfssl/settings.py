"""Typed settings sections: the machinery every recipe section and protocol setting is parsed with.

A *section* is a dataclass whose fields are the allowed keys. :func:`build_section` turns a plain
mapping (from YAML or ``key=value`` overrides) into one, rejecting unknown keys with a suggestion
and checking types: numbers written in any YAML form are accepted where a number is expected, an
integer field refuses booleans and fractions (``queue_size: 2.5`` or ``true``), lists become tuples
where the field is a tuple, and booleans must be booleans. Range checks belong to each section's
``__post_init__``.

:func:`load_yaml` is the one YAML reader of recipes and overrides. PyYAML follows YAML 1.1, where
``3e-4``, ``2e-1`` and ``1e30`` (no dot, or no exponent sign) are strings; it also resolves YAML
1.2's scientific notation to floats, so a number means a number in every section, including the
free-form ``model`` section, whose values nothing else would convert.

This module is the bottom of the house: each layer defines its own sections with it (data configs
in :mod:`hfssl.data.config`, views in :mod:`hfssl.views.config`, the recipe in :mod:`hfssl.recipe`,
protocol settings in :mod:`hfssl.evaluation.protocols`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, TypeVar, Union, get_type_hints

import yaml

T = TypeVar("T")

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads YAML 1.2 scientific notation (``1e-3``, ``2E+5``, ``.5e1``) as floats."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text as recipes are read: safe, with scientific notation as floats (see the module docstring)."""
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


class RecipeError(ValueError):
    """A recipe (or setting) that cannot be used as written; the message names the key and the fix."""


def suggest(key: str, allowed: list[str]) -> str:
    """`` Did you mean 'x'?`` for a close match, else the list of allowed keys."""
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" Did you mean {close[0]!r}?" if close else f" Allowed keys: {', '.join(sorted(allowed))}."


def _parts(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _as_number(where: str, value: Any, kind: type) -> Any:
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value) if kind is float else (float(value) if not value.strip().lstrip("+-").isdigit() else int(value))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{where} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise RecipeError(f"{where} must be an integer, got {value!r}")
            return int(value)
        return value
    return float(value)


def coerce(where: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field annotation (``int``, ``float``, ``bool``, ``str``, tuples,
    ``X | None``, mappings) and return it in the field's type; ``where`` names the key in errors."""
    parts = _parts(annotation)
    if value is None:
        if type(None) not in parts:
            raise RecipeError(f"{where} cannot be null")
        return None
    kinds = [part for part in parts if part is not type(None)]
    kind = kinds[0] if len(kinds) == 1 else None
    origin = typing.get_origin(kind) if kind is not None else None
    if origin is tuple:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where} must be a list, got {value!r}")
        args = [arg for arg in typing.get_args(kind) if arg is not Ellipsis]
        item_type = args[0] if args else Any
        if item_type in (int, float):
            value = [_as_number(f"{where}[{index}]", item, item_type) for index, item in enumerate(value)]
        return tuple(value)
    if kind in (int, float):
        return _as_number(where, value, kind)
    if kind is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where} must be a string, got {value!r}")
        return value
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return value


def build_section(cls: type[T], name: str, values: Any) -> T:
    """Build section dataclass ``cls`` (called ``name`` in messages) from a mapping, rejecting unknown keys."""
    if values is None:
        values = {}
    if dataclasses.is_dataclass(values) and not isinstance(values, type):
        return values  # already built
    if not isinstance(values, dict):
        raise RecipeError(f"section {name!r} must be a mapping of keys to values, got {type(values).__name__}")
    hints = get_type_hints(cls)
    allowed = [field.name for field in dataclasses.fields(cls) if field.init]
    kwargs = {}
    for key, value in values.items():
        if key not in allowed:
            raise RecipeError(f"unknown key {name}.{key} in recipe.{suggest(str(key), allowed)}")
        kwargs[key] = coerce(f"{name}.{key}", value, hints[key])
    try:
        return cls(**kwargs)
    except RecipeError as error:
        if name in str(error):  # the section's own check already names the key
            raise
        raise RecipeError(f"{name}: {error}") from error
    except (TypeError, ValueError) as error:
        raise RecipeError(f"section {name!r}: {error}") from error


def plain(value: Any) -> Any:
    """Dataclasses, tuples and nested mappings as plain YAML-safe dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value
