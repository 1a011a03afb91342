"""``schedgym/MemoryMapping-v0``: the fast/slow tier of each buffer of a program (mallocMuZero's game).
``schedgym/MemoryOffsets-v0`` lives in ``offsets_env.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.memory import viewer
from schedgym.envs.memory.envbase import MemoryEnvBase
from schedgym.envs.memory.io import load_program, load_shipped_program
from schedgym.envs.memory.reward import saving_reward
from schedgym.envs.memory.sim import FIT_RULES, ORDERS, CostModel, MappingState
from schedgym.envs.memory.types import MemoryProgram, TierMapping
from schedgym.envs.memory.validator import validate_mapping
from schedgym.graph import GraphSpec

# MemoryMapping node feature columns: op nodes use 2-6, buffer nodes 7-15.
(M_IS_OP, M_IS_BUF, M_COMPUTE, M_TIME, M_MEMBOUND, M_OCCUPANCY, M_OP_POS, M_SIZE, M_LOWER, M_UPPER, M_BENEFIT,
 M_UNDECIDED, M_FAST, M_OFFSET, M_CURRENT, M_RANK) = range(16)  # fmt: skip


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
    memory at the k-th candidate offset (K = 1: the ``fit`` rule's offset; K > 1: the k-th lowest gap bottom
    that holds it); action K (``slow_action``) puts it in slow memory (always valid). Fast actions are
    masked when the buffer does not fit. A masked action is a no-op: reward ``-invalid_action_penalty``,
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
        kw = self.merge_config(
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
