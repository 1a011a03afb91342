"""Replay a shipped trace against any OpenAI-compatible ``/v1/completions`` endpoint on loopback and report
TTFT / TPOT / end-to-end percentiles (``envs/serving/metrics.per_request``: the gym's definitions) and errors.

Open loop: request ``i`` is sent at its (rate-scaled) trace arrival time whatever the server's state; times are
measured from that scheduled time, so client-side lateness counts against the server as it would for a
user. Prompts are deterministic token-id lists (ids < 256) of the trace's (token-scaled) prompt length;
``max_tokens`` is the trace's output length, sent with ``ignore_eos`` so servers with a tokenizer and EOS
(vLLM, SGLang) generate the full length too. Streaming (SSE) is used to time the first token.

Bounded: at most ``MAX_REQUESTS`` requests and ``MAX_DURATION_S`` seconds of arrivals, each request
``timeout_s`` at most; only loopback URLs are accepted (this is a benchmark client, not a load generator
for other people's services).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np

from schedgym.envs.serving.io import load_trace
from schedgym.envs.serving.live_run import scale_tokens
from schedgym.envs.serving.metrics import QUANTILES, per_request
from schedgym.envs.serving.types import ServingWorkload

MAX_REQUESTS = 10_000
MAX_DURATION_S = 3600.0
METRICS = ("ttft", "tpot", "e2e")


def check_loopback(url: str) -> str:
    """``url`` without a trailing slash, if its host is a loopback address; else a ValueError."""
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"--url {url!r}: expected http(s)://HOST:PORT")
    host = u.hostname
    ok = host == "localhost"
    if not ok:
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(f"--url {url!r}: the load test only targets loopback hosts (127.0.0.1, ::1, localhost)")
    return url.rstrip("/")


def trace_workload(trace: str, n: int, *, rate: float | None = None, duration_s: float = 60.0, start: int = 0,
                   token_scale: float = 0.05, max_request_tokens: int | None = None) -> ServingWorkload:
    """Requests ``start..start+n`` of a shipped trace, arrivals rescaled to a mean of ``rate`` req/s (the trace's
    own timing when None), lengths times ``token_scale``, cut at ``duration_s`` of arrivals. Requests longer
    than ``max_request_tokens`` are an error (pick a smaller ``token_scale``), not silently dropped."""
    if not 1 <= n <= MAX_REQUESTS:
        raise ValueError(f"requests must be in 1..{MAX_REQUESTS}, got {n}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be in (0, {MAX_DURATION_S}] s, got {duration_s}")
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a finite number > 0 req/s, got {rate}")
    full = load_trace(trace)
    if start < 0 or start + n > full.n_requests:
        raise ValueError(f"trace {trace} has {full.n_requests} requests; start {start} + requests {n} is outside it")
    w = full.slice(start, start + n)
    if rate is not None and n > 1 and w.arrival[-1] > 0:
        w = w.scaled(rate * w.arrival[-1] / (n - 1))
    w = scale_tokens(w, token_scale)
    keep = int(np.searchsorted(w.arrival, duration_s, side="right"))
    w = w.slice(0, max(keep, 1))
    if max_request_tokens is not None:
        total = w.prompt_tokens + w.output_tokens
        bad = np.flatnonzero(total > max_request_tokens)
        if bad.size:
            raise ValueError(f"request {int(bad[0])} of {w.name} has {int(total[bad[0]])} tokens > the server's "
                             f"limit {max_request_tokens} ({bad.size} such); lower token_scale")
    return w


def prompt_ids(i: int, n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng([seed, i]).integers(0, 256, n).tolist()


@dataclass
class Outcome:
    """One request as the client saw it (times in seconds from the replay's start)."""

    scheduled: float
    first_token: float = math.nan
    finish: float = math.nan
    tokens: int = 0
    status: int = 0
    error: str = ""
    replica: str = ""


@dataclass
class LoadResult:
    url: str
    workload: ServingWorkload
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    def report(self) -> dict[str, Any]:
        """Percentiles over successful requests (``metrics.per_request``), error counts and examples."""
        o = self.outcomes
        ok = np.array([not x.error for x in o])
        arrival = np.array([x.scheduled for x in o])
        first = np.array([x.first_token for x in o])
        fin = np.array([x.finish if not x.error else math.nan for x in o])
        toks = np.array([max(x.tokens, 1) for x in o])
        m = per_request(arrival, first, fin, first, toks)
        out: dict[str, Any] = {"url": self.url, "workload": self.workload.name, "n_requests": len(o),
                               "n_ok": int(ok.sum()), "n_errors": int((~ok).sum()), "wall_s": self.wall_s}
        for k in METRICS:
            v = m[k][ok]
            for q in QUANTILES:
                out[f"p{q}_{k}"] = float(np.percentile(v, q)) if v.size else math.nan
        short = sum(1 for x, want in zip(o, self.workload.output_tokens) if not x.error and x.tokens != want)
        out["n_wrong_length"] = short
        out["output_tok_s"] = float(sum(x.tokens for x in o) / self.wall_s) if self.wall_s else math.nan
        errs: dict[str, int] = {}
        for x in o:
            if x.error:
                errs[x.error[:160]] = errs.get(x.error[:160], 0) + 1
        out["errors"] = errs
        reps: dict[str, int] = {}
        for x in o:
            if x.replica:
                reps[x.replica] = reps.get(x.replica, 0) + 1
        out["replicas"] = reps
        return out


async def _one(session: Any, url: str, model: str | None, i: int, w: ServingWorkload, t0: float,
               timeout_s: float, seed: int, out: Outcome) -> None:
    import aiohttp

    body: dict[str, Any] = {"prompt": prompt_ids(i, int(w.prompt_tokens[i]), seed),
                            "max_tokens": int(w.output_tokens[i]), "stream": True, "ignore_eos": True}
    if model:
        body["model"] = model
    try:
        async with session.post(f"{url}/v1/completions", json=body,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            out.status = resp.status
            out.replica = resp.headers.get("x-schedgym-replica", "")
            if resp.status != 200:
                text = (await resp.text())[:300]
                out.error = f"HTTP {resp.status}: {text}"
                return
            async for raw in resp.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                msg = json.loads(data)
                if "error" in msg:
                    out.error = f"stream error: {msg['error'].get('message', msg['error'])}"
                    return
                choices = msg.get("choices") or []
                n = len(msg["token_ids"]) if "token_ids" in msg else sum(1 for c in choices if c.get("text"))
                if n and math.isnan(out.first_token):
                    out.first_token = time.perf_counter() - t0
                out.tokens += n
            out.finish = time.perf_counter() - t0
            if math.isnan(out.first_token):
                out.error = "no token received"
    except asyncio.TimeoutError:
        out.error = f"timeout after {timeout_s} s"
    except aiohttp.ClientError as exc:
        out.error = f"{type(exc).__name__}: {exc}"


async def _run(url: str, w: ServingWorkload, model: str | None, timeout_s: float, seed: int,
               on_sent: Any) -> LoadResult:
    import aiohttp

    res = LoadResult(url, w, [Outcome(float(a)) for a in w.arrival])
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        if model is None:
            model = await _model(session, url)
        t0 = time.perf_counter()
        tasks = []
        for i in range(w.n_requests):
            delay = w.arrival[i] - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(session, url, model, i, w, t0, timeout_s, seed, res.outcomes[i])))
            if on_sent is not None:
                on_sent(i)
        await asyncio.gather(*tasks)
        res.wall_s = time.perf_counter() - t0
    return res


async def _model(session: Any, url: str) -> str | None:
    """The first model the endpoint lists (None if it lists none)."""
    async with session.get(f"{url}/v1/models") as resp:
        if resp.status != 200:
            raise ValueError(f"{url}/v1/models answered HTTP {resp.status}; is it an OpenAI-compatible server?")
        data = (await resp.json()).get("data") or []
        return data[0]["id"] if data else None


def run_load(url: str, workload: ServingWorkload, *, model: str | None = None, timeout_s: float = 60.0,
             seed: int = 0, on_sent: Any = None) -> LoadResult:
    """Replay ``workload`` against ``url`` (loopback only); ``on_sent(i)`` is called after request ``i`` is sent
    (fault-injection hook for tests)."""
    url = check_loopback(url)
    if not 0 < timeout_s <= MAX_DURATION_S:
        raise ValueError(f"timeout must be in (0, {MAX_DURATION_S}] s, got {timeout_s}")
    return asyncio.run(_run(url, workload, model, timeout_s, seed, on_sent))


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"{rep['workload']} -> {rep['url']}: {rep['n_ok']}/{rep['n_requests']} ok, {rep['n_errors']} errors, "
             f"{rep['n_wrong_length']} wrong length, {rep['output_tok_s']:.1f} output tok/s over {rep['wall_s']:.1f} s"]
    lines.append(f"{'metric':8s} " + " ".join(f"{'p' + str(q) + ' (ms)':>11s}" for q in QUANTILES))
    for k in METRICS:
        lines.append(f"{k:8s} " + " ".join(f"{rep[f'p{q}_{k}'] * 1e3:11.1f}" for q in QUANTILES))
    if rep["replicas"]:
        lines.append("requests per replica: " + ", ".join(f"{k} {v}" for k, v in sorted(rep["replicas"].items())))
    for msg, n in rep["errors"].items():
        lines.append(f"error x{n}: {msg}")
    return "\n".join(lines)
