"""What every schedgym environment adds to ``gymnasium.Env``: masks, the schedule, its validator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


class SchedulingEnv(gym.Env[dict[str, np.ndarray], Any]):
    """Base class: subclasses set ``objective`` and ``validator`` and implement ``schedule``/``action_masks``.

    ``validator(instance, schedule_array) -> dict`` is the domain's independent checker; ``validate()``
    runs it on the env's current schedule so the harness never trusts the simulator's own numbers.
    """

    objective: ClassVar[str] = "makespan"
    validator: ClassVar[Callable[..., dict[str, Any]]]
    # Module with render_ansi(state) and render_rgb_array(state); ``render`` delegates to it.
    renderer: ClassVar[Any] = None
    state: Any = None

    @classmethod
    def merge_config(cls, config: dict[str, Any] | None, args: dict[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments ``args`` with RLlib's EnvContext (passed positionally) applied: its
        keys override; a key that is not an argument raises."""
        if not config:
            return args
        unknown = sorted(set(config) - set(args))
        if unknown:
            raise TypeError(f"{cls.__name__} got unknown config keys {unknown}; expected some of {sorted(args)}")
        return {**args, **dict(config)}

    def check_render_mode(self, render_mode: str | None) -> None:
        """A clear error unless ``render_mode`` is None or one of ``metadata["render_modes"]``."""
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, "
                             f"got {render_mode!r}")

    def render(self) -> str | np.ndarray | None:
        """Delegate to the domain's viewer module (``ansi`` text or an ``rgb_array`` image)."""
        if self.state is None or self.render_mode is None or self.renderer is None:
            return None
        if self.render_mode == "ansi":
            return self.renderer.render_ansi(self.state)
        return self.renderer.render_rgb_array(self.state)

    @property
    def instance(self) -> Any:
        raise NotImplementedError

    def schedule(self) -> Any:
        """The schedule built so far (a domain schedule object with ``to_json()``)."""
        raise NotImplementedError

    def action_masks(self) -> np.ndarray:
        """Bool mask of valid actions (MaskablePPO's convention)."""
        raise NotImplementedError

    def validate(self) -> dict[str, Any]:
        """Objectives recomputed by the domain's independent validator."""
        raise NotImplementedError


def action_index(action: Any, n: int) -> int:
    """``action`` as an int in ``0..n-1``; a ValueError names the action and the space otherwise."""
    try:
        a = int(action)
    except (TypeError, ValueError):
        raise ValueError(f"action {action!r} is not an index in Discrete({n})") from None
    if not 0 <= a < n:
        raise ValueError(f"action {action!r} is outside the action space Discrete({n})")
    return a
