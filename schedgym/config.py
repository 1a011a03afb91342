"""One way to accept a dataclass config: an instance, a preset name or a dict of its fields (unknown keys and
missing required fields are errors that name them)."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_fields(cls: type[T], d: dict[str, Any], what: str) -> T:
    """``cls(**d)`` after checking the keys: unknown or missing-required ones raise ValueError naming them."""
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    bad = sorted(set(d) - set(known))
    if bad:
        raise ValueError(f"{what} config: unknown key(s) {bad}; expected {sorted(known)}")
    required = [f.name for f in fields(cls)  # type: ignore[arg-type]
                if f.default is MISSING and f.default_factory is MISSING and f.name not in d]
    if required:
        raise ValueError(f"{what} config {d}: {', '.join(required)} required; expected keys {sorted(known)}")
    return cls(**d)


def resolve(value: Any, cls: type[T], presets: dict[str, T], what: str, default: T | None = None) -> T | None:
    """``None`` -> ``default``; a ``cls`` instance as is; a preset name from ``presets``; a dict of fields."""
    if value is None:
        return default
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        if value not in presets:
            raise ValueError(f"unknown {what} preset {value!r}; expected one of {sorted(presets)}, a dict of "
                             f"{cls.__name__} fields, or None")
        return presets[value]
    if isinstance(value, dict):
        return from_fields(cls, value, what)
    raise TypeError(f"{what} must be None, a preset name, a dict or a {cls.__name__}, got {type(value).__name__}")
