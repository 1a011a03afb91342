"""DAG dispatch dynamics, written once: jobs arrive, ready tasks are queued on PEs, PEs run their queues.

Semantics (event-driven on ``schedgym.engine.EventQueue``):

- A job *arrives* at its arrival time and is *admitted* (its tasks get observation slots) in FIFO order as
  soon
  as ``capacity_tasks`` / ``capacity_edges`` slots are free; until then it waits in a backlog (the wait counts
  in its slowdown). A task is *ready* when every parent has finished.
- ``assign(task, pe)`` appends a ready task to the PE's FIFO queue, busy or not. The task at the head of a
  queue *holds* the PE from the moment it reaches the head; it starts at ``max(now, data arrival)``, where
  data arrival = max over parents of ``finish(parent) + comm(pe(parent), pe, data)``, and runs for
  ``exec_time[task, pe] * noise[task]``. Executing an offline plan's tasks in the order of their planned start
  times therefore reproduces the plan exactly (HEFT's insertion-based schedules are semi-active per PE).
- ``advance()`` processes events (completions before arrivals at equal times) until a decision is due, i.e. a
  ready unassigned task exists, or nothing is left. ``wait()`` processes the next event time first, so a
  policy can defer ready tasks until something changes.
- The scheduler's view uses expected times only: ``expected_finish`` / ``pe_available`` never reveal noise.
"""

from __future__ import annotations

import heapq

import numpy as np

from schedgym.engine import EventQueue
from schedgym.envs.dag.types import DagInstance

UNSEEN, WAITING, READY, QUEUED, RUNNING, DONE = range(6)
STATUS_NAMES = ("unseen", "waiting", "ready", "queued", "running", "done")
JOB_FUTURE, JOB_BACKLOG, JOB_ADMITTED, JOB_DONE = range(4)
_FINISH, _ARRIVAL = 0, 1  # event priorities


class DagState:
    """Public, read-only-by-convention simulator state (heuristics read it via ``env.unwrapped.state``).

    status:          (T,) int8    UNSEEN/WAITING/READY/QUEUED/RUNNING/DONE per task (RUNNING = holds its PE)
    pe:              (T,) int64   PE of each assigned task (-1 otherwise)
    start, finish:   (T,) float64 actual times (nan until the task reaches the head of its queue)
    data_ready:      (T,) float64 data-arrival time on the assigned PE
    expected_finish: (T,) float64 scheduler's view: expected finish of assigned tasks (actual once done)
    ready:           dict task -> None of ready unassigned tasks, in the order they became ready (FIFO)
    pe_head:         (P,) int64   task holding each PE (-1 = idle); pe_queue: list of per-PE FIFO lists
    pe_expected_free:(P,) float64 expected time each PE's committed queue drains (scheduler's view)
    job_status:      (J,) int8; job_finish: (J,) float64; job_done_tasks: (J,) int64
    task_slot:       (T,) int64 observation slot of each admitted, unfinished-job task (-1 otherwise)
    slot_task:       (S,) int64 task in each slot (-1 = free); edge_slot / slot_edge: the same for edges
    slowdown_area:   integral over time of sum over jobs in the system of 1 / cp_lower(job)
    """

    def __init__(
        self, instance: DagInstance, noise: np.ndarray, capacity_tasks: int, capacity_edges: int
    ) -> None:
        inst = instance
        self.instance = inst
        t, p, j, e = inst.n_tasks, inst.n_pes, inst.n_jobs, inst.workload.n_edges
        if noise.shape != (t,) or not (noise > 0).all():
            raise ValueError(f"noise must be {t} factors > 0")
        self.noise = noise
        self.now = 0.0
        self.events: EventQueue[int] = EventQueue()
        self.status = np.zeros(t, np.int8)
        self.pe = np.full(t, -1, np.int64)
        self.start = np.full(t, np.nan)
        self.finish = np.full(t, np.nan)
        self.data_ready = np.full(t, np.nan)
        self.expected_finish = np.full(t, np.nan)
        self.ready_time = np.full(t, np.nan)
        self.ready: dict[int, None] = {}
        self.parents_left = np.diff(inst.parent_ptr).tolist()
        self.pe_head = np.full(p, -1, np.int64)
        self.pe_queue: list[list[int]] = [[] for _ in range(p)]
        self.pe_expected_free = np.zeros(p)
        self.pe_busy = np.zeros(p)  # actual busy time (execution only) of finished tasks
        self.job_status = np.zeros(j, np.int8)
        self.job_finish = np.full(j, np.nan)
        self.job_done_tasks = np.zeros(j, np.int64)
        self.job_size = np.bincount(inst.workload.task_job, minlength=j)
        self.job_edges = np.bincount(inst.workload.task_job[inst.workload.edge_src], minlength=j)
        self.backlog: list[int] = []
        self.in_system: list[int] = []  # arrived, unfinished jobs (for the slowdown integral)
        self.slowdown_area = 0.0
        self.n_done = 0
        self.n_assigned = 0
        self.makespan = 0.0
        # Observation slots (lowest free first), recycled when a job finishes.
        self.capacity_tasks, self.capacity_edges = int(capacity_tasks), int(capacity_edges)
        self.task_slot = np.full(t, -1, np.int64)
        self.slot_task = np.full(self.capacity_tasks, -1, np.int64)
        self.edge_slot = np.full(e, -1, np.int64)
        self.slot_edge = np.full(self.capacity_edges, -1, np.int64)
        self._free_task_slots = list(range(self.capacity_tasks))
        self._free_edge_slots = list(range(self.capacity_edges))
        # Static tables as Python lists: scalar reads from lists are much faster than from numpy.
        self._exec = inst.exec_time.tolist()
        self._lat = inst.platform.latency.tolist()
        self._inv_bw = (1.0 / inst.platform.bandwidth).tolist()
        self._ptr = inst.parent_ptr.tolist()
        self._ptask = inst.parent_task.tolist()
        self._pedge = inst.parent_edge.tolist()
        self._cptr = inst.child_ptr.tolist()
        self._ctask = inst.child_task.tolist()
        self._data = inst.workload.edge_data.tolist()
        self._job = inst.workload.task_job.tolist()
        self._inv_cp = (1.0 / inst.cp_lower).tolist()
        self._job_first = np.searchsorted(inst.workload.task_job, np.arange(j)).tolist()
        self._job_edges_list = [
            np.flatnonzero(inst.workload.task_job[inst.workload.edge_src] == k).tolist() for k in range(j)
        ]
        for k, a in enumerate(inst.workload.job_arrival.tolist()):
            self.events.push(a, ~k, _ARRIVAL)
        self.advance()

    # ------------------------------------------------------------------ queries (scheduler's view)
    @property
    def done(self) -> bool:
        return self.n_done == self.instance.n_tasks

    def ready_tasks(self) -> np.ndarray:
        """Ready unassigned tasks in FIFO order (the order they became ready; task id within one event)."""
        return np.fromiter(self.ready, np.int64, len(self.ready))

    def pe_available(self) -> np.ndarray:
        """(P,) expected time at which each PE has finished every task committed to it (>= now)."""
        return np.maximum(self.pe_expected_free, self.now)

    def data_arrival(self, tasks: np.ndarray) -> np.ndarray:
        """(len(tasks), P): when all inputs of each (finished-parent) task could be on each PE.

        Parents must be assigned; unfinished parents contribute their expected finish.
        """
        inst = self.instance
        out = np.full((len(tasks), inst.n_pes), self.now)
        lat, inv_bw = inst.platform.latency, 1.0 / inst.platform.bandwidth
        for r, i in enumerate(np.asarray(tasks).tolist()):
            for k in range(self._ptr[i], self._ptr[i + 1]):
                par = self._ptask[k]
                q = int(self.pe[par])
                f = self.finish[par] if self.status[par] == DONE else self.expected_finish[par]
                arr = f + lat[q] + self._data[self._pedge[k]] * inv_bw[q]
                arr[q] = f
                np.maximum(out[r], arr, out=out[r])
        return out

    def earliest_start(self, tasks: np.ndarray) -> np.ndarray:
        """(len(tasks), P) expected start if appended to each PE's queue now."""
        return np.maximum(self.data_arrival(tasks), self.pe_available()[None, :])

    def earliest_finish(self, tasks: np.ndarray) -> np.ndarray:
        """(len(tasks), P) expected finish if appended to each PE's queue now (inf where unsupported)."""
        return self.earliest_start(tasks) + self.instance.exec_time[np.asarray(tasks, np.int64)]

    # ------------------------------------------------------------------ dynamics
    def assign(self, i: int, p: int) -> None:
        """Append ready task ``i`` to PE ``p``'s queue (it starts at the head once its data is there)."""
        if self.status[i] != READY:
            raise ValueError(f"task {i} is not ready (status {STATUS_NAMES[self.status[i]]})")
        d = self._exec[i][p]
        if d == float("inf"):
            raise ValueError(f"task {i} is not supported on PE {p}")
        del self.ready[i]
        self.status[i] = QUEUED
        self.pe[i] = p
        self.n_assigned += 1
        arr = self.now
        for k in range(self._ptr[i], self._ptr[i + 1]):
            par = self._ptask[k]
            q = int(self.pe[par])
            f = float(self.finish[par])
            if q != p:
                f += self._lat[q][p] + self._data[self._pedge[k]] * self._inv_bw[q][p]
            if f > arr:
                arr = f
        self.data_ready[i] = arr
        free = self.pe_expected_free[p]
        ef = (free if free > arr else arr) + d
        self.expected_finish[i] = ef
        self.pe_expected_free[p] = ef
        if self.pe_head[p] < 0:
            self._start(i, p)
        else:
            self.pe_queue[p].append(i)

    def advance(self) -> None:
        """Process events until a decision is due (a ready unassigned task) or nothing is left."""
        while not self.ready and len(self.events):
            self._step_events()

    def wait(self) -> None:
        """Process the next event time even though ready tasks exist, then advance to the next decision."""
        if not len(self.events):
            raise ValueError(
                "nothing to wait for: no task is running or queued and no job is still to arrive"
            )
        self._step_events()
        self.advance()

    # ------------------------------------------------------------------ internals
    def _step_events(self) -> None:
        t = self.events.peek_time()
        if self.in_system:
            self.slowdown_area += (t - self.now) * sum(self._inv_cp[j] for j in self.in_system)
        self.now = t
        for _, ev in self.events.pop_until(t):
            if ev >= 0:
                self._on_finish(ev)
            else:
                self._on_arrival(~ev)
        self._refresh_expected()

    def _start(self, i: int, p: int) -> None:
        self.pe_head[p] = i
        self.status[i] = RUNNING
        s = self.now if self.now > self.data_ready[i] else float(self.data_ready[i])
        f = s + self._exec[i][p] * float(self.noise[i])
        self.start[i] = s
        self.finish[i] = f
        self.events.push(f, i, _FINISH)

    def _on_finish(self, i: int) -> None:
        p = int(self.pe[i])
        self.status[i] = DONE
        f = float(self.finish[i])
        self.expected_finish[i] = f
        self.pe_busy[p] += f - float(self.start[i])
        self.n_done += 1
        if f > self.makespan:
            self.makespan = f
        for k in range(self._cptr[i], self._cptr[i + 1]):
            c = self._ctask[k]
            self.parents_left[c] -= 1
            if self.parents_left[c] == 0:
                self._make_ready(c)
        self.pe_head[p] = -1
        if self.pe_queue[p]:
            self._start(self.pe_queue[p].pop(0), p)
        j = self._job[i]
        self.job_done_tasks[j] += 1
        if self.job_done_tasks[j] == self.job_size[j]:
            self._finish_job(j)

    def _make_ready(self, c: int) -> None:
        self.status[c] = READY
        self.ready_time[c] = self.now
        self.ready[c] = None

    def _on_arrival(self, j: int) -> None:
        self.job_status[j] = JOB_BACKLOG
        self.backlog.append(j)
        self.in_system.append(j)
        self._admit()

    def _admit(self) -> None:
        while self.backlog:
            j = self.backlog[0]
            if self.job_size[j] > len(self._free_task_slots) or self.job_edges[j] > len(
                self._free_edge_slots
            ):
                return
            self.backlog.pop(0)
            self.job_status[j] = JOB_ADMITTED
            first = self._job_first[j]
            for i in range(first, first + int(self.job_size[j])):
                s = heapq.heappop(self._free_task_slots)
                self.task_slot[i], self.slot_task[s] = s, i
                if self._ptr[i] == self._ptr[i + 1]:
                    self._make_ready(i)
                else:
                    self.status[i] = WAITING
            for e in self._job_edges_list[j]:
                s = heapq.heappop(self._free_edge_slots)
                self.edge_slot[e], self.slot_edge[s] = s, e

    def _finish_job(self, j: int) -> None:
        self.job_status[j] = JOB_DONE
        self.job_finish[j] = self.now
        self.in_system.remove(j)
        first = self._job_first[j]
        for i in range(first, first + int(self.job_size[j])):
            s = int(self.task_slot[i])
            self.task_slot[i], self.slot_task[s] = -1, -1
            heapq.heappush(self._free_task_slots, s)
        for e in self._job_edges_list[j]:
            s = int(self.edge_slot[e])
            self.edge_slot[e], self.slot_edge[s] = -1, -1
            heapq.heappush(self._free_edge_slots, s)
        self._admit()

    def _refresh_expected(self) -> None:
        """Recompute each PE's expected queue chain from now (a running task may overrun its expectation)."""
        now = self.now
        for p in range(len(self.pe_queue)):
            h = int(self.pe_head[p])
            if h < 0:
                self.pe_expected_free[p] = now
                continue
            t = float(self.start[h]) + self._exec[h][p]
            t = t if t > now else now
            self.expected_finish[h] = t
            for q in self.pe_queue[p]:
                dr = float(self.data_ready[q])
                t = (t if t > dr else dr) + self._exec[q][p]
                self.expected_finish[q] = t
            self.pe_expected_free[p] = t
