"""Prefix caching for the live engine: real KV blocks shared between sequences by their prefix-block hashes.

Keys are the workload's prefix-block hash chain (Mooncake ``hash_ids``: block ``i`` of a prompt covers tokens
``[i*B, (i+1)*B)``, ``B = prefix_block_tokens``, a multiple of the engine's KV block size so a hash block is
exactly ``per_entry`` whole KV blocks). The prompt token ids of a hashed block are derived from the hash and the
weights seed (``hash_block_ids``), so equal hashes mean equal tokens at equal positions and reusing their KV is
exact; a request's tokens after its last whole hash block come from its id (``prompt_ids``).

Semantics are the simulator's (``envs/serving/sim.py``, ``Engine._admit`` / ``_prefix_insert`` /
``release_prefix`` / ``trim_prefix``):

- at admission (first stint only: a recompute or swap-in does not use the cache) the hit is the number of
  leading hashes present; ``cached = min(hit * B, prompt - 1)`` prompt tokens are not prefilled;
- the admitted request references every one of its hashes (present ones are refreshed to most recently used,
  missing ones are inserted) until its KV stint ends; the entries then stay cached, unreferenced;
- block accounting: a resident request is charged its whole block table (``ceil(tokens / block_size)``, shared
  blocks included); unreferenced entries live in the free blocks and are evicted least recently used until
  ``unreferenced entries x per_entry <= free blocks``.

Physically, a hit's blocks are shared: the request's block table points at the entry's KV blocks and the
prefill forward pass computes only the uncached suffix (attention reads the cached KV through the table; a
recomputed last prompt token writes its key/value to a scratch block, the cached copy is kept). The blocks of a
request's missing hashes become the new entries' blocks; an unreferenced entry re-referenced past a request's
hit gets that request's freshly computed blocks (its old ones are freed). So every referenced entry's blocks sit
in the block table of a request that references it, and physical use never exceeds the accounting.

Entries are inserted at admission, as in the simulator, before their KV is computed. A hit on them is exact
because the scheduler admits a request only with token budget left after every prefilling request's chunk,
i.e. when all of them finish their prompt in this iteration, and each layer writes the whole batch's keys and
values before attending; ``match`` checks this (``owner`` / ``horizon``) rather than assuming it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_U64 = (1 << 64) - 1


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_block_ids(hashes: list[int], n: int, vocab: int, seed: int) -> np.ndarray:
    """Deterministic token ids of prefix blocks, ``(len(hashes) * n,)``: block ``h``'s ``n`` ids are a function of
    ``h`` and ``seed`` alone (a SplitMix64 stream keyed by both), so equal hashes give equal tokens. Vectorised:
    a request's blocks cost microseconds, not one generator each."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    key = _mix(np.array([int(h) & _U64 for h in hashes], np.uint64) ^ np.uint64((int(seed) * int(golden)) & _U64))
    z = _mix(key[:, None] + np.arange(1, n + 1, dtype=np.uint64)[None, :] * golden)
    return (z % np.uint64(vocab)).astype(np.int64).reshape(-1)


def whole_blocks(hashes: Any, prompt_tokens: int, block_tokens: int) -> list[int]:
    """The hashes whose blocks lie wholly inside the prompt (a trailing partial block is not cached live)."""
    return [int(h) for h in list(hashes)[:prompt_tokens // block_tokens]]


@dataclass(eq=False)
class Entry:
    """One cached prefix block: ``per_entry`` KV blocks holding the KV of its ``block_tokens`` tokens."""

    index: int                  # position of the block in its hash chain
    parent: int | None          # hash of the previous block (None for the first)
    blocks: list[int] = field(default_factory=list)
    refs: int = 0               # resident requests referencing it (the simulator's count)
    owner: Any = None           # the request computing ``blocks`` (None once computed)


class PrefixCache:
    """Hash -> ``Entry`` in LRU order, on top of the engine's physical free-block list (shared, mutated here).

    A resident sequence ``s`` (the engine's ``_Seq``) gets ``s.held`` ({block index: entry}, the entries its
    table points at) and must expose ``blocks`` (its block table) and ``horizon`` (tokens whose KV exists by
    the end of the current iteration)."""

    def __init__(self, block_tokens: int, kv_block_size: int, free_blocks: list[int]) -> None:
        if block_tokens < 1 or block_tokens % kv_block_size:
            raise ValueError(f"prefix caching: prefix_block_tokens={block_tokens} must be a positive multiple of "
                             f"the engine's block_size {kv_block_size} (a hash block is shared as whole KV blocks)")
        self.block_tokens = int(block_tokens)
        self.per_entry = block_tokens // kv_block_size
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.unref = 0
        self.free_blocks = free_blocks
        self.version = 0  # bumped whenever the set of cached hashes changes (snapshot publishing)

    # ------------------------------------------------------------------ queries
    def _ready(self, e: Entry, h: int) -> None:
        if e.owner is not None and e.owner.horizon >= (e.index + 1) * self.block_tokens:
            e.owner = None
        if e.owner is not None:
            raise RuntimeError(f"prefix block {h} would be hit before its KV is computed (scheduler invariant)")

    def _check_chain(self, e: Entry, h: int, i: int, parent: int | None) -> None:
        if e.index != i or e.parent != parent:
            raise ValueError(f"prefix hashes are not a hash chain: hash {h} is block {i} after {parent} here but "
                             f"block {e.index} after {e.parent} in an earlier request (equal hashes must mean "
                             "equal preceding blocks, as Mooncake's hash_ids do)")

    def match(self, hashes: list[int]) -> int:
        """Leading hashes cached (their KV computed by the end of the current iteration; checked)."""
        n, parent = 0, None
        for i, h in enumerate(hashes):
            e = self.entries.get(h)
            if e is None:
                break
            self._check_chain(e, h, i, parent)
            self._ready(e, h)
            n, parent = n + 1, h
        return n

    def keys(self) -> frozenset[int]:
        return frozenset(self.entries)

    # ------------------------------------------------------------------ admission / release
    def acquire(self, s: Any, hashes: list[int], hit: int, need: int, free_acc: int) -> list[int]:
        """Admit ``s`` (``hit`` leading hashes cached; ``need`` blocks in its table, already charged; ``free_acc``:
        the accounting's free blocks after the charge). Returns its block table."""
        held: dict[int, Entry] = {}
        new: list[Entry] = []
        parent = None
        for i, h in enumerate(hashes):  # the simulator's _prefix_insert order (LRU refresh in chain order)
            e = self.entries.get(h)
            if e is None:
                e = self.entries[h] = Entry(i, parent)
                self.version += 1
                new.append(e)
            else:
                self._check_chain(e, h, i, parent)
                self.entries.move_to_end(h)
                if e.refs == 0:
                    self.unref -= 1
                    if i >= hit:  # nobody reads its blocks: recompute into fresh ones, which replace them
                        self.free_blocks.extend(e.blocks)
                        e.blocks = []
                        new.append(e)
                elif i >= hit:  # referenced, so its chain predecessors are cached and it would have been hit
                    raise RuntimeError(f"prefix block {h} is referenced but was not hit (cache invariant)")
            e.refs += 1
            held[i] = e
            parent = h
        self.trim(free_acc)
        pe = self.per_entry
        shared = [b for i in range(hit) for b in held[i].blocks]
        n_private = need - len(shared)
        if n_private > len(self.free_blocks):
            raise RuntimeError(f"prefix cache: {n_private} KV blocks needed, {len(self.free_blocks)} physically "
                               "free (block accounting broken)")
        table = shared + [self.free_blocks.pop() for _ in range(n_private)]
        for e in new:
            e.blocks = table[e.index * pe:(e.index + 1) * pe]
            e.owner = s
        s.held = held
        return table

    def release(self, s: Any, free_acc: int) -> None:
        """``s``'s KV stint ended (its prompt is computed): references drop, entries stay cached; blocks of its
        table that no entry holds go back to the free list. ``free_acc``: accounting free blocks after."""
        pe = self.per_entry
        mine = {b for i in s.held for b in s.blocks[i * pe:(i + 1) * pe]}
        self.free_blocks.extend(b for b in s.blocks if b not in mine)
        for e in s.held.values():
            if e.owner is s:
                e.owner = None
            e.refs -= 1
            if e.refs == 0:
                self.unref += 1
        s.held = {}
        self.trim(free_acc)

    def trim(self, free_acc: int) -> None:
        """Evict least recently used unreferenced entries until they fit in the free blocks."""
        excess = self.unref - free_acc // self.per_entry
        if excess <= 0:
            return
        victims = []
        for h, e in self.entries.items():
            if e.refs == 0:
                victims.append(h)
                if len(victims) == excess:
                    break
        for h in victims:
            self.free_blocks.extend(self.entries.pop(h).blocks)
        self.unref -= len(victims)
        self.version += 1

    def check(self, num_blocks: int, residents: list[Any]) -> None:
        """Conservation (tests): every physical block is free, in one entry, or private to one resident."""
        owned = [b for e in self.entries.values() for b in e.blocks]
        for s in residents:
            pe = self.per_entry
            mine = {b for i in s.held for b in s.blocks[i * pe:(i + 1) * pe]}
            owned += [b for b in s.blocks if b not in mine]
        every = sorted(owned + self.free_blocks)
        if every != list(range(num_blocks)):
            raise AssertionError(f"KV blocks not conserved: {len(every)} accounted for, {num_blocks} in the pool")
        if sum(e.refs == 0 for e in self.entries.values()) != self.unref:
            raise AssertionError("unreferenced-entry count out of sync")
        refs: dict[int, int] = {}
        for s in residents:
            for e in s.held.values():
                refs[id(e)] = refs.get(id(e), 0) + 1
                if s.blocks[e.index * self.per_entry:(e.index + 1) * self.per_entry] != e.blocks:
                    raise AssertionError(f"a request's table does not point at its cached block {e.index}")
        if any(e.refs != refs.get(id(e), 0) for e in self.entries.values()):
            raise AssertionError("prefix-cache reference counts out of sync with the residents")
