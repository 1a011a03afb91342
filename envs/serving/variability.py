"""Measured iteration-time variability of a live host: interference between engines and per-iteration jitter.

A calibration table fitted to a live run (``hwbackend.profiler.calibrate_live``) times an engine running alone
(its rows come from iterations no other engine overlapped) and also stores, measured on that run:

- ``interference``: ``{"prefill": [1, s_1, s_2, ...], "decode": [1, ...]}`` (or one list for both), the slowdown
  of a prefill-only / a decoding iteration while ``k`` other engines of the host compute (a least-squares fit of
  progress rates, ``profiler._interference``). Engines on one host share its cores, memory bandwidth and, with
  the thread backend, Python's interpreter lock: on a 2-core CPU a tiny-model decode iteration runs about 2.7x
  slower while the other engine computes, a prefill about 1.7x (more of its time is in torch kernels that
  release the lock);
- ``iteration_ratio_quantiles``: the distribution of each iteration's period (wall time, plus the loop's gap
  since the previous iteration when work was pending) over its table time, as quantiles at evenly spaced levels
  0, 1/(n-1), ..., 1. On a shared CPU it is heavy-tailed: the OS and other threads take the core for
  milliseconds;
- ``iteration_ratio_quantiles_by_overlap``: the same distribution per iteration kind and number of other engines
  computing (the iterations mostly spent with that many), live/table time itself (interference included);
- ``wake_latency_quantiles``: seconds from a request reaching an idle engine to its first iteration starting
  (the engine loop's wake-up), same layout.

The simulator applies them when asked (``LLMServing-v0``'s ``interference`` and ``iteration_noise``), drawing
from a per-instance ``numpy.random.Generator`` seeded from the episode seed (the same seed gives the same
trajectory; inverse CDF, linear between quantiles):

- ``interference`` alone: an iteration (or a closed-form decode run) is slowed by ``s_k`` for the other engines
  computing when it starts; a single iteration is re-timed when that number changes, a decode run is cut at its
  next iteration boundary and continues at the new speed;
- ``iteration_noise`` alone: every iteration's table time is multiplied by a draw of the pooled ratio;
- both: by a draw of its kind's and overlap's ratio (interference included; runs are cut as above), or, for a
  hand-written table without ``iteration_ratio_quantiles_by_overlap``, by ``s_k`` times a pooled draw;
- with noise, an idle engine starts on an arriving request after a drawn wake latency (if measured).

The live router decides one request at a time, so a request arriving while it handles another waits: its
dispatch latency is queueing plus its own service (poll the engines, decide, send). ``dispatch_service_quantiles``
holds the service times (``router_service_times``) and ``router_dispatch_times`` replays that queue for another
arrival sequence — the latencies themselves depend on how bursty the segment is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

QUANTILES_KEY = "iteration_ratio_quantiles"
OVERLAP_KEY = "iteration_ratio_quantiles_by_overlap"
WAKE_KEY = "wake_latency_quantiles"
INTERFERENCE_KEY = "interference"
SERVICE_KEY = "dispatch_service_quantiles"


def ratio_quantiles(ratios: np.ndarray, n: int = 101) -> list[float]:
    """The ``n`` evenly spaced quantiles (levels 0..1) of measured time ratios, for the calibration table."""
    r = np.asarray(ratios, np.float64)
    if r.size == 0 or not np.all(np.isfinite(r)) or not np.all(r > 0):
        raise ValueError(f"iteration time ratios must be a non-empty array of finite numbers > 0, got {r.size} "
                         "values" + ("" if r.size == 0 else f" (min {np.nanmin(r)})"))
    return [float(x) for x in np.quantile(r, np.linspace(0.0, 1.0, n))]


def _positive_list(q: Any, n_min: int) -> bool:
    return isinstance(q, (list, tuple)) and len(q) >= n_min and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 for x in q)


def check_quantiles(q: Any, src: str, key: str = QUANTILES_KEY) -> np.ndarray:
    """``q`` as a read-only array after checking it (>= 2 finite values > 0, non-decreasing); errors name ``src``."""
    a = np.array(q, np.float64) if _positive_list(q, 2) else np.zeros(0)
    if a.size == 0 or np.any(np.diff(a) < 0):
        raise ValueError(f"{src}: {key} must be a list of at least 2 non-decreasing finite numbers > 0 "
                         "(quantiles at evenly spaced levels 0..1)")
    a.flags.writeable = False
    return a


def check_by_overlap(q: Any, src: str) -> np.ndarray:
    """``{"prefill": [quantiles with 0 others, with 1, ...], "decode": [...]}`` as a read-only (2, K, Q) array."""
    rows = [q.get("prefill"), q.get("decode")] if isinstance(q, dict) and set(q) == {"prefill", "decode"} else None
    ok = rows is not None and all(isinstance(r, list) and r for r in rows) and len(rows[0]) == len(rows[1])
    if ok:
        arr = [[check_quantiles(x, src, OVERLAP_KEY) for x in r] for r in rows]  # type: ignore[union-attr]
        ok = len({a.shape for r in arr for a in r}) == 1
    if not ok:
        raise ValueError(f"{src}: {OVERLAP_KEY} must be {{'prefill': [...], 'decode': [...]}}, each a list (one per "
                         "number of other engines computing, 0 first) of equal-length quantile lists")
    a = np.array(arr)
    a.flags.writeable = False
    return a


def check_interference(s: Any, src: str) -> np.ndarray:
    """``s`` as a read-only (2, K) array (prefill-only, decoding iterations) after checking it: one list or
    ``{"prefill": list, "decode": list}`` of equal length, each [1, then finite numbers >= 1]."""
    rows = [s.get("prefill"), s.get("decode")] if isinstance(s, dict) and set(s) == {"prefill", "decode"} else [s, s]
    ok = all(_positive_list(r, 1) and r[0] == 1 and min(r) >= 1 for r in rows) and len(rows[0]) == len(rows[1])
    if not ok:
        raise ValueError(f"{src}: {INTERFERENCE_KEY} must be a list [1, s_1, ...] of finite numbers >= 1 (the "
                         "slowdown of an iteration while k other engines compute), or {'prefill': [...], "
                         f"'decode': [...]}} with two such lists of equal length, got {s!r}")
    a = np.array(rows, np.float64)
    a.flags.writeable = False
    return a


class IterationNoise:
    """Independent multiplicative factors for one instance's iterations, and the delay before an idle engine
    starts on an arriving request, drawn by inverse CDF."""

    def __init__(self, quantiles: np.ndarray, rng: np.random.Generator, wake_q: np.ndarray | None = None,
                 by_overlap: np.ndarray | None = None) -> None:
        self.q = quantiles
        self.levels = np.linspace(0.0, 1.0, quantiles.shape[0])
        self.rng = rng
        self.by_overlap = by_overlap  # (2, K, Q): prefill-only / decoding, by other engines computing
        self.levels_by = None if by_overlap is None else np.linspace(0.0, 1.0, by_overlap.shape[2])
        self.wake_q = wake_q
        self.wake_levels = None if wake_q is None else np.linspace(0.0, 1.0, wake_q.shape[0])

    def wake(self) -> float:
        """Seconds from a request reaching an idle engine to its first iteration (0 if not measured)."""
        if self.wake_q is None:
            return 0.0
        return float(np.interp(self.rng.random(), self.wake_levels, self.wake_q))

    def _dist(self, cls: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        if cls is None:
            return self.levels, self.q
        assert self.by_overlap is not None and self.levels_by is not None
        return self.levels_by, self.by_overlap[cls[0], min(cls[1], self.by_overlap.shape[1] - 1)]

    def draw(self, k: int, cls: tuple[int, int] | None = None) -> np.ndarray:
        """``k`` factors (one per iteration, in order), from the pooled distribution or, with ``cls`` = (the
        iteration decodes, other engines computing), from that class's (which includes the interference)."""
        lv, q = self._dist(cls)
        return np.interp(self.rng.random(k), lv, q)

    def one(self, cls: tuple[int, int] | None = None) -> float:
        lv, q = self._dist(cls)
        return float(np.interp(self.rng.random(), lv, q))


def _required(costs: list[Any], labels: list[str], attr: str, key: str, option: str) -> list[np.ndarray]:
    out = []
    for i, (cm, label) in enumerate(zip(costs, labels, strict=True)):
        v = getattr(cm, attr, None)
        if v is None:
            raise ValueError(f"{option}=True needs every instance's calibration table to carry {key} (written by "
                             f"`schedgym calibrate --from-live`); instance {i} ({label}) has none")
        out.append(v)
    return out


def instance_noise(costs: list[Any], labels: list[str], seed: int) -> list[IterationNoise]:
    """One ``IterationNoise`` per instance from its calibration table's measured ratios."""
    qs = _required(costs, labels, "ratio_quantiles", QUANTILES_KEY, "iteration_noise")
    return [IterationNoise(q, np.random.default_rng([seed, i]), getattr(c, "wake_quantiles", None),
                           getattr(c, "ratio_quantiles_by_overlap", None))
            for i, (q, c) in enumerate(zip(qs, costs, strict=True))]


def instance_interference(costs: list[Any], labels: list[str]) -> list[np.ndarray]:
    """Each instance's slowdown by the number of other busy engines (its calibration table's ``interference``)."""
    return _required(costs, labels, "interference", INTERFERENCE_KEY, "interference")


def least_factor(cost: Any, interference: bool, noise: bool) -> float:
    """The smallest factor the options can apply to ``cost``'s times (the validator's prefill lower bound).
    Interference alone never speeds an iteration up (progress at 1/s_k <= 1); with noise too, a drawn factor
    may then be re-timed by s_new / s_old when other engines stop, down to the least draw over the largest s."""
    q, by = getattr(cost, "ratio_quantiles", None), getattr(cost, "ratio_quantiles_by_overlap", None)
    if not noise or q is None:
        return 1.0
    least = float(q[0]) if by is None else min(float(q[0]), float(by.min()))
    s = getattr(cost, "interference", None)
    if interference and s is not None:
        least /= float(s.max())
    return min(1.0, least)


def router_service_times(arrival: np.ndarray, dispatched: np.ndarray) -> np.ndarray:
    """Each dispatched request's router service time, in dispatch order: from when the router could take it (it
    had arrived and the previous request was dispatched) to its dispatch (>= 0: a request is dispatched after it
    arrives). Undispatched (NaN) requests are skipped."""
    ok = ~np.isnan(dispatched)
    order = np.argsort(dispatched[ok], kind="stable")
    a, d = arrival[ok][order], dispatched[ok][order]
    return d - np.maximum(a, np.r_[-np.inf, d[:-1]])


def router_dispatch_times(arrival: np.ndarray, service: np.ndarray) -> np.ndarray:
    """When each request (arrival order) reaches its engine through a router that serves one request at a time,
    first come first served, request k taking ``service[k]`` seconds."""
    out = np.empty(len(arrival))
    free = -math.inf
    for k, (a, s) in enumerate(zip(arrival.tolist(), service.tolist(), strict=True)):
        free = max(a, free) + s
        out[k] = free
    return out
