"""B job-shop episodes stepped together in numpy: the dynamics and observation of ``JobShopEnv``, vectorised.

Every step dispatches one action per env with a fixed number of numpy calls on length-B arrays, so the
Python overhead of a decision shrinks as B grows. Observations, rewards and infos are bit-identical to B
independent ``JobShopEnv`` instances given the same instances and actions (``tests/test_batched_parity.py``).
Episodes do not reset themselves: ``reset(envs)`` restarts the listed envs (e.g. those that terminated).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from schedgym.envs.jobshop.env import (
    EDGE_MACHINE,
    F_LB,
    F_MACHINE_READY,
    F_NEXT,
    F_SCHEDULED,
    NODE_DIM,
    JobShopEnv,
)
from schedgym.envs.jobshop.types import JobShopInstance


class BatchedJobShop:
    """``len(instances)`` job-shop envs of one shape (J jobs x K operations, M machines), padded alike.

    ``step(actions)`` returns ``(obs, reward, terminated, truncated, info)`` with a leading batch axis:
    obs is the ``JobShopEnv`` observation dict with arrays of shape (B, ...); info holds ``action_mask``
    (B, max_jobs), ``invalid_action`` (B,), ``makespan_lb`` (B,) and ``makespan`` (B,) with the Gymnasium
    vector-env mask ``_makespan`` (True where the episode terminated at this step). Masked-out actions are
    no-ops with reward ``-invalid_action_penalty``, as in the single env. With ``copy=False`` the returned
    arrays are the internal buffers, overwritten by the next call.
    """

    def __init__(self, instances: Sequence[JobShopInstance], *, max_jobs: int | None = None,
                 max_machines: int | None = None, invalid_action_penalty: float = 1.0,
                 copy: bool = True) -> None:
        insts = list(instances)
        if not insts:
            raise ValueError("instances must hold at least one JobShopInstance")
        shape = (insts[0].n_jobs, insts[0].n_ops_per_job, insts[0].n_machines)
        for i in insts:
            if (i.n_jobs, i.n_ops_per_job, i.n_machines) != shape:
                raise ValueError(f"instance {i.name} is {i.n_jobs}x{i.n_ops_per_job} on {i.n_machines} "
                                 f"machines; every instance must be {shape[0]}x{shape[1]} on {shape[2]}")
        self.n_envs = B = len(insts)
        self.n_jobs, self.n_ops, self.n_machines = J, K, M = shape
        # One single env builds the initial observations and time scales, so both start from the same arrays.
        single = JobShopEnv(instance=insts[0], max_jobs=max_jobs, max_machines=max_machines,
                            invalid_action_penalty=invalid_action_penalty)
        self.max_jobs, self.max_machines = single.max_jobs, single.max_machines
        self.observation_space, self.action_space = single.observation_space, single.action_space
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.copy = bool(copy)
        initial: dict[str, list[np.ndarray]] = {}
        time_scale = []
        for inst in insts:
            obs, _ = single.reset(options={"instance": inst})
            for key, v in obs.items():
                initial.setdefault(key, []).append(v)
            time_scale.append(single.time_scale)
        self._initial = {key: np.stack(v) for key, v in initial.items()}
        self._buf = {key: v.copy() for key, v in self._initial.items()}
        self.time_scale = np.array(time_scale)
        self._inv_ts = 1.0 / self.time_scale
        self.instances = insts
        # Static tables, flattened so that every gather is a 1-D take: op (b, j, k) is row (b*J + j)*K + k.
        mach = np.stack([i.machines for i in insts])
        dur = np.stack([i.durations for i in insts])
        cum = np.cumsum(dur.astype(np.float64), axis=2)  # float64 prefix sums, as the single env
        total = cum[:, :, -1].astype(np.int64)
        self._mach, self._dur = mach.reshape(-1), dur.reshape(-1)
        self._cum_rows, self._cum = cum.reshape(B * J, K), cum.reshape(-1)
        self._work_after = (total[:, :, None] - cum.astype(np.int64)).reshape(-1)  # work of ops k+1..
        self._initial_lb = total.max(axis=1)
        # node_features flat index of the machine-ready feature of every op on machine (b, m), one row per
        # (b, m), padded by repeating the machine's first op (writing the same value twice is harmless).
        KK, N = self.max_machines, self.max_jobs * self.max_machines
        per_machine = max(int(np.bincount(i.machines.ravel(), minlength=M).max()) for i in insts)
        slots = np.zeros((B, M, per_machine), np.int64)
        node_of = np.arange(J)[:, None] * KK + np.arange(K)[None, :]
        for b, inst in enumerate(insts):
            for m in range(M):
                nodes = node_of[inst.machines == m]
                if nodes.size:
                    slots[b, m] = (b * N + np.resize(nodes, per_machine)) * NODE_DIM + F_MACHINE_READY
        self._slots = slots.reshape(B * M, per_machine)
        self._ar = np.arange(B)
        self._kk = np.arange(K)
        # Batched simulator state (the JobShopState arrays with a leading env axis) and episode counters.
        self.next_op = np.zeros((B, J), np.int64)
        self.job_ready = np.zeros((B, J), np.int64)
        self.machine_ready = np.zeros((B, M), np.int64)
        self.last_on_machine = np.zeros((B, M), np.int64)
        self.start = np.zeros((B, J, K), np.int64)
        self.n_scheduled = np.zeros(B, np.int64)
        self.makespan = np.zeros(B, np.int64)
        self._lb = np.zeros(B, np.int64)
        self._n_edges = np.zeros(B, np.int64)
        self._n_invalid = np.zeros(B, np.int64)
        self.reset()

    # ------------------------------------------------------------------ API
    def reset(self, envs: Sequence[int] | np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """Restart the listed envs (all by default) on their instances; returns the batch's obs and info."""
        idx = self._ar if envs is None else np.asarray(envs, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_envs):
            raise ValueError(f"envs must lie in 0..{self.n_envs - 1}, got {idx.tolist()}")
        for key, v in self._buf.items():
            if envs is None:
                np.copyto(v, self._initial[key])
            else:
                v[idx] = self._initial[key][idx]
        n_precedence = self.n_jobs * (self.n_ops - 1)  # machine edges are appended after these
        for a, fill in ((self.next_op, 0), (self.job_ready, 0), (self.machine_ready, 0),
                        (self.last_on_machine, -1), (self.start, -1), (self.n_scheduled, 0),
                        (self.makespan, 0), (self._n_invalid, 0), (self._n_edges, n_precedence)):
            a[idx] = fill
        self._lb[idx] = self._initial_lb[idx]
        info = {"action_mask": self._buf["action_mask"].copy(), "invalid_action": np.zeros(self.n_envs, bool),
                "makespan_lb": self._lb.copy()}
        return self._obs(), info

    def step(self, actions: Sequence[int] | np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray,
                                                                  dict]:
        """Dispatch ``actions[b]`` (a job) in env b for every b; see the class docstring for the returns."""
        a = np.asarray(actions)
        if a.shape != (self.n_envs,) or a.dtype.kind not in "iu":
            raise ValueError(f"actions must be {self.n_envs} integers, got shape {a.shape} dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= self.max_jobs):
            raise ValueError(f"actions must lie in 0..{self.max_jobs - 1}, got {a.min()}..{a.max()}")
        a = a.astype(np.int64, copy=False)
        valid = self._buf["action_mask"][self._ar, a].astype(bool)
        all_valid = bool(valid.all())
        rows = self._ar if all_valid else np.flatnonzero(valid)
        reward = np.full(self.n_envs, -self.invalid_action_penalty)
        terminated = np.zeros(self.n_envs, bool)
        if rows.size:
            j = a if all_valid else a[rows]
            reward[rows] = self._dispatch(rows, j)
            terminated[rows] = self.n_scheduled[rows] == self.n_jobs * self.n_ops
        truncated = np.zeros(self.n_envs, bool)
        if not all_valid:
            bad = np.flatnonzero(~valid)
            self._n_invalid[bad] += 1
            truncated[bad] = self._n_invalid[bad] >= self.n_jobs * self.n_ops
        info = {"action_mask": self._buf["action_mask"].copy(), "invalid_action": ~valid,
                "makespan_lb": self._lb.copy(), "makespan": self.makespan.copy(),
                "_makespan": terminated.copy()}
        return self._obs(), reward, terminated, truncated, info

    # ------------------------------------------------------------------ dynamics + encoding
    def _dispatch(self, b: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Dispatch job j[i]'s next operation in env b[i]; update state and observation; return rewards.

        All indexing is on flat (reshaped) views, which numpy gathers and scatters much faster than
        multi-axis fancy indexing.
        """
        J, K, M, KK, A = self.n_jobs, self.n_ops, self.n_machines, self.max_machines, self.max_jobs
        N, E = A * KK, self._buf["edge_mask"].shape[1]
        r = b * J + j  # (env, job) row
        k = self.next_op.reshape(-1)[r]
        op = r * K + k
        m = self._mach[op]
        bm = b * M + m  # (env, machine) row
        job_ready, machine_ready = self.job_ready.reshape(-1), self.machine_ready.reshape(-1)
        s = np.maximum(job_ready[r], machine_ready[bm])
        e = s + self._dur[op]
        last = self.last_on_machine.reshape(-1)
        prev = last[bm]
        self.start.reshape(-1)[op] = s
        job_ready[r] = e
        machine_ready[bm] = e
        last[bm] = j * K + k
        self.next_op.reshape(-1)[r] = k + 1
        self.n_scheduled[b] += 1
        self.makespan[b] = np.maximum(self.makespan[b], e)  # b holds each env at most once
        # Observation, as JobShopEnv._encode_dispatch does for one env.
        nf, inv = self._buf["node_features"].reshape(-1), self._inv_ts[b]
        node = j * KK + k
        base = b * (N * NODE_DIM) + node * NODE_DIM
        nf[base + F_SCHEDULED] = 1.0
        nf[base + F_NEXT] = 0.0
        # Completion lower bounds of ops k.. of the job: (cum + (e - cum_k)) * inv, as in the single env.
        lb = (np.take(self._cum_rows, r, axis=0) + (e - self._cum[op])[:, None]) * inv[:, None]
        later = self._kk[None, :] >= k[:, None]
        lb_idx = (base - k * NODE_DIM + F_LB)[:, None] + self._kk[None, :] * NODE_DIM  # F_LB of ops 0..K-1
        nf[lb_idx[later]] = lb[later]
        nf[np.take(self._slots, bm, axis=0)] = (e * inv)[:, None]
        more = k + 1 < K
        action_node, action_mask = self._buf["action_node"].reshape(-1), self._buf["action_mask"].reshape(-1)
        nf[base[more] + NODE_DIM + F_NEXT] = 1.0
        action_node[(b * A + j)[more]] = node[more] + 1
        action_mask[(b * A + j)[~more]] = 0
        has_prev = prev >= 0
        eb, ep, en = b[has_prev], prev[has_prev], node[has_prev]
        i = self._n_edges[eb]
        edge_index = self._buf["edge_index"].reshape(-1)
        edge_index[eb * 2 * E + i] = (ep // K) * KK + ep % K
        edge_index[eb * 2 * E + E + i] = en
        self._buf["edge_features"].reshape(-1)[(eb * E + i) * 2 + EDGE_MACHINE] = 1.0
        self._buf["edge_mask"].reshape(-1)[eb * E + i] = 1
        self._n_edges[eb] = i + 1
        # Reward: minus the increase of the makespan lower bound (only job j's bound changes, only upwards).
        old = self._lb[b]
        new = np.maximum(old, e + self._work_after[op])
        self._lb[b] = new
        return -(new - old) / self.time_scale[b]

    def _obs(self) -> dict[str, np.ndarray]:
        return {key: v.copy() for key, v in self._buf.items()} if self.copy else dict(self._buf)
