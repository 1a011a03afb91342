"""Moving a running sequence's KV cache between live engines (Llumnix migration, DistServe/Splitwise hand-off).

``export_seq`` takes a decoding sequence out of an engine at an iteration boundary: the KV block contents of
its computed tokens are copied out of the pool (``pool.k[:, blocks]``, a real copy on the engine's device, or
to host memory when the package must cross processes), its blocks are freed and its residency ends as
migrated out. The ``KVPackage`` carries everything needed to resume: prompt ids, generated tokens (the last
one is not in the cache yet: the next decode feeds it), KV tokens and the key/value tensors. ``import_seq``
queues it on another engine (``LiveEngine.inbound``); once ``ready_at`` has passed it joins the swapped queue
and is copied into fresh blocks exactly like a swap-in, logged as migrated in, and keeps decoding.

Between Ray actors the package travels through Ray's object transport (driver in the middle); between
``backend="thread"`` engines it is a device-to-device copy between the two pools. The copies' real cost lands
in measured time: the export happens at the source's iteration boundary (delaying its next iteration) and
after the logged end of the stint; the import copy runs inside the destination's iteration that resumes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from schedgym.envs.serving.types import END_MIGRATE_OUT

if TYPE_CHECKING:
    from schedgym.hwbackend.engine import LiveEngine


@dataclass
class KVPackage:
    """One sequence in transit: its identity, progress and KV block contents.

    k, v: (n_layers, n_blocks, block_size, n_kv_heads, head_dim), n_blocks = ceil(computed / block_size);
    t_out: when it left the source (source engine clock = episode clock)."""

    rid: int
    prompt: np.ndarray      # (P,) int64 prompt token ids
    output_len: int
    generated: list[int]    # tokens generated so far (>= 1; the last is not in the KV cache yet)
    computed: int           # KV tokens = P + len(generated) - 1
    k: torch.Tensor
    v: torch.Tensor
    t_out: float
    key: float = 0.0        # its waiting-queue sort key (``queueing.queue_key``): kept across engines

    @property
    def n_blocks(self) -> int:
        return int(self.k.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size())


def export_seq(eng: LiveEngine, rid: int, t: float, to_host: bool = False) -> KVPackage | None:
    """Remove decoding ``rid`` from ``eng`` at time ``t`` (an iteration boundary) and return its package; None
    if it is not decoding there (finished, preempted or still prefilling since it was chosen)."""
    s = next((x for x in eng.running if x.rid == rid), None)
    if s is None:
        return None
    n = -(-s.computed // eng.bs)
    if len(s.blocks) != n or s.computed != s.prompt.shape[0] + len(s.generated) - 1:
        raise RuntimeError(f"request {rid}: {len(s.blocks)} blocks / {s.computed} KV tokens / "
                           f"{len(s.generated)} generated are inconsistent (expected {n} blocks)")
    idx = torch.as_tensor(s.blocks, device=eng.device)
    k, v = eng.pool.k[:, idx], eng.pool.v[:, idx]  # advanced indexing: copies out of the pool
    if to_host and k.device.type != "cpu":
        k, v = k.to("cpu"), v.to("cpu")
    eng.running.remove(s)
    alloc, start, kv, kind = eng.open.pop(rid)
    eng.res_log.append((rid, alloc, start, t, kv, s.cached, kind, END_MIGRATE_OUT))
    eng._drop(s)  # its blocks go back to the pool (shared prefix-cache blocks stay cached)
    return KVPackage(int(rid), s.prompt, s.output_len, list(s.generated), s.computed, k, v, float(t), s.key)


def import_seq(eng: LiveEngine, pkg: KVPackage, ready_at: float = 0.0) -> None:
    """Queue ``pkg`` on ``eng``: it joins the swapped queue at ``ready_at`` (engine clock), then resumes in fresh
    blocks. Raises ValueError if the package does not fit this engine's model, block size or context limit."""
    from schedgym.hwbackend.engine import _Seq

    cfg = eng.cfg
    shape = (cfg.n_layers, -(-pkg.computed // eng.bs), eng.bs, cfg.n_kv_heads, cfg.head_dim)
    if tuple(pkg.k.shape) != shape or tuple(pkg.v.shape) != shape or pkg.k.dtype != eng.pool.k.dtype:
        raise ValueError(f"request {pkg.rid}: KV package of shape {tuple(pkg.k.shape)} {pkg.k.dtype} does not fit "
                         f"this engine's pool: expected {shape} {eng.pool.k.dtype}")
    if pkg.computed != pkg.prompt.shape[0] + len(pkg.generated) - 1 or not 1 <= len(pkg.generated) < pkg.output_len:
        raise ValueError(f"request {pkg.rid}: package has {pkg.computed} KV tokens, {pkg.prompt.shape[0]} prompt "
                         f"and {len(pkg.generated)} of {pkg.output_len} generated tokens: not a decoding sequence")
    if pkg.prompt.shape[0] + pkg.output_len > eng.context_limit:
        raise ValueError(f"request {pkg.rid}: {pkg.prompt.shape[0] + pkg.output_len} tokens exceed the context "
                         f"limit {eng.context_limit}")
    s = _Seq(pkg.rid, pkg.prompt, pkg.output_len, list(pkg.generated), key=pkg.key)
    s.computed = s.target = pkg.computed
    s.host_kv = (pkg.k, pkg.v)
    s.migrated = True
    s.ready_at = float(ready_at)
    eng.inbound.append(s)
