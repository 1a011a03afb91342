"""Job-shop instance files: the standard text format, and the benchmark instances shipped as data.

Format: first line ``n_jobs n_machines``; then one line per job of ``machine duration`` pairs, one pair per
machine, machines numbered from 0. Blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance


class InstanceFormatError(ValueError):
    """An instance file is malformed; the message names the line and the problem."""


def parse_instance(text: str, name: str = "instance") -> JobShopInstance:
    """Parse the standard text format; errors name ``name:line`` and what was expected."""
    lines = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines())]
    lines = [(no, toks) for no, toks in lines if toks and not toks[0].startswith("#")]
    if not lines:
        raise InstanceFormatError(f"{name}: empty file; expected a first line 'n_jobs n_machines'")
    no, head = lines[0]
    if len(head) != 2:
        raise InstanceFormatError(f"{name}:{no}: expected 'n_jobs n_machines' (2 integers), got {len(head)} fields")
    n_jobs, n_machines = (_int(t, name, no, f) for t, f in zip(head, ("n_jobs", "n_machines")))
    if n_jobs < 1 or n_machines < 1:
        raise InstanceFormatError(f"{name}:{no}: n_jobs and n_machines must be >= 1, got {n_jobs} {n_machines}")
    body = lines[1:]
    if len(body) > n_jobs:
        raise InstanceFormatError(f"{name}:{body[n_jobs][0]}: extra job line; the header (line {no}) "
                                  f"declares n_jobs={n_jobs}")
    if len(body) < n_jobs:
        last = body[-1][0] if body else no
        raise InstanceFormatError(f"{name}:{last}: the file ends after {len(body)} job lines; the header "
                                  f"(line {no}) declares n_jobs={n_jobs}")
    machines = np.zeros((n_jobs, n_machines), np.int64)
    durations = np.zeros((n_jobs, n_machines), np.int64)
    for j, (no, toks) in enumerate(body):
        if len(toks) != 2 * n_machines:
            raise InstanceFormatError(
                f"{name}:{no}: job {j} has {len(toks)} numbers; expected {2 * n_machines} "
                f"('machine duration' for each of {n_machines} machines)"
            )
        seen: set[int] = set()
        for k in range(n_machines):
            m = _int(toks[2 * k], name, no, f"machine of operation {k}")
            d = _int(toks[2 * k + 1], name, no, f"duration of operation {k}")
            if not 0 <= m < n_machines:
                raise InstanceFormatError(
                    f"{name}:{no}: machine {m} of operation {k} is out of range 0..{n_machines - 1}"
                )
            if m in seen:
                raise InstanceFormatError(f"{name}:{no}: job {j} visits machine {m} twice (operation {k})")
            if d < 0:
                raise InstanceFormatError(f"{name}:{no}: duration {d} of operation {k} is negative")
            seen.add(m)
            machines[j, k], durations[j, k] = m, d
    return JobShopInstance(name, machines, durations, n_machines)


def load_instance(path: str | Path) -> JobShopInstance:
    """Read an instance file in the standard text format."""
    p = Path(path)
    return parse_instance(p.read_text(), name=p.stem)


def format_instance(instance: JobShopInstance) -> str:
    """The standard text format of ``instance`` (round-trips through ``parse_instance``)."""
    rows = [f"{instance.n_jobs} {instance.n_machines}"]
    for mr, dr in zip(instance.machines.tolist(), instance.durations.tolist()):
        rows.append(" ".join(f"{m} {d}" for m, d in zip(mr, dr)))
    return "\n".join(rows) + "\n"


def _int(tok: str, name: str, no: int, what: str) -> int:
    try:
        return int(tok)
    except ValueError:
        raise InstanceFormatError(f"{name}:{no}: {what} must be an integer, got {tok!r}") from None


_DATA = "schedgym.data"


@cache
def benchmark_bounds() -> dict[str, dict[str, int | None | str]]:
    """name -> {n_jobs, n_machines, optimum, lower_bound, upper_bound, reference} of the shipped benchmarks."""
    text = resources.files(_DATA).joinpath("jobshop/bounds.csv").read_text()
    out: dict[str, dict[str, int | None | str]] = {}
    for row in csv.DictReader(text.splitlines()):
        out[row["name"]] = {
            k: (int(v) if v else None) if k in ("n_jobs", "n_machines", "optimum", "lower_bound", "upper_bound") else v
            for k, v in row.items()
            if k != "name"
        }
    return out


def load_benchmark(name: str) -> JobShopInstance:
    """A shipped benchmark instance (ta01, ft10, la01, ...) with its bounds."""
    bounds = benchmark_bounds()
    if name not in bounds:
        raise ValueError(f"unknown job-shop benchmark {name!r}; expected one of {sorted(bounds)}")
    text = resources.files(_DATA).joinpath(f"jobshop/instances/{name}.txt").read_text()
    inst = parse_instance(text, name)
    b = bounds[name]
    return JobShopInstance(
        name, inst.machines, inst.durations, inst.n_machines,
        optimum=b["optimum"], lower_bound=b["lower_bound"], upper_bound=b["upper_bound"],  # type: ignore[arg-type]
    )
