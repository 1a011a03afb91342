"""The Ray Serve application: N ``EngineReplica`` deployments (each a live ``LiveEngine`` stepping in a
background thread, tokens streamed back as they are generated) behind an OpenAI-compatible ``Ingress``
(FastAPI: ``POST /v1/completions``, ``GET /v1/models``, ``GET /health``, ``GET /v1/router``), with
``router.PolicyRouter`` choosing the replica of every request.

Failure handling: a replica that dies before streaming a token to the client (its actor raises on the
ingress's handle call) is retried on another replica, up to ``retries`` times; a non-streaming request is
retried whole (nothing was sent yet); a streaming request that already sent tokens ends with an SSE
``error`` event naming the replica and how many tokens arrived. Serve's controller replaces dead replicas
(``health_check_period_s``); the router drops them from its candidates as soon as Serve does.

Known limits: the engine has no abort, so a request whose client disconnects still runs to its last token;
each engine keeps its event log (residencies, iterations) for the life of the replica.
"""


import asyncio
import itertools
import json
import logging
import time
import uuid
from collections import Counter
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentHandle

from schedgym.hwbackend.serve import protocol
from schedgym.hwbackend.serve.registry import reports
from schedgym.hwbackend.serve.state import ReplicaSpec

logger = logging.getLogger("ray.serve")
ROUTER_CLASS = "schedgym.hwbackend.serve.router:PolicyRouter"
REPLICA_ERRORS = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


def model_name(spec: ReplicaSpec) -> str:
    from schedgym.envs.serving.live_run import CATALOG_MODELS

    return CATALOG_MODELS[spec.model] if isinstance(spec.model, str) else "schedgym-custom"


@serve.deployment(max_ongoing_requests=256, health_check_period_s=1.0, health_check_timeout_s=10.0,
                  graceful_shutdown_timeout_s=2.0)
class EngineReplica:
    """One live engine; ``generate`` streams ``{"replica"}`` then ``{"tokens", "finished"}`` chunks."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        from schedgym.hwbackend.cluster import EngineServer

        self.spec = ReplicaSpec(**spec)
        torch.set_num_threads(self.spec.threads)
        self.server = EngineServer(self.spec.model, self.spec.live_engine_config(), self.spec.num_blocks,
                                   self.spec.context_limit, seed=self.spec.weights_seed, device=self.spec.device,
                                   threads=self.spec.threads)
        self.vocab = self.server.engine.cfg.vocab_size
        self.static = self.spec.static_row()
        self.limit = self.spec.request_limit()
        self.uid = serve.get_replica_context().replica_id.unique_id
        self._streams: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[int, bool]]]] = {}
        self._rids = itertools.count()
        self.server.engine.on_token = self._on_token  # before the first submit

    def _on_token(self, rid: int, token: int, t: float, finished: bool) -> None:
        """Engine thread -> the request's asyncio queue."""
        s = self._streams.get(rid)
        if s is not None:
            s[0].call_soon_threadsafe(s[1].put_nowait, (token, finished))

    async def generate(self, payload: dict[str, Any]):  # -> AsyncGenerator[dict[str, Any], None]
        prompt, mt = list(payload["prompt"]), int(payload["max_tokens"])
        if not prompt or mt < 1 or len(prompt) + mt > self.limit:
            raise ValueError(f"replica {self.uid}: prompt {len(prompt)} + max_tokens {mt} tokens must be "
                             f"within 2..{self.limit}")
        if min(prompt) < 0 or max(prompt) >= self.vocab:
            raise ValueError(f"replica {self.uid}: token ids must be in [0, {self.vocab})")
        if self.server.error:
            raise RuntimeError(f"replica {self.uid}: engine failed: {self.server.error}")
        rid = next(self._rids)
        q: asyncio.Queue[tuple[int, bool]] = asyncio.Queue()
        self._streams[rid] = (asyncio.get_running_loop(), q)
        try:
            self.server.submit(rid, len(prompt), mt, prompt=prompt)
            yield {"replica": self.uid}
            n = 0
            while n < mt:
                try:
                    tok, _ = await asyncio.wait_for(q.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if self.server.error:
                        raise RuntimeError(f"replica {self.uid}: engine failed: {self.server.error}") from None
                    continue
                toks = [tok]
                while not q.empty():
                    toks.append(q.get_nowait()[0])
                n += len(toks)
                yield {"tokens": toks, "finished": n >= mt}
        finally:
            self._streams.pop(rid, None)

    def record_routing_stats(self) -> dict[str, Any]:
        """What the router sees (``features.LIVE`` stats, ``features.STATIC`` row, request limit, snapshot time)."""
        poll = self.server.poll()
        if poll["error"]:
            raise RuntimeError(f"replica {self.uid}: engine failed: {poll['error']}")
        return {"t": time.time(), "live": poll["stats"].tolist(), "static": self.static, "limit": self.limit,
                "replica": self.uid}

    def check_health(self) -> None:
        if self.server.error:
            raise RuntimeError(f"replica {self.uid}: engine failed: {self.server.error}")

    def __del__(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()


class ReplicaFailure(RuntimeError):
    """Every attempt to start a request on a replica failed."""


api = FastAPI(title="schedgym serve", description="OpenAI-compatible completions on live schedgym engines.")


@serve.deployment(max_ongoing_requests=1000)
@serve.ingress(api)
class Ingress:
    """OpenAI-compatible HTTP front end; routes through ``PolicyRouter`` via the engine deployment's handle."""

    def __init__(self, engine: DeploymentHandle, spec: dict[str, Any], retries: int = 2) -> None:
        self.engine = engine
        self.spec = ReplicaSpec(**spec)
        self.model = model_name(self.spec)
        self.limit = self.spec.request_limit()
        from schedgym.hwbackend.model import ModelConfig

        self.vocab = ModelConfig.from_any(self.spec.model).vocab_size
        self.retries = int(retries)
        self.counts: Counter[str] = Counter()

    @api.get("/health")
    async def health(self) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0,
                                            "owned_by": "schedgym", "max_model_len": self.limit}]}

    @api.get("/v1/router")
    async def router(self) -> dict[str, Any]:
        """Routing counts of this ingress's router(s) and its own retry / failure counts."""
        return {"routers": reports(), "ingress": dict(self.counts)}

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Any:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse(protocol.RequestError(f"request body is not valid JSON: {exc}").body(), 400)
        try:
            c = protocol.parse_completion(body, model=self.model, vocab_size=self.vocab,
                                          max_request_tokens=self.limit)
        except protocol.RequestError as exc:
            self.counts["rejected_4xx"] += 1
            return JSONResponse(exc.body(), exc.status)
        cid = f"cmpl-{uuid.uuid4().hex}"
        payload = {"id": cid, "prompt": list(c.prompt), "max_tokens": c.max_tokens}
        self.counts["requests"] += 1
        try:
            if c.stream:
                replica, gen = await self._start(payload)
                return StreamingResponse(self._sse(c, cid, replica, gen), media_type="text/event-stream",
                                         headers={"x-schedgym-replica": replica})
            return await self._whole(c, cid, payload)
        except ReplicaFailure as exc:
            self.counts["failed_503"] += 1
            return JSONResponse({"error": {"message": str(exc), "type": "server_error", "param": None}}, 503)

    async def _start(self, payload: dict[str, Any]) -> tuple[str, Any]:
        """Send to the router's replica and wait for its acceptance; retry elsewhere if the replica dies."""
        errors = []
        for attempt in range(1 + self.retries):
            gen = self.engine.options(stream=True).generate.remote(payload)
            try:
                head = await gen.__anext__()
                return head["replica"], gen
            except REPLICA_ERRORS as exc:
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                self.counts["retried"] += 1
                logger.warning(f"request {payload['id']}: replica failed before its first token "
                               f"(attempt {attempt + 1}): {errors[-1]}")
        raise ReplicaFailure(f"request {payload['id']} failed on {len(errors)} replicas: {'; '.join(errors)}")

    async def _whole(self, c: protocol.Completion, cid: str, payload: dict[str, Any]) -> JSONResponse:
        """Non-streaming: nothing reaches the client before the end, so a replica failure retries whole."""
        errors = []
        for _ in range(1 + self.retries):
            replica, gen = await self._start(payload)
            tokens: list[int] = []
            try:
                async for chunk in gen:
                    tokens += chunk["tokens"]
            except REPLICA_ERRORS as exc:
                errors.append(f"replica {replica} died after {len(tokens)} tokens: {type(exc).__name__}")
                self.counts["retried"] += 1
                logger.warning(f"request {cid}: {errors[-1]}; retrying")
                continue
            body = protocol.completion_body(cid, c.model, tokens, len(c.prompt), replica)
            return JSONResponse(body, headers={"x-schedgym-replica": replica})
        raise ReplicaFailure(f"request {cid} failed: {'; '.join(errors)}")

    async def _sse(self, c: protocol.Completion, cid: str, replica: str, gen: Any):
        n = 0
        try:
            async for chunk in gen:
                n += len(chunk["tokens"])
                yield protocol.sse_chunk(cid, c.model, chunk["tokens"], chunk["finished"], replica)
        except REPLICA_ERRORS as exc:
            self.counts["failed_midstream"] += 1
            msg = (f"replica {replica} failed after streaming {n} of {c.max_tokens} tokens "
                   f"({type(exc).__name__}); not retried because tokens were already sent")
            logger.warning(f"request {cid}: {msg}")
            yield protocol.sse_error(msg)
        else:
            if c.include_usage:
                yield protocol.sse_usage(cid, c.model, len(c.prompt), n)
        yield protocol.SSE_DONE


def check_policy(policy: str, fallback: str) -> str:
    """Fail early (here, not inside a replica) on an unknown policy name or a missing ONNX file; returns the
    policy with an ONNX path made absolute (the router may run in another working directory)."""
    from pathlib import Path

    from schedgym.hwbackend.serve.state import load_policy

    if fallback.endswith(".onnx"):
        raise ValueError(f"--fallback {fallback!r}: must be a baseline name (it runs without replica statistics)")
    load_policy(fallback)
    if policy.endswith(".onnx"):
        if not Path(policy).is_file():
            raise FileNotFoundError(f"--policy {policy!r}: no such ONNX file")
        return str(Path(policy).resolve())
    load_policy(policy)
    return policy


def build_app(spec: ReplicaSpec, replicas: int, policy: str = "jsq", *, fallback: str = "jsq",
              stale_after_s: float = 1.0, stats_period_s: float = 0.1, cpus_per_replica: float = 0.5,
              retries: int = 2, seed: int = 0) -> serve.Application:
    """The Serve application (``serve.run(build_app(...))``): ``replicas`` engines behind the ingress."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if not stats_period_s > 0 or not cpus_per_replica >= 0 or retries < 0:
        raise ValueError(f"stats_period_s must be > 0, cpus_per_replica >= 0 and retries >= 0; got "
                         f"{stats_period_s}, {cpus_per_replica}, {retries}")
    policy = check_policy(policy, fallback)
    router = RequestRouterConfig(request_router_class=ROUTER_CLASS,
                                 request_router_kwargs={"policy": policy, "fallback": fallback,
                                                        "stale_after_s": stale_after_s, "seed": seed},
                                 request_routing_stats_period_s=stats_period_s,
                                 request_routing_stats_timeout_s=max(1.0, 10 * stats_period_s))
    gpu = spec.device == "cuda"
    engine = EngineReplica.options(num_replicas=replicas, request_router_config=router,
                                   ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": 1 if gpu else 0}
                                   ).bind(spec.to_dict())
    return Ingress.options(ray_actor_options={"num_cpus": 0.1}).bind(engine, spec.to_dict(), retries)


def start(spec: ReplicaSpec, replicas: int, policy: str = "jsq", *, host: str = "127.0.0.1", port: int = 8000,
          name: str = "schedgym", **kwargs: Any) -> str:
    """Start Serve on ``host:port`` (Ray must be initialised) and deploy the app; returns the base URL."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(spec, replicas, policy, **kwargs), name=name, route_prefix="/")
    return f"http://{host}:{port}"


def replica_actor(uid: str, app: str = "schedgym") -> Any:
    """The Ray actor of replica ``uid`` (as in ``x-schedgym-replica``), for fault injection with ``ray.kill``."""
    return ray.get_actor(f"SERVE_REPLICA::{app}#EngineReplica#{uid}", namespace="serve")
