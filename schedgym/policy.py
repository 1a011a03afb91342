"""The one Policy protocol every baseline and learned agent satisfies, and the registry of baselines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym


@runtime_checkable
class Policy(Protocol):
    """``reset`` at the start of each episode (after ``env.reset``), then ``act`` once per decision.

    ``reset`` receives the env so heuristics that need the whole problem (HEFT, CP-SAT, dispatching
    rules) can read the simulator state the env exposes publicly (``env.unwrapped.state``); learned
    policies ignore it.
    """

    name: str

    def reset(self, env: gym.Env, seed: int | None = None) -> None: ...

    def act(self, obs: Any, info: dict[str, Any]) -> Any: ...


PolicyFactory = Callable[..., Policy]
_BASELINES: dict[str, dict[str, PolicyFactory]] = {}


def register_baseline(env_id: str, name: str, factory: PolicyFactory) -> None:
    """Make ``factory`` available as baseline ``name`` for ``env_id`` (CLI, harness)."""
    table = _BASELINES.setdefault(env_id, {})
    if name in table and table[name] is not factory:
        raise ValueError(f"baseline {name!r} is already registered for {env_id}")
    table[name] = factory


def baselines(env_id: str) -> dict[str, PolicyFactory]:
    """Baseline factories registered for ``env_id`` (empty if none)."""
    return dict(_BASELINES.get(_strip_module(env_id), {}))


def make_policy(env_id: str, name: str, **kwargs: Any) -> Policy:
    """Instantiate the baseline ``name`` for ``env_id``; the error lists the valid names."""
    table = baselines(env_id)
    if name not in table:
        raise ValueError(f"unknown policy {name!r} for {env_id}; expected one of {sorted(table)}")
    return table[name](**kwargs)


def _strip_module(env_id: str) -> str:
    """``'schedgym:schedgym/JobShop-v0'`` -> ``'schedgym/JobShop-v0'``."""
    return env_id.split(":", 1)[1] if ":" in env_id else env_id
