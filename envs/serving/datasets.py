"""Serving datasets: the shipped traces split by time, and synthetic arrivals with trace lengths.

Trace datasets (``serving/azure-conv-2023``, ``serving/azure-code-2023``, ``serving/mooncake-conversation``,
``serving/mooncake-synthetic``): ``train`` = requests arriving in the first 80 % of the trace's time span,
``test`` = the rest. Splits:

- ``train``: an unbounded stream of random windows of ``TRAIN_WINDOW`` consecutive train requests (the env
  draws windows of its own ``segment_requests`` length from the same part);
- ``test``: consecutive windows of ``TEST_WINDOW`` requests covering the whole test part, in order (the
  last one may be shorter; nothing is dropped);
- ``train-full`` / ``test-full`` / ``full``: the whole part (or trace) as one instance.

Synthetic: ``serving/synthetic-<lengths>-<poisson|gamma>-r<rate>[-cv<cv>]`` draws (prompt, output) pairs
from ``lengths`` (``sharegpt`` or a trace name) with Poisson or Gamma (burstiness ``cv``) arrivals at
``rate`` requests/s: ``train`` = unbounded seeded stream of ``TRAIN_WINDOW`` requests, ``test`` = 10 fixed
workloads of ``TEST_WINDOW`` requests (seeded apart from training streams). ShareGPT lengths come from the
first 80 % of its rows for train and the rest for test.

Workflows: ``serving/text2sql-r<rate>`` — HEXGEN-Text2SQL pipelines (schema linking -> 3 SQL candidates ->
selection, ``workflows.text2sql_workload``) arriving as a Poisson process of ``rate`` workflows/s (before the
env's ``rate_scale``; pass ``rate_scale=1.0`` for the named rate), stage lengths drawn from the Azure conv 2023
train (test) part, deadlines uniform in 5..40 s: ``train`` = unbounded seeded stream (the env draws
``segment_requests // 5`` workflows), ``test`` = 5 fixed workloads of 300 workflows.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cache

import numpy as np

from schedgym import datasets
from schedgym.envs.serving.generator import synthetic_workload, trace_window
from schedgym.envs.serving.io import TRACES, load_sharegpt, load_trace, load_trace_file
from schedgym.envs.serving.types import ServingWorkload
from schedgym.envs.serving.workflows import text2sql_workload

ENV_ID = "schedgym/LLMServing-v0"
TRAIN_FRACTION = 0.8
TRAIN_WINDOW = 256
TEST_WINDOW = 500
SYNTHETIC_TEST = 10
DESCRIPTIONS = {
    "azure-conv-2023": "Azure LLM inference 2023, conversation: 19,366 requests over 1 h (CC-BY-4.0)",
    "azure-code-2023": "Azure LLM inference 2023, code: 8,819 requests over 1 h (CC-BY-4.0)",
    "mooncake-conversation": "Mooncake (Kimi) conversation, 512-token prefix hashes: 12,031 requests (Apache-2.0)",
    "mooncake-synthetic": "Mooncake synthetic (Poisson) trace with prefix hashes: 3,993 requests (Apache-2.0)",
}


@cache
def split_index(trace: str) -> int:
    """Index of the first test request: the first arriving after 80 % of the trace's time span."""
    w = load_trace(trace)
    cut = w.arrival[0] + TRAIN_FRACTION * w.duration
    return int(np.searchsorted(w.arrival, cut, side="right"))


def part(trace: str, split: str) -> ServingWorkload:
    """The ``train`` or ``test`` part of a trace (times rebased to 0), or the ``full`` trace."""
    w = load_trace(trace)
    k = split_index(trace)
    if split == "full":
        return w
    if split == "train":
        return w.slice(0, k, f"{trace}/train-full")
    if split == "test":
        return w.slice(k, w.n_requests, f"{trace}/test-full")
    raise ValueError(f"unknown part {split!r}; expected 'train', 'test' or 'full'")


def test_windows(trace: str) -> tuple[str, ...]:
    """Names of the test windows, computed from the trace file (``TEST_WINDOWS`` pins their count)."""
    n = load_trace(trace).n_requests - split_index(trace)
    return tuple(f"{trace}/test/{i:03d}" for i in range((n + TEST_WINDOW - 1) // TEST_WINDOW))


def _load_trace_instance(name: str) -> ServingWorkload:
    """``TRACE``, ``TRACE/train-full``, ``TRACE/test-full`` or ``TRACE/test/NNN``."""
    parts = name.split("/")
    trace = parts[0]
    if trace not in TRACES:
        raise ValueError(f"unknown trace instance {name!r}; expected a name starting with one of {sorted(TRACES)}")
    if len(parts) == 1:
        return part(trace, "full")
    if len(parts) == 2 and parts[1] in ("train-full", "test-full"):
        return part(trace, parts[1].split("-")[0])
    if len(parts) == 3 and parts[1] == "test" and parts[2].isdigit():
        test = part(trace, "test")
        i = int(parts[2])
        lo, hi = i * TEST_WINDOW, min((i + 1) * TEST_WINDOW, test.n_requests)
        if lo >= test.n_requests:
            raise ValueError(f"{name}: window {i} is past the end of the test part ({test.n_requests} requests)")
        return test.slice(lo, hi, name)
    raise ValueError(f"malformed trace instance name {name!r}; expected TRACE, TRACE/train-full, TRACE/test-full "
                     "or TRACE/test/NNN")


def window_sampler(trace: str, split: str):  # noqa: ANN201
    """A function ``(rng, n) -> workload``: a random window of ``n`` requests from a trace's part."""
    def sample(rng: np.random.Generator, n: int) -> ServingWorkload:
        return trace_window(rng, part(trace, split), n)
    return sample


def _register_traces() -> None:
    for trace in TRACES:
        datasets.register(datasets.Dataset(
            f"serving/{trace}", ENV_ID, DESCRIPTIONS[trace],
            {"train": None, "test": _lazy_windows(trace), "full": (trace,), "train-full": (f"{trace}/train-full",),
             "test-full": (f"{trace}/test-full",)},
            loader=_load_trace_instance,
            generator=lambda rng, trace=trace: trace_window(rng, part(trace, "train"), TRAIN_WINDOW),
            source=f"schedgym/data/serving/traces (see README.md there): {trace}",
            meta={"trace": trace, "sampler": {"train": window_sampler(trace, "train"),
                                              "test": window_sampler(trace, "test")}},
        ))


def _lazy_windows(trace: str) -> tuple[str, ...]:
    # The number of test windows is fixed by the shipped file; it is cheap to compute from the row count
    # but that would read the trace at import. The counts are pinned here and checked by the tests.
    return tuple(f"{trace}/test/{i:03d}" for i in range(TEST_WINDOWS[trace]))


TEST_WINDOWS = {"azure-conv-2023": 6, "azure-code-2023": 2, "mooncake-conversation": 6, "mooncake-synthetic": 2}


@cache
def length_samples(source: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, output) length samples for synthetic workloads: ShareGPT rows or a trace part."""
    if source == "sharegpt":
        p, o = load_sharegpt()
        k = int(TRAIN_FRACTION * p.size)
        return (p[:k], o[:k]) if split == "train" else (p[k:], o[k:])
    w = part(source, split)
    return w.prompt_tokens, w.output_tokens


def _synthetic_dataset(m: re.Match[str]) -> datasets.Dataset:
    src, kind, rate = m["src"], m["kind"], float(m["rate"])
    cv = float(m["cv"]) if m["cv"] else 1.0
    if src != "sharegpt" and src not in TRACES:
        raise ValueError(f"unknown length source {src!r}; expected 'sharegpt' or one of {sorted(TRACES)}")
    if kind == "poisson" and m["cv"]:
        raise ValueError("a -cv suffix needs gamma arrivals; Poisson has cv = 1")
    if rate <= 0 or cv <= 0:
        raise ValueError(f"rate and cv must be > 0, got r{rate} cv{cv}")
    base = m.group(0).split("/", 1)[1]

    def make(rng: np.random.Generator, split: str, name: str) -> ServingWorkload:
        p, o = length_samples(src, split)
        return synthetic_workload(rng, p, o, TRAIN_WINDOW if split == "train" else TEST_WINDOW, rate, kind, cv, name)

    def load(name: str) -> ServingWorkload:
        idx = int(name.rsplit("/", 1)[1])
        return make(np.random.default_rng([0x5E5, idx, int(rate * 1000), int(cv * 1000)]), "test", name)

    def sampler(split: str):  # noqa: ANN202
        def sample(rng: np.random.Generator, n: int) -> ServingWorkload:
            p, o = length_samples(src, split)
            return synthetic_workload(rng, p, o, n, rate, kind, cv, f"{base}/{split}")
        return sample

    return datasets.Dataset(
        f"serving/{base}", ENV_ID, f"{kind} arrivals at {rate:g} req/s (cv {cv:g}), lengths from {src}",
        {"train": None, "test": tuple(f"{base}/test/{i:03d}" for i in range(SYNTHETIC_TEST))},
        loader=load, generator=lambda rng: make(rng, "train", f"{base}/train"),
        source="schedgym.envs.serving.generator (seeded)",
        meta={"sampler": {"train": sampler("train"), "test": sampler("test")}},
    )


def _text2sql_dataset(m: re.Match[str]) -> datasets.Dataset:
    rate = float(m["rate"])
    if not rate > 0:
        raise ValueError(f"text2sql workflow rate must be > 0, got r{m['rate']}")
    base = m.group(0).split("/", 1)[1]
    stages = 5  # schema linking, 3 candidates, selection

    def make(rng: np.random.Generator, split: str, n_workflows: int, name: str) -> ServingWorkload:
        return replace(text2sql_workload(part("azure-conv-2023", split), rng, n_workflows, rate), name=name)

    def load(name: str) -> ServingWorkload:
        idx = int(name.rsplit("/", 1)[1])
        return make(np.random.default_rng([0x7E57, idx, int(rate * 1000)]), "test", 300, name)

    def sampler(split: str):  # noqa: ANN202
        def sample(rng: np.random.Generator, n: int) -> ServingWorkload:
            return make(rng, split, max(1, n // stages), f"{base}/{split}")
        return sample

    return datasets.Dataset(
        f"serving/{base}", ENV_ID, f"Text2SQL workflows (5 stages) at {rate:g} workflows/s, Azure conv 2023 lengths",
        {"train": None, "test": tuple(f"{base}/test/{i:03d}" for i in range(5))},
        loader=load, generator=lambda rng: make(rng, "train", TRAIN_WINDOW // stages, f"{base}/train"),
        source="schedgym.envs.serving.workflows.text2sql_workload over the Azure conv 2023 trace (seeded)",
        meta={"sampler": {"train": sampler("train"), "test": sampler("test")}},
    )


_register_traces()
datasets.register_pattern(
    "serving/text2sql-r<rate>", r"serving/text2sql-r(?P<rate>\d+(?:\.\d+)?)", _text2sql_dataset,
    "HEXGEN-Text2SQL workflows (stages released when parents finish, deadlines 5..40 s) at <rate> workflows/s",
)
datasets.register_pattern(
    "serving/synthetic-<lengths>-<poisson|gamma>-r<rate>[-cv<cv>]",
    r"serving/synthetic-(?P<src>[a-z0-9-]+?)-(?P<kind>poisson|gamma)-r(?P<rate>\d+(?:\.\d+)?)(?:-cv(?P<cv>\d+(?:\.\d+)?))?",
    _synthetic_dataset,
    "synthetic arrivals (Poisson or Gamma) with lengths from sharegpt or a trace; train = seeded stream, test = 10",
)
datasets.register_file_loader(ENV_ID, load_trace_file)
