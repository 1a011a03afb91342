"""Entry point of ``schedgym/LLMServing-v0``: one id, two backends.

``gym.make("schedgym/LLMServing-v0")`` (``backend="sim"``, the default) is the deterministic simulator
(``env.LLMServingEnv``); ``gym.make("schedgym/LLMServing-v0", backend="live", ...)`` runs the same task on real
torch engines (``live_env.LLMServingLiveEnv``, also registered on its own as ``schedgym/LLMServingLive-v0`` with
``nondeterministic=True``; the shared id keeps the registry's deterministic flag, which holds for the default
backend only). Each backend takes its own keyword arguments (see the two classes' docstrings).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from schedgym.envs.serving.env import LLMServingEnv

BACKENDS = ("sim", "live")


def make_llm_serving(config: dict[str, Any] | None = None, *, backend: str = "sim", **kwargs: Any) -> gym.Env:
    """The LLMServing env of ``backend`` (``"sim"`` or ``"live"``); ``config`` (RLlib's EnvContext) may name the
    backend too."""
    if config and "backend" in config:
        config = dict(config)
        backend = config.pop("backend")
    if backend not in BACKENDS:
        raise ValueError(f"schedgym/LLMServing-v0: backend must be one of {list(BACKENDS)}, got {backend!r} "
                         "(the live env's engine placement is its 'engine_backend': 'thread' or 'ray')")
    if backend == "sim":
        return LLMServingEnv(config, **kwargs)
    from schedgym.envs.serving.live_env import LLMServingLiveEnv
    if "engine_backend" in kwargs:
        kwargs["backend"] = kwargs.pop("engine_backend")
    if config and "engine_backend" in config:
        config = dict(config)
        config["backend"] = config.pop("engine_backend")
    return LLMServingLiveEnv(config, **kwargs)


make_llm_serving.metadata = LLMServingEnv.metadata  # type: ignore[attr-defined]  # gym.make reads render modes
