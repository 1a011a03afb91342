"""Job-shop dynamics, written once: dispatch a job's next operation at its earliest feasible start.

Semantics (semi-active, append-only): operation k of job j starts at
``max(completion of job j's previous operation, completion of the last operation on its machine)``.
No time is simulated between decisions, so a dispatch is O(1) in closed form and needs no event queue.
Dispatching every operation in increasing order of any feasible schedule's start times reproduces that
schedule or a left-shifted one, so every semi-active schedule is reachable.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance


class JobShopState:
    """Public, read-only-by-convention simulator state (heuristics read it through ``env.unwrapped.state``).

    next_op:         (J,) int64  index of each job's next unscheduled operation (K when the job is done)
    job_ready:       (J,) int64  completion time of each job's last scheduled operation
    machine_ready:   (M,) int64  completion time of the last operation on each machine
    last_on_machine: (M,) int64  flat id j*K+k of the last operation on each machine (-1 if none)
    remaining_work:  (J,) int64  total duration of each job's unscheduled operations
    start:           (J, K) int64 start time of each operation (-1 while unscheduled)
    """

    def __init__(self, instance: JobShopInstance) -> None:
        self.instance = instance
        j, k = instance.machines.shape
        self.n_jobs, self.n_ops = j, k
        self.next_op = np.zeros(j, np.int64)
        self.job_ready = np.zeros(j, np.int64)
        self.machine_ready = np.zeros(instance.n_machines, np.int64)
        self.last_on_machine = np.full(instance.n_machines, -1, np.int64)
        self.remaining_work = instance.durations.sum(axis=1)
        self.start = np.full((j, k), -1, np.int64)
        self.n_scheduled = 0
        self.makespan = 0
        self._n_total = j * k
        # Python-list mirrors: dispatch() reads scalars from these (~5x faster than numpy scalar reads) and
        # writes through to the public arrays above, which therefore stay current after every dispatch.
        self._mach = instance.machines.tolist()
        self._dur = instance.durations.tolist()
        self._next = [0] * j
        self._job_ready = [0] * j
        self._machine_ready = [0] * instance.n_machines
        self._last = [-1] * instance.n_machines
        self._rem = self.remaining_work.tolist()

    @property
    def done(self) -> bool:
        return self.n_scheduled == self._n_total

    def legal(self) -> np.ndarray:
        """(J,) bool: jobs that still have an unscheduled operation."""
        return self.next_op < self.n_ops

    def earliest_starts(self) -> np.ndarray:
        """(J,) int64: earliest start of each job's next operation (huge for finished jobs)."""
        k = np.minimum(self.next_op, self.n_ops - 1)
        m = self.instance.machines[np.arange(self.n_jobs), k]
        est = np.maximum(self.job_ready, self.machine_ready[m])
        return np.where(self.next_op < self.n_ops, est, np.iinfo(np.int64).max)

    def next_durations(self) -> np.ndarray:
        """(J,) int64: duration of each job's next operation (0 for finished jobs)."""
        k = np.minimum(self.next_op, self.n_ops - 1)
        d = self.instance.durations[np.arange(self.n_jobs), k]
        return np.where(self.next_op < self.n_ops, d, 0)

    def dispatch(self, j: int) -> tuple[int, int, int, int, int]:
        """Schedule job ``j``'s next operation; return (k, machine, start, end, previous op on machine)."""
        k = self._next[j]
        if k >= self.n_ops:
            raise ValueError(f"job {j} has no unscheduled operation")
        m = self._mach[j][k]
        d = self._dur[j][k]
        jr = self._job_ready[j]
        mr = self._machine_ready[m]
        s = jr if jr > mr else mr
        e = s + d
        prev = self._last[m]
        op = j * self.n_ops + k
        rem = self._rem[j] - d
        self._next[j] = k + 1
        self._job_ready[j] = self._machine_ready[m] = e
        self._last[m] = op
        self._rem[j] = rem
        self.start[j, k] = s
        self.next_op[j] = k + 1
        self.job_ready[j] = self.machine_ready[m] = e
        self.last_on_machine[m] = op
        self.remaining_work[j] = rem
        self.n_scheduled += 1
        if e > self.makespan:
            self.makespan = e
        return k, m, s, e, prev
