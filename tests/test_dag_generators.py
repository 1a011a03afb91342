"""Seeded workload generators and the registered DAG datasets."""

from __future__ import annotations

import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym import datasets
from schedgym.envs.dag.generator import SHAPES, max_edges, poisson_arrivals, random_edges, random_instance
from schedgym.envs.dag.platforms import cluster, get_platform, soc


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 40])
def test_shapes_have_n_tasks_bounded_edges_and_are_dags(shape, n):
    for seed in range(5):
        edges = random_edges(np.random.default_rng(seed), shape, n)
        assert len(edges) <= max_edges(shape, n)
        assert len(set(edges)) == len(edges)
        assert all(0 <= s < d < n for s, d in edges)  # ids are a topological order
        if n > 1 and shape != "layered":
            touched = {t for e in edges for t in e}
            assert touched == set(range(n)), "every task is connected"
    inst = random_instance(np.random.default_rng(0), soc(), shape, n)
    assert inst.n_tasks == n and inst.n_jobs == 1


def test_shape_specifics():
    assert random_edges(np.random.default_rng(0), "chain", 5) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    fj = random_edges(np.random.default_rng(0), "forkjoin", 30)
    indeg = np.bincount([d for _, d in fj], minlength=30)
    assert indeg.max() >= 2 and indeg[0] == 0
    lay = random_edges(np.random.default_rng(0), "layered", 40)
    assert max(np.bincount([d for _, d in lay], minlength=40)) <= 3
    sp = random_edges(np.random.default_rng(1), "sp", 40)
    sources = set(range(40)) - {d for _, d in sp}
    sinks = set(range(40)) - {s for s, _ in sp}
    assert len(sources) == 1 and len(sinks) == 1  # two-terminal
    with pytest.raises(ValueError, match="unknown DAG shape 'star'"):
        random_edges(np.random.default_rng(0), "star", 4)


def test_generation_is_seeded():
    a = random_instance(np.random.default_rng(3), cluster(), "layered", 30, n_jobs=4)
    b = random_instance(np.random.default_rng(3), cluster(), "layered", 30, n_jobs=4)
    c = random_instance(np.random.default_rng(4), cluster(), "layered", 30, n_jobs=4)
    for x, y in ((a, b),):
        np.testing.assert_array_equal(x.exec_time, y.exec_time)
        np.testing.assert_array_equal(x.workload.job_arrival, y.workload.job_arrival)
        np.testing.assert_array_equal(x.workload.edge_data, y.workload.edge_data)
    assert not np.array_equal(a.workload.job_arrival, c.workload.job_arrival)


def test_poisson_stream_and_load():
    arr = poisson_arrivals(np.random.default_rng(0), 2000, 5.0)
    assert arr[0] == 0 and (np.diff(arr) >= 0).all()
    assert abs(np.diff(arr).mean() - 5.0) < 0.3
    light = random_instance(np.random.default_rng(0), soc(), "sp", 10, n_jobs=50, load=0.2)
    heavy = random_instance(np.random.default_rng(0), soc(), "sp", 10, n_jobs=50, load=0.8)
    assert light.workload.job_arrival[-1] > 3 * heavy.workload.job_arrival[-1]
    with pytest.raises(ValueError, match="load must be > 0"):
        random_instance(np.random.default_rng(0), soc(), "sp", 10, n_jobs=3, load=0)


def test_platforms():
    s, c = soc(), cluster()
    assert s.n_pes == 8 and set(s.pe_type_names) == {"A15", "A7", "FFT", "VIT", "MM"}
    assert s.exec_table[s.task_type_index("viterbi"), s.pe_type_names.index("VIT")] == 2.0  # DS3
    assert np.isinf(s.exec_table[s.task_type_index("viterbi"), s.pe_type_names.index("FFT")])
    assert c.n_pes == 8 and np.isinf(c.exec_table[c.task_type_index("gpu_kernel"), 0])
    with pytest.raises(ValueError, match="unknown platform 'tpu'"):
        get_platform("tpu")


@pytest.mark.parametrize(
    "name",
    [
        "dag/topcuoglu",
        "dag/topcuoglu-stream",
        "dag/wfinstances",
        "dag/random-layered",
        "dag/random-chain-5-cluster",
        "dag/stream-forkjoin-12",
        "dag/stream-sp-8-cluster",
        "dag/wfinstances-stream",
    ],
)
def test_datasets_resolve_with_fixed_test_splits_and_honest_sizes(name):
    ds = datasets.get(name)
    first = ds.names("test")[0]
    a, b = ds.load(first), datasets.get(name).load(first)
    assert a.name == first
    np.testing.assert_array_equal(a.exec_time, b.exec_time)  # deterministic test instances
    sizes = ds.meta.get("sizes")
    if sizes is not None:
        insts = [ds.load(n) for n in ds.names("test")[:3]]
        if ds.split_size("train") is None:
            insts += [ds.sample(np.random.default_rng(s), "train") for s in range(3)]
        for inst in insts:
            assert inst.n_tasks <= sizes["max_tasks"] and inst.workload.n_edges <= sizes["max_edges"]
            assert inst.n_pes <= sizes["max_pes"]


def test_train_stream_differs_from_test_and_catalogue_lists_dag():
    ds = datasets.get("dag/stream-layered")
    t = ds.sample(np.random.default_rng(0), "train")
    assert not any(
        np.array_equal(t.workload.job_arrival, ds.load(n).workload.job_arrival) for n in ds.names()[:5]
    )
    names = [row[0] for row in datasets.catalogue()]
    assert "dag/wfinstances" in names and "dag/random-<shape>[-<n>][-<platform>]" in names
    assert datasets.get("dag/wfinstances").split_size("all") == 13
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.get("dag/random-star")


def test_wfinstances_stream_keeps_train_and_test_workflows_apart():
    from schedgym.envs.dag.datasets import WF_TEST, WF_TRAIN

    ds = datasets.get("dag/wfinstances-stream")
    for n in ds.names("test")[:3]:
        jobs = {j.split("#")[0] for j in ds.load(n).workload.job_names}
        assert jobs <= set(WF_TEST)
    for seed in range(3):
        jobs = {j.split("#")[0] for j in ds.sample(np.random.default_rng(seed), "train").workload.job_names}
        assert jobs <= set(WF_TRAIN)


def test_poisson_from_set_respects_the_mix():
    from schedgym.envs.dag.generator import poisson_from_set, random_job

    a = random_job(np.random.default_rng(0), soc(), "chain", 3, name="tx")
    b = random_job(np.random.default_rng(1), soc(), "sp", 5, name="rx")
    inst = poisson_from_set(np.random.default_rng(0), soc(), [a, b], 400, 0.5, "mix", probs=[0.8, 0.2])
    share = np.mean([n.startswith("tx") for n in inst.workload.job_names])
    assert 0.74 < share < 0.86
    with pytest.raises(ValueError, match="probs has 1 entries for 2 jobs"):
        poisson_from_set(np.random.default_rng(0), soc(), [a, b], 4, 0.5, "mix", probs=[1.0])

