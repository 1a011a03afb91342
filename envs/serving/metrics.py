"""Serving metrics from per-request times: pure functions of arrays (no simulator state).

Per request: TTFT (first token - arrival), TPOT (mean time per output token after the first:
(finish - first token) / (output - 1), 0 for single-token outputs), end-to-end latency, queueing delay
(first KV allocation - arrival), preemptions. Aggregates over served requests: p50/p90/p99 of each; over all
requests (rejected ones count as misses): SLO attainment and goodput (requests meeting both SLOs per second
of the episode); token throughput; utilisation (busy fraction of the instances); cost per million tokens.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (50, 90, 99)


def per_request(arrival: np.ndarray, first_token: np.ndarray, finish: np.ndarray, first_alloc: np.ndarray,
                output_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """TTFT, TPOT, end-to-end latency and queueing delay per request (NaN for unserved requests)."""
    o = output_tokens.astype(np.float64)
    tpot = np.where(o > 1, (finish - first_token) / np.maximum(o - 1, 1), 0.0)
    tpot = np.where(np.isnan(finish), np.nan, tpot)
    return {"ttft": first_token - arrival, "tpot": tpot, "e2e": finish - arrival, "queue": first_alloc - arrival}


def slo_met(ttft: np.ndarray, tpot: np.ndarray, priority: np.ndarray, ttft_slo: tuple[float, ...],
            tpot_slo: tuple[float, ...]) -> np.ndarray:
    """Bool per request: both targets of its class met (False for unserved requests)."""
    t = np.asarray(ttft_slo)[priority]
    p = np.asarray(tpot_slo)[priority]
    with np.errstate(invalid="ignore"):
        return (ttft <= t) & (tpot <= p)


def aggregate(arrival: np.ndarray, first_token: np.ndarray, finish: np.ndarray, first_alloc: np.ndarray,
              prompt_tokens: np.ndarray, output_tokens: np.ndarray, priority: np.ndarray, preemptions: np.ndarray,
              ttft_slo: tuple[float, ...], tpot_slo: tuple[float, ...], busy_s: np.ndarray,
              price_per_hour: np.ndarray) -> dict[str, float]:
    """Every aggregate metric of an episode (see the module docstring); ``busy_s``/``price_per_hour`` per instance."""
    m = per_request(arrival, first_token, finish, first_alloc, output_tokens)
    served = ~np.isnan(finish)
    out: dict[str, float] = {"n_requests": float(arrival.size), "n_served": float(served.sum()),
                             "n_rejected": float((~served).sum())}
    for key, v in m.items():
        vs = v[served]
        for q in QUANTILES:
            out[f"p{q}_{key}"] = float(np.percentile(vs, q)) if vs.size else float("nan")
        out[f"mean_{key}"] = float(vs.mean()) if vs.size else float("nan")
    ok = slo_met(m["ttft"], m["tpot"], priority, ttft_slo, tpot_slo)
    if len(ttft_slo) > 1:  # per priority class: tails and attainment
        for c in range(len(ttft_slo)):
            mine = served & (priority == c)
            for key in ("ttft", "tpot", "e2e"):
                out[f"p99_{key}_class{c}"] = float(np.percentile(m[key][mine], 99)) if mine.any() else float("nan")
            n_c = int((priority == c).sum())
            out[f"slo_attainment_class{c}"] = float(ok[priority == c].sum() / n_c) if n_c else float("nan")
    start = float(arrival[0])
    end = float(np.nanmax(finish)) if served.any() else start
    span = max(end - start, 1e-12)
    out_tok = float(output_tokens[served].sum())
    all_tok = out_tok + float(prompt_tokens[served].sum())
    dollars = float(np.sum(price_per_hour)) * span / 3600.0
    out.update({
        "slo_attainment": float(ok.sum() / arrival.size),
        "goodput_rps": float(ok.sum() / span),
        "throughput_tok_s": out_tok / span,
        "makespan_s": span,
        "utilization": float(np.mean(busy_s) / span),
        "preemptions": float(preemptions.sum()),
        "ttft_jain_fairness": _jain(m["ttft"][served]),
        "cost_per_mtok_output": dollars / out_tok * 1e6 if out_tok else float("nan"),
        "cost_per_mtok_total": dollars / all_tok * 1e6 if all_tok else float("nan"),
    })
    return out


def _jain(x: np.ndarray) -> float:
    """Jain's fairness index of ``x`` (1 = all equal, 1/n = one request takes everything); nan if empty."""
    if x.size == 0:
        return float("nan")
    sq = float(np.sum(x * x))
    return float(np.sum(x) ** 2 / (x.size * sq)) if sq > 0 else 1.0
