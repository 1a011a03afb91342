"""What both memory envs share: configuration, instance choice per episode, masks, invalid actions, copies."""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym import datasets
from schedgym.envbase import SchedulingEnv
from schedgym.graph import GraphSpec


class MemoryEnvBase(SchedulingEnv):
    """Shared plumbing; subclasses set the spaces and implement ``_start``, ``_apply``, ``_encode``."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    instance_type: type = object

    def _setup(
        self, instance: Any, dataset: str, split: str, strict: bool, penalty: float, render_mode: str | None
    ) -> None:
        self.check_render_mode(render_mode)
        self.render_mode = render_mode
        self.strict = bool(strict)
        self.invalid_action_penalty = float(penalty)
        self._fixed = self._resolve(instance) if instance is not None else None
        if self._fixed is None:
            self._dataset, self._split = datasets.parse(f"{dataset}:{split}")
        else:
            self._dataset, self._split = None, split
        self.state: Any = None

    def _resolve(self, instance: Any) -> Any:
        raise NotImplementedError

    def _padding(self) -> dict[str, int]:
        """Largest sizes of the fixed instance or of the dataset split (its metadata, or its instances)."""
        if self._fixed is not None:
            return self._sizes(self._fixed)
        ds = self._dataset
        if "max_size" in ds.meta:
            return dict(ds.meta["max_size"])
        if ds.split_size(self._split) is None:
            raise ValueError(
                f"dataset {ds.name} is an unbounded stream without meta['max_size']; pass the padding"
            )
        sizes = [self._sizes(i) for i in ds.instances(self._split)]
        return {k: max(s[k] for s in sizes) for k in sizes[0]}

    def _sizes(self, inst: Any) -> dict[str, int]:
        raise NotImplementedError

    def _make_spaces(self, spec: GraphSpec) -> None:
        from gymnasium import spaces

        self.graph_spec = spec
        self.observation_space = spec.space(0.0, np.inf)
        self.action_space = spaces.Discrete(spec.n_actions)
        self._buf = spec.zeros()

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        inst = (options or {}).get("instance")
        if inst is None:
            inst = (
                self._fixed if self._fixed is not None else self._dataset.sample(self.np_random, self._split)
            )
        elif not isinstance(inst, self.instance_type):
            raise TypeError(
                f"options['instance'] must be a {self.instance_type.__name__}, got {type(inst).__name__}"
            )
        need, have = self._sizes(inst), self.padding
        over = [k for k in need if need[k] > have[k]]
        if over:
            raise ValueError(
                f"instance {inst.name} does not fit the padding: "
                + ", ".join(f"{k} {need[k]} > {have[k]}" for k in over)
            )
        self._n_invalid = 0
        self._start(inst)
        self._encode()
        return self._obs(), self._info(False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        n = self.graph_spec.n_actions
        try:
            a = int(action)
        except (TypeError, ValueError):
            raise ValueError(
                f"action {action!r} is not an integer in the action space Discrete({n})"
            ) from None
        if not 0 <= a < n:
            raise ValueError(f"action {action!r} is outside the action space Discrete({n})")
        if self.state.done or not self._buf["action_mask"][a]:
            return self._invalid(a)
        reward, extra = self._apply(a)
        self._encode()
        info = self._info(False)
        terminated = bool(self.state.done)
        if terminated:
            info.update(extra)
        return self._obs(), reward, terminated, False, info

    def render(self) -> str | np.ndarray | None:
        if self.state is None or self.render_mode is None:
            return None
        return self._render_ansi() if self.render_mode == "ansi" else self._render_rgb()

    # ------------------------------------------------------------------ schedgym API
    @property
    def instance(self) -> Any:
        if self.state is None:
            raise RuntimeError("call reset() first")
        return self._instance_of(self.state)

    def action_masks(self) -> np.ndarray:
        return self._buf["action_mask"].astype(bool)

    def validate(self) -> dict[str, Any]:
        return type(self).validator(self.instance, self.schedule())

    # ------------------------------------------------------------------ helpers
    def _invalid(self, a: int) -> tuple[dict, float, bool, bool, dict]:
        valid = np.flatnonzero(self._buf["action_mask"]).tolist()
        if self.strict:
            raise ValueError(f"action {a} is masked out ({self._why_masked(a)}); valid actions: {valid}")
        self._n_invalid += 1
        truncated = self._n_invalid >= self._invalid_limit()
        return self._obs(), -self.invalid_action_penalty, False, truncated, self._info(True)

    def _obs(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._buf.items()}

    def _info(self, invalid: bool) -> dict[str, Any]:
        return {"action_mask": self._buf["action_mask"].copy(), "invalid_action": invalid, **self._progress()}

    # Subclass hooks
    def _instance_of(self, state: Any) -> Any:
        raise NotImplementedError

    def _start(self, inst: Any) -> None:
        raise NotImplementedError

    def _apply(self, a: int) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    def _encode(self) -> None:
        raise NotImplementedError

    def _progress(self) -> dict[str, Any]:
        return {}

    def _why_masked(self, a: int) -> str:
        return "not allowed in this state"

    def _invalid_limit(self) -> int:
        raise NotImplementedError

    def _render_ansi(self) -> str:
        raise NotImplementedError

    def _render_rgb(self) -> np.ndarray:
        raise NotImplementedError
