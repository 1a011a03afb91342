"""Job-shop instance and schedule: frozen data, checked on construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class JobShopInstance:
    """``n_jobs`` jobs, each visiting machines in a fixed order.

    machines:  (J, K) int64 — machine of operation k of job j, in 0..n_machines-1
    durations: (J, K) int64 — processing time of operation k of job j, >= 0
    Bounds (best known optimum / lower / upper bound on the makespan) are optional metadata.
    """

    name: str
    machines: np.ndarray
    durations: np.ndarray
    n_machines: int
    optimum: int | None = None
    lower_bound: int | None = None
    upper_bound: int | None = None

    def __post_init__(self) -> None:
        m = np.array(self.machines, dtype=np.int64)
        d = np.array(self.durations, dtype=np.int64)
        if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
            raise ValueError(f"{self.name}: machines must be a non-empty (n_jobs, n_ops) matrix, got shape {m.shape}")
        if d.shape != m.shape:
            raise ValueError(f"{self.name}: durations shape {d.shape} differs from machines shape {m.shape}")
        if self.n_machines < 1:
            raise ValueError(f"{self.name}: n_machines must be >= 1, got {self.n_machines}")
        if (m < 0).any() or (m >= self.n_machines).any():
            raise ValueError(f"{self.name}: machines must lie in 0..{self.n_machines - 1}")
        if (d < 0).any():
            raise ValueError(f"{self.name}: durations must be >= 0")
        for j, row in enumerate(m):
            if len(set(row.tolist())) != len(row):
                raise ValueError(f"{self.name}: job {j} visits a machine more than once")
        m.flags.writeable = False
        d.flags.writeable = False
        object.__setattr__(self, "machines", m)
        object.__setattr__(self, "durations", d)

    @property
    def n_jobs(self) -> int:
        return int(self.machines.shape[0])

    @property
    def n_ops_per_job(self) -> int:
        return int(self.machines.shape[1])

    @property
    def best_known(self) -> int | None:
        """The optimum if proven, else the best-known upper bound."""
        return self.optimum if self.optimum is not None else self.upper_bound

    def __repr__(self) -> str:
        return f"JobShopInstance({self.name!r}, {self.n_jobs}x{self.n_machines})"


@dataclass(frozen=True, eq=False)
class JobShopSchedule:
    """start_times: (J, K) int64 — start of operation k of job j (job order)."""

    instance_name: str
    start_times: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance_name, "start_times": self.start_times.tolist()}
