"""Extract MemoryMapping programs from PyTorch models with ``torch.export`` and write them as package data.

    python -m schedgym.envs.memory.extract [--out schedgym/data/memory/programs] [--models gpt2-tiny,...]

How a traced graph becomes a program (documented in ``schedgym/data/memory/programs/README.md``):

- Ops: the ``call_function`` nodes of the exported graph (ATen ops, default export IR) in graph order,
  except views (ops whose schema says the output aliases an input: view, transpose, split, ...; a reshape
  of a contiguous tensor) and ``getitem``, which create no memory and take no time.
- Buffers: every parameter, buffer and input the program reads (defined at program start: ``lower = 0``),
  and every tensor an op writes (size = numel x element size of its dtype; views map to the tensor they
  alias). ``upper`` = last reading op + 1, the number of ops for program outputs, definer + 1 if unread.
- Compute time = FLOPs / ``device_flops``; FLOPs from ``torch.utils.flop_counter.FlopCounterMode``
  while running the op on the model's real (random) tensors, or one FLOP per output element for ops it does
  not count (elementwise, normalisation, reductions).
- Memory spec (the reference accelerator): slow memory 1.6 TB/s (HBM), fast memory 16 TB/s (on-chip SRAM),
  fast capacity = a quarter of the program's peak live bytes (KiB multiple), device 100 TFLOP/s.

torch is imported only here (and in ``models``), never when an env is built.
"""

from __future__ import annotations

import argparse
import operator
import sys
from pathlib import Path
from typing import Any

import numpy as np

from schedgym.envs.memory.io import write_program
from schedgym.envs.memory.types import MemoryProgram, MemorySpec

DEVICE_FLOPS_PER_NS = 1.0e5  # 100 TFLOP/s
SLOW_BANDWIDTH = 1600.0  # bytes/ns = 1.6 TB/s
FAST_BANDWIDTH = 16000.0  # bytes/ns = 16 TB/s
FAST_FRACTION = 0.25
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "schedgym" / "data" / "memory" / "programs"


def _tensors(val: Any) -> list[Any]:
    """The tensors in a node's meta value, flattened (None for non-tensors kept as positions)."""
    import torch

    if isinstance(val, torch.Tensor):
        return [val]
    if isinstance(val, (list, tuple)):
        return [v if isinstance(v, torch.Tensor) else None for v in val]
    return []


def _aliases_input(node: Any) -> bool:
    """True if the op's outputs alias its first tensor input (views; reshape of a contiguous tensor)."""
    schema = getattr(node.target, "_schema", None)
    if schema is None or not schema.returns:
        return False
    if not all(r.alias_info is not None for r in schema.returns):
        return False
    if "reshape" in schema.name:
        src = node.args[0].meta.get("val")
        return bool(src is not None and src.is_contiguous())
    return True


def extract_program(
    model: Any,
    example: tuple[Any, ...],
    name: str,
    *,
    device_flops: float = DEVICE_FLOPS_PER_NS,
    slow_bandwidth: float = SLOW_BANDWIDTH,
    fast_bandwidth: float = FAST_BANDWIDTH,
    fast_fraction: float = FAST_FRACTION,
    meta: dict[str, Any] | None = None,
) -> MemoryProgram:
    """Trace ``model(*example)`` with torch.export and build its program (see the module docstring)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    with torch.no_grad():
        ep = torch.export.export(model, example)
    gm = ep.graph_module
    sig = ep.graph_signature
    input_names = {s.arg.name: (s.target or s.arg.name) for s in sig.input_specs}
    kinds = {s.arg.name: s.kind.name.lower() for s in sig.input_specs}
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}

    buf_of: dict[str, Any] = {}  # node name -> buffer id, or list of buffer ids for multi-output ops
    buffers: list[dict[str, Any]] = []
    values: dict[str, Any] = {}  # node name -> real value, for FLOP counting
    ops: list[dict[str, Any]] = []

    def new_buffer(label: str, t: Any, kind: str, lower: int) -> int:
        buffers.append(
            {
                "name": label,
                "size": int(t.numel() * t.element_size()),
                "lower": lower,
                "last": lower,
                "shape": list(t.shape),
                "dtype": str(t.dtype).replace("torch.", ""),
                "kind": kind,
            }
        )
        return len(buffers) - 1

    user_inputs = iter(example)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            kind = kinds.get(node.name)
            if kind in ("parameter", "buffer"):
                val = state[input_names[node.name]].detach()
            elif kind == "constant_tensor":
                val = ep.constants[input_names[node.name]]
            else:
                val = next(user_inputs)
            values[node.name] = val
            if isinstance(val, torch.Tensor):
                buf_of[node.name] = new_buffer(input_names[node.name], val, kinds.get(node.name, "input"), 0)
            continue
        if node.op == "output":
            break
        args = torch.fx.node.map_arg(node.args, lambda n: values[n.name])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: values[n.name])
        if node.target is operator.getitem:
            values[node.name] = node.target(*args)
            src = buf_of.get(node.args[0].name)
            buf_of[node.name] = src[node.args[1]] if isinstance(src, list) else src
            continue
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            out = node.target(*args, **kwargs)
        values[node.name] = out
        reads = sorted(
            {buf_of[a.name] for a in node.all_input_nodes if isinstance(buf_of.get(a.name), int)}
            | {
                b
                for a in node.all_input_nodes
                if isinstance(buf_of.get(a.name), list)
                for b in buf_of[a.name]
                if b is not None
            }
        )
        if _aliases_input(node):
            src = buf_of[node.args[0].name]
            outs = _tensors(out)
            buf_of[node.name] = [src] * len(outs) if isinstance(out, (list, tuple)) else src
            continue
        j = len(ops)
        outs = _tensors(out)
        if not any(t is not None for t in outs):
            buf_of[node.name] = None  # no tensor written (asserts, symbolic sizes): not a memory op
            continue
        ids = [
            new_buffer(f"{node.name}" + (f".{i}" if len(outs) > 1 else ""), t, "activation", j)
            if t is not None
            else None
            for i, t in enumerate(outs)
        ]
        buf_of[node.name] = ids if isinstance(out, (list, tuple)) else ids[0]
        for b in reads:
            buffers[b]["last"] = max(buffers[b]["last"], j)
        counted = int(fc.get_total_flops())
        elems = sum(int(t.numel()) for t in outs if t is not None)
        flops = counted if counted > 0 else elems
        ops.append(
            {
                "name": node.name,
                "target": str(node.target),
                "flops": flops,
                "reads": reads,
                "writes": [b for b in ids if b is not None],
            }
        )
    n_ops = len(ops)
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    for a in out_node.all_input_nodes:
        ids = buf_of.get(a.name)
        for b in ids if isinstance(ids, list) else [ids]:
            if b is not None:
                buffers[b]["last"] = n_ops - 1
                buffers[b]["kind"] = "output"
    used = sorted({b for o in ops for b in o["reads"] + o["writes"]})
    renum = {b: i for i, b in enumerate(used)}  # drop inputs no op touches (e.g. unused parameters)
    size = np.array([buffers[b]["size"] for b in used], np.int64)
    lower = np.array([buffers[b]["lower"] for b in used], np.int64)
    upper = np.array([buffers[b]["last"] for b in used], np.int64) + 1
    aop, abuf, aw = [], [], []
    for j, o in enumerate(ops):
        for b in o["reads"]:
            aop.append(j)
            abuf.append(renum[b])
            aw.append(False)
        for b in o["writes"]:
            aop.append(j)
            abuf.append(renum[b])
            aw.append(True)
    live = np.zeros(n_ops + 1, np.int64)
    np.add.at(live, lower, size)
    np.add.at(live, upper, -size)
    peak = int(np.cumsum(live).max())
    spec = MemorySpec(max(1024, int(fast_fraction * peak) // 1024 * 1024), fast_bandwidth, slow_bandwidth)
    info = {
        "torch": torch.__version__,
        "device_flops_per_ns": device_flops,
        "peak_live_bytes": peak,
        "fast_fraction": fast_fraction,
        **(meta or {}),
        "buffer_extra": [{k: buffers[b][k] for k in ("shape", "dtype", "kind")} for b in used],
        "op_extra": [{"target": o["target"], "flops": o["flops"]} for o in ops],
    }
    return MemoryProgram(
        name,
        spec,
        np.array([o["flops"] / device_flops for o in ops]),
        size,
        lower,
        upper,
        np.array(aop, np.int64),
        np.array(abuf, np.int64),
        np.array(aw, bool),
        tuple(buffers[b]["name"] for b in used),
        tuple(o["name"] for o in ops),
        meta=info,
    )


def extract_named(name: str) -> MemoryProgram:
    """Build the named model with seed 0 and extract its program."""
    import torch

    from schedgym.envs.memory.models import MODELS

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    spec = MODELS[name]
    torch.manual_seed(0)
    model = spec.build()
    return extract_program(
        model,
        spec.example(),
        name,
        meta={
            "model": spec.description,
            "source": "schedgym.envs.memory.models (random weights, "
            "seed 0), traced with torch.export; schedgym.envs.memory.extract",
        },
    )


def main(argv: list[str] | None = None) -> int:
    import torch

    from schedgym.envs.memory.models import MODELS

    p = argparse.ArgumentParser(
        description="Extract MemoryMapping programs from the project's PyTorch models."
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.models.split(","):
        prog = extract_named(name)
        path = write_program(prog, args.out / f"{name}.json")
        print(
            f"{name}: {prog.n_ops} ops, {prog.n_buffers} buffers, fast capacity {prog.spec.fast_capacity} B "
            f"-> {path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
