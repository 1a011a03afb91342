"""From a ``ClusterSpec`` to what the simulator and the validator need: cost models and KV capacities.

Named cluster presets live here too (``CLUSTERS``), so scripts, tests and the env agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from schedgym.envs.serving import catalog
from schedgym.envs.serving.costmodel import (
    CostModel,
    RooflineCostModel,
    TableCostModel,
    load_calibration_table,
)
from schedgym.envs.serving.types import ClusterSpec, EngineConfig, InstanceSpec

CLUSTERS: dict[str, tuple[str, ...]] = {
    # Small and heterogeneous: the default env (the L4 caps requests at 4096 tokens, so masks bite).
    "mixed-4": ("H100-80GB/Llama-3-8B", "H100-80GB/Llama-3-8B", "A100-80GB/Llama-3-8B", "L4/Llama-3-8B/tp1/len4096"),
    "h100-8": ("H100-80GB/Llama-3-8B",) * 8,
    "h100-4": ("H100-80GB/Llama-3-8B",) * 4,
    "a100-4": ("A100-80GB/Llama-3-8B",) * 4,
    "a100-70b-2": ("A100-80GB/Llama-3-70B/tp4",) * 2,
    "h100-long-4": ("H100-80GB/Llama-3.1-8B",) * 4,
}


def resolve_cluster(instances: str | list | tuple) -> tuple[InstanceSpec, ...]:
    """A preset name (``CLUSTERS``) or a list of instance specs (strings, dicts, ``InstanceSpec``)."""
    if isinstance(instances, str):
        if instances not in CLUSTERS:
            raise ValueError(f"unknown cluster preset {instances!r}; expected one of {sorted(CLUSTERS)} or a list "
                             "of instance specs like 'H100-80GB/Llama-3-8B/tp1'")
        instances = CLUSTERS[instances]
    return tuple(InstanceSpec.parse(s) for s in instances)


@dataclass(frozen=True)
class InstancePlan:
    """Derived numbers of one instance: its KV capacity in blocks and the bytes of one block per GPU."""

    num_blocks: int
    block_bytes: float
    memory: dict[str, float]


def instance_plan(spec: InstanceSpec, engine: EngineConfig) -> InstancePlan:
    """KV capacity of ``spec`` under ``engine`` (``engine.num_gpu_blocks`` overrides the computed one).

    Raises if the model does not fit, or if the cache cannot hold one request of the context limit.
    """
    g, m = catalog.gpu(spec.gpu), catalog.model(spec.model)
    blocks, mem = catalog.kv_plan(g, m, spec.tp, block_size=engine.block_size,
                                  gpu_memory_utilization=engine.gpu_memory_utilization,
                                  max_num_batched_tokens=engine.batched_tokens(spec.context_limit),
                                  max_num_seqs=engine.max_num_seqs)
    if engine.num_gpu_blocks is not None:
        blocks = int(engine.num_gpu_blocks)
    kv_heads = max(1, m.n_kv_heads // spec.tp)
    block_bytes = 2.0 * m.n_layers * kv_heads * m.head_dim * m.bytes_per_param * engine.block_size
    return InstancePlan(blocks, block_bytes, mem)


def cost_model(spec: InstanceSpec, engine: EngineConfig) -> CostModel:
    """The instance's cost model: its calibration table if it names one, else the fitted roofline."""
    if spec.calibration:
        return TableCostModel(load_calibration_table(spec.calibration))
    return RooflineCostModel(catalog.gpu(spec.gpu), catalog.model(spec.model), spec.tp,
                             iteration_overhead_s=engine.iteration_overhead_s)


def cost_models(cluster: ClusterSpec) -> list[CostModel]:
    """One cost model per instance; identical instances share one object (and its memoised tables)."""
    by_spec: dict[InstanceSpec, CostModel] = {}
    for s in cluster.instances:
        if s not in by_spec:
            by_spec[s] = cost_model(s, cluster.engine)
    return [by_spec[s] for s in cluster.instances]


def check_cluster(cluster: ClusterSpec) -> list[InstancePlan]:
    """Plans of every instance; errors name the instance and what was expected."""
    plans = []
    for i, spec in enumerate(cluster.instances):
        try:
            plans.append(instance_plan(spec, cluster.engine))
        except ValueError as exc:
            raise ValueError(f"instance {i} ({spec.label}): {exc}") from None
    if cluster.engine.chunked_prefill:
        for i, spec in enumerate(cluster.instances):
            if cluster.engine.batched_tokens(spec.context_limit) < cluster.engine.max_num_seqs:
                raise ValueError(f"instance {i}: with chunked prefill max_num_batched_tokens "
                                 f"({cluster.engine.batched_tokens(spec.context_limit)}) must be >= max_num_seqs "
                                 f"({cluster.engine.max_num_seqs}) so every running sequence can decode")
    return plans


def request_limit(spec: InstanceSpec, engine: EngineConfig, plan: InstancePlan) -> int:
    """Largest prompt + output tokens a request may have to be servable by this instance.

    It must fit the context limit and the KV cache (minus the admission watermark), and without chunked
    prefill its whole prompt must fit one iteration's token budget.
    """
    watermark = int(engine.watermark * plan.num_blocks)
    limit = min(spec.context_limit, (plan.num_blocks - watermark) * engine.block_size)
    if not engine.chunked_prefill:
        limit = min(limit, engine.batched_tokens(spec.context_limit) + 1)
    return int(limit)
