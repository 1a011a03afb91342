"""Loaders: WfFormat workflow JSON (WfInstances), schedgym's own DAG instance JSON, and the shipped data.

**WfFormat -> workload.** Tasks and edges come from ``workflow.specification`` (edges = ``children``, checked
against ``parents``); each task's work is its recorded ``runtimeInSeconds`` from ``workflow.execution.tasks``;
its type is the executed program (``command.program`` when it is one word, else the specification's task
``name``); an edge carries the bytes of the files the parent writes and the child reads.

**Heterogeneous cost rule (documented, seeded).** The runtimes come from one homogeneous cloud cluster, so the
per-PE times are derived: on a platform whose first PE type is the CPU the runtimes were measured on,
``time(task, k) = runtime(task) * factor(program, k)`` with, per program and PE type,

- CPU types: ``factor = s_k * U[1 - beta/2, 1 + beta/2]`` (``s_k`` = the type's relative slowness: 1 for the
  first type), the unrelated-machines spread of Topcuoglu et al. (2002), ``beta = 0.5``;
- accelerator types: with probability ``p_accel = 0.5`` the program is accelerable with a speed-up
  ``g ~ LogUniform[2, 20]`` on the fastest accelerator type, ``factor = s_k / g * U[1 - beta/2, 1 + beta/2]``;
  otherwise the accelerator does not support it (``inf``).

The draws use ``np.random.default_rng([seed, crc32(workflow name)])`` in sorted program order, so a workflow
gets the same matrix on every machine; ``seed`` (default 0) selects another matrix.
"""

from __future__ import annotations

import json
import zlib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from schedgym.envs.dag.platforms import cluster
from schedgym.envs.dag.types import INF, DagError, DagInstance, DagWorkload, Platform

_DATA = "schedgym.data"
FORMAT = "schedgym-dag/1"

# Relative slowness of each PE type of the cluster platform w.r.t. the recording machine (accelerators: w.r.t.
# the fastest accelerator); which types are accelerators.
CLUSTER_SLOWNESS = {"cpu": 1.0, "a100": 1.0, "t4": 2.5}
CLUSTER_ACCELERATORS = ("a100", "t4")
BETA, P_ACCEL, SPEEDUP = 0.5, 0.5, (2.0, 20.0)

WFINSTANCES = {  # name -> path under schedgym/data/dag/wfinstances
    "helloworld-chain-5": "helloworld/helloworld-chain-5-chameleon.json",
    "helloworld-forkjoin-10": "helloworld/helloworld-forkjoin-10-chameleon.json",
    "srasearch-10a": "pegasus/srasearch/srasearch-chameleon-10a-001.json",
    "epigenomics-hep-1seq": "pegasus/epigenomics/epigenomics-chameleon-hep-1seq-100k-001.json",
    "1000genome-2ch": "pegasus/1000genome/1000genome-chameleon-2ch-100k-001.json",
    "montage-dss-05d": "pegasus/montage/montage-chameleon-dss-05d-001.json",
    "montage-2mass-01d": "pegasus/montage/montage-chameleon-2mass-01d-001.json",
    "cycles-1l-1c-9p": "pegasus/cycles/cycles-chameleon-1l-1c-9p-001.json",
    "seismology-100p": "pegasus/seismology/seismology-chameleon-100p-001.json",
    "soykb-10fastq-10ch": "pegasus/soykb/soykb-chameleon-10fastq-10ch-001.json",
    "blast-small": "makeflow/blast/blast-chameleon-small-001.json",
    "bwa-small": "makeflow/bwa/bwa-chameleon-small-001.json",
    "bacass-dirt02": "nextflow/bacass-dirt02-001.json",
}


class WfFormatError(DagError):
    """A WfFormat file is malformed; the message names the file, the field and the task."""


# ----------------------------------------------------------------------------------------------- WfFormat
def _get(obj: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise WfFormatError(f"{where}: missing field {key!r}")
    val = obj[key]
    if not isinstance(val, kind) or isinstance(val, bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise WfFormatError(f"{where}.{key}: expected {names}, got {type(val).__name__}")
    return val


def parse_wfformat(text: str, name: str = "workflow") -> DagWorkload:
    """A WfFormat (WfCommons JSON) workflow as a one-job workload: work = recorded runtime, type = program."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise WfFormatError(f"{name}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    wf = _get(doc, "workflow", name, dict)
    spec = _get(wf, "specification", f"{name}: workflow", dict)
    tasks = _get(spec, "tasks", f"{name}: workflow.specification", list)
    files = spec.get("files", [])
    execu = _get(wf, "execution", f"{name}: workflow", dict)
    etasks = _get(execu, "tasks", f"{name}: workflow.execution", list)
    if not tasks:
        raise WfFormatError(f"{name}: workflow.specification.tasks is empty")
    ids: list[str] = []
    for k, t in enumerate(tasks):
        tid = _get(t, "id", f"{name}: workflow.specification.tasks[{k}]", str)
        if tid in ids:
            raise WfFormatError(f"{name}: task id {tid!r} appears twice in workflow.specification.tasks")
        ids.append(tid)
    index = {tid: i for i, tid in enumerate(ids)}
    sizes: dict[str, float] = {}
    if not isinstance(files, list):
        raise WfFormatError(f"{name}: workflow.specification.files must be a list")
    for k, f in enumerate(files):
        fid = _get(f, "id", f"{name}: workflow.specification.files[{k}]", str)
        size = _get(f, "sizeInBytes", f"{name}: file {fid!r}", (int, float))
        if size < 0:
            raise WfFormatError(f"{name}: file {fid!r} has sizeInBytes {size} < 0")
        sizes[fid] = float(size)
    runtime: dict[str, float] = {}
    program: dict[str, str] = {}
    for k, et in enumerate(etasks):
        tid = _get(et, "id", f"{name}: workflow.execution.tasks[{k}]", str)
        if tid not in index:
            raise WfFormatError(
                f"{name}: workflow.execution.tasks[{k}] has id {tid!r}, which is not a task of "
                f"workflow.specification"
            )
        if "runtimeInSeconds" not in et:
            raise WfFormatError(f"{name}: task {tid!r} has no runtimeInSeconds in workflow.execution.tasks")
        rt = _get(et, "runtimeInSeconds", f"{name}: task {tid!r}", (int, float))
        if not np.isfinite(rt) or rt < 0:
            raise WfFormatError(
                f"{name}: task {tid!r} has runtimeInSeconds {rt}; expected a finite number >= 0"
            )
        runtime[tid] = float(rt)
        prog = et.get("command", {}).get("program") if isinstance(et.get("command"), dict) else None
        if isinstance(prog, str) and prog and len(prog.split()) == 1:
            program[tid] = prog
    types, work, inputs, outputs = [], [], [], []
    for t, tid in zip(tasks, ids, strict=False):
        if tid not in runtime:
            raise WfFormatError(f"{name}: task {tid!r} has no runtime (no entry in workflow.execution.tasks)")
        work.append(runtime[tid])
        tname = t.get("name", tid)
        types.append(program.get(tid, tname if isinstance(tname, str) else tid))
        ins, outs = t.get("inputFiles", []), t.get("outputFiles", [])
        for fld, fl in (("inputFiles", ins), ("outputFiles", outs)):
            if not isinstance(fl, list):
                raise WfFormatError(f"{name}: task {tid!r}: {fld} must be a list of file ids")
            for fid in fl:
                if fid not in sizes:
                    raise WfFormatError(
                        f"{name}: task {tid!r} lists file {fid!r} in {fld}, but no such file is in "
                        f"workflow.specification.files"
                    )
        inputs.append(set(ins))
        outputs.append(set(outs))
    edges: list[tuple[int, int]] = []
    for t, tid in zip(tasks, ids, strict=False):
        for fld in ("children", "parents"):
            lst = t.get(fld, [])
            if not isinstance(lst, list):
                raise WfFormatError(f"{name}: task {tid!r}: {fld} must be a list of task ids")
            for other in lst:
                if other not in index:
                    raise WfFormatError(f"{name}: task {tid!r} lists unknown task {other!r} in {fld}")
        for child in t.get("children", []):
            if tid not in tasks[index[child]].get("parents", []):
                raise WfFormatError(
                    f"{name}: task {tid!r} lists child {child!r}, but {child!r} does not list "
                    f"{tid!r} among its parents"
                )
            edges.append((index[tid], index[child]))
        for parent in t.get("parents", []):
            if tid not in tasks[index[parent]].get("children", []):
                raise WfFormatError(
                    f"{name}: task {tid!r} lists parent {parent!r}, but {parent!r} does not list "
                    f"{tid!r} among its children"
                )
    edges = sorted(set(edges))
    data = [sum(sizes[f] for f in outputs[s] & inputs[d]) for s, d in edges]
    n = len(ids)
    return DagWorkload(
        name,
        (name,),
        np.zeros(1),
        np.zeros(n, np.int64),
        tuple(types),
        np.array(work),
        np.array([e[0] for e in edges], np.int64),
        np.array([e[1] for e in edges], np.int64),
        np.array(data),
        tuple(ids),
    )


def derive_platform(
    base: Platform,
    programs: list[str],
    rng: np.random.Generator,
    *,
    beta: float = BETA,
    p_accel: float = P_ACCEL,
    slowness: dict[str, float] | None = None,
    accelerators: tuple[str, ...] = CLUSTER_ACCELERATORS,
    name: str | None = None,
) -> Platform:
    """``base`` with a derived per-program table (the module docstring's rule); programs in sorted order."""
    slowness = slowness or CLUSTER_SLOWNESS
    for k in base.pe_type_names:
        if k not in slowness:
            raise ValueError(f"derive_platform: no slowness given for PE type {k!r} of platform {base.name}")
    progs = sorted(set(programs))
    table = np.empty((len(progs), base.n_pe_types))
    for y in range(len(progs)):
        accel = rng.random() < p_accel
        g = float(np.exp(rng.uniform(np.log(SPEEDUP[0]), np.log(SPEEDUP[1]))))
        spread = rng.uniform(1 - beta / 2, 1 + beta / 2, size=base.n_pe_types)
        for k, kname in enumerate(base.pe_type_names):
            if kname in accelerators:
                table[y, k] = slowness[kname] / g * spread[k] if accel else INF
            else:
                table[y, k] = slowness[kname] * spread[k]
    return base.with_table(name or f"{base.name}+derived", tuple(progs), table)


def wf_instance(
    workload: DagWorkload, platform: Platform | None = None, seed: int = 0, name: str | None = None
) -> DagInstance:
    """A WfFormat workload on ``platform`` (default: the cluster) with the seeded derived cost matrix."""
    base = platform or cluster()
    name = name or workload.name
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    pf = derive_platform(base, list(workload.task_type), rng, name=f"{base.name}/{name}")
    return DagInstance(name, pf, workload, meta={"source": "WfInstances", "cost_seed": seed})


@cache
def _wfinstances_text(name: str) -> str:
    if name not in WFINSTANCES:
        raise ValueError(f"unknown WfInstances workflow {name!r}; expected one of {sorted(WFINSTANCES)}")
    return resources.files(_DATA).joinpath(f"dag/wfinstances/{WFINSTANCES[name]}").read_text()


@cache
def wfinstances_platform(seed: int = 0) -> Platform:
    """The cluster with one derived table for the programs of all 13 shipped workflows (for job mixes);
    drawn with ``default_rng([seed, crc32("wfinstances")])``, so a program shared by two workflows (``cat``)
    has one cost row."""
    programs = sorted({y for n in WFINSTANCES for y in wfinstance_workload(n).task_type})
    rng = np.random.default_rng([seed, zlib.crc32(b"wfinstances")])
    return derive_platform(cluster(), programs, rng, name="cluster/wfinstances")


@cache
def wfinstance_workload(name: str) -> DagWorkload:
    """A shipped workflow as a one-job workload (work = recorded runtimes)."""
    return parse_wfformat(_wfinstances_text(name), name)


def load_wfinstance(name: str, seed: int = 0) -> DagInstance:
    """A shipped WfInstances workflow on the cluster platform (module docstring: the cost rule)."""
    return wf_instance(wfinstance_workload(name), seed=seed, name=name)


# ----------------------------------------------------------------------------------- schedgym DAG JSON
def _num(x: Any, where: str) -> float:
    if x is None:
        return INF
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise DagError(f"{where}: expected a number or null (unsupported/infinite), got {x!r}")
    return float(x)


def _field(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise DagError(f"{where}: missing field {key!r}")
    return d[key]


def platform_from_json(d: dict[str, Any], where: str = "platform") -> Platform:
    """A platform from its JSON form (``null`` = inf in ``exec_table``; the bandwidth diagonal is ignored)."""
    pe_names = tuple(_field(d, "pe_names", where))
    n = len(pe_names)
    table = [
        [_num(x, f"{where}.exec_table[{r}][{c}]") for c, x in enumerate(row)]
        for r, row in enumerate(_field(d, "exec_table", where))
    ]
    lat = [
        [_num(x, f"{where}.latency[{r}][{c}]") if r != c else 0.0 for c, x in enumerate(row)]
        for r, row in enumerate(_field(d, "latency", where))
    ]
    bw = [
        [_num(x, f"{where}.bandwidth[{r}][{c}]") if r != c else INF for c, x in enumerate(row)]
        for r, row in enumerate(_field(d, "bandwidth", where))
    ]
    if len(lat) != n or len(bw) != n:
        raise DagError(f"{where}: latency and bandwidth must be {n}x{n} (one row per PE)")
    return Platform(
        str(_field(d, "name", where)),
        pe_names,
        np.array(_field(d, "pe_type", where)),
        tuple(_field(d, "pe_type_names", where)),
        tuple(_field(d, "task_type_names", where)),
        np.array(table, float).reshape(len(table), -1),
        np.array(lat, float),
        np.array(bw, float),
        str(d.get("time_unit", "s")),
        str(d.get("data_unit", "B")),
        str(d.get("description", "")),
    )


def platform_to_json(pf: Platform) -> dict[str, Any]:
    def enc(a: np.ndarray) -> list[list[float | None]]:
        return [[None if np.isinf(x) else float(x) for x in row] for row in a]

    return {
        "name": pf.name,
        "pe_names": list(pf.pe_names),
        "pe_type": pf.pe_type.tolist(),
        "pe_type_names": list(pf.pe_type_names),
        "task_type_names": list(pf.task_type_names),
        "exec_table": enc(pf.exec_table),
        "latency": pf.latency.tolist(),
        "bandwidth": enc(pf.bandwidth),
        "time_unit": pf.time_unit,
        "data_unit": pf.data_unit,
        "description": pf.description,
    }


def instance_from_json(d: dict[str, Any], name: str = "instance") -> DagInstance:
    """An instance from schedgym's DAG JSON: ``{format, name, platform, jobs: [{name, arrival, tasks: [{name,
    type, work}], edges: [[src, dst, data], ...]}], best_known}``; tasks are referred to by name in a job."""
    if d.get("format") != FORMAT:
        raise DagError(f"{name}: field 'format' must be {FORMAT!r}, got {d.get('format')!r}")
    pf = platform_from_json(_field(d, "platform", name), f"{name}: platform")
    jobs = _field(d, "jobs", name)
    if not isinstance(jobs, list) or not jobs:
        raise DagError(f"{name}: 'jobs' must be a non-empty list")
    job_names: list[str] = []
    types: list[str] = []
    tnames: list[str] = []
    arrivals: list[float] = []
    work: list[float] = []
    data: list[float] = []
    tj: list[int] = []
    src: list[int] = []
    dst: list[int] = []
    for j, job in enumerate(jobs):
        where = f"{name}: jobs[{j}]"
        job_names.append(str(job.get("name", f"job{j}")))
        arrivals.append(_num(job.get("arrival", 0.0), f"{where}.arrival"))
        index: dict[str, int] = {}
        for k, t in enumerate(_field(job, "tasks", where)):
            tn = str(_field(t, "name", f"{where}.tasks[{k}]"))
            if tn in index:
                raise DagError(f"{where}: task name {tn!r} appears twice")
            index[tn] = len(tnames)
            tnames.append(tn)
            types.append(str(_field(t, "type", f"{where}: task {tn!r}")))
            if "work" not in t:
                raise DagError(f"{where}: task {tn!r} has no 'work'")
            work.append(_num(t["work"], f"{where}: task {tn!r}.work"))
            tj.append(j)
        for k, e in enumerate(job.get("edges", [])):
            if not isinstance(e, list) or len(e) != 3:
                raise DagError(f"{where}.edges[{k}]: expected [src task, dst task, data], got {e!r}")
            for end in e[:2]:
                if end not in index:
                    raise DagError(f"{where}.edges[{k}]: unknown task {end!r}")
            src.append(index[e[0]])
            dst.append(index[e[1]])
            data.append(_num(e[2], f"{where}.edges[{k}] data"))
    wl = DagWorkload(
        str(d.get("name", name)),
        tuple(job_names),
        np.array(arrivals),
        np.array(tj, np.int64),
        tuple(types),
        np.array(work),
        np.array(src, np.int64),
        np.array(dst, np.int64),
        np.array(data),
        tuple(tnames),
    )
    bk = d.get("best_known")
    return DagInstance(wl.name, pf, wl, best_known=None if bk is None else float(bk))


def instance_to_json(inst: DagInstance) -> dict[str, Any]:
    """schedgym's DAG JSON of ``inst`` (round-trips through ``instance_from_json``)."""
    wl = inst.workload
    jobs = []
    for j in range(wl.n_jobs):
        ts = inst.job_tasks(j)
        sel = np.flatnonzero(wl.task_job[wl.edge_src] == j)
        jobs.append(
            {
                "name": wl.job_names[j],
                "arrival": float(wl.job_arrival[j]),
                "tasks": [
                    {"name": wl.task_names[i], "type": wl.task_type[i], "work": float(wl.work[i])} for i in ts
                ],
                "edges": [
                    [wl.task_names[wl.edge_src[e]], wl.task_names[wl.edge_dst[e]], float(wl.edge_data[e])]
                    for e in sel
                ],
            }
        )
    return {
        "format": FORMAT,
        "name": inst.name,
        "platform": platform_to_json(inst.platform),
        "jobs": jobs,
        "best_known": inst.best_known,
    }


def load_instance(path: str | Path) -> DagInstance:
    """An instance file: schedgym DAG JSON, or a WfFormat workflow (placed on the cluster platform)."""
    p = Path(path)
    text = p.read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DagError(f"{p.name}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if isinstance(doc, dict) and "workflow" in doc:
        return wf_instance(parse_wfformat(text, p.stem), name=p.stem)
    if not isinstance(doc, dict):
        raise DagError(f"{p.name}: expected a JSON object (schedgym DAG JSON or WfFormat)")
    return instance_from_json(doc, p.stem)


@cache
def topcuoglu() -> DagInstance:
    """The 10-task, 3-processor example of Topcuoglu, Hariri & Wu (IEEE TPDS 13(3), 2002), Fig. 2."""
    text = resources.files(_DATA).joinpath("dag/topcuoglu2002.json").read_text()
    return instance_from_json(json.loads(text), "topcuoglu")


def resolve_instance(instance: DagInstance | str) -> DagInstance:
    """A DagInstance, ``"topcuoglu"``, a shipped WfInstances name, or a path to an instance file."""
    if isinstance(instance, DagInstance):
        return instance
    if isinstance(instance, str):
        if instance == "topcuoglu":
            return topcuoglu()
        if instance in WFINSTANCES:
            return load_wfinstance(instance)
        return load_instance(instance)
    raise TypeError(
        f"instance must be a DagInstance, a shipped instance name or a file path, "
        f"got {type(instance).__name__}"
    )
