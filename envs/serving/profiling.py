"""Checking the cost model against real GPU measurements (Vidur's operator profiles, MIT).

The shipped files (``schedgym/data/serving/profiling/vidur/**.csv.gz``: gzip of byte-identical copies)
hold median times per operator of one transformer layer. ``evaluate`` predicts every row with the
``RooflineCostModel`` and returns relative errors; ``fit`` fits a GPU's ``Efficiency`` constants on a seeded
half of the rows so the other half measures the error honestly.

Row groups:
- ``op``: one non-attention operator of one layer (mlp.csv), used to fit the GEMM/elementwise constants;
- ``linear``: sum of the non-attention operators of one layer (mlp.csv) at ``num_tokens`` tokens and the
  row's tensor-parallel degree (the embedding column is compared separately as ``embedding``);
- ``attn_decode`` / ``attn_prefill``: attention kernels plus their input/output reshapes (attention file:
  batch size, KV length per sequence, prefill chunk);
- ``allreduce``: intra-node all-reduce of ``size`` bf16 elements on ``num_workers`` GPUs.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from schedgym.envs.serving import catalog
from schedgym.envs.serving.catalog import GpuSpec, ModelSpec
from schedgym.envs.serving.costmodel import Efficiency, RooflineCostModel

ROOT = "serving/profiling/vidur"
MLP_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
           "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
PROFILES = {  # (GPU, model) -> mlp file; the catalog model must match the file's dimensions
    ("H100-80GB", "Llama-2-7B"): "compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv.gz",
    ("H100-80GB", "Llama-2-70B"): "compute/h100/meta-llama/Llama-2-70b-hf/mlp.csv.gz",
    ("A100-80GB", "Llama-2-7B"): "compute/a100/meta-llama/Llama-2-7b-hf/mlp.csv.gz",
    ("A100-80GB", "Llama-2-70B"): "compute/a100/meta-llama/Llama-2-70b-hf/mlp.csv.gz",
    ("A100-80GB", "Llama-3-8B"): "compute/a100/meta-llama/Meta-Llama-3-8B/mlp.csv.gz",
    ("A100-80GB", "Llama-3-70B"): "compute/a100/meta-llama/Meta-Llama-3-70B/mlp.csv.gz",
}
ATTENTION = {("A100-80GB", "Llama-2-70B"): "compute/a100/meta-llama/Llama-2-70b-hf/attention_tp2_e2d00e9.csv.gz"}
ALLREDUCE = {"A100-80GB": "network/a100_dgx/all_reduce.csv.gz", "H100-80GB": "network/h100_dgx/all_reduce.csv.gz"}
MS = 1e-3


@cache
def read_rows(relpath: str) -> tuple[dict[str, str], ...]:
    """Rows of one shipped profile CSV (decompressed in memory)."""
    raw = resources.files("schedgym.data").joinpath(f"{ROOT}/{relpath}").read_bytes()
    return tuple(csv.DictReader(io.StringIO(gzip.decompress(raw).decode())))


def _f(row: dict[str, str], op: str) -> float:
    v = row[f"time_stats.{op}.median"]
    return float(v) if v != "" else float("nan")


@dataclass
class Rows:
    """Measured rows of one (GPU, model, group): inputs as arrays, measured seconds, the model config."""

    gpu: str
    model: str
    group: str
    inputs: dict[str, np.ndarray]
    measured: np.ndarray
    op: str = ""  # group "op": which mlp.csv operator

    def subset(self, idx: np.ndarray) -> Rows:
        return Rows(self.gpu, self.model, self.group, {k: v[idx] for k, v in self.inputs.items()},
                    self.measured[idx], self.op)


def _model_from_row(name: str, r: dict[str, str]) -> ModelSpec:
    """The catalog model, checked against the profile's own configuration columns."""
    m = catalog.model(name)
    got = {"hidden_size": int(r["n_embd"]), "n_heads": int(r.get("n_head") or r.get("n_q_head")),
           "n_kv_heads": int(r["n_kv_head"])}
    if "n_expanded_embd" in r:
        got["ffn_size"] = int(r["n_expanded_embd"])
    diff = {k: (getattr(m, k), v) for k, v in got.items() if getattr(m, k) != v}
    if diff:
        raise ValueError(f"catalog model {name} differs from the profile's configuration: {diff} (catalog, profile)")
    return m


def load_groups() -> list[Rows]:
    """Every measured row of the shipped profiles, grouped by (GPU, model, operator group)."""
    out: list[Rows] = []
    for (g, mname), path in PROFILES.items():
        rows = read_rows(path)
        _model_from_row(mname, rows[0])
        tok = np.array([float(r["num_tokens"]) for r in rows])
        tp = np.array([float(r["num_tensor_parallel_workers"]) for r in rows])
        lin = np.array([sum(_f(r, op) for op in MLP_OPS) for r in rows]) * MS
        emb = np.array([_f(r, "emb") for r in rows]) * MS
        out.append(Rows(g, mname, "linear", {"tokens": tok, "tp": tp}, lin))
        out.append(Rows(g, mname, "embedding", {"tokens": tok, "tp": tp}, emb))
        for op in MLP_OPS:
            t = np.array([_f(r, op) for r in rows]) * MS
            out.append(Rows(g, mname, "op", {"tokens": tok, "tp": tp}, t, op))
    for (g, mname), path in ATTENTION.items():
        rows = read_rows(path)
        _model_from_row(mname, rows[0])
        pre = [r for r in rows if r["is_prefill"] == "True"]
        dec = [r for r in rows if r["is_prefill"] == "False"]
        for group, rs, op in (("attn_prefill", pre, "attn_prefill"), ("attn_decode", dec, "attn_decode")):
            t = np.array([_f(r, op) + _f(r, "attn_input_reshape") + _f(r, "attn_output_reshape") for r in rs]) * MS
            out.append(Rows(g, mname, group, {
                "batch": np.array([float(r["batch_size"]) for r in rs]),
                "chunk": np.array([float(r["prefill_chunk_size"]) for r in rs]),
                "kv": np.array([float(r["kv_cache_size"]) for r in rs]),
                "tp": np.array([float(r["num_tensor_parallel_workers"]) for r in rs])}, t))
    for g, path in ALLREDUCE.items():
        rs = [r for r in read_rows(path) if r["num_workers"] == r["devices_per_node"] and int(r["num_workers"]) > 1]
        out.append(Rows(g, "-", "allreduce", {
            "bytes": np.array([2.0 * float(r["size"]) for r in rs]),
            "tp": np.array([float(r["num_workers"]) for r in rs])}, np.array([_f(r, "all_reduce") for r in rs]) * MS))
    return [r for r in out if r.measured.size]


def predict(rows: Rows, eff: Efficiency, gpu: GpuSpec | None = None) -> np.ndarray:
    """The cost model's prediction (seconds) for every row of ``rows``."""
    g = gpu or catalog.gpu(rows.gpu)
    out = np.empty(rows.measured.shape)
    for tp in np.unique(rows.inputs["tp"]):
        sel = rows.inputs["tp"] == tp
        m = catalog.model(rows.model) if rows.model != "-" else catalog.model("Llama-2-7B")
        cm = RooflineCostModel(g, m, int(tp), eff)
        x = {k: v[sel] for k, v in rows.inputs.items()}
        if rows.group == "linear":
            out[sel] = sum(cm.linear_ops(x["tokens"]).values())
        elif rows.group == "op":
            out[sel] = cm.linear_ops(x["tokens"])[rows.op]
        elif rows.group == "embedding":
            out[sel] = cm.embedding(x["tokens"])
        elif rows.group == "attn_decode":
            out[sel] = cm.attention_decode(x["batch"], x["batch"] * x["kv"])
        elif rows.group == "attn_prefill":
            c, p = x["chunk"], x["kv"]
            out[sel] = cm.attention_prefill(x["batch"] * c, x["batch"] * p, x["batch"] * c * (p + (c + 1) / 2))
        elif rows.group == "allreduce":
            out[sel] = cm.allreduce(x["bytes"])
        else:
            raise ValueError(f"unknown row group {rows.group!r}")
    return out


def split(n: int, seed: int = 0, train_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/test row indices."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(train_fraction * n))
    return np.sort(perm[:k]), np.sort(perm[k:])


# Which constants each group informs (the rest are held fixed while fitting that group).
GROUP_PARAMS = {
    "op": ("gemm_compute", "gemm_memory", "sharpness", "kernel_overhead_s", "norm_passes", "rope_passes",
               "act_passes", "add_passes"),
    "embedding": ("emb_passes",),
    "attn": ("attn_compute", "attn_memory", "attn_overhead_s", "reshape_passes"),
    "allreduce": ("allreduce_latency_s", "allreduce_bw_factor"),
}


def _fit_params(groups: list[Rows], eff: Efficiency, names: tuple[str, ...]) -> Efficiency:
    """Least squares on log(predicted / measured) over ``groups`` for the constants ``names``."""
    from scipy.optimize import least_squares  # fitting only (scipy comes with ray[rllib])

    x0 = np.log([getattr(eff, n) for n in names])

    def resid(x: np.ndarray) -> np.ndarray:
        e = replace(eff, **dict(zip(names, np.exp(x), strict=False)))
        return np.concatenate([np.log(predict(r, e) / r.measured) for r in groups])

    sol = least_squares(resid, x0, method="trf", loss="soft_l1", f_scale=0.1, max_nfev=400)
    return replace(eff, **dict(zip(names, (float(v) for v in np.exp(sol.x)), strict=False)))


def fit(gpu_name: str, groups: list[Rows], base: Efficiency | None = None, seed: int = 0) -> Efficiency:
    """Fit ``gpu_name``'s constants on the seeded training half of its rows (all groups it has data for)."""
    eff = base or Efficiency()
    mine = [r for r in groups if r.gpu == gpu_name]
    for key, names in GROUP_PARAMS.items():
        sel = [r for r in mine if r.group.startswith(key)]
        train = [r.subset(split(r.measured.size, seed)[0]) for r in sel]
        train = [r for r in train if np.isfinite(r.measured).all() and (r.measured > 0).all()]
        if train:
            eff = _fit_params(train, eff, names)
    return eff


def evaluate(groups: list[Rows], effs: dict[str, Efficiency], seed: int = 0, part: str = "test",
             per_op: bool = False) -> list[dict[str, Any]]:
    """Median / p90 relative error per (GPU, model, group) on the held-out (``test``) or ``all`` rows.

    The per-operator rows (group ``op``, used for fitting) are reported only with ``per_op=True``.
    """
    out = []
    for r in groups:
        if r.group == "op" and not per_op:
            continue
        eff = effs.get(r.gpu)
        if eff is None:
            continue
        sub = r.subset(split(r.measured.size, seed)[1]) if part == "test" else r
        ok = np.isfinite(sub.measured) & (sub.measured > 0)
        pred = predict(sub, eff)[ok]
        err = np.abs(pred - sub.measured[ok]) / sub.measured[ok]
        out.append({"gpu": r.gpu, "model": r.model, "group": r.op or r.group, "rows": int(ok.sum()),
                    "median_rel_err": float(np.median(err)), "p90_rel_err": float(np.percentile(err, 90))})
    return out
