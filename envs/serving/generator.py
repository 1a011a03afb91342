"""Workload generators (rng in, workload out): trace windows and synthetic arrivals with trace lengths."""

from __future__ import annotations

import numpy as np

from schedgym.envs.serving.types import ServingWorkload


def poisson_arrivals(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """``n`` arrival times of a Poisson process of ``rate`` requests/s, the first at 0."""
    return gamma_arrivals(rng, n, rate, 1.0)


def gamma_arrivals(rng: np.random.Generator, n: int, rate: float, cv: float) -> np.ndarray:
    """``n`` arrival times with Gamma inter-arrivals of mean ``1/rate`` and coefficient of variation ``cv``
    (cv = 1 is Poisson; cv > 1 is burstier), the first at 0."""
    if not (rate > 0 and np.isfinite(rate)):
        raise ValueError(f"arrival rate must be a finite number > 0, got {rate}")
    if not (cv > 0 and np.isfinite(cv)):
        raise ValueError(f"cv must be a finite number > 0, got {cv}")
    if n < 1:
        raise ValueError(f"number of requests must be >= 1, got {n}")
    shape = 1.0 / cv ** 2
    gaps = rng.gamma(shape, 1.0 / (rate * shape), size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def synthetic_workload(rng: np.random.Generator, prompt: np.ndarray, output: np.ndarray, n: int, rate: float,
                       arrival: str = "poisson", cv: float = 1.0, name: str = "synthetic") -> ServingWorkload:
    """``n`` requests with (prompt, output) pairs drawn jointly from the given length samples and Poisson or
    Gamma arrivals at ``rate`` requests/s."""
    if arrival not in ("poisson", "gamma"):
        raise ValueError(f"arrival must be 'poisson' or 'gamma', got {arrival!r}")
    if len(prompt) != len(output) or len(prompt) == 0:
        raise ValueError("prompt and output length samples must be non-empty and equally long")
    t = poisson_arrivals(rng, n, rate) if arrival == "poisson" else gamma_arrivals(rng, n, rate, cv)
    idx = rng.integers(len(prompt), size=n)
    return ServingWorkload(name, t, np.asarray(prompt)[idx], np.asarray(output)[idx], source="synthetic")


def trace_window(rng: np.random.Generator, trace: ServingWorkload, n: int,
                 name: str | None = None) -> ServingWorkload:
    """A uniformly random window of ``n`` consecutive requests of ``trace`` (times rebased to 0)."""
    if not 1 <= n <= trace.n_requests:
        raise ValueError(f"window of {n} requests does not fit {trace.name} ({trace.n_requests} requests)")
    start = int(rng.integers(trace.n_requests - n + 1))
    return trace.slice(start, start + n, name or f"{trace.name}[{start}:{start + n}]")


def sample_classes(rng: np.random.Generator, n: int, probs: tuple[float, ...]) -> np.ndarray:
    """Priority class per request, drawn with probabilities ``probs``."""
    p = np.asarray(probs, dtype=float)
    if p.ndim != 1 or p.size < 1 or (p < 0).any() or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"class_probs must be non-negative and sum to 1, got {list(probs)}")
    return rng.choice(p.size, size=n, p=p).astype(np.int64)
