"""Named datasets with explicit splits.

A dataset maps split names to either a finite tuple of instance names (loaded through ``loader``) or an
unbounded generator stream (``generator(rng)``). Names are either registered exactly or matched by a
pattern (``jobshop/random-15x15`` from ``jobshop/random-JxM``). Registration happens at import of the
domain modules, like Gymnasium's registry; nothing is read from disk until an instance is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A named collection of instances for one environment id.

    ``splits`` maps a split name to a tuple of instance names, or to ``None`` for an unbounded stream
    drawn from ``generator``.
    """

    name: str
    env_id: str
    description: str
    splits: dict[str, tuple[str, ...] | None]
    loader: Callable[[str], Any] | None = None
    generator: Callable[[np.random.Generator], Any] | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def split_size(self, split: str) -> int | None:
        """Number of instances in ``split`` (``None`` = unbounded generator stream)."""
        names = self._split(split)
        return None if names is None else len(names)

    def names(self, split: str = "test") -> tuple[str, ...]:
        """Instance names of a finite split."""
        names = self._split(split)
        if names is None:
            raise ValueError(f"split {split!r} of {self.name} is an unbounded generator; use sample()")
        return names

    def load(self, instance_name: str) -> Any:
        """Load one instance by name (cached per dataset object)."""
        if self.loader is None:
            raise ValueError(f"dataset {self.name} has no named instances")
        if instance_name not in self._cache:
            self._cache[instance_name] = self.loader(instance_name)
        return self._cache[instance_name]

    def instances(self, split: str = "test") -> Iterator[Any]:
        """Iterate over the instances of a finite split, in order."""
        for n in self.names(split):
            yield self.load(n)

    def sample(self, rng: np.random.Generator, split: str = "train") -> Any:
        """One instance from ``split``: generated for a stream, uniformly chosen for a finite split."""
        names = self._split(split)
        if names is None:
            assert self.generator is not None
            return self.generator(rng)
        if not names:
            raise ValueError(f"split {split!r} of {self.name} is empty")
        return self.load(names[int(rng.integers(len(names)))])

    def _split(self, split: str) -> tuple[str, ...] | None:
        if split not in self.splits:
            raise ValueError(f"dataset {self.name} has no split {split!r}; expected one of {sorted(self.splits)}")
        return self.splits[split]


_EXACT: dict[str, Dataset] = {}
_PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], Dataset], str]] = {}


def register(dataset: Dataset) -> None:
    """Register a dataset under its exact name."""
    if dataset.name in _EXACT:
        raise ValueError(f"dataset {dataset.name!r} is already registered")
    _EXACT[dataset.name] = dataset


def register_pattern(display: str, pattern: str, factory: Callable[[re.Match[str]], Dataset], help: str) -> None:
    """Register a family of datasets whose names match ``pattern`` (shown as ``display``)."""
    _PATTERNS[display] = (re.compile(pattern), factory, help)


def get(name: str) -> Dataset:
    """The dataset called ``name``; ``name:split`` is accepted and the split ignored here."""
    name = name.split(":", 1)[0]
    if name in _EXACT:
        return _EXACT[name]
    for regex, factory, _ in _PATTERNS.values():
        m = regex.fullmatch(name)
        if m:
            return factory(m)
    raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(_EXACT) + sorted(_PATTERNS)}")


def parse(spec: str, default_split: str = "test") -> tuple[Dataset, str]:
    """``'jobshop/taillard-15x15:test'`` -> (dataset, split); the split defaults to ``default_split``."""
    name, _, split = spec.partition(":")
    ds = get(name)
    split = split or default_split
    ds._split(split)  # validates the split name
    return ds, split


def catalogue() -> list[tuple[str, str, dict[str, int | None], str]]:
    """(name, env id, split sizes, description) of every registered dataset and dataset family."""
    rows = [(d.name, d.env_id, {s: d.split_size(s) for s in d.splits}, d.description) for d in _EXACT.values()]
    for display, (_, _factory, help) in _PATTERNS.items():
        rows.append((display, "", {}, help))
    return sorted(rows)


_FILE_LOADERS: dict[str, Callable[[str], Any]] = {}


def register_file_loader(env_id: str, loader: Callable[[str], Any]) -> None:
    """How ``--instances PATH`` files are read for ``env_id``."""
    _FILE_LOADERS[env_id] = loader


def load_files(env_id: str, paths: list[str]) -> list[Any]:
    """Instances from files, or from every file in a directory (sorted); errors name the file."""
    from pathlib import Path

    env_id = env_id.split(":", 1)[-1]
    if env_id not in _FILE_LOADERS:
        raise ValueError(f"{env_id} has no instance-file format; expected one of {sorted(_FILE_LOADERS)}")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"--instances: no such file or directory: {p}")
    if not files:
        raise ValueError(f"--instances: no instance files found in {paths}")
    return [_FILE_LOADERS[env_id](str(f)) for f in files]
