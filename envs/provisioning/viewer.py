"""Rendering of a provisioning episode: the allocation so far and, once served, its cost and attainment."""

from __future__ import annotations

from typing import Any

from schedgym.envs.serving import catalog


def render_ansi(state: Any) -> str:
    p, counts = state.problem, state.counts
    lines = [f"{p.name}: SLO TTFT {p.slo.ttft_s[0]} s / TPOT {p.slo.tpot_s[0]} s, target {p.target}",
             f"{'GPU type':<12}{'count':>6}{'cap':>5}{'$/h each':>10}"]
    for g, n in zip(p.gpus, counts, strict=True):
        lines.append(f"{g:<12}{int(n):>6}{p.max_per_type:>5}{catalog.gpu(g).price_per_hour:>10.2f}")
    lines.append(f"total ${p.price(tuple(int(c) for c in counts)):.2f}/h")
    if state.result is not None:
        r = state.result
        lines.append(f"served: SLO attainment {r['slo_attainment']:.3f} ({'meets' if r['meets_target'] else 'misses'} "
                     f"the target); penalized cost ${r['penalized_cost_per_hour']:.2f}/h")
    return "\n".join(lines)

