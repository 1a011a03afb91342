"""What a serving router knows, in the shapes the gym's policies expect.

- ``ReplicaSpec``: one replica's engine (model preset, engine config, KV blocks, context limit, device) and
  the router-visible facts derived from it exactly as ``LLMServingLive-v0`` derives them: the static feature
  row (``features.STATIC``) and the largest servable request (``cluster.request_limit``).
- ``RouterState`` / ``RouterEnv``: a read-only view with the part of ``ClusterSim``'s public API that the
  serving baselines read (``next_req``, ``now``, ``live_stats()``, ``outstanding()``, ``engines[i]``
  (``total_blocks``, ``snapshot``, ``incoming``, ``incoming_blocks``, ``holds_class``), ``cluster``,
  ``workload.hashes``, ``prompt``), filled from replica statistics. Every baseline of
  ``schedgym/LLMServing-v0`` then runs unchanged behind a real router: one copy of each heuristic.
- ``load_policy``: a baseline by name or an exported ``.onnx`` policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from schedgym.envs.serving import catalog, features
from schedgym.envs.serving.cluster import instance_plan, request_limit
from schedgym.envs.serving.types import SLO, ClusterSpec, EngineConfig, InstanceSpec

SERVING = "schedgym/LLMServing-v0"
ENGINE_KEYS = ("block_size", "max_num_seqs", "max_num_batched_tokens", "chunked_prefill", "preemption", "watermark")


@dataclass(frozen=True)
class ReplicaSpec:
    """One serving replica's engine; JSON-friendly fields so it travels in Serve deployment arguments."""

    model: str | dict[str, Any] = "tiny"
    engine: dict[str, Any] = field(default_factory=dict)
    num_blocks: int = 256
    context_limit: int = 512
    device: str = "cpu"
    threads: int = 1
    weights_seed: int = 0

    def __post_init__(self) -> None:
        from schedgym.envs.serving.live_run import CATALOG_MODELS

        if isinstance(self.model, str) and self.model not in CATALOG_MODELS:
            raise ValueError(f"model {self.model!r}: expected one of {sorted(CATALOG_MODELS)} or a ModelConfig dict")
        if self.num_blocks < 1 or self.context_limit < 2:
            raise ValueError(f"num_blocks must be >= 1 and context_limit >= 2, got {self.num_blocks}, "
                             f"{self.context_limit}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self.request_limit()  # validates the engine config and the KV plan here, not inside a replica
        if self.engine_config.prefix_caching:
            raise ValueError("ReplicaSpec.engine.prefix_caching: served requests carry prompt token ids, not the "
                             "prefix-block hashes the live prefix cache is keyed by; expected prefix_caching=False")

    @property
    def engine_config(self) -> EngineConfig:
        return EngineConfig.from_dict({**self.engine, "num_gpu_blocks": int(self.num_blocks)})

    @property
    def instance(self) -> InstanceSpec:
        from schedgym.envs.serving.live_run import CATALOG_MODELS

        cat = CATALOG_MODELS.get(self.model if isinstance(self.model, str) else "", "schedgym-tiny")
        return InstanceSpec("CPU" if self.device == "cpu" else "H100-80GB", cat, 1, int(self.context_limit), None)

    def live_engine_config(self) -> dict[str, Any]:
        """The ``LiveEngine`` engine dict (as ``LLMServingLive-v0`` builds it)."""
        ecfg = self.engine_config
        return {k: getattr(ecfg, k) for k in ENGINE_KEYS}

    def static_row(self) -> list[float]:
        """``features.STATIC`` columns, as ``LLMServingLive-v0`` computes them."""
        spec, ecfg = self.instance, self.engine_config
        plan = instance_plan(spec, ecfg)
        g = catalog.gpu(spec.gpu)
        return [float(plan.num_blocks), float(ecfg.block_size), g.peak_flops / 1e12, g.hbm_bw / 1e12,
                g.price_per_hour, float(spec.context_limit)]

    def request_limit(self) -> int:
        """Largest prompt + output tokens one request may have (context limit, KV capacity, token budget)."""
        spec, ecfg = self.instance, self.engine_config
        return request_limit(spec, ecfg, instance_plan(spec, ecfg))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "engine": dict(self.engine), "num_blocks": self.num_blocks,
                "context_limit": self.context_limit, "device": self.device, "threads": self.threads,
                "weights_seed": self.weights_seed}


class EngineView:
    """``ClusterSim.engines[i]`` as the baselines read it: capacity and a statistics snapshot (``owner`` has
    ``static`` and ``live`` arrays: a ``RouterState`` or the live env's ``LiveRun``)."""

    def __init__(self, owner: Any, i: int) -> None:
        self._owner, self._i = owner, i
        self.incoming = 0          # requests in flight between instances (no migration behind a router)
        self.incoming_blocks = 0
        self.cost: Any = None      # the instance's cost model, where the owner has one (a calibrated live env)

    @property
    def total_blocks(self) -> int:
        return int(self._owner.static[self._i, 0])

    def snapshot(self, t: float | None = None) -> tuple[float, ...]:
        return tuple(float(x) for x in self._owner.live[self._i])

    def holds_class(self, c: int) -> bool:
        return False  # one priority class behind this router

    def prefix_match(self, hashes: list[int]) -> int:
        """Leading ``hashes`` in the engine's prefix cache as it last published it (``owner.cached``; none
        behind a router)."""
        cached = getattr(self._owner, "cached", None)
        if cached is None:
            return 0
        c, n = cached[self._i], 0
        while n < len(hashes) and hashes[n] in c:
            n += 1
        return n


class _NoPrefix:
    """Requests carry no prefix-block hashes here (prefix-cache affinity is not modelled by the router)."""

    @staticmethod
    def hashes(r: int) -> np.ndarray:
        return np.zeros(0, np.int64)


class RouterState:
    """The baselines' view of the replicas behind a router (one pending request, ``next_req`` = 0)."""

    def __init__(self, n: int, block_size: int, slo: SLO | None = None) -> None:
        self.n = n
        self.cluster = ClusterSpec((InstanceSpec("CPU", "schedgym-tiny", 1, 512, None),) * n,
                                   EngineConfig.from_dict({"block_size": int(block_size)}), slo or SLO())
        self.live = np.zeros((n, len(features.LIVE)))
        self.static = np.ones((n, len(features.STATIC)))
        self.engines = [EngineView(self, i) for i in range(n)]
        self.workload = _NoPrefix()
        self.prompt = np.zeros(1, np.int64)
        self.next_req = 0
        self.now = 0.0

    def update(self, live: np.ndarray, static: np.ndarray, prompt_tokens: int, now: float) -> None:
        bs = int(static[0, 1])
        if bs != self.cluster.engine.block_size:  # the replicas' block size, once their stats say it
            self.cluster = replace(self.cluster, engine=EngineConfig.from_dict({"block_size": bs}))
        self.live[:] = live
        self.static[:] = static
        self.prompt[0] = prompt_tokens
        self.now = now

    def live_stats(self, t: float | None = None) -> np.ndarray:
        return self.live.copy()

    def outstanding(self) -> np.ndarray:
        return self.live[:, 0] + self.live[:, 1] + self.live[:, 2]


class RouterEnv:
    """The env object a baseline's ``reset(env, seed)`` receives: ``env.unwrapped.state`` is a ``RouterState``."""

    def __init__(self, state: RouterState) -> None:
        self.state = state

    @property
    def unwrapped(self) -> RouterEnv:
        return self


def load_policy(spec: str, seed: int = 0) -> Any:
    """A ``schedgym.Policy`` for routing: an ``.onnx`` file or a ``schedgym/LLMServing-v0`` baseline name.

    A baseline is tried once on a ``RouterState`` first: one that reads simulator state a live router does
    not have (a cost model, workflow deadlines, ...) is refused here with the attribute it missed, rather than
    failing on every request."""
    if spec.endswith(".onnx"):
        from schedgym.agents.onnx import OnnxPolicy

        return OnnxPolicy(spec, name=spec.rsplit("/", 1)[-1].removesuffix(".onnx"))
    import schedgym.baselines  # noqa: F401  (registers the baselines)
    from schedgym.policy import make_policy

    policy = make_policy(SERVING, spec)
    check_routable(policy)
    return make_policy(SERVING, spec)  # a fresh one: the check may have advanced its state


def check_routable(policy: Any) -> None:
    """Run ``policy`` once on two idle replicas' ``RouterState``; ValueError if it needs what the view lacks."""
    st = RouterState(2, 16)
    st.update(np.zeros((2, len(features.LIVE))), np.array([ReplicaSpec().static_row()] * 2), 16, 0.0)
    try:
        policy.reset(RouterEnv(st), 0)
        a = policy.act(features.empty_buffers(2), {"action_mask": np.ones(2, np.int8)})
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:  # ValueError: a policy's own check
        raise ValueError(f"policy {getattr(policy, 'name', policy)!r} reads simulator state a live router does "
                         f"not have ({type(exc).__name__}: {exc}); serve a different baseline") from None
    if int(a) not in (0, 1):
        raise ValueError(f"policy {getattr(policy, 'name', policy)!r} chose {a!r} on two replicas")
