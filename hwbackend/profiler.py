"""Profiler: measure one engine's iteration time over a grid of batch shapes and write the calibration table
(schema ``schedgym.calibration/v1`` of ``envs/serving/costmodel.py``) that the simulator's cost model reads.

Each shape (prefill tokens P, decode batch D, total decode context K) is set up as real engine state — D
running sequences of K/D cached tokens each and one waiting prompt of P tokens — and timed through
``LiveEngine.step()`` (scheduling, batch building, forward, sampling, device synchronisation), the same code
path the live cluster runs. The table stores the median of ``repeats`` sweeps of the grid after ``warmup``
sweeps, fitted per (prefill, decode) node to ``a + b * kv_context`` with ``a > 0``, ``b >= 0``
(``_fit_nodes``); the raw median is kept as ``median_s``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from schedgym.envs.serving.costmodel import CALIBRATION_SCHEMA, TableCostModel, calibration_from_rows
from schedgym.envs.serving.types import START_PREFILL, EngineConfig
from schedgym.envs.serving.variability import (
    INTERFERENCE_KEY,
    OVERLAP_KEY,
    QUANTILES_KEY,
    SERVICE_KEY,
    WAKE_KEY,
    ratio_quantiles,
    router_service_times,
)
from schedgym.hwbackend.engine import LiveEngine, _Seq

DEFAULT_PREFILL = (0, 1, 8, 32, 64, 128, 256, 512)
DEFAULT_DECODE = (0, 1, 2, 4, 8, 16, 32, 64)
DEFAULT_CONTEXT = (16, 256)   # per decoding sequence


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def time_shape(eng: LiveEngine, prefill: int, decode: int, ctx_per_seq: int) -> float:
    """Seconds of one ``eng.step()`` with ``decode`` running sequences of ``ctx_per_seq`` cached tokens and
    one waiting prompt of ``prefill`` tokens (chunked mode: both in one iteration)."""
    eng.waiting.clear(), eng.prefilling.clear(), eng.running.clear(), eng.open.clear()
    eng.free_blocks[:] = range(eng.num_blocks - 1, -1, -1)
    eng.charged = 0
    eng.seg_log.clear(), eng.shape_log.clear()
    rng = np.random.default_rng(0)
    for k in range(decode):
        s = _Seq(-1 - k, rng.integers(0, eng.cfg.vocab_size, ctx_per_seq), 1 << 30, generated=[1])
        s.computed = s.target = ctx_per_seq
        s.blocks = eng._take(-(-ctx_per_seq // eng.bs))
        eng.open[s.rid] = (0.0, 0.0, ctx_per_seq, START_PREFILL)  # (alloc, start, kv, start kind)
        eng.running.append(s)
    if prefill:
        eng.submit(10**9, prefill, 2)
    if not eng.step():
        raise RuntimeError(f"shape P={prefill} D={decode} could not be scheduled")
    _, t0, t1, *_ = eng.seg_log[-1]
    return t1 - t0


def calibrate(model: str | dict | None = "tiny", *, engine: dict[str, Any] | None = None,
              prefill: tuple[int, ...] = DEFAULT_PREFILL, decode: tuple[int, ...] = DEFAULT_DECODE,
              context: tuple[int, ...] = DEFAULT_CONTEXT, repeats: int = 5, warmup: int = 2, device: str = "cpu",
              threads: int | None = 1, seed: int = 0, gpu: str = "CPU", catalog_model: str = "schedgym-tiny",
              progress: bool = False) -> dict[str, Any]:
    """Sweep the grid and return the calibration document (JSON-ready, schema ``schedgym.calibration/v1``)."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    if min(prefill + decode + context) < 0 or 0 not in prefill or 0 not in decode:
        raise ValueError("prefill/decode grids need non-negative values including 0 (pure decode / pure prefill)")
    ecfg = EngineConfig.from_dict(engine)
    top = max(max(prefill), max(decode) + 1)
    need = max(decode) * (max(context) // ecfg.block_size + 2) + max(prefill) // ecfg.block_size + 4
    eng = LiveEngine(model, {**{k: getattr(ecfg, k) for k in ("block_size", "max_num_seqs")},
                             "chunked_prefill": True, "max_num_batched_tokens": max(top, max(decode) + 1),
                             "max_num_seqs": max(ecfg.max_num_seqs, max(decode) + 1), "watermark": 0.0},
                     num_blocks=need, seed=seed, device=device,
                     context_limit=max(max(context) + 2, max(prefill) + 2))
    shapes = [(p, d, c) for p in prefill for d in decode if p + d for c in (sorted(context) if d else (0,))]
    times = np.zeros((warmup + repeats, len(shapes)))
    # Sweep the whole grid once per repeat (not one shape many times in a row), so slow drifts of a shared
    # machine spread over every shape instead of biasing a few, in a fresh seeded order each sweep: an
    # iteration right after a much larger one is slower (allocator, caches), and a fixed order charged that to
    # the same shapes every sweep (the grid's first shape, right after its largest, measured 4x its time).
    # Each timed iteration follows one untimed iteration of the same shape, as in the live engine, where an
    # iteration mostly follows one of a similar shape (decode after decode).
    order_rng = np.random.default_rng(seed)
    for k in range(warmup + repeats):
        for j in order_rng.permutation(len(shapes)):
            p, d, c = shapes[j]
            time_shape(eng, p, d, c)
            times[k, j] = time_shape(eng, p, d, c)
    pair_s, pair_note = _attention_pair_cost(eng, max(prefill), warmup, repeats)
    med = np.median(times[warmup:], axis=0)
    std = np.std(times[warmup:], axis=0)
    fitted = _fit_nodes(shapes, med)
    rows: list[dict[str, Any]] = []
    for j, (p, d, c) in enumerate(shapes):
        rows.append({"prefill_tokens": p, "decode_tokens": d, "kv_context_tokens": d * c, "time_s": fitted[j],
                     "median_s": float(med[j]), "std_s": float(std[j]), "repeats": repeats})
        if progress:
            print(f"P={p:5d} D={d:4d} K={d * c:7d}  {med[j] * 1e3:8.3f} ms (fit {fitted[j] * 1e3:8.3f})", flush=True)
    doc = {"schema": CALIBRATION_SCHEMA, "gpu": gpu, "model": catalog_model, "tp": 1,
           "device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "model_config": eng.cfg.to_dict(), "block_size": ecfg.block_size,
           "source": f"grid sweep of {len(shapes)} batch shapes on one engine ({warmup} warm-up + {repeats} "
                     "timed sweeps, shuffled order, median per shape)",
           "attention_pair_s": pair_s, "attention_pair_from": pair_note,
           "created_unix": time.time(), "rows": rows}
    calibration_from_rows(rows, "profiler output")  # the table must load in the simulator
    return doc


def time_prompts(eng: LiveEngine, prompts: list[int]) -> float:
    """Seconds of one ``eng.step()`` prefilling the given fresh prompts together (no decodes)."""
    eng.waiting.clear(), eng.prefilling.clear(), eng.running.clear(), eng.open.clear()
    eng.free_blocks[:] = range(eng.num_blocks - 1, -1, -1)
    eng.charged = 0
    eng.seg_log.clear(), eng.shape_log.clear()
    for k, p in enumerate(prompts):
        eng.submit(10**9 + k, p, 2)
    if not eng.step() or eng.shape_log[-1][0] != sum(prompts):
        raise RuntimeError(f"prompts {prompts} could not be prefilled in one iteration")
    _, t0, t1, *_ = eng.seg_log[-1]
    return t1 - t0


def _attention_pair_cost(eng: LiveEngine, P: int, warmup: int, repeats: int, split: int = 8) -> tuple[float, str]:
    """Seconds per causal attention pair: ``P`` prompt tokens prefilled as one prompt and as ``split`` prompts
    (same tokens, same linear work, fewer attention pairs), interleaved over the sweeps; the difference of the
    medians over the difference of pairs, clamped at >= 0 (the table's prefill rows are one prompt each; the
    simulator's batches of several prompts are corrected by this rate, see ``TableCostModel``)."""
    if P < 2 * split:
        return 0.0, f"not measured (largest prefill {P} < {2 * split} tokens)"
    parts = [P // split + (1 if k < P % split else 0) for k in range(split)]
    one, many = [], []
    for k in range(warmup + repeats):
        time_prompts(eng, [P])
        a = time_prompts(eng, [P])
        time_prompts(eng, parts)
        b = time_prompts(eng, parts)
        if k >= warmup:
            one.append(a), many.append(b)
    d_pairs = single_prompt_pairs(P) - sum(single_prompt_pairs(p) for p in parts)
    rate = max(0.0, float(np.median(one) - np.median(many)) / d_pairs)
    return rate, (f"{P} tokens as 1 prompt ({np.median(one) * 1e3:.3f} ms) vs {split} prompts "
                  f"({np.median(many) * 1e3:.3f} ms), medians of {repeats}")


def _fit_nodes(shapes: list[tuple[int, int, int]], med: np.ndarray) -> list[float]:
    """Per (prefill, decode) node, the line ``a + b * K`` through its medians over the KV context K, with
    ``b >= 0`` (more context never costs less) and ``a >= min/4`` (an iteration has a fixed cost): what the
    simulator's closed-form decode runs need. Noise on a shared machine otherwise yields negative slopes or
    intercepts. Nodes with one context (pure prefill) keep their median."""
    out = [float(m) for m in med]
    nodes: dict[tuple[int, int], list[int]] = {}
    for j, (p, d, _) in enumerate(shapes):
        nodes.setdefault((p, d), []).append(j)
    for (_, d), js in nodes.items():
        if len(js) < 2:
            continue
        K = np.array([d * shapes[j][2] for j in js], float)
        T = med[js]
        b, a = np.polyfit(K, T, 1)
        if b < 0:
            b, a = 0.0, float(np.mean(T))
        if a < 0.25 * T.min():
            a = 0.25 * float(T.min())
            b = max(0.0, float(np.sum((T - a) * K) / np.sum(K * K)))
        for j, k in zip(js, K):
            out[j] = float(a + b * k)
    return out


# Terms of the iteration-time model fitted to live iterations: a fixed cost for each group present (prefill,
# decode), per prefill token, per decode sequence, per KV token read (decode context + prefill prior context),
# per causal attention pair of the prefill chunks (sum of c * (prior + (c + 1) / 2)). All >= 0.
LIVE_TERMS = ("prefill_group_s", "decode_group_s", "per_prefill_token_s", "per_decode_seq_s", "per_kv_token_s",
              "per_attention_pair_s")


def single_prompt_pairs(P: np.ndarray | float) -> np.ndarray | float:
    """Causal attention pairs of one fresh prompt of ``P`` tokens (how the table's prefill rows are measured)."""
    return P * (P + 1) / 2.0


def _design(P: np.ndarray, D: np.ndarray, K: np.ndarray, pairs: np.ndarray | None = None) -> np.ndarray:
    P, D, K = (np.asarray(v, float) for v in (P, D, K))
    pr = single_prompt_pairs(P) if pairs is None else np.asarray(pairs, float)
    return np.stack([(P > 0) * 1.0, (D > 0) * 1.0, P, D, K, pr], 1)


def fit_iteration_model(P: np.ndarray, D: np.ndarray, K: np.ndarray, t: np.ndarray,
                        pairs: np.ndarray | None = None, iters: int = 30) -> np.ndarray:
    """Coefficients (``LIVE_TERMS``, all >= 0) of the iteration time fitted to measured iterations: least squares
    on relative error with Huber weights, so the fit follows the typical iteration. On a shared machine a few
    iterations are stretched many-fold when the thread is descheduled; an ordinary least-squares (mean) fit put
    the decode table at 2.5-3x the median live iteration and over-predicted every p50 by 30-70 %, while no
    deterministic cost can reproduce such stalls at p99 anyway. Non-negativity by an active set: a coefficient
    that goes negative is fixed at 0 and the others refitted."""
    A, t = _design(P, D, K, pairs), np.asarray(t, float)
    if t.size < A.shape[1] or not (t > 0).all():
        raise ValueError(f"need at least {A.shape[1]} iterations with positive times, got {t.size}")
    used = A.any(axis=0)  # terms the run never exercised (e.g. no decode) stay 0
    w = 1.0 / t
    c = np.zeros(A.shape[1])
    for _ in range(iters):
        free = used.copy()
        while True:
            c = np.zeros(A.shape[1])
            c[free], *_ = np.linalg.lstsq(A[:, free] * w[:, None], t * w, rcond=None)
            neg = free & (c < 0)
            if not neg.any():
                break
            free &= ~neg
        r = (A @ c - t) / t
        u = np.abs(r) / (1.345 * 1.4826 * np.median(np.abs(r)) + 1e-12)
        w = np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12)) / t
    return c


def calibrate_live(workload: Any, *, model: str = "tiny", n_engines: int = 2, engine: dict[str, Any] | None = None,
                   num_blocks: int = 256, context_limit: int = 512, device: str = "cpu", backend: str = "thread",
                   threads: int = 1, prefill: tuple[int, ...] = DEFAULT_PREFILL,
                   decode: tuple[int, ...] = DEFAULT_DECODE, context: tuple[int, ...] = DEFAULT_CONTEXT,
                   gpu: str = "CPU", catalog_model: str = "schedgym-tiny") -> dict[str, Any]:
    """Calibrate from a live run: replay ``workload`` (time- and token-scaled already) on a live cluster exactly
    as the live env runs it (same engine processes/threads, driver and router), fit ``fit_iteration_model`` to
    the iterations it executed while no other engine computed (every iteration if too few), and tabulate the fit
    plus the engine loop's mean gap between back-to-back iterations (``loop_gap_s``) on the grid (schema
    ``schedgym.calibration/v1``; rows carry ``"fit": true``). Also stored: the run's median dispatch latency
    (trace arrival -> request at its engine, ``dispatch_latency_s``) and median wake latency (request at an idle
    engine -> its prefill starts, ``wake_latency_s``), and the measured variability the simulator's
    ``interference`` / ``iteration_noise`` options read (``envs/serving/variability.py``): the slowdown by the
    number of other engines computing, the quantiles of every iteration's period over its modelled time, of the
    wake latency, of the dispatch latency (``dispatch_latency_quantiles``) and of the router's service time per
    request (``dispatch_service_quantiles``, used by ``fidelity``). Use a
    different trace segment than the one the table will be judged on."""
    import gymnasium as gym

    from schedgym.hwbackend.fidelity import round_robin
    env = gym.make("schedgym/LLMServingLive-v0", instance=workload, rate_scale=1.0, token_scale=1.0,
                   n_engines=n_engines, model=model, engine=dict(engine or {}), num_blocks=num_blocks,
                   context_limit=context_limit, device=device, backend=backend, threads=threads)
    round_robin(env)
    run = env.unwrapped.state
    env.close()
    order = sorted(range(len(run.seg)), key=lambda k: (run.seg[k][0], run.seg[k][1]))
    inst = np.array([run.seg[k][0] for k in order])
    # t0, t1, P, D, K, prefill context, attention pairs
    seg = np.array([run.seg[k][1:3] + run.seg[k][6:11] for k in order], float)
    t = seg[:, 1] - seg[:, 0]
    frac = overlap_fractions(inst, seg, n_engines)
    # Fit the engine alone (no other engine computing during 90 % of the iteration); the slowdown while others
    # compute is measured below. Too few lone iterations of both kinds: fit every iteration instead.
    alone = frac[:, 0] >= 0.9
    lone_kinds = alone & (seg[:, 3] == 0), alone & (seg[:, 3] > 0)
    fit = alone if min(int(m.sum()) for m in lone_kinds) >= 10 else np.ones_like(alone)
    coef = fit_iteration_model(seg[fit, 2], seg[fit, 3], seg[fit, 4] + seg[fit, 5], t[fit], seg[fit, 6])
    # The engine loop's own time between back-to-back iterations (publishing the log, taking new requests):
    # part of every iteration's period, outside the timed step. Gaps over 1 ms are idle time, not overhead.
    gaps = (seg[1:, 0] - seg[:-1, 1])[inst[1:] == inst[:-1]]
    loop_gap = float(np.mean(gaps[gaps < 1e-3])) if (gaps < 1e-3).any() else 0.0
    # Wake-up: a request reaching an idle engine starts its prefill this much later (thread wake, GIL).
    first_alloc: dict[int, float] = {}
    for _, r in run.res:
        first_alloc.setdefault(int(r[0]), float(r[1]))
    wake = [a - run.dispatched[q] for q, a in first_alloc.items()
            if not np.any((inst == run.routed[q]) & (seg[:, 0] < run.dispatched[q]) &
                          (run.dispatched[q] <= seg[:, 1] + loop_gap))]
    rows: list[dict[str, Any]] = []
    for p in prefill:
        for d in decode:
            if p + d == 0:
                continue
            for c in (sorted(context) if d else (0,)):
                k = d * c
                rows.append({"prefill_tokens": p, "decode_tokens": d, "kv_context_tokens": k,
                             # floor: a table time must be > 0 (only bites if every fitted term is 0)
                             "time_s": max(float(_design(np.array([p]), np.array([d]), np.array([k]))[0] @ coef),
                                           1e-7) + loop_gap,
                             "fit": True})
    resid = (_design(seg[:, 2], seg[:, 3], seg[:, 4] + seg[:, 5], seg[:, 6]) @ coef - t) / t
    period, modelled = _periods(run, inst, seg, TableCostModel(calibration_from_rows(
        rows, "live calibration", meta={"attention_pair_s": float(coef[LIVE_TERMS.index("per_attention_pair_s")])})))
    decoding = seg[:, 3] > 0
    notes: list[str] = []
    slow = _interference(period, modelled, frac, decoding, notes=notes)
    ratio = period / modelled
    lat = run.dispatched - run.arrival
    doc = {"schema": CALIBRATION_SCHEMA, "gpu": gpu, "model": catalog_model, "tp": 1,
           "device": device_name(device), "torch": torch.__version__, "threads": threads,
           "source": f"live run of {workload.name} ({workload.n_requests} requests, {len(t)} iterations, "
                     f"{n_engines} engines, backend {backend})",
           "coefficients": dict(zip(LIVE_TERMS, map(float, coef))),
           "attention_pair_s": float(coef[LIVE_TERMS.index("per_attention_pair_s")]),
           "fit_relative_error_p50": float(np.median(np.abs(resid))),
           "dispatch_latency_s": float(np.nanmedian(lat)),  # from the release, with workflows
           "wake_latency_s": float(np.median(wake)) if wake else 0.0, "loop_gap_s": loop_gap,
           "fitted_on": "iterations no other engine overlapped" if fit is alone else "every iteration",
           INTERFERENCE_KEY: slow, "interference_notes": notes, QUANTILES_KEY: ratio_quantiles(ratio),
           OVERLAP_KEY: _quantiles_by_overlap(ratio, frac, decoding, slow),
           "dispatch_latency_quantiles": np.quantile(lat[~np.isnan(lat)], np.linspace(0, 1, 101)).tolist(),
           SERVICE_KEY: np.quantile(router_service_times(run.arrival, run.dispatched),
                                    np.linspace(0, 1, 101)).tolist(),
           **({WAKE_KEY: np.quantile(wake, np.linspace(0, 1, 101)).tolist()} if wake else {}),
           "block_size": EngineConfig.from_dict(engine).block_size, "created_unix": time.time(), "rows": rows}
    return doc


def overlap_fractions(inst: np.ndarray, seg: np.ndarray, n_engines: int) -> np.ndarray:
    """(N, n_engines): the fraction of each iteration's wall time during which exactly j other engines were inside
    an iteration (j = 0 .. n_engines - 1), from a sweep over every iteration's start and end."""
    t0, t1 = seg[:, 0], seg[:, 1]
    times = np.r_[t0, t1]
    order = np.argsort(times, kind="stable")
    edges = times[order]
    busy = np.cumsum(np.r_[np.ones(len(seg)), -np.ones(len(seg))][order])  # engines busy after each edge
    out = np.zeros((len(seg), n_engines))
    for k in range(len(seg)):
        lo, hi = np.searchsorted(edges, t0[k], "right"), np.searchsorted(edges, t1[k], "left")
        cuts = np.r_[t0[k], edges[lo:hi], t1[k]]
        count = np.r_[busy[lo - 1] if lo else 0, busy[lo:hi]] - 1  # others, during each piece
        np.add.at(out[k], np.clip(count, 0, n_engines - 1).astype(int), np.diff(cuts))
        out[k] /= max(t1[k] - t0[k], 1e-12)
    return out


def _interference(period: np.ndarray, modelled: np.ndarray, frac: np.ndarray, decode: np.ndarray,
                  min_weight: float = 5.0, notes: list[str] | None = None) -> dict[str, list[float]]:
    """``{"prefill": [1, s_1, ..., s_{n-1}], "decode": [...]}`` (``variability.py``): per iteration kind
    (``decode``: the iteration decodes), the slowdown with j other engines computing relative to alone. An
    iteration of period ``W`` that spent fractions ``f_j`` of it with j others progressed through its modelled
    time ``T = W * sum_j f_j * x_j`` (``x_j``: modelled seconds per wall second with j others); the ``x_j``
    solve the fraction-weighted least squares (normal equations ``sum_k f_kj T_k = sum_i x_i sum_k f_kj f_ki W_k``:
    sums over time, so an engine the interpreter lock starves for one long iteration weighs as much as the
    other's many short ones) and ``s_j = x_0 / x_j``, at least 1 (other engines never speed one up: less is
    measurement noise). A count with under ``min_weight`` iterations' worth of a kind takes the other kind's
    value, else the previous count's; each such substitution is described in ``notes`` (if given)."""
    est: dict[str, list[float | None]] = {}
    for name, kind in (("prefill", ~decode), ("decode", decode)):
        f, W, T = frac[kind], period[kind], modelled[kind]
        seen = np.flatnonzero(f.sum(axis=0) >= min_weight)
        vals: list[float | None] = [None] * frac.shape[1]
        if seen.size and seen[0] == 0:
            fs = f[:, seen]
            x = np.linalg.lstsq(fs.T @ (fs * W[:, None]), fs.T @ T, rcond=None)[0]
            for j, xj in zip(seen.tolist(), x.tolist(), strict=True):
                vals[j] = max(1.0, x[0] / xj) if xj > 0 else None
        est[name] = [1.0] + vals[1:]
    out: dict[str, list[float]] = {"prefill": [1.0], "decode": [1.0]}
    for j in range(1, frac.shape[1]):
        for name, other in (("prefill", "decode"), ("decode", "prefill")):
            v = est[name][j] if est[name][j] is not None else est[other][j]
            out[name].append(v if v is not None else out[name][-1])
            if est[name][j] is None and notes is not None:
                kind = decode if name == "decode" else ~decode
                src = f"the {other} iterations'" if est[other][j] is not None else "the previous count's"
                notes.append(f"{name} iterations with {j} other engine(s) computing: {frac[kind, j].sum():.1f} "
                             f"iterations' worth measured (< {min_weight:g}), took {src} slowdown "
                             f"x{out[name][-1]:.2f}; a busier calibration segment measures it")
    return out


def _quantiles_by_overlap(ratio: np.ndarray, frac: np.ndarray, decode: np.ndarray, slow: dict[str, list[float]],
                          min_samples: int = 10) -> dict[str, list[list[float]]]:
    """Per kind and number j of other engines computing during most of the iteration, the quantiles of period
    over table time (``variability.py``). A class with under ``min_samples`` iterations: its kind's lone
    iterations' quantiles times ``s_j`` (every iteration's if too few lone ones too)."""
    j_of = frac.argmax(axis=1)
    out: dict[str, list[list[float]]] = {}
    for name, kind in (("prefill", ~decode), ("decode", decode)):
        lone = kind & (j_of == 0)
        base = ratio_quantiles(ratio[lone] if lone.sum() >= min_samples else ratio)
        out[name] = [ratio_quantiles(ratio[kind & (j_of == j)]) if (kind & (j_of == j)).sum() >= min_samples
                     else [x * slow[name][j] for x in base] for j in range(frac.shape[1])]
    return out


def _periods(run: Any, inst: np.ndarray, seg: np.ndarray, cm: TableCostModel) -> tuple[np.ndarray, np.ndarray]:
    """Each live iteration's period and the table's time for its shape (``variability.py``). The period is its wall
    time plus, when the engine still had work at the end of its previous iteration (a request holding KV there,
    or dispatched there and not yet admitted), the gap since then (loop overhead and stalls: on a shared CPU the
    OS or another thread takes the core) — the time from the previous tokens to this iteration's tokens. An
    iteration after idle time starts with the wake latency, measured separately. ``seg`` rows as in
    ``calibrate_live`` (t0, t1, P, D, K, prefill context, pairs), sorted by instance and time."""
    where = np.array([i for i, _ in run.res])
    alloc = np.array([r[1] for _, r in run.res])
    end = np.array([r[3] for _, r in run.res])
    first: dict[int, float] = {}
    for _, r in run.res:
        first[int(r[0])] = min(first.get(int(r[0]), np.inf), float(r[1]))
    q = np.array(sorted(first), np.int64)
    q_alloc = np.array([first[k] for k in q.tolist()])
    q_disp, q_inst = run.dispatched[q], run.routed[q]
    period, table = np.empty(len(seg)), np.empty(len(seg))
    for k, (t0, t1, P, D, K, Pc, pairs) in enumerate(seg):
        start = t0
        if k > 0 and inst[k - 1] == inst[k]:
            i, prev = inst[k], seg[k - 1, 1]
            holding = np.any((where == i) & (alloc <= prev) & (end > prev))
            queued = np.any((q_inst == i) & (q_disp <= prev) & (q_alloc > prev))
            if holding or queued:
                start = prev
        period[k] = t1 - start
        table[k] = cm.iteration_time(int(P), int(D), int(K), prefill_context_tokens=int(Pc),
                                     prefill_attention_pairs=float(pairs))
    return period, table


def write_table(doc: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.write_text(json.dumps(doc, indent=1) + "\n")
    return p
