"""The live env's driver side: the record of one live episode (``LiveRun``: routing, the merged event log, reward
tallies, and the routers' view of the polled engines) and the token scaling that fits real traces to a small
model (``scale_tokens``)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from schedgym.envs.serving import features
from schedgym.envs.serving.types import (
    END_FINISH,
    ClusterSpec,
    EngineConfig,
    ServingSchedule,
    ServingWorkload,
)
from schedgym.envs.serving.workflows import StageReleaser, stage_deadlines

CATALOG_MODELS = {"tiny": "schedgym-tiny", "small": "schedgym-small", "1b": "schedgym-1b"}


def scale_tokens(w: ServingWorkload, token_scale: float) -> ServingWorkload:
    """Prompt and output lengths multiplied by ``token_scale`` (rounded, at least 1): real traces' shapes
    on a small model/CPU. An explicit, documented transform — 1.0 leaves the workload unchanged.

    Prefix hashes (Mooncake) are kept: a hash block covers ``max(1, round(prefix_block_tokens x token_scale))``
    tokens (512 x 1/32 = 16, one KV block of 16), and each request keeps the hashes of the blocks lying wholly
    inside its scaled prompt (a trailing partial block is dropped), so the simulator and the live engines
    (which share whole KV blocks) see the same prefix structure."""
    if token_scale == 1.0:
        return w
    p = np.maximum(np.rint(w.prompt_tokens * token_scale), 1).astype(np.int64)
    o = np.maximum(np.rint(w.output_tokens * token_scale), 1).astype(np.int64)
    hashes, offsets, bt = None, None, w.prefix_block_tokens
    if w.prefix_hashes is not None:
        bt = max(1, int(round(w.prefix_block_tokens * token_scale)))
        n = np.minimum(np.diff(w.prefix_offsets), p // bt)
        offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
        hashes = np.concatenate([w.hashes(r)[:n[r]] for r in range(w.n_requests)] + [np.zeros(0, np.int64)])
    return replace(w, name=f"{w.name}@tok{token_scale:g}", prompt_tokens=p, output_tokens=o,
                   prefix_hashes=hashes, prefix_offsets=offsets, prefix_block_tokens=bt)


def prefix_block_tokens(w: ServingWorkload, ecfg: EngineConfig, token_scale: float) -> int | None:
    """Tokens per prefix-block hash for the engines (None without prefix caching); with prefix hashes it must be
    a multiple of the KV block size (the live engines share whole KV blocks)."""
    if not ecfg.prefix_caching:
        return None
    if w.prefix_hashes is None:
        return ecfg.block_size  # nothing to cache by (the simulator caches nothing either)
    bt = w.prefix_block_tokens
    if bt % ecfg.block_size:
        raise ValueError(f"engine.prefix_caching: {w.name} has {bt}-token prefix blocks (token_scale={token_scale:g}), "
                         f"not a multiple of block_size {ecfg.block_size}; the live engines share whole KV blocks "
                         f"(e.g. token_scale=1/32 with block_size 16 gives 16-token prefix blocks)")
    return bt


class LiveRun:
    """Driver-side record of one live episode: routing, the merged event log and the reward tallies
    (the ``reward.Tally`` protocol, so rewards are the simulator's definitions). It is also the routing
    baselines' view (``env.unwrapped.state``): the part of ``ClusterSim``'s API they read — ``next_req``,
    ``now``, ``prompt``, ``deadline``, ``live_stats()``, ``outstanding()``, ``engines[i]`` (with ``cost`` when a
    calibration gives one, and ``prefix_match``), ``prefix_hits(r)`` — filled from the polled engines
    (``cached[i]``: the prefix-block hashes engine ``i`` last published). With workflows ``stages`` releases
    stages and ``arrival`` holds each released stage's release time (``live_workflows.py``)."""

    def __init__(self, w: ServingWorkload, cluster: ClusterSpec, n: int, static: np.ndarray,
                 cost: Any = None) -> None:
        from schedgym.hwbackend.serve.state import EngineView

        R = w.n_requests
        self.workload, self.cluster, self.arrival = w, cluster, w.arrival.astype(np.float64)
        self.deadline = stage_deadlines(w)
        self.stages = StageReleaser(w, self.arrival) if w.workflows is not None else None
        self.prompt = w.prompt_tokens
        self.static = static
        self.live = np.zeros((n, len(features.LIVE)))  # the engines' statistics as of the last poll
        self.cached: list[frozenset[int]] = [frozenset()] * n  # each engine's prefix-cache hashes (last poll)
        self.engines = [EngineView(self, i) for i in range(n)]
        for e in self.engines:
            e.cost = cost
        self.next_req = -1  # the request waiting for a routing decision
        self.routed = np.full(R, -1, np.int64)
        self.where = np.full(R, -1, np.int64)  # the instance holding the request now (migrations move it)
        self.moved_to: dict[int, set[int]] = {}  # request -> instances a KV transfer delivered it to
        self.first_token = np.full(R, np.nan)
        self.finish = np.full(R, np.nan)
        self.dispatched = np.full(R, np.nan)  # when the request reached its (last) engine
        self.res: list[tuple[int, tuple]] = []  # (instance, residency)
        self.seg: list[tuple] = []  # (instance, t0, t1, iterations, decode, prefill; then LiveEngine.shape_log)
        self.busy = np.zeros(n)
        self.rejected: list[int] = []
        self.redispatched: list[tuple[int, int, int]] = []  # (request, dead instance, new instance)
        self.n_finished = self.n_slo_ok = 0
        self.now = 0.0

    def absorb(self, i: int, poll: dict[str, Any]) -> None:
        for rid, t in poll["received"]:
            if self.routed[rid] == i:
                self.dispatched[rid] = t
        for r in poll["res"]:
            rid = int(r[0])
            if self.routed[rid] != i and i not in self.moved_to.get(rid, ()):
                continue  # a stint on an instance the request was moved away from (engine died)
            self.res.append((i, r))
            if math.isnan(self.first_token[rid]):
                self.first_token[rid] = r[2]
            if r[7] == END_FINISH:
                self.finish[rid] = r[3]
                self.n_finished += 1
                if self.stages is not None:
                    self.stages.finished(rid, float(r[3]))
                c = int(self.workload.priority[rid])
                o = int(self.workload.output_tokens[rid])
                ttft = self.first_token[rid] - self.arrival[rid]
                tpot = (r[3] - self.first_token[rid]) / (o - 1) if o > 1 else 0.0
                self.n_slo_ok += int(ttft <= self.cluster.slo.ttft_s[c] and tpot <= self.cluster.slo.tpot_s[c])
        for s in poll["seg"]:
            self.seg.append((i, *s[1:]))
        self.busy[i] = poll["busy_s"]
        if poll.get("cached") is not None:
            self.cached[i] = poll["cached"]

    def prefix_hits(self, r: int) -> np.ndarray:
        """Fraction of request ``r``'s prefix blocks cached on each engine (leading blocks; as ``ClusterSim``)."""
        hs = self.workload.hashes(r).tolist()
        if not hs:
            return np.zeros(len(self.engines))
        return np.array([e.prefix_match(hs) / len(hs) for e in self.engines])

    def live_stats(self, t: float | None = None) -> np.ndarray:
        return self.live.copy()

    def outstanding(self) -> np.ndarray:
        """Requests on each engine: waiting + running + swapped out."""
        return self.live[:, 0] + self.live[:, 1] + self.live[:, 2]

    def ttft_integral(self, t: float) -> float:
        routed = self.routed >= 0
        ft = np.where(np.isnan(self.first_token), t, np.minimum(self.first_token, t))
        return float(np.sum((ft - self.arrival)[routed]))

    def e2e_integral(self, t: float) -> float:
        routed = self.routed >= 0
        fin = np.where(np.isnan(self.finish), t, np.minimum(self.finish, t))
        return float(np.sum((fin - self.arrival)[routed]))

    def schedule(self) -> ServingSchedule:
        res = sorted(self.res, key=lambda x: (x[1][0], x[1][1]))
        rows = [r for _, r in res]

        def col(j: int, dt: Any) -> np.ndarray:
            return np.array([r[j] for r in rows], dt)

        sg = sorted(self.seg, key=lambda s: (s[0], s[1]))

        def scol(j: int, dt: Any) -> np.ndarray:
            return np.array([s[j] for s in sg], dt)

        moves = self.cluster.migration is not None or self.cluster.disagg is not None
        return ServingSchedule(self.workload, self.cluster, self.routed.copy(), col(0, np.int64), col(1, np.float64),
                               col(2, np.float64), col(3, np.float64), col(4, np.int64), col(5, np.int64),
                               col(6, np.int8), col(7, np.int8), scol(0, np.int64), scol(1, np.float64),
                               scol(2, np.float64), scol(3, np.int64), scol(4, np.bool_), scol(5, np.int64),
                               np.array([i for i, _ in res], np.int64) if moves else None)
