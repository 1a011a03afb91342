"""Independent validators: recompute every objective from the solution alone (no env, no simulator).

``validate_mapping`` re-derives each op's bytes in fast and slow memory from the tiers, recomputes the
execution time with the roofline below, and checks every fast-memory rectangle (address x live range) lies
within the capacity and overlaps no other. ``validate_offsets`` does the rectangle checks for an offset
assignment and returns its peak address.

Execution time of op j (ns)::

    time_j = max(compute_j, fast_bytes_j / fast_bandwidth + slow_bytes_j / slow_bandwidth)

where ``fast_bytes_j`` (``slow_bytes_j``) is the total size of the buffers op j reads or writes that live
in fast (slow) memory; the program's execution time is the sum over ops in op order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.memory.types import MemoryProgram, OffsetAssignment, OffsetInstance, TierMapping


class MappingError(ValueError):
    """A mapping or offset assignment violates the memory constraints."""


def op_times(program: MemoryProgram, fast: np.ndarray) -> np.ndarray:
    """(n_ops,) float64 execution time of each op when the buffers with ``fast[b]`` live in fast memory."""
    n = program.n_ops
    sizes = program.buffer_size[program.access_buffer]
    in_fast = np.asarray(fast, dtype=bool)[program.access_buffer]
    fast_bytes = np.zeros(n, np.int64)
    slow_bytes = np.zeros(n, np.int64)
    np.add.at(fast_bytes, program.access_op[in_fast], sizes[in_fast])
    np.add.at(slow_bytes, program.access_op[~in_fast], sizes[~in_fast])
    spec = program.spec
    memory = fast_bytes / spec.fast_bandwidth + slow_bytes / spec.slow_bandwidth
    return np.maximum(program.op_compute, memory)


def execution_time(program: MemoryProgram, fast: np.ndarray) -> float:
    """Total execution time (ns): the sum of ``op_times`` in op order."""
    return float(op_times(program, fast).sum())


def check_rectangles(
    name: str,
    lower: np.ndarray,
    upper: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    members: np.ndarray,
    capacity: int | None,
    ids: tuple[str, ...],
) -> int:
    """Check that the member buffers' rectangles are within [0, capacity) and pairwise disjoint whenever
    their live ranges overlap; return the peak address (max offset + size, 0 if none)."""
    idx = np.flatnonzero(members)
    if idx.size == 0:
        return 0
    off = offset[idx]
    neg = np.flatnonzero(off < 0)
    if neg.size:
        b = int(idx[neg[0]])
        raise MappingError(f"{name}: buffer {b} ({ids[b]!r}) has a negative offset {int(offset[b])}")
    top = off + size[idx]
    if capacity is not None:
        over = np.flatnonzero(top > capacity)
        if over.size:
            b = int(idx[over[0]])
            raise MappingError(
                f"{name}: buffer {b} ({ids[b]!r}) at offset {int(offset[b])} with size {int(size[b])} "
                f"ends at {int(top[over[0]])}, past the capacity {capacity}"
            )
    lo, up = lower[idx], upper[idx]
    # Sweep in time order: every buffer is compared with the ones already live when it starts.
    order = np.lexsort((idx, lo))
    live: list[int] = []  # positions into idx
    for p in order.tolist():
        live = [q for q in live if up[q] > lo[p]]
        for q in live:
            if off[p] < top[q] and off[q] < top[p]:
                a, b = int(idx[q]), int(idx[p])
                raise MappingError(
                    f"{name}: buffers {a} ({ids[a]!r}) and {b} ({ids[b]!r}) overlap: live ranges "
                    f"[{int(lo[q])}, {int(up[q])}) and [{int(lo[p])}, {int(up[p])}), addresses "
                    f"[{int(off[q])}, {int(top[q])}) and [{int(off[p])}, {int(top[p])})"
                )
        live.append(p)
    return int(top.max())


def validate_mapping(
    program: MemoryProgram, mapping: TierMapping | tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """Check a complete tier mapping and recompute its execution time.

    Returns ``exec_time`` (ns, the objective), ``all_slow_time``, ``all_fast_time`` (every buffer in fast
    memory, ignoring capacity: the upper bound), ``speedup`` (all-slow / exec), ``fast_buffers`` and
    ``fast_peak`` (highest fast-memory address used).
    """
    tier, offset = (mapping.tier, mapping.offset) if isinstance(mapping, TierMapping) else mapping
    tier, offset = np.asarray(tier), np.asarray(offset)
    b, name = program.n_buffers, program.name
    if tier.shape != (b,) or offset.shape != (b,):
        raise MappingError(
            f"{name}: tier and offset must have shape ({b},), got {tier.shape} and {offset.shape}"
        )
    bad = np.flatnonzero((tier != 0) & (tier != 1))
    if bad.size:
        i = int(bad[0])
        raise MappingError(
            f"{name}: buffer {i} ({program.buffer_names[i]!r}) has tier {int(tier[i])}; "
            f"expected 0 (slow) or 1 (fast) for every buffer"
        )
    fast = tier == 1
    stray = np.flatnonzero(~fast & (offset != -1))
    if stray.size:
        i = int(stray[0])
        raise MappingError(
            f"{name}: slow buffer {i} ({program.buffer_names[i]!r}) has a fast-memory offset "
            f"{int(offset[i])}; expected -1"
        )
    peak = check_rectangles(
        name,
        program.buffer_lower,
        program.buffer_upper,
        program.buffer_size,
        offset.astype(np.int64),
        fast,
        program.spec.fast_capacity,
        program.buffer_names,
    )
    exec_time = execution_time(program, fast)
    all_slow = execution_time(program, np.zeros(b, bool))
    return {
        "exec_time": exec_time,
        "all_slow_time": all_slow,
        "all_fast_time": execution_time(program, np.ones(b, bool)),
        "speedup": all_slow / exec_time if exec_time > 0 else 1.0,
        "fast_buffers": int(fast.sum()),
        "fast_peak": peak,
    }


def validate_offsets(instance: OffsetInstance, assignment: OffsetAssignment | np.ndarray) -> dict[str, Any]:
    """Check a complete offset assignment (no overlaps; every buffer placed) and return ``peak`` (the
    objective: highest address used), ``fits`` (1 if peak <= capacity) and ``capacity_ratio`` (peak /
    capacity).
    """
    off = np.asarray(assignment.offsets if isinstance(assignment, OffsetAssignment) else assignment)
    b = instance.n_buffers
    if off.shape != (b,):
        raise MappingError(f"{instance.name}: offsets must have shape ({b},), got {off.shape}")
    if not np.issubdtype(off.dtype, np.integer):
        raise MappingError(f"{instance.name}: offsets must be integers, got dtype {off.dtype}")
    peak = check_rectangles(
        instance.name,
        instance.lower,
        instance.upper,
        instance.size,
        off.astype(np.int64),
        np.ones(b, bool),
        None,
        instance.ids,
    )
    return {"peak": peak, "fits": int(peak <= instance.capacity), "capacity_ratio": peak / instance.capacity}
