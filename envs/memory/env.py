"""``schedgym/MemoryMapping-v0`` (fast/slow tier of each buffer) and ``schedgym/MemoryOffsets-v0`` (offset of
each buffer): mallocMuZero's memory-mapping game and MiniMalloc's offline allocation problem."""

from __future__ import annotations

from typing import Any

import numpy as np
from schedgym.envs.memory import viewer
from schedgym.envs.memory.envbase import MemoryEnvBase, merge_config
from schedgym.envs.memory.io import load_minimalloc, load_offsets_csv, load_program, load_shipped_program
from schedgym.envs.memory.reward import peak_reward, saving_reward
from schedgym.envs.memory.sim import FIT_RULES, ORDERS, CostModel, MappingState, OffsetState
from schedgym.envs.memory.types import MemoryProgram, OffsetAssignment, OffsetInstance, TierMapping
from schedgym.envs.memory.validator import validate_mapping, validate_offsets

from schedgym.graph import GraphSpec

# MemoryMapping node feature columns: op nodes use 2-6, buffer nodes 7-15.
(
    M_IS_OP,
    M_IS_BUF,
    M_COMPUTE,
    M_TIME,
    M_MEMBOUND,
    M_OCCUPANCY,
    M_OP_POS,
    M_SIZE,
    M_LOWER,
    M_UPPER,
    M_BENEFIT,
    M_UNDECIDED,
    M_FAST,
    M_OFFSET,
    M_CURRENT,
    M_RANK,
) = range(16)
# MemoryOffsets node feature columns: section nodes use 2-6, buffer nodes 7-13.
(
    O_IS_SEC,
    O_IS_BUF,
    O_FLOOR,
    O_REMAINING,
    O_BOUND,
    O_WIDTH,
    O_START,
    O_SIZE,
    O_LOWER,
    O_UPPER,
    O_PLACED,
    O_OFFSET,
    O_TOP,
    O_OVER,
) = range(14)


class MemoryMappingEnv(MemoryEnvBase):
    """Put each buffer of a program in fast or slow memory to minimise its execution time (mallocGame).

    ## Description
    A program is an ordered list of ops that read and write whole buffers; a buffer lives over the op range
    ``[lower, upper)``. Buffers are visited one per step in a fixed, documented order (``order``; default
    ``"priority"``: XLA memory-space assignment's benefit / sqrt(size), descending, where the benefit is the
    time saved by that buffer alone in fast memory). The agent puts the current buffer in slow memory, or in
    fast memory at an offset: by default the offset comes from the ``fit`` rule (``"best"``: smallest free
    gap over the buffer's live range, XLA/TFLite heap style; ``"first"``: lowest gap); with
    ``offset_choice=K > 1`` the agent picks one of the K lowest gap bottoms. Fast memory holds a buffer only
    if its address x live-range rectangle overlaps no other within the capacity. Op j then takes
    ``max(compute_j, fast_bytes_j / fast_bandwidth + slow_bytes_j / slow_bandwidth)`` ns; the objective
    ``exec_time`` is the sum, recomputed by ``validate_mapping``. Prefetches and evictions are not modelled:
    a buffer stays in its memory for its whole live range; weights and inputs live from op 0.

    ## Observation
    The op-buffer graph, padded (``N = max_ops + max_buffers`` nodes: op j is node j, buffer b is node
    ``max_ops + b``; ``E = max_accesses + max_ops - 1``):

    - ``node_features`` (N, 16) float32: [is_op, is_buffer]; op nodes: compute time, current time (both /
      mean all-slow op time), memory-bound flag, fast bytes live at the op / capacity, op index / n_ops;
      buffer nodes: size / capacity, lower / n_ops, upper / n_ops, benefit / mean op time, undecided flag,
      fast flag, offset / capacity (fast buffers), is-current flag, visit rank / n_buffers.
    - ``edge_index`` (2, E) int64: buffer -> op for every access, then op j -> op j+1.
    - ``edge_features`` (E, 3) float32: one-hot [read, write, next op].
    - ``node_mask``, ``edge_mask`` (int8), ``action_mask`` (K+1,) int8, ``action_node`` (K+1,) int64: the
      current buffer's node for every action.

    ## Action
    ``Discrete(K + 1)``, ``K = offset_choice`` (default 1): action k < K puts the current buffer in fast
    memory
    at the k-th candidate offset (K = 1: the ``fit`` rule's offset; K > 1: the k-th lowest gap bottom that
    holds it), action K (``slow_action``) puts it in slow memory (always valid). Fast actions are masked when
    the buffer does not fit. A masked action is a no-op: reward ``-invalid_action_penalty``,
    ``info["invalid_action"] = True``; with ``strict=True`` it raises ``ValueError``.

    ## Reward
    The time the decision saves (ns) divided by the all-slow execution time (``reward.py``); the episode
    return is the total saving as a fraction of the all-slow time. ``info["time_saved"]`` is in ns.

    ## Episode end
    Terminated once every buffer is decided; ``info`` then holds ``exec_time`` (ns), ``all_slow_time``,
    ``all_fast_time`` (every buffer fast, capacity ignored: the upper bound) and ``speedup``. Truncated after
    ``n_buffers`` masked actions in one episode.

    ## Arguments
    - ``instance``: a ``MemoryProgram``, a shipped program name (``"gpt2-tiny"``) or a program JSON path.
    - ``dataset`` (``"memory/random-programs-40"``), ``split`` (``"train"``): the per-episode instance source
      when no instance is given (seeded by ``reset(seed=...)``).
    - ``order`` (``"priority"``, ``"size"``, ``"start"``), ``fit`` (``"best"``, ``"first"``),
      ``offset_choice`` (1).
    - ``max_ops``, ``max_buffers``, ``max_accesses``: padding (default: the instance's or dataset's largest).
    - ``strict`` (False), ``invalid_action_penalty`` (1.0), ``render_mode`` (``"ansi"``, ``"rgb_array"``).
    - ``reset(options={"instance": program})`` runs one episode on ``program``.

    ## Version history
    - v0: initial version.
    """

    objective = "exec_time"
    validator = staticmethod(validate_mapping)
    instance_type = MemoryProgram

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        instance: MemoryProgram | str | None = None,
        dataset: str = "memory/random-programs-40",
        split: str = "train",
        order: str = "priority",
        fit: str = "best",
        offset_choice: int = 1,
        max_ops: int | None = None,
        max_buffers: int | None = None,
        max_accesses: int | None = None,
        strict: bool = False,
        invalid_action_penalty: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        kw = merge_config(
            type(self).__name__,
            config,
            dict(
                instance=instance,
                dataset=dataset,
                split=split,
                order=order,
                fit=fit,
                offset_choice=offset_choice,
                max_ops=max_ops,
                max_buffers=max_buffers,
                max_accesses=max_accesses,
                strict=strict,
                invalid_action_penalty=invalid_action_penalty,
                render_mode=render_mode,
            ),
        )
        if kw["order"] not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {kw['order']!r}")
        if kw["fit"] not in FIT_RULES:
            raise ValueError(f"fit must be one of {FIT_RULES}, got {kw['fit']!r}")
        if int(kw["offset_choice"]) < 1:
            raise ValueError(f"offset_choice must be >= 1, got {kw['offset_choice']}")
        self.order, self.fit, self.k = kw["order"], kw["fit"], int(kw["offset_choice"])
        self.slow_action = self.k
        self._setup(
            kw["instance"],
            kw["dataset"],
            kw["split"],
            kw["strict"],
            kw["invalid_action_penalty"],
            kw["render_mode"],
        )
        pad = self._padding()
        self.padding = {
            k: int(kw[f"max_{k}"]) if kw[f"max_{k}"] is not None else pad[k]
            for k in ("ops", "buffers", "accesses")
        }
        p = self.padding
        n_ops, n_buf = p["ops"], p["buffers"]
        self._make_spaces(
            GraphSpec(n_ops + n_buf, p["accesses"] + max(n_ops - 1, 1), 16, 3, self.k + 1, action_node=True)
        )
        self._cands: list[int] = []

    def _resolve(self, instance: Any) -> MemoryProgram:
        if isinstance(instance, MemoryProgram):
            return instance
        if isinstance(instance, str):
            return load_program(instance) if instance.endswith(".json") else load_shipped_program(instance)
        raise TypeError(
            f"instance must be a MemoryProgram, a shipped program name or a .json path, "
            f"got {type(instance).__name__}"
        )

    def _sizes(self, inst: MemoryProgram) -> dict[str, int]:
        return {"ops": inst.n_ops, "buffers": inst.n_buffers, "accesses": inst.n_accesses}

    def _instance_of(self, state: MappingState) -> MemoryProgram:
        return state.program

    # ------------------------------------------------------------------ schedgym API
    def schedule(self) -> TierMapping:
        st = self.state
        return TierMapping(st.program.name, st.tier.copy(), st.fast.offset.copy())

    def candidates(self) -> list[int]:
        """Offsets the fast actions 0..K-1 stand for (empty: the current buffer does not fit)."""
        return list(self._cands)

    # ------------------------------------------------------------------ dynamics
    def _start(self, prog: MemoryProgram) -> None:
        cost = CostModel(prog)
        self.state = st = MappingState(prog, cost, cost.order(self.order))
        n_ops, nb, no = prog.n_ops, prog.n_buffers, self.padding["ops"]
        self.time_scale = max(cost.all_slow / n_ops, 1e-12)
        self._occupancy = np.zeros(n_ops, np.int64)
        self._saved = 0.0
        b = self._buf
        for v in b.values():
            v.fill(0)
        nf = b["node_features"]
        nf[:n_ops, M_IS_OP] = 1.0
        nf[:n_ops, M_COMPUTE] = prog.op_compute / self.time_scale
        nf[:n_ops, M_OP_POS] = np.arange(n_ops) / n_ops
        bn = no + np.arange(nb)
        cap = prog.spec.fast_capacity
        nf[bn, M_IS_BUF] = 1.0
        nf[bn, M_SIZE] = prog.buffer_size / cap
        nf[bn, M_LOWER] = prog.buffer_lower / n_ops
        nf[bn, M_UPPER] = prog.buffer_upper / n_ops
        nf[bn, M_BENEFIT] = cost.benefit / self.time_scale
        rank = np.empty(nb)
        rank[st.order] = np.arange(nb)
        nf[bn, M_RANK] = rank / nb
        b["node_mask"][:n_ops] = 1
        b["node_mask"][bn] = 1
        a = prog.n_accesses
        b["edge_index"][0, :a] = no + prog.access_buffer
        b["edge_index"][1, :a] = prog.access_op
        b["edge_features"][:a, 0] = ~prog.access_write
        b["edge_features"][:a, 1] = prog.access_write
        b["edge_index"][0, a : a + n_ops - 1] = np.arange(n_ops - 1)
        b["edge_index"][1, a : a + n_ops - 1] = np.arange(1, n_ops)
        b["edge_features"][a : a + n_ops - 1, 2] = 1.0
        b["edge_mask"][: a + n_ops - 1] = 1

    def _apply(self, a: int) -> tuple[float, dict[str, Any]]:
        st = self.state
        prog = st.program
        b = st.current
        offset = self._cands[a] if a < self.k else -1
        saved = st.decide(offset)
        if offset >= 0:
            self._occupancy[prog.buffer_lower[b] : prog.buffer_upper[b]] += prog.buffer_size[b]
        self._saved += saved
        extra: dict[str, Any] = {}
        if st.done:
            t = st.exec_time()
            extra = {
                "exec_time": t,
                "all_slow_time": st.cost.all_slow,
                "all_fast_time": st.cost.all_fast,
                "speedup": st.cost.all_slow / t if t > 0 else 1.0,
            }
        return saving_reward(saved, st.cost.all_slow), extra

    def _encode(self) -> None:
        st, b = self.state, self._buf
        prog, no = st.program, self.padding["ops"]
        nf = b["node_features"]
        n = prog.n_ops
        nf[:n, M_TIME] = st.op_time / self.time_scale
        mem = st.fast_bytes * st.cost.inv_fast + st.slow_bytes * st.cost.inv_slow
        nf[:n, M_MEMBOUND] = mem > prog.op_compute
        nf[:n, M_OCCUPANCY] = self._occupancy / prog.spec.fast_capacity
        bn = no + np.arange(prog.n_buffers)
        nf[bn, M_UNDECIDED] = st.tier < 0
        nf[bn, M_FAST] = st.tier == 1
        nf[bn, M_OFFSET] = np.where(st.tier == 1, st.fast.offset, 0) / prog.spec.fast_capacity
        nf[bn, M_CURRENT] = 0.0
        mask = b["action_mask"]
        mask.fill(0)
        cur = st.current
        if cur >= 0:
            nf[no + cur, M_CURRENT] = 1.0
            if self.k == 1:
                off = st.fast.fit(cur, self.fit)
                self._cands = [off] if off >= 0 else []
            else:
                self._cands = st.fast.candidates(cur)[: self.k]
            mask[: len(self._cands)] = 1
            mask[self.k] = 1
            b["action_node"][:] = no + cur
        else:
            self._cands = []

    def _progress(self) -> dict[str, Any]:
        return {"time_saved": self._saved}

    def _why_masked(self, a: int) -> str:
        if self.state.done:
            return "every buffer is decided"
        return f"buffer {self.state.current} does not fit fast memory at candidate {a}"

    def _invalid_limit(self) -> int:
        return self.state.program.n_buffers

    def _render_ansi(self) -> str:
        st = self.state
        return viewer.mapping_ansi(
            st.program, st.tier, st.fast.offset, st.current, float(st.op_time.sum()), st.cost.all_slow
        )

    def _render_rgb(self) -> np.ndarray:
        st = self.state
        saving = 100 * (1 - float(st.op_time.sum()) / st.cost.all_slow)
        fig = viewer.mapping_figure(
            st.program,
            st.tier,
            st.fast.offset,
            st.op_time,
            st.cost.all_slow_times,
            f"{st.program.name}: {int((st.tier == 1).sum())} buffers fast, saving {saving:.1f} %",
        )
        return viewer.rgb(fig)


class MemoryOffsetsEnv(MemoryEnvBase):
    """Give every buffer an address so that buffers live at the same time never overlap (MiniMalloc).

    ## Description
    Offline dynamic storage allocation: buffers have fixed half-open live ranges ``[lower, upper)`` and
    sizes; choose offsets so that the address x time rectangles never overlap, within ``capacity`` and with
    the lowest peak address. Each step the agent picks an unplaced buffer; it goes at its *skyline offset*,
    the highest top among the placed buffers it overlaps in time (the candidate offset the skyline gives it).
    Any feasible packing is reachable (place its buffers in increasing offset order: MiniMalloc's canonical
    solutions), so nothing is lost by the restriction. The objective ``peak`` (max offset + size) is
    recomputed by ``validate_offsets``; the packing fits iff ``peak <= capacity``.

    ## Observation
    The buffer-section graph, padded (``N = max_sections + max_buffers``: section s is node s, buffer b node
    ``max_sections + b``; a section is a time interval between consecutive live-range boundaries;
    ``E = max_cover + max_sections - 1``):

    - ``node_features`` (N, 14) float32: [is_section, is_buffer]; sections: floor (highest placed top),
      total size of the unplaced buffers there, their sum (a lower bound on the final height), all / capacity,
      width and start / time horizon; buffers: size / capacity, lower and upper / horizon, placed flag,
      offset / capacity (the skyline offset while unplaced), top / capacity, over-capacity flag.
    - ``edge_index`` (2, E) int64: buffer -> each section it covers, then section s -> s+1.
    - ``edge_features`` (E, 2) float32: one-hot [covers, next section].
    - ``node_mask``, ``edge_mask``, ``action_mask`` (max_buffers,) int8, ``action_node`` (max_buffers,) int64.

    ## Action
    ``Discrete(max_buffers)``: the buffer to place next. Placed and padding buffers are masked; with
    ``capacity_mask=True``, so are buffers whose top would pass the capacity while some other buffer still
    fits. A masked action is a no-op with reward ``-invalid_action_penalty`` (``strict=True``:
    ``ValueError``).

    ## Reward
    Minus the increase of the peak address, divided by the capacity; the return is ``-peak / capacity``.

    ## Episode end
    Terminated when every buffer is placed; ``info`` then holds ``peak``, ``fits`` and ``capacity_ratio``.
    Truncated after ``n_buffers`` masked actions in one episode.

    ## Arguments
    - ``instance``: an ``OffsetInstance``, a MiniMalloc instance name (``"A"``..``"K"``, ``"example"``) or a
      CSV
      path (``id,lower,upper,size``; ``NAME.CAPACITY.csv`` gives the capacity).
    - ``dataset`` (``"memory/random-offsets-40"``), ``split`` (``"train"``): the per-episode instance source.
    - ``capacity_mask`` (False), ``max_buffers``, ``max_sections``, ``max_cover`` (padding).
    - ``strict`` (False), ``invalid_action_penalty`` (1.0), ``render_mode`` (``"ansi"``, ``"rgb_array"``).

    ## Version history
    - v0: initial version.
    """

    objective = "peak"
    validator = staticmethod(validate_offsets)
    instance_type = OffsetInstance

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        instance: OffsetInstance | str | None = None,
        dataset: str = "memory/random-offsets-40",
        split: str = "train",
        capacity_mask: bool = False,
        max_buffers: int | None = None,
        max_sections: int | None = None,
        max_cover: int | None = None,
        strict: bool = False,
        invalid_action_penalty: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        kw = merge_config(
            type(self).__name__,
            config,
            dict(
                instance=instance,
                dataset=dataset,
                split=split,
                capacity_mask=capacity_mask,
                max_buffers=max_buffers,
                max_sections=max_sections,
                max_cover=max_cover,
                strict=strict,
                invalid_action_penalty=invalid_action_penalty,
                render_mode=render_mode,
            ),
        )
        self.capacity_mask = bool(kw["capacity_mask"])
        self._setup(
            kw["instance"],
            kw["dataset"],
            kw["split"],
            kw["strict"],
            kw["invalid_action_penalty"],
            kw["render_mode"],
        )
        pad = self._padding()
        self.padding = {
            k: int(kw[f"max_{k}"]) if kw[f"max_{k}"] is not None else pad[k]
            for k in ("buffers", "sections", "cover")
        }
        p = self.padding
        self._make_spaces(
            GraphSpec(
                p["sections"] + p["buffers"],
                p["cover"] + max(p["sections"] - 1, 1),
                14,
                2,
                p["buffers"],
                action_node=True,
            )
        )

    def _resolve(self, instance: Any) -> OffsetInstance:
        if isinstance(instance, OffsetInstance):
            return instance
        if isinstance(instance, str):
            return load_offsets_csv(instance) if instance.endswith(".csv") else load_minimalloc(instance)
        raise TypeError(
            f"instance must be an OffsetInstance, a MiniMalloc name or a .csv path, "
            f"got {type(instance).__name__}"
        )

    def _sizes(self, inst: OffsetInstance) -> dict[str, int]:
        return offsets_sizes(inst)

    def _instance_of(self, state: OffsetState) -> OffsetInstance:
        return state.instance

    def schedule(self) -> OffsetAssignment:
        return OffsetAssignment(self.state.instance.name, self.state.offset.copy())

    def _start(self, inst: OffsetInstance) -> None:
        self.state = st = OffsetState(inst)
        sec, ns, nb = st.sections, st.sections.n, inst.n_buffers
        cap = inst.capacity
        t0, t1 = int(sec.bounds[0]), int(sec.bounds[-1])
        self._horizon = h = max(t1 - t0, 1)
        b = self._buf
        for v in b.values():
            v.fill(0)
        nf = b["node_features"]
        nf[:ns, O_IS_SEC] = 1.0
        nf[:ns, O_WIDTH] = np.diff(sec.bounds) / h
        nf[:ns, O_START] = (sec.bounds[:-1] - t0) / h
        bn = self.padding["sections"] + np.arange(nb)
        nf[bn, O_IS_BUF] = 1.0
        nf[bn, O_SIZE] = inst.size / cap
        nf[bn, O_LOWER] = (inst.lower - t0) / h
        nf[bn, O_UPPER] = (inst.upper - t0) / h
        b["node_mask"][:ns] = 1
        b["node_mask"][bn] = 1
        counts = sec.last - sec.first
        src = np.repeat(bn, counts)
        dst = np.concatenate(
            [np.arange(f, e) for f, e in zip(sec.first.tolist(), sec.last.tolist(), strict=True)]
        )
        c = src.size
        b["edge_index"][0, :c], b["edge_index"][1, :c] = src, dst
        b["edge_features"][:c, 0] = 1.0
        b["edge_index"][0, c : c + ns - 1] = np.arange(ns - 1)
        b["edge_index"][1, c : c + ns - 1] = np.arange(1, ns)
        b["edge_features"][c : c + ns - 1, 1] = 1.0
        b["edge_mask"][: c + ns - 1] = 1
        b["action_node"][:] = self.padding["sections"] + np.arange(self.padding["buffers"])
        b["action_node"][nb:] = self.padding["sections"]  # padding actions point at a real node

    def _apply(self, a: int) -> tuple[float, dict[str, Any]]:
        st = self.state
        _, prev = st.place(a)
        cap = st.instance.capacity
        extra = (
            {"peak": st.peak, "fits": int(st.peak <= cap), "capacity_ratio": st.peak / cap} if st.done else {}
        )
        return peak_reward(prev, st.peak, cap), extra

    def _encode(self) -> None:
        st, b = self.state, self._buf
        inst, ns = st.instance, st.sections.n
        cap = inst.capacity
        nf = b["node_features"]
        nf[:ns, O_FLOOR] = st.floor / cap
        nf[:ns, O_REMAINING] = st.remaining / cap
        nf[:ns, O_BOUND] = (st.floor + st.remaining) / cap
        nb = inst.n_buffers
        bn = self.padding["sections"] + np.arange(nb)
        top = st.sky + inst.size
        nf[bn, O_PLACED] = st.placed
        nf[bn, O_OFFSET] = st.sky / cap
        nf[bn, O_TOP] = top / cap
        nf[bn, O_OVER] = ~st.placed & (top > cap)
        mask = b["action_mask"]
        mask.fill(0)
        valid = ~st.placed
        if self.capacity_mask:
            fitting = valid & (top <= cap)
            if fitting.any():
                valid = fitting
        mask[:nb] = valid

    def _progress(self) -> dict[str, Any]:
        return {"peak_so_far": self.state.peak}

    def _why_masked(self, a: int) -> str:
        st = self.state
        if a >= st.instance.n_buffers:
            return "padding"
        return "already placed" if st.placed[a] else "its top would pass the capacity"

    def _invalid_limit(self) -> int:
        return self.state.instance.n_buffers

    def _render_ansi(self) -> str:
        return viewer.offsets_ansi(self.state.instance, self.state.offset, self.state.peak)

    def _render_rgb(self) -> np.ndarray:
        st = self.state
        fig = viewer.offsets_figure(
            st.instance,
            st.offset,
            f"{st.instance.name}: peak {st.peak / st.instance.capacity:.3f} x capacity",
        )
        return viewer.rgb(fig)


def offsets_sizes(inst: OffsetInstance) -> dict[str, int]:
    """Padding an offset instance needs: buffers, sections, buffer-section cover edges."""
    bounds = np.unique(np.concatenate([inst.lower, inst.upper]))
    cover = int((np.searchsorted(bounds, inst.upper) - np.searchsorted(bounds, inst.lower)).sum())
    return {"buffers": inst.n_buffers, "sections": int(bounds.size - 1), "cover": cover}
