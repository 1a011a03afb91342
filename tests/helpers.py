"""Rollout helpers shared by the test modules (plain functions, no fixtures)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

MAX_STEPS = 100_000  # a safety net: an episode that runs this long is a bug


@dataclass
class Trajectory:
    observations: list[dict[str, np.ndarray]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final_info(self) -> dict[str, Any]:
        return self.infos[-1]


def masked_random_action(info: dict[str, Any], rng: np.random.Generator) -> int:
    """A uniformly random action among those with ``info["action_mask"] == 1``."""
    valid = np.flatnonzero(info["action_mask"])
    assert valid.size > 0, "an unfinished episode offers no valid action"
    return int(valid[rng.integers(valid.size)])


def check_step_invariants(env: gym.Env, obs: dict[str, np.ndarray], info: dict[str, Any]) -> None:
    """Per-step invariants: obs in space, mask in info == obs mask == action_masks()."""
    assert env.observation_space.contains(obs), _explain_not_in_space(env.observation_space, obs)
    assert "action_mask" in info
    mask = np.asarray(info["action_mask"])
    np.testing.assert_array_equal(env.unwrapped.action_masks(), mask.astype(bool))
    assert env.unwrapped.action_masks().dtype == np.bool_
    if isinstance(obs, dict) and "action_mask" in obs:
        np.testing.assert_array_equal(obs["action_mask"], mask)


def rollout(env: gym.Env, seed: int | None, policy: int | np.random.Generator, *, check: bool = True,
            first: tuple[dict, dict] | None = None, max_steps: int | None = None) -> Trajectory:
    """Run an episode with a random masked policy (``policy``: a seed or a Generator).

    With ``first=(obs, info)`` the env is not reset: the episode continues from that point. The episode
    stops at termination/truncation, or after ``max_steps`` decisions when that is given explicitly.
    """
    rng = policy if isinstance(policy, np.random.Generator) else np.random.default_rng(policy)
    traj = Trajectory()
    obs, info = env.reset(seed=seed) if first is None else first
    traj.observations.append(obs)
    traj.infos.append(info)
    if check:
        check_step_invariants(env, obs, info)
    for _ in range(MAX_STEPS if max_steps is None else max_steps):
        a = masked_random_action(info, rng)
        obs, r, term, trunc, info = env.step(a)
        traj.actions.append(a)
        traj.observations.append(obs)
        traj.rewards.append(float(r))
        traj.terminated.append(bool(term))
        traj.truncated.append(bool(trunc))
        traj.infos.append(info)
        if check:
            check_step_invariants(env, obs, info)
            assert info.get("invalid_action", False) is False, "a masked-in action was reported invalid"
        if term or trunc:
            return traj
    if max_steps is None:
        raise AssertionError(f"episode did not end within {MAX_STEPS} masked steps")
    return traj


def assert_obs_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray], where: str = "") -> None:
    assert set(a) == set(b), where
    for k in a:
        assert a[k].dtype == b[k].dtype, f"{where} key {k}: dtype {a[k].dtype} != {b[k].dtype}"
        assert np.array_equal(a[k], b[k]), f"{where} key {k} differs"


def assert_trajectories_equal(t1: Trajectory, t2: Trajectory, objective: str) -> None:
    assert len(t1.observations) == len(t2.observations), "episode lengths differ"
    for i, (a, b) in enumerate(zip(t1.observations, t2.observations, strict=True)):
        assert_obs_equal(a, b, f"step {i}")
    assert t1.actions == t2.actions
    assert t1.rewards == t2.rewards  # bit-identical floats
    assert t1.terminated == t2.terminated
    assert t1.truncated == t2.truncated
    assert [i.get(objective) for i in t1.infos] == [i.get(objective) for i in t2.infos]


def _explain_not_in_space(space: gym.Space, obs: Any) -> str:
    if isinstance(space, gym.spaces.Dict) and isinstance(obs, dict):
        bad = [k for k, s in space.spaces.items() if k not in obs or not s.contains(obs[k])]
        extra = sorted(set(obs) - set(space.spaces))
        return f"observation keys outside the space: {bad}; unexpected keys: {extra}"
    return "observation outside observation_space"


def table_rows(cost: Any) -> list[dict[str, float]]:
    """Calibration-table rows (``costmodel.CalibrationTable`` schema) of a cost model on a 4 x 4 grid."""
    rows = []
    for p in (0, 256, 1024, 4096):
        for d in (0, 1, 16, 128):
            if p + d == 0:
                continue
            for k in ((0,) if d == 0 else (d * 100, d * 2000)):
                rows.append({"prefill_tokens": p, "decode_tokens": d, "kv_context_tokens": k,
                             "time_s": cost.iteration_time(p, d, k), "repeats": 5})
    return rows
