"""Llumnix migration and DistServe/Splitwise disaggregation on live engines: the driver's half.

``LLMServingLive-v0`` takes the simulator's ``migration=`` and ``disagg=`` configs (``ClusterSpec`` resolves
them: one definition). This module decides and routes the KV moves from the polled engine state; the engines
do the moves (``hwbackend/kv_transfer.py``).

- Migration: on the config's timer (``interval_s``, episode clock) the driver calls the simulator's own rule,
  ``migration.llumnix_moves``, on a view of the polled engines (``MechEngineView``: freeness inputs, running
  requests with their KV tokens, transfers in flight); each chosen request is exported by its source at its
  next iteration boundary and delivered to the chosen destination.
- Disaggregation: engines ``0..n_prefill-1`` are prefill-only (each request is exported right after its first
  token); the driver places each hand-off with the simulator's ``disagg.place_decode`` on the same view.

A package may resume on its destination only after ``blocks * block_bytes / link_bw`` from its departure (the
configured link, as in the simulator; the validator checks it). The real copy and the driver round trip
usually take longer on one machine, and that real time is what the log records.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from schedgym.envs.serving.disagg import place_decode
from schedgym.envs.serving.migration import llumnix_moves
from schedgym.hwbackend.serve.state import EngineView

if TYPE_CHECKING:
    from schedgym.envs.serving.live_run import LiveRun
    from schedgym.envs.serving.types import ClusterSpec
    from schedgym.hwbackend.cluster import LiveCluster


def check_live_config(cluster: ClusterSpec) -> None:
    """Reject what the live engines cannot express (clear errors naming the field)."""
    if cluster.migration is not None and cluster.migration.decider != "llumnix":
        raise ValueError(f"migration.decider={cluster.migration.decider!r}: the agent migration decision point is "
                         "simulator-only (schedgym/LLMServing-v0); LLMServingLive-v0 runs the built-in 'llumnix' "
                         "rule")


class MechEngineView(EngineView):
    """``ClusterSim.engines[i]`` as ``llumnix_moves`` / ``place_decode`` read it, from polled engine state."""

    def __init__(self, owner: LiveRun, i: int, mech: LiveMechanisms) -> None:
        super().__init__(owner, i)
        self._mech = mech

    @property
    def free(self) -> int:
        return self.total_blocks - int(self._owner.live[self._i, 3])

    def holds_class(self, c: int) -> bool:
        run = self._owner
        return bool(np.any((run.where == self._i) & np.isnan(run.finish) & (run.workload.priority == c)))

    def migratable(self) -> bool:
        return bool(self._mech.running[self._i]) and self._i not in self._mech.pending_src

    def running_by_cost(self, normal_first: bool = False) -> list[int]:
        """Running requests by KV tokens, fewest first (admission order on ties), as ``sim.Engine`` ranks them."""
        cls = self._owner.workload.priority
        ranked = sorted(self._mech.running[self._i], key=lambda x: (normal_first and cls[x[0]] == 0, x[1]))
        return [int(r) for r, _ in ranked]

    def cheapest_running(self, dst: int, normal_first: bool = False) -> int | None:
        fits = self._mech.fits
        return next((r for r in self.running_by_cost(normal_first) if fits[r, dst]), None)


class _SimView:
    """The part of ``ClusterSim`` the migration rule and the decode placement read."""

    def __init__(self, run: LiveRun, decode_ids: list[int], fits: np.ndarray) -> None:
        self.run = run
        self.cluster = run.cluster
        self.decode_ids = decode_ids
        self.fits = fits
        self.same_model = np.ones((len(run.engines),) * 2, bool)  # live engines all serve one model

    @property
    def engines(self) -> list[Any]:
        return self.run.engines

    @property
    def now(self) -> float:
        return self.run.now


class LiveMechanisms:
    """Migration timer, disaggregated hand-offs and the bookkeeping of KV packages in transit."""

    POLL_S = 0.005  # driver poll period while a package may be waiting for delivery

    def __init__(self, run: LiveRun, live: LiveCluster, cluster: ClusterSpec, block_bytes: float,
                 limit: int) -> None:
        check_live_config(cluster)
        N = cluster.n_instances
        self.run, self.live = run, live
        self.mig, self.dis = cluster.migration, cluster.disagg
        self.link_bw = self.mig.link_bw if self.mig is not None else self.dis.link_bw  # type: ignore[union-attr]
        self.block_bytes = float(block_bytes)
        w = run.workload
        self.fits = np.repeat(((w.prompt_tokens + w.output_tokens) <= limit)[:, None], N, axis=1)
        P = self.dis.n_prefill if self.dis is not None else 0
        self.routable = np.arange(N) >= 0 if self.dis is None else np.arange(N) < P
        self.running: list[list[tuple[int, int]]] = [[] for _ in range(N)]
        self.pending: dict[int, tuple[int, int]] = {}      # request -> (src, dst): export asked, not seen yet
        self.pending_src: set[int] = set()
        self.in_flight: dict[int, tuple[int, int]] = {}    # request -> (dst, blocks): delivered, not imported
        self.transfers: list[tuple[int, int, int, int, float, float]] = []  # (req, src, dst, blocks, t_out, ready)
        self.n_declined = 0
        run.engines = [MechEngineView(run, i, self) for i in range(N)]
        self.view = _SimView(run, list(range(P, N)) if self.dis is not None else list(range(N)), self.fits)
        self.next_tick = self.mig.interval_s if self.mig is not None else math.inf
        for i in range(P):
            live.set_prefill_only(i, True)

    def absorb(self, i: int, poll: dict[str, Any]) -> None:
        """Engine ``i``'s poll: running requests, declined exports, acknowledged imports, packages to deliver."""
        self.running[i] = poll["running"]
        for rid in poll["declined"]:  # finished or preempted before its boundary: nothing moves
            self.pending.pop(rid, None)
            self.pending_src.discard(i)
            self.n_declined += 1
        for rid in poll["imported"]:
            dst, blocks = self.in_flight.pop(rid)
            e = self.run.engines[dst]
            e.incoming -= 1
            e.incoming_blocks -= blocks
        for pkg in poll["exported"]:
            self._deliver(i, pkg)

    def _deliver(self, src: int, pkg: Any) -> None:
        rid = pkg.rid
        if rid in self.pending:
            _, dst = self.pending.pop(rid)
            self.pending_src.discard(src)
        else:  # a prefill-pool hand-off
            dst = place_decode(self.view, rid, src)  # type: ignore[arg-type]
            if dst < 0:
                raise RuntimeError(f"request {rid}: no decode instance can hold it")
        ready = pkg.t_out + pkg.n_blocks * self.block_bytes / self.link_bw
        self.run.where[rid] = dst
        self.run.moved_to.setdefault(rid, set()).add(dst)
        e = self.run.engines[dst]
        e.incoming += 1
        e.incoming_blocks += pkg.n_blocks
        self.in_flight[rid] = (dst, pkg.n_blocks)
        self.transfers.append((rid, src, dst, pkg.n_blocks, pkg.t_out, ready))
        self.live.deliver(dst, pkg, ready)  # a dead destination: the request is re-dispatched (where = dst)

    def tick(self, now: float) -> None:
        """At the migration timer's ticks: the simulator's Llumnix rule on the polled state; start its moves."""
        if now < self.next_tick:
            return
        self.next_tick = (math.floor(now / self.mig.interval_s) + 1) * self.mig.interval_s  # type: ignore
        for r, src, dst in llumnix_moves(self.view, self.mig, now):  # type: ignore[arg-type]
            if self.live.migrate(src, r):
                self.pending[r] = (src, dst)
                self.pending_src.add(src)

    def wait_s(self, now: float) -> float:
        """How long the driver may sleep before it must poll: ``POLL_S`` while a hand-off may be waiting for it
        (disaggregation, or a migration asked for), else until the next migration tick."""
        if self.dis is not None or self.pending:
            return self.POLL_S
        return max(0.0, self.next_tick - now)

    def idle(self) -> bool:
        """No export asked and no package in transit."""
        return not self.pending and not self.in_flight

    def info(self) -> dict[str, Any]:
        return {"kv_transfers": len(self.transfers), "migrations_declined": self.n_declined}
