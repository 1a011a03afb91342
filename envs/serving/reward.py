"""Serving rewards: configurable, each a telescoping sum so the episode return is an exact episode metric.

Between two decisions the simulator advances from one arrival to the next; the reward of a step is the
change of a running tally over that interval (and, on the last step, over the drain):

- ``"slo"`` (default): minus the number of requests that missed their SLO (TTFT or TPOT of their class, or
  rejected) and were settled during the step, divided by the episode's request count. Return =
  ``slo_attainment - 1``.
- ``"ttft"``: minus the time requests spent without their first token during the step (every routed request
  waiting for its first token contributes its waiting time), divided by the request count. Return =
  ``-mean TTFT`` in seconds. Dense: each step is charged for the queues the decisions built.
- ``"latency"``: the same for time in the system. Return = ``-mean end-to-end latency`` (s).
"""

from __future__ import annotations

from typing import Protocol

REWARDS = ("slo", "ttft", "latency")


class Tally(Protocol):
    n_finished: int
    n_slo_ok: int
    rejected: list[int]

    def ttft_integral(self, t: float) -> float: ...

    def e2e_integral(self, t: float) -> float: ...


def tally(kind: str, sim: Tally, t: float) -> float:
    """The running quantity whose increments are the (negated, scaled) rewards of ``kind`` at time ``t``."""
    if kind == "slo":
        return float(sim.n_finished - sim.n_slo_ok + len(sim.rejected))
    if kind == "ttft":
        return sim.ttft_integral(t)
    if kind == "latency":
        return sim.e2e_integral(t)
    raise ValueError(f"unknown reward {kind!r}; expected one of {list(REWARDS)}")


def step_reward(previous: float, current: float, n_requests: int) -> float:
    """Reward of a step that moved the tally from ``previous`` to ``current``."""
    return -(current - previous) / n_requests
