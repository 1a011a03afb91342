"""``schedgym/LLMServing-v0``: route each arriving LLM request to a model instance of a simulated cluster."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym import datasets
from schedgym.envbase import SchedulingEnv, action_index
from schedgym.envs.serving import catalog, features, viewer
from schedgym.envs.serving.cluster import check_cluster, cost_models, resolve_cluster
from schedgym.envs.serving.generator import sample_classes
from schedgym.envs.serving.io import TRACES, load_trace, load_trace_file
from schedgym.envs.serving.metrics import aggregate
from schedgym.envs.serving.migration import move_features, move_slots
from schedgym.envs.serving.reward import REWARDS, step_reward, tally
from schedgym.envs.serving.sim import TICK, ClusterSim
from schedgym.envs.serving.types import SLO, ClusterSpec, EngineConfig, ServingSchedule, ServingWorkload
from schedgym.envs.serving.validator import validate_schedule
from schedgym.graph import GraphSpec

ESTIMATES = ("none", "oracle", "noisy")


class LLMServingEnv(SchedulingEnv):
    """Request placement in a simulated LLM-serving cluster (vLLM-style engines, real traces).

    ## Description
    A cluster of model instances (GPU type, model, tensor-parallel degree) serves a stream of LLM requests
    (real traces or synthetic arrivals). At each arrival the agent picks the instance that serves it. Each
    instance runs continuous batching with a paged KV cache, preemption and optional chunked prefill
    (``sim.py``); iteration times come from a roofline cost model fitted to measured GPU operator timings,
    or from a calibration table (``costmodel.py``). Between decisions the simulator skips ahead event by
    event; after the last arrival it drains, so every request's latency is final. Requests that no instance
    can ever hold (prompt + output above every instance's limit) are rejected without a decision and count
    as SLO misses (``info["n_rejected"]``).

    ## Observation
    The padded graph of ``schedgym.graph`` (built by ``features.router_features``), ``N`` instances:

    - ``node_features`` (N+1, 20) float32: nodes 0..N-1 are instances (queue lengths, running batch, KV used
      fraction and free tokens, pending prefill tokens, running context, current decode step time, GPU peak
      FLOP/s, bandwidth, price, context limit), node N is the arriving request (prompt tokens, output-length
      estimate if configured, priority class, its TTFT/TPOT SLOs). See ``features.py`` for columns/scales.
    - ``edge_index`` (2, 2N) int64: request -> each instance, then each instance -> request.
    - ``edge_features`` (2N, 4) float32: the request's prefill time alone on the instance (s), prefix-cache hit
      fraction there, feasible flag, direction.
    - ``node_mask`` (N+1,) int8, ``edge_mask`` (2N,) int8: all ones.
    - ``action_mask`` (N,) int8: 1 for instances that can hold the request (prompt + output within the
      instance's context limit and KV capacity; the router is told the token budget, as a server is told a
      request's ``max_tokens``). ``action_node`` (N,) int64: instance i is node i.

    The true output length is never observed unless ``output_estimate`` is ``"oracle"`` (exact) or
    ``"noisy"`` (exact x lognormal noise of sigma ``estimate_noise``); with ``"none"`` (default) it is 0.

    With ``migration="agent"`` (a second decision point, Llumnix's migration on a timer) the graph grows by
    one node per candidate-move slot (``M = N (N-1) K``, ``K = candidates_per_pair``, default 2; slot ``j``
    is the ``c``-th cheapest running request of ``src`` that ``dst`` can hold, ``migration.move_slots``):
    ``node_features`` (N+1+M, 26) adds ``features.MOVE_COLS`` (``is_tick`` on node N at a tick; on move nodes
    ``is_move``, KV tokens / 1e4, tokens generated / 1e3, KV transfer time over the link (s), priority);
    ``edge_features`` (2N+4M, 6) adds ``move_src``/``move_dst`` flags on the edges move <-> source and
    move <-> destination; move nodes and their edges are masked out except at a tick, where only slots
    with a candidate are present. ``info["decision"]`` is ``"route"``, ``"migrate"`` or ``"done"``.

    ## Action
    ``Discrete(N)``: the instance that serves the arriving request. A masked-out instance is a no-op: reward
    ``-invalid_action_penalty``, ``info["invalid_action"] = True``, state unchanged; with ``strict=True`` it
    raises ``ValueError`` naming the action and the valid ones.

    With ``migration="agent"``: ``Discrete(N + M + 1)``. At an arrival (``info["decision"] == "route"``)
    actions ``0..N-1`` route as above. Every ``interval_s`` of simulated time at which some running request
    can move (a *tick*, ``"migrate"``), action ``N + j`` migrates candidate ``j`` (its KV blocks leave at the
    source's next iteration boundary and travel over the link; it resumes on the destination with its
    tokens kept) and ``N + M`` is "no migration"; up to ``max_per_tick`` moves per tick (a source with a
    migration pending offers no further candidate), "no migration" ends the tick. Masked: slots without a
    candidate (nothing running on the source, a migration already pending there, or no running request
    the destination can hold). Plain routers answer ticks with "no migration"; ``llumnix_migration`` plays
    the built-in Llumnix rule.

    ## Reward
    ``reward`` (``reward.py``): ``"slo"`` (default) = minus the SLO misses settled during the step / number
    of requests, so the return is ``slo_attainment - 1``; ``"ttft"`` = minus the time requests spent waiting
    for their first token during the step / number of requests (return = -mean TTFT, s); ``"latency"`` =
    the same for time in the system (return = -mean end-to-end latency, s).

    ## Episode end
    Terminated after the last request is routed and the cluster has drained. ``info`` then carries every
    metric (``metrics.aggregate``): p50/p90/p99 of TTFT, TPOT, end-to-end latency and queueing delay, SLO
    attainment, goodput, throughput, utilisation, preemptions, cost per million tokens; the objective is
    ``p99_ttft`` (recomputed by ``validate_schedule`` from the event log). Truncated after ``n_requests``
    invalid actions in one episode.

    ## Arguments
    - ``instance``: a ``ServingWorkload``, a trace name (``"azure-conv-2023"``) or a trace file; fixed for
      every episode. Otherwise ``dataset`` (default ``"serving/azure-conv-2023"``) and ``split`` (``"train"``):
      each reset draws a window of ``segment_requests`` (default 128; ``None`` = the dataset's own instances)
      consecutive requests with the env's seeded RNG.
    - ``rate_scale`` (default 4.0): arrivals are replayed this many times faster (applied to every workload).
    - ``cluster``: preset name (``cluster.CLUSTERS``, default ``"mixed-4"``: 2 x H100, A100, L4 with
      Llama-3-8B) or a list of instance specs (``"GPU/MODEL[/tpN][/lenL]"`` or dicts with ``calibration``).
    - ``engine``: ``EngineConfig`` fields (block size 16, max_num_seqs 256, chunked_prefill False,
      preemption ``"recompute"``/``"swap"``, prefix_caching, num_gpu_blocks, ...).
    - ``migration``: live migration of running requests (Llumnix; ``migration.py``): ``None`` (default, off),
      ``"llumnix"``/``"llumnix-priority"`` (the simulator's timer runs Llumnix's rule), ``"agent"`` (the agent
      decides at each tick, see Action) or a dict of ``MigrationConfig`` fields, e.g.
      ``{"decider": "agent", "interval_s": 0.5, "candidates_per_pair": 1}``.
    - ``disagg``: disaggregated prefill/decode pools (DistServe/Splitwise; ``disagg.py``): ``None`` (default),
      ``"1p1d"``/``"2p2d"``/``"3p1d"`` or ``{"n_prefill": P, "link_gbps": ...}``; the first P instances prefill
      (the action picks among them), the rest decode (placed by the simulator).
    - ``interference``, ``iteration_noise`` (default False): iteration times vary as measured on the live host
      the calibration tables were fitted to (``variability.py``; every instance needs such a table, written by
      ``schedgym calibrate --from-live``): slowed by the measured factor for the number of other engines
      computing, and multiplied by a seeded draw of the measured per-iteration jitter. Table times otherwise.
    - ``slo``: ``{"ttft_s": [...], "tpot_s": [...]}`` per priority class (default one class: 2 s, 0.2 s);
      ``class_probs``: probabilities to draw each request's class (default: all class 0).
    - ``output_estimate`` (``"none"``/``"oracle"``/``"noisy"``), ``estimate_noise`` (0.5), ``reward``,
      ``strict`` (False), ``invalid_action_penalty`` (1.0), ``render_mode`` (``"ansi"``, ``"rgb_array"``).
    - ``reset(options={"instance": workload})`` runs one episode on ``workload``.

    ## Version history
    - v0: initial version; ``migration`` and ``disagg`` options added (off by default, so v0 episodes are unchanged);
      ``migration="agent"`` adds the migration decision point (default observation and action unchanged);
      ``interference`` and ``iteration_noise`` added (off by default).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    objective = "p99_ttft"
    validator = staticmethod(validate_schedule)
    renderer = viewer

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        instance: ServingWorkload | str | None = None,
        dataset: str = "serving/azure-conv-2023",
        split: str = "train",
        segment_requests: int | None = 128,
        rate_scale: float = 4.0,
        cluster: str | list | tuple = "mixed-4",
        engine: dict[str, Any] | EngineConfig | None = None,
        slo: dict[str, Any] | SLO | None = None,
        migration: str | dict[str, Any] | None = None,
        disagg: str | dict[str, Any] | None = None,
        interference: bool = False,
        iteration_noise: bool = False,
        class_probs: tuple[float, ...] | list[float] | None = None,
        output_estimate: str = "none",
        estimate_noise: float = 0.5,
        reward: str = "slo",
        strict: bool = False,
        invalid_action_penalty: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        args = dict(instance=instance, dataset=dataset, split=split, segment_requests=segment_requests,
                    rate_scale=rate_scale, cluster=cluster, engine=engine, slo=slo, migration=migration, disagg=disagg,
                    interference=interference, iteration_noise=iteration_noise, class_probs=class_probs,
                    output_estimate=output_estimate, estimate_noise=estimate_noise, reward=reward, strict=strict,
                    invalid_action_penalty=invalid_action_penalty, render_mode=render_mode)
        args = self.merge_config(config, args)
        self.check_render_mode(args["render_mode"])
        if args["reward"] not in REWARDS:
            raise ValueError(f"reward must be one of {list(REWARDS)}, got {args['reward']!r}")
        if args["output_estimate"] not in ESTIMATES:
            raise ValueError(f"output_estimate must be one of {list(ESTIMATES)}, got {args['output_estimate']!r}")
        if not float(args["estimate_noise"]) >= 0:
            raise ValueError(f"estimate_noise must be >= 0, got {args['estimate_noise']}")
        seg = args["segment_requests"]
        if seg is not None and (not isinstance(seg, (int, np.integer)) or seg < 1):
            raise ValueError(f"segment_requests must be an integer >= 1 or None, got {seg!r}")
        if not (float(args["rate_scale"]) > 0 and np.isfinite(float(args["rate_scale"]))):
            raise ValueError(f"rate_scale must be a finite number > 0, got {args['rate_scale']!r}")
        self.render_mode = args["render_mode"]
        self.strict = bool(args["strict"])
        self.invalid_action_penalty = float(args["invalid_action_penalty"])
        self.reward_kind = args["reward"]
        self.output_estimate = args["output_estimate"]
        self.estimate_noise = float(args["estimate_noise"])
        self.segment_requests = None if seg is None else int(seg)
        self.rate_scale = float(args["rate_scale"])
        slo_ = args["slo"]
        slo_ = slo_ if isinstance(slo_, SLO) or slo_ is None else SLO(**slo_)
        self.cluster = ClusterSpec(resolve_cluster(args["cluster"]), EngineConfig.from_dict(args["engine"]),
                                   slo_ or SLO(), args["migration"], args["disagg"],
                                   args["interference"], args["iteration_noise"])
        self.class_probs = None if args["class_probs"] is None else tuple(float(p) for p in args["class_probs"])
        if self.class_probs is not None and len(self.class_probs) != self.cluster.slo.n_classes:
            raise ValueError(f"class_probs has {len(self.class_probs)} entries but the SLO defines "
                             f"{self.cluster.slo.n_classes} class(es)")
        self._plans = check_cluster(self.cluster)
        self._costs = cost_models(self.cluster)
        unique = list({id(c): c for c in self._costs}.values())  # identical instances share a cost model
        self._unique_costs = unique
        self._cost_index = np.array([next(j for j, u in enumerate(unique) if u is c) for c in self._costs])
        self._pcie = [catalog.gpu(s.gpu).pcie_bw for s in self.cluster.instances]
        self._fixed = _resolve_instance(args["instance"]) if args["instance"] is not None else None
        self._dataset_name, self._split = args["dataset"], args["split"]
        if self._fixed is None:
            datasets.parse(f"{self._dataset_name}:{self._split}")  # validates name and split now
        N = self.cluster.n_instances
        self.graph_spec = GraphSpec(N + 1, 2 * N, features.NODE_DIM, features.EDGE_DIM, N, action_node=True)
        mig = self.cluster.migration
        self._moves = None  # the migration decision point (``migration.decider == "agent"``)
        if mig is not None and mig.decider == "agent":
            m = self._moves = features.MoveEncoder(N, move_slots(N, mig.candidates_per_pair))
            self.graph_spec = GraphSpec(m.n_nodes, m.n_edges, m.node_dim, m.edge_dim, m.n_actions, action_node=True)
        self.observation_space = self.graph_spec.space(0.0, np.inf)
        self.action_space = spaces.Discrete(self.graph_spec.n_actions)
        self._n_actions = self.graph_spec.n_actions
        self._static = np.array([[p.num_blocks, self.cluster.engine.block_size,
                                  catalog.gpu(s.gpu).peak_flops * s.tp / 1e12, catalog.gpu(s.gpu).hbm_bw * s.tp / 1e12,
                                  catalog.gpu(s.gpu).price_per_hour * s.tp, s.context_limit]
                                 for s, p in zip(self.cluster.instances, self._plans, strict=True)], np.float64)
        self._encoder = features.FeatureEncoder(self._static)
        self._prefill_memo: dict[int, np.ndarray] = {}
        self._buf = features.empty_buffers(N)
        self._out = self._buf if self._moves is None else self._moves.empty_buffers()  # what obs are copied from
        self.state: ClusterSim | None = None

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        w = (options or {}).get("instance")
        if w is None:
            w = self._fixed if self._fixed is not None else self._sample()
        elif not isinstance(w, ServingWorkload):
            raise TypeError(f"options['instance'] must be a ServingWorkload, got {type(w).__name__}")
        w = w.scaled(self.rate_scale)
        if self.class_probs is not None:
            w = w.with_priority(sample_classes(self.np_random, w.n_requests, self.class_probs))
        self._estimates = None
        if self.output_estimate == "oracle":
            self._estimates = w.output_tokens.astype(np.float64)
        elif self.output_estimate == "noisy":
            noise = self.np_random.standard_normal(w.n_requests)
            self._estimates = w.output_tokens * np.exp(self.estimate_noise * noise)
        noise_seed = int(self.np_random.integers(2**63)) if self.cluster.iteration_noise else 0
        self.state = sim = ClusterSim(w, self.cluster, self._costs, self._plans, self._pcie, noise_seed)
        self._n_invalid = 0
        self._tally = 0.0
        self._request = sim.next_decision()
        if self._request is None:
            raise ValueError(f"no instance of the cluster can serve any request of {w.name} "
                             f"(request limits per instance: {sim.limit.tolist()})")
        return self._obs(), self._info(False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        sim = self.state
        if sim is None:
            raise RuntimeError("call reset() before step()")
        a = action_index(action, self._n_actions)
        if self._request is None:
            raise RuntimeError("the episode has ended; call reset()")
        if self._request == TICK:
            if not self._out["action_mask"][a]:
                return self._invalid(a)
            if a == self._n_actions - 1:
                sim.end_tick()
            else:
                sim.migrate(a - self.cluster.n_instances)
            if sim.tick is None:
                self._request = sim.next_decision()
        else:
            if a >= self.cluster.n_instances or not sim.feasible[self._request, a]:
                return self._invalid(a)
            sim.route(self._request, a)
            self._request = sim.next_decision()
        terminated = self._request is None
        if terminated:
            sim.drain()
        current = tally(self.reward_kind, sim, sim.now)
        reward = step_reward(self._tally, current, len(sim.arrival))
        self._tally = current
        obs = self._final_obs() if terminated else self._obs()
        info = self._info(False)
        if terminated:
            info.update(self.metrics())
        return obs, reward, terminated, False, info

    # ------------------------------------------------------------------ schedgym API
    @property
    def instance(self) -> ServingWorkload:
        if self.state is None:
            raise RuntimeError("call reset() first")
        return self.state.workload

    def schedule(self) -> ServingSchedule:
        return self.state.schedule()  # type: ignore[union-attr]

    def validate(self) -> dict[str, Any]:
        return validate_schedule(self.instance, self.schedule())

    def action_masks(self) -> np.ndarray:
        return self._out["action_mask"].astype(bool)

    def metrics(self) -> dict[str, float]:
        """Every aggregate metric from the simulator's own per-request record (the validator recomputes them)."""
        sim = self.state
        w = sim.workload  # type: ignore[union-attr]
        first_alloc = np.full(w.n_requests, np.nan)
        for r, alloc, *_ in reversed(sim.res_log):  # type: ignore[union-attr]
            first_alloc[r] = alloc
        busy = np.array([e.busy_time for e in sim.engines])  # type: ignore[union-attr]
        arrival = np.array(sim.arrival)  # with workflows, a stage arrives when released
        out = aggregate(arrival, np.array(sim.first_token), np.array(sim.finish), first_alloc, w.prompt_tokens,
                        w.output_tokens, w.priority, np.array(sim.preemptions), self.cluster.slo.ttft_s,
                        self.cluster.slo.tpot_s, busy, self._static[:, 4])
        out["migrations"] = float(sum(sim.migrations))  # type: ignore[union-attr]
        if w.workflows is not None:  # stages arrive when released: their parents finished
            out["deadline_attainment"] = w.workflows.attainment(w.arrival, np.array(sim.finish))  # type: ignore[union-attr]
        return out

    # ------------------------------------------------------------------ internals
    def _sample(self) -> ServingWorkload:
        ds = datasets.get(self._dataset_name)
        sampler = ds.meta.get("sampler", {}).get(self._split)
        if self.segment_requests is not None and sampler is not None:
            return sampler(self.np_random, self.segment_requests)
        return ds.sample(self.np_random, self._split)

    def _obs(self) -> dict[str, np.ndarray]:
        sim, r = self.state, self._request
        if r == TICK:
            return self._tick_obs()
        p = sim.prompt[r]  # type: ignore[union-attr]
        c = sim.cls[r]  # type: ignore[union-attr]
        slo = self.cluster.slo
        est = None if self._estimates is None else float(self._estimates[r])
        view = features.RequestView(p, c, slo.ttft_s[c], slo.tpot_s[c], est)
        prefill = self._prefill_memo.get(p)
        if prefill is None:  # memoised per prompt length: the request alone on each instance
            alone = np.array([cm.prefill_time(p) for cm in self._unique_costs])
            prefill = self._prefill_memo[p] = alone[self._cost_index]
        self._encoder.encode(sim.live_stats(), view, prefill, sim.prefix_hits(r), sim.feasible[r],  # type: ignore[union-attr]
                             self._buf)
        if self._moves is not None:
            self._moves.encode(self._buf, None, self._out)
        return {k: v.copy() for k, v in self._out.items()}

    def _tick_obs(self) -> dict[str, np.ndarray]:
        """A migration tick: instance nodes current, the tick node (node N) flagged, one node per candidate."""
        sim = self.state
        live = sim.live_stats()  # type: ignore[union-attr]
        z = np.zeros(len(live))
        self._encoder.encode(live, features.RequestView(0, 0, 0.0, 0.0), z, z, z.astype(np.int8), self._buf)
        self._moves.encode(self._buf, move_features(sim), self._out)  # type: ignore[union-attr,arg-type]
        return {k: v.copy() for k, v in self._out.items()}

    def _final_obs(self) -> dict[str, np.ndarray]:
        """After the drain there is no arriving request: instance nodes are current, the request node is zero."""
        b = self._buf
        live = self.state.live_stats()  # type: ignore[union-attr]
        self._encoder.encode(live, features.RequestView(0, 0, 0.0, 0.0), np.zeros(len(live)), np.zeros(len(live)),
                             np.zeros(len(live), np.int8), b)
        b["action_mask"][:] = 0
        if self._moves is not None:
            self._moves.encode(b, None, self._out)
        return {k: v.copy() for k, v in self._out.items()}

    def _invalid(self, a: int) -> tuple[dict, float, bool, bool, dict]:
        valid = np.flatnonzero(self._out["action_mask"]).tolist()
        if self.strict:
            what = "no such candidate migration at this tick" if self._request == TICK else \
                f"that instance cannot hold request {self._request}"
            raise ValueError(f"action {a} is masked out ({what}); valid actions: {valid}")
        self._n_invalid += 1
        truncated = self._n_invalid >= len(self.state.arrival)  # type: ignore[union-attr]
        return {k: v.copy() for k, v in self._out.items()}, -self.invalid_action_penalty, False, truncated, \
            self._info(True)

    def _info(self, invalid: bool) -> dict[str, Any]:
        """Running metrics: simulated time, counts, and TTFT / SLO attainment of the requests settled so far."""
        sim = self.state
        assert sim is not None
        info = {"action_mask": self._out["action_mask"].copy(), "invalid_action": invalid, "time": sim.now,
                "request": -1 if self._request is None else self._request,
                "n_routed": sim.settled - len(sim.rejected), "n_finished": sim.n_finished,
                "n_slo_met": sim.n_slo_ok, "n_rejected": len(sim.rejected),
                "mean_ttft_so_far": sim.ttft_done / sim.n_first if sim.n_first else 0.0,
                "slo_attainment_so_far": sim.n_slo_ok / sim.n_finished if sim.n_finished else 1.0}
        if self._moves is not None:
            info["decision"] = "migrate" if self._request == TICK else "done" if self._request is None else "route"
        return info


def _resolve_instance(instance: ServingWorkload | str) -> ServingWorkload:
    """A workload, a shipped trace name, or a trace file path."""
    if isinstance(instance, ServingWorkload):
        return instance
    if isinstance(instance, str):
        if instance in TRACES:
            return load_trace(instance)
        return load_trace_file(instance)
    raise TypeError(f"instance must be a ServingWorkload, a trace name or a file path, got {type(instance).__name__}")

