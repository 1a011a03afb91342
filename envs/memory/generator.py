"""Seeded synthetic instances: random programs (MemoryMapping), zero-slack offset instances (MemoryOffsets).

Both take an ``np.random.Generator``; nothing here touches a global RNG.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.memory.types import MemoryProgram, MemorySpec, OffsetInstance

KIB = 1024


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int | None = None) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def random_program(
    rng: np.random.Generator,
    n_ops: int,
    *,
    weight_prob: float = 0.5,
    fast_fraction: float = 0.25,
    slow_bandwidth: float = 1000.0,
    fast_bandwidth: float = 8000.0,
    name: str | None = None,
) -> MemoryProgram:
    """A chain-like program of ``n_ops`` ops, the shape of a layer stack.

    Op j reads the previous op's output, with probability 0.3 also an older live activation (a skip
    connection), with probability ``weight_prob`` a weight (a program input, live from op 0), and writes one
    output. Activations are 4 KiB-1 MiB and weights 16 KiB-4 MiB (log-uniform, KiB multiples). Compute
    time = (bytes moved / slow bandwidth) x intensity, intensity log-uniform in [0.05, 2]: about a third of
    the ops are compute-bound even in slow memory, the rest gain from fast memory. Fast capacity =
    ``fast_fraction`` x the peak live bytes (KiB multiple). Bandwidths in bytes/ns (defaults 1 and 8 TB/s).
    """
    if n_ops < 2:
        raise ValueError(f"random_program needs n_ops >= 2, got {n_ops}")
    if not 0 <= weight_prob <= 1:
        raise ValueError(f"weight_prob must lie in [0, 1], got {weight_prob}")
    if not 0 < fast_fraction <= 1:
        raise ValueError(f"fast_fraction must lie in (0, 1], got {fast_fraction}")
    sizes: list[int] = []
    lower: list[int] = []
    last_use: list[int] = []
    names: list[str] = []
    acc_op: list[int] = []
    acc_buf: list[int] = []
    acc_w: list[bool] = []

    def new_buffer(size: int, start: int, label: str) -> int:
        sizes.append(size)
        lower.append(start)
        last_use.append(start)
        names.append(label)
        return len(sizes) - 1

    def access(op: int, b: int, write: bool) -> None:
        acc_op.append(op)
        acc_buf.append(b)
        acc_w.append(write)
        last_use[b] = max(last_use[b], op)

    act_sizes = (_log_uniform(rng, 4, 1024, n_ops + 1).astype(np.int64) * KIB).tolist()
    prev = new_buffer(act_sizes[0], 0, "input")
    outputs: list[int] = []
    for j in range(n_ops):
        reads = [prev]
        if outputs[:-1] and rng.random() < 0.3:
            old = outputs[int(rng.integers(max(0, len(outputs) - 8), len(outputs) - 1))]
            if old not in reads:
                reads.append(old)
        if rng.random() < weight_prob:
            reads.append(new_buffer(int(_log_uniform(rng, 16, 4096)) * KIB, 0, f"w{j}"))
        for b in reads:
            access(j, b, False)
        out = new_buffer(act_sizes[j + 1], j, f"act{j}")
        access(j, out, True)
        outputs.append(out)
        prev = out
    size = np.array(sizes, np.int64)
    lo = np.array(lower, np.int64)
    up = np.array(last_use, np.int64) + 1
    up[prev] = n_ops  # the program's result stays live to the end
    aop, abuf = np.array(acc_op, np.int64), np.array(acc_buf, np.int64)
    moved = np.zeros(n_ops, np.int64)
    np.add.at(moved, aop, size[abuf])
    compute = moved / slow_bandwidth * _log_uniform(rng, 0.05, 2.0, n_ops)
    live = np.zeros(n_ops + 1, np.int64)
    np.add.at(live, lo, size)
    np.add.at(live, up, -size)
    capacity = max(KIB, int(fast_fraction * np.cumsum(live).max()) // KIB * KIB)
    spec = MemorySpec(capacity, fast_bandwidth, slow_bandwidth)
    return MemoryProgram(
        name or f"random-programs-{n_ops}",
        spec,
        compute,
        size,
        lo,
        up,
        aop,
        abuf,
        np.array(acc_w, bool),
        tuple(names),
        tuple(f"op{j}" for j in range(n_ops)),
        meta={"source": "schedgym.envs.memory.generator.random_program"},
    )


def random_offsets(
    rng: np.random.Generator,
    n_buffers: int,
    *,
    horizon: int = 1024,
    capacity: int = 65536,
    granule: int = 64,
    name: str | None = None,
) -> OffsetInstance:
    """A zero-slack offset instance with a planted optimal packing (MiniMalloc's challenge style).

    Start from the full rectangle [0, horizon) x [0, capacity) and cut a random piece (chosen with
    probability proportional to its area) in time or in address, at a random grid point (address cuts on
    ``granule`` multiples), until there are ``n_buffers`` pieces; each piece is a buffer, its address its
    planted offset. Every moment is fully packed, so the peak live size equals the capacity and the planted
    packing is optimal: ``best_known = capacity``.
    """
    if n_buffers < 1:
        raise ValueError(f"random_offsets needs n_buffers >= 1, got {n_buffers}")
    units = capacity // granule
    if capacity % granule or units * horizon < n_buffers:
        raise ValueError(
            f"capacity must be a multiple of granule and horizon x capacity / granule >= n_buffers; "
            f"got horizon={horizon} capacity={capacity} granule={granule} n_buffers={n_buffers}"
        )
    rects = [(0, horizon, 0, units)]  # (t0, t1, a0, a1) in time steps and granules
    while len(rects) < n_buffers:
        area = np.array(
            [(t1 - t0) * (a1 - a0) - 1 for t0, t1, a0, a1 in rects], float
        )  # 1x1 pieces can't split
        i = int(rng.choice(len(rects), p=area / area.sum()))
        t0, t1, a0, a1 = rects[i]
        in_time = t1 - t0 > 1 and (a1 - a0 == 1 or rng.random() < 0.5)
        if in_time:
            c = int(rng.integers(t0 + 1, t1))
            rects[i : i + 1] = [(t0, c, a0, a1), (c, t1, a0, a1)]
        else:
            c = int(rng.integers(a0 + 1, a1))
            rects[i : i + 1] = [(t0, t1, a0, c), (t0, t1, c, a1)]
    r = np.array(rects, np.int64)
    perm = rng.permutation(len(rects))  # hide the construction order
    r = r[perm]
    return OffsetInstance(
        name or f"random-offsets-{n_buffers}",
        r[:, 0],
        r[:, 1],
        (r[:, 3] - r[:, 2]) * granule,
        capacity,
        best_known=capacity,
        reference_offsets=r[:, 2] * granule,
        meta={"source": "schedgym.envs.memory.generator.random_offsets (planted, zero slack)"},
    )
