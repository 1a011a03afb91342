"""The LLM-serving dynamics, written once: vLLM-style continuous batching per instance, event-driven.

Each ``Engine`` (one model instance) has waiting / running / swapped queues, a paged KV cache counted in
blocks, and runs iterations:

- without chunked prefill (vLLM v0 default), an iteration either prefills admitted prompts (FCFS, limited by
  ``max_num_seqs``, ``max_num_batched_tokens`` and free blocks above the watermark; decodes stall) or
  decodes one token for every running sequence;
- with chunked prefill (Sarathi-Serve), every iteration decodes all running sequences and fills the rest of
  the token budget with prompt chunks.

When a decode needs a new block and none is free, the most recently admitted running sequence is
preempted: recomputed later (default; its blocks are freed, it re-prefills prompt + generated tokens) or
swapped to host memory (PCIe transfer time added to the iteration). Prefix caching (optional) reuses cached
prompt blocks by their hashes (Mooncake traces): a hit on the leading blocks skips their prefill; entries no
resident request uses occupy free KV blocks and are evicted least recently used as allocations need room.

Skip-ahead: while the running batch does not change, consecutive decode iterations are one *run*: with
iteration ``j`` costing ``alpha + beta * (S + B*j)`` (``CostModel.decode_coefficients``), the run's end time,
the block allocations (a count per block phase) and the iteration in progress at any time are closed-form.
A run ends at the next completion, block exhaustion, or when an arriving request can be admitted; so cost
grows with events, not tokens. With measured host variability (``variability.py``): ``interference`` slows an
iteration by the factor measured for the number of other engines computing (a single iteration is re-timed when
that number changes, a decode run is cut at its next boundary and continues at the new speed, still in closed
form), and ``iteration_noise`` multiplies every iteration by a seeded draw of the measured jitter (a run then
draws its iterations' factors when it starts and keeps their cumulative end times; a binary search replaces
the closed-form inverse) and delays an idle engine's start by a drawn wake latency.

Every iteration run is logged as a segment, every KV stint of a request as a residency (``ServingSchedule``);
the independent validator replays invariants from that log.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections import OrderedDict, deque
from typing import Any

import numpy as np

from schedgym.engine import EventQueue
from schedgym.envs.serving import catalog
from schedgym.envs.serving.cluster import InstancePlan, check_cluster, cost_models, request_limit
from schedgym.envs.serving.costmodel import CostModel
from schedgym.envs.serving.disagg import place_decode
from schedgym.envs.serving.migration import llumnix_moves, move_candidates
from schedgym.envs.serving.queueing import insert_ordered, queue_key
from schedgym.envs.serving.types import (
    END_FINISH,
    END_MIGRATE_OUT,
    END_RECOMPUTE,
    END_SWAP_OUT,
    START_MIGRATE_IN,
    START_PREFILL,
    START_SWAP_IN,
    ClusterSpec,
    EngineConfig,
    ServingSchedule,
    ServingWorkload,
)
from schedgym.envs.serving.variability import IterationNoise, instance_interference, instance_noise
from schedgym.envs.serving.workflows import StageReleaser, stage_deadlines

IDLE, DECODE_RUN, SINGLE = 0, 1, 2
NAN = float("nan")
TICK = -1  # ``next_decision()``: a migration tick awaits the agent's moves (``migration.decider == "agent"``)


class Engine:
    """One model instance's continuous-batching engine (see the module docstring)."""

    def __init__(self, idx: int, sim: ClusterSim, cost: CostModel, cfg: EngineConfig, num_blocks: int,
                 block_bytes: float, pcie_bw: float, context_limit: int) -> None:
        self.idx, self.sim, self.cost, self.cfg = idx, sim, cost, cfg
        self.bs = cfg.block_size
        self.total_blocks = int(num_blocks)
        self.free = int(num_blocks)
        self.watermark = int(cfg.watermark * num_blocks)
        self.max_seqs = cfg.max_num_seqs
        self.max_tokens = cfg.batched_tokens(context_limit)
        self.chunked = cfg.chunked_prefill
        self.swap = cfg.preemption == "swap"
        self.block_bytes = float(block_bytes)
        self.pcie_bw = float(pcie_bw) if cfg.swap_bw_gbps is None else cfg.swap_bw_gbps * 1e9
        self.host_free = int(cfg.swap_space_gb * 1e9 // block_bytes) if self.swap else 0
        self.waiting: deque[int] = deque()
        self.swapped: deque[int] = deque()
        self.prefilling: list[int] = []   # chunked: admitted, prompt partly processed
        self.running: list[int] = []      # decoding, in admission order
        self.fin: list[tuple[int, int]] = []  # heap of (decode counter at which it finishes, request)
        self.cnt = [0] * self.bs          # running sequences per block phase
        self.D = 0                        # decode iterations so far
        self.S = 0                        # sum over running of prompt + generated (next iteration's context)
        self.waiting_tokens = 0           # prompt (+ generated, for recomputes) tokens of waiting requests
        self.state = IDLE
        self.version = 0
        self.t0 = 0.0                     # decode run: effective start (after any swap transfer)
        self.seg_t0 = 0.0
        self.k_end = 0
        self.alpha = 0.0
        self.beta = 0.0
        self.S0 = 0
        self.B = 0
        self.batch: list[tuple[int, int, int]] = []  # SINGLE: (request, chunk, prior) prefilled this iteration
        self.batch_decode = False
        self.pref: list[int] = [0] * (self.bs + 1)  # decode run: prefix sums of new blocks per iteration
        self.xfer_bytes = 0.0             # swap traffic to add to the next iteration
        self.busy_time = 0.0
        # Prefix cache: hash -> number of resident requests using it, in LRU order. Entries no resident uses
        # occupy free KV blocks (``per_entry`` each) and are evicted LRU when allocations need the room.
        self.prefix: OrderedDict[int, int] | None = OrderedDict() if cfg.prefix_caching else None
        self.per_entry = -(-min(sim.prefix_block_tokens, 1 << 20) // self.bs)
        self.unref = 0
        self.mig_out: list[tuple[int, int]] = []  # (request, destination) to migrate at the next boundary
        self.incoming = 0                 # requests in transfer towards this instance
        self.incoming_blocks = 0
        self.ordered = cfg.queue_policy != "fcfs"  # waiting queue sorted by ``sim.qkey`` (``queueing.py``)
        self.prefill_only = False         # disaggregated prefill pool: hand requests off after their first token
        # Measured variability (``variability.py``), if on: slowdown by the number of other busy engines, and
        # per-iteration jitter (a decode run then keeps its iterations' cumulative end times).
        self.slow: np.ndarray | None = None  # (2, K): prefill-only / decoding iterations by other busy engines
        self.is_busy = False
        self.noise: IterationNoise | None = None
        self.cum: np.ndarray | None = None
        self.c_start = self.t_end = 0.0   # single iteration: compute starts (after swap traffic), ends
        self.f_cur = 1.0                  # single iteration: the slowdown it runs at

    # ------------------------------------------------------------------ block arithmetic
    def _need_prefix(self) -> list[int]:
        """pref[j] = new blocks over the next j decode iterations, j = 0..block_size (one full cycle = batch)."""
        bs, cnt, D = self.bs, self.cnt, self.D
        pref = [0] * (bs + 1)
        acc = 0
        for j in range(bs):
            acc += cnt[(-(D + j)) % bs]
            pref[j + 1] = acc
        return pref

    def _run_need(self, k: int) -> int:
        """New blocks over the first ``k`` iterations of the current decode run (O(1) with the run's prefix)."""
        q, m = divmod(k, self.bs)
        return self.B * q + self.pref[m]

    def _iters_before_exhaustion(self, limit: int, pref: list[int]) -> int:
        """Decode iterations runnable with the free blocks (``limit`` if at least that many)."""
        B = len(self.running)
        if B == 0 or self.free >= B * (limit // self.bs + 1):
            return limit
        q, rem = divmod(self.free, B)
        return min(limit, q * self.bs + bisect_right(pref, rem) - 1)

    def _blocks_of(self, r: int) -> int:
        """Blocks held by running request ``r`` now."""
        s = self.sim
        kv = s.prompt[r] + s.gen[r] + (self.D - s.dbase[r]) - 1
        return -(-kv // self.bs)

    # ------------------------------------------------------------------ arrivals
    def enqueue(self, r: int, t: float) -> None:
        """Request ``r`` routed here at time ``t`` (queued in the ``queue_policy`` order, ``queueing.py``)."""
        s = self.sim
        q = self.waiting
        if self.ordered:
            insert_ordered(q, r, s.qkey[r], s.qkey.__getitem__)
        else:
            q.append(r)
        self.waiting_tokens += s.prompt[r]
        if self.state == IDLE:  # with measured noise, an idle engine's loop wakes up after a drawn delay
            self._kick(t + self.noise.wake() if self.noise is not None else t)
        elif self.state == DECODE_RUN and q[0] == r and not self.swapped:
            self._truncate_if_admittable(r, t)

    def _truncate_if_admittable(self, r: int, t: float) -> None:
        """End the decode run at the next iteration boundary if ``r`` could be admitted there (vLLM
        prioritises prefills). Free blocks only shrink during a run, so if ``r`` does not fit at the next
        boundary it waits for the run's end (a completion or block exhaustion) anyway."""
        s = self.sim
        if len(self.running) + len(self.prefilling) >= self.max_seqs:
            return
        total = s.prompt[r] + s.gen[r]
        if not self.chunked and total > self.max_tokens:
            return
        k = self.iters_done(t)
        if k >= self.k_end:
            return  # the run ends now anyway
        boundary = k if k > 0 and self.t0 + self._run_time(k) == t else k + 1
        if self.free - self._run_need(boundary) - (-(-total // self.bs)) < self.watermark:
            return
        self.k_end = boundary
        self.version += 1
        self.sim.events.push(max(t, self.t0 + self._run_time(boundary)), (self.idx, self.version))

    def _kick(self, t: float) -> None:
        self.version += 1
        self.state = SINGLE  # placeholder until the wake plans: nothing runs yet
        self.batch = []
        self.batch_decode = False
        self.seg_t0 = t
        self.sim.events.push(t, (self.idx, self.version))

    # ------------------------------------------------------------------ decode-run closed forms
    def _run_time(self, k: int) -> float:
        if self.cum is not None:
            return float(self.cum[k - 1]) if k > 0 else 0.0
        return k * self.alpha + self.beta * (k * self.S0 + self.B * k * (k - 1) * 0.5)

    def iters_done(self, t: float) -> int:
        """Decode iterations of the current run completed by time ``t``."""
        if self.state != DECODE_RUN or t <= self.t0:
            return 0
        dt = t - self.t0
        if self.cum is not None:
            return int(np.searchsorted(self.cum[:self.k_end], dt, side="right"))
        al, be, B, S0, k_end = self.alpha, self.beta, self.B, self.S0, self.k_end
        a = 0.5 * be * B
        b = al + be * S0 - a
        k = int((-b + math.sqrt(b * b + 4 * a * dt)) / (2 * a)) if a > 0 else int(dt / b)
        if k > k_end:
            k = k_end
        # Correct floating-point rounding against the exact run time.
        while k > 0 and k * al + be * (k * S0 + B * k * (k - 1) * 0.5) > dt:
            k -= 1
        while k < k_end and (k + 1) * al + be * ((k + 1) * S0 + B * (k + 1) * k * 0.5) <= dt:
            k += 1
        return k

    # ------------------------------------------------------------------ wake: finish, then plan
    def wake(self, t: float) -> None:
        if self.state == DECODE_RUN:
            self._finish_decode_run(t)
        elif self.state == SINGLE and (self.batch or self.batch_decode):
            self._finish_single(t)
        self.state = IDLE
        if self.mig_out:
            self._migrate_out(t)
        self._plan(t)
        if self.slow is not None and (self.state != IDLE) != self.is_busy:
            self._busy_changed(t)

    def _busy_changed(self, t: float) -> None:
        """This engine started or stopped computing: the others' single iterations continue at the new speed
        at once, their decode runs from their next iteration boundary."""
        self.is_busy = not self.is_busy
        self.sim.n_busy += 1 if self.is_busy else -1
        for e in self.sim.engines:
            if e is self:
                continue
            if e.state == DECODE_RUN:
                e._end_run_at_next_boundary(t)
            elif e.state == SINGLE and (e.batch or e.batch_decode):
                e._rescale_single(t)

    def _slowdown(self, decode: bool) -> float:
        """Interference: the measured slowdown of a prefill-only or a decoding iteration while the other engines
        busy now compute (1 if off)."""
        if self.slow is None:
            return 1.0
        return float(self.slow[int(decode), min(self.sim.n_busy - self.is_busy, self.slow.shape[1] - 1)])

    def _noise_class(self, decode: bool) -> tuple[int, int] | None:
        """With both options and a table measured per overlap: (decodes, other engines computing), else None."""
        if self.slow is None or self.noise is None or self.noise.by_overlap is None:
            return None
        return int(decode), self.sim.n_busy - self.is_busy

    def _factor(self, decode: bool) -> float:
        """The measured-variability factor of an iteration starting now: a draw of its class's live/table ratio
        (interference included), else slowdown times a pooled jitter draw."""
        cls = self._noise_class(decode)
        if cls is not None:
            return self.noise.one(cls)  # type: ignore[union-attr]
        return self._slowdown(decode) * (self.noise.one() if self.noise is not None else 1.0)

    # ------------------------------------------------------------------ live migration (migration.py)
    def migratable(self) -> bool:
        return bool(self.running) and not self.mig_out

    def running_by_cost(self, normal_first: bool = False) -> list[int]:
        """Running requests by KV blocks held, fewest first (cheapest to migrate; admission order on ties);
        with ``normal_first``, high-priority (class 0) requests after every other."""
        s = self.sim
        return sorted(self.running, key=lambda r: (normal_first and s.cls[r] == 0, s.prompt[r] + s.gen[r] - s.dbase[r]))

    def cheapest_running(self, dst: int, normal_first: bool = False) -> int | None:
        """The first of ``running_by_cost`` that ``dst`` can hold (``None`` if there is none)."""
        s = self.sim
        if not s.same_model[self.idx, dst]:
            return None
        return next((r for r in self.running_by_cost(normal_first) if s.feasible[r, dst]), None)

    def holds_class(self, c: int) -> bool:
        """Whether a request of priority class ``c`` waits, runs or is swapped out here."""
        cls = self.sim.cls
        return any(cls[r] == c for q in (self.running, self.waiting, self.prefilling, self.swapped) for r in q)

    def request_migration(self, r: int, dst: int, t: float) -> None:
        """Migrate running ``r`` to ``dst`` at this instance's next iteration boundary."""
        self.mig_out.append((r, dst))
        self._end_run_at_next_boundary(t)

    def _end_run_at_next_boundary(self, t: float) -> None:
        """Cut the current decode run at the next iteration boundary (a single iteration ends by itself)."""
        if self.state != DECODE_RUN:
            return
        k = self.iters_done(t)
        if k >= self.k_end:
            return
        boundary = k if k > 0 and self.t0 + self._run_time(k) == t else k + 1
        if boundary >= self.k_end:
            return
        self.k_end = boundary
        self.version += 1
        self.sim.events.push(max(t, self.t0 + self._run_time(boundary)), (self.idx, self.version))

    def _migrate_out(self, t: float) -> None:
        """Release every requested migrant still running here and send its KV blocks over the link."""
        s = self.sim
        for r, dst in self.mig_out:
            if s.where[r] != self.idx or r not in self.running:
                continue  # finished or preempted since the policy chose it
            self.running.remove(r)
            blocks = self._leave_running(r)
            self.free += blocks
            self._send(r, dst, t, blocks)
        self.mig_out.clear()

    def _send(self, r: int, dst: int, t: float, blocks: int) -> None:
        """``r`` (its blocks already released here) leaves with ``blocks`` KV blocks over the link to ``dst``."""
        s = self.sim
        s.finish_request(r, t, END_MIGRATE_OUT)
        s.swap_blocks[r] = blocks
        s.migrating[r] = True
        s.migrations[r] += 1
        d = s.engines[dst]
        d.incoming += 1
        d.incoming_blocks += blocks
        s.events.push(t + blocks * self.block_bytes / s.link_bw, (dst, -(r + 1)))

    def migrate_in(self, r: int, t: float) -> None:
        """Migrant ``r``'s blocks have arrived: it waits in the swapped queue for room (then resumes)."""
        self.incoming -= 1
        self.incoming_blocks -= self.sim.swap_blocks[r]
        self.swapped.append(r)
        if self.state == IDLE:
            self._kick(t)
        else:
            self._end_run_at_next_boundary(t)

    def _finish_decode_run(self, t: float) -> None:
        k = self.k_end
        self.free -= self._run_need(k)
        self.D += k
        self.S += self.B * k
        if self.unref:
            self.trim_prefix()
        self.sim.log_segment(self.idx, self.seg_t0, t, k, True, 0)
        self.busy_time += t - self.seg_t0
        self._pop_completions(t)

    def _pop_completions(self, t: float) -> None:
        s, fin, D = self.sim, self.fin, self.D
        while fin and fin[0][0] <= D:
            d, r = heapq.heappop(fin)
            if s.fin_key[r] != d or s.where[r] != self.idx:
                continue  # stale: preempted since
            self.running.remove(r)
            p, o = s.prompt[r], s.output[r]
            self.cnt[(p + s.gen[r] - s.dbase[r] - 1) % self.bs] -= 1
            self.free += -(-(p + o - 1) // self.bs)
            self.S -= p + o
            s.gen[r] = o
            s.finish_request(r, t, END_FINISH)

    def _finish_single(self, t: float) -> None:
        s = self.sim
        if self.batch_decode:
            B = len(self.running)
            self.free -= self.cnt[(-self.D) % self.bs]
            self.D += 1
            self.S += B
            if self.unref:
                self.trim_prefix()
        P = 0
        for r, chunk, prior in self.batch:
            P += chunk
            s.prefill_done[r] = prior + chunk
            if prior + chunk < s.prefill_target[r]:
                continue  # more chunks to go
            if self.chunked:
                self.prefilling.remove(r)
            s.gen[r] += 1
            s.start_decoding(r, t, START_PREFILL, s.prompt[r] + s.gen[r] - 1)
            if s.gen[r] >= s.output[r]:
                self.free += -(-(s.prompt[r] + s.gen[r] - 1) // self.bs)
                s.finish_request(r, t, END_FINISH)
            elif self.prefill_only:  # disaggregated: hand the KV cache to the decode pool
                blocks = -(-(s.prompt[r] + s.gen[r] - 1) // self.bs)
                self.free += blocks
                dst = place_decode(s, r, self.idx)
                if dst < 0:
                    raise RuntimeError(f"request {r}: no decode instance can hold it")
                self._send(r, dst, t, blocks)
            else:
                self._join_running(r)
        self.sim.log_segment(self.idx, self.seg_t0, t, 1, self.batch_decode, P)
        self.busy_time += t - self.seg_t0
        if self.batch_decode:
            self._pop_completions(t)
        self.batch = []
        self.batch_decode = False

    def _join_running(self, r: int) -> None:
        s = self.sim
        p, g, D = s.prompt[r], s.gen[r], self.D
        s.dbase[r] = D
        s.where[r] = self.idx
        self.running.append(r)
        self.cnt[(p + g - D - 1) % self.bs] += 1
        self.S += p + g
        key = D + s.output[r] - g
        s.fin_key[r] = key
        heapq.heappush(self.fin, (key, r))

    def _leave_running(self, r: int) -> int:
        """Remove running ``r`` (preemption); returns the blocks it held and syncs its token count."""
        s = self.sim
        blocks = self._blocks_of(r)
        p = s.prompt[r]
        g = s.gen[r] + self.D - s.dbase[r]
        self.cnt[(p + s.gen[r] - s.dbase[r] - 1) % self.bs] -= 1
        self.S -= p + g
        s.gen[r] = g
        s.where[r] = -1
        s.fin_key[r] = -1
        return blocks

    def _preempt_for_next_decode(self, t: float) -> bool:
        """Preempt the latest admitted sequences until the next decode iteration's new blocks fit; True if any."""
        preempted = False
        while self.running and self.cnt[(-self.D) % self.bs] > self.free:
            preempted = True
            r = self.running.pop()
            blocks = self._leave_running(r)
            self.free += blocks
            s = self.sim
            s.preemptions[r] += 1
            if self.swap and blocks <= self.host_free:
                self.host_free -= blocks
                self.swapped.append(r)
                s.swap_blocks[r] = blocks
                self.xfer_bytes += blocks * self.block_bytes
                s.finish_request(r, t, END_SWAP_OUT)
            else:
                self.waiting.appendleft(r)
                self.waiting_tokens += s.prompt[r] + s.gen[r]
                s.finish_request(r, t, END_RECOMPUTE)
        return preempted

    def _swap_in(self, t: float) -> None:
        s = self.sim
        while self.swapped and len(self.running) + len(self.prefilling) < self.max_seqs:
            r = self.swapped[0]
            blocks = s.swap_blocks[r]
            # Room for its blocks plus every new block the next decode iteration needs (its own included).
            need = self.cnt[(-self.D) % self.bs] + ((s.prompt[r] + s.gen[r] - 1) % self.bs == 0)
            if self.free - blocks - need < self.watermark:
                break
            self.swapped.popleft()
            self.free -= blocks
            if s.migrating[r]:  # already transferred over the link
                s.migrating[r] = False
                kind = START_MIGRATE_IN
            else:
                self.host_free += blocks
                self.xfer_bytes += blocks * self.block_bytes
                kind = START_SWAP_IN
            s.open_residency(r, t, 0, self.idx)
            s.start_decoding(r, t, kind, s.prompt[r] + s.gen[r] - 1)
            self._join_running(r)
        if self.unref:
            self.trim_prefix()

    def _admit(self, t: float, budget: int, reserve: int = 0) -> tuple[list[tuple[int, int, int]], int, int]:
        """Admit waiting requests FCFS into the token ``budget``, keeping ``reserve`` blocks for this
        iteration's decodes; returns (chunks, tokens, prior tokens)."""
        s = self.sim
        out: list[tuple[int, int, int]] = []
        P = prior_sum = 0
        while self.waiting and budget > 0 and len(self.running) + len(self.prefilling) + len(out) < self.max_seqs:
            r = self.waiting[0]
            total = s.prompt[r] + s.gen[r]
            blocks = -(-total // self.bs)
            if self.free - reserve - blocks < self.watermark:
                break
            hs = s.workload.hashes(r).tolist() if self.prefix is not None and s.gen[r] == 0 else None
            hit = self.prefix_match(hs) if hs else 0
            cached = min(hit * s.prefix_block_tokens, s.prompt[r] - 1)
            todo = total - cached
            if not self.chunked and todo > budget:
                break
            self.waiting.popleft()
            self.waiting_tokens -= total
            self.free -= blocks
            if hs:
                self._prefix_insert(r, hs)
            s.prefill_target[r] = total
            s.prefill_done[r] = cached
            s.open_residency(r, t, cached, self.idx)
            chunk = min(todo, budget)
            out.append((r, chunk, cached))
            P += chunk
            prior_sum += cached
            budget -= chunk
        return out, P, prior_sum

    def _prefix_insert(self, r: int, hs: list[int]) -> None:
        """Admitted ``r`` uses (and refreshes) its prefix blocks until its KV stint ends."""
        cache = self.prefix
        for h in hs:
            c = cache.get(h)  # type: ignore[union-attr]
            if c is None:
                cache[h] = 1  # type: ignore[index]
            else:
                if c == 0:
                    self.unref -= 1
                cache[h] = c + 1  # type: ignore[index]
                cache.move_to_end(h)  # type: ignore[union-attr]
        self.sim.prefix_held[r] = hs
        self.trim_prefix()

    def release_prefix(self, r: int) -> None:
        """``r``'s KV stint here ended: its prefix entries stay cached, evictable once nobody uses them."""
        cache = self.prefix
        for h in self.sim.prefix_held[r]:  # type: ignore[union-attr]
            c = cache[h] - 1  # type: ignore[index]
            cache[h] = c  # type: ignore[index]
            if c == 0:
                self.unref += 1
        self.sim.prefix_held[r] = None
        self.trim_prefix()

    def trim_prefix(self) -> None:
        """Evict least recently used unreferenced entries until they fit in the free KV blocks."""
        excess = self.unref - self.free // self.per_entry
        if excess <= 0:
            return
        victims = []
        for h, c in self.prefix.items():  # type: ignore[union-attr]
            if c == 0:
                victims.append(h)
                if len(victims) == excess:
                    break
        for h in victims:
            del self.prefix[h]  # type: ignore[union-attr]
        self.unref -= len(victims)

    def prefix_match(self, hashes: list[int]) -> int:
        """Leading blocks of ``hashes`` present in this instance's prefix cache (read-only peek)."""
        cache = self.prefix
        if cache is None:
            return 0
        n = 0
        for h in hashes:
            if h not in cache:
                break
            n += 1
        return n

    def _plan(self, t: float) -> None:
        """Choose the next iteration (or run) at time ``t`` and schedule its end (vLLM v0's scheduler order:
        without chunking, new prefills first unless requests are swapped out, else decode the running batch,
        preempting as needed, and swap in only if nothing was preempted in this step)."""
        if self.chunked:
            self._plan_chunked(t)
            return
        if not self.swapped and self.waiting and self._try_prefill(t):
            return
        preempted = self._preempt_for_next_decode(t) if self.running else False
        if self.swapped and (not preempted or not self.running):
            self._swap_in(t)
        if self.running:
            self._start_decode_run(t, self._take_xfer())
        elif self.waiting and not self.swapped and self._try_prefill(t):
            return  # everything was preempted: re-admit at once
        elif self.waiting or self.swapped:
            self._stuck(t)

    def _take_xfer(self) -> float:
        """Seconds of pending swap traffic over PCIe, charged to the next iteration."""
        x = self.xfer_bytes / self.pcie_bw if self.xfer_bytes else 0.0
        self.xfer_bytes = 0.0
        return x

    def _try_prefill(self, t: float) -> bool:
        """Start a prefill-only iteration with the admissible waiting requests, if any."""
        batch, P, prior_sum = self._admit(t, self.max_tokens)
        if not batch:
            return False
        pairs = sum(c * (pr + (c + 1) * 0.5) for _, c, pr in batch)
        dt = self.cost.iteration_time(P, 0, 0, prefill_context_tokens=prior_sum, prefill_attention_pairs=pairs)
        if self.slow is not None or self.noise is not None:
            dt *= self._factor(False)
        self._start_single(t, dt, batch, False, self._take_xfer())
        return True

    def _plan_chunked(self, t: float) -> None:
        """Sarathi-style: decode every running sequence and fill the token budget with prompt chunks
        (in-progress prefills first, then new admissions)."""
        preempted = self._preempt_for_next_decode(t) if self.running else False
        if self.swapped and (not preempted or not self.running):
            self._swap_in(t)
        xfer = self._take_xfer()
        budget = self.max_tokens - len(self.running)
        batch: list[tuple[int, int, int]] = []
        P = prior_sum = 0
        pairs = 0.0
        s = self.sim
        for r in self.prefilling:
            if budget <= 0:
                break
            done = s.prefill_done[r]
            c = min(s.prefill_target[r] - done, budget)
            batch.append((r, c, done))
            budget -= c
        if not self.swapped and budget > 0:
            new, _, _ = self._admit(t, budget, self.cnt[(-self.D) % self.bs] if self.running else 0)
            self.prefilling.extend(r for r, _, _ in new)
            batch.extend(new)
        for _, c, done in batch:
            P += c
            prior_sum += done
            pairs += c * (done + (c + 1) * 0.5)
        if batch:
            B = len(self.running)
            dt = self.cost.iteration_time(P, B, self.S, prefill_context_tokens=prior_sum,
                                          prefill_attention_pairs=pairs)
            if self.slow is not None or self.noise is not None:
                dt *= self._factor(B > 0)
            self._start_single(t, dt, batch, B > 0, xfer)
        elif self.running:
            self._start_decode_run(t, xfer)
        elif self.waiting or self.swapped:
            self._stuck(t)

    def _stuck(self, t: float) -> None:
        raise RuntimeError(f"instance {self.idx}: requests wait at t={t} but nothing can run (free blocks "
                           f"{self.free}/{self.total_blocks}); a request larger than the cache was routed here")

    def _start_single(self, t: float, dt: float, batch: list[tuple[int, int, int]], decode: bool,
                      xfer: float = 0.0) -> None:
        """One iteration: ``xfer`` seconds of swap traffic, then ``dt`` seconds of compute."""
        if not dt > 0:
            raise RuntimeError(f"instance {self.idx}: cost model returned a non-positive iteration time {dt}")
        self.state = SINGLE
        self.batch = batch
        self.batch_decode = decode
        self.seg_t0 = t
        self.c_start, self.t_end, self.f_cur = t + xfer, t + xfer + dt, self._slowdown(decode)
        self.version += 1
        self.sim.events.push(self.t_end, (self.idx, self.version))

    def _rescale_single(self, t: float) -> None:
        """Interference changed during a single iteration: its remaining compute continues at the new speed."""
        f = self._slowdown(self.batch_decode)
        if f == self.f_cur:
            return
        since = max(t, self.c_start)
        self.t_end = since + (self.t_end - since) * f / self.f_cur
        self.f_cur = f
        self.version += 1
        self.sim.events.push(self.t_end, (self.idx, self.version))

    def _start_decode_run(self, t: float, xfer: float) -> None:
        B = len(self.running)
        fin = self.fin
        s = self.sim
        while fin and (s.fin_key[fin[0][1]] != fin[0][0] or s.where[fin[0][1]] != self.idx):
            heapq.heappop(fin)  # drop stale entries so the top is the next completion
        k_c = fin[0][0] - self.D
        self.pref = pref = self._need_prefix()
        k = self._iters_before_exhaustion(k_c, pref)
        if k < 1:
            raise AssertionError("preemption left a decode iteration without blocks")
        self.alpha, self.beta = self.cost.decode_coefficients(B)
        cls = self._noise_class(True)
        if self.slow is not None and cls is None:  # one speed for the run: cut when another engine starts or stops
            f = self._slowdown(True)
            self.alpha, self.beta = self.alpha * f, self.beta * f
        if not self.alpha > 0:
            raise RuntimeError(f"instance {self.idx}: cost model gives a non-positive decode time for batch {B}")
        self.B, self.S0, self.k_end = B, self.S, k
        if self.noise is not None:  # iteration j costs (alpha + beta * (S0 + B * j)) times its drawn factor
            j = np.arange(k, dtype=np.float64)
            self.cum = np.cumsum((self.alpha + self.beta * (self.S0 + B * j)) * self.noise.draw(k, cls))
        self.seg_t0 = t
        self.t0 = t + xfer
        self.state = DECODE_RUN
        self.version += 1
        self.sim.events.push(self.t0 + self._run_time(k), (self.idx, self.version))

    # ------------------------------------------------------------------ observation
    def snapshot(self, t: float) -> tuple[int, int, int, int, int, int, float]:
        """Router-visible statistics at ``t`` (columns ``features.LIVE``): waiting, running, swapped, used
        blocks, pending prefill tokens, running context tokens, current decode step (s)."""
        used = self.total_blocks - self.free
        S = self.S
        B = len(self.running)
        step = 0.0
        if self.state == DECODE_RUN:
            k = self.iters_done(t) if t > self.t0 else 0
            n = k + 1 if k < self.k_end else k
            used += B * (n // self.bs) + self.pref[n % self.bs]
            S += B * k
            step = self.alpha + self.beta * S
        elif B:
            a, b = self.cost.decode_coefficients(B)
            step = a + b * S
        pending = self.waiting_tokens
        if self.prefilling:
            s = self.sim
            for r in self.prefilling:
                pending += s.prefill_target[r] - s.prefill_done[r]
        return len(self.waiting), B + len(self.prefilling), len(self.swapped), used, pending, S, step


class ClusterSim:
    """A cluster of ``Engine``s fed by a workload; the router decides each arrival's instance.

    Drive it with ``next_decision()`` (advance to the next arrival that needs routing; returns its request
    id, or ``None`` when all are routed), ``route(r, instance)``, and finally ``drain()``.
    """

    def __init__(self, workload: ServingWorkload, cluster: ClusterSpec, costs: list[CostModel],
                 plans: list[InstancePlan], pcie_bw: list[float], noise_seed: int = 0) -> None:
        self.workload, self.cluster = workload, cluster
        R = workload.n_requests
        self.prefix_block_tokens = workload.prefix_block_tokens if workload.prefix_hashes is not None else 1 << 30
        self.arrival: list[float] = workload.arrival.tolist()
        self.prompt: list[int] = workload.prompt_tokens.tolist()
        self.output: list[int] = workload.output_tokens.tolist()
        self.cls: list[int] = workload.priority.tolist()
        cfg = cluster.engine
        self.engines = [Engine(i, self, costs[i], cfg, plans[i].num_blocks, plans[i].block_bytes, pcie_bw[i],
                               cluster.instances[i].context_limit) for i in range(cluster.n_instances)]
        self.n_busy = 0                # engines computing (``interference``)
        labels = [s.label for s in cluster.instances]
        if cluster.interference:
            for e, slow in zip(self.engines, instance_interference(costs, labels), strict=True):
                e.slow = slow
        if cluster.iteration_noise:
            for e, nz in zip(self.engines, instance_noise(costs, labels, noise_seed), strict=True):
                e.noise = nz
        if workload.prefix_hashes is None:  # nothing to cache by
            for e in self.engines:
                e.prefix = None
        self._prefix_on = any(e.prefix is not None for e in self.engines)
        self._no_hits = np.zeros(len(self.engines))
        self._no_hits.flags.writeable = False
        limit = np.array([request_limit(spec, cfg, plan) for spec, plan in zip(cluster.instances, plans, strict=False)])
        total = workload.prompt_tokens + workload.output_tokens
        self.fits = total[:, None] <= limit[None, :]  # (R, N) bool: the instance can hold the request
        self.feasible = self.fits  # the routing mask
        self.disagg = cluster.disagg
        self.decode_ids = list(range(len(self.engines)))
        if self.disagg is not None:  # route to the prefill pool, and only requests some decode instance can hold
            P = self.disagg.n_prefill
            self.decode_ids = list(range(P, len(self.engines)))
            self.feasible = self.fits.copy()
            self.feasible[:, P:] = False
            self.feasible[~self.fits[:, P:].any(axis=1)] = False
            for e in self.engines[:P]:
                e.prefill_only = True
        self.fits.flags.writeable = False
        self.feasible.flags.writeable = False
        self._any_feasible: list[bool] = self.feasible.any(axis=1).tolist()
        self.limit = limit
        self.migration = cluster.migration
        self.migrating = [False] * R   # blocks arrived by migration (not from host memory)
        self.migrations = [0] * R
        models = [s.model for s in cluster.instances]
        self.same_model = np.array([[a == b for b in models] for a in models])
        self.link_bw = self.migration.link_bw if self.migration is not None else \
            self.disagg.link_bw if self.disagg is not None else math.inf
        self.events: EventQueue[tuple[int, int]] = EventQueue()
        self.where = [-1] * R          # instance a request is running (decoding) on, -1 otherwise
        self.routed = [-1] * R
        self.gen = [0] * R
        self.dbase = [0] * R
        self.fin_key = [-1] * R
        self.prefill_target = [0] * R
        self.prefill_done = [0] * R
        self.swap_blocks = [0] * R
        self.preemptions = [0] * R
        self.first_token = [NAN] * R
        self.finish = [NAN] * R
        self.res_open: list[tuple[float, float, int, int, int] | None] = [None] * R  # alloc, start, kv, cached, kind
        self.res_where = [-1] * R      # instance of each open residency
        self.prefix_held: list[list[int] | None] = [None] * R  # prefix hashes a resident request uses
        self.res_log: list[tuple[int, float, float, float, int, int, int, int, int]] = []
        self.seg_log: list[tuple[int, float, float, int, bool, int]] = []
        self.next_req = 0              # the pending request (arrival order; release order with workflows)
        self.settled = 0               # requests routed or rejected
        self.wf = workload.workflows
        self.deadline = stage_deadlines(workload).tolist()
        # Workflows: stages released when their parents finish (``self.arrival`` becomes each release time).
        self.stages = StageReleaser(workload, self.arrival) if self.wf is not None else None
        self.qkey = [queue_key(cfg.queue_policy, self.deadline[r], self.cls[r]) for r in range(R)]
        self.now = 0.0
        self.rejected: list[int] = []
        # Running tallies for rewards and info.
        self.n_finished = 0
        self.n_slo_ok = 0
        self.n_first = 0
        self.wait_first = 0            # routed requests still waiting for their first token
        self.wait_first_arrival = 0.0  # sum of their arrival times
        self.ttft_done = 0.0           # sum of TTFT of requests that got their first token
        self.in_system = 0
        self.in_system_arrival = 0.0
        self.e2e_done = 0.0
        self.slo_ttft = cluster.slo.ttft_s
        self.slo_tpot = cluster.slo.tpot_s
        # Migration decided by the agent: the pending tick's time, candidate moves and moves left.
        self.agent_ticks = self.migration is not None and self.migration.decider == "agent"
        self.tick: float | None = None
        self.tick_moves: list[tuple[int, int, int] | None] = []
        self.tick_left = 0
        self.n_ticks = 0
        if self.migration is not None:
            self.events.push(self.migration.interval_s, (-1, -1))
        for c in set(self.cls):
            if c >= cluster.slo.n_classes:
                raise ValueError(f"workload {workload.name} has priority class {c} but the SLO defines only "
                                 f"{cluster.slo.n_classes} class(es)")

    @classmethod
    def build(cls, workload: ServingWorkload, cluster: ClusterSpec,
              costs: list[CostModel] | None = None, noise_seed: int = 0) -> ClusterSim:
        """A simulator for ``workload`` on ``cluster`` (cost models built from the specs unless given;
        ``noise_seed`` seeds the iteration-time draws when ``cluster.iteration_noise`` is on)."""
        plans = check_cluster(cluster)
        if costs is None:
            costs = cost_models(cluster)
        pcie = [catalog.gpu(s.gpu).pcie_bw for s in cluster.instances]
        return cls(workload, cluster, costs, plans, pcie, noise_seed)

    # ------------------------------------------------------------------ driving
    def _run_until(self, t: float, inclusive: bool = False) -> bool:
        """Process events before ``t`` (or at ``t`` too); True if it stopped at a tick awaiting the agent."""
        ev, engines = self.events, self.engines
        while ev.peek_time() < t or (inclusive and ev.peek_time() <= t and len(ev)):
            time, (i, version) = ev.pop()
            e = engines[i]
            if version == e.version:
                e.wake(time)
            elif version < 0 and self._special(i, version, time):
                return True
        return False

    def _special(self, i: int, version: int, t: float) -> bool:
        """A non-engine event: the migration timer (``i == -1``) or a migrant's arrival at instance ``i``;
        True if a tick now awaits the agent's moves."""
        if i >= 0:
            self.engines[i].migrate_in(-version - 1, t)
            return False
        cfg = self.migration
        if self.agent_ticks:
            self.tick, self.tick_left = t, cfg.max_per_tick  # type: ignore[union-attr]
            self.n_ticks += 1
            if self._offer_moves():
                self.now = max(self.now, t)
                return True
            return False
        for r, src, dst in llumnix_moves(self, cfg, t):  # type: ignore[arg-type]
            self.engines[src].request_migration(r, dst, t)
        self._next_tick(t)
        return False

    def _next_tick(self, t: float) -> None:
        if self.settled < len(self.arrival) or self.in_system > 0:
            self.events.push(t + self.migration.interval_s, (-1, -1))  # type: ignore[union-attr]

    def _offer_moves(self) -> bool:
        """Candidate moves for the pending tick; without any, the tick ends (nothing to ask). True if any."""
        self.tick_moves = move_candidates(self, self.migration)  # type: ignore[arg-type]
        if any(m is not None for m in self.tick_moves):
            return True
        self.end_tick()
        return False

    def migrate(self, slot: int) -> None:
        """The agent's move at the pending tick: candidate ``slot`` of ``tick_moves`` (``move_slots``)."""
        if self.tick is None:
            raise RuntimeError("migrate() outside a migration tick")
        if not 0 <= slot < len(self.tick_moves) or self.tick_moves[slot] is None:
            valid = [j for j, m in enumerate(self.tick_moves) if m is not None]
            raise ValueError(f"migration slot {slot} has no candidate move; valid slots: {valid}")
        r, src, dst = self.tick_moves[slot]  # type: ignore[misc]
        self.engines[src].request_migration(r, dst, self.tick)
        self.tick_left -= 1
        if self.tick_left > 0:
            self._offer_moves()
        else:
            self.end_tick()

    def end_tick(self) -> None:
        """No (more) migrations at the pending tick: the timer runs on."""
        t, self.tick, self.tick_moves = self.tick, None, []
        self._next_tick(t)  # type: ignore[arg-type]

    def next_decision(self) -> int | None:
        """Advance to the next arrival that needs a routing decision (rejecting any no instance can serve);
        ``TICK`` when a migration tick awaits the agent (``migrate``/``end_tick``), ``None`` when done."""
        if self.tick is not None:
            raise RuntimeError("a migration tick awaits the agent's moves: call migrate(slot) or end_tick()")
        if self.wf is not None:
            r = self._next_stage()
        else:
            R = len(self.arrival)
            r = None
            while self.next_req < R:
                r = self.next_req
                t = self.arrival[r]
                if self._run_until(t):
                    return TICK
                self.now = max(self.now, t)
                if self._any_feasible[r]:
                    return r
                self.rejected.append(r)
                self.next_req += 1
                self.settled += 1
                r = None
        if r is None and self.agent_ticks and self._run_until(math.inf):
            return TICK  # every request is routed; ticks go on while requests run
        return r

    def _next_stage(self) -> int | None:
        """Workflows: the next released stage in release order (a stage is released when its parents finish)."""
        st = self.stages
        assert st is not None
        while self.settled < len(self.arrival):
            t = st.next_release()  # inf: nothing released yet
            if len(self.events) and self.events.peek_time() < t:  # one event time at a time: releases
                if self._run_until(self.events.peek_time(), inclusive=True):  # may put an earlier stage first
                    return TICK
                continue
            if t == math.inf:
                raise RuntimeError("workflow stages wait for parents that can never finish")
            r = st.pop(t)
            assert r is not None
            self.now = max(self.now, t)
            self.next_req = r
            if self._any_feasible[r] and not st.doomed[r]:
                return r
            self.rejected.append(r)
            self.settled += 1
            st.reject(r)  # a rejected stage never finishes: its descendants are rejected too
        return None

    def route(self, r: int, i: int) -> None:
        """Send the pending request ``r`` to instance ``i`` (must be feasible)."""
        if r != self.next_req:
            raise RuntimeError(f"request {r} is not the pending arrival (expected {self.next_req})")
        if not 0 <= i < len(self.engines) or not self.feasible[r, i]:
            raise ValueError(f"instance {i} cannot serve request {r} (prompt + output "
                             f"{self.prompt[r] + self.output[r]} > limit {int(self.limit[i])})")
        self.routed[r] = i
        self.settled += 1
        if self.wf is None:
            self.next_req += 1
        a = self.arrival[r]
        self.wait_first += 1
        self.wait_first_arrival += a
        self.in_system += 1
        self.in_system_arrival += a
        self.engines[i].enqueue(r, a)

    def drain(self) -> None:
        """Run every instance until all routed requests have finished."""
        if self.settled < len(self.arrival):
            raise RuntimeError(f"drain() with {len(self.arrival) - self.settled} requests not yet routed")
        if self.tick is not None or self._run_until(math.inf):
            raise RuntimeError("drain() reached a migration tick for the agent; drive ticks with next_decision()")
        self.now = max([self.now] + [f for f in self.finish if f == f])

    @property
    def done(self) -> bool:
        return self.settled >= len(self.arrival) and not len(self.events) and self.tick is None

    # ------------------------------------------------------------------ router's view
    def live_stats(self, t: float | None = None) -> np.ndarray:
        """(N, 7) per-instance statistics at ``t`` (default: now), columns ``features.LIVE``."""
        t = self.now if t is None else t
        return np.array([e.snapshot(t) for e in self.engines], dtype=np.float64)

    def outstanding(self) -> np.ndarray:
        """(N,) requests on each instance: waiting + prefilling + running + swapped out (cheap: no time math)."""
        return np.array([len(e.waiting) + len(e.prefilling) + len(e.running) + len(e.swapped)
                         for e in self.engines], dtype=np.float64)

    def prefix_hits(self, r: int) -> np.ndarray:
        """Fraction of request ``r``'s prefix blocks cached on each instance (0 without prefix caching)."""
        if not self._prefix_on:
            return self._no_hits
        n = self.workload.prefix_offsets[r + 1] - self.workload.prefix_offsets[r]
        if not n:
            return self._no_hits
        hs = self.workload.hashes(r).tolist()
        return np.array([e.prefix_match(hs) / n for e in self.engines])

    # ------------------------------------------------------------------ request bookkeeping
    def open_residency(self, r: int, t: float, cached: int, instance: int) -> None:
        self.res_open[r] = (t, NAN, 0, cached, START_PREFILL)
        self.res_where[r] = instance

    def start_decoding(self, r: int, t: float, kind: int, kv: int) -> None:
        alloc, _, _, cached, _ = self.res_open[r]  # type: ignore[misc]
        self.res_open[r] = (alloc, t, kv, cached, kind)
        if self.first_token[r] != self.first_token[r]:  # NaN: first token of this request
            self.first_token[r] = t
            ttft = t - self.arrival[r]
            self.n_first += 1
            self.wait_first -= 1
            self.wait_first_arrival -= self.arrival[r]
            self.ttft_done += ttft

    def finish_request(self, r: int, t: float, end_kind: int) -> None:
        """Close ``r``'s residency; on ``END_FINISH`` the request is complete."""
        alloc, start, kv, cached, kind = self.res_open[r]  # type: ignore[misc]
        self.res_log.append((r, alloc, start, t, kv, cached, kind, end_kind, self.res_where[r]))
        self.res_open[r] = None
        if self.prefix_held[r] is not None:
            self.engines[self.res_where[r]].release_prefix(r)
        if end_kind != END_FINISH:
            return
        self.where[r] = -1
        self.fin_key[r] = -1
        self.finish[r] = t
        self.n_finished += 1
        a = self.arrival[r]
        self.in_system -= 1
        self.in_system_arrival -= a
        self.e2e_done += t - a
        if self.stages is not None:
            self.stages.finished(r, t)
        ttft = self.first_token[r] - a
        o = self.output[r]
        tpot = (t - self.first_token[r]) / (o - 1) if o > 1 else 0.0
        c = self.cls[r]
        if ttft <= self.slo_ttft[c] and tpot <= self.slo_tpot[c]:
            self.n_slo_ok += 1

    def log_segment(self, i: int, t0: float, t1: float, iters: int, decode: bool, prefill: int) -> None:
        self.seg_log.append((i, t0, t1, iters, decode, prefill))

    # ------------------------------------------------------------------ integrals for dense rewards
    def ttft_integral(self, t: float) -> float:
        """Sum over routed requests of their time without a first token, up to ``t``."""
        return self.ttft_done + self.wait_first * t - self.wait_first_arrival

    def e2e_integral(self, t: float) -> float:
        """Sum over routed requests of their time in the system, up to ``t``."""
        return self.e2e_done + self.in_system * t - self.in_system_arrival

    # ------------------------------------------------------------------ results
    def schedule(self) -> ServingSchedule:
        """The event log so far as a ``ServingSchedule``."""
        res = self.res_log
        seg = self.seg_log

        def col(rows: list[tuple[Any, ...]], j: int, dtype: Any) -> np.ndarray:
            return np.fromiter((x[j] for x in rows), dtype=dtype, count=len(rows))

        return ServingSchedule(
            self.workload, self.cluster, np.array(self.routed, np.int64),
            col(res, 0, np.int64), col(res, 1, np.float64), col(res, 2, np.float64), col(res, 3, np.float64),
            col(res, 4, np.int64), col(res, 5, np.int64), col(res, 6, np.int8), col(res, 7, np.int8),
            col(seg, 0, np.int64), col(seg, 1, np.float64), col(seg, 2, np.float64), col(seg, 3, np.int64),
            col(seg, 4, np.bool_), col(seg, 5, np.int64),
            col(res, 8, np.int64) if self.migration is not None or self.disagg is not None else None,
        )
