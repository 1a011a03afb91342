"""``schedgym/DAGDispatch-v0``: dispatch the ready tasks of arriving DAG jobs onto heterogeneous PEs."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym import datasets
from schedgym.envbase import SchedulingEnv
from schedgym.envs.dag import viewer
from schedgym.envs.dag.datasets import dataset_sizes, sizes_of
from schedgym.envs.dag.io import resolve_instance
from schedgym.envs.dag.observation import ObservationEncoder
from schedgym.envs.dag.reward import REWARDS, makespan_reward, slowdown_reward
from schedgym.envs.dag.sim import RUNNING, DagState
from schedgym.envs.dag.types import DagInstance, DagSchedule
from schedgym.envs.dag.validator import validate_schedule


class DAGDispatchEnv(SchedulingEnv):
    """Online dispatching of DAG jobs onto heterogeneous processing elements (DeepSoCS's problem).

    ## Description
    Jobs whose tasks form DAGs arrive (a batch, or a Poisson stream) at a platform of processing elements
    (PEs: big/LITTLE cores and accelerators, or CPUs and GPUs) with a task-type x PE-type execution-time table
    (some pairs unsupported) and per-link latency/bandwidth. A decision is due whenever a task is *ready*
    (all parents finished) and unassigned. The agent appends one ready task to one PE's FIFO queue (the PE may
    be busy) or waits for the next event. A queued task starts when it reaches the head of its queue and its
    inputs have arrived (``finish(parent) + latency + data / bandwidth`` across PEs) and runs for its expected
    time times an optional seeded noise factor (the agent only ever sees expected times). Because a PE may be
    given work ahead of time, an offline plan (HEFT, CPOP, ...) is executed exactly by emitting its tasks in
    planned-start order (see ``sim.py``). Objectives are recomputed by ``validate_schedule``.

    ## Observation
    schedgym's padded graph (``schedgym.graph``) with ``N = S + P + 1`` nodes: ``S = max_tasks`` task slots
    (tasks of admitted, unfinished jobs; slots are recycled when a job finishes), ``P = max_pes`` PE nodes and
    one system node; ``E = max_edges + S`` edge slots.

    - ``node_features`` (N, 14 + 2K) float32, ``K = max_pe_types``; times / ``time_scale``:
      0-2 node kind (task, PE, system); 3-7 task status one-hot (ready, waiting, queued, running = holds its
      PE, done; PE nodes: 6 = busy); 8 job progress (done fraction; PE: busy fraction so far; system: jobs
      done fraction); 9 data to move in (sum of in-edges' mean transfer time); 10 upward rank (HEFT rank_u);
      11 age of the job (system: elapsed time); 12 expected time left (assigned task: to its finish; PE: to
      drain its queue); 13 PE: committed tasks, system: jobs in the system; 14..14+K expected run time on each
      PE type (-1 = unsupported); 14+K..14+2K PE node: one-hot PE type.
    - ``edge_index`` (2, E) int64: DAG edges parent -> child of admitted jobs in slots ``[0, max_edges)``;
      task -> PE edges for queued/running tasks in slot ``max_edges + task slot``.
    - ``edge_features`` (E, 3) float32: [DAG edge, assignment edge, mean transfer time of the edge's data].
    - ``node_mask`` (N,), ``edge_mask`` (E,) int8.
    - ``action_mask`` (A,) int8, ``A = S * P + 1``: (slot, PE) pairs whose task is ready and supported there,
      and the wait action when an event is pending.
    - ``action_node`` (A,) int64: the task node of each pair action (the system node for wait);
      ``action_pe`` (A,) int64: the PE node of each pair (the system node for wait). A GNN scores action
      ``a`` from ``h[action_node[a]]`` and ``h[action_pe[a]]``.

    ## Action
    ``Discrete(S * P + 1)``: ``a = slot * P + pe`` appends the task in ``slot`` to PE ``pe``'s queue;
    ``a = S * P`` waits for the next event (completion or arrival). ``env.unwrapped.action_of(task, pe)`` and
    ``decode(a)`` convert. A masked-out action is a no-op: reward ``-invalid_action_penalty``,
    ``info["invalid_action"] = True``; with ``strict=True`` it raises ``ValueError`` naming the valid ones.

    ## Reward
    ``reward="slowdown"`` (default): minus the increase of the total job slowdown since the last decision
    (each job in the system accrues ``dt / cp_lower``), so the return is minus the sum of job slowdowns.
    ``reward="makespan"``: minus the clock advance / ``time_scale``; the return is
    ``-(makespan - first arrival) / time_scale``. Invalid actions add ``-invalid_action_penalty``.

    ## Episode end
    Terminated when every task of every job has finished (after the last assignment the clock runs to the
    end); the terminal ``info`` holds ``makespan``, ``mean_slowdown``, ``p99_slowdown``, ``utilisation``.
    Truncated after ``n_tasks`` invalid actions in one episode.

    ## Arguments
    - ``instance``: a ``DagInstance``, ``"topcuoglu"``, a shipped WfInstances name, or a path to an instance
      file (schedgym DAG JSON or WfFormat). Fixed for every episode.
    - ``dataset`` (default ``"dag/stream-layered"``), ``split`` (``"train"``): without an instance, each reset
      draws one from this dataset split with the env's seeded RNG.
    - ``noise`` (0.0): coefficient of variation of the log-normal (mean 1) runtime factor drawn per task at
      reset from the env's RNG.
    - ``reward`` (``"slowdown"`` or ``"makespan"``).
    - ``max_tasks``, ``max_edges``, ``max_pes``, ``max_pe_types``: padding (defaults: the instance's or
      dataset's sizes; ``max_tasks`` below the total admits jobs only when their tasks fit).
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
        instance: DagInstance | str | None = None,
        dataset: str = "dag/stream-layered",
        split: str = "train",
        noise: float = 0.0,
        reward: str = "slowdown",
        max_tasks: int | None = None,
        max_edges: int | None = None,
        max_pes: int | None = None,
        max_pe_types: int | None = None,
        strict: bool = False,
        invalid_action_penalty: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        a = self.merge_config(config, dict(
            instance=instance, dataset=dataset, split=split, noise=noise, reward=reward, max_tasks=max_tasks,
            max_edges=max_edges, max_pes=max_pes, max_pe_types=max_pe_types, strict=strict,
            invalid_action_penalty=invalid_action_penalty, render_mode=render_mode))
        (instance, dataset, split, noise, reward, max_tasks, max_edges, max_pes, max_pe_types, strict,
         invalid_action_penalty, render_mode) = a.values()
        self.check_render_mode(render_mode)
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if not (np.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a coefficient of variation >= 0, got {noise}")
        self.render_mode, self.reward_mode, self.noise = render_mode, reward, float(noise)
        self.strict, self.invalid_action_penalty = bool(strict), float(invalid_action_penalty)
        self._fixed = resolve_instance(instance) if instance is not None else None
        if self._fixed is not None:
            self._dataset, self._split = None, split
            size = sizes_of(self._fixed)
        else:
            self._dataset, self._split = datasets.parse(f"{dataset}:{split}")
            size = dataset_sizes(self._dataset, self._split)
        given = {
            "max_tasks": max_tasks,
            "max_edges": max_edges,
            "max_pes": max_pes,
            "max_pe_types": max_pe_types,
        }
        for k, v in given.items():
            if v is not None and int(v) < 1:
                raise ValueError(f"{k} must be >= 1, got {v}")
        self.max_tasks = int(max_tasks) if max_tasks is not None else size["max_tasks"]
        self.max_edges = int(max_edges) if max_edges is not None else max(1, size["max_edges"])
        self.max_pes = int(max_pes) if max_pes is not None else size["max_pes"]
        self.max_pe_types = int(max_pe_types) if max_pe_types is not None else size["max_pe_types"]
        if self._fixed is not None:
            self._check_fits(self._fixed)
        self.encoder = enc = ObservationEncoder(
            self.max_tasks, self.max_edges, self.max_pes, self.max_pe_types
        )
        self.n_nodes, self.system_node, self.wait_action = enc.n_nodes, enc.system_node, enc.wait_action
        self.observation_space = enc.space
        self.action_space = spaces.Discrete(enc.wait_action + 1)
        self._buf = enc.buf
        self.state: DagState | None = None

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        inst = (options or {}).get("instance")
        if inst is None and self._fixed is not None:
            inst = self._fixed
        elif inst is None:
            assert self._dataset is not None
            inst = self._dataset.sample(self.np_random, self._split)
        elif not isinstance(inst, DagInstance):
            raise TypeError(f"options['instance'] must be a DagInstance, got {type(inst).__name__}")
        self._check_fits(inst)
        self._start_episode(inst)
        return self._obs(), self._info(invalid=False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        st = self.state
        if st is None:
            raise RuntimeError("call reset() before step()")
        a, n = int(action), self.wait_action + 1
        if not 0 <= a < n:
            raise ValueError(f"action {action!r} is outside the action space Discrete({n})")
        if st.done or not self._buf["action_mask"][a]:
            return self._invalid(a)
        area, now = st.slowdown_area, st.now
        if a == self.wait_action:
            st.wait()
        else:
            st.assign(int(st.slot_task[a // self.max_pes]), a % self.max_pes)
            st.advance()
        if self.reward_mode == "slowdown":
            reward = slowdown_reward(area, st.slowdown_area)
        else:
            reward = makespan_reward(now, st.now, self.time_scale)
        self.encoder.encode(st)
        info = self._info(invalid=False)
        if st.done:
            info.update(self.metrics())
        return self._obs(), reward, st.done, False, info

    # ------------------------------------------------------------------ schedgym API
    @property
    def instance(self) -> DagInstance:
        if self.state is None:
            raise RuntimeError("call reset() first")
        return self.state.instance

    def schedule(self) -> DagSchedule:
        st = self.state
        if st is None:
            raise RuntimeError("call reset() first")
        known = st.status >= RUNNING
        return DagSchedule(
            st.instance.name,
            np.where(known, st.pe, -1),
            np.where(known, st.start, np.nan),
            np.where(known, st.finish, np.nan),
            st.noise.copy(),
        )

    def validate(self) -> dict[str, float]:
        return validate_schedule(self.instance, self.schedule())

    def action_masks(self) -> np.ndarray:
        return self._buf["action_mask"].astype(bool)

    def action_of(self, task: int, pe: int) -> int:
        """The action that appends ``task`` (global id in the instance) to PE ``pe``'s queue."""
        st = self.state
        if st is None:
            raise RuntimeError("call reset() first")
        s = int(st.task_slot[task])
        if s < 0 or not 0 <= pe < st.instance.n_pes:
            raise ValueError(
                f"task {task} has no observation slot (job not admitted or finished) or PE {pe} is "
                f"outside 0..{st.instance.n_pes - 1}"
            )
        return s * self.max_pes + pe

    def decode(self, action: int) -> tuple[int, int] | None:
        """``(task, pe)`` of a pair action (task -1 for an empty slot), ``None`` for the wait action."""
        if action == self.wait_action:
            return None
        return int(self.state.slot_task[action // self.max_pes]), action % self.max_pes  # type: ignore[union-attr]

    def metrics(self) -> dict[str, float]:
        """The env's own objectives of a finished episode (the harness compares them with the validator's)."""
        st = self.state
        if st is None or not st.done:
            raise RuntimeError("metrics() needs a finished episode")
        inst = st.instance
        resp = st.job_finish - inst.workload.job_arrival
        slow = resp / inst.cp_lower
        span = st.makespan - float(inst.workload.job_arrival.min())
        busy = float(np.nansum(st.finish - st.start))
        return {
            "makespan": st.makespan,
            "mean_slowdown": float(slow.mean()),
            "p99_slowdown": float(np.percentile(slow, 99)),
            "mean_response": float(resp.mean()),
            "utilisation": busy / (inst.n_pes * span) if span > 0 else 0.0,
        }

    # ------------------------------------------------------------------ episode set-up and encoding
    def _check_fits(self, inst: DagInstance) -> None:
        size = sizes_of(inst)
        if inst.n_pes > self.max_pes or inst.platform.n_pe_types > self.max_pe_types:
            raise ValueError(
                f"instance {inst.name} has {inst.n_pes} PEs of {inst.platform.n_pe_types} types; the "
                f"env pads to max_pes={self.max_pes}, max_pe_types={self.max_pe_types}"
            )
        if size["largest_job"] > self.max_tasks or size["largest_job_edges"] > self.max_edges:
            raise ValueError(
                f"instance {inst.name} has a job with {size['largest_job']} tasks and "
                f"{size['largest_job_edges']} edges; the env pads to max_tasks={self.max_tasks}, "
                f"max_edges={self.max_edges}"
            )

    def _start_episode(self, inst: DagInstance) -> None:
        t = inst.n_tasks
        if self.noise > 0:
            s2 = np.log1p(self.noise**2)
            noise = np.exp(self.np_random.normal(-s2 / 2, np.sqrt(s2), size=t))
        else:
            noise = np.ones(t)
        self._n_invalid = 0
        self.encoder.start(inst)
        self.time_scale = self.encoder.time_scale
        self.state = DagState(inst, noise, self.max_tasks, self.max_edges)
        self.encoder.encode(self.state)

    def _invalid(self, a: int) -> tuple[dict, float, bool, bool, dict]:
        valid = np.flatnonzero(self._buf["action_mask"]).tolist()
        if self.strict:
            what = "wait" if a == self.wait_action else f"(slot {a // self.max_pes}, PE {a % self.max_pes})"
            raise ValueError(
                f"action {a} = {what} is masked out (task not ready, PE does not support it, or "
                f"nothing to wait for); valid actions: {valid}"
            )
        self._n_invalid += 1
        truncated = self._n_invalid >= self.state.instance.n_tasks  # type: ignore[union-attr]
        return self._obs(), -self.invalid_action_penalty, False, truncated, self._info(invalid=True)

    def _obs(self) -> dict[str, np.ndarray]:
        return self.encoder.observation()

    def _info(self, invalid: bool) -> dict[str, Any]:
        st = self.state
        assert st is not None
        return {
            "action_mask": self._buf["action_mask"].copy(),
            "invalid_action": invalid,
            "time": st.now,
            "jobs_in_system": len(st.in_system),
        }
