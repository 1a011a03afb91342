"""Instance data: the shipped WfInstances workflows, the cost-derivation rule, the native JSON format, clear
errors on bad input (cycles, missing runtimes, unsupported tasks, malformed WfFormat)."""

from __future__ import annotations

import copy
import json
from importlib import resources

import numpy as np
import pytest

from schedgym.envs.dag.datasets import WF_SIZES, WF_TEST, WF_TRAIN
from schedgym.envs.dag.io import (
    WFINSTANCES,
    WfFormatError,
    instance_from_json,
    instance_to_json,
    load_instance,
    load_wfinstance,
    parse_wfformat,
    topcuoglu,
    wf_instance,
)
from schedgym.envs.dag.platforms import cluster, soc
from schedgym.envs.dag.types import INF, DagError, DagInstance, DagWorkload, Platform

# (tasks, edges) per workflow, from the data README's table.
README_COUNTS = {
    "helloworld-chain-5": (5, 4),
    "helloworld-forkjoin-10": (10, 16),
    "srasearch-10a": (22, 30),
    "epigenomics-hep-1seq": (41, 48),
    "1000genome-2ch": (52, 76),
    "montage-dss-05d": (58, 114),
    "montage-2mass-01d": (103, 231),
    "cycles-1l-1c-9p": (67, 97),
    "seismology-100p": (101, 100),
    "soykb-10fastq-10ch": (96, 194),
    "blast-small": (43, 120),
    "bwa-small": (104, 400),
    "bacass-dirt02": (11, 14),
}


def wf_text(name: str) -> str:
    return resources.files("schedgym.data").joinpath(f"dag/wfinstances/{WFINSTANCES[name]}").read_text()


@pytest.mark.parametrize("name", sorted(WFINSTANCES))
def test_every_shipped_workflow_loads_with_the_readme_sizes(name):
    inst = load_wfinstance(name)
    assert (inst.n_tasks, inst.workload.n_edges) == README_COUNTS[name]
    assert inst.n_tasks <= WF_SIZES["max_tasks"] and inst.workload.n_edges <= WF_SIZES["max_edges"]
    assert inst.n_pes == WF_SIZES["max_pes"] and inst.platform.n_pe_types == WF_SIZES["max_pe_types"]
    assert np.isfinite(inst.exec_time[:, inst.platform.pe_type == 0]).all()  # CPUs run everything


def test_splits_cover_the_13_workflows_once():
    assert sorted(WF_TRAIN + WF_TEST) == sorted(WFINSTANCES) and len(WFINSTANCES) == 13
    assert not set(WF_TRAIN) & set(WF_TEST)


def test_blast_edge_data_is_the_shared_file_bytes():
    wl = parse_wfformat(wf_text("blast-small"), "blast")
    assert (wl.edge_data == 0).sum() == 40  # README: 40 of the 120 edges carry no data
    doc = json.loads(wf_text("blast-small"))
    spec = {t["id"]: t for t in doc["workflow"]["specification"]["tasks"]}
    size = {f["id"]: f["sizeInBytes"] for f in doc["workflow"]["specification"]["files"]}
    e = int(np.flatnonzero(wl.edge_data > 0)[0])
    s, d = wl.task_names[wl.edge_src[e]], wl.task_names[wl.edge_dst[e]]
    shared = set(spec[s]["outputFiles"]) & set(spec[d]["inputFiles"])
    assert wl.edge_data[e] == sum(size[f] for f in shared)


def test_work_is_the_recorded_runtime_and_type_the_program():
    doc = json.loads(wf_text("montage-dss-05d"))
    ex = doc["workflow"]["execution"]["tasks"][3]
    wl = parse_wfformat(wf_text("montage-dss-05d"), "m")
    i = wl.task_names.index(ex["id"])
    assert wl.work[i] == ex["runtimeInSeconds"] and wl.task_type[i] == ex["command"]["program"]
    bac = parse_wfformat(wf_text("bacass-dirt02"), "b")  # multi-line scripts: type = the spec's task name
    assert "NFCORE_BACASS.BACASS.UNICYCLER" in bac.task_type and (bac.work == 0).any()


def test_derived_cost_matrix_is_seeded_and_follows_the_rule():
    wl = parse_wfformat(wf_text("cycles-1l-1c-9p"), "cycles")
    a, b, c = wf_instance(wl, seed=0), wf_instance(wl, seed=0), wf_instance(wl, seed=1)
    np.testing.assert_array_equal(a.platform.exec_table, b.platform.exec_table)
    assert not np.array_equal(a.platform.exec_table, c.platform.exec_table)
    tab = a.platform.exec_table  # (programs, [cpu, a100, t4])
    assert ((tab[:, 0] >= 0.75) & (tab[:, 0] <= 1.25)).all()  # CPU: 1 x U[0.75, 1.25]
    acc = np.isfinite(tab[:, 1])
    np.testing.assert_array_equal(acc, np.isfinite(tab[:, 2]))  # accelerable on both GPU types or neither
    assert (tab[acc, 1] <= 1.25 / 2).all() and (tab[acc, 1] >= 0.75 / 20).all()


def test_native_json_round_trip_and_file_loading(tmp_path):
    inst = topcuoglu()
    doc = instance_to_json(inst)
    back = instance_from_json(json.loads(json.dumps(doc)))
    np.testing.assert_array_equal(back.exec_time, inst.exec_time)
    np.testing.assert_array_equal(back.workload.edge_data, inst.workload.edge_data)
    p = tmp_path / "t.json"
    p.write_text(json.dumps(doc))
    assert load_instance(p).n_tasks == 10
    q = tmp_path / "bwa.json"
    q.write_text(wf_text("bwa-small"))
    assert load_instance(q).n_tasks == 104  # WfFormat files load too


# ------------------------------------------------------------------------------------------ bad input
def wf_doc() -> dict:
    return json.loads(wf_text("helloworld-chain-5"))


def test_malformed_json_names_the_file_and_position(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"workflow": {')
    with pytest.raises(DagError, match=r"broken.json: not valid JSON \(line 1"):
        load_instance(p)
    with pytest.raises(WfFormatError, match="wf: not valid JSON"):
        parse_wfformat("[1, 2", "wf")


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda d: d["workflow"].pop("execution"), r"wf: workflow: missing field 'execution'"),
        (
            lambda d: d["workflow"]["specification"]["tasks"][1].pop("id"),
            r"workflow.specification.tasks\[1\]: missing field 'id'",
        ),
        (
            lambda d: d["workflow"]["execution"]["tasks"][2].pop("runtimeInSeconds"),
            r"task 'cpuhog_chain_00000003' has no runtimeInSeconds",
        ),
        (
            lambda d: d["workflow"]["execution"]["tasks"].pop(4),
            r"task 'cpuhog_chain_00000005' has no runtime",
        ),
        (
            lambda d: d["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds="fast"),
            r"task 'cpuhog_chain_00000001'.runtimeInSeconds: expected int/float, got str",
        ),
        (
            lambda d: d["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds=-3),
            r"task 'cpuhog_chain_00000001' has runtimeInSeconds -3",
        ),
        (
            lambda d: d["workflow"]["specification"]["tasks"][0]["children"].append("ghost"),
            r"task 'cpuhog_chain_00000001' lists unknown task 'ghost' in children",
        ),
        (
            lambda d: d["workflow"]["specification"]["tasks"][1]["parents"].clear(),
            r"task 'cpuhog_chain_00000001' lists child 'cpuhog_chain_00000002', but 'cpuhog_chain_00000002' "
            r"does not",
        ),
        (
            lambda d: d["workflow"]["specification"]["tasks"][0]["inputFiles"].append("nofile"),
            r"task 'cpuhog_chain_00000001' lists file 'nofile' in inputFiles",
        ),
        (lambda d: d["workflow"]["specification"]["files"][0].update(sizeInBytes=-1), r"sizeInBytes -1 < 0"),
    ],
)
def test_malformed_wfformat_errors_name_the_field_and_task(mutate, pattern):
    d = wf_doc()
    mutate(d)
    with pytest.raises(WfFormatError, match=pattern):
        parse_wfformat(json.dumps(d), "wf")


def test_cyclic_workflow_names_a_task_on_the_cycle():
    d = wf_doc()
    tasks = d["workflow"]["specification"]["tasks"]
    tasks[4]["children"].append(tasks[2]["id"])  # 5 -> 3 closes 3 -> 4 -> 5 -> 3
    tasks[2]["parents"].append(tasks[4]["id"])
    with pytest.raises(DagError, match=r"cycle through task 'cpuhog_chain_0000000[345]'"):
        parse_wfformat(json.dumps(d), "wf")


def small_workload(**over) -> DagWorkload:  # type: ignore[no-untyped-def]
    kw = dict(
        name="w",
        job_names=("j",),
        job_arrival=np.zeros(1),
        task_job=np.zeros(3, np.int64),
        task_type=("fft", "fft", "viterbi"),
        work=np.ones(3),
        edge_src=np.array([0, 1]),
        edge_dst=np.array([1, 2]),
        edge_data=np.array([1.0, 1.0]),
        task_names=("a", "b", "c"),
    )
    kw.update(over)
    return DagWorkload(**kw)  # type: ignore[arg-type]


def test_cyclic_graph_in_code_is_rejected():
    with pytest.raises(DagError, match="cycle through task '[abc]'"):
        small_workload(edge_src=np.array([0, 1, 2]), edge_dst=np.array([1, 2, 0]), edge_data=np.ones(3))
    with pytest.raises(DagError, match="task 'a' depends on itself"):
        small_workload(edge_src=np.array([0]), edge_dst=np.array([0]), edge_data=np.ones(1))


def test_missing_or_bad_work_and_unknown_types_and_unsupported_tasks():
    with pytest.raises(DagError, match="task 'b' has work nan"):
        small_workload(work=np.array([1.0, np.nan, 1.0]))
    with pytest.raises(DagError, match=r"no execution times for task type 'warp'"):
        DagInstance("x", soc(), small_workload(task_type=("fft", "warp", "fft")))
    gpu_only = cluster()  # 'gpu_kernel' runs only on GPUs: drop the GPUs and nothing supports it
    pf = Platform(
        "cpus",
        ("c0",),
        np.array([0]),
        ("cpu",),
        ("gpu_kernel",),
        np.array([[INF]]),
        np.zeros((1, 1)),
        np.ones((1, 1)),
    )
    wl = small_workload(task_type=("gpu_kernel",) * 3)
    with pytest.raises(
        DagError, match=r"task 'a' \(type 'gpu_kernel'\) is supported by no PE of platform cpus"
    ):
        DagInstance("x", pf, wl)
    assert gpu_only.n_pes == 8


def test_bad_platform_and_native_json_fields_are_named():
    with pytest.raises(DagError, match=r"exec_table\['a', 'cpu'\] = -1.0"):
        Platform(
            "p",
            ("c",),
            np.array([0]),
            ("cpu",),
            ("a",),
            np.array([[-1.0]]),
            np.zeros((1, 1)),
            np.ones((1, 1)),
        )
    doc = instance_to_json(topcuoglu())
    bad = copy.deepcopy(doc)
    del bad["jobs"][0]["tasks"][3]["work"]
    with pytest.raises(DagError, match="task 'n4' has no 'work'"):
        instance_from_json(bad)
    bad = copy.deepcopy(doc)
    bad["jobs"][0]["edges"][0][1] = "n42"
    with pytest.raises(DagError, match=r"edges\[0\]: unknown task 'n42'"):
        instance_from_json(bad)
    bad = copy.deepcopy(doc)
    bad["format"] = "other"
    with pytest.raises(DagError, match="field 'format' must be 'schedgym-dag/1'"):
        instance_from_json(bad)
