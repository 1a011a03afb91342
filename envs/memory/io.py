"""Memory instance files and the shipped data.

Offset instances: CSV with the header ``id,lower,upper,size`` (MiniMalloc's format; an extra ``offset``
column, as in MiniMalloc's solutions, is read as a reference solution). The capacity comes from the file name
``NAME.CAPACITY.csv`` (MiniMalloc's convention), from the ``capacity`` argument, or defaults to the peak live
size (the lower bound: a packing that fits has zero slack).

Programs: JSON, ``{"format": "schedgym-memory-program/1", "name", "spec": {fast_capacity, fast_bandwidth,
slow_bandwidth}, "buffers": [{"name", "size", "lower", "upper", ...}], "ops": [{"name", "compute", "reads":
[buffer names], "writes": [buffer names], ...}], "meta": {...}}``. Sizes in bytes, compute in ns,
bandwidths in bytes/ns. Extra keys of a buffer or op (shape, dtype, kind, target, flops) are kept in
``program.meta``.

Every error names the file, the row (CSV line or JSON path) and the field.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from schedgym.envs.memory.types import MemoryProgram, MemorySpec, OffsetInstance

PROGRAM_FORMAT = "schedgym-memory-program/1"
CSV_FIELDS = ("id", "lower", "upper", "size")
_DATA = "schedgym.data"
MINIMALLOC_NAMES = tuple("ABCDEFGHIJK")
MINIMALLOC_CAPACITY = 1 << 20


class InstanceFormatError(ValueError):
    """A memory instance file is malformed; the message names the row and field."""


# ---------------------------------------------------------------------------------------------- CSV
def parse_offsets_csv(text: str, name: str = "instance", capacity: int | None = None) -> OffsetInstance:
    """Parse ``id,lower,upper,size[,offset]`` rows; errors name ``name:line`` and the field."""
    rows = list(csv.reader(io.StringIO(text)))
    numbered = [(i + 1, r) for i, r in enumerate(rows) if r and any(c.strip() for c in r)]
    if not numbered:
        raise InstanceFormatError(f"{name}: empty file; expected a header 'id,lower,upper,size'")
    line, header = numbered[0]
    header = [h.strip() for h in header]
    if tuple(header[:4]) != CSV_FIELDS or header[4:] not in ([], ["offset"]):
        raise InstanceFormatError(
            f"{name}:{line}: header must be 'id,lower,upper,size' (optionally ',offset'), "
            f"got {','.join(header)!r}"
        )
    with_offset = len(header) == 5
    ids: list[str] = []
    seen: dict[str, int] = {}
    vals: list[list[int]] = []
    for line, row in numbered[1:]:
        if len(row) != len(header):
            raise InstanceFormatError(
                f"{name}:{line}: expected {len(header)} fields ({','.join(header)}), got {len(row)}"
            )
        bid = row[0].strip()
        if not bid:
            raise InstanceFormatError(f"{name}:{line}: field 'id' is empty")
        if bid in seen:
            raise InstanceFormatError(f"{name}:{line}: buffer id {bid!r} already used on line {seen[bid]}")
        seen[bid] = line
        nums = [_int(row[k], name, line, header[k]) for k in range(1, len(header))]
        lo, up, sz = nums[:3]
        if sz < 1:
            raise InstanceFormatError(
                f"{name}:{line}: buffer {bid!r}: field 'size' must be a positive integer, got {sz}"
            )
        if lo < 0:
            raise InstanceFormatError(f"{name}:{line}: buffer {bid!r}: field 'lower' must be >= 0, got {lo}")
        if up <= lo:
            what = "empty" if up == lo else "reversed"
            raise InstanceFormatError(
                f"{name}:{line}: buffer {bid!r}: live range [lower={lo}, upper={up}) is {what}; "
                f"expected lower < upper"
            )
        if with_offset and nums[3] < 0:
            raise InstanceFormatError(
                f"{name}:{line}: buffer {bid!r}: field 'offset' must be >= 0, got {nums[3]}"
            )
        ids.append(bid)
        vals.append(nums)
    if not vals:
        raise InstanceFormatError(f"{name}: no buffer rows after the header")
    a = np.array(vals, np.int64)
    ref = a[:, 3] if with_offset else None
    inst = OffsetInstance(name, a[:, 0], a[:, 1], a[:, 2], 1, ids=tuple(ids), reference_offsets=ref)
    cap = inst.peak_live() if capacity is None else capacity
    best = int((a[:, 3] + a[:, 2]).max()) if with_offset else None
    meta = {"capacity_source": "argument" if capacity is not None else "peak live size (lower bound)"}
    return OffsetInstance(
        name,
        inst.lower,
        inst.upper,
        inst.size,
        cap,
        ids=inst.ids,
        best_known=best,
        reference_offsets=ref,
        meta=meta,
    )


def load_offsets_csv(path: str | Path, capacity: int | None = None) -> OffsetInstance:
    """Read an offset instance; ``NAME.CAPACITY.csv`` file names give the capacity unless one is passed."""
    p = Path(path)
    m = re.fullmatch(r"(?P<stem>.+)\.(?P<cap>\d+)\.csv", p.name)
    name = m["stem"] if m else p.stem
    if capacity is None and m:
        capacity = int(m["cap"])
    inst = parse_offsets_csv(p.read_text(), name, capacity)
    if m and capacity == int(m["cap"]):
        inst.meta["capacity_source"] = "file name"
    return inst


def format_offsets_csv(instance: OffsetInstance, offsets: np.ndarray | None = None) -> str:
    """CSV text of ``instance`` (with an offset column when ``offsets`` is given)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_FIELDS + (("offset",) if offsets is not None else ()))
    for i, bid in enumerate(instance.ids):
        row = [bid, int(instance.lower[i]), int(instance.upper[i]), int(instance.size[i])]
        w.writerow(row + ([int(offsets[i])] if offsets is not None else []))
    return out.getvalue()


def _int(tok: str, name: str, line: int, field: str) -> int:
    try:
        return int(tok.strip())
    except ValueError:
        raise InstanceFormatError(f"{name}:{line}: field {field!r} must be an integer, got {tok!r}") from None


# ---------------------------------------------------------------------------------------------- JSON programs
def program_from_dict(d: Any, name: str = "program") -> MemoryProgram:
    """Build a program from its JSON object; errors name the JSON path (``ops[3].reads[1]``)."""
    if not isinstance(d, dict):
        raise InstanceFormatError(f"{name}: expected a JSON object at the top level, got {type(d).__name__}")
    if d.get("format") != PROGRAM_FORMAT:
        raise InstanceFormatError(
            f"{name}: field 'format' must be {PROGRAM_FORMAT!r}, got {d.get('format')!r}"
        )
    pname = d.get("name", name)
    if not isinstance(pname, str) or not pname:
        raise InstanceFormatError(f"{name}: field 'name' must be a non-empty string, got {pname!r}")
    spec_d = _get(d, "spec", dict, name)
    try:
        spec = MemorySpec(
            *(
                _get(spec_d, k, (int, float), f"{name}: spec")
                for k in ("fast_capacity", "fast_bandwidth", "slow_bandwidth")
            )
        )
    except ValueError as e:
        raise InstanceFormatError(f"{name}: spec: {e}") from None
    buffers = _get(d, "buffers", list, name)
    ops = _get(d, "ops", list, name)
    if not buffers or not ops:
        raise InstanceFormatError(f"{name}: a program needs at least one buffer and one op")
    index: dict[str, int] = {}
    size, lower, upper, bnames, bextra = [], [], [], [], []
    for i, b in enumerate(buffers):
        where = f"{name}: buffers[{i}]"
        if not isinstance(b, dict):
            raise InstanceFormatError(f"{where}: expected an object, got {type(b).__name__}")
        bn = _get(b, "name", str, where)
        if bn in index:
            raise InstanceFormatError(f"{where}.name: buffer {bn!r} already defined at buffers[{index[bn]}]")
        index[bn] = i
        sz, lo, up = (_get(b, k, int, where) for k in ("size", "lower", "upper"))
        if sz < 1:
            raise InstanceFormatError(f"{where}.size: buffer {bn!r}: expected a positive integer, got {sz}")
        if lo < 0:
            raise InstanceFormatError(f"{where}.lower: buffer {bn!r}: expected >= 0, got {lo}")
        if up <= lo:
            raise InstanceFormatError(
                f"{where}: buffer {bn!r}: live range [lower={lo}, upper={up}) is "
                f"{'empty' if up == lo else 'reversed'}; expected lower < upper"
            )
        if up > len(ops):
            raise InstanceFormatError(
                f"{where}.upper: buffer {bn!r}: {up} is past the last op (n_ops = {len(ops)})"
            )
        size.append(sz)
        lower.append(lo)
        upper.append(up)
        bnames.append(bn)
        bextra.append({k: v for k, v in b.items() if k not in ("name", "size", "lower", "upper")})
    compute, onames, oextra = [], [], []
    aop, abuf, aw = [], [], []
    for j, o in enumerate(ops):
        where = f"{name}: ops[{j}]"
        if not isinstance(o, dict):
            raise InstanceFormatError(f"{where}: expected an object, got {type(o).__name__}")
        onames.append(_get(o, "name", str, where))
        c = float(_get(o, "compute", (int, float), where))
        if not math.isfinite(c) or c < 0:
            raise InstanceFormatError(f"{where}.compute: expected a finite time >= 0 (ns), got {c}")
        compute.append(c)
        for kind, write in (("reads", False), ("writes", True)):
            lst = _get(o, kind, list, where)
            seen: set[str] = set()
            for k, bn in enumerate(lst):
                if not isinstance(bn, str) or bn not in index:
                    raise InstanceFormatError(f"{where}.{kind}[{k}]: unknown buffer {bn!r}")
                if bn in seen:
                    raise InstanceFormatError(f"{where}.{kind}[{k}]: buffer {bn!r} listed twice")
                seen.add(bn)
                bi = index[bn]
                if not lower[bi] <= j < upper[bi]:
                    raise InstanceFormatError(
                        f"{where}.{kind}[{k}]: op {j} uses buffer {bn!r} outside its live range "
                        f"[{lower[bi]}, {upper[bi]})"
                    )
                aop.append(j)
                abuf.append(bi)
                aw.append(write)
        oextra.append({k: v for k, v in o.items() if k not in ("name", "compute", "reads", "writes")})
    meta = dict(_get(d, "meta", dict, name)) if "meta" in d else {}
    meta["buffer_extra"] = bextra
    meta["op_extra"] = oextra
    best = d.get("best_known")
    return MemoryProgram(
        pname,
        spec,
        np.array(compute),
        np.array(size, np.int64),
        np.array(lower, np.int64),
        np.array(upper, np.int64),
        np.array(aop, np.int64),
        np.array(abuf, np.int64),
        np.array(aw, bool),
        tuple(bnames),
        tuple(onames),
        best_known=None if best is None else float(best),
        meta=meta,
    )


def program_to_dict(program: MemoryProgram) -> dict[str, Any]:
    """The JSON object of ``program`` (round-trips through ``program_from_dict``)."""
    bextra = program.meta.get("buffer_extra") or [{} for _ in range(program.n_buffers)]
    oextra = program.meta.get("op_extra") or [{} for _ in range(program.n_ops)]
    reads: list[list[str]] = [[] for _ in range(program.n_ops)]
    writes: list[list[str]] = [[] for _ in range(program.n_ops)]
    for j, b, w in zip(
        program.access_op.tolist(), program.access_buffer.tolist(), program.access_write.tolist(), strict=True
    ):
        (writes if w else reads)[j].append(program.buffer_names[b])
    meta = {k: v for k, v in program.meta.items() if k not in ("buffer_extra", "op_extra")}
    return {
        "format": PROGRAM_FORMAT,
        "name": program.name,
        "spec": program.spec.to_json(),
        "meta": meta,
        "buffers": [
            {"name": n, "size": int(s), "lower": int(lo), "upper": int(up), **x}
            for n, s, lo, up, x in zip(
                program.buffer_names,
                program.buffer_size,
                program.buffer_lower,
                program.buffer_upper,
                bextra,
                strict=True,
            )
        ],
        "ops": [
            {"name": n, "compute": float(c), "reads": r, "writes": w, **x}
            for n, c, r, w, x in zip(program.op_names, program.op_compute, reads, writes, oextra, strict=True)
        ],
    }


def parse_program(text: str, name: str = "program") -> MemoryProgram:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise InstanceFormatError(
            f"{name}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    return program_from_dict(d, name)


def load_program(path: str | Path) -> MemoryProgram:
    """Read a program JSON file."""
    p = Path(path)
    return parse_program(p.read_text(), p.name)


def write_program(program: MemoryProgram, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(program_to_dict(program), indent=None, separators=(",", ":")) + "\n")
    return p


def _get(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise InstanceFormatError(f"{where}: missing field {key!r}")
    v = d[key]
    ok = isinstance(v, typ) and not isinstance(v, bool)
    if not ok:
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise InstanceFormatError(f"{where}.{key}: expected {want}, got {v!r}")
    return v


# ---------------------------------------------------------------------------------------------- shipped data
def load_minimalloc(name: str) -> OffsetInstance:
    """One of MiniMalloc's 11 challenging instances ('A'..'K') with its reference solution, or 'example'
    (the README's 5-buffer example at capacity 12)."""
    root = resources.files(_DATA).joinpath("memory/minimalloc")
    if name == "example":
        inst = parse_offsets_csv(root.joinpath("examples/input.12.csv").read_text(), "example", 12)
        return OffsetInstance(
            "example",
            inst.lower,
            inst.upper,
            inst.size,
            12,
            ids=inst.ids,
            best_known=12,
            meta={"source": "google/minimalloc benchmarks/examples/input.12.csv"},
        )
    if name not in MINIMALLOC_NAMES:
        raise ValueError(
            f"unknown MiniMalloc instance {name!r}; expected one of {list(MINIMALLOC_NAMES)} or 'example'"
        )
    fn = f"{name}.{MINIMALLOC_CAPACITY}.csv"
    inst = parse_offsets_csv(root.joinpath(f"challenging/{fn}").read_text(), name, MINIMALLOC_CAPACITY)
    sol = parse_offsets_csv(
        root.joinpath(f"solutions_minimalloc/{fn}").read_text(), name, MINIMALLOC_CAPACITY
    )
    if sol.ids != inst.ids or not (
        np.array_equal(sol.size, inst.size)
        and np.array_equal(sol.lower, inst.lower)
        and np.array_equal(sol.upper, inst.upper)
    ):
        raise InstanceFormatError(f"{fn}: the reference solution's rows differ from the instance's")
    return OffsetInstance(
        name,
        inst.lower,
        inst.upper,
        inst.size,
        MINIMALLOC_CAPACITY,
        ids=inst.ids,
        best_known=sol.best_known,
        reference_offsets=sol.reference_offsets,
        meta={
            "source": f"google/minimalloc benchmarks (challenging/{fn}); reference solution "
            f"by the MiniMalloc CLI"
        },
    )


@cache
def program_names() -> tuple[str, ...]:
    """Names of the shipped real programs (``schedgym/data/memory/programs/*.json``)."""
    root = resources.files(_DATA).joinpath("memory/programs")
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json")))


def load_shipped_program(name: str) -> MemoryProgram:
    """A shipped real program by name (e.g. 'gpt2-tiny')."""
    if name not in program_names():
        raise ValueError(f"unknown program {name!r}; expected one of {list(program_names())}")
    text = resources.files(_DATA).joinpath(f"memory/programs/{name}.json").read_text()
    return parse_program(text, f"{name}.json")
