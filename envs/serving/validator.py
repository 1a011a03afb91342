"""Independent validator of a serving episode: replays invariants from the event log alone.

It does not import the environment or the simulator. From the ``ServingSchedule`` (residencies and
iteration segments) and the cluster specification it checks that

- every request is routed once to an existing instance, or rejected only if no instance could ever hold it;
- each request's KV stints are ordered and well formed, the last one finishes it, and it produced exactly
  its output tokens (one per prefill completion plus one per decode iteration of its instance while it was
  decoding; every running sequence decodes in a decode iteration);
- a swapped-in stint resumes with exactly the KV tokens its swap-out took to host memory;
- swap traffic is paid (FastSwitch): the blocks swapped out or in on an instance at time ``t`` (recomputed
  from the stints' KV tokens) cross PCIe at the engine's swap bandwidth (``swap_bw_gbps``, else the GPU's
  PCIe link from the catalog) within the iteration that starts there at ``t``, so that iteration lasts at
  least ``blocks x block_bytes / bandwidth``; the total is reported as ``swap_time_s``;
- no instance ever holds more KV blocks than its capacity (recomputed from the catalog), at the end of any
  segment (block use only grows within a segment);
- iteration segments on an instance do not overlap;
- TTFT is at least the request's own prefill time alone on its instance (the cost model; with measured
  ``interference`` or ``iteration_noise``, times the smallest factor its calibration table allows);
- a prefix-cache hit covers only leading prompt blocks whose hashes an earlier (or simultaneous) admission
  on the same instance brought in;
- with workflows: a stage never gets KV blocks before all its parents finished, and a stage of a rejected
  parent is rejected; its arrival (for TTFT and latency) is its release, the last parent's finish;
- with disaggregation: arrivals go to the prefill pool, which never decodes (hand-offs are checked as
  migrations), and a request is rejected only if no prefill or no decode instance can hold it;
- with migration: a request's first stint is on its routed instance; a migrated-in stint follows exactly a
  migrated-out one, on another instance of the same model, after at least the KV transfer time over the
  link, and resumes with exactly the KV tokens (so blocks) the previous stint ended with; a migrated
  request still finishes exactly once, with exactly its output tokens;

then recomputes every metric (``metrics.aggregate``) from those times. The objective ``p99_ttft`` the env
reports must equal the one returned here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.serving import catalog, metrics
from schedgym.envs.serving.cluster import cost_model, instance_plan, request_limit
from schedgym.envs.serving.types import (
    END_FINISH,
    END_MIGRATE_OUT,
    END_SWAP_OUT,
    START_MIGRATE_IN,
    START_PREFILL,
    START_SWAP_IN,
    ServingSchedule,
    ServingWorkload,
)
from schedgym.envs.serving.variability import least_factor

REL_TOL = 1e-9


class ScheduleError(ValueError):
    """A serving event log violates an invariant."""


def validate_run(workload: ServingWorkload, schedule: ServingSchedule, **kwargs: Any) -> dict[str, Any]:
    """Alias of ``validate_schedule`` (the issue's name for the run validator)."""
    return validate_schedule(workload, schedule, **kwargs)


def validate_schedule(workload: ServingWorkload, schedule: ServingSchedule, *,
                      check_prefill_bound: bool = True) -> dict[str, Any]:
    """Check ``schedule`` against ``workload``; return every metric recomputed from the log."""
    w, s, cl = workload, schedule, schedule.cluster
    R, N = w.n_requests, cl.n_instances
    if s.workload.n_requests != R or not np.array_equal(s.workload.arrival, w.arrival) or \
            not np.array_equal(s.workload.output_tokens, w.output_tokens):
        raise ScheduleError(f"schedule is for workload {s.workload.name}, not {w.name}")
    eng = cl.engine
    bs = eng.block_size
    plans = [instance_plan(spec, eng) for spec in cl.instances]
    limits = np.array([request_limit(spec, eng, p) for spec, p in zip(cl.instances, plans, strict=False)])
    capacity = np.array([p.num_blocks for p in plans])
    p_tok, o_tok = w.prompt_tokens, w.output_tokens

    # Routing.
    inst = s.instance
    if inst.shape != (R,) or ((inst < -1) | (inst >= N)).any():
        raise ScheduleError(f"instance must be ({R},) with values in -1..{N - 1}")
    rejected = np.flatnonzero(inst < 0)
    P = cl.disagg.n_prefill if cl.disagg is not None else N  # routable instances: 0..P-1
    for r in rejected:
        if w.workflows is not None and (inst[w.workflows.parents_of(r)] < 0).any():
            continue  # a stage of a rejected parent is rejected in turn (checked in ``_check_workflows``)
        fit = p_tok[r] + o_tok[r] <= limits
        if fit[:P].any() and (cl.disagg is None or fit[P:].any()):
            raise ScheduleError(f"request {r} was rejected but instance(s) {np.flatnonzero(fit).tolist()} could "
                                "serve it")
    if (inst >= P).any():
        raise ScheduleError(f"request {int(np.argmax(inst >= P))} was routed to decode instance "
                            f"{inst[inst >= P][0]}; arrivals go to the prefill pool 0..{P - 1}")
    routed = inst >= 0
    bad = np.flatnonzero(routed & (p_tok + o_tok > limits[np.maximum(inst, 0)]))
    if bad.size:
        r = int(bad[0])
        raise ScheduleError(f"request {r} ({p_tok[r] + o_tok[r]} tokens) was routed to instance {inst[r]} whose "
                            f"limit is {limits[inst[r]]}")

    # Residencies, grouped per request in time order.
    rr = s.res_request
    M = rr.size
    if M and ((rr < 0) | (rr >= R)).any():
        raise ScheduleError("a residency names a request outside the workload")
    order = np.lexsort((s.res_alloc, rr))
    rr, alloc, start, end = rr[order], s.res_alloc[order], s.res_start[order], s.res_end[order]
    kv0, cached = s.res_kv_start[order], s.res_cached[order]
    sk, ek = s.res_start_kind[order], s.res_end_kind[order]
    counts = np.bincount(rr, minlength=R)
    if (counts[routed] < 1).any():
        raise ScheduleError(f"request {int(np.flatnonzero(routed & (counts < 1))[0])} was routed but never served")
    if (counts[~routed] > 0).any():
        raise ScheduleError(f"rejected request {int(np.flatnonzero(~routed & (counts > 0))[0])} has KV stints")
    res_inst = inst[rr] if s.res_instance is None else s.res_instance[order]
    if ((res_inst < 0) | (res_inst >= N)).any():
        raise ScheduleError("a KV stint is on an instance outside the cluster")
    if np.isnan(start).any() or np.isnan(end).any():
        raise ScheduleError(f"request {int(rr[np.isnan(start) | np.isnan(end)][0])} has an unfinished KV stint")
    if (alloc < w.arrival[rr]).any():
        raise ScheduleError(f"request {int(rr[alloc < w.arrival[rr]][0])} got KV blocks before it arrived")
    if ((start < alloc) | (end < start)).any():
        raise ScheduleError(f"request {int(rr[(start < alloc) | (end < start)][0])}: a stint is not "
                            "allocation <= decode start <= end")
    first = np.r_[True, rr[1:] != rr[:-1]] if M else np.zeros(0, bool)
    last = np.r_[rr[1:] != rr[:-1], True] if M else np.zeros(0, bool)
    if (ek[last] != END_FINISH).any() or (ek[~last] == END_FINISH).any():
        raise ScheduleError("every request must finish exactly once, in its last KV stint")
    prev_ek = np.r_[0, ek[:-1]] if M else ek
    swap_in = sk == START_SWAP_IN
    if (swap_in != (~first & (prev_ek == END_SWAP_OUT))).any():
        raise ScheduleError("a swap-in must follow exactly a swap-out of the same request")
    mig_in = sk == START_MIGRATE_IN
    if (mig_in != (~first & (prev_ek == END_MIGRATE_OUT))).any():
        raise ScheduleError("a migrated-in stint must follow exactly a migrated-out stint of the same request")
    if mig_in.any() and cl.migration is None and cl.disagg is None:
        raise ScheduleError("the log has migrations but the cluster has no migration configured")
    if (res_inst[first] != inst[rr[first]]).any():
        raise ScheduleError(f"request {int(rr[first][res_inst[first] != inst[rr[first]]][0])} starts on an "
                            "instance it was not routed to")
    if (~mig_in[1:] & ~first[1:] & (res_inst[1:] != res_inst[:-1])).any() if M else False:
        raise ScheduleError("only a migration may move a request to another instance")
    if (~first & (alloc < np.r_[0.0, end[:-1]])).any():
        raise ScheduleError("a request's KV stints overlap in time")
    if (cached < 0).any() or (cached >= p_tok[rr]).any():
        raise ScheduleError("prefix-cache hits must be in 0..prompt-1 tokens")
    _check_prefix_hits(w, eng.prefix_caching, rr, res_inst, alloc, cached, sk)

    # Segments per instance; decode iterations counted at segment ends.
    si = s.seg_instance
    if ((si < 0) | (si >= N)).any() or (s.seg_iters < 1).any() or (s.seg_end <= s.seg_start).any():
        raise ScheduleError("segments need a valid instance, >= 1 iteration and positive duration")
    tokens = (sk == START_PREFILL).astype(np.int64)
    decoded = np.zeros(M, np.int64)  # decode iterations per stint
    peak_blocks = np.zeros(N, np.int64)
    busy = np.zeros(N)
    for i in range(N):
        mine = np.flatnonzero(si == i)
        o = mine[np.argsort(s.seg_start[mine], kind="stable")]
        s0, s1 = s.seg_start[o], s.seg_end[o]
        if (s0[1:] < s1[:-1]).any():
            j = int(np.argmax(s0[1:] < s1[:-1]))
            raise ScheduleError(f"instance {i}: an iteration starts at {s0[j + 1]} before the previous ends "
                                f"at {s1[j]}")
        busy[i] = float(np.sum(s1 - s0))
        dec = np.cumsum(np.where(s.seg_decode[o], s.seg_iters[o], 0))
        C = np.r_[0, dec]  # decode iterations completed by the end of segment k-1 -> C[k]

        def done_by(t: np.ndarray, s1: np.ndarray = s1, C: np.ndarray = C) -> np.ndarray:
            return C[np.searchsorted(s1, t, side="right")]

        ri = np.flatnonzero(res_inst == i)
        if ri.size == 0:
            continue
        d_start = done_by(start[ri])
        decoded[ri] = done_by(end[ri]) - d_start
        tokens[ri] += decoded[ri]
        # KV held at every segment end, per stint active over the whole segment.
        j0 = np.searchsorted(s0, alloc[ri], side="left")
        j1 = np.searchsorted(s1, end[ri], side="right")
        n = np.maximum(j1 - j0, 0)
        if n.sum() == 0:
            continue
        seg = np.repeat(j0 - np.cumsum(np.r_[0, n[:-1]]), n) + np.arange(n.sum())
        which = np.repeat(np.arange(ri.size), n)
        d = np.maximum(C[seg + 1] - d_start[which], 0)
        blocks = -(-(kv0[ri][which] + d) // bs)
        used = np.bincount(seg, weights=blocks, minlength=o.size).astype(np.int64)
        peak_blocks[i] = used.max()
        if used.max() > capacity[i]:
            j = int(np.argmax(used))
            raise ScheduleError(f"instance {i} holds {used[j]} KV blocks at t={s1[j]} but has only {capacity[i]}")
    j = np.flatnonzero(swap_in)
    bad = np.flatnonzero(kv0[j] != kv0[j - 1] + decoded[j - 1])
    if bad.size:
        k = j[bad[0]]
        raise ScheduleError(f"request {rr[k]} was swapped out with {kv0[k - 1] + decoded[k - 1]} KV tokens but "
                            f"swapped in with {kv0[k]}: swapping must conserve its blocks")
    _check_migrations(cl, plans, mig_in, rr, res_inst, alloc, end, kv0, decoded)
    swap_time = _check_swap_time(s, cl, plans, swap_in, ek, res_inst, alloc, end, kv0, decoded)
    if cl.disagg is not None:
        on_prefill = res_inst < cl.disagg.n_prefill
        if (decoded[on_prefill] > 0).any():
            k = int(np.flatnonzero(on_prefill & (decoded > 0))[0])
            raise ScheduleError(f"request {rr[k]} decoded {decoded[k]} token(s) on prefill instance {res_inst[k]}; "
                                "the prefill pool must hand requests to the decode pool after their first token")
    per_req_tokens = np.bincount(rr, weights=tokens, minlength=R).astype(np.int64)
    wrong = np.flatnonzero(routed & (per_req_tokens != o_tok))
    if wrong.size:
        r = int(wrong[0])
        raise ScheduleError(f"request {r} produced {per_req_tokens[r]} tokens, expected exactly {o_tok[r]}")

    # Per-request times.
    first_token = np.full(R, np.nan)
    finish = np.full(R, np.nan)
    first_alloc = np.full(R, np.nan)
    first_token[rr[first]] = start[first]
    first_alloc[rr[first]] = alloc[first]
    finish[rr[last]] = end[last]
    first_cached = np.zeros(R, np.int64)
    first_cached[rr[first]] = cached[first]
    if check_prefill_bound:
        costs = [cost_model(spec, eng) for spec in cl.instances]
        # With measured iteration noise an iteration may be faster than the table, by at most the smallest ratio.
        least = [least_factor(c, cl.interference, cl.iteration_noise) for c in costs]
        for r in np.flatnonzero(routed):
            lb = costs[inst[r]].prefill_time(int(p_tok[r]), int(first_cached[r])) * least[inst[r]]
            if first_token[r] - w.arrival[r] < lb * (1 - REL_TOL):
                raise ScheduleError(f"request {r}: TTFT {first_token[r] - w.arrival[r]:.6f} s is below its "
                                    f"own prefill time {lb:.6f} s on instance {inst[r]}")
    n_mig = np.bincount(rr[mig_in], minlength=R)
    arrival = w.arrival
    if w.workflows is not None:
        arrival = _check_workflows(w, inst, first_alloc, finish)
    preempt = np.maximum(counts - 1 - n_mig, 0)
    price = np.array([catalog.gpu(spec.gpu).price_per_hour * spec.tp for spec in cl.instances])
    out = metrics.aggregate(arrival, first_token, finish, first_alloc, p_tok, o_tok, w.priority, preempt,
                            cl.slo.ttft_s, cl.slo.tpot_s, busy, price)
    out["peak_kv_fraction"] = float(np.max(peak_blocks / capacity))
    out["migrations"] = float(n_mig.sum())
    out["swap_time_s"] = swap_time
    if w.workflows is not None:
        out["deadline_attainment"] = w.workflows.attainment(w.arrival, finish)
    out["prefix_hit_fraction"] = float(first_cached.sum() / max(1, p_tok[routed].sum()))
    return {"p99_ttft": out.pop("p99_ttft"), **out}  # the objective first (summaries take the first number)


def _check_migrations(cl: Any, plans: list[Any], mig_in: np.ndarray, rr: np.ndarray, res_inst: np.ndarray,
                      alloc: np.ndarray, end: np.ndarray, kv0: np.ndarray, decoded: np.ndarray) -> None:
    """Migrated-in stints: another instance of the same model, after the KV transfer, with the same KV tokens."""
    j = np.flatnonzero(mig_in)
    if j.size == 0:
        return
    src, dst = res_inst[j - 1], res_inst[j]
    models = np.array([spec.model for spec in cl.instances])
    bad = np.flatnonzero((src == dst) | (models[src] != models[dst]))
    if bad.size:
        k = j[bad[0]]
        raise ScheduleError(f"request {rr[k]} migrated from instance {src[bad[0]]} to {dst[bad[0]]}: a migration "
                            "must go to another instance of the same model")
    kv_end = kv0[j - 1] + decoded[j - 1]
    bad = np.flatnonzero(kv0[j] != kv_end)
    if bad.size:
        k = j[bad[0]]
        raise ScheduleError(f"request {rr[k]} left instance {src[bad[0]]} with {kv_end[bad[0]]} KV tokens but "
                            f"resumed on {dst[bad[0]]} with {kv0[k]}: KV blocks must be conserved by a migration")
    bs = cl.engine.block_size
    block_bytes = np.array([p.block_bytes for p in plans])
    link = cl.migration.link_gbps if cl.migration is not None else cl.disagg.link_gbps
    need = -(-kv_end // bs) * block_bytes[src] / (link * 1e9)
    bad = np.flatnonzero(alloc[j] - end[j - 1] < need * (1 - REL_TOL))
    if bad.size:
        k = j[bad[0]]
        raise ScheduleError(f"request {rr[k]} resumed {alloc[k] - end[k - 1]:.6f} s after leaving instance "
                            f"{src[bad[0]]}, faster than its KV transfer ({need[bad[0]]:.6f} s)")


def _check_swap_time(s: ServingSchedule, cl: Any, plans: list[Any], swap_in: np.ndarray, ek: np.ndarray,
                     res_inst: np.ndarray, alloc: np.ndarray, end: np.ndarray, kv0: np.ndarray,
                     decoded: np.ndarray) -> float:
    """Swap-outs (at a stint's end) and swap-ins (at its allocation) move their KV blocks over PCIe during the
    iteration starting on that instance at that time; it must last at least the transfer. Returns the total
    transfer time (s) of the episode."""
    out = np.flatnonzero(ek == END_SWAP_OUT)
    inn = np.flatnonzero(swap_in)
    if out.size == 0 and inn.size == 0:
        return 0.0
    eng, bs = cl.engine, cl.engine.block_size
    bw = np.array([eng.swap_bw_gbps * 1e9 if eng.swap_bw_gbps is not None else catalog.gpu(spec.gpu).pcie_bw
                   for spec in cl.instances])
    block_bytes = np.array([p.block_bytes for p in plans])
    inst = np.r_[res_inst[out], res_inst[inn]]
    when = np.r_[end[out], alloc[inn]]
    blocks = np.r_[-(-(kv0[out] + decoded[out]) // bs), -(-kv0[inn] // bs)]
    secs = blocks * block_bytes[inst] / bw[inst]
    keys, idx = np.unique(np.stack([inst, when]), axis=1, return_inverse=True)
    need = np.bincount(idx.ravel(), weights=secs, minlength=keys.shape[1])
    for (i, t), x in zip(keys.T, need, strict=True):
        i = int(i)
        mine = np.flatnonzero(s.seg_instance == i)
        k = mine[s.seg_start[mine] == t]
        if k.size != 1:
            raise ScheduleError(f"instance {i} swapped {x:.6f} s of KV blocks at t={t} but no iteration starts then "
                                "to carry the transfer")
        dur = float(s.seg_end[k[0]] - t)
        if dur < x * (1 - REL_TOL):
            raise ScheduleError(f"instance {i}: the iteration at t={t} lasts {dur:.6f} s, less than the swap transfer "
                                f"of its KV blocks over PCIe ({x:.6f} s at {bw[i] / 1e9:g} GB/s)")
    return float(secs.sum())


def _check_prefix_hits(w: ServingWorkload, caching: bool, rr: np.ndarray, res_inst: np.ndarray,
                       alloc: np.ndarray, cached: np.ndarray, sk: np.ndarray) -> None:
    """Replay each instance's admissions: a hit may only cover leading blocks admitted there before."""
    hit = np.flatnonzero(cached > 0)
    if hit.size == 0:
        return
    if not caching or w.prefix_hashes is None:
        raise ScheduleError(f"request {rr[hit[0]]} has prefix-cache hits but prefix caching is off or the "
                            "workload has no prefix hashes")
    bt = w.prefix_block_tokens
    for i in np.unique(res_inst[hit]):
        adm = np.flatnonzero((res_inst == i) & (sk == 0))
        adm = adm[np.argsort(alloc[adm], kind="stable")]
        seen: set[int] = set()
        k = 0
        while k < adm.size:
            group = adm[k:np.searchsorted(alloc[adm], alloc[adm[k]], side="right")]
            k += group.size
            mine = [w.hashes(int(rr[j])).tolist() for j in group]
            for x, j in enumerate(group):
                if cached[j] == 0:
                    continue
                others = {h for y, hs in enumerate(mine) if y != x for h in hs}  # same-time admissions
                n = 0
                for h in mine[x]:
                    if h not in seen and h not in others:
                        break
                    n += 1
                if cached[j] > n * bt:
                    raise ScheduleError(f"request {rr[j]} claims {cached[j]} cached prompt tokens on instance {i} "
                                        f"but only {n} leading prefix block(s) were ever admitted there")
            for hs in mine:
                seen.update(hs)


def _check_workflows(w: ServingWorkload, inst: np.ndarray, first_alloc: np.ndarray,
                     finish: np.ndarray) -> np.ndarray:
    """Stages start after their parents finish; returns every stage's release time (its effective arrival)."""
    wf = w.workflows
    release = w.arrival.copy()
    for r in range(w.n_requests):
        ps = wf.parents_of(r)
        if ps.size == 0:
            continue
        if (inst[ps] < 0).any():
            if inst[r] >= 0:
                raise ScheduleError(f"workflow stage {r} ran although its parent {ps[inst[ps] < 0][0]} was rejected")
            continue
        release[r] = max(release[r], float(finish[ps].max()))
        if inst[r] >= 0 and first_alloc[r] < release[r]:
            p = int(ps[np.argmax(finish[ps])])
            raise ScheduleError(f"workflow stage {r} got KV blocks at {first_alloc[r]:.6f} before its parent {p} "
                                f"finished at {finish[p]:.6f}")
    return release
