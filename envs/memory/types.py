"""Memory-mapping data: programs (ops, buffers, accesses), offset-allocation instances, and their solutions.

Conventions shared by every file of this domain:

- A buffer's live range is the half-open interval ``[lower, upper)``. In a program the unit is the op index
  (buffer defined by op ``i`` and last used by op ``k`` lives over ``[i, k + 1)``; program inputs and
  weights are defined at program start, ``lower = 0``). In an offset instance the unit is whatever the file
  uses (MiniMalloc: abstract time up to 2^20).
- Two buffers conflict iff ``a.lower < b.upper and b.lower < a.upper``; conflicting buffers in the same
  memory must not overlap in address: ``[offset, offset + size)`` disjoint.
- Times are nanoseconds, sizes bytes, bandwidths bytes per nanosecond (= GB/s).

Every constructor checks its arrays and raises ``ValueError`` naming the buffer/op/access row and field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _ints(name: str, field_: str, values: Any, n: int | None = None) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        want = f"({n},)" if n is not None else "1-D"
        raise ValueError(f"{name}: {field_} must have shape {want}, got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name}: {field_} must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def check_live_ranges(
    name: str,
    ids: tuple[str, ...],
    lower: np.ndarray,
    upper: np.ndarray,
    size: np.ndarray,
    horizon: int | None = None,
) -> None:
    """Sizes >= 1 and non-empty, non-reversed live ranges; the error names the first bad buffer."""
    bad = np.flatnonzero(size < 1)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}: buffer {i} ({ids[i]!r}): size must be a positive integer, got {int(size[i])}"
        )
    bad = np.flatnonzero(lower < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}: buffer {i} ({ids[i]!r}): lower must be >= 0, got {int(lower[i])}")
    bad = np.flatnonzero(upper <= lower)
    if bad.size:
        i = int(bad[0])
        what = "empty" if upper[i] == lower[i] else "reversed"
        raise ValueError(
            f"{name}: buffer {i} ({ids[i]!r}): live range [lower={int(lower[i])}, upper={int(upper[i])}) "
            f"is {what}; expected lower < upper"
        )
    if horizon is not None:
        bad = np.flatnonzero(upper > horizon)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{name}: buffer {i} ({ids[i]!r}): upper={int(upper[i])} is past the last op "
                f"(expected <= n_ops = {horizon})"
            )


@dataclass(frozen=True)
class MemorySpec:
    """A two-level memory: small fast memory (capacity, bandwidth) and large slow memory (bandwidth)."""

    fast_capacity: int  # bytes
    fast_bandwidth: float  # bytes/ns (= GB/s)
    slow_bandwidth: float  # bytes/ns (= GB/s)

    def __post_init__(self) -> None:
        if (
            isinstance(self.fast_capacity, bool)
            or int(self.fast_capacity) != self.fast_capacity
            or self.fast_capacity < 1
        ):
            raise ValueError(
                f"MemorySpec.fast_capacity must be a positive integer (bytes), got {self.fast_capacity!r}"
            )
        object.__setattr__(self, "fast_capacity", int(self.fast_capacity))
        for f in ("fast_bandwidth", "slow_bandwidth"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"MemorySpec.{f} must be a finite number > 0 (bytes/ns), got {v!r}")
            object.__setattr__(self, f, float(v))

    def to_json(self) -> dict[str, Any]:
        return {
            "fast_capacity": self.fast_capacity,
            "fast_bandwidth": self.fast_bandwidth,
            "slow_bandwidth": self.slow_bandwidth,
        }


@dataclass(frozen=True, eq=False)
class MemoryProgram:
    """An ordered list of ops; each op has a compute time and reads/writes whole buffers.

    op_compute:     (n_ops,) float64 — compute time of each op (ns), >= 0
    buffer_size:    (B,) int64 — bytes, >= 1
    buffer_lower:   (B,) int64 — live range start (op index of the definition; 0 for program inputs)
    buffer_upper:   (B,) int64 — live range end, exclusive (last use + 1), <= n_ops
    access_op:      (A,) int64 — op of each access
    access_buffer:  (A,) int64 — buffer of each access
    access_write:   (A,) bool — True for a write (output), False for a read (operand)
    Every access lies inside its buffer's live range; an (op, buffer, kind) triple appears at most once.
    Each access moves the whole buffer (``size`` bytes) to or from the memory the buffer lives in.
    """

    name: str
    spec: MemorySpec
    op_compute: np.ndarray
    buffer_size: np.ndarray
    buffer_lower: np.ndarray
    buffer_upper: np.ndarray
    access_op: np.ndarray
    access_buffer: np.ndarray
    access_write: np.ndarray
    buffer_names: tuple[str, ...] = ()
    op_names: tuple[str, ...] = ()
    best_known: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.name
        if not isinstance(self.spec, MemorySpec):
            raise ValueError(f"{n}: spec must be a MemorySpec, got {type(self.spec).__name__}")
        comp = np.asarray(self.op_compute, dtype=np.float64)
        if comp.ndim != 1 or comp.size < 1:
            raise ValueError(
                f"{n}: op_compute must be a non-empty 1-D array (compute time per op), got {comp.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(comp) | (comp < 0))
        if bad.size:
            raise ValueError(
                f"{n}: op {int(bad[0])}: compute time must be finite and >= 0 ns, got {comp[bad[0]]}"
            )
        n_ops = comp.size
        size = _ints(n, "buffer_size", self.buffer_size)
        b = size.size
        if b < 1:
            raise ValueError(f"{n}: a program needs at least one buffer")
        lower = _ints(n, "buffer_lower", self.buffer_lower, b)
        upper = _ints(n, "buffer_upper", self.buffer_upper, b)
        names = tuple(self.buffer_names) or tuple(f"b{i}" for i in range(b))
        op_names = tuple(self.op_names) or tuple(f"op{i}" for i in range(n_ops))
        if len(names) != b:
            raise ValueError(f"{n}: buffer_names has {len(names)} entries for {b} buffers")
        if len(op_names) != n_ops:
            raise ValueError(f"{n}: op_names has {len(op_names)} entries for {n_ops} ops")
        check_live_ranges(n, names, lower, upper, size, horizon=n_ops)
        aop = _ints(n, "access_op", self.access_op)
        abuf = _ints(n, "access_buffer", self.access_buffer, aop.size)
        aw = np.asarray(self.access_write)
        if aw.shape != aop.shape or (aw.size and aw.dtype != np.bool_ and not np.isin(aw, (0, 1)).all()):
            raise ValueError(f"{n}: access_write must be a ({aop.size},) bool array")
        aw = aw.astype(bool)
        for arr, hi, what in ((aop, n_ops, "op"), (abuf, b, "buffer")):
            bad = np.flatnonzero((arr < 0) | (arr >= hi))
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"{n}: access {i}: unknown {what} {int(arr[i])} (expected 0..{hi - 1})")
        outside = np.flatnonzero((aop < lower[abuf]) | (aop >= upper[abuf]))
        if outside.size:
            i = int(outside[0])
            bi = int(abuf[i])
            raise ValueError(
                f"{n}: access {i}: op {int(aop[i])} ({op_names[aop[i]]}) "
                f"{'writes' if aw[i] else 'reads'} buffer {bi} ({names[bi]!r}) outside its live range "
                f"[{int(lower[bi])}, {int(upper[bi])})"
            )
        key = (aop * b + abuf) * 2 + aw
        uniq, counts = np.unique(key, return_counts=True)
        if (counts > 1).any():
            k = int(uniq[np.argmax(counts > 1)])
            raise ValueError(
                f"{n}: op {k // 2 // b} {'writes' if k % 2 else 'reads'} buffer {(k // 2) % b} "
                f"more than once; list each (op, buffer, kind) once"
            )
        for attr, val in (
            ("op_compute", comp),
            ("buffer_size", size),
            ("buffer_lower", lower),
            ("buffer_upper", upper),
            ("access_op", aop),
            ("access_buffer", abuf),
            ("access_write", aw),
        ):
            object.__setattr__(self, attr, _frozen(val))
        object.__setattr__(self, "buffer_names", names)
        object.__setattr__(self, "op_names", op_names)

    @property
    def n_ops(self) -> int:
        return int(self.op_compute.size)

    @property
    def n_buffers(self) -> int:
        return int(self.buffer_size.size)

    @property
    def n_accesses(self) -> int:
        return int(self.access_op.size)

    def __repr__(self) -> str:
        return f"MemoryProgram({self.name!r}, {self.n_ops} ops, {self.n_buffers} buffers)"


@dataclass(frozen=True, eq=False)
class OffsetInstance:
    """Offline dynamic storage allocation (MiniMalloc's problem): give every buffer an offset.

    lower, upper: (B,) int64 — half-open live range [lower, upper)
    size:         (B,) int64 — bytes, >= 1
    capacity:     the memory size to fit in (offset + size <= capacity)
    best_known:   the lowest known peak address (e.g. MiniMalloc's solution), or None
    reference_offsets: (B,) int64 offsets of a known solution, or None
    """

    name: str
    lower: np.ndarray
    upper: np.ndarray
    size: np.ndarray
    capacity: int
    ids: tuple[str, ...] = ()
    best_known: int | None = None
    reference_offsets: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.name
        size = _ints(n, "size", self.size)
        b = size.size
        if b < 1:
            raise ValueError(f"{n}: an offset instance needs at least one buffer")
        lower = _ints(n, "lower", self.lower, b)
        upper = _ints(n, "upper", self.upper, b)
        ids = tuple(str(i) for i in self.ids) or tuple(str(i) for i in range(b))
        if len(ids) != b:
            raise ValueError(f"{n}: ids has {len(ids)} entries for {b} buffers")
        if len(set(ids)) != b:
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"{n}: buffer id {dup!r} appears more than once")
        check_live_ranges(n, ids, lower, upper, size)
        if isinstance(self.capacity, bool) or int(self.capacity) != self.capacity or self.capacity < 1:
            raise ValueError(f"{n}: capacity must be a positive integer, got {self.capacity!r}")
        for attr, val in (("lower", lower), ("upper", upper), ("size", size)):
            object.__setattr__(self, attr, _frozen(val))
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "capacity", int(self.capacity))
        if self.reference_offsets is not None:
            object.__setattr__(
                self, "reference_offsets", _frozen(_ints(n, "reference_offsets", self.reference_offsets, b))
            )

    @property
    def n_buffers(self) -> int:
        return int(self.size.size)

    def peak_live(self) -> int:
        """Largest total size of buffers live at one time: a lower bound on any packing's peak."""
        t = np.concatenate([self.lower, self.upper])
        d = np.concatenate([self.size, -self.size])
        order = np.lexsort((d, t))  # at equal times, ends (negative) before starts: half-open ranges
        return int(np.cumsum(d[order]).max())

    def __repr__(self) -> str:
        return f"OffsetInstance({self.name!r}, {self.n_buffers} buffers, capacity {self.capacity})"


@dataclass(frozen=True, eq=False)
class TierMapping:
    """A MemoryMapping solution: tier (B,) int8 (0 = slow, 1 = fast, -1 = undecided), offset (B,) int64
    (fast-memory offset in bytes; -1 for buffers not in fast memory)."""

    instance_name: str
    tier: np.ndarray
    offset: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance_name, "tier": self.tier.tolist(), "offset": self.offset.tolist()}


@dataclass(frozen=True, eq=False)
class OffsetAssignment:
    """A MemoryOffsets solution: offsets (B,) int64, -1 for buffers not placed yet."""

    instance_name: str
    offsets: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance_name, "offsets": self.offsets.tolist()}
