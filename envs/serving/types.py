"""LLM-serving data: workloads (requests), cluster and engine configuration, SLOs, and the schedule (event log).

All frozen; arrays are read-only numpy. Times are seconds, sizes are tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from schedgym.config import from_fields
from schedgym.envs.serving import catalog
from schedgym.envs.serving.disagg import DisaggConfig, resolve_disagg
from schedgym.envs.serving.migration import MigrationConfig, resolve_migration
from schedgym.envs.serving.queueing import QUEUE_POLICIES
from schedgym.envs.serving.workflows import Workflows


def _ro(a: Any, dtype: Any) -> np.ndarray:
    arr = np.array(a, dtype=dtype)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class ServingWorkload:
    """A sequence of LLM requests in arrival order.

    arrival:       (R,) float64 — arrival time in seconds, non-decreasing, >= 0
    prompt_tokens: (R,) int64   — input tokens, >= 1
    output_tokens: (R,) int64   — tokens to generate, >= 1 (the router never sees this unless configured to)
    priority:      (R,) int64   — priority class index, >= 0 (indexes ``SLO`` targets)
    prefix_hashes / prefix_offsets: optional CSR of prefix-block hashes (Mooncake): request r's blocks are
        ``prefix_hashes[prefix_offsets[r]:prefix_offsets[r+1]]``, each covering ``prefix_block_tokens`` tokens.
    """

    name: str
    arrival: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    priority: np.ndarray | None = None
    prefix_hashes: np.ndarray | None = None
    prefix_offsets: np.ndarray | None = None
    prefix_block_tokens: int = 512
    source: str = ""
    workflows: Workflows | None = None  # stages of workflow DAGs with deadlines (``workflows.py``)

    def __post_init__(self) -> None:
        a = np.array(self.arrival, dtype=np.float64)
        p = np.array(self.prompt_tokens)
        o = np.array(self.output_tokens)
        n = a.shape[0] if a.ndim == 1 else -1
        if n < 1:
            raise ValueError(f"workload {self.name}: arrival must be a non-empty 1-D array, got shape {a.shape}")
        for label, arr in (("prompt_tokens", p), ("output_tokens", o)):
            if arr.shape != (n,):
                raise ValueError(f"workload {self.name}: {label} has shape {arr.shape}, expected ({n},)")
            if not np.issubdtype(arr.dtype, np.integer):
                if not np.all(np.isfinite(arr.astype(float))) or np.any(arr != np.round(arr)):
                    raise ValueError(f"workload {self.name}: {label} must be integers")
            if (arr < 1).any():
                i = int(np.argmax(arr < 1))
                raise ValueError(f"workload {self.name}: request {i} has {label}={arr[i]}, expected >= 1")
        if not np.all(np.isfinite(a)) or (a < 0).any():
            i = int(np.argmax(~np.isfinite(a) | (a < 0)))
            raise ValueError(f"workload {self.name}: request {i} has arrival {a[i]}, expected a finite time >= 0")
        if (np.diff(a) < 0).any():
            i = int(np.argmax(np.diff(a) < 0)) + 1
            raise ValueError(f"workload {self.name}: arrivals must be sorted; request {i} arrives at {a[i]} "
                             f"before request {i - 1} at {a[i - 1]}")
        pr = np.zeros(n, np.int64) if self.priority is None else np.array(self.priority)
        if pr.shape != (n,) or not np.issubdtype(pr.dtype, np.integer) or (pr < 0).any():
            raise ValueError(f"workload {self.name}: priority must be ({n},) integers >= 0")
        object.__setattr__(self, "arrival", _ro(a, np.float64))
        object.__setattr__(self, "prompt_tokens", _ro(p, np.int64))
        object.__setattr__(self, "output_tokens", _ro(o, np.int64))
        object.__setattr__(self, "priority", _ro(pr, np.int64))
        if (self.prefix_hashes is None) != (self.prefix_offsets is None):
            raise ValueError(f"workload {self.name}: give both prefix_hashes and prefix_offsets, or neither")
        if self.prefix_hashes is not None:
            h = np.array(self.prefix_hashes, dtype=np.int64)
            off = np.array(self.prefix_offsets, dtype=np.int64)
            if off.shape != (n + 1,) or off[0] != 0 or (np.diff(off) < 0).any() or off[-1] != h.shape[0]:
                raise ValueError(f"workload {self.name}: prefix_offsets must be ({n + 1},) non-decreasing from 0 "
                                 f"to len(prefix_hashes)={h.shape[0]}")
            object.__setattr__(self, "prefix_hashes", _ro(h, np.int64))
            object.__setattr__(self, "prefix_offsets", _ro(off, np.int64))
        if self.prefix_block_tokens < 1:
            raise ValueError(f"workload {self.name}: prefix_block_tokens must be >= 1")
        if self.workflows is not None:
            if self.workflows.workflow.shape != (n,):
                raise ValueError(f"workload {self.name}: workflows describe {self.workflows.workflow.size} stages, "
                                 f"expected {n}")
            self.workflows.check_roots(self.arrival)

    @property
    def n_requests(self) -> int:
        return int(self.arrival.shape[0])

    @property
    def best_known(self) -> None:
        return None

    @property
    def duration(self) -> float:
        return float(self.arrival[-1] - self.arrival[0])

    def hashes(self, r: int) -> np.ndarray:
        """Prefix-block hashes of request ``r`` (empty when the workload has none)."""
        if self.prefix_hashes is None:
            return np.zeros(0, np.int64)
        return self.prefix_hashes[self.prefix_offsets[r]:self.prefix_offsets[r + 1]]

    def slice(self, start: int, stop: int, name: str | None = None, rebase: bool = True) -> ServingWorkload:
        """Requests ``start:stop`` (times shifted so the first arrives at 0 when ``rebase``)."""
        if not 0 <= start < stop <= self.n_requests:
            raise ValueError(f"workload {self.name}: slice {start}:{stop} is outside 0:{self.n_requests}")
        if self.workflows is not None:
            raise ValueError(f"workload {self.name}: a workflow workload cannot be sliced (it would cut DAGs)")
        a = self.arrival[start:stop]
        a = a - a[0] if rebase else a
        hashes = offsets = None
        if self.prefix_hashes is not None:
            lo, hi = self.prefix_offsets[start], self.prefix_offsets[stop]
            hashes, offsets = self.prefix_hashes[lo:hi], self.prefix_offsets[start:stop + 1] - lo
        return ServingWorkload(name or f"{self.name}[{start}:{stop}]", a, self.prompt_tokens[start:stop],
                               self.output_tokens[start:stop], self.priority[start:stop], hashes, offsets,
                               self.prefix_block_tokens, self.source)

    def scaled(self, rate_scale: float) -> ServingWorkload:
        """The same requests replayed ``rate_scale`` times faster (arrival times divided by it)."""
        if not (rate_scale > 0 and np.isfinite(rate_scale)):
            raise ValueError(f"rate_scale must be a finite number > 0, got {rate_scale}")
        if rate_scale == 1.0:
            return self
        return replace(self, name=f"{self.name}@x{rate_scale:g}", arrival=self.arrival / rate_scale)

    def with_priority(self, priority: np.ndarray) -> ServingWorkload:
        return replace(self, priority=priority)

    def __repr__(self) -> str:
        return f"ServingWorkload({self.name!r}, {self.n_requests} requests over {self.duration:.1f} s)"


_INSTANCE_RE = re.compile(r"^(?P<gpu>[^/:]+)[/:](?P<model>[^/:]+?)(?:[/:]tp(?P<tp>\d+))?(?:[/:]len(?P<len>\d+))?$")


@dataclass(frozen=True)
class InstanceSpec:
    """One model instance: ``tp`` GPUs of one type serving one model.

    ``max_model_len`` caps a request's prompt + output tokens (default: the model's context);
    ``calibration`` is a path to a calibration table overriding the analytic cost model.
    """

    gpu: str
    model: str
    tp: int = 1
    max_model_len: int | None = None
    calibration: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "gpu", catalog.gpu(self.gpu).name)
        object.__setattr__(self, "model", catalog.model(self.model).name)
        if not isinstance(self.tp, (int, np.integer)) or self.tp < 1:
            raise ValueError(f"instance {self.gpu}/{self.model}: tp must be an integer >= 1, got {self.tp!r}")
        ctx = catalog.model(self.model).max_context
        if self.max_model_len is not None and not 1 <= int(self.max_model_len) <= ctx:
            raise ValueError(f"instance {self.gpu}/{self.model}: max_model_len must be in 1..{ctx} (the model's "
                             f"context), got {self.max_model_len}")

    @property
    def context_limit(self) -> int:
        return int(self.max_model_len or catalog.model(self.model).max_context)

    @property
    def label(self) -> str:
        s = f"{self.gpu}/{self.model}/tp{self.tp}"
        return s + (f"/len{self.max_model_len}" if self.max_model_len else "")

    @classmethod
    def parse(cls, spec: InstanceSpec | str | dict[str, Any]) -> InstanceSpec:
        """From an ``InstanceSpec``, a dict of its fields, or ``"GPU/MODEL[/tpN][/lenL]"``."""
        if isinstance(spec, InstanceSpec):
            return spec
        if isinstance(spec, dict):
            known = {f.name for f in fields(cls)}
            bad = sorted(set(spec) - known)
            if bad:
                raise ValueError(f"instance spec {spec}: unknown field(s) {bad}; expected {sorted(known)}")
            return cls(**spec)
        if isinstance(spec, str):
            m = _INSTANCE_RE.match(spec.strip())
            if not m:
                raise ValueError(f"instance spec {spec!r}: expected 'GPU/MODEL', 'GPU/MODEL/tpN' or "
                                 f"'GPU/MODEL/tpN/lenL' (e.g. 'H100-80GB/Llama-3-8B/tp1')")
            return cls(m["gpu"], m["model"], int(m["tp"] or 1), int(m["len"]) if m["len"] else None)
        raise TypeError(f"instance spec must be an InstanceSpec, dict or string, got {type(spec).__name__}")


@dataclass(frozen=True)
class EngineConfig:
    """vLLM-style continuous batching knobs shared by the instances of a cluster.

    ``max_num_batched_tokens`` defaults to 512 with chunked prefill (Sarathi-Serve's chunk) and to the
    instance's context limit without it (vLLM v0's default, so any admissible prompt fits one iteration).
    """

    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float = 0.9
    chunked_prefill: bool = False
    preemption: str = "recompute"
    swap_space_gb: float = 4.0
    watermark: float = 0.01
    iteration_overhead_s: float = 1.0e-3
    prefix_caching: bool = False
    num_gpu_blocks: int | None = None  # override the computed KV capacity (e.g. to undersize the cache)
    # Effective swap bandwidth per GPU, GB/s (None = the GPU's PCIe link from the catalog). FastSwitch
    # (arXiv:2411.18424) measures vLLM's per-block swap copies far below the link's peak: set it to study that.
    swap_bw_gbps: float | None = None
    queue_policy: str = "fcfs"  # waiting-queue order (``queueing.py``): "fcfs", "edf" (earliest workflow deadline
    # first) or "priority" (lower priority class first)

    def __post_init__(self) -> None:
        checks = {
            "block_size": self.block_size >= 1, "max_num_seqs": self.max_num_seqs >= 1,
            "max_num_batched_tokens": self.max_num_batched_tokens is None or self.max_num_batched_tokens >= 1,
            "gpu_memory_utilization": 0 < self.gpu_memory_utilization <= 1,
            "preemption": self.preemption in ("recompute", "swap"),
            "swap_space_gb": self.swap_space_gb >= 0, "watermark": 0 <= self.watermark < 1,
            "iteration_overhead_s": self.iteration_overhead_s >= 0,
            "num_gpu_blocks": self.num_gpu_blocks is None or self.num_gpu_blocks >= 1,
            "swap_bw_gbps": self.swap_bw_gbps is None or 0 < self.swap_bw_gbps < float("inf"),
            "queue_policy": self.queue_policy in QUEUE_POLICIES,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            k = bad[0]
            expect = {"preemption": "'recompute' or 'swap'", "gpu_memory_utilization": "in (0, 1]",
                      "watermark": "in [0, 1)", "swap_bw_gbps": "None or a finite number > 0",
                      "queue_policy": " or ".join(repr(q) for q in QUEUE_POLICIES),
                      }.get(k, ">= 1" if k not in ("swap_space_gb", "iteration_overhead_s") else ">= 0")
            raise ValueError(f"EngineConfig.{k}={getattr(self, k)!r}: expected {expect}")

    def batched_tokens(self, context_limit: int) -> int:
        if self.max_num_batched_tokens is not None:
            return int(self.max_num_batched_tokens)
        return 512 if self.chunked_prefill else int(context_limit)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | EngineConfig | None) -> EngineConfig:
        if d is None:
            return cls()
        if isinstance(d, EngineConfig):
            return d
        return from_fields(cls, d, "engine")


@dataclass(frozen=True)
class SLO:
    """Per priority class targets: class ``c`` must reach TTFT <= ttft_s[c] and TPOT <= tpot_s[c]."""

    ttft_s: tuple[float, ...] = (2.0,)
    tpot_s: tuple[float, ...] = (0.2,)

    def __post_init__(self) -> None:
        t, p = tuple(float(x) for x in self.ttft_s), tuple(float(x) for x in self.tpot_s)
        if not t or len(t) != len(p) or min(t + p) <= 0:
            raise ValueError(f"SLO: ttft_s and tpot_s must be equally long, non-empty and > 0, got {t} and {p}")
        object.__setattr__(self, "ttft_s", t)
        object.__setattr__(self, "tpot_s", p)

    @property
    def n_classes(self) -> int:
        return len(self.ttft_s)


@dataclass(frozen=True)
class ClusterSpec:
    """The instances, their engine configuration, the SLOs requests are judged by, optional live migration
    of running requests between instances (``migration.py``) or disaggregated prefill/decode pools
    (``disagg.py``; ``None`` = off), and whether iteration times vary as measured on a live host
    (``variability.py``)."""

    instances: tuple[InstanceSpec, ...]
    engine: EngineConfig = field(default_factory=EngineConfig)
    slo: SLO = field(default_factory=SLO)
    migration: MigrationConfig | None = None
    disagg: DisaggConfig | None = None
    interference: bool = False     # measured slowdown by other busy engines, from the tables (variability.py)
    iteration_noise: bool = False  # measured per-iteration jitter, from the calibration tables (variability.py)

    def __post_init__(self) -> None:
        if not self.instances:
            raise ValueError("a cluster needs at least one instance")
        for name in ("interference", "iteration_noise"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        object.__setattr__(self, "instances", tuple(InstanceSpec.parse(s) for s in self.instances))
        object.__setattr__(self, "migration", resolve_migration(self.migration))
        object.__setattr__(self, "disagg", resolve_disagg(self.disagg))
        if self.disagg is not None:
            if self.migration is not None:
                raise ValueError("choose live migration or disaggregated prefill/decode, not both")
            if self.disagg.n_prefill >= len(self.instances):
                raise ValueError(f"disagg.n_prefill={self.disagg.n_prefill} leaves no decode instance in a cluster "
                                 f"of {len(self.instances)}; expected 1..{len(self.instances) - 1}")
            if len({s.model for s in self.instances}) > 1:
                raise ValueError("disaggregated pools hand KV caches over, so every instance must serve the same "
                                 f"model, got {sorted({s.model for s in self.instances})}")
        if self.migration is not None and self.migration.decider == "agent" and len(self.instances) < 2:
            raise ValueError("migration decided by the agent needs at least two instances of one model, got "
                             f"{len(self.instances)} instance(s)")
        if self.migration is not None and len({s.model for s in self.instances}) == len(self.instances) > 1:
            raise ValueError("migration moves KV caches between instances of the same model, but every instance "
                             f"serves a different model: {[s.model for s in self.instances]}")

    @property
    def n_instances(self) -> int:
        return len(self.instances)

    def to_json(self) -> dict[str, Any]:
        return {"instances": [i.label for i in self.instances],
                "engine": {f.name: getattr(self.engine, f.name) for f in fields(self.engine)},
                "slo": {"ttft_s": list(self.slo.ttft_s), "tpot_s": list(self.slo.tpot_s)},
                **({"migration": self.migration.to_json()} if self.migration is not None else {}),
                **({"disagg": self.disagg.to_json()} if self.disagg is not None else {}),
                **({"interference": True} if self.interference else {}),
                **({"iteration_noise": True} if self.iteration_noise else {})}


# Residency start/end kinds (see ServingSchedule).
START_PREFILL, START_SWAP_IN, START_MIGRATE_IN = 0, 1, 2
END_FINISH, END_RECOMPUTE, END_SWAP_OUT, END_MIGRATE_OUT = 0, 1, 2, 3


@dataclass(frozen=True, eq=False)
class ServingSchedule:
    """The event log of one episode: enough to recompute every metric and check every invariant.

    Per request (R,): ``instance`` (routed instance, -1 = rejected: no instance could ever serve it).
    Per residency (M,) — a stint during which a request holds KV blocks on its instance:
      ``res_request``, ``res_alloc`` (blocks allocated: admission or swap-in), ``res_start`` (decoding
      starts: end of its prefill iteration, i.e. a new token, or the swap-in), ``res_end`` (finish or
      preemption), ``res_kv_start`` (KV tokens held when decoding starts), ``res_cached`` (prompt tokens
      served from the prefix cache), ``res_start_kind`` (0 prefill, 1 swap-in, 2 migrated in),
      ``res_end_kind`` (0 finish, 1 preempted for recompute, 2 swapped out, 3 migrated out),
      ``res_instance`` (the instance holding the blocks; ``None`` = the routed one, i.e. no migration).
    Per segment (S,) — a run of identical iterations on one instance: ``seg_instance``, ``seg_start``,
      ``seg_end``, ``seg_iters``, ``seg_decode`` (every running sequence decodes one token per iteration),
      ``seg_prefill_tokens`` (prompt tokens per iteration).
    """

    workload: ServingWorkload
    cluster: ClusterSpec
    instance: np.ndarray
    res_request: np.ndarray
    res_alloc: np.ndarray
    res_start: np.ndarray
    res_end: np.ndarray
    res_kv_start: np.ndarray
    res_cached: np.ndarray
    res_start_kind: np.ndarray
    res_end_kind: np.ndarray
    seg_instance: np.ndarray
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_iters: np.ndarray
    seg_decode: np.ndarray
    seg_prefill_tokens: np.ndarray
    res_instance: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"workload": self.workload.name, "cluster": self.cluster.to_json()}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                out[f.name] = v.tolist()
        return out
