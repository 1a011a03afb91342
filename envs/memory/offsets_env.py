"""``schedgym/MemoryOffsets-v0``: the offset of each buffer within a capacity (MiniMalloc's problem)."""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.memory import viewer
from schedgym.envs.memory.envbase import MemoryEnvBase
from schedgym.envs.memory.io import load_minimalloc, load_offsets_csv
from schedgym.envs.memory.reward import peak_reward
from schedgym.envs.memory.sim import OffsetState, OrderedOffsetState
from schedgym.envs.memory.types import OffsetAssignment, OffsetInstance
from schedgym.envs.memory.validator import validate_offsets
from schedgym.graph import GraphSpec

# Node feature columns: section nodes use 2-6, buffer nodes 7-14.
(O_IS_SEC, O_IS_BUF, O_FLOOR, O_REMAINING, O_BOUND, O_WIDTH, O_START, O_SIZE, O_LOWER, O_UPPER, O_PLACED,
 O_OFFSET, O_TOP, O_OVER, O_CURRENT) = range(15)  # fmt: skip
ACTION_MODES = ("buffer", "offset")
OFFSET_ORDERS = ("size", "start")


class MemoryOffsetsEnv(MemoryEnvBase):
    """Give every buffer an address so that buffers live at the same time never overlap (MiniMalloc).

    ## Description
    Offline dynamic storage allocation: buffers have fixed half-open live ranges ``[lower, upper)`` and
    sizes; choose offsets so that the address x time rectangles never overlap, within ``capacity`` and with
    the lowest peak address. The objective ``peak`` (max offset + size) is recomputed by
    ``validate_offsets``; the packing fits iff ``peak <= capacity``. Two action modes:

    - ``"buffer"`` (default, MiniMalloc's canonical search): each step the agent picks an unplaced buffer; it
      goes at its *skyline offset*, the highest top among the placed buffers it overlaps in time. Any
      feasible packing is reachable (place its buffers in increasing offset order), so nothing is lost.
    - ``"offset"`` (mallocMuZero style): buffers come in a fixed order (``order``: ``"size"`` descending, ties
      by start, TFLite's; or ``"start"``); the agent picks the current buffer's offset among its candidates,
      the bottoms of the free gaps over its live range that hold it, lowest first (at most
      ``max_candidates``: the lowest ones and the gap above everything, which always qualifies).

    ## Observation
    The buffer-section graph, padded (``N = max_sections + max_buffers``: section s is node s, buffer b node
    ``max_sections + b``; a section is a time interval between consecutive live-range boundaries;
    ``E = max_cover + max_sections - 1``):

    - ``node_features`` (N, 15) float32: [is_section, is_buffer]; sections: floor (highest placed top),
      total size of the unplaced buffers there, their sum (a lower bound on the final height), all / capacity,
      width and start / time horizon; buffers: size / capacity, lower and upper / horizon, placed flag,
      offset / capacity (buffer mode: the skyline offset while unplaced), top / capacity, over-capacity flag,
      is-current flag (offset mode).
    - ``edge_index`` (2, E) int64: buffer -> each section it covers, then section s -> s+1.
    - ``edge_features`` (E, 2) float32: one-hot [covers, next section].
    - ``node_mask``, ``edge_mask``, ``action_mask`` (A,) int8, ``action_node`` (A,) int64: buffer mode: each
      buffer's node; offset mode: the current buffer's node.

    ## Action
    Buffer mode: ``Discrete(max_buffers)``, the buffer to place next; placed and padding buffers are masked,
    and with ``capacity_mask=True`` so are buffers whose top would pass the capacity while another still
    fits. Offset mode: ``Discrete(max_candidates)``, the candidate index (``candidates()`` lists the
    offsets); missing candidates are masked. A masked action is a no-op with reward
    ``-invalid_action_penalty`` (``strict=True``: ``ValueError``).

    ## Reward
    Minus the increase of the peak address, divided by the capacity; the return is ``-peak / capacity``.

    ## Episode end
    Terminated when every buffer is placed; ``info`` then holds ``peak``, ``fits`` and ``capacity_ratio``.
    Truncated after ``n_buffers`` masked actions in one episode.

    ## Arguments
    - ``instance``: an ``OffsetInstance``, a MiniMalloc instance name (``"A"``..``"K"``, ``"example"``) or a
      CSV path (``id,lower,upper,size``; ``NAME.CAPACITY.csv`` gives the capacity).
    - ``dataset`` (``"memory/random-offsets-40"``), ``split`` (``"train"``): the per-episode instance source.
    - ``action_mode`` (``"buffer"``), ``capacity_mask`` (False; buffer mode), ``order`` (``"size"``) and
      ``max_candidates`` (8) (offset mode).
    - ``max_buffers``, ``max_sections``, ``max_cover``: padding (default: the instance's, dataset's largest).
    - ``strict`` (False), ``invalid_action_penalty`` (1.0), ``render_mode`` (``"ansi"``, ``"rgb_array"``).

    ## Version history
    - v0: initial version.
    """

    objective = "peak"
    validator = staticmethod(validate_offsets)
    instance_type = OffsetInstance

    def __init__(self, config: dict[str, Any] | None = None, *, instance: OffsetInstance | str | None = None,
                 dataset: str = "memory/random-offsets-40", split: str = "train", action_mode: str = "buffer",
                 capacity_mask: bool = False, order: str = "size", max_candidates: int = 8,
                 max_buffers: int | None = None, max_sections: int | None = None,
                 max_cover: int | None = None, strict: bool = False, invalid_action_penalty: float = 1.0,
                 render_mode: str | None = None) -> None:  # fmt: skip
        kw = self.merge_config(config, dict(
            instance=instance, dataset=dataset, split=split, action_mode=action_mode,
            capacity_mask=capacity_mask, order=order, max_candidates=max_candidates, max_buffers=max_buffers,
            max_sections=max_sections,
            max_cover=max_cover, strict=strict, invalid_action_penalty=invalid_action_penalty,
            render_mode=render_mode))  # fmt: skip
        if kw["action_mode"] not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {kw['action_mode']!r}")
        if kw["order"] not in OFFSET_ORDERS:
            raise ValueError(f"order must be one of {OFFSET_ORDERS}, got {kw['order']!r}")
        if int(kw["max_candidates"]) < 1:
            raise ValueError(f"max_candidates must be >= 1, got {kw['max_candidates']}")
        self.action_mode, self.order = kw["action_mode"], kw["order"]
        self.capacity_mask, self.max_candidates = bool(kw["capacity_mask"]), int(kw["max_candidates"])
        self._setup(kw["instance"], kw["dataset"], kw["split"], kw["strict"], kw["invalid_action_penalty"],
                    kw["render_mode"])  # fmt: skip
        pad = self._padding()
        self.padding = {k: int(kw[f"max_{k}"]) if kw[f"max_{k}"] is not None else pad[k]
                        for k in ("buffers", "sections", "cover")}  # fmt: skip
        p = self.padding
        n_actions = p["buffers"] if self.action_mode == "buffer" else self.max_candidates
        n_nodes, n_edges = p["sections"] + p["buffers"], p["cover"] + max(p["sections"] - 1, 1)
        self._make_spaces(GraphSpec(n_nodes, n_edges, 15, 2, n_actions, action_node=True))
        self._cands: list[tuple[int, int]] = []

    def _resolve(self, instance: Any) -> OffsetInstance:
        if isinstance(instance, OffsetInstance):
            return instance
        if isinstance(instance, str):
            return load_offsets_csv(instance) if instance.endswith(".csv") else load_minimalloc(instance)
        raise TypeError(f"instance must be an OffsetInstance, a MiniMalloc name or a .csv path, "
                        f"got {type(instance).__name__}")  # fmt: skip

    def _sizes(self, inst: OffsetInstance) -> dict[str, int]:
        return offsets_sizes(inst)

    def _instance_of(self, state: OffsetState | OrderedOffsetState) -> OffsetInstance:
        return state.instance

    def schedule(self) -> OffsetAssignment:
        return OffsetAssignment(self.state.instance.name, self.state.offset.copy())

    def candidates(self) -> list[int]:
        """Offset mode: the offsets actions 0, 1, ... stand for (increasing)."""
        return [o for o, _ in self._cands]

    def candidate_gaps(self) -> list[int]:
        """Offset mode: the length of the free gap at each candidate (best fit picks the smallest)."""
        return [g for _, g in self._cands]

    # ------------------------------------------------------------------ dynamics
    def _start(self, inst: OffsetInstance) -> None:
        if self.action_mode == "buffer":
            self.state = st = OffsetState(inst)
        else:
            idx = np.arange(inst.n_buffers)
            order = (np.lexsort((idx, inst.lower, -inst.size)) if self.order == "size"
                     else np.lexsort((idx, -inst.size, inst.lower)))  # fmt: skip
            self.state = st = OrderedOffsetState(inst, order)
        sec, ns, nb = st.sections, st.sections.n, inst.n_buffers
        cap = inst.capacity
        t0 = int(sec.bounds[0])
        h = max(int(sec.bounds[-1]) - t0, 1)
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
        src = np.repeat(bn, sec.last - sec.first)
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
        if self.action_mode == "buffer":
            b["action_node"][:nb] = bn
        b["action_node"][nb:] = self.padding["sections"]  # padding actions point at a real node

    def _apply(self, a: int) -> tuple[float, dict[str, Any]]:
        st = self.state
        _, prev = st.place(a) if self.action_mode == "buffer" else st.place(self._cands[a][0])
        cap = st.instance.capacity
        extra = (
            {"peak": st.peak, "fits": int(st.peak <= cap), "capacity_ratio": st.peak / cap} if st.done else {}
        )
        return peak_reward(prev, st.peak, cap), extra

    def _encode(self) -> None:
        st, b = self.state, self._buf
        inst, ns, nb = st.instance, st.sections.n, st.instance.n_buffers
        cap = inst.capacity
        nf = b["node_features"]
        nf[:ns, O_FLOOR] = st.floor / cap
        nf[:ns, O_REMAINING] = st.remaining / cap
        nf[:ns, O_BOUND] = (st.floor + st.remaining) / cap
        bn = self.padding["sections"] + np.arange(nb)
        nf[bn, O_PLACED] = st.placed
        mask = b["action_mask"]
        mask.fill(0)
        if self.action_mode == "buffer":
            top = st.sky + inst.size
            nf[bn, O_OFFSET] = st.sky / cap
            nf[bn, O_TOP] = top / cap
            nf[bn, O_OVER] = ~st.placed & (top > cap)
            valid = ~st.placed
            if self.capacity_mask and (valid & (top <= cap)).any():
                valid = valid & (top <= cap)
            mask[:nb] = valid
            return
        top = np.where(st.placed, st.offset + inst.size, 0)
        nf[bn, O_OFFSET] = np.where(st.placed, st.offset, 0) / cap
        nf[bn, O_TOP] = top / cap
        nf[bn, O_OVER] = top > cap
        nf[bn, O_CURRENT] = 0.0
        cur = st.current
        self._cands = st.candidates(self.max_candidates) if cur >= 0 else []
        mask[: len(self._cands)] = 1
        if cur >= 0:
            nf[bn[cur], O_CURRENT] = 1.0
            b["action_node"][:] = bn[cur]

    def _progress(self) -> dict[str, Any]:
        return {"peak_so_far": self.state.peak}

    def _why_masked(self, a: int) -> str:
        st = self.state
        if st.done:
            return "every buffer is placed"
        if self.action_mode == "offset":
            return f"the current buffer has {len(self._cands)} candidate offsets"
        if a >= st.instance.n_buffers:
            return "padding"
        return "already placed" if st.placed[a] else "its top would pass the capacity"

    def _invalid_limit(self) -> int:
        return self.state.instance.n_buffers

    def _render_ansi(self) -> str:
        return viewer.offsets_ansi(self.state.instance, self.state.offset, self.state.peak)

    def _render_rgb(self) -> np.ndarray:
        st = self.state
        title = f"{st.instance.name}: peak {st.peak / st.instance.capacity:.3f} x capacity"
        return viewer.rgb(viewer.offsets_figure(st.instance, st.offset, title))


def offsets_sizes(inst: OffsetInstance) -> dict[str, int]:
    """Padding an offset instance needs: buffers, sections, buffer-section cover edges."""
    bounds = np.unique(np.concatenate([inst.lower, inst.upper]))
    cover = int((np.searchsorted(bounds, inst.upper) - np.searchsorted(bounds, inst.lower)).sum())
    return {"buffers": inst.n_buffers, "sections": int(bounds.size - 1), "cover": cover}
