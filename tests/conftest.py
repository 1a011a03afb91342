"""Shared test configuration.

Torch is imported lazily (only the graph/agent tests need it); whenever it is loaded, its intra-op thread
pool is pinned to one thread, which is 10-20x faster for the tiny tensors the tests use.
"""

from __future__ import annotations

import os
import sys

import pytest

# ``helpers.py`` lives beside the tests; make it importable under any --import-mode.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

_TORCH_PINNED = False


def _pin_torch_threads() -> None:
    global _TORCH_PINNED
    if not _TORCH_PINNED and "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)
        _TORCH_PINNED = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    _pin_torch_threads()


@pytest.fixture
def torch():
    """The torch module with ``torch.set_num_threads(1)`` applied."""
    import torch as _torch

    _torch.set_num_threads(1)
    return _torch


@pytest.fixture(scope="module")
def ray_session():
    """A local 2-CPU Ray instance for one test module (engines as Ray actors)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()
