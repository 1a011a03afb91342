"""DAGDispatch-v0's observation: padded task/PE/system graph buffers, refreshed incrementally per decision.

Layout and feature columns are specified in the env docstring (``env.py``). ``encode`` rewrites only the rows
whose slot or status changed plus the time-dependent columns; ``invalidate`` forces a full rewrite (the
tests check that both give identical buffers).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from schedgym.envs.dag.sim import DONE, QUEUED, READY, RUNNING, WAITING, DagState
from schedgym.envs.dag.types import DagInstance
from schedgym.graph import GraphSpec

# Node feature columns (times are divided by the instance's time_scale, the mean task run time).
F_IS_TASK, F_IS_PE, F_IS_SYSTEM = 0, 1, 2
F_READY, F_WAITING, F_QUEUED, F_RUNNING, F_DONE = 3, 4, 5, 6, 7
F_PROGRESS, F_DATA_IN, F_RANK, F_AGE, F_TIME_LEFT, F_LOAD = 8, 9, 10, 11, 12, 13
F_TYPE_TIME = 14  # + K columns: task's expected time per PE type (-1 = unsupported), then K PE-type one-hot
EDGE_DAG, EDGE_ASSIGN, EDGE_COMM = 0, 1, 2
_STATUS_ONEHOT = np.zeros((6, 5), np.float32)
for _s, _c in ((READY, 0), (WAITING, 1), (QUEUED, 2), (RUNNING, 3), (DONE, 4)):
    _STATUS_ONEHOT[_s, _c] = 1.0


class ObservationEncoder:
    """Owns one env's observation buffers: ``S`` task slots, ``P`` PE nodes, one system node; ``S * P + 1``
    actions (pairs ``slot * P + pe``, then wait)."""

    def __init__(self, max_tasks: int, max_edges: int, max_pes: int, max_pe_types: int) -> None:
        self.max_tasks, self.max_edges, self.max_pes, self.max_pe_types = (
            max_tasks,
            max_edges,
            max_pes,
            max_pe_types,
        )
        s, p = max_tasks, max_pes
        self.n_nodes = s + p + 1
        self.system_node = s + p
        self.wait_action = s * p
        self.node_dim = F_TYPE_TIME + 2 * max_pe_types
        self.graph_spec = GraphSpec(
            self.n_nodes, max_edges + s, self.node_dim, 3, s * p + 1, action_node=True
        )
        space = self.graph_spec.space()
        space.spaces["action_pe"] = spaces.Box(0, self.n_nodes - 1, (s * p + 1,), np.int64)
        self.space = space
        self.buf: dict[str, np.ndarray] = {}
        for k, v in space.spaces.items():
            assert v.shape is not None and v.dtype is not None
            self.buf[k] = np.zeros(v.shape, v.dtype)
        self.buf["action_node"][:-1] = np.arange(s * p) // p
        self.buf["action_node"][-1] = self.system_node
        self.buf["action_pe"][:-1] = s + np.arange(s * p) % p
        self.buf["action_pe"][-1] = self.system_node
        self.time_scale = 1.0

    def observation(self) -> dict[str, np.ndarray]:
        """Fresh copies of the buffers (callers may mutate them)."""
        return {k: v.copy() for k, v in self.buf.items()}

    def start(self, inst: DagInstance) -> None:
        """Per-episode tables (static task rows, time scale) and the PE/system rows; clears the buffers."""
        t = inst.n_tasks
        finite = np.isfinite(inst.exec_time)
        mean_t = inst.mean_exec_time()
        self.time_scale = ts = float(mean_t.mean()) if mean_t.mean() > 0 else 1.0
        inv = 1.0 / ts
        comm = inst.mean_comm_time()
        k = inst.platform.n_pe_types
        static = np.zeros((t, self.node_dim), np.float32)
        static[:, F_IS_TASK] = 1.0
        np.add.at(static[:, F_DATA_IN], inst.workload.edge_dst, (comm * inv).astype(np.float32))
        static[:, F_RANK] = inst.upward_rank() * inv
        static[:, F_TYPE_TIME : F_TYPE_TIME + self.max_pe_types] = -1.0
        tt = inst.type_time * inv
        static[:, F_TYPE_TIME : F_TYPE_TIME + k] = np.where(np.isfinite(tt), tt, -1.0)
        self._static, self._inv, self._comm = static, inv, (comm * inv).astype(np.float32)
        self._finite = np.zeros((t, self.max_pes), bool)
        self._finite[:, : inst.n_pes] = finite
        self._arrival = inst.workload.job_arrival[inst.workload.task_job]
        self._t0 = float(inst.workload.job_arrival.min())
        b = self.buf
        for key in ("node_features", "edge_index", "edge_features", "node_mask", "edge_mask", "action_mask"):
            b[key].fill(0)
        s, p = self.max_tasks, self.max_pes
        nf = b["node_features"]
        nf[s : s + inst.n_pes, F_IS_PE] = 1.0
        nf[s + np.arange(inst.n_pes), F_TYPE_TIME + self.max_pe_types + inst.platform.pe_type] = 1.0
        nf[self.system_node, F_IS_SYSTEM] = 1.0
        b["node_mask"][s : s + inst.n_pes] = 1
        b["node_mask"][self.system_node] = 1
        b["edge_features"][self.max_edges :, EDGE_ASSIGN] = 1.0
        b["edge_index"][0, self.max_edges :] = np.arange(s)
        self._slot_arrival = np.zeros(s)
        self._slot_job = np.zeros(s, np.int64)
        self._slot_finite = np.zeros((s, p), bool)
        self.invalidate()

    def invalidate(self) -> None:
        """Forget what the buffers hold, so the next ``_encode`` rewrites every row."""
        self._prev_slot = np.full(self.max_tasks, -2, np.int64)
        self._prev_status = np.full(self.max_tasks, -1, np.int8)
        self._prev_now, self._prev_done = np.nan, -1

    def encode(self, st: DagState) -> None:
        """Refresh the observation buffers from the simulator state, rewriting only rows that changed."""
        b, inv = self.buf, self._inv
        inst, s, me = st.instance, self.max_tasks, self.max_edges
        now, slot_task = st.now, st.slot_task
        nf, ei = b["node_features"], b["edge_index"]
        task_nf = nf[:s]
        mask2d = b["action_mask"][:-1].reshape(s, self.max_pes)
        moved = np.flatnonzero(slot_task != self._prev_slot)
        if moved.size:  # jobs admitted or finished: static rows, slot tables and DAG edges
            tm = slot_task[moved]
            lm = tm >= 0
            tkm = np.where(lm, tm, 0)
            task_nf[moved] = self._static[tkm] * lm[:, None]
            self._slot_arrival[moved] = np.where(lm, self._arrival[tkm], 0.0)
            self._slot_job[moved] = inst.workload.task_job[tkm]
            self._slot_finite[moved] = self._finite[tkm] & lm[:, None]
            self._prev_slot[moved] = tm
            self._prev_status[moved] = -1
            b["node_mask"][moved] = lm
            self._encode_dag_edges(st)
        live = slot_task >= 0
        tk = np.where(live, slot_task, 0)
        status = np.where(live, st.status[tk], 0).astype(np.int8)
        changed = np.flatnonzero(status != self._prev_status)
        if changed.size:  # status transitions: one-hot, action mask, assignment edges
            sc = status[changed]
            task_nf[changed, F_READY : F_DONE + 1] = _STATUS_ONEHOT[sc]
            mask2d[changed] = (sc == READY)[:, None] & self._slot_finite[changed]
            held = (sc == QUEUED) | (sc == RUNNING)
            ei[1, me + changed] = np.where(held, s + st.pe[tk[changed]], 0)
            b["edge_mask"][me + changed] = held
            self._prev_status[changed] = sc
        if now != self._prev_now or changed.size:
            task_nf[:, F_AGE] = (now - self._slot_arrival) * inv * live
            held = (status == QUEUED) | (status == RUNNING)
            task_nf[:, F_TIME_LEFT] = np.where(held, np.maximum(st.expected_finish[tk] - now, 0.0) * inv, 0.0)
        if st.n_done != self._prev_done or moved.size:
            job = self._slot_job
            task_nf[:, F_PROGRESS] = st.job_done_tasks[job] / st.job_size[job] * live
        self._prev_now, self._prev_done = now, st.n_done
        n_pe = inst.n_pes
        pe_nf = nf[s : s + n_pe]
        elapsed = now - self._t0
        pe_nf[:, F_RUNNING] = st.pe_head >= 0
        pe_nf[:, F_PROGRESS] = st.pe_busy / elapsed if elapsed > 0 else 0.0
        pe_nf[:, F_TIME_LEFT] = (st.pe_available() - now) * inv
        pe_nf[:, F_LOAD] = (st.pe_head >= 0) + np.fromiter(map(len, st.pe_queue), np.float64, n_pe)
        sysn = nf[self.system_node]
        sysn[F_PROGRESS] = float(np.count_nonzero(st.job_status == 3)) / inst.n_jobs
        sysn[F_AGE] = elapsed * inv
        sysn[F_LOAD] = len(st.in_system)
        b["action_mask"][-1] = len(st.events) > 0 and not st.done

    def _encode_dag_edges(self, st: DagState) -> None:
        """DAG edges of the admitted jobs (they change only when a job is admitted or finishes)."""
        b, me = self.buf, self.max_edges
        wl = st.instance.workload
        live = st.slot_edge >= 0
        b["edge_mask"][:me] = live
        b["edge_features"][:me, EDGE_DAG] = live
        if not wl.n_edges:
            return
        ek = np.where(live, st.slot_edge, 0)
        ei = b["edge_index"]
        ei[0, :me] = np.where(live, st.task_slot[wl.edge_src[ek]], 0)
        ei[1, :me] = np.where(live, st.task_slot[wl.edge_dst[ek]], 0)
        b["edge_features"][:me, EDGE_COMM] = np.where(live, self._comm[ek], 0.0)
