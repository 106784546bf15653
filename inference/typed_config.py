"""Type checks for config dataclasses read from JSON (config.json, checkpoints, --model-config).

JSON gives strings where numbers belong (`"eval_batch_size": "abc"`) and lists where
tuples belong; such a value must be refused with the option's name and expected type,
not silently replaced or left to fail deep inside torch.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, h) for v, h in zip(value, args))
        return all(_matches(v, args[0]) for v in value) if args else True
    if origin is dict or hint is dict:
        return isinstance(value, dict) and (not args or all(_matches(k, args[0]) for k in value))
    return isinstance(value, hint) if isinstance(hint, type) else True


def _wants_tuple(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(typing.get_origin(h) is tuple for h in typing.get_args(hint))
    return origin is tuple


def _describe(hint: Any) -> str:
    if hint is float:
        return "a finite number"
    text = getattr(hint, "__name__", None) if typing.get_origin(hint) is None else None
    return text or str(hint).replace("typing.", "")


def checked_fields(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`data` as keyword arguments of dataclass `cls`: unknown names and values of the wrong type
    are refused (ValueError naming `what`, the option and the type); lists become tuples and
    whole-number floats stay floats where the field says so."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what} has no option(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if not _matches(value, hint):
            raise ValueError(f"{what}: option {name} is {value!r}; expected {_describe(hint)}")
        if isinstance(value, list) and _wants_tuple(hint):
            value = tuple(value)
        elif hint is float and isinstance(value, int):
            value = float(value)
        values[name] = value
    return values
