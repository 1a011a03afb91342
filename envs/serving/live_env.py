"""``schedgym/LLMServingLive-v0``: the LLMServing routing task against real torch engines (registered
``nondeterministic=True``: wall-clock timing differs run to run)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym import datasets
from schedgym.envbase import SchedulingEnv, action_index
from schedgym.envs.serving import catalog, features
from schedgym.envs.serving.cluster import cost_model, instance_plan, request_limit
from schedgym.envs.serving.generator import sample_classes
from schedgym.envs.serving.live_run import CATALOG_MODELS, LiveRun, prefix_block_tokens, scale_tokens
from schedgym.envs.serving.live_workflows import next_stage
from schedgym.envs.serving.metrics import aggregate
from schedgym.envs.serving.reward import REWARDS, step_reward, tally
from schedgym.envs.serving.types import (
    SLO,
    START_MIGRATE_IN,
    ClusterSpec,
    EngineConfig,
    InstanceSpec,
    ServingSchedule,
    ServingWorkload,
)
from schedgym.envs.serving.validator import validate_schedule
from schedgym.graph import GraphSpec


class LLMServingLiveEnv(SchedulingEnv):
    """Request placement on a live cluster of real transformer engines (torch, CPU or CUDA).

    ## Description
    The ``LLMServing-v0`` task with the simulator replaced by real engines (``schedgym.hwbackend``): each
    engine is a Llama-style transformer with seeded random weights, a paged KV cache and the simulator's
    continuous-batching policy (max batch, max batched tokens, chunked prefill, recompute or swap preemption),
    running its iteration loop in a background thread in this process (``backend="thread"``) or in a Ray
    actor (``backend="ray"``, one per GPU or one CPU process each). Arrivals are replayed in real time from
    the trace (``rate_scale`` times faster); each step dispatches the arriving request to a real engine and
    sleeps until the next arrival. If an engine dies, its unfinished requests are re-dispatched to the live
    engine with the fewest outstanding requests (``info["redispatched"]``). Wall-clock timing makes episodes
    non-deterministic (the id is registered ``nondeterministic=True``); routing decisions and the trace
    window remain seeded. Also reachable as ``gym.make("schedgym/LLMServing-v0", backend="live", ...)``
    (``envs/serving/backends.py``; there this env's ``backend`` argument is spelled ``engine_backend``).
    Priority classes and workflows as in ``LLMServing-v0``: each engine orders its waiting queue by the
    simulator's ``queue_policy`` (``queueing.py``: FCFS, earliest workflow deadline, or priority class), and
    with a workflow workload (``serving/text2sql-r<rate>``) a stage is dispatched only once its parents have
    finished on the engines, its arrival being that release (``live_workflows.py``).

    ## Observation
    The ``LLMServing-v0`` observation (``features.router_features``), built from the engines' polled
    statistics (waiting, running, used KV blocks, pending prefill tokens, running context, last decode
    iteration time) and static specs; the prefill-time edge feature comes from the calibration table when
    one is given (else 0).

    ## Action
    ``Discrete(N)``: the engine that serves the arriving request; masked-out engines (request longer than
    the context limit / KV capacity, or a dead engine) follow the ``LLMServing-v0`` rules (penalty + no-op,
    or ``ValueError`` with ``strict=True``).

    ## Reward
    As ``LLMServing-v0`` (``reward.py``): ``"slo"``, ``"ttft"`` or ``"latency"``, computed from the real
    per-request times polled from the engines.

    ## Episode end
    Terminated after the last request is dispatched and every engine has drained (bounded by
    ``drain_timeout_s``). ``info`` then carries every metric of ``metrics.aggregate`` (per class with several SLO
    classes; ``deadline_attainment`` with workflows); ``validate()`` runs the
    simulator's independent validator on the real event log (without the TTFT >= modelled-prefill bound,
    which measured times need not satisfy).

    ## Arguments
    - ``instance`` / ``dataset`` / ``split`` / ``segment_requests`` (default 24) / ``rate_scale`` (default 4.0):
      as ``LLMServing-v0``.
    - ``token_scale`` (default 0.05): prompt and output lengths are multiplied by this (rounded, >= 1) so real
      trace shapes fit a small model on a CPU; 1.0 replays them unchanged. Prefix hashes are kept
      (``scale_tokens``).
    - ``n_engines`` (2), ``model`` (``"tiny"``, ``"small"``, ``"1b"`` or a ``ModelConfig`` dict), ``engine``
      (``EngineConfig`` fields; ``preemption`` ``"recompute"`` or ``"swap"``; ``queue_policy`` ``"fcfs"``,
      ``"edf"`` or ``"priority"``; ``prefix_caching``: real shared KV blocks keyed by the workload's prefix
      hashes, whose ``round(512 x token_scale)``-token blocks must be a multiple of ``block_size``, e.g.
      ``token_scale=1/32`` with 16; ``hwbackend/prefix_cache.py``),
      ``num_blocks`` (256 KV blocks per engine), ``context_limit`` (512 tokens), ``device``
      (``"cpu"``/``"cuda"``), ``threads`` (torch threads per engine, 1), ``backend`` (``"thread"``/``"ray"``),
      ``calibration`` (a calibration table path: the prefill-time feature and the instances' cost model for
      the validator; also the cost model ``deadline_aware`` reads), ``drain_timeout_s`` (120), ``weights_seed``
      (0: the engines' random weights and synthetic prompt token ids).
    - ``slo``, ``class_probs``, ``reward``, ``strict``, ``invalid_action_penalty``: as ``LLMServing-v0``.
    - ``migration``: ``LLMServing-v0``'s option (``None``, ``"llumnix"``, ``"llumnix-priority"`` or
      ``MigrationConfig`` fields): on its timer the driver runs the simulator's ``migration.llumnix_moves`` on
      the polled engine state, and the chosen running requests' real KV blocks move between engines
      (``hwbackend/kv_transfer.py``; ``live_mechanisms.py``). ``decider="agent"`` is simulator-only (ValueError).
    - ``disagg``: ``LLMServing-v0``'s option (``"1p1d"``, ``{"n_prefill": P, "link_gbps": ...}``): engines
      0..P-1 prefill (the action mask allows only them); after its first token each request's KV moves to the
      decode engine ``disagg.place_decode`` picks. Every engine runs the same model on the one device (the live
      env has no per-instance GPU types). A moved request resumes no sooner than its blocks cross the
      configured link; ``info["kv_transfers"]`` counts the moves, the validator checks them as migrations.

    ## Version history
    - v0: initial version; ``migration`` and ``disagg`` added (off by default).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    objective = "p99_ttft"

    def __init__(self, config: dict[str, Any] | None = None, *, instance: ServingWorkload | str | None = None,
                 dataset: str = "serving/azure-conv-2023", split: str = "train", segment_requests: int | None = 24,
                 rate_scale: float = 4.0, token_scale: float = 0.05, n_engines: int = 2, model: Any = "tiny",
                 engine: dict[str, Any] | None = None, num_blocks: int = 256, context_limit: int = 512,
                 device: str = "cpu", threads: int | None = 1, backend: str = "thread",
                 calibration: str | None = None, drain_timeout_s: float = 120.0,
                 slo: dict[str, Any] | SLO | None = None, class_probs: list[float] | None = None, reward: str = "slo",
                 strict: bool = False, invalid_action_penalty: float = 1.0, render_mode: str | None = None,
                 weights_seed: int = 0, migration: Any = None, disagg: Any = None) -> None:
        args = {k: v for k, v in locals().items() if k not in ("self", "config", "__class__")}
        args = self.merge_config(config, args)
        if args["reward"] not in REWARDS:
            raise ValueError(f"reward must be one of {list(REWARDS)}, got {args['reward']!r}")
        if args["backend"] not in ("thread", "ray"):
            raise ValueError(f"backend must be 'thread' or 'ray', got {args['backend']!r}")
        if not (float(args["token_scale"]) > 0 and math.isfinite(float(args["token_scale"]))):
            raise ValueError(f"token_scale must be a finite number > 0, got {args['token_scale']!r}")
        if not (float(args["rate_scale"]) > 0 and math.isfinite(float(args["rate_scale"]))):
            raise ValueError(f"rate_scale must be a finite number > 0, got {args['rate_scale']!r}")
        if int(args["n_engines"]) < 1:
            raise ValueError(f"n_engines must be >= 1, got {args['n_engines']!r}")
        self.check_render_mode(args["render_mode"])
        from schedgym.hwbackend.model import ModelConfig
        self.model_cfg = ModelConfig.from_any(args["model"])
        mname = args["model"] if isinstance(args["model"], str) else None
        if mname is not None and mname not in CATALOG_MODELS:
            raise ValueError(f"model {mname!r}: expected one of {sorted(CATALOG_MODELS)} or a ModelConfig dict")
        cat_model = CATALOG_MODELS.get(mname or "", "schedgym-tiny")
        gpu = "CPU" if args["device"] == "cpu" else "H100-80GB"
        self.a = args
        ecfg = EngineConfig.from_dict({**(args["engine"] or {}), "num_gpu_blocks": int(args["num_blocks"])})
        spec = InstanceSpec(gpu, cat_model, 1, int(args["context_limit"]), args["calibration"])
        slo_ = args["slo"]
        slo_ = slo_ if isinstance(slo_, SLO) or slo_ is None else SLO(**slo_)
        self.cluster = ClusterSpec((spec,) * int(args["n_engines"]), ecfg, slo_ or SLO(), args["migration"],
                                   args["disagg"])
        from schedgym.envs.serving.live_mechanisms import LiveMechanisms, check_live_config
        check_live_config(self.cluster)
        self._mech: LiveMechanisms | None = None
        cp = args["class_probs"]
        self.class_probs = None if cp is None else tuple(float(p) for p in cp)
        if self.class_probs is not None and len(self.class_probs) != self.cluster.slo.n_classes:
            raise ValueError(f"class_probs has {len(self.class_probs)} entries but the SLO defines "
                             f"{self.cluster.slo.n_classes} class(es)")
        plan = instance_plan(spec, ecfg)
        self._block_bytes = plan.block_bytes
        self._limit = request_limit(spec, ecfg, plan)
        self._cost = cost_model(spec, ecfg) if args["calibration"] else None
        N = self.cluster.n_instances
        g = catalog.gpu(gpu)
        self._static = np.array([[plan.num_blocks, ecfg.block_size, g.peak_flops / 1e12, g.hbm_bw / 1e12,
                                  g.price_per_hour, spec.context_limit]] * N, np.float64)
        self._encoder = features.FeatureEncoder(self._static)
        self._buf = features.empty_buffers(N)
        self.graph_spec = GraphSpec(N + 1, 2 * N, features.NODE_DIM, features.EDGE_DIM, N, action_node=True)
        self.observation_space = self.graph_spec.space(0.0, np.inf)
        self.action_space = spaces.Discrete(N)
        self.render_mode = args["render_mode"]
        self.strict = bool(args["strict"])
        self._fixed = None
        if args["instance"] is not None:
            from schedgym.envs.serving.env import _resolve_instance
            self._fixed = _resolve_instance(args["instance"])
        else:
            datasets.parse(f"{args['dataset']}:{args['split']}")
        self.live = None
        self.state: LiveRun | None = None

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.close()
        w = (options or {}).get("instance") or self._fixed or self._sample()
        w = scale_tokens(w.scaled(float(self.a["rate_scale"])), float(self.a["token_scale"]))
        if self.class_probs is not None:
            w = w.with_priority(sample_classes(self.np_random, w.n_requests, self.class_probs))
        if int(w.priority.max()) >= self.cluster.slo.n_classes:
            raise ValueError(f"workload {w.name} has priority class {int(w.priority.max())} but the SLO defines only "
                             f"{self.cluster.slo.n_classes} class(es)")
        from schedgym.hwbackend.cluster import LiveCluster
        a = self.a
        ecfg = {k: getattr(self.cluster.engine, k) for k in ("block_size", "max_num_seqs", "max_num_batched_tokens",
                                                             "chunked_prefill", "preemption", "watermark",
                                                             "swap_space_gb", "queue_policy", "prefix_caching")}
        bt = prefix_block_tokens(w, self.cluster.engine, float(a["token_scale"]))
        self.live = LiveCluster(self.cluster.n_instances, self.model_cfg.to_dict(), ecfg, int(a["num_blocks"]),
                                int(a["context_limit"]), mode=a["backend"], seed=int(a["weights_seed"]),
                                device=a["device"],
                                threads=a["threads"], prefix_block_tokens=bt)
        self.live.start_clock()
        self.state = LiveRun(w, self.cluster, self.cluster.n_instances, self._static, self._cost)
        if self.cluster.migration is not None or self.cluster.disagg is not None:
            from schedgym.envs.serving.live_mechanisms import LiveMechanisms
            self._mech = LiveMechanisms(self.state, self.live, self.cluster, self._block_bytes, self._limit)
        self._feasible = (w.prompt_tokens + w.output_tokens) <= self._limit
        self._next = 0
        self._tally = 0.0
        self._n_invalid = 0
        self._request = self._advance()
        if self._request is None:
            raise ValueError(f"no request of {w.name} fits the engines' limit of {self._limit} tokens")
        return self._obs(), self._info(False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        run = self.state
        if run is None or self.live is None:
            raise RuntimeError("call reset() before step()")
        a = action_index(action, self.cluster.n_instances)
        if self._request is None:
            raise RuntimeError("the episode has ended; call reset()")
        if not self._buf["action_mask"][a]:
            valid = np.flatnonzero(self._buf["action_mask"]).tolist()
            if self.strict:
                raise ValueError(f"action {a} is masked out for request {self._request}; valid actions: {valid}")
            self._n_invalid += 1
            trunc = self._n_invalid >= run.workload.n_requests
            return self._obs(), -float(self.a["invalid_action_penalty"]), False, trunc, self._info(True)
        self._dispatch(self._request, a)
        self._next += 1
        self._request = self._advance()
        terminated = self._request is None
        if terminated:
            self._drain()
        current = tally(self.a["reward"], run, run.now)
        reward = step_reward(self._tally, current, run.workload.n_requests)
        self._tally = current
        obs = self._obs(final=terminated)
        info = self._info(False)
        if terminated:
            info.update(self.metrics())
            self.close()
        return obs, reward, terminated, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.state is None:
            return None
        stats = self._stats
        return "\n".join(f"engine {i}: waiting {int(s[0])} running {int(s[1])} kv {int(s[3])}/{int(self._static[i, 0])}"
                         for i, s in enumerate(stats))

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
            self.live = None

    # ------------------------------------------------------------------ schedgym API
    @property
    def instance(self) -> ServingWorkload:
        if self.state is None:
            raise RuntimeError("call reset() first")
        return self.state.workload

    def schedule(self) -> ServingSchedule:
        return self.state.schedule()  # type: ignore[union-attr]

    def validate(self) -> dict[str, Any]:
        return validate_schedule(self.instance, self.schedule(), check_prefill_bound=False)

    def action_masks(self) -> np.ndarray:
        return self._buf["action_mask"].astype(bool)

    def metrics(self) -> dict[str, float]:
        run = self.state
        w = run.workload  # type: ignore[union-attr]
        first_alloc = np.full(w.n_requests, np.nan)
        counts = np.zeros(w.n_requests, np.int64)
        for _, r in sorted(run.res, key=lambda x: -x[1][1]):  # type: ignore[union-attr]
            first_alloc[r[0]] = r[1]
            counts[r[0]] += r[6] != START_MIGRATE_IN  # a migrated-in stint is a move, not a preemption
        out = aggregate(run.arrival, run.first_token, run.finish, first_alloc, w.prompt_tokens,  # type: ignore
                        w.output_tokens, w.priority, np.maximum(counts - 1, 0), self.cluster.slo.ttft_s,
                        self.cluster.slo.tpot_s, run.busy, self._static[:, 4])  # type: ignore[union-attr]
        out["migrations"] = float(sum(r[6] == START_MIGRATE_IN for _, r in run.res))  # type: ignore[union-attr]
        if w.workflows is not None:  # stages arrive when released: their parents finished
            out["deadline_attainment"] = w.workflows.attainment(w.arrival, run.finish)  # type: ignore[union-attr]
        return out

    # ------------------------------------------------------------------ internals
    def _sample(self) -> ServingWorkload:
        ds = datasets.get(self.a["dataset"])
        sampler = ds.meta.get("sampler", {}).get(self.a["split"])
        if self.a["segment_requests"] is not None and sampler is not None:
            return sampler(self.np_random, int(self.a["segment_requests"]))
        return ds.sample(self.np_random, self.a["split"])

    def _clock(self) -> float:
        return time.time() - self.live.epoch  # type: ignore[union-attr]

    def _poll(self) -> None:
        run, live = self.state, self.live
        polls = live.poll()  # type: ignore[union-attr]
        self._stats = run.live  # type: ignore[union-attr]
        self._stats[:] = 0.0
        for i, p in enumerate(polls):
            if p is not None:
                run.absorb(i, p)  # type: ignore[union-attr]
                self._stats[i] = p["stats"]
                if self._mech is not None:
                    self._mech.absorb(i, p)
        run.now = self._clock()  # type: ignore[union-attr]
        if self._mech is not None:
            self._mech.tick(run.now)
        self._redispatch_dead()

    def _dispatch(self, r: int, i: int) -> None:
        run = self.state
        run.routed[r] = run.where[r] = i  # type: ignore[union-attr]
        w = run.workload  # type: ignore[union-attr]
        hs = w.hashes(r).tolist() if self.cluster.engine.prefix_caching else None
        if not self.live.submit(i, r, int(w.prompt_tokens[r]), int(w.output_tokens[r]),  # type: ignore[union-attr]
                                int(w.priority[r]), float(run.deadline[r]), hs):  # type: ignore[union-attr]
            self._redispatch_dead()

    def _redispatch_dead(self) -> None:
        """Requests on dead engines that have not finished go to the live engine with the fewest outstanding."""
        run, live = self.state, self.live
        dead = np.flatnonzero(~live.alive)  # type: ignore[union-attr]
        if dead.size == 0:
            return
        if not live.alive.any():  # type: ignore[union-attr]
            raise RuntimeError(f"every engine of the live cluster has died: {live.errors}")  # type: ignore
        lost = np.flatnonzero(np.isin(run.where, dead) & np.isnan(run.finish))  # type: ignore[union-attr]
        for r in lost:
            old = int(run.where[r])  # type: ignore[union-attr]
            outstanding = np.bincount(run.routed[(run.routed >= 0) & np.isnan(run.finish)],  # type: ignore
                                      minlength=self.cluster.n_instances).astype(float)
            outstanding[~live.alive] = np.inf  # type: ignore[union-attr]
            new = int(np.argmin(outstanding))
            run.res = [(i, x) for i, x in run.res if x[0] != r]  # type: ignore[union-attr]  # every stint: it restarts
            run.moved_to.pop(int(r), None)  # type: ignore[union-attr]
            run.first_token[r] = np.nan  # type: ignore[union-attr]
            run.redispatched.append((int(r), old, new))  # type: ignore[union-attr]
            self._dispatch(int(r), new)

    def _advance(self) -> int | None:
        """Wait (in real time) for the next servable arrival; rejected ones are recorded on the way."""
        run = self.state
        w = run.workload  # type: ignore[union-attr]
        if run.stages is not None:  # type: ignore[union-attr]
            return next_stage(run, run.stages, self._feasible, self._clock, self._poll)  # type: ignore[union-attr]
        while self._next < w.n_requests:
            r = self._next
            while (delay := w.arrival[r] - self._clock()) > 0:
                time.sleep(delay if self._mech is None else min(delay, self._mech.wait_s(self._clock())))
                if self._mech is not None:
                    self._poll()
            self._poll()
            if self._feasible[r]:
                run.next_req = r  # type: ignore[union-attr]
                return r
            run.rejected.append(r)  # type: ignore[union-attr]
            self._next += 1
        return None

    def _drain(self) -> None:
        run = self.state
        deadline = time.time() + float(self.a["drain_timeout_s"])
        routed = run.routed >= 0  # type: ignore[union-attr]
        while np.isnan(run.finish[routed]).any():  # type: ignore[union-attr]
            if time.time() > deadline:
                left = np.flatnonzero(routed & np.isnan(run.finish)).tolist()  # type: ignore[union-attr]
                raise RuntimeError(f"live cluster did not finish requests {left[:10]} within "
                                   f"{self.a['drain_timeout_s']} s")
            time.sleep(0.005)
            self._poll()
        run.now = max(run.now, float(np.nanmax(run.finish)) if routed.any() else run.now)  # type: ignore

    def _obs(self, final: bool = False) -> dict[str, np.ndarray]:
        N = self.cluster.n_instances
        alive = self.live.alive if self.live is not None else np.zeros(N, bool)
        if final or self._request is None:
            self._encoder.encode(self._stats, features.RequestView(0, 0, 0.0, 0.0), np.zeros(N), np.zeros(N),
                                 np.zeros(N, np.int8), self._buf)
        else:
            w, r = self.state.workload, self._request  # type: ignore[union-attr]
            c = int(w.priority[r])
            p = int(w.prompt_tokens[r])
            pre = np.full(N, self._cost.prefill_time(p) if self._cost is not None else 0.0)
            feas = (alive & bool(self._feasible[r])).astype(np.int8)
            if self._mech is not None:
                feas &= self._mech.routable  # disaggregated: arrivals go to the prefill pool
            self._encoder.encode(self._stats, features.RequestView(p, c, self.cluster.slo.ttft_s[c],
                                                                   self.cluster.slo.tpot_s[c]),
                                 pre, self.state.prefix_hits(r), feas, self._buf)  # type: ignore[union-attr]
        return {k: v.copy() for k, v in self._buf.items()}

    def _info(self, invalid: bool) -> dict[str, Any]:
        run = self.state
        return {"action_mask": self._buf["action_mask"].copy(), "invalid_action": invalid, "time": run.now,
                "request": -1 if self._request is None else self._request,
                "n_routed": int((run.routed >= 0).sum()), "n_finished": run.n_finished,
                "n_slo_met": run.n_slo_ok, "n_rejected": len(run.rejected),
                "redispatched": list(run.redispatched), **(self._mech.info() if self._mech is not None else {})}
