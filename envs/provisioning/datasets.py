"""Provisioning datasets: Mélange's preset, and windows of the Azure conv 2023 trace at random load.

- ``provisioning/melange``: ``test`` = the ``melange`` preset (800 Azure conv test requests at x16, Llama-3-8B
  on L4 / A10G / A100-80GB / H100-80GB, at most 4 each, SLO 2 s / 100 ms, target 90 %).
- ``provisioning/azure-conv-2023`` (the env's default): ``train`` = an unbounded stream of problems, each a
  random window of ``WINDOW`` consecutive requests of the trace's train part replayed at a load drawn
  log-uniformly in x4..x16, on the same four types at most ``CAP`` each, SLO 2 s / 100 ms, target 90 %;
  ``test`` = ``TEST_SIZE`` fixed problems drawn the same way from the test part (seeded apart from training).
"""

from __future__ import annotations

import numpy as np

from schedgym import datasets
from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.generator import trace_window
from schedgym.envs.serving.provisioning import ProvisioningProblem, melange_problem
from schedgym.envs.serving.types import SLO

ENV_ID = "schedgym/Provisioning-v0"
GPUS = ("L4", "A10G", "A100-80GB", "H100-80GB")
WINDOW, CAP, TEST_SIZE = 200, 3, 8
LOAD = (4.0, 16.0)


def conv_problem(rng: np.random.Generator, split: str, name: str | None = None) -> ProvisioningProblem:
    """A window of the Azure conv 2023 ``split`` part at a random load (see the module docstring)."""
    w = trace_window(rng, part("azure-conv-2023", split), WINDOW, name)
    w = w.scaled(float(np.exp(rng.uniform(np.log(LOAD[0]), np.log(LOAD[1])))))
    return ProvisioningProblem(w, "Llama-3-8B", GPUS, max_per_type=CAP, slo=SLO((2.0,), (0.1,)), target=0.9)


def _load(name: str) -> ProvisioningProblem:
    if name == "melange":
        return melange_problem()
    head, _, idx = name.rpartition("/")
    if head != "azure-conv-2023/test" or not idx.isdigit() or int(idx) >= TEST_SIZE:
        raise ValueError(f"unknown provisioning instance {name!r}; expected 'melange' or "
                         f"'azure-conv-2023/test/NNN' with NNN < {TEST_SIZE}")
    return conv_problem(np.random.default_rng([0xC057, int(idx)]), "test", name)


datasets.register(datasets.Dataset(
    "provisioning/melange", ENV_ID, "Mélange's mixed-length provisioning problem (Azure conv 2023, 4 GPU types)",
    {"test": ("melange",)}, loader=_load, source="schedgym.envs.serving.provisioning.melange_problem"))
datasets.register(datasets.Dataset(
    "provisioning/azure-conv-2023", ENV_ID,
    f"{WINDOW}-request windows of Azure conv 2023 at x4..x16 load, 4 GPU types, at most {CAP} each",
    {"train": None, "test": tuple(f"azure-conv-2023/test/{i:03d}" for i in range(TEST_SIZE))},
    loader=_load, generator=lambda rng: conv_problem(rng, "train"),
    source="schedgym/data/serving/traces (Azure LLM inference 2023, CC-BY-4.0), windows drawn by seed"))
