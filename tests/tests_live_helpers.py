"""Shared workloads and the device for the live-backend tests.

``SCHEDGYM_TEST_DEVICE`` (default ``cpu``) runs the engine, env and calibration tests on another torch device,
e.g. ``SCHEDGYM_TEST_DEVICE=cuda`` on a GPU machine (``scripts/gpu_check.sh``); Ray-dependent tests stay on CPU.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from schedgym.envs.serving.types import ServingWorkload

DEVICE = os.environ.get("SCHEDGYM_TEST_DEVICE", "cpu")
if DEVICE.startswith("cuda"):
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"SCHEDGYM_TEST_DEVICE={DEVICE!r} but torch sees no CUDA device")

cpu_only = pytest.mark.skipif(DEVICE != "cpu", reason=f"CPU-only test (SCHEDGYM_TEST_DEVICE={DEVICE})")


def small_workload(n: int = 12) -> ServingWorkload:
    rng = np.random.default_rng(3)
    return ServingWorkload("small", np.sort(rng.uniform(0, 0.3, n)), rng.integers(4, 60, n), rng.integers(2, 20, n))
