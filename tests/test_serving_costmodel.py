"""LLMServing cost model: catalogs, the roofline against Vidur's measured GPU operator timings, calibration
tables, and memory planning (including clear errors for models that do not fit)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from importlib import resources

import numpy as np
import pytest
from helpers import table_rows

from schedgym.envs.serving import catalog, profiling
from schedgym.envs.serving.cluster import check_cluster, instance_plan
from schedgym.envs.serving.costmodel import (
    RooflineCostModel,
    TableCostModel,
    calibration_from_rows,
    fitted_efficiency,
    load_calibration_table,
)
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import ClusterSpec, EngineConfig, InstanceSpec, ServingWorkload
from schedgym.envs.serving.validator import validate_schedule

DATA = resources.files("schedgym.data").joinpath("serving")


def test_catalogs_have_the_required_gpus_and_models_with_sources():
    for g in ("A100-80GB", "H100-80GB", "H200", "L4", "A10G"):
        spec = catalog.gpu(g)
        assert spec.peak_flops > 1e13 and spec.hbm_bw > 1e11 and spec.memory_bytes >= 24e9 and spec.price_per_hour > 0
        assert spec.source
    for m in ("Llama-2-7B", "Llama-2-70B", "Llama-3-8B", "Llama-3-70B", "Mistral-7B"):
        spec = catalog.model(m)
        assert spec.source and spec.n_layers >= 32
    assert 6.5e9 < catalog.model("Llama-2-7B").n_params < 7e9
    assert 7.9e9 < catalog.model("Llama-3-8B").n_params < 8.2e9
    assert 68e9 < catalog.model("Llama-3-70B").n_params < 72e9
    assert catalog.gpu("h100") == catalog.gpu("H100-80GB")


@pytest.mark.parametrize("call,match", [
    (lambda: catalog.gpu("V100"), r"unknown GPU 'V100'; expected one of \[.*A100-80GB"),
    (lambda: catalog.model("GPT-5"), r"unknown model 'GPT-5'; expected one of \[.*Llama-3-8B"),
    (lambda: InstanceSpec.parse("H100-80GB"), "expected 'GPU/MODEL'"),
    (lambda: InstanceSpec("H100-80GB", "Llama-3-8B", tp=0), "tp must be an integer >= 1"),
    (lambda: InstanceSpec("H100-80GB", "Llama-2-7B", max_model_len=8192), r"max_model_len must be in 1\.\.4096"),
    (lambda: instance_plan(InstanceSpec("L4", "Llama-3-70B"), EngineConfig()),
     "does not fit GPU L4 at tensor-parallel 1"),
    (lambda: instance_plan(InstanceSpec("A100-80GB", "Llama-3-70B", tp=3), EngineConfig()),
     "tensor-parallel degree 3"),
    (lambda: EngineConfig(preemption="drop"), "preemption='drop': expected 'recompute' or 'swap'"),
    (lambda: check_cluster(ClusterSpec(("H100-80GB/Llama-3-8B", "A10G/Llama-3-70B/tp2"))),
     r"instance 1 \(A10G/Llama-3-70B/tp2\)"),
])
def test_bad_cluster_input_names_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_memory_plan_matches_vllm_scale():
    plan = instance_plan(InstanceSpec("H100-80GB", "Llama-3-8B"), EngineConfig())
    # vLLM reports roughly 25-28k blocks of 16 tokens for Llama-3-8B on one H100 at 0.9 utilisation.
    assert 22_000 < plan.num_blocks < 30_000
    tp4 = instance_plan(InstanceSpec("A100-80GB", "Llama-3-70B", tp=4), EngineConfig())
    assert tp4.num_blocks > 10_000
    assert instance_plan(InstanceSpec("H100-80GB", "Llama-3-8B"), EngineConfig(num_gpu_blocks=77)).num_blocks == 77


def test_roofline_is_monotone_and_faster_on_faster_gpus():
    m = catalog.model("Llama-3-8B")
    models = {g: RooflineCostModel(catalog.gpu(g), m) for g in ("L4", "A100-80GB", "H100-80GB", "H200")}
    times = {g: c.iteration_time(512, 32, 32 * 1000) for g, c in models.items()}
    assert times["L4"] > times["A100-80GB"] > times["H100-80GB"] > times["H200"]
    c = models["A100-80GB"]
    for a, b in ((c.iteration_time(100, 0, 0), c.iteration_time(2000, 0, 0)),
                 (c.iteration_time(0, 8, 8000), c.iteration_time(0, 64, 8000)),
                 (c.iteration_time(0, 8, 8000), c.iteration_time(0, 8, 80000))):
        assert a < b
    # Decode at small batch is memory bound: about the time to stream the weights once.
    w_time = m.weight_bytes / catalog.gpu("A100-80GB").hbm_bw
    assert w_time < c.iteration_time(0, 1, 500) < 2.5 * w_time
    # Tensor parallelism speeds up a big prefill.
    m70 = catalog.model("Llama-3-70B")
    assert RooflineCostModel(catalog.gpu("A100-80GB"), m70, 8).prefill_time(2000) < \
        RooflineCostModel(catalog.gpu("A100-80GB"), m70, 4).prefill_time(2000)


def test_vidur_profiles_are_byte_identical_copies():
    """The shipped .csv.gz files decompress to the bytes listed (sha256) in the data README."""
    readme = DATA.joinpath("README.md").read_text()
    listed = dict(re.findall(r"\| `((?:compute|network)/[^`]+\.csv)` \| ([0-9a-f]{64}) \|", readme))
    assert len(listed) == 9
    for rel, digest in listed.items():
        raw = gzip.decompress(DATA.joinpath(f"profiling/vidur/{rel}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == digest, rel


def test_traces_are_byte_identical_copies():
    readme = DATA.joinpath("README.md").read_text()
    listed = dict(re.findall(r"\| `traces/([^`]+)` \| ([0-9a-f]{64}) \|", readme))
    assert len(listed) == 5
    for name, digest in listed.items():
        assert hashlib.sha256(DATA.joinpath(f"traces/{name}").read_bytes()).hexdigest() == digest, name


def test_catalog_models_match_the_profiled_configurations():
    for (_, m), path in profiling.PROFILES.items():
        row = profiling.read_rows(path)[0]
        spec = catalog.model(m)
        assert (spec.hidden_size, spec.n_heads, spec.n_kv_heads, spec.ffn_size) == (
            int(row["n_embd"]), int(row["n_head"]), int(row["n_kv_head"]), int(row["n_expanded_embd"]))


def test_shipped_constants_predict_held_out_vidur_rows_within_15_percent():
    """Every (GPU, model, operator group) of the held-out half: median relative error <= 15%."""
    groups = profiling.load_groups()
    effs = {g: fitted_efficiency(g) for g in ("A100-80GB", "H100-80GB")}
    rows = profiling.evaluate(groups, effs)
    seen = {(r["gpu"], r["group"]) for r in rows}
    assert {("A100-80GB", "linear"), ("H100-80GB", "linear"), ("A100-80GB", "attn_decode"),
            ("A100-80GB", "attn_prefill"), ("H100-80GB", "allreduce")} <= seen
    for r in rows:
        assert r["median_rel_err"] <= 0.15, r
        assert r["p90_rel_err"] <= 0.30, r
    # The shipped constants are what the fit produces (so the numbers are reproducible).
    doc = json.loads(DATA.joinpath("costmodel_fit.json").read_text())
    assert set(doc["efficiency"]) == {"A100-80GB", "H100-80GB"}


@pytest.mark.slow
def test_refitting_on_the_training_half_reproduces_the_shipped_constants():
    groups = profiling.load_groups()
    a100 = profiling.fit("A100-80GB", groups)
    shipped = fitted_efficiency("A100-80GB")
    for k, v in a100.to_dict().items():
        assert v == pytest.approx(getattr(shipped, k), rel=1e-3), k
    # A deliberately wrong model is caught: halving the bandwidth breaks the decode-attention check.
    from dataclasses import replace
    bad = replace(shipped, attn_memory=shipped.attn_memory / 2)
    rows = profiling.evaluate(groups, {"A100-80GB": bad})
    assert max(r["median_rel_err"] for r in rows if r["group"] == "attn_decode") > 0.3


def test_calibration_table_reproduces_its_grid_and_is_affine_in_context():
    cost = RooflineCostModel(catalog.gpu("A100-80GB"), catalog.model("Llama-3-8B"))
    table = TableCostModel(calibration_from_rows(table_rows(cost)))
    for p, d, k in ((256, 16, 1600), (0, 128, 256000), (4096, 0, 0), (1024, 1, 2000)):
        assert table.iteration_time(p, d, k) == pytest.approx(cost.iteration_time(p, d, k), rel=1e-6)
    a, b = table.decode_coefficients(16)
    assert table.iteration_time(0, 16, 12345) == pytest.approx(a + b * 12345)
    # Between grid points it interpolates (within a few percent of the analytic model it was built from).
    assert table.iteration_time(600, 40, 40 * 700) == pytest.approx(cost.iteration_time(600, 40, 40 * 700), rel=0.1)


def test_calibration_table_overrides_the_analytic_model_in_a_simulation(tmp_path):
    slow = RooflineCostModel(catalog.gpu("L4"), catalog.model("Llama-3-8B"))  # measured on a much slower GPU
    rows = table_rows(slow)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"schema": "schedgym.calibration/v1", "gpu": "L4", "model": "Llama-3-8B", "tp": 1,
                                "rows": rows}))
    w = ServingWorkload("w", np.array([0.0, 0.5]), np.array([1000, 800]), np.array([20, 30]))
    spec = {"gpu": "H100-80GB", "model": "Llama-3-8B", "calibration": str(path)}
    cl_table, cl_plain = ClusterSpec((spec,)), ClusterSpec(("H100-80GB/Llama-3-8B",))
    finish = []
    for cl in (cl_table, cl_plain):
        sim = ClusterSim.build(w, cl)
        while (r := sim.next_decision()) is not None:
            sim.route(r, 0)
        sim.drain()
        validate_schedule(w, sim.schedule())
        finish.append(sim.finish[0])
    assert finish[0] > 3 * finish[1]  # the L4-measured table, not the H100 roofline, set the pace


@pytest.mark.parametrize("text,match", [
    ("prefill_tokens,decode_tokens,time_s\n1,0,0.1\n", r"missing column\(s\) \['kv_context_tokens'\]"),
    ("prefill_tokens,decode_tokens,kv_context_tokens,time_s\n1,0,0,abc\n", "row 2: .*time_s a number"),
    ("prefill_tokens,decode_tokens,kv_context_tokens,time_s\n-5,0,0,0.1\n", "row 2: expected prefill_tokens"),
    ("prefill_tokens,decode_tokens,kv_context_tokens,time_s\n0,0,0,0.1\n", "prefill \\+ decode > 0"),
    ("prefill_tokens,decode_tokens,kv_context_tokens,time_s\n10,0,0,0\n",
     "row 2: time_s must be a finite number > 0"),
    ("prefill_tokens,decode_tokens,kv_context_tokens,time_s\n10,0,0,0.1\n0,4,40,0.1\n20,0,0,0.2\n",
     r"full grid; missing \[\(10, 4\), \(20, 4\)\]"),
    ("prefill_tokens,decode_tokens,kv_context_tokens,time_s\n1.5,0,0,0.1\n", "row 2: token columns must be integers"),
])
def test_bad_calibration_tables_name_the_row_and_field(tmp_path, text, match):
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_calibration_table(p)
    with pytest.raises(ValueError, match="does not exist"):
        load_calibration_table(tmp_path / "nope.csv")
