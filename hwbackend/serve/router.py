"""``PolicyRouter``: a Ray Serve ``RequestRouter`` that asks a schedgym ``Policy`` which replica takes each request.

Observation: the ``LLMServing-v0`` observation built by ``features.FeatureEncoder`` (the env's own encoder: no
train/serve skew) from what each replica publishes through ``record_routing_stats()`` (``features.LIVE``
statistics, its ``features.STATIC`` row, its request limit and the wall-clock time ``t`` of the snapshot),
corrected for the requests this router sent after that snapshot (they count as waiting, their prompts as
pending prefill tokens: the stats reach routers only every ``request_routing_stats_period_s`` plus a
controller round trip). Replicas are indexed in ``replica_id`` order. Baselines see the same numbers through
``state.RouterState`` (their ``env.unwrapped.state``).

Policy: a ``schedgym/LLMServing-v0`` baseline name or an exported ``.onnx`` file (``state.load_policy``).
The chosen replica is the first tier; the other replicas form the second tier, which Serve uses only if
the chosen one is at ``max_ongoing_requests`` or unreachable.

Fallback (documented, counted, logged): when a candidate replica has no statistics yet or its snapshot is
older than ``stale_after_s``, or the policy raises or picks an infeasible replica, the decision is made by
the ``fallback`` baseline (default ``jsq``) on the router's *own* bookkeeping — requests it has sent to each
replica and not yet seen complete — which needs nothing from the replicas. Each decision's outcome is counted
(``report()``; Ray metric ``schedgym_router_decisions`` tagged ``outcome``) and every switch between policy
and fallback is logged with its reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Any

import numpy as np
from ray.serve.request_router import PendingRequest, ReplicaID, ReplicaResult, RequestRouter, RunningReplica

from schedgym.envs.serving import features
from schedgym.envs.serving.types import SLO
from schedgym.hwbackend.serve import registry
from schedgym.hwbackend.serve.state import RouterEnv, RouterState, load_policy

logger = logging.getLogger("ray.serve")
UNKNOWN_STATIC = np.array([1.0, 16.0, 0.0, 0.0, 0.0, 1.0])  # features.STATIC of a replica not reported yet
OUTCOMES = ("policy", "no_stats", "stale_stats", "policy_error", "infeasible_choice", "no_feasible_replica")


def request_view(pending: PendingRequest | None) -> tuple[str, int, int]:
    """(completion id, prompt tokens, max tokens) of the payload the ingress sends (``app.Ingress``)."""
    if pending is None or not pending.args or not isinstance(pending.args[0], dict):
        return "", 1, 1
    p = pending.args[0]
    return str(p.get("id", "")), max(1, len(p.get("prompt", ()))), max(1, int(p.get("max_tokens", 1)))


class PolicyRouter(RequestRouter):
    """Routes with a schedgym policy over features of the replicas' live state (see the module docstring)."""

    def initialize_state(self, policy: str = "jsq", fallback: str = "jsq", stale_after_s: float = 1.0,
                         seed: int = 0, slo: dict[str, Any] | None = None) -> None:
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s!r}")
        self.policy_name, self.fallback_name = policy, fallback
        self.policy = load_policy(policy)
        self.fallback = load_policy(fallback)
        if fallback.endswith(".onnx"):
            raise ValueError("fallback must be a baseline name (it runs without replica statistics)")
        self.stale_after_s = float(stale_after_s)
        self.seed = int(seed)
        self.slo = SLO(**slo) if slo else SLO()
        self.ids: list[str] = []
        self.counts: Counter[str] = Counter()
        self.routed_as_chosen = 0
        self.routed_elsewhere = 0
        self.decisions: deque[dict[str, Any]] = deque(maxlen=2000)
        self._chosen: dict[str, tuple[str, str, str]] = {}   # internal request id -> (chosen, outcome, cid)
        self._inflight: Counter[str] = Counter()              # replica -> requests sent, not completed
        self._sent: dict[str, deque[tuple[float, int]]] = {}  # replica -> (time sent, prompt tokens)
        self._mode = "policy"
        try:
            from ray.util.metrics import Counter as RayCounter

            self._metric: Any = RayCounter("schedgym_router_decisions", "Routing decisions by outcome.",
                                           tag_keys=("policy", "outcome"))
        except Exception as exc:  # metrics need a Ray worker; the counts in report() are kept regardless
            logger.warning(f"schedgym router: Ray metrics unavailable ({exc}); counts only in report()")
            self._metric = None
        registry.ROUTERS.add(self)  # a module attribute: this module is pickled by value (see registry)
        logger.info(f"schedgym router: policy {policy!r}, fallback {fallback!r}, stale after {stale_after_s} s")

    # ------------------------------------------------------------------ the decision
    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        reps = sorted(candidate_replicas, key=lambda r: r.replica_id.unique_id)
        ids = [r.replica_id.unique_id for r in reps]
        if ids != self.ids:
            self._resize(ids, reps)
        cid, p, o = request_view(pending_request)
        now = time.time()
        a, outcome = self._decide(reps, p, o, now)
        if pending_request is not None:
            if len(self._chosen) > 10_000:  # requests cancelled before routing never reach on_request_routed
                self._chosen.pop(next(iter(self._chosen)))
            self._chosen[pending_request.metadata.internal_request_id] = (ids[a], outcome, cid)
        self.counts[outcome] += 1
        if self._metric is not None:
            self._metric.inc(tags={"policy": self.policy_name, "outcome": outcome})
        mode = "policy" if outcome == "policy" else "fallback"
        if mode != self._mode:
            if mode == "policy":
                logger.info(f"schedgym router: back to policy {self.policy_name!r}")
            else:
                logger.warning(f"schedgym router: falling back to {self.fallback_name!r} ({outcome})")
            self._mode = mode
        return [[reps[a]], [r for i, r in enumerate(reps) if i != a]]

    def _resize(self, ids: list[str], reps: list[RunningReplica]) -> None:
        """The replica set changed: fresh views for the policy and the fallback (re-``reset`` with a new seed)."""
        n = len(ids)
        self.state = RouterState(n, 16, self.slo)  # block size updated from the replicas' static rows
        self.fb_state = RouterState(n, 16, self.slo)
        self.encoder: features.FeatureEncoder | None = None
        self._static = np.zeros((n, len(features.STATIC)))
        self.buf = features.empty_buffers(n)
        self.fb_buf = features.empty_buffers(n)
        for gone in set(self._inflight) - set(ids):  # replicas Serve removed (dead or scaled down)
            del self._inflight[gone]
            self._sent.pop(gone, None)
        self.policy.reset(RouterEnv(self.state), self.seed + len(self.ids))
        self.fallback.reset(RouterEnv(self.fb_state), self.seed + len(self.ids))
        self.ids = ids

    def _observe(self, reps: list[RunningReplica], now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """(live stats corrected for requests in transit, static rows, request limits, outcome so far)."""
        n = len(reps)
        live = np.zeros((n, len(features.LIVE)))
        static = np.tile(UNKNOWN_STATIC, (n, 1))  # replaced by each replica's row once it reports
        limit = np.full(n, np.inf)
        outcome = "policy"
        for i, r in enumerate(reps):
            st = r.routing_stats or {}
            if "live" not in st:
                outcome = "no_stats"
                continue
            t = float(st["t"])
            if now - t > self.stale_after_s and outcome == "policy":
                outcome = "stale_stats"
            live[i] = st["live"]
            static[i] = st["static"]
            limit[i] = st["limit"]
            sent = self._sent.get(self.ids[i])
            while sent and sent[0][0] <= t:
                sent.popleft()
            if sent:
                live[i, 0] += len(sent)                 # waiting
                live[i, 4] += sum(x[1] for x in sent)   # pending prefill tokens
        return live, static, limit, outcome

    def _decide(self, reps: list[RunningReplica], p: int, o: int, now: float) -> tuple[int, str]:
        live, static, limit, outcome = self._observe(reps, now)
        feasible = (p + o <= limit).astype(np.int8)
        if not feasible.any():
            outcome, feasible[:] = "no_feasible_replica", 1
        if outcome == "policy":
            if self.encoder is None or not np.array_equal(static, self._static):
                self.encoder, self._static = features.FeatureEncoder(static), static
            self.state.update(live, static, p, now)
            view = features.RequestView(p, 0, self.slo.ttft_s[0], self.slo.tpot_s[0])
            obs = self.encoder.encode(live, view, np.zeros(len(reps)), np.zeros(len(reps)), feasible, self.buf)
            try:
                a = int(self.policy.act(obs, {"action_mask": feasible.copy()}))
                if not (0 <= a < len(reps) and feasible[a]):
                    logger.warning(f"schedgym router: policy {self.policy_name!r} chose {a}, not a feasible "
                                   f"replica of {feasible.tolist()}")
                    outcome = "infeasible_choice"
            except Exception as exc:
                logger.warning(f"schedgym router: policy {self.policy_name!r} failed: {type(exc).__name__}: {exc}")
                outcome = "policy_error"
            if outcome == "policy":
                return a, outcome
        own = np.zeros((len(reps), len(features.LIVE)))
        own[:, 0] = [self._inflight[i] for i in self.ids]
        self.fb_state.update(own, static, p, now)
        return int(self.fallback.act(self.fb_buf, {"action_mask": feasible.copy()})), outcome

    # ------------------------------------------------------------------ bookkeeping hooks
    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID,
                          result: ReplicaResult) -> None:
        uid = replica_id.unique_id
        cid, p, _ = request_view(pending_request)
        self._inflight[uid] += 1
        self._sent.setdefault(uid, deque()).append((time.time(), p))
        chosen, outcome, _ = self._chosen.pop(pending_request.metadata.internal_request_id, (None, "", cid))
        if chosen == uid:
            self.routed_as_chosen += 1
        else:
            self.routed_elsewhere += 1
        self.decisions.append({"id": cid, "chosen": chosen, "replica": uid, "outcome": outcome})

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        uid = replica_id.unique_id
        if self._inflight.get(uid, 0) > 0:
            self._inflight[uid] -= 1

    def report(self) -> dict[str, Any]:
        """Counts by outcome, how often Serve followed the first tier, in-flight counts, recent decisions."""
        return {"policy": self.policy_name, "fallback": self.fallback_name, "stale_after_s": self.stale_after_s,
                "replicas": list(self.ids), "outcomes": {k: self.counts.get(k, 0) for k in OUTCOMES},
                "routed_as_chosen": self.routed_as_chosen, "routed_elsewhere": self.routed_elsewhere,
                "in_flight": {k: self._inflight[k] for k in self.ids if self._inflight.get(k)},
                "decisions": list(self.decisions)}
