"""``schedgym/JobShop-v0``: dispatch job-shop operations one decision at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym import datasets
from schedgym.envbase import SchedulingEnv
from schedgym.envs.jobshop import viewer
from schedgym.envs.jobshop.io import load_benchmark, load_instance
from schedgym.envs.jobshop.reward import lower_bound_reward
from schedgym.envs.jobshop.sim import JobShopState
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSchedule
from schedgym.envs.jobshop.validator import validate_schedule
from schedgym.graph import GraphSpec

# Node feature columns (times are divided by the instance's time_scale = total work / n_machines).
F_DURATION, F_MACHINE, F_SCHEDULED, F_LB, F_NEXT, F_MACHINE_READY, F_WORK_LEFT, F_OPS_LEFT = range(8)
NODE_DIM = 8
EDGE_PRECEDENCE, EDGE_MACHINE = 0, 1


class JobShopEnv(SchedulingEnv):
    """Job-shop scheduling as a sequence of dispatching decisions.

    ## Description
    ``J`` jobs each visit machines in a fixed order; every machine runs one operation at a time. At each
    step the agent picks a job; its next operation is appended to its machine and starts at
    ``max(job's previous completion, machine's last completion)`` (semi-active schedules; see ``sim.py``).
    The objective is the makespan, recomputed by ``validate_schedule`` from the start times.

    ## Observation
    The disjunctive graph in schedgym's padded format (``schedgym.graph``); ``N = max_jobs * max_machines``
    operation nodes (node ``j * max_machines + k`` is operation k of job j), ``E = 2N`` edge slots:

    - ``node_features`` (N, 8) float32: duration, machine id / (M-1), scheduled flag, completion lower
      bound (actual completion once scheduled), is-next-operation flag, ready time of the operation's
      machine, remaining work of the job from this operation, remaining operations / max_machines. Times
      are divided by ``time_scale`` = total processing time / n_machines.
    - ``edge_index`` (2, E) int64: precedence edges (k -> k+1 within a job) first, then machine-order
      edges (previous -> next operation on a machine) as operations are scheduled.
    - ``edge_features`` (E, 2) float32: one-hot [precedence, machine order].
    - ``node_mask`` (N,) int8, ``edge_mask`` (E,) int8: 1 for real nodes / edges.
    - ``action_mask`` (max_jobs,) int8: 1 for jobs with an unscheduled operation.
    - ``action_node`` (max_jobs,) int64: node of each job's next operation.

    ## Action
    ``Discrete(max_jobs)``: the job whose next operation is dispatched. A masked-out action (finished or
    padded job) is a no-op: reward ``-invalid_action_penalty``, ``info["invalid_action"] = True``, state
    unchanged. With ``strict=True`` it raises ``ValueError`` naming the action and the valid ones.

    ## Reward
    Minus the increase of the makespan lower bound, divided by ``time_scale`` (L2D-style). The episode
    return (without invalid actions) is ``-(makespan - initial lower bound) / time_scale``.

    ## Episode end
    Terminated when every operation is scheduled (``info["makespan"]`` is then set). Truncated after
    ``n_operations`` invalid actions in one episode, so unmasked random agents cannot loop forever.

    ## Arguments
    - ``instance``: a ``JobShopInstance``, a shipped benchmark name (``"ta01"``, ``"ft10"``) or a path to
      an instance file in the standard text format. Fixed for every episode.
    - ``dataset`` (default ``"jobshop/random-10x10"``), ``split`` (default ``"train"``): when no instance is
      given, each reset draws an instance from this dataset split with the env's seeded RNG.
    - ``max_jobs``, ``max_machines``: padding (defaults: the instance's or dataset's largest size).
    - ``strict`` (False), ``invalid_action_penalty`` (1.0), ``render_mode`` (``"ansi"`` or ``"rgb_array"``).
    - ``reset(options={"instance": inst})`` runs one episode on ``inst`` (it must fit the padding).

    ## Version history
    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    objective = "makespan"
    validator = staticmethod(validate_schedule)
    renderer = viewer

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        instance: JobShopInstance | str | None = None,
        dataset: str = "jobshop/random-10x10",
        split: str = "train",
        max_jobs: int | None = None,
        max_machines: int | None = None,
        strict: bool = False,
        invalid_action_penalty: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        a = self.merge_config(config, dict(
            instance=instance, dataset=dataset, split=split, max_jobs=max_jobs, max_machines=max_machines,
            strict=strict, invalid_action_penalty=invalid_action_penalty, render_mode=render_mode))
        instance, dataset, split, max_jobs, max_machines, strict, invalid_action_penalty, render_mode = a.values()
        self.check_render_mode(render_mode)
        self.render_mode = render_mode
        self.strict = bool(strict)
        self.invalid_action_penalty = float(invalid_action_penalty)
        self._fixed = _resolve_instance(instance) if instance is not None else None
        if self._fixed is not None:
            size = (self._fixed.n_jobs, self._fixed.n_ops_per_job)
            self._dataset, self._split = None, split
        else:
            self._dataset, self._split = datasets.parse(f"{dataset}:{split}")
            size = _dataset_size(self._dataset, self._split)
        self.max_jobs = int(max_jobs) if max_jobs is not None else size[0]
        self.max_machines = int(max_machines) if max_machines is not None else size[1]
        if self.max_jobs < size[0] or self.max_machines < size[1]:
            raise ValueError(f"max_jobs x max_machines = {self.max_jobs}x{self.max_machines} is smaller than "
                             f"the instances ({size[0]}x{size[1]})")
        n = self.max_jobs * self.max_machines
        self.graph_spec = GraphSpec(n, 2 * n, NODE_DIM, 2, self.max_jobs, action_node=True)
        self.observation_space = self.graph_spec.space(0.0, np.inf)
        self.action_space = spaces.Discrete(self.max_jobs)
        self._buf = self.graph_spec.zeros()
        self._bind_buffers()
        self._tables_for: JobShopInstance | None = None  # the instance whose static tables are cached
        self._lb = 0  # makespan lower bound of the current episode
        self.state: JobShopState | None = None

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        inst = (options or {}).get("instance")
        if inst is None:
            inst = self._fixed if self._fixed is not None else self._dataset.sample(self.np_random, self._split)
        elif not isinstance(inst, JobShopInstance):
            raise TypeError(f"options['instance'] must be a JobShopInstance, got {type(inst).__name__}")
        if inst.n_jobs > self.max_jobs or inst.n_ops_per_job > self.max_machines:
            raise ValueError(f"instance {inst.name} ({inst.n_jobs}x{inst.n_ops_per_job}) does not fit the padding "
                             f"max_jobs x max_machines = {self.max_jobs}x{self.max_machines}")
        self._start_episode(inst)
        return self._obs(), self._info(invalid=False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        st = self.state
        if st is None:
            raise RuntimeError("call reset() before step()")
        j = int(action)
        if not 0 <= j < self.max_jobs:
            raise ValueError(f"action {action!r} is outside the action space Discrete({self.max_jobs})")
        if not self._valid[j]:
            return self._invalid(j)
        k, m, _, e, prev = st.dispatch(j)
        self._encode_dispatch(j, k, m, e, prev)
        # Job j's bound (its completion + remaining work) only grows and no other job's changes, so the new
        # maximum over jobs is max(old maximum, job j's new bound).
        lb_j = e + self._work_after[j][k]
        new_lb = lb_j if lb_j > self._lb else self._lb
        reward = lower_bound_reward(self._lb, new_lb, self.time_scale)
        self._lb = new_lb
        terminated = st.done
        info = self._info(invalid=False)
        if terminated:
            info["makespan"] = st.makespan
        return self._obs(), reward, terminated, False, info

    # ------------------------------------------------------------------ schedgym API
    @property
    def instance(self) -> JobShopInstance:
        if self.state is None:
            raise RuntimeError("call reset() first")
        return self.state.instance

    def schedule(self) -> JobShopSchedule:
        return JobShopSchedule(self.instance.name, self.state.start.copy())  # type: ignore[union-attr]

    def validate(self) -> dict[str, int]:
        return validate_schedule(self.instance, self.state.start)  # type: ignore[union-attr]

    def action_masks(self) -> np.ndarray:
        return self._buf["action_mask"].astype(bool)

    # ------------------------------------------------------------------ encoding
    _BUFFER_REFS = ("_obs_keys", "_obs_bufs", "_nf", "_nf_flat", "_edge_index", "_edge_features",
                    "_edge_mask", "_action_mask", "_action_node")

    def _bind_buffers(self) -> None:
        """Direct references to (views of) the buffers, so the hot path does no dict lookups."""
        b = self._buf
        self._obs_keys, self._obs_bufs = tuple(b), tuple(b.values())
        self._nf, self._nf_flat = b["node_features"], b["node_features"].reshape(-1)
        self._edge_index, self._edge_features = b["edge_index"], b["edge_features"]
        self._edge_mask = b["edge_mask"]
        self._action_mask, self._action_node = b["action_mask"], b["action_node"]

    def __getstate__(self) -> dict[str, Any]:
        # Pickling would turn the views into independent arrays: drop them and rebind after loading.
        return {k: v for k, v in self.__dict__.items() if k not in self._BUFFER_REFS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind_buffers()

    def _start_episode(self, inst: JobShopInstance) -> None:
        self.state = JobShopState(inst)
        if inst is not self._tables_for:  # a fixed instance (or a repeated one) reuses its tables
            self._prepare_tables(inst)
        for buf, initial in zip(self._obs_bufs, self._initial_bufs, strict=True):
            np.copyto(buf, initial)
        self._n_invalid = 0
        self._n_edges = self._n_precedence
        self._valid = [1] * inst.n_jobs + [0] * (self.max_jobs - inst.n_jobs)  # mirrors action_mask
        self._lb = self._initial_lb

    def _prepare_tables(self, inst: JobShopInstance) -> None:
        """Static per-instance tables and the episode's initial observation buffers."""
        J, K, KK = inst.n_jobs, inst.n_ops_per_job, self.max_machines
        self.time_scale = ts = max(1.0, float(inst.durations.sum()) / inst.n_machines)
        self._inv_ts = 1.0 / ts
        dur = inst.durations.astype(np.float64)
        cum = np.cumsum(dur, axis=1)  # inclusive prefix sums per job
        self._cum = cum.tolist()
        total = cum[:, -1].astype(np.int64)
        self._work_after = (total[:, None] - cum.astype(np.int64)).tolist()  # work of ops k+1.. of job j
        self._initial_lb = int(total.max())
        b = self._buf
        for v in b.values():
            v.fill(0)
        nodes = (np.arange(J)[:, None] * KK + np.arange(K)[None, :]).ravel()
        nf = b["node_features"]
        work_left = dur[:, ::-1].cumsum(axis=1)[:, ::-1]
        nf[nodes, F_DURATION] = (dur / ts).ravel()
        nf[nodes, F_MACHINE] = (inst.machines / max(1, inst.n_machines - 1)).ravel()
        nf[nodes, F_LB] = (cum / ts).ravel()
        nf[nodes, F_WORK_LEFT] = (work_left / ts).ravel()
        nf[nodes, F_OPS_LEFT] = ((K - np.arange(K))[None, :].repeat(J, 0) / KK).ravel()
        nf[np.arange(J) * KK, F_NEXT] = 1.0
        b["node_mask"][nodes] = 1
        # Static precedence edges k -> k+1 fill the first slots; machine edges are appended after them.
        src = (np.arange(J)[:, None] * KK + np.arange(K - 1)[None, :]).ravel()
        self._n_precedence = p = src.size
        b["edge_index"][0, :p], b["edge_index"][1, :p] = src, src + 1
        b["edge_features"][:p, EDGE_PRECEDENCE] = 1.0
        b["edge_mask"][:p] = 1
        b["action_mask"][:J] = 1
        b["action_node"][:] = np.arange(self.max_jobs) * KK
        # Flat node_features positions of the machine-ready feature of every operation on each machine.
        self._machine_slots = [nodes[(inst.machines == m).ravel()] * NODE_DIM + F_MACHINE_READY
                               for m in range(inst.n_machines)]
        self._initial_bufs = tuple(v.copy() for v in self._obs_bufs)
        self._tables_for = inst

    def _encode_dispatch(self, j: int, k: int, m: int, e: int, prev: int) -> None:
        """Update the observation buffers in place after dispatching operation (j, k), ending at ``e``."""
        KK, K = self.max_machines, self.state.n_ops  # type: ignore[union-attr]
        node = j * KK + k
        nf, flat, inv = self._nf, self._nf_flat, self._inv_ts
        nf[node, F_SCHEDULED] = 1.0
        nf[node, F_NEXT] = 0.0
        # Completion lower bounds of this job's operations from k on: e, e + d_{k+1}, ... (column F_LB of
        # nodes node .. j*KK+K-1, strided in the flat buffer); Python floats round exactly like numpy's.
        cum = self._cum[j]
        shift = e - cum[k]
        flat[node * NODE_DIM + F_LB:(j * KK + K) * NODE_DIM:NODE_DIM] = [(c + shift) * inv for c in cum[k:]]
        flat[self._machine_slots[m]] = e * inv
        if k + 1 < K:
            nf[node + 1, F_NEXT] = 1.0
            self._action_node[j] = node + 1
        else:
            self._action_mask[j] = self._valid[j] = 0
        if prev >= 0:
            i = self._n_edges
            pj, pk = divmod(prev, K)
            self._edge_index[0, i] = pj * KK + pk
            self._edge_index[1, i] = node
            self._edge_features[i, EDGE_MACHINE] = 1.0
            self._edge_mask[i] = 1
            self._n_edges = i + 1

    def _invalid(self, j: int) -> tuple[dict, float, bool, bool, dict]:
        if self.strict:
            valid = np.flatnonzero(self._action_mask).tolist()
            raise ValueError(f"action {j} is masked out (job finished or padding); valid actions: {valid}")
        self._n_invalid += 1
        truncated = self._n_invalid >= self.state.n_jobs * self.state.n_ops  # type: ignore[union-attr]
        return self._obs(), -self.invalid_action_penalty, False, truncated, self._info(invalid=True)

    def _obs(self) -> dict[str, np.ndarray]:
        """Fresh copies of the buffers (callers may keep or modify them)."""
        return dict(zip(self._obs_keys, map(np.ndarray.copy, self._obs_bufs), strict=True))

    def _info(self, invalid: bool) -> dict[str, Any]:
        return {"action_mask": self._action_mask.copy(), "invalid_action": invalid, "makespan_lb": self._lb}


def _resolve_instance(instance: JobShopInstance | str) -> JobShopInstance:
    """A JobShopInstance, a shipped benchmark name, or a path to an instance file."""
    if isinstance(instance, JobShopInstance):
        return instance
    if isinstance(instance, str):
        if any(c in instance for c in "/\\.") or not instance.isalnum():
            return load_instance(instance)
        return load_benchmark(instance)
    raise TypeError(
        f"instance must be a JobShopInstance, a benchmark name or a file path, got {type(instance).__name__}"
    )


def _dataset_size(ds: datasets.Dataset, split: str) -> tuple[int, int]:
    """Largest (jobs, operations per job) in a dataset split, from its metadata or its instances."""
    if "max_size" in ds.meta:
        return ds.meta["max_size"]
    if ds.split_size(split) is None:
        insts = [ds.sample(np.random.default_rng(0), split)]
    else:
        insts = list(ds.instances(split))
    return max(i.n_jobs for i in insts), max(i.n_ops_per_job for i in insts)
