"""Measured iteration-time variability of a live host: interference between engines and per-iteration jitter.

A calibration table fitted to a live run (``hwbackend.profiler.calibrate_live``) times an engine running alone
(its rows come from iterations no other engine overlapped) and also stores, measured on that run:

- ``interference``: ``{"prefill": [1, s_1, s_2, ...], "decode": [1, ...]}`` (or one list for both), the median
  slowdown of a prefill-only / a decoding iteration while ``k`` other engines of the host are computing (engines
  on one host share its cores, memory bandwidth and, with the thread backend, Python's interpreter lock: on a
  2-core CPU a tiny-model decode iteration runs about 2.7x slower while the other engine computes, a prefill
  about 2x — more of its time is spent in torch kernels that release the lock);
- ``iteration_ratio_quantiles``: the distribution of each iteration's period (wall time, plus the loop's gap
  since the previous iteration when work was pending) over its modelled time (table x interference), as
  quantiles at evenly spaced levels 0, 1/(n-1), ..., 1. On a shared CPU it is heavy-tailed: the OS and other
  threads take the core for milliseconds;
- ``wake_latency_quantiles``: seconds from a request reaching an idle engine to its first iteration starting
  (the engine loop's wake-up), same layout.

The simulator applies them when asked (``LLMServing-v0``'s ``interference`` and ``iteration_noise``): an
iteration (or a closed-form decode run) is slowed by ``s_k`` for the engines busy when it starts, and a run is
cut at its next iteration boundary when another engine starts or stops, so it continues at the new speed; with
noise every iteration's time is also multiplied by an independent draw (inverse CDF, linear between quantiles)
from a per-instance ``numpy.random.Generator`` seeded from the episode seed, so the same seed gives the same
trajectory, and an idle engine starts on an arriving request after a drawn wake latency (if measured).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

QUANTILES_KEY = "iteration_ratio_quantiles"
WAKE_KEY = "wake_latency_quantiles"
INTERFERENCE_KEY = "interference"


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

    def __init__(self, quantiles: np.ndarray, rng: np.random.Generator, wake_q: np.ndarray | None = None) -> None:
        self.q = quantiles
        self.levels = np.linspace(0.0, 1.0, quantiles.shape[0])
        self.rng = rng
        self.wake_q = wake_q
        self.wake_levels = None if wake_q is None else np.linspace(0.0, 1.0, wake_q.shape[0])

    def wake(self) -> float:
        """Seconds from a request reaching an idle engine to its first iteration (0 if not measured)."""
        if self.wake_q is None:
            return 0.0
        return float(np.interp(self.rng.random(), self.wake_levels, self.wake_q))

    def draw(self, k: int) -> np.ndarray:
        """``k`` factors (one per iteration, in order)."""
        return np.interp(self.rng.random(k), self.levels, self.q)

    def one(self) -> float:
        return float(np.interp(self.rng.random(), self.levels, self.q))


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
    return [IterationNoise(q, np.random.default_rng([seed, i]), getattr(c, "wake_quantiles", None))
            for i, (q, c) in enumerate(zip(qs, costs, strict=True))]


def instance_interference(costs: list[Any], labels: list[str]) -> list[np.ndarray]:
    """Each instance's slowdown by the number of other busy engines (its calibration table's ``interference``)."""
    return _required(costs, labels, "interference", INTERFERENCE_KEY, "interference")


def least_factor(cost: Any, interference: bool, noise: bool) -> float:
    """The smallest factor the options can apply to ``cost``'s times (the validator's prefill lower bound)."""
    q = getattr(cost, "ratio_quantiles", None)  # interference factors are >= 1: never faster
    return min(1.0, float(q[0])) if noise and q is not None else 1.0
