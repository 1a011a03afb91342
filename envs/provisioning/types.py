"""Provisioning data: the GPU-type slots of the observation and the schedule (allocation + serving log).

The problem itself is ``schedgym.envs.serving.provisioning.ProvisioningProblem`` (workload, model, candidate
GPU types, per-type cap, SLO, attainment target), shared with the Mélange solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from schedgym.envs.serving.types import ServingSchedule

# Every datacenter GPU type of the catalog, in a fixed order: node i / action i of the env is GPU_SLOTS[i].
GPU_SLOTS = ("L4", "A10G", "A100-80GB", "H100-80GB", "H200")


@dataclass(frozen=True, eq=False)
class ProvisioningSchedule:
    """An allocation and the serving episode run on it.

    gpus:    the problem's GPU types (names), in the problem's order
    counts:  (T,) int64 — GPUs of each type (one single-GPU instance each, in type order)
    serving: the simulated serving episode's event log on that cluster (``None`` before provisioning)
    """

    gpus: tuple[str, ...]
    counts: np.ndarray
    serving: ServingSchedule | None = None

    def to_json(self) -> dict[str, Any]:
        return {"gpus": list(self.gpus), "counts": [int(c) for c in self.counts],
                "serving": None if self.serving is None else self.serving.to_json()}
