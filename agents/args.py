"""Dataclass <-> argparse: every training entry point declares its arguments once, as a dataclass.

Field ``foo_bar: int = 3`` becomes ``--foo-bar INT`` (default 3); ``bool`` fields become
``--flag/--no-flag``; ``dict`` fields take JSON (``--env-kwargs '{"dataset": "jobshop/random-10x10"}'``).
The field's ``metadata["help"]`` is the help text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def _base_type(tp: Any) -> Any:
    """``int | None`` -> int; ``dict[str, Any]`` -> dict."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return origin or tp


def json_dict(text: str) -> dict[str, Any]:
    try:
        val = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({e.msg})") from None
    if not isinstance(val, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return val


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type[Any], skip: Sequence[str] = ()) -> None:
    """Add one option per field of dataclass ``cls`` (except ``skip``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        tp = _base_type(hints[f.name])
        help_ = f.metadata.get("help", "")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_)
        elif tp is dict:
            parser.add_argument(flag, dest=f.name, type=json_dict, default=default, metavar="JSON",
                                help=f"{help_} (JSON object, default {json.dumps(default)})")
        else:
            parser.add_argument(flag, dest=f.name, type=tp, default=default,
                                help=f"{help_} (default {default})")


def from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    """Build ``cls`` from the parsed options (fields absent from ``ns`` keep their defaults)."""
    kw = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}  # type: ignore[arg-type]
    return cls(**kw)


def parse(cls: type[T], argv: Sequence[str] | None = None, description: str = "") -> T:
    """Parse ``argv`` into dataclass ``cls``."""
    p = argparse.ArgumentParser(description=description)
    add_dataclass_args(p, cls)
    return from_namespace(cls, p.parse_args(argv))
