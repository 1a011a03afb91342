"""DAG-dispatch datasets: Topcuoglu's example, the WfInstances workflows, and seeded random DAGs and streams.

- ``dag/topcuoglu``: the 10-task, 3-processor example of Topcuoglu et al. (2002) (HEFT 80, CPOP 86).
- ``dag/topcuoglu-stream``: DS3/DeepSoCS's default workload: that job arriving as a Poisson stream
  (10 jobs, offered load 0.7) on its 3 processors; train = unbounded stream, test = 20 fixed streams.
- ``dag/wfinstances``: the 13 WfInstances workflows on the GPU-cluster platform with the seeded derived cost
  matrix (``io.py``); train 7 / test 6 (the largest and most varied workflows) / all 13.
- ``dag/wfinstances-stream``: 8 workflows arriving as a Poisson stream at offered load 0.7 on the cluster
  (one derived cost table over all programs): train draws from the 7 train workflows (unbounded stream),
  test = 20 fixed streams drawn from the 6 test workflows.
- ``dag/random-<shape>[-<n>][-<platform>]``: one random DAG job (``n`` tasks, default 20; shape layered,
  forkjoin, chain or sp; platform soc (default) or cluster); train = unbounded stream, test = 100 fixed.
- ``dag/stream-<shape>[-<n>][-<platform>]``: 8 such jobs arriving as a Poisson stream at offered load 0.7.
"""

from __future__ import annotations

import re
from functools import partial

import numpy as np

from schedgym import datasets
from schedgym.envs.dag.generator import (
    SHAPES,
    combine,
    max_edges,
    poisson_arrivals,
    poisson_from_set,
    random_instance,
)
from schedgym.envs.dag.io import (
    WFINSTANCES,
    load_instance,
    load_wfinstance,
    topcuoglu,
    wfinstance_workload,
    wfinstances_platform,
)
from schedgym.envs.dag.platforms import PLATFORMS, get_platform
from schedgym.envs.dag.types import DagInstance

ENV_ID = "schedgym/DAGDispatch-v0"
RANDOM_TEST_SIZE = 100
WF_STREAM_TEST = 20
STREAM_JOBS, STREAM_LOAD, CCR = 8, 0.7, 0.5
TOPCUOGLU_STREAM_JOBS, TOPCUOGLU_STREAM_TEST = 10, 20
WF_TEST = (
    "montage-2mass-01d",
    "seismology-100p",
    "soykb-10fastq-10ch",
    "blast-small",
    "bwa-small",
    "bacass-dirt02",
)
WF_TRAIN = tuple(n for n in WFINSTANCES if n not in WF_TEST)
# Padding that fits every shipped workflow (checked by the tests): bwa-small has 104 tasks and 400 edges.
WF_SIZES = {"max_tasks": 104, "max_edges": 400, "max_pes": 8, "max_pe_types": 3}
_WF_SOURCE = "wfcommons/WfInstances @ f085867 (LGPL-3.0), schedgym/data/dag/wfinstances"


def topcuoglu_stream(
    rng: np.random.Generator,
    n_jobs: int = TOPCUOGLU_STREAM_JOBS,
    load: float = STREAM_LOAD,
    name: str = "topcuoglu-stream",
) -> DagInstance:
    """Poisson arrivals of the Topcuoglu job on its platform; mean gap = job's mean work per PE / load."""
    base = topcuoglu()
    finite = np.isfinite(base.exec_time)
    work_per_pe = float((np.where(finite, base.exec_time, 0).sum(1) / finite.sum(1)).sum()) / base.n_pes
    arrivals = poisson_arrivals(rng, n_jobs, work_per_pe / load)
    wl = combine(name, [base.workload] * n_jobs, arrivals)
    return DagInstance(name, base.platform, wl, meta={"load": load})


def _load_topcuoglu(name: str) -> DagInstance:
    return topcuoglu()


def _load_topcuoglu_stream(name: str) -> DagInstance:
    return topcuoglu_stream(np.random.default_rng([7, int(name.rsplit("-", 1)[1])]), name=name)


def wfinstances_stream(
    rng: np.random.Generator, split: str = "train", name: str = "wfinstances-stream"
) -> DagInstance:
    """A Poisson stream of workflows drawn uniformly from the ``split`` workflows (module docstring)."""
    names = {"train": WF_TRAIN, "test": WF_TEST}[split]
    jobs = [wfinstance_workload(n) for n in names]
    return poisson_from_set(rng, wfinstances_platform(), jobs, STREAM_JOBS, STREAM_LOAD, name)


def _load_wf_stream(name: str) -> DagInstance:
    return wfinstances_stream(np.random.default_rng([11, int(name.rsplit("-", 1)[1])]), "test", name)


def _register_fixed() -> None:
    one = ("topcuoglu",)
    datasets.register(
        datasets.Dataset(
            "dag/topcuoglu",
            ENV_ID,
            "Topcuoglu et al. 2002, 10 tasks on 3 processors (HEFT 80, CPOP 86)",
            {"train": one, "test": one},
            loader=_load_topcuoglu,
            source="IEEE TPDS 13(3):260-274, 2002, Fig. 2",
        )
    )
    test_names = tuple(f"topcuoglu-stream-{i:03d}" for i in range(TOPCUOGLU_STREAM_TEST))
    datasets.register(
        datasets.Dataset(
            "dag/topcuoglu-stream",
            ENV_ID,
            f"DS3/DeepSoCS default: {TOPCUOGLU_STREAM_JOBS} Topcuoglu jobs, Poisson, load {STREAM_LOAD}",
            {"train": None, "test": test_names},
            loader=_load_topcuoglu_stream,
            generator=topcuoglu_stream,
            source="schedgym.envs.dag.datasets (seeded)",
            meta={
                "sizes": {
                    "max_tasks": 10 * TOPCUOGLU_STREAM_JOBS,
                    "max_edges": 15 * TOPCUOGLU_STREAM_JOBS,
                    "max_pes": 3,
                    "max_pe_types": 3,
                }
            },
        )
    )
    datasets.register(
        datasets.Dataset(
            "dag/wfinstances",
            ENV_ID,
            "13 real WfInstances workflows (Pegasus, Makeflow, Nextflow) on the GPU cluster",
            {"train": WF_TRAIN, "test": WF_TEST, "all": tuple(WFINSTANCES)},
            loader=load_wfinstance,
            source=_WF_SOURCE,
            meta={"sizes": WF_SIZES},
        )
    )
    datasets.register(
        datasets.Dataset(
            "dag/wfinstances-stream",
            ENV_ID,
            f"{STREAM_JOBS} WfInstances workflows, Poisson arrivals at load {STREAM_LOAD}",
            {"train": None, "test": tuple(f"wfinstances-stream-{i:03d}" for i in range(WF_STREAM_TEST))},
            loader=_load_wf_stream,
            generator=wfinstances_stream,
            source=_WF_SOURCE,
            meta={
                "sizes": {
                    "max_tasks": STREAM_JOBS * WF_SIZES["max_tasks"],
                    "max_edges": STREAM_JOBS * WF_SIZES["max_edges"],
                    "max_pes": 8,
                    "max_pe_types": 3,
                }
            },
        )
    )


def _make_random(
    kind: str, shape: str, n: int, plat: str, rng: np.random.Generator, name: str
) -> DagInstance:
    n_jobs = 1 if kind == "random" else STREAM_JOBS
    return random_instance(rng, get_platform(plat), shape, n, n_jobs, STREAM_LOAD, CCR, name=name)


def _load_random(kind: str, shape: str, n: int, plat: str, name: str) -> DagInstance:
    """Test instance ``<base>-<i>``: its own seed, disjoint from any training seed."""
    ids = [("random", "stream").index(kind), SHAPES.index(shape), n, sorted(PLATFORMS).index(plat)]
    return _make_random(
        kind, shape, n, plat, np.random.default_rng([*ids, int(name.rsplit("-", 1)[1])]), name
    )


def _sample_random(kind: str, shape: str, n: int, plat: str, rng: np.random.Generator) -> DagInstance:
    return _make_random(kind, shape, n, plat, rng, f"{kind}-{shape}-{n}-{plat}")


def _random_dataset(match: re.Match[str]) -> datasets.Dataset:
    kind, shape = match["kind"], match["shape"]
    n = int(match["n"] or 20)
    plat = match["platform"] or "soc"
    if n < 1:
        raise ValueError(f"dag/{kind}-{shape}-N needs N >= 1, got {n}")
    platform = get_platform(plat)
    n_jobs = 1 if kind == "random" else STREAM_JOBS
    base = f"{kind}-{shape}-{n}-{plat}"
    what = "one job" if n_jobs == 1 else f"{n_jobs} jobs, Poisson arrivals at load {STREAM_LOAD}"
    # Module-level functions bound with partial (not closures), so datasets and envs pickle.
    return datasets.Dataset(
        f"dag/{kind}-{shape}"
        + (f"-{match['n']}" if match["n"] else "")
        + (f"-{plat}" if match["platform"] else ""),
        ENV_ID,
        f"random {shape} DAGs of {n} tasks on the {plat} platform, {what} (CCR {CCR})",
        {"train": None, "test": tuple(f"{base}-{i:03d}" for i in range(RANDOM_TEST_SIZE))},
        loader=partial(_load_random, kind, shape, n, plat),
        generator=partial(_sample_random, kind, shape, n, plat),
        source="schedgym.envs.dag.generator (seeded)",
        meta={
            "sizes": {
                "max_tasks": n * n_jobs,
                "max_edges": max_edges(shape, n) * n_jobs,
                "max_pes": platform.n_pes,
                "max_pe_types": platform.n_pe_types,
            }
        },
    )


_register_fixed()
_SHAPE_RE = "|".join(SHAPES)
_PLAT_RE = "|".join(sorted(PLATFORMS))
datasets.register_pattern(
    "dag/random-<shape>[-<n>][-<platform>]",
    rf"dag/(?P<kind>random)-(?P<shape>{_SHAPE_RE})(?:-(?P<n>\d+))?(?:-(?P<platform>{_PLAT_RE}))?",
    _random_dataset,
    f"one random DAG job, shape {'/'.join(SHAPES)}, n tasks (20), platform soc/cluster (soc); "
    f"train = unbounded seeded stream, test = {RANDOM_TEST_SIZE} fixed",
)
datasets.register_pattern(
    "dag/stream-<shape>[-<n>][-<platform>]",
    rf"dag/(?P<kind>stream)-(?P<shape>{_SHAPE_RE})(?:-(?P<n>\d+))?(?:-(?P<platform>{_PLAT_RE}))?",
    _random_dataset,
    f"{STREAM_JOBS} random DAG jobs arriving as a Poisson stream at load {STREAM_LOAD}; "
    f"train = unbounded seeded stream, test = {RANDOM_TEST_SIZE} fixed",
)
datasets.register_file_loader(ENV_ID, load_instance)


def sizes_of(inst: DagInstance) -> dict[str, int]:
    """Padding an instance needs: all its tasks and edges visible at once, its PEs and PE types."""
    wl = inst.workload
    jobs = np.bincount(wl.task_job, minlength=wl.n_jobs)
    jedges = np.bincount(wl.task_job[wl.edge_src], minlength=wl.n_jobs)
    return {
        "max_tasks": wl.n_tasks,
        "max_edges": wl.n_edges,
        "max_pes": inst.n_pes,
        "max_pe_types": inst.platform.n_pe_types,
        "largest_job": int(jobs.max()),
        "largest_job_edges": int(jedges.max()),
    }


def dataset_sizes(ds: datasets.Dataset, split: str) -> dict[str, int]:
    """Padding for a dataset split: its declared sizes, else the maxima over its instances (or one sample)."""
    if "sizes" in ds.meta:
        return dict(ds.meta["sizes"])
    insts = (
        list(ds.instances(split))
        if ds.split_size(split) is not None
        else [ds.sample(np.random.default_rng(0), split)]
    )
    all_sizes = [sizes_of(i) for i in insts]
    return {k: max(sz[k] for sz in all_sizes) for k in all_sizes[0]}
