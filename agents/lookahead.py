"""A clairvoyant lookahead router for ``schedgym/LLMServing-v0``: the teacher a learned router imitates.

For each valid instance it copies the simulator, routes the pending request there, then lets a base
router (Llumnix's freeness, deterministic) place the next ``horizon`` arrivals, and scores the candidate
by the TTFT of every request in that window (requests already waiting included; ``power`` 2 weighs the
tail). It picks the cheapest: one step of policy improvement over the base router (Bertsekas' rollout).

It is *privileged*: the copies know the true output lengths and the future arrivals, which no router
can observe. That is what makes it a useful teacher and a useless baseline: the evaluation harness
reports the learned student, which sees only the observation (``features.py``). Copies share everything
immutable with the original (workload, cluster, cost models, masks) and never copy the event logs, so
one candidate costs ~1 ms plus ``horizon`` simulated arrivals.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.serving.migration import freeness
from schedgym.envs.serving.sim import ClusterSim

_SHARED_SIM = ("workload", "cluster", "fits", "feasible", "_no_hits", "same_model", "limit", "arrival", "prompt",
               "output", "cls", "_any_feasible", "migration", "disagg", "wf")
_SHARED_ENGINE = ("cost", "cfg")


def clone_sim(sim: ClusterSim) -> ClusterSim:
    """An independent copy of ``sim``'s dynamic state (immutable inputs shared, event logs started empty)."""
    shared: dict[int, Any] = {}
    for name in _SHARED_SIM:
        v = getattr(sim, name, None)
        if v is not None:
            shared[id(v)] = v
    for e in sim.engines:
        for name in _SHARED_ENGINE:
            v = getattr(e, name)
            shared[id(v)] = v

    class _Out(pickle.Pickler):
        def persistent_id(self, obj: Any) -> int | None:
            return id(obj) if id(obj) in shared else None

    class _In(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return shared[pid]

    logs = sim.res_log, sim.seg_log
    sim.res_log, sim.seg_log = [], []  # the copy starts with empty logs (they are only appended to)
    try:
        buf = io.BytesIO()
        _Out(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(sim)
    finally:
        sim.res_log, sim.seg_log = logs
    buf.seek(0)
    return _In(buf).load()


def freest(sim: ClusterSim, r: int) -> int:
    """Llumnix's dispatch, deterministic: the valid instance with the most freeness (lowest index on ties)."""
    f = freeness(sim, sim.now)
    f[~sim.feasible[r]] = -math.inf
    return int(np.argmax(f))


class LookaheadRouter:
    """Clairvoyant one-step rollout over Llumnix dispatch (see the module docstring); a ``schedgym.Policy``."""

    name = "lookahead"
    env_ids = ("schedgym/LLMServing-v0",)

    def __init__(self, horizon: int = 32, power: float = 1.0) -> None:
        if int(horizon) < 0:
            raise ValueError(f"horizon must be >= 0, got {horizon}")
        if not power > 0:
            raise ValueError(f"power must be > 0, got {power}")
        self.horizon, self.power = int(horizon), float(power)
        self.state: ClusterSim | None = None
        self._lo = 0

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        self.state = env.unwrapped.state  # type: ignore[attr-defined]
        self._lo = 0

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        sim = self.state
        if sim is None:
            raise RuntimeError("lookahead: call reset(env) before act()")
        return self.choose(sim, sim.next_req)

    def action_costs(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        """Rollout cost of each action in the current state (inf where masked): soft labels for a student."""
        sim = self.state
        if sim is None:
            raise RuntimeError("lookahead: call reset(env) before action_costs()")
        return self.costs(sim, sim.next_req)

    def costs(self, sim: ClusterSim, r: int) -> np.ndarray:
        """Rollout cost of sending ``r`` to each instance (inf where masked)."""
        lo = self._oldest_waiting(sim, r)
        out = np.full(len(sim.engines), math.inf)
        for i in np.flatnonzero(sim.feasible[r]):
            c = clone_sim(sim)
            c.route(r, int(i))
            last, q = r, None
            for _ in range(self.horizon):
                q = c.next_decision()
                if q is None:
                    break
                c.route(q, freest(c, q))
                last = q
            else:
                q = c.next_decision()  # the clock stops at the next arrival ...
            if q is None:
                c.drain()  # ... or, at the end of the workload, when everything has finished
            out[i] = self._window_cost(c, lo, last + 1)
        return out

    def choose(self, sim: ClusterSim, r: int) -> int:
        valid = np.flatnonzero(sim.feasible[r])
        if valid.size == 1:
            return int(valid[0])
        return int(np.argmin(self.costs(sim, r)))

    def _oldest_waiting(self, sim: ClusterSim, r: int) -> int:
        """First request before ``r`` still without its first token (routed ones only; rejected never get one)."""
        lo, ft, routed = self._lo, sim.first_token, sim.routed
        while lo < r and (ft[lo] == ft[lo] or routed[lo] < 0):
            lo += 1
        self._lo = lo
        return lo

    def _window_cost(self, c: ClusterSim, lo: int, hi: int) -> float:
        t, p = c.now, self.power
        ft, arr, routed = c.first_token, c.arrival, c.routed
        total = 0.0
        for q in range(lo, hi):
            if routed[q] < 0:
                continue
            f = ft[q]
            x = (f if f == f else t) - arr[q]
            total += x if p == 1.0 else x ** p
        return total
