"""Live migration of running requests between instances (Llumnix) and its built-in load-balancing policy.

A migration moves a *running* (decoding) request from instance ``src`` to ``dst`` of the same model: at
``src``'s next iteration boundary the request leaves its batch and frees its KV blocks; its blocks travel
over the inter-instance link for ``blocks * block_bytes / link_bw`` seconds (one KV shard per GPU, each over
its own link); on arrival it joins ``dst``'s swapped queue and is resumed as soon as ``dst`` has room (no
recompute: tokens generated so far are kept). The request's decode is paused for the whole transfer, so a
migration costs latency; Llumnix's pipelined copy hides most of it, so this is a conservative model.

On a timer (``MigrationConfig.interval_s``) the migrations are decided by ``decider``:

- ``"llumnix"`` (built in): Llumnix's pairing of the instances whose freeness (free KV blocks after the
  waiting prompts, per request; ``baselines/llumnix.py``) is below ``out_threshold`` with the freest
  instances above ``in_threshold``, moving the running request with the fewest KV blocks (cheapest to
  transfer) — ``llumnix_moves``;
- ``"agent"``: the simulator stops at each tick and the agent picks among the candidate moves
  (``move_candidates``: per ordered pair of instances, the ``candidates_per_pair`` running requests of the
  source with the fewest KV blocks that the destination can hold) or none, up to ``max_per_tick`` moves.
  ``baselines/llumnix_migration.py`` plays ``llumnix_moves`` through that interface, so the built-in rule
  and the baseline are one implementation.

Source: B. Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving", OSDI 2024
(``llumnix/global_scheduler/migration_scheduler.py``: pair migrate-out with migrate-in instances by load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from schedgym.config import resolve

if TYPE_CHECKING:
    from schedgym.envs.serving.sim import ClusterSim

GB = 1e9
DECIDERS = ("llumnix", "agent")


@dataclass(frozen=True)
class MigrationConfig:
    """Migration timer and link.

    interval_s:    how often the policy looks for migrations (s), > 0
    link_gbps:     inter-instance bandwidth per GPU, GB/s (KV transfer), > 0
    out_threshold: an instance with freeness below this migrates out (blocks per request)
    in_threshold:  an instance with freeness above this may receive (blocks per request), > out_threshold
    max_per_tick:  migrations started per tick, >= 1
    priority_headroom_blocks: virtual KV usage charged to instances holding a high-priority (class 0)
                   request when the SLO has several classes (``freeness``), >= 0
    decider:       who picks the migrations at a tick: "llumnix" (the built-in rule) or "agent" (the env asks)
    candidates_per_pair: with the agent decider, candidate requests offered per (source, destination) pair
    """

    interval_s: float = 0.1
    link_gbps: float = 12.5   # 100 Gb/s Ethernet / InfiniBand per GPU, as in Llumnix's testbed
    out_threshold: float = 4.0
    in_threshold: float = 16.0
    max_per_tick: int = 1
    priority_headroom_blocks: float = 0.0
    decider: str = "llumnix"
    candidates_per_pair: int = 2

    def __post_init__(self) -> None:
        checks = {"interval_s": (self.interval_s > 0 and math.isfinite(self.interval_s), "a finite number > 0"),
                  "link_gbps": (self.link_gbps > 0 and math.isfinite(self.link_gbps), "a finite number > 0"),
                  "out_threshold": (math.isfinite(self.out_threshold), "a finite number"),
                  "in_threshold": (math.isfinite(self.in_threshold) and self.in_threshold > self.out_threshold,
                                   f"a finite number > out_threshold ({self.out_threshold})"),
                  "max_per_tick": (isinstance(self.max_per_tick, (int, np.integer)) and self.max_per_tick >= 1,
                                   "an integer >= 1"),
                  "priority_headroom_blocks": (self.priority_headroom_blocks >= 0
                                               and math.isfinite(self.priority_headroom_blocks),
                                               "a finite number >= 0"),
                  "decider": (self.decider in DECIDERS, f"one of {list(DECIDERS)}"),
                  "candidates_per_pair": (isinstance(self.candidates_per_pair, (int, np.integer))
                                          and self.candidates_per_pair >= 1, "an integer >= 1")}
        for k, (ok, expect) in checks.items():
            if not ok:
                raise ValueError(f"MigrationConfig.{k}={getattr(self, k)!r}: expected {expect}")

    @property
    def link_bw(self) -> float:
        """Bytes per second per GPU link."""
        return self.link_gbps * GB

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


MIGRATION_PRESETS: dict[str, MigrationConfig] = {
    "llumnix": MigrationConfig(),
    # Llumnix with priorities: high-priority (class 0) instances keep headroom, normal requests move first.
    "llumnix-priority": MigrationConfig(priority_headroom_blocks=64.0),
    # The same timer and link, but the agent decides each tick's migrations (a second decision point).
    "agent": MigrationConfig(decider="agent"),
}


def resolve_migration(m: str | dict[str, Any] | MigrationConfig | None) -> MigrationConfig | None:
    """``None`` (off), a preset name (``MIGRATION_PRESETS``), a dict of ``MigrationConfig`` fields, or one
    (``{"decider": "agent", "interval_s": 0.5}``: the agent decides every 0.5 s)."""
    return resolve(m, MigrationConfig, MIGRATION_PRESETS, "migration")


def freeness(sim: ClusterSim, t: float | None = None, headroom: float = 0.0) -> np.ndarray:
    """Llumnix's freeness per instance at ``t``: (free blocks - blocks of waiting prompts - headroom) / requests
    (inf when idle). ``headroom`` blocks of virtual usage are charged to every instance that holds a
    high-priority request (class 0 when the SLO has several classes), so normal requests avoid it and it
    migrates them out: Llumnix's priority headroom, which keeps high-priority batches small and fast."""
    t = sim.now if t is None else t
    bs = sim.cluster.engine.block_size
    prio = headroom > 0 and sim.cluster.slo.n_classes > 1
    out = np.empty(len(sim.engines))
    for i, e in enumerate(sim.engines):
        waiting, running, swapped, used, pending, _, _ = e.snapshot(t)
        n = waiting + running + swapped + e.incoming
        if not n:
            out[i] = math.inf
            continue
        virtual = headroom if prio and e.holds_class(0) else 0.0
        out[i] = (e.total_blocks - used - math.ceil(pending / bs) - e.incoming_blocks - virtual) / n
    return out


def llumnix_moves(sim: ClusterSim, cfg: MigrationConfig, t: float) -> list[tuple[int, int, int]]:
    """Migrations to start at ``t``: (request, src, dst), most loaded source paired with the freest target."""
    f = freeness(sim, t, cfg.priority_headroom_blocks)
    order = np.argsort(f, kind="stable")
    srcs = [int(i) for i in order if f[i] < cfg.out_threshold and sim.engines[i].migratable()]
    dsts = [int(i) for i in order[::-1] if f[i] > cfg.in_threshold]
    moves: list[tuple[int, int, int]] = []
    for src, dst in zip(srcs, dsts, strict=False):
        if len(moves) >= cfg.max_per_tick:
            break
        r = sim.engines[src].cheapest_running(dst, normal_first=cfg.priority_headroom_blocks > 0)
        if r is not None:
            moves.append((r, src, dst))
    return moves


def move_slots(n_instances: int, per_pair: int) -> np.ndarray:
    """(M, 2) source and destination of every candidate-move slot, M = N (N - 1) ``per_pair``: slot
    ``((src * (N - 1) + d) * per_pair + c)`` is the ``c``-th cheapest running request of ``src`` that can go
    to ``dst = d if d < src else d + 1`` (the fixed action encoding of the migration decision point)."""
    N = n_instances
    pairs = [(src, dst) for src in range(N) for dst in range(N) if dst != src]
    return np.array([p for p in pairs for _ in range(per_pair)], np.int64).reshape(-1, 2)


def move_candidates(sim: ClusterSim, cfg: MigrationConfig) -> list[tuple[int, int, int] | None]:
    """The candidate move of every slot of ``move_slots``: ``(request, src, dst)``, or ``None`` where ``src``
    cannot migrate now (nothing running, or a migration already waits for its iteration boundary), ``dst``
    serves another model, or fewer than ``c + 1`` of ``src``'s running requests fit ``dst``. Requests are
    ranked as the built-in rule ranks them (``Engine.running_by_cost``)."""
    N, K = len(sim.engines), cfg.candidates_per_pair
    out: list[tuple[int, int, int] | None] = [None] * (N * (N - 1) * K)
    normal_first = cfg.priority_headroom_blocks > 0
    feasible, same = sim.feasible, sim.same_model
    for src, e in enumerate(sim.engines):
        if not e.migratable():
            continue
        ranked = e.running_by_cost(normal_first)
        for d in range(N - 1):
            dst = d if d < src else d + 1
            if not same[src, dst]:
                continue
            base, c = (src * (N - 1) + d) * K, 0
            for r in ranked:
                if feasible[r, dst]:
                    out[base + c] = (r, src, dst)
                    c += 1
                    if c == K:
                        break
    return out


def move_features(sim: ClusterSim) -> np.ndarray:
    """(M, 5) per slot of the pending tick: present flag, KV tokens the move transfers now, tokens generated
    so far, transfer time over the link (s), priority class (zeros where the slot has no candidate)."""
    out = np.zeros((len(sim.tick_moves), 5))
    decoded: dict[int, int] = {}
    for j, m in enumerate(sim.tick_moves):
        if m is None:
            continue
        r, src, _ = m
        e = sim.engines[src]
        if src not in decoded:  # decode iterations done on src so far, the current run's included
            decoded[src] = e.D + e.iters_done(sim.now)
        g = sim.gen[r] + decoded[src] - sim.dbase[r]
        kv = sim.prompt[r] + g - 1
        out[j] = (1.0, kv, g, -(-kv // e.bs) * e.block_bytes / sim.link_bw, sim.cls[r])
    return out
