"""Memory datasets: MiniMalloc's challenging instances, real programs extracted from PyTorch models, the
programs' buffers as offset instances, and the two seeded generators."""

from __future__ import annotations

import re
from functools import partial

import numpy as np

from schedgym import datasets
from schedgym.envs.memory.generator import random_offsets, random_program
from schedgym.envs.memory.io import (
    MINIMALLOC_NAMES,
    load_minimalloc,
    load_offsets_csv,
    load_program,
    load_shipped_program,
)
from schedgym.envs.memory.types import MemoryProgram, OffsetInstance

MAPPING = "schedgym/MemoryMapping-v0"
OFFSETS = "schedgym/MemoryOffsets-v0"
RANDOM_TEST_SIZE = 100
# The shipped programs (schedgym/data/memory/programs/NAME.json, written by ``extract.py``): train on the
# small variants, test on the larger ones (more layers, longer sequences, bigger images).
PROGRAMS_TRAIN = ("gpt2-tiny", "resnet-tiny", "mixer-tiny", "unet-tiny")
PROGRAMS_TEST = ("gpt2-small", "resnet-small", "mixer-small", "unet-small")
PROGRAMS = PROGRAMS_TRAIN + PROGRAMS_TEST


def program_buffers(program: MemoryProgram) -> OffsetInstance:
    """A program's buffers as an offset instance (op-index live ranges), capacity = its peak live bytes."""
    inst = OffsetInstance(
        program.name,
        program.buffer_lower,
        program.buffer_upper,
        program.buffer_size,
        1,
        ids=program.buffer_names,
    )
    return OffsetInstance(
        program.name,
        inst.lower,
        inst.upper,
        inst.size,
        inst.peak_live(),
        ids=inst.ids,
        best_known=None,
        meta={
            "source": f"buffers of program {program.name}",
            "capacity_source": "peak live size (lower bound)",
        },
    )


def load_program_buffers(name: str) -> OffsetInstance:
    """The offset instance of a shipped program's buffers."""
    return program_buffers(load_shipped_program(name))


# Loaders and generators are partials of module-level functions (not closures) so that envs pickle.
def _load_random_program(n: int, name: str) -> MemoryProgram:
    idx = int(name.rsplit("-", 1)[1])
    return random_program(np.random.default_rng([7, n, idx]), n, name=name)  # fixed, disjoint from training


def _generate_random_program(n: int, rng: np.random.Generator) -> MemoryProgram:
    return random_program(rng, n, name=f"random-programs-{n}")


def _load_random_offsets(n: int, name: str) -> OffsetInstance:
    idx = int(name.rsplit("-", 1)[1])
    return random_offsets(np.random.default_rng([8, n, idx]), n, name=name)


def _generate_random_offsets(n: int, rng: np.random.Generator) -> OffsetInstance:
    return random_offsets(rng, n, name=f"random-offsets-{n}")


def _register_named() -> None:
    datasets.register(
        datasets.Dataset(
            "memory/minimalloc",
            OFFSETS,
            "MiniMalloc's 11 challenging instances A-K (154-454 buffers, capacity 2^20, 8 with zero slack); "
            "best_known = MiniMalloc's solution",
            {"test": MINIMALLOC_NAMES, "example": ("example",)},
            loader=load_minimalloc,
            source="google/minimalloc benchmarks (Apache-2.0), ASPLOS'23",
        )
    )
    datasets.register(
        datasets.Dataset(
            "memory/programs",
            MAPPING,
            "real programs from PyTorch models (GPT-2 decoder stack, ResNet, MLP-Mixer, U-Net; torch.export)",
            {"train": PROGRAMS_TRAIN, "test": PROGRAMS_TEST, "all": PROGRAMS},
            loader=load_shipped_program,
            source="schedgym.envs.memory.extract (torch.export + FlopCounterMode)",
        )
    )
    datasets.register(
        datasets.Dataset(
            "memory/program-buffers",
            OFFSETS,
            "the real programs' buffers as offset instances, capacity = peak live bytes (the lower bound)",
            {"train": PROGRAMS_TRAIN, "test": PROGRAMS_TEST, "all": PROGRAMS},
            loader=load_program_buffers,
            source="memory/programs",
        )
    )


def _random_programs(match: re.Match[str]) -> datasets.Dataset:
    n = int(match["n"])
    if n < 2:
        raise ValueError(f"memory/random-programs-N needs N >= 2 ops, got {n}")
    base = f"random-programs-{n}"
    return datasets.Dataset(
        f"memory/{base}",
        MAPPING,
        f"random layer-stack programs with {n} ops (seeded)",
        {"train": None, "test": tuple(f"{base}-{i:03d}" for i in range(RANDOM_TEST_SIZE))},
        loader=partial(_load_random_program, n),
        generator=partial(_generate_random_program, n),
        source="schedgym.envs.memory.generator.random_program",
        meta={"max_size": {"ops": n, "buffers": 2 * n + 1, "accesses": 4 * n}},
    )


def _random_offsets(match: re.Match[str]) -> datasets.Dataset:
    n = int(match["n"])
    if n < 1:
        raise ValueError(f"memory/random-offsets-N needs N >= 1 buffers, got {n}")
    base = f"random-offsets-{n}"
    return datasets.Dataset(
        f"memory/{base}",
        OFFSETS,
        f"zero-slack offset instances with {n} buffers and a planted optimum",
        {"train": None, "test": tuple(f"{base}-{i:03d}" for i in range(RANDOM_TEST_SIZE))},
        loader=partial(_load_random_offsets, n),
        generator=partial(_generate_random_offsets, n),
        source="schedgym.envs.memory.generator.random_offsets",
        meta={"max_size": {"buffers": n, "sections": n, "cover": n * n}},
    )


_register_named()
datasets.register_pattern(
    "memory/random-programs-N",
    r"memory/random-programs-(?P<n>\d+)",
    _random_programs,
    "random layer-stack programs with N ops: train = unbounded seeded stream, test = 100 fixed",
)
datasets.register_pattern(
    "memory/random-offsets-N",
    r"memory/random-offsets-(?P<n>\d+)",
    _random_offsets,
    "zero-slack offset instances with N buffers (planted optimum): train = seeded stream, test = 100 fixed",
)
datasets.register_file_loader(OFFSETS, load_offsets_csv)
datasets.register_file_loader(MAPPING, load_program)
