"""``schedgym/Provisioning-v0``: how many GPUs of each type to run for a trace and an SLO (Mélange)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym import datasets
from schedgym.envbase import SchedulingEnv, action_index
from schedgym.envs.provisioning import viewer
from schedgym.envs.provisioning.types import GPU_SLOTS, ProvisioningSchedule
from schedgym.envs.provisioning.validator import penalty, validate_provisioning
from schedgym.envs.serving import catalog
from schedgym.envs.serving.cluster import cost_model, instance_plan
from schedgym.envs.serving.provisioning import PROVISIONING_PRESETS, ProvisioningProblem, serve
from schedgym.envs.serving.types import InstanceSpec
from schedgym.graph import GraphSpec

GPU_COLS = ("is_gpu", "offered", "count", "count_frac", "price", "peak_pflops", "hbm_tbps", "memory_100gb",
            "kv_tokens", "cap")
WORKLOAD_COLS = ("is_workload", "requests", "rate", "prompt_mean", "prompt_p90", "output_mean", "output_p90",
                 "ttft_slo", "tpot_slo", "target", "cost_so_far", "gpus_so_far")
EDGE_COLS = ("direction", "prefill_s", "decode_step_s")
NODE_DIM, EDGE_DIM = len(GPU_COLS) + len(WORKLOAD_COLS), len(EDGE_COLS)


@dataclass
class ProvisioningState:
    """The problem, the allocation so far (per problem GPU type) and, once served, the simulated episode."""

    problem: ProvisioningProblem
    counts: np.ndarray
    sim: Any = None
    result: dict[str, float] | None = None


class ProvisioningEnv(SchedulingEnv):
    """Heterogeneous GPU provisioning for LLM serving (Mélange): pick a GPU count per type, pay its $/hour.

    ## Description
    A problem (``ProvisioningProblem``) is a request trace, a model, candidate GPU types with their
    $/hour (``catalog``), a cap per type, an SLO (TTFT, TPOT) and an attainment target. The agent adds GPUs
    one at a time, then provisions; the env then serves the trace on that cluster in the LLM-serving
    simulator (one single-GPU instance per GPU, routed by speed-weighted JSQ, ``serving/provisioning.py``)
    and scores the allocation: its cost per hour, penalised if the SLO attainment misses the target. Mélange's
    point: a mix of types can meet the target cheaper than any single type on a mixed-length trace.

    ## Observation
    The padded graph of ``schedgym.graph``, ``T = 5`` GPU-type slots (``types.GPU_SLOTS``: L4, A10G,
    A100-80GB, H100-80GB, H200) and one workload node:

    - ``node_features`` (T+1, 22) float32: GPU nodes ``0..T-1`` fill ``GPU_COLS`` (offered by the problem,
      count so far, count / cap, $/h / 10, peak PFLOP/s, HBM TB/s, memory / 100 GB, KV capacity for the model
      / 1e5 tokens, cap); node T fills ``WORKLOAD_COLS`` (requests / 1e3, arrival rate / 10 per s, prompt
      mean and p90 / 1e4, output mean and p90 / 1e3, TTFT SLO s, TPOT SLO x 10, target, $/h so far / 100,
      GPUs so far / 10).
    - ``edge_index`` (2, 2T) int64: workload -> each GPU type, then back; ``edge_features`` (2T, 3):
      direction, prefill time of the mean prompt on one GPU of the type (s), decode step of 32 sequences at
      the mean context (s).
    - ``node_mask`` (T+1,), ``edge_mask`` (2T,) int8: types the problem does not offer are masked out.
    - ``action_mask`` (T+1,) int8; ``action_node`` (T+1,) int64: action i < T is node i, action T node T.

    ## Action
    ``Discrete(T + 1)``: ``i < T`` adds one GPU of type ``GPU_SLOTS[i]`` (valid while the problem offers it,
    the model fits it, and its count is below the cap); ``T`` provisions (valid once at least one GPU is
    allocated). A masked-out action is a no-op: reward ``-invalid_action_penalty``,
    ``info["invalid_action"] = True``; with ``strict=True`` it raises ``ValueError`` naming the valid ones.

    ## Reward
    0 while adding; on provisioning, ``-penalized_cost_per_hour / scale`` where ``scale`` is the penalty
    (the price of every offered type at its cap): the return is in [-2, 0), and any allocation that meets
    the target beats every one that misses it.

    ## Episode end
    Terminated after provisioning (or when every offered type is at its cap). ``info`` then carries
    ``penalized_cost_per_hour`` (the objective, recomputed by ``validate_provisioning`` from the allocation
    and the serving log), ``cost_per_hour``, ``slo_attainment``, ``meets_target``, ``p99_ttft``, ``p99_tpot``.
    Truncated after 100 invalid actions.

    ## Arguments
    - ``instance``: a ``ProvisioningProblem`` or a preset name (``"melange"``), fixed for every episode;
      otherwise ``dataset`` (default ``"provisioning/azure-conv-2023"``) and ``split`` (``"train"``).
    - ``strict`` (False), ``invalid_action_penalty`` (1.0), ``render_mode`` (``"ansi"``).

    ## Version history
    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    objective = "penalized_cost_per_hour"
    validator = staticmethod(validate_provisioning)
    renderer = viewer

    def __init__(self, config: dict[str, Any] | None = None, *, instance: ProvisioningProblem | str | None = None,
                 dataset: str = "provisioning/azure-conv-2023", split: str = "train", strict: bool = False,
                 invalid_action_penalty: float = 1.0, render_mode: str | None = None) -> None:
        args = dict(instance=instance, dataset=dataset, split=split, strict=strict,
                    invalid_action_penalty=invalid_action_penalty, render_mode=render_mode)
        args = self.merge_config(config, args)
        self.check_render_mode(args["render_mode"])
        self.render_mode = args["render_mode"]
        self.strict = bool(args["strict"])
        self.invalid_action_penalty = float(args["invalid_action_penalty"])
        inst = args["instance"]
        if isinstance(inst, str):
            if inst not in PROVISIONING_PRESETS:
                raise ValueError(f"unknown provisioning preset {inst!r}; expected one of "
                                 f"{sorted(PROVISIONING_PRESETS)}")
            inst = PROVISIONING_PRESETS[inst]()
        if inst is not None and not isinstance(inst, ProvisioningProblem):
            raise TypeError(f"instance must be a ProvisioningProblem or a preset name, got {type(inst).__name__}")
        self._fixed = inst
        self._dataset_name, self._split = args["dataset"], args["split"]
        if inst is None:
            datasets.parse(f"{self._dataset_name}:{self._split}")
        T = len(GPU_SLOTS)
        self.graph_spec = GraphSpec(T + 1, 2 * T, NODE_DIM, EDGE_DIM, T + 1, action_node=True)
        self.observation_space = self.graph_spec.space(0.0, np.inf)
        self.action_space = spaces.Discrete(T + 1)
        self.state: ProvisioningState | None = None
        self._buf = self.graph_spec.zeros()

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        p = (options or {}).get("instance")
        if p is None:
            p = self._fixed if self._fixed is not None else datasets.get(self._dataset_name).sample(
                self.np_random, self._split)
        if not isinstance(p, ProvisioningProblem):
            raise TypeError(f"options['instance'] must be a ProvisioningProblem, got {type(p).__name__}")
        bad = [g for g in p.gpus if g not in GPU_SLOTS]
        if bad:
            raise ValueError(f"problem {p.name}: GPU type(s) {bad} have no slot; expected types among "
                             f"{list(GPU_SLOTS)}")
        self.state = ProvisioningState(p, np.zeros(len(p.gpus), np.int64))
        self._slot = np.array([GPU_SLOTS.index(g) for g in p.gpus])
        self._n_invalid = 0
        self._static(p)
        return self._obs(), self._info(False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        st = self.state
        if st is None:
            raise RuntimeError("call reset() before step()")
        a = action_index(action, len(GPU_SLOTS) + 1)
        if st.result is not None:
            raise RuntimeError("the episode has ended; call reset()")
        if not self._buf["action_mask"][a]:
            return self._invalid(a)
        if a < len(GPU_SLOTS):
            st.counts[int(np.flatnonzero(self._slot == a)[0])] += 1
        if a == len(GPU_SLOTS) or not self._addable().any():
            self._provision()
            obs = self._obs()
            return obs, -st.result[self.objective] / self._scale, True, False, {**self._info(False), **st.result}
        return self._obs(), 0.0, False, False, self._info(False)

    # ------------------------------------------------------------------ schedgym API
    @property
    def instance(self) -> ProvisioningProblem:
        if self.state is None:
            raise RuntimeError("call reset() first")
        return self.state.problem

    def schedule(self) -> ProvisioningSchedule:
        st = self.state
        return ProvisioningSchedule(st.problem.gpus, st.counts.copy(),  # type: ignore[union-attr]
                                    None if st.sim is None else st.sim.schedule())  # type: ignore[union-attr]

    def validate(self) -> dict[str, Any]:
        return validate_provisioning(self.instance, self.schedule())

    def action_masks(self) -> np.ndarray:
        return self._buf["action_mask"].astype(bool)

    # ------------------------------------------------------------------ internals
    def _static(self, p: ProvisioningProblem) -> None:
        """Per-episode constants: which types fit the model, their KV capacity and speed, the workload summary."""
        T = len(GPU_SLOTS)
        w = p.workload
        self._fits = np.zeros(len(p.gpus), bool)
        nf = np.zeros((T + 1, NODE_DIM), np.float32)
        ef = np.zeros((2 * T, EDGE_DIM), np.float32)
        ef[T:, 0] = 1.0
        mean_p, mean_o = float(w.prompt_tokens.mean()), float(w.output_tokens.mean())
        for k, g in enumerate(p.gpus):
            spec, i, gs = InstanceSpec(g, p.model), self._slot[k], catalog.gpu(g)
            try:
                kv = instance_plan(spec, p.engine).num_blocks * p.engine.block_size
            except ValueError:
                continue  # the model does not fit this type: never offered
            self._fits[k] = True
            cm = cost_model(spec, p.engine)
            nf[i, :10] = (1, 1, 0, 0, gs.price_per_hour / 10, gs.peak_flops / 1e15, gs.hbm_bw / 1e12,
                          gs.memory_bytes / 1e11, kv / 1e5, p.max_per_type)
            ef[[i, T + i], 1] = cm.prefill_time(max(1, int(mean_p)))
            ef[[i, T + i], 2] = cm.iteration_time(0, 32, int(32 * (mean_p + mean_o / 2)))
        rate = (w.n_requests - 1) / w.duration if w.duration > 0 else 0.0
        nf[T, 10:20] = (1, w.n_requests / 1e3, rate / 10, mean_p / 1e4, np.percentile(w.prompt_tokens, 90) / 1e4,
                        mean_o / 1e3, np.percentile(w.output_tokens, 90) / 1e3, p.slo.ttft_s[0],
                        p.slo.tpot_s[0] * 10, p.target)
        b = self._buf
        b["node_features"][:] = nf
        b["edge_features"][:] = ef
        b["edge_index"][:] = np.array([[T] * T + list(range(T)), list(range(T)) + [T] * T])
        b["node_mask"][:] = 0
        b["node_mask"][self._slot[self._fits]] = 1
        b["node_mask"][T] = 1
        b["edge_mask"][:] = np.tile(b["node_mask"][:T], 2)
        b["action_node"][:] = np.arange(T + 1)
        self._scale = penalty(p)

    def _addable(self) -> np.ndarray:
        st = self.state
        return self._fits & (st.counts < st.problem.max_per_type)  # type: ignore[union-attr]

    def _obs(self) -> dict[str, np.ndarray]:
        st, b, T = self.state, self._buf, len(GPU_SLOTS)
        p, counts = st.problem, st.counts  # type: ignore[union-attr]
        nf = b["node_features"]
        nf[self._slot, 2] = counts
        nf[self._slot, 3] = counts / p.max_per_type
        nf[T, 20] = p.price(tuple(counts.tolist())) / 100
        nf[T, 21] = counts.sum() / 10
        mask = b["action_mask"]
        mask[:] = 0
        if st.result is None:  # type: ignore[union-attr]
            mask[self._slot[self._addable()]] = 1
            mask[T] = counts.sum() > 0
        return {k: v.copy() for k, v in b.items()}

    def _provision(self) -> None:
        """Serve the trace on the allocation; score it from the simulator's own tallies."""
        st = self.state
        p = st.problem  # type: ignore[union-attr]
        counts = tuple(st.counts.tolist())  # type: ignore[union-attr]
        sim = st.sim = serve(p, counts)  # type: ignore[union-attr]
        att = sim.n_slo_ok / len(sim.arrival)
        cost = p.price(counts)
        meets = att >= p.target
        st.result = {"penalized_cost_per_hour": cost if meets else cost + self._scale,  # type: ignore[union-attr]
                     "cost_per_hour": cost, "slo_attainment": att, "meets_target": float(meets)}

    def _invalid(self, a: int) -> tuple[dict, float, bool, bool, dict]:
        valid = np.flatnonzero(self._buf["action_mask"]).tolist()
        if self.strict:
            raise ValueError(f"action {a} is masked out (type not offered, at its cap, or nothing to provision yet); "
                             f"valid actions: {valid}")
        self._n_invalid += 1
        return {k: v.copy() for k, v in self._buf.items()}, -self.invalid_action_penalty, False, \
            self._n_invalid >= 100, self._info(True)

    def _info(self, invalid: bool) -> dict[str, Any]:
        st = self.state
        return {"action_mask": self._buf["action_mask"].copy(), "invalid_action": invalid,
                "counts": st.counts.copy(), "cost_so_far": st.problem.price(tuple(st.counts.tolist()))}  # type: ignore[union-attr]
