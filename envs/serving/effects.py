"""Published serving effects, reproduced on the simulator: one table, each number from a validated episode.

- Routing at high load (Llumnix, OSDI'24: load-aware dispatch beats round-robin on tail TTFT): a
  memory-constrained cluster like Llumnix's (7B model on 24 GB GPUs: 4 x A10G / Llama-2-7B), Azure conv
  test part replayed at x0.5. Expect JSQ and Llumnix's freeness below round-robin on p99 TTFT (requests
  over the 4096-token context are rejected and counted, identically for every policy).
- Live migration (Llumnix, OSDI'24: migrating running requests off memory-pressed instances cuts tail
  latency and preemptions): the same cluster and load, Llumnix dispatch without and with the simulator's
  Llumnix migration policy (``migration="llumnix"``). Expect lower p99 TTFT and fewer preemptions (p99
  end-to-end latency is dominated by the longest outputs' decode time and barely moves). The same rule
  played through the agent decision point (``migration="agent"``, baseline ``llumnix_migration``) must give
  the identical episode.
- Priorities (Llumnix's high-priority headroom): 5 % of requests in class 0 (SLO 1 s TTFT, 50 ms TPOT), the
  rest class 1 (5 s, 200 ms); Llumnix dispatch without and with 64 blocks of headroom on instances holding
  a class-0 request. Expect lower class-0 p99 TTFT and TPOT with headroom.
- Chunked prefill (Sarathi-Serve, OSDI'24: stall-free batching lowers time between tokens): 4 x H100 /
  Llama-3-8B, Azure conv x12, JSQ; vLLM v0 prefill-priority batching vs a 512-token (Sarathi's default) and
  a 2048-token budget. Expect a lower p99 TPOT with chunking.
- Undersized KV cache (vLLM, SOSP'23: preemption when blocks run out): the same cluster with
  ``gpu_memory_utilization`` 0.9 vs 0.3. Expect preemptions only with the small cache.
- Swap cost (FastSwitch, arXiv:2411.18424: KV swap-out/in over PCIe costs decode time): the undersized
  cache with swap preemption, the swap transfer free, over the H100's PCIe link, and at an effective 1 GB/s
  (fine-grained per-block copies); ``ttft_jain_fairness`` is Jain's index of per-request TTFT. Expect the
  p99 TPOT to grow with the swap cost.
- Disaggregation (DistServe, OSDI'24; Splitwise, ISCA'24: separate prefill and decode pools raise goodput
  under tight TTFT and TPOT SLOs): Azure code test part (long prompts, short outputs) x4 on 4 x H100 /
  Llama-3-8B, SLO 1 s TTFT / 50 ms TPOT, JSQ; colocated vs 3 prefill + 1 decode instances (``disagg="3p1d"``,
  KV over a 25 GB/s link). Expect higher goodput per GPU disaggregated.
- Workflows (HEXGEN-Text2SQL: urgency-aware scheduling of multi-stage LLM workflows raises deadline
  attainment): Text2SQL workflows (schema linking -> 3 SQL candidates -> selection; a stage arrives when its
  parents finish; deadlines 5..40 s) at 3 workflows/s on the heterogeneous ``mixed-4`` cluster with 16
  sequences per batch; JSQ with FCFS queues vs the urgency-aware ``deadline_aware`` router with FCFS and
  with earliest-deadline-first queues (``queue_policy="edf"``). Expect higher deadline attainment with
  urgency-aware routing and ordering (``workflow_effect`` runs it over several seeds).
- Prefix-aware routing (SGLang's cache-aware router; Mooncake, FAST'25, on KV reuse): 4 x H100 /
  Llama-3.1-8B with prefix caching on the Mooncake synthetic trace's test part (prefix hashes). Expect a
  lower mean TTFT than round-robin, from more prompt tokens served by the prefix cache
  (``prefix_hit_fraction``: cached / prompt tokens). Cached blocks occupy free KV memory (LRU eviction).
  Also on the Mooncake conversation trace (29 % of its prefix blocks repeat) against JSQ.

``serving_effects()`` returns the rows, the checks and the per-policy TTFT samples (for the CDF plot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.types import ServingWorkload
from schedgym.envs.serving.workflows import text2sql_workload
from schedgym.policy import make_policy

ENV_ID = "schedgym/LLMServing-v0"
COLUMNS = ("mean_ttft", "p50_ttft", "p99_ttft", "p99_tpot", "p99_e2e", "preemptions", "migrations", "slo_attainment",
           "n_rejected", "prefix_hit_fraction")
COUNTS = ("preemptions", "migrations", "n_rejected")
WORKFLOW_RATE = 3.0
# (router, queue policy): the FCFS baseline first, the fully urgency-aware setting last.
WORKFLOW_SETTINGS = (("jsq", "fcfs"), ("jsq", "edf"), ("deadline_aware", "fcfs"), ("deadline_aware", "edf"))


@dataclass
class EffectsReport:
    """Rows (experiment, setting, policy, validated metrics), named checks, and TTFT samples per row."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    ttft: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def table(self) -> str:
        w = {c: max(15, len(c) + 1) for c in COLUMNS}
        head = f"{'experiment':<22}{'setting':<26}{'policy':<18}" + "".join(f"{c:>{w[c]}}" for c in COLUMNS)
        lines = [head, "-" * len(head)]
        for r in self.rows:
            vals = "".join(f"{r[c]:>{w[c]}.0f}" if c in COUNTS else f"{r[c]:>{w[c]}.3f}" for c in COLUMNS)
            lines.append(f"{r['experiment']:<22}{r['setting']:<26}{r['policy']:<18}{vals}")
        lines.append("")
        lines += [f"[{'PASS' if ok else 'FAIL'}] {name}" for name, ok in self.checks.items()]
        return "\n".join(lines)


def run_policy(workload: ServingWorkload, policy: str, seed: int = 0,
               **env_kwargs: Any) -> tuple[dict[str, Any], np.ndarray]:
    """One episode; returns the validator's metrics and the per-request TTFT (NaN for rejected requests)."""
    env = gym.make(ENV_ID, instance=workload, **env_kwargs)
    try:
        obs, info = env.reset(seed=seed)
        pol = make_policy(ENV_ID, policy)
        pol.reset(env, seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(pol.act(obs, info))
            done = terminated or truncated
        base = env.unwrapped
        metrics = base.validate()  # type: ignore[attr-defined]
        if not np.isclose(metrics["p99_ttft"], info["p99_ttft"]):
            raise RuntimeError(f"env reported p99_ttft {info['p99_ttft']} but the validator recomputed "
                               f"{metrics['p99_ttft']}")
        s = base.schedule()  # type: ignore[attr-defined]
        ttft = np.full(s.instance.size, np.nan)
        first = np.full(s.instance.size, np.inf)
        np.minimum.at(first, s.res_request, s.res_alloc)
        for r, alloc, start in zip(s.res_request, s.res_alloc, s.res_start, strict=False):
            if alloc == first[r]:
                ttft[r] = start - s.workload.arrival[r]
        return metrics, ttft
    finally:
        env.close()


def workflow_effect(seeds: list[int], rate: float = WORKFLOW_RATE, cluster: str = "mixed-4", max_num_seqs: int = 16,
                    n_workflows: int = 300) -> dict[tuple[str, str], list[float]]:
    """Validated deadline attainment of every ``WORKFLOW_SETTINGS`` entry on one Text2SQL workload per seed."""
    conv = part("azure-conv-2023", "test")
    out: dict[tuple[str, str], list[float]] = {k: [] for k in WORKFLOW_SETTINGS}
    for seed in seeds:
        w = text2sql_workload(conv, np.random.default_rng(seed), n_workflows, rate)
        for pol, qp in WORKFLOW_SETTINGS:
            m, _ = run_policy(w, pol, seed, cluster=cluster, rate_scale=1.0,
                              engine={"queue_policy": qp, "max_num_seqs": max_num_seqs})
            out[(pol, qp)].append(m["deadline_attainment"])
    return out


def serving_effects(out_dir: str | Path | None = None, seed: int = 0) -> EffectsReport:
    """Run the experiments (about a minute on one core); write TTFT CDF plots to ``out_dir`` if given."""
    rep = EffectsReport()

    def add(experiment: str, setting: str, policy: str, w: ServingWorkload, **kw: Any) -> dict[str, Any]:
        m, ttft = run_policy(w, policy, seed, **kw)
        row = {"experiment": experiment, "setting": setting, "policy": policy, **{c: m[c] for c in COLUMNS}}
        rep.rows.append(row)
        rep.ttft.setdefault(experiment, {})[f"{policy} {setting}".strip()] = ttft
        return {**m, **row}  # every validated metric (the table shows COLUMNS)

    conv = part("azure-conv-2023", "test")
    a10g = ["A10G/Llama-2-7B"] * 4
    routing = {p: add("routing@high-load", "4xA10G Llama-2-7B x0.5", p, conv, cluster=a10g, rate_scale=0.5)
               for p in ("round_robin", "random", "power_of_two", "jsq", "least_kv", "llumnix")}
    rep.checks["JSQ beats round-robin on p99 TTFT at high load"] = \
        routing["jsq"]["p99_ttft"] < routing["round_robin"]["p99_ttft"]
    rep.checks["Llumnix freeness beats round-robin on p99 TTFT at high load"] = \
        routing["llumnix"]["p99_ttft"] < routing["round_robin"]["p99_ttft"]
    two = dict(slo={"ttft_s": [1.0, 5.0], "tpot_s": [0.05, 0.2]}, class_probs=[0.05, 0.95])
    prio = {p: add("priorities@high-load", "5% class 0 (1 s, 50 ms)", p, conv, cluster=a10g, rate_scale=0.5, **two)
            for p in ("llumnix", "llumnix_priority")}
    rep.checks["Llumnix priority headroom lowers class-0 p99 TTFT and TPOT "
               f"({prio['llumnix']['p99_ttft_class0']:.2f} -> {prio['llumnix_priority']['p99_ttft_class0']:.2f} s, "
               f"{prio['llumnix']['p99_tpot_class0']:.4f} -> {prio['llumnix_priority']['p99_tpot_class0']:.4f} s)"] = \
        prio["llumnix_priority"]["p99_ttft_class0"] < prio["llumnix"]["p99_ttft_class0"] and \
        prio["llumnix_priority"]["p99_tpot_class0"] < prio["llumnix"]["p99_tpot_class0"]
    mig = {name: add("migration@high-load", name, "llumnix", conv, cluster=a10g, rate_scale=0.5, migration=m)
           for name, m in (("dispatch only", None), ("+ migration (Llumnix)", "llumnix"))}
    rep.checks["Llumnix migration lowers p99 TTFT and preemptions against dispatch only"] = \
        mig["+ migration (Llumnix)"]["p99_ttft"] < mig["dispatch only"]["p99_ttft"] and \
        mig["+ migration (Llumnix)"]["preemptions"] < mig["dispatch only"]["preemptions"]
    agent = add("migration@high-load", "+ migration (agent API)", "llumnix_migration", conv, cluster=a10g,
                rate_scale=0.5, migration="agent")
    rep.checks["the Llumnix rule at the agent migration decision point reproduces the built-in migration "
               f"({agent['migrations']:.0f} migrations, p99 TTFT {agent['p99_ttft']:.3f} s)"] = \
        all(agent[c] == mig["+ migration (Llumnix)"][c] for c in ("p99_ttft", "mean_ttft", "preemptions", "migrations"))

    h100 = "h100-4"
    chunk = {name: add("chunked-prefill", name, "jsq", conv, cluster=h100, rate_scale=12.0, engine=eng)
             for name, eng in (("no chunking (vLLM v0)", {}),
                               ("chunk 512 (Sarathi)", {"chunked_prefill": True}),
                               ("chunk 2048", {"chunked_prefill": True, "max_num_batched_tokens": 2048}))}
    rep.checks["chunked prefill lowers p99 TPOT against no chunking"] = \
        chunk["chunk 512 (Sarathi)"]["p99_tpot"] < chunk["no chunking (vLLM v0)"]["p99_tpot"]

    kv = {name: add("kv-cache-size", name, "jsq", conv, cluster=h100, rate_scale=12.0,
                    engine={"gpu_memory_utilization": u}) for name, u in (("gpu_mem_util 0.9", 0.9),
                                                                           ("gpu_mem_util 0.3 (small)", 0.3))}
    rep.checks["preemptions appear when the KV cache is undersized"] = \
        kv["gpu_mem_util 0.3 (small)"]["preemptions"] > 0 and kv["gpu_mem_util 0.9"]["preemptions"] == 0

    small = {"gpu_memory_utilization": 0.3, "preemption": "swap"}
    swap = {name: add("swap-cost", name, "jsq", conv, cluster=h100, rate_scale=12.0, engine={**small, **bw})
            for name, bw in (("swap free (1e4 GB/s)", {"swap_bw_gbps": 1e4}), ("swap over PCIe (64 GB/s)", {}),
                             ("swap at 1 GB/s", {"swap_bw_gbps": 1.0}))}
    rep.checks["swap overhead shows in the TPOT tail of a preemption-heavy load "
               f"(p99 TPOT {swap['swap free (1e4 GB/s)']['p99_tpot']:.4f} / "
               f"{swap['swap over PCIe (64 GB/s)']['p99_tpot']:.4f} / {swap['swap at 1 GB/s']['p99_tpot']:.4f} s; "
               f"TTFT Jain fairness {swap['swap free (1e4 GB/s)']['ttft_jain_fairness']:.3f} / "
               f"{swap['swap at 1 GB/s']['ttft_jain_fairness']:.3f})"] = \
        swap["swap free (1e4 GB/s)"]["preemptions"] > 0 and \
        swap["swap at 1 GB/s"]["p99_tpot"] > swap["swap over PCIe (64 GB/s)"]["p99_tpot"] >= \
        swap["swap free (1e4 GB/s)"]["p99_tpot"]

    code = part("azure-code-2023", "test")
    tight = {"ttft_s": [1.0], "tpot_s": [0.05]}
    dis = {name: add("disaggregation", name, "jsq", code, cluster=h100, rate_scale=4.0, slo=tight, **kw)
           for name, kw in (("colocated 4xH100", {}), ("3 prefill + 1 decode", {"disagg": "3p1d"}))}
    rep.checks["disaggregation raises goodput per GPU at tight SLOs on a prefill-heavy trace "
               f"({dis['colocated 4xH100']['goodput_rps'] / 4:.3f} -> "
               f"{dis['3 prefill + 1 decode']['goodput_rps'] / 4:.3f} req/s/GPU)"] = \
        dis["3 prefill + 1 decode"]["goodput_rps"] > dis["colocated 4xH100"]["goodput_rps"]

    sql = text2sql_workload(conv, np.random.default_rng(seed), 300, WORKFLOW_RATE)
    order = {(pol, qp): add("workflows", f"Text2SQL 3/s, {qp}", pol, sql, cluster="mixed-4", rate_scale=1.0,
                            engine={"queue_policy": qp, "max_num_seqs": 16})
             for pol, qp in WORKFLOW_SETTINGS}
    base, best = order[WORKFLOW_SETTINGS[0]], order[WORKFLOW_SETTINGS[-1]]
    rep.checks["urgency-aware routing + EDF queues raise workflow deadline attainment over JSQ + FCFS "
               f"({base['deadline_attainment']:.3f} -> {best['deadline_attainment']:.3f})"] = \
        best["deadline_attainment"] > base["deadline_attainment"]

    moon = part("mooncake-synthetic", "test")
    prefix = {p: add("prefix-aware", "4xH100 Llama-3.1-8B x1", p, moon, cluster="h100-long-4", rate_scale=1.0,
                     engine={"prefix_caching": True}) for p in ("round_robin", "jsq", "cache_aware")}
    rep.checks["cache-aware routing lowers mean TTFT against round-robin (prefix reuse)"] = \
        prefix["cache_aware"]["mean_ttft"] < prefix["round_robin"]["mean_ttft"]
    mconv = part("mooncake-conversation", "test")
    pconv = {p: add("prefix-aware (conv)", "4xH100 Llama-3.1-8B x1", p, mconv, cluster="h100-long-4",
                    rate_scale=1.0, engine={"prefix_caching": True}) for p in ("jsq", "cache_aware")}
    rep.checks["cache-aware routing lowers mean TTFT against JSQ on Mooncake conversation"] = \
        pconv["cache_aware"]["mean_ttft"] < pconv["jsq"]["mean_ttft"]

    if out_dir is not None:
        from schedgym.envs.serving.viewer import save_cdf

        out = Path(out_dir)
        for experiment, samples in rep.ttft.items():
            save_cdf(samples, out / f"ttft_cdf_{experiment.replace('@', '_')}.png", title=experiment)
    return rep
