"""Frozen config dataclasses to and from JSON-ready dicts: the one owner of that mapping.

``SimulationConfig``, ``ModelConfig`` and ``TrainConfig`` are saved with what they made
(``simulation.json``, checkpoints, run folders) and read back through these two
functions, so a tuple field comes back a tuple, a nested config comes back a config,
and a field from another version is refused by name.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any


class UnknownFieldError(ValueError):
    """A saved config names a field this version does not have."""

    def __init__(self, cls: type, unknown: list[str]) -> None:
        self.field = unknown[0]
        self.unknown = unknown
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        super().__init__(f"{cls.__name__}: unknown field(s) {', '.join(unknown)} (known: {known})")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen config dataclass as a JSON-ready dict (tuples become lists, nested configs dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass from :func:`config_to_dict`'s output.

    Lists become tuples where the field is a tuple, nested dataclasses are rebuilt,
    and an unknown field is refused by name (a config from another version).
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UnknownFieldError(cls, unknown)
    return cls(**{name: _coerce(hints.get(name), value) for name, value in data.items()})


def _coerce(hint: Any, value: Any) -> Any:
    if hint is None or value is None:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return config_from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                return config_from_dict(arg, value)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _coerce(arg, value)
        return value
    if (origin is tuple or hint is tuple) and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v) for a, v in zip(args, value))
        return tuple(value)
    return value
