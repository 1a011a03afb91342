"""Least KV-cache usage: the instance whose paged KV cache is least full (used blocks / capacity), with
pending prompt blocks counted as used.

Source: KV-utilisation scoring of llm-d's endpoint picker (``kv-cache-utilization-scorer``, llm-d/llm-d-
inference-scheduler) and Vidur's per-replica ``memory_usage_percent``; see REFERENCE §12.4.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._routing import PENDING_TOKENS, USED_BLOCKS, Router
from schedgym.envs.serving.sim import ClusterSim


class LeastKv(Router):
    """Lowest (used + waiting prompt blocks) / total blocks."""

    name = "least_kv"

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        stats = state.live_stats()
        total = np.array([e.total_blocks for e in state.engines], float)
        bs = state.cluster.engine.block_size
        return self.argmin(valid, (stats[:, USED_BLOCKS] + stats[:, PENDING_TOKENS] / bs) / total)
