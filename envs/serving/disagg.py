"""Disaggregated prefill and decode (DistServe / Splitwise): separate instance pools for the two phases.

With ``ClusterSpec.disagg = DisaggConfig(n_prefill, link_gbps)``, the first ``n_prefill`` instances of the
cluster form the prefill pool (each may be any GPU type) and the rest the decode pool. The router places each
arriving request on a prefill instance (the action mask allows only those); when its prompt is processed,
the first token is out and its KV cache (prompt tokens) leaves over the link, ``blocks * block_bytes /
link_bw`` seconds, to the decode instance chosen by ``place_decode`` (the one with the most free KV blocks
after transfers already on their way; ties to the lowest index), where it waits in the swapped queue until
it fits and then decodes. The log records the hand-off as a migration (end kind 3 / start kind 2), so the
validator checks it the same way: the KV blocks arrive whole, after the transfer time, on another instance.

Source: Y. Zhong et al., "DistServe: Disaggregating Prefill and Decoding for Goodput-optimized Large Language
Model Serving", OSDI 2024; P. Patel et al., "Splitwise: Efficient Generative LLM Inference Using Phase
Splitting", ISCA 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from schedgym.config import resolve

if TYPE_CHECKING:
    from schedgym.envs.serving.sim import ClusterSim


@dataclass(frozen=True)
class DisaggConfig:
    """n_prefill: instances 0..n_prefill-1 prefill, the rest decode (>= 1 each); link_gbps: KV link per GPU."""

    n_prefill: int
    link_gbps: float = 25.0   # 200 Gb/s InfiniBand per GPU (DistServe's cross-node setting)

    def __post_init__(self) -> None:
        if not isinstance(self.n_prefill, (int, np.integer)) or self.n_prefill < 1:
            raise ValueError(f"DisaggConfig.n_prefill={self.n_prefill!r}: expected an integer >= 1")
        if not (self.link_gbps > 0 and math.isfinite(self.link_gbps)):
            raise ValueError(f"DisaggConfig.link_gbps={self.link_gbps!r}: expected a finite number > 0")

    @property
    def link_bw(self) -> float:
        return self.link_gbps * 1e9

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DISAGG_PRESETS: dict[str, DisaggConfig] = {"1p1d": DisaggConfig(1), "2p2d": DisaggConfig(2), "3p1d": DisaggConfig(3)}


def resolve_disagg(d: str | dict[str, Any] | DisaggConfig | None) -> DisaggConfig | None:
    """``None`` (colocated), a preset (``DISAGG_PRESETS``), a dict of ``DisaggConfig`` fields, or one."""
    return resolve(d, DisaggConfig, DISAGG_PRESETS, "disaggregation")


def place_decode(sim: ClusterSim, r: int, src: int) -> int:
    """Decode instance for ``r`` leaving prefill instance ``src``: most free blocks net of incoming transfers."""
    best, best_free = -1, -math.inf
    for i in sim.decode_ids:
        e = sim.engines[i]
        if not sim.fits[r, i] or not sim.same_model[src, i]:
            continue
        free = e.free - e.incoming_blocks
        if free > best_free:
            best, best_free = i, free
    return best
