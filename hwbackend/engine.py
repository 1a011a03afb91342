"""A real continuous-batching engine: the simulator's scheduler policy driving the torch transformer.

Policy (the same knobs and order as ``envs/serving/sim.py``, vLLM v0): without chunked prefill an iteration
either prefills admitted prompts (in the waiting-queue order of ``queue_policy``, ``envs/serving/queueing.py``:
FCFS, earliest deadline or priority class first; within ``max_num_seqs``, ``max_num_batched_tokens`` and free blocks
above the watermark; decodes stall) or decodes one token for every running sequence; with chunked prefill
every iteration decodes all running sequences and fills the rest of the token budget with prompt chunks.
When a decode needs a block and none is free, the most recently admitted running sequence is preempted:
recomputed later (``preemption="recompute"``: blocks freed; it re-prefills prompt + generated tokens) or swapped
(``"swap"``, FastSwitch's setting: its KV blocks are copied to host memory, within ``swap_space_gb``, and copied
back into fresh blocks before it decodes again; the copies run inside the iteration that carries them, so their
real cost lands in its measured time). As in the simulator (vLLM v0), no new prompt is admitted while requests
are swapped out, and a step that preempted does not swap in. Prefix caching (``prefix_caching=True``, with the
workload's ``prefix_block_tokens``): requests submitted with prefix-block hashes share cached KV blocks and
prefill only their uncached suffix, with the simulator's hit, LRU and block-accounting rules
(``hwbackend/prefix_cache.py``). Preemption victims are the most recently admitted running sequences in every
queue policy (as in the simulator).

Moving KV between engines (``kv_transfer.py``: Llumnix migration, DistServe/Splitwise disaggregation):
``export_seq`` takes a decoding sequence out at an iteration boundary (its KV blocks copied out, its blocks
freed; residency ended as migrated out) and ``import_seq`` queues it on another engine, where it joins the
swapped queue once its link time has passed and is copied into fresh blocks like a swap-in (migrated in), then
keeps decoding. With ``prefill_only`` (a prefill-pool engine) every request is exported right after its
prefill iteration (its first token), into ``outbox``.

Each iteration's wall time is measured around the forward pass with device synchronisation; requests stop
after exactly their output length (no EOS). The log uses the simulator's record format (residencies and
segments of ``ServingSchedule``), so the validator and metrics are the simulator's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from schedgym.envs.serving.queueing import insert_ordered, queue_key
from schedgym.envs.serving.types import (
    END_FINISH,
    END_RECOMPUTE,
    END_SWAP_OUT,
    START_MIGRATE_IN,
    START_PREFILL,
    START_SWAP_IN,
    EngineConfig,
)
from schedgym.hwbackend.model import KVPool, ModelConfig, SeqBatch, Transformer
from schedgym.hwbackend.prefix_cache import PrefixCache, hash_block_ids, whole_blocks

# (request, alloc, start, end, kv_start, cached, start_kind, end_kind): the simulator's residency tuple.
Residency = tuple[int, float, float, float, int, int, int, int]
# (instance, t0, t1, iterations, decode, prefill_tokens): the simulator's segment tuple (instance filled later).
Segment = tuple[int, float, float, int, bool, int]


def prompt_ids(rid: int, n: int, vocab: int, seed: int) -> np.ndarray:
    """Deterministic synthetic prompt token ids of request ``rid`` (traces carry lengths, not text)."""
    return np.random.default_rng([seed, rid]).integers(0, vocab, n, dtype=np.int64)


@dataclass
class _Seq:
    rid: int
    prompt: np.ndarray
    output_len: int
    generated: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    computed: int = 0          # tokens whose KV is in the cache
    target: int = 0            # tokens to prefill in the current stint (prompt + generated at admission)
    alloc: float = float("nan")
    key: float = 0.0           # waiting-queue sort key (``queueing.queue_key``)
    host_kv: tuple[torch.Tensor, torch.Tensor] | None = None  # swapped-out keys/values (host memory)
    migrated: bool = False     # host_kv arrived from another engine (kv_transfer), not from a swap-out
    ready_at: float = 0.0      # migrated: when its KV transfer is complete (engine clock)
    hashes: list[int] = field(default_factory=list)  # prefix-block hashes (whole blocks of the prompt)
    cached: int = 0            # prompt tokens served from the prefix cache in the current stint
    hit_tokens: int = 0        # leading positions whose KV lives in shared cache blocks (never written)
    horizon: int = 0           # tokens whose KV exists by the end of the current iteration
    held: dict = field(default_factory=dict)   # prefix cache: hash-block index -> the entry it references

    def token(self, i: int) -> int:
        p = self.prompt.shape[0]
        return int(self.prompt[i]) if i < p else self.generated[i - p]


class LiveEngine:
    """One model instance: the transformer, its KV block pool and the scheduler. Not thread-safe by itself."""

    def __init__(self, model: ModelConfig | str | dict | None, engine: EngineConfig | dict | None, num_blocks: int,
                 *, context_limit: int | None = None, seed: int = 0, device: str = "cpu",
                 clock: Callable[[], float] = time.perf_counter, prefix_block_tokens: int | None = None) -> None:
        self.cfg = ModelConfig.from_any(model)
        self.ecfg = EngineConfig.from_dict(engine)
        if self.ecfg.prefix_caching and prefix_block_tokens is None:
            raise ValueError("live engine: prefix_caching=True needs prefix_block_tokens (the workload's tokens per "
                             "prefix-block hash)")
        self.context_limit = int(context_limit or self.cfg.max_context)
        if self.context_limit > self.cfg.max_context:
            raise ValueError(f"context_limit {self.context_limit} exceeds the model's max_context "
                             f"{self.cfg.max_context}")
        self.device = torch.device(device)
        self.model = Transformer(self.cfg, seed=seed, device=self.device)
        self.bs = self.ecfg.block_size
        self.num_blocks = int(num_blocks)
        # With prefix caching one extra block takes the writes of positions whose KV is already cached.
        self.pool = KVPool(self.cfg, self.num_blocks + bool(self.ecfg.prefix_caching), self.bs, self.device)
        self.watermark = int(self.ecfg.watermark * self.num_blocks)
        self.max_tokens = self.ecfg.batched_tokens(self.context_limit)
        self.chunked = self.ecfg.chunked_prefill
        self.queue_policy = self.ecfg.queue_policy
        self.seed = int(seed)
        self.clock = clock
        self.free_blocks: list[int] = list(range(self.num_blocks - 1, -1, -1))
        self.charged = 0  # blocks in resident block tables (shared cache blocks counted per table, as the sim)
        self.pc: PrefixCache | None = None
        if prefix_block_tokens is not None and self.ecfg.prefix_caching:
            self.pc = PrefixCache(int(prefix_block_tokens), self.bs, self.free_blocks)
        self.waiting: deque[_Seq] = deque()
        self.prefilling: list[_Seq] = []   # admitted, prompt not fully computed (chunked prefill)
        self.running: list[_Seq] = []      # decoding, in admission order
        self.res_log: list[Residency] = []
        self.seg_log: list[Segment] = []
        # Parallel to seg_log: each iteration's batch shape (prefill tokens, decode sequences, decode KV context,
        # prefill KV context, prefill attention pairs) in the cost model's terms, to compare measured iterations
        # with a calibration, and the CPU seconds this thread spent in it (wall - CPU on a CPU device = time the
        # thread waited for a core: contention from other processes).
        self.shape_log: list[tuple[int, int, int, int, float, float]] = []
        self.open: dict[int, tuple[float, float, int, int]] = {}  # rid -> (alloc, start, kv_start, start_kind)
        self.swap = self.ecfg.preemption == "swap"
        self.swapped: deque[_Seq] = deque()  # preempted to host memory, oldest first
        self.block_bytes = self.pool.k[:, 0].numel() * self.pool.k.element_size() * 2  # keys + values, all layers
        self.host_blocks = int(self.ecfg.swap_space_gb * 1e9 // self.block_bytes)
        self.host_free = self.host_blocks
        self.finished: list[int] = []
        self.prefill_only = False  # disaggregated prefill pool: export every request after its first token
        self.inbound: list[_Seq] = []  # imported sequences whose KV transfer is still under way (kv_transfer)
        self.outbox: list[Any] = []    # exported ``kv_transfer.KVPackage``s the driver has not collected yet
        self.transfer_via_host = False  # exported KV copied to host memory (to cross processes: Ray actors)
        self.received: list[tuple[int, float]] = []  # (request, engine clock when it arrived at the engine)
        self.last_decode_s = 0.0
        self.busy_s = 0.0
        # Optional streaming hook (serving front ends): called as on_token(rid, token, t, finished) after every
        # generated token, in the thread that runs step(); it must be cheap and must not call the engine.
        self.on_token: Callable[[int, int, float, bool], None] | None = None

    # ------------------------------------------------------------------ requests
    def submit(self, rid: int, prompt_tokens: int, output_tokens: int, received: float | None = None,
               prompt: np.ndarray | list[int] | None = None, priority: int = 0,
               deadline: float = float("inf"), hashes: list[int] | np.ndarray | None = None) -> None:
        """Queue request ``rid`` (synthetic prompt ids of the given length; exactly ``output_tokens`` out).
        ``received``: when the engine got it (engine clock; default now), reported as the dispatch time.
        ``prompt``: the real prompt token ids instead of synthetic ones (length ``prompt_tokens``, ids < vocab).
        ``priority`` (class, 0 = highest) and ``deadline`` (engine clock) order the queue under ``queue_policy``.
        ``hashes``: the prompt's prefix-block hashes (with prefix caching): each whole block's token ids derive
        from its hash (``hash_block_ids``), the rest from ``rid``."""
        if prompt_tokens < 1 or output_tokens < 1:
            raise ValueError(f"request {rid}: prompt_tokens and output_tokens must be >= 1, got "
                             f"{prompt_tokens}, {output_tokens}")
        if prompt_tokens + output_tokens > self.context_limit:
            raise ValueError(f"request {rid}: prompt + output = {prompt_tokens + output_tokens} tokens exceeds the "
                             f"context limit {self.context_limit}")
        hs: list[int] = []
        if hashes is not None and len(hashes) and self.pc is not None:
            if prompt is not None:
                raise ValueError(f"request {rid}: give prompt token ids or prefix hashes, not both")
            hs = whole_blocks(hashes, prompt_tokens, self.pc.block_tokens)
        if hs:
            bt, V = self.pc.block_tokens, self.cfg.vocab_size  # type: ignore[union-attr]
            ids = np.concatenate([hash_block_ids(hs, bt, V, self.seed),
                                  prompt_ids(rid, prompt_tokens - len(hs) * bt, V, self.seed)])
        elif prompt is None:
            ids = prompt_ids(rid, prompt_tokens, self.cfg.vocab_size, self.seed)
        else:
            ids = np.asarray(prompt, np.int64)
            if ids.shape != (prompt_tokens,) or (ids < 0).any() or (ids >= self.cfg.vocab_size).any():
                raise ValueError(f"request {rid}: prompt must be {prompt_tokens} token ids in "
                                 f"[0, {self.cfg.vocab_size}), got shape {ids.shape}")
        if priority < 0:
            raise ValueError(f"request {rid}: priority must be a class index >= 0, got {priority}")
        s = _Seq(rid, ids, int(output_tokens), key=queue_key(self.queue_policy, float(deadline), int(priority)),
                 hashes=hs)
        s.target = prompt_tokens
        if self.queue_policy == "fcfs":
            self.waiting.append(s)
        else:
            insert_ordered(self.waiting, s, s.key, lambda q: q.key)
        self.received.append((int(rid), self.clock() if received is None else float(received)))

    def has_work(self) -> bool:
        return bool(self.waiting or self.prefilling or self.running or self.swapped or self.inbound)

    def unfinished(self) -> list[int]:
        return [s.rid for s in (*self.waiting, *self.prefilling, *self.running, *self.swapped, *self.inbound)]

    def running_kv(self) -> list[tuple[int, int]]:
        """(request, KV tokens) of every decoding sequence, in admission order (migration candidates)."""
        return [(s.rid, s.computed) for s in self.running]

    def export_seq(self, rid: int, t: float | None = None) -> Any:
        """Take decoding ``rid`` out at this iteration boundary (``kv_transfer.export_seq``); None if it is not
        decoding here now."""
        from schedgym.hwbackend.kv_transfer import export_seq
        return export_seq(self, rid, self.clock() if t is None else t, self.transfer_via_host)

    def import_seq(self, pkg: Any, ready_at: float = 0.0) -> None:
        """Queue a sequence exported by another engine; it resumes here once ``ready_at`` has passed."""
        from schedgym.hwbackend.kv_transfer import import_seq
        import_seq(self, pkg, ready_at)

    def next_ready_in(self) -> float:
        """Seconds until the next inbound transfer completes (inf without one)."""
        return min((s.ready_at for s in self.inbound), default=float("inf")) - self.clock()

    def stats(self) -> np.ndarray:
        """Live statistics, columns ``features.LIVE``: waiting, running, swapped, used blocks, pending prefill
        tokens, running context tokens, last decode iteration (s)."""
        pending = sum(s.target for s in self.waiting) + sum(s.target - s.computed for s in self.prefilling)
        return np.array([len(self.waiting), len(self.running) + len(self.prefilling), len(self.swapped),
                         self.charged, pending,
                         sum(s.computed for s in self.running), self.last_decode_s], np.float64)

    # ------------------------------------------------------------------ scheduling
    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.bs)

    def _nfree(self) -> int:
        """Free blocks as the simulator counts them (cached unreferenced prefix blocks count as free)."""
        return self.num_blocks - self.charged

    def _take(self, n: int) -> list[int]:
        """Charge and allocate ``n`` private blocks (evicting unreferenced cached prefix blocks as needed)."""
        self.charged += n
        if self.pc is not None:
            self.pc.trim(self._nfree())
        return [self.free_blocks.pop() for _ in range(n)]

    def _drop(self, s: _Seq) -> None:
        """``s``'s KV stint ends: its blocks go back (cached prefix blocks stay in the cache)."""
        self.charged -= len(s.blocks)
        if self.pc is not None and s.held:
            self.pc.release(s, self._nfree())
        else:
            self.free_blocks.extend(s.blocks)
        s.blocks = []
        s.cached = s.hit_tokens = 0

    def _admit(self, t: float, budget: int, reserve: int) -> list[tuple[_Seq, int]]:
        out: list[tuple[_Seq, int]] = []
        while self.waiting and budget > 0 and \
                len(self.running) + len(self.prefilling) + len(out) < self.ecfg.max_num_seqs:
            s = self.waiting[0]
            need = self._blocks_for(s.target)
            if self._nfree() - reserve - need < self.watermark:
                break
            hs = s.hashes if self.pc is not None and not s.generated else []
            hit = self.pc.match(hs) if hs else 0  # type: ignore[union-attr]
            cached = min(hit * self.pc.block_tokens, s.prompt.shape[0] - 1) if hit else 0  # type: ignore
            todo = s.target - cached
            if not self.chunked and todo > budget:
                break
            self.waiting.popleft()
            if hs:
                self.charged += need
                s.blocks = self.pc.acquire(s, hs, hit, need, self._nfree())  # type: ignore[union-attr]
            else:
                s.blocks = self._take(need)
            s.computed = s.cached = cached
            s.hit_tokens = hit * self.pc.block_tokens if hit else 0  # type: ignore[union-attr]
            s.alloc = t
            chunk = min(todo, budget)
            s.horizon = cached + chunk
            out.append((s, chunk))
            budget -= chunk
        return out

    def _decode_need(self) -> int:
        """New blocks the next decode iteration needs (a sequence whose cache fills its last block)."""
        return sum(1 for s in self.running if s.computed % self.bs == 0)

    def _preempt_for_decode(self, t: float) -> bool:
        """Preempt the latest admitted sequences until the next decode's new blocks fit; True if any was."""
        preempted = False
        while self.running and self._decode_need() > self._nfree():
            preempted = True
            s = self.running.pop()
            alloc, start, kv, kind = self.open.pop(s.rid)
            if self.swap and len(s.blocks) <= self.host_free:
                idx = torch.as_tensor(s.blocks, device=self.device)
                s.host_kv = (self.pool.k[:, idx].to("cpu"), self.pool.v[:, idx].to("cpu"))
                self.host_free -= len(s.blocks)
                self.res_log.append((s.rid, alloc, start, t, kv, s.cached, kind, END_SWAP_OUT))
                self.swapped.append(s)
            else:
                self.res_log.append((s.rid, alloc, start, t, kv, s.cached, kind, END_RECOMPUTE))
                s.target = s.prompt.shape[0] + len(s.generated)
                s.computed = 0
                self.waiting.appendleft(s)
            self._drop(s)
        return preempted

    def _swap_in(self, t: float) -> None:
        """Copy swapped-out (or migrated-in) sequences back (oldest first) while their blocks, the next decode's
        new blocks and the watermark fit; they decode in this iteration."""
        while self.swapped and len(self.running) + len(self.prefilling) < self.ecfg.max_num_seqs:
            s = self.swapped[0]
            k, v = s.host_kv
            n = k.shape[1]
            need = self._decode_need() + (s.computed % self.bs == 0)
            if self._nfree() - n - need < self.watermark:
                break
            self.swapped.popleft()
            s.blocks = self._take(n)
            idx = torch.as_tensor(s.blocks, device=self.device)
            self.pool.k[:, idx] = k.to(self.device)
            self.pool.v[:, idx] = v.to(self.device)
            s.host_kv = None
            if s.migrated:
                s.migrated = False
                self.open[s.rid] = (t, t, s.computed, START_MIGRATE_IN)
            else:
                self.host_free += n
                self.open[s.rid] = (t, t, s.computed, START_SWAP_IN)
            self.running.append(s)

    def _plan(self, t: float) -> tuple[list[tuple[_Seq, int]], list[_Seq]]:
        """This iteration's (prefill chunks, decoding sequences)."""
        if self.chunked:
            preempted = self._preempt_for_decode(t)
            if self.swapped and (not preempted or not self.running):
                self._swap_in(t)
            decodes = list(self.running)
            budget = self.max_tokens - len(decodes)
            chunks: list[tuple[_Seq, int]] = []
            for s in self.prefilling:
                s.horizon = s.computed
                if budget <= 0:
                    continue
                c = min(s.target - s.computed, budget)
                chunks.append((s, c))
                s.horizon += c
                budget -= c
            new = self._admit(t, budget, self._decode_need()) if not self.swapped else []
            self.prefilling.extend(s for s, _ in new)
            return chunks + new, decodes
        if self.waiting and not self.swapped:
            new = self._admit(t, self.max_tokens, 0)
            if new:
                self.prefilling.extend(s for s, _ in new)
                return new, []
        preempted = self._preempt_for_decode(t) if self.running else False
        if self.swapped and (not preempted or not self.running):
            self._swap_in(t)
        if self.running:
            return [], list(self.running)
        new = self._admit(t, self.max_tokens, 0) if not self.swapped else []
        self.prefilling.extend(s for s, _ in new)
        return new, []

    # ------------------------------------------------------------------ one iteration
    def step(self) -> bool:
        """Run one iteration if there is work; returns whether one ran."""
        if not self.has_work():
            return False
        t0 = self.clock()
        c0 = time.thread_time()
        if self.inbound:  # migrants whose transfer is complete join the swapped queue (as in the simulator)
            arrived = [s for s in self.inbound if s.ready_at <= t0]
            self.inbound = [s for s in self.inbound if s.ready_at > t0]
            self.swapped.extend(sorted(arrived, key=lambda s: s.ready_at))
        chunks, decodes = self._plan(t0)
        if not chunks and not decodes:
            if self.waiting and not self.prefilling and not self.running:
                s = self.waiting[0]
                raise RuntimeError(f"request {s.rid} ({s.target} tokens) can never be admitted: "
                                   f"{self.num_blocks} blocks of {self.bs} tokens, watermark {self.watermark}")
            return False
        for s in decodes:  # a slot for the token being decoded
            if s.computed % self.bs == 0:
                s.blocks += self._take(1)
        batch = self._build(chunks, decodes)
        logits = self.model(batch, self.pool)
        nxt = logits.argmax(-1).tolist()  # .tolist() synchronises the device (as torch.cuda.synchronize)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t1 = self.clock()
        cpu = time.thread_time() - c0
        P = sum(c for _, c in chunks)
        self.seg_log.append((-1, t0, t1, 1, bool(decodes), P))
        self.shape_log.append((P, len(decodes), sum(s.computed for s in decodes), sum(s.computed for s, _ in chunks),
                               sum(c * (s.computed + (c + 1) / 2) for s, c in chunks), cpu))
        self.busy_s += t1 - t0
        if decodes and not chunks:
            self.last_decode_s = t1 - t0
        i = 0
        for s, c in chunks:
            s.computed += c
            if s.computed == s.target:
                self.prefilling.remove(s)
                s.generated.append(int(nxt[i]))
                self.open[s.rid] = (s.alloc, t1, s.computed, START_PREFILL)
                self._after_token(s, t1, joined=True)
                if self.prefill_only and s in self.running:  # disaggregated: hand the KV to the decode pool
                    self.outbox.append(self.export_seq(s.rid, t1))
            i += 1
        for s in decodes:
            s.computed += 1
            s.generated.append(int(nxt[i]))
            self._after_token(s, t1, joined=False)
            i += 1
        return True

    def _after_token(self, s: _Seq, t: float, joined: bool) -> None:
        if self.on_token is not None:
            self.on_token(s.rid, s.generated[-1], t, len(s.generated) >= s.output_len)
        if len(s.generated) >= s.output_len:
            if not joined:
                self.running.remove(s)
            alloc, start, kv, kind = self.open.pop(s.rid)
            self.res_log.append((s.rid, alloc, start, t, kv, s.cached, kind, END_FINISH))
            self._drop(s)
            self.finished.append(s.rid)
        elif joined:
            self.running.append(s)

    def _build(self, chunks: list[tuple[_Seq, int]], decodes: list[_Seq]) -> SeqBatch:
        seqs = [s for s, _ in chunks] + decodes
        qlens = [c for _, c in chunks] + [1] * len(decodes)
        tok, pos, slots = [], [], []
        scratch = self.num_blocks * self.bs  # the extra block (prefix caching): positions already cached
        for s, q in zip(seqs, qlens):
            for j in range(s.computed, s.computed + q):
                tok.append(s.token(j))
                pos.append(j)
                slots.append((scratch if j < s.hit_tokens else s.blocks[j // self.bs] * self.bs) + j % self.bs)
        ctx = [s.computed + q for s, q in zip(seqs, qlens)]
        width = max(len(s.blocks) for s in seqs)
        tables = np.zeros((len(seqs), width), np.int64)
        for k, s in enumerate(seqs):
            tables[k, :len(s.blocks)] = s.blocks
        dev = self.device
        groups = []
        start = 0
        for k, (s, q) in enumerate(chunks):
            groups.append((torch.tensor([k], device=dev), torch.arange(start, start + q, device=dev)[None, :],
                           -(-(s.computed + q) // self.bs)))
            start += q
        if decodes:
            nd = len(decodes)
            groups.append((torch.arange(len(chunks), len(chunks) + nd, device=dev),
                           torch.arange(start, start + nd, device=dev)[:, None],
                           max(-(-(s.computed + 1) // self.bs) for s in decodes)))

        def lt(x: list[int] | np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, np.int64), device=dev)

        return SeqBatch(lt(tok), lt(pos), lt(slots), lt(qlens), lt(ctx), lt(tables), groups)

    def warmup(self, prompt_tokens: int = 64, decode_steps: int = 3) -> None:
        """Run a throwaway request (prefill, then a few decodes) and forget it: the first iterations of a fresh
        process pay one-off costs (CUDA context, cuBLAS handles, allocator growth, lazy kernel loading; on CPU
        page faults) that would otherwise land on the first real requests. Logs and state are reset after."""
        if self.has_work() or self.res_log or self.seg_log:
            raise RuntimeError("warmup() must run before the engine takes requests")
        p = max(1, min(int(prompt_tokens), self.context_limit - decode_steps - 1))
        hook, self.on_token = self.on_token, None
        self.submit(1 << 40, p, decode_steps + 1)  # an id no trace uses
        self.run_until_idle()
        self.on_token = hook
        self.res_log.clear(), self.seg_log.clear(), self.shape_log.clear(), self.received.clear()
        self.finished.clear()
        self.last_decode_s = self.busy_s = 0.0

    def run_until_idle(self, max_iters: int = 10_000_000) -> None:
        """Step until every queued request has finished (offline use: profiling, tests)."""
        n = 0
        while self.has_work():
            if not self.step():
                if self.inbound and not (self.waiting or self.prefilling or self.running or self.swapped):
                    time.sleep(max(0.0, self.next_ready_in()))  # only a transfer under way: wait for it
                    continue
                raise RuntimeError("engine has work but cannot schedule an iteration")
            n += 1
            if n >= max_iters:
                raise RuntimeError(f"engine did not drain within {max_iters} iterations")
