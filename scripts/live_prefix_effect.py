"""Prefix caching on the live engines: cache-aware routing vs JSQ on a Mooncake conversation segment, measured
on real engines (LLMServingLive-v0) and predicted by the calibrated simulator (LLMServing-v0) for the same
scaled segment, side by side.

    python scripts/live_prefix_effect.py --requests 600 --rate-scale 4

Settings: JSQ without prefix caching (reference), JSQ with it, cache-aware routing with it. Per setting and
side: mean / p50 / p99 TTFT (validated), the prefix-hit fraction (cached / prompt tokens of served requests,
recomputed by the validator), prompt tokens served from the cache, prefill tokens actually computed (sum of
the iterations' prefill tokens, recomputes included) and the engines' busy time (sum of iteration times); the
load average when the setting started. Token scale 1/32 makes Mooncake's 512-token hash blocks
16 tokens, one KV block. The simulator is calibrated live (``profiler.calibrate_live``) on a different segment
(the train part's last requests), whose dispatch + wake latency is added to its TTFTs as in ``fidelity``.

Then an idle-engine check of the compute saved, free of queueing and batching: the segment's servable prompts
prefilled one at a time (``max_num_seqs=1``, one output token) on one engine, without and with prefix caching;
prefill tokens and the prefill iterations' measured time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

LIVE, SIM = "schedgym/LLMServingLive-v0", "schedgym/LLMServing-v0"
SETTINGS = (("jsq", False), ("jsq", True), ("cache_aware", True))
COUNTS = ("cached_tokens", "prefill_tokens", "n_rejected")


def episode(env: gym.Env, policy: str, seed: int) -> dict[str, Any]:
    """One validated episode of a baseline; its metrics plus cached and computed prefill tokens."""
    from schedgym.policy import make_policy
    pol = make_policy(SIM, policy)
    obs, info = env.reset(seed=seed)
    pol.reset(env, seed=seed)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(pol.act(obs, info))
        done = term or trunc
    m = env.unwrapped.validate()  # type: ignore[attr-defined]
    s = env.unwrapped.schedule()  # type: ignore[attr-defined]
    first = s.res_start_kind == 0
    return {**m, "cached_tokens": int(s.res_cached[first].sum()), "prefill_tokens": int(s.seg_prefill_tokens.sum()),
            "busy_s": float((s.seg_end - s.seg_start).sum())}


def idle_engine_check(w: Any, model: str, num_blocks: int, context_limit: int) -> list[dict[str, Any]]:
    """Prefill every servable prompt of ``w`` alone on one engine, without and with prefix caching."""
    from schedgym.hwbackend.engine import LiveEngine
    ok = [r for r in range(w.n_requests) if w.prompt_tokens[r] + w.output_tokens[r] <= context_limit]
    out = []
    for caching in (False, True):
        eng = LiveEngine(model, {"prefix_caching": caching, "max_num_seqs": 1}, num_blocks,
                         context_limit=context_limit, prefix_block_tokens=w.prefix_block_tokens)
        eng.warmup()
        for r in ok:
            eng.submit(r, int(w.prompt_tokens[r]), 1, hashes=w.hashes(r).tolist())
        eng.run_until_idle()
        seg = [(t1 - t0, p) for _, t0, t1, _, _, p in eng.seg_log]
        out.append({"prefix_caching": caching, "prompts": len(ok), "prefill_tokens": sum(p for _, p in seg),
                    "prefill_s": sum(t for t, _ in seg), "load_avg": os.getloadavg()[0]})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--start", type=int, default=0, help="first request of the test part (0)")
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--rate-scale", type=float, default=4.0)
    p.add_argument("--token-scale", type=float, default=1 / 32)
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--model", default="tiny")
    p.add_argument("--num-blocks", type=int, default=4096, help="KV blocks per engine (16 tokens each)")
    p.add_argument("--context-limit", type=int, default=1024)
    p.add_argument("--calib-requests", type=int, default=200)
    p.add_argument("--calibration", default="live", help="live (default) or a calibration table path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-idle-check", action="store_true", help="skip the idle-engine compute check")
    p.add_argument("--out", default="schedgym-results/live-prefix")
    a = p.parse_args(argv)

    import torch

    import schedgym  # noqa: F401  (registers the env ids)
    import schedgym.baselines  # noqa: F401
    from schedgym.envs.serving.datasets import part
    from schedgym.envs.serving.live_run import CATALOG_MODELS, scale_tokens
    from schedgym.hwbackend.profiler import calibrate_live, write_table
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# python scripts/live_prefix_effect.py {' '.join(shlex.quote(x) for x in (argv or sys.argv[1:]))}\n"
          f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    test = part("mooncake-conversation", "test")
    w = scale_tokens(test.slice(a.start, a.start + a.requests).scaled(a.rate_scale), a.token_scale)
    live_kw = dict(n_engines=a.engines, model=a.model, num_blocks=a.num_blocks, context_limit=a.context_limit)
    table, lat = a.calibration, 0.0
    if a.calibration == "live":
        train = part("mooncake-conversation", "train")
        wc = scale_tokens(train.slice(train.n_requests - a.calib_requests, train.n_requests).scaled(a.rate_scale),
                          a.token_scale)
        doc = calibrate_live(wc, catalog_model=CATALOG_MODELS[a.model], **live_kw)
        table = str(write_table(doc, out / "calibration.json"))
    meta = json.loads(Path(table).read_text())
    lat = float(meta.get("dispatch_latency_s", 0.0)) + float(meta.get("wake_latency_s", 0.0))
    spec = {"gpu": "CPU", "model": CATALOG_MODELS[a.model], "max_model_len": a.context_limit, "calibration": table}
    print(f"# segment {w.name}: {w.n_requests} requests over {w.arrival[-1]:.1f} s, prefix blocks of "
          f"{w.prefix_block_tokens} tokens; calibration {table} (dispatch + wake latency {lat * 1e3:.2f} ms added "
          "to the simulated TTFT)", flush=True)
    cols = ("mean_ttft", "p50_ttft", "p99_ttft", "prefix_hit_fraction", "cached_tokens", "prefill_tokens",
            "busy_s", "n_rejected")
    head = f"{'policy':13s}{'caching':>8s} {'side':5s}" + "".join(f"{c:>20s}" for c in cols) + "  load"
    lines = [head, "-" * len(head)]
    rows = []
    for policy, caching in SETTINGS:
        eng = {"prefix_caching": caching}
        load = os.getloadavg()[0]
        live = episode(gym.make(LIVE, instance=w, rate_scale=1.0, token_scale=1.0, engine=eng, calibration=table,
                                **live_kw), policy, a.seed)
        sim = episode(gym.make(SIM, instance=w, rate_scale=1.0, segment_requests=None, cluster=[spec] * a.engines,
                               engine={**eng, "num_gpu_blocks": a.num_blocks}), policy, a.seed)
        for k in ("mean_ttft", "p50_ttft", "p99_ttft"):
            sim[k] += lat
        for side, m in (("live", live), ("sim", sim)):
            rows.append({"policy": policy, "prefix_caching": caching, "side": side, "load_avg": load,
                         **{c: m[c] for c in cols}})
            lines.append(f"{policy:13s}{caching!s:>8s} {side:5s}" + "".join(
                f"{int(m[c]):>20d}" if c in COUNTS else f"{m[c]:>20.4f}" for c in cols) + f"  {load:.2f}")
        print("\n".join(lines[-2:]) if len(rows) > 2 else "\n".join(lines), flush=True)
    idle = [] if a.no_idle_check else idle_engine_check(w, a.model, a.num_blocks, a.context_limit)
    for r in idle:
        print(f"idle engine, one prompt at a time, prefix caching {r['prefix_caching']!s:5s}: {r['prompts']} prompts, "
              f"{r['prefill_tokens']} prefill tokens in {r['prefill_s']:.2f} s (load average {r['load_avg']:.2f})")
    (out / "live_prefix_effect.json").write_text(json.dumps({"rows": rows, "idle_engine": idle}, indent=1) + "\n")
    by = {(r["policy"], r["prefix_caching"], r["side"]): r for r in rows}
    for side in ("live", "sim"):
        j, c = by[("jsq", True, side)], by[("cache_aware", True, side)]
        print(f"{side}: cache-aware vs JSQ (both caching) mean TTFT {j['mean_ttft'] * 1e3:.2f} -> "
              f"{c['mean_ttft'] * 1e3:.2f} ms, hit fraction {j['prefix_hit_fraction']:.3f} -> "
              f"{c['prefix_hit_fraction']:.3f}, prefill tokens computed {j['prefill_tokens']} -> "
              f"{c['prefill_tokens']}, engine busy {j['busy_s']:.2f} -> {c['busy_s']:.2f} s")
    print(f"# rows in {out / 'live_prefix_effect.json'}; load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
