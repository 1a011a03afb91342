"""GPU and model catalogs: public specs, read lazily from ``schedgym/data/serving/catalog/*.json``.

Each entry cites its source in the JSON. Lookups are exact names or a few documented aliases
(``"H100"`` -> ``"H100-80GB"``); an unknown name raises a ``ValueError`` listing the known ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

GB = 1e9

GPU_ALIASES = {"A100": "A100-80GB", "A100-80G": "A100-80GB", "H100": "H100-80GB", "H100-80G": "H100-80GB",
               "H200-141GB": "H200"}
MODEL_ALIASES = {"Meta-Llama-3-8B": "Llama-3-8B", "Meta-Llama-3-70B": "Llama-3-70B",
                 "Llama-2-7b-hf": "Llama-2-7B", "Llama-2-70b-hf": "Llama-2-70B"}


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type. Rates are in SI units: FLOP/s, bytes/s; memory in bytes."""

    name: str
    peak_flops: float          # dense BF16 tensor-core peak, FLOP/s
    hbm_bw: float              # HBM bandwidth, B/s
    memory_bytes: float        # HBM capacity, B
    interconnect: str
    interconnect_bw: float     # per-GPU unidirectional link bandwidth, B/s (tensor-parallel all-reduce)
    pcie_bw: float             # host link bandwidth per direction, B/s (KV swap)
    price_per_hour: float      # USD per GPU-hour
    efficiency_from: str       # measured GPU whose fitted efficiency constants this one borrows
    source: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer (Llama-style: RMSNorm, RoPE, GQA, optional gated MLP)."""

    name: str
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    ffn_size: int
    vocab_size: int
    gated_mlp: bool = True
    max_context: int = 4096
    bytes_per_param: int = 2
    hf_id: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        for f in ("n_layers", "hidden_size", "n_heads", "n_kv_heads", "ffn_size", "vocab_size", "max_context",
                  "bytes_per_param"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"model {self.name}: {f} must be >= 1, got {getattr(self, f)}")
        if self.hidden_size % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"model {self.name}: hidden_size must divide by n_heads and n_heads by n_kv_heads")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    @property
    def layer_params(self) -> int:
        """Weights of one decoder layer (attention projections + MLP; norms are negligible)."""
        h, d = self.hidden_size, self.head_dim
        qkv = h * (self.n_heads + 2 * self.n_kv_heads) * d
        out = self.n_heads * d * h
        mlp = (3 if self.gated_mlp else 2) * h * self.ffn_size
        return qkv + out + mlp

    @property
    def n_params(self) -> int:
        """All weights: layers, input embedding and (untied) LM head."""
        return self.n_layers * self.layer_params + 2 * self.vocab_size * self.hidden_size

    @property
    def weight_bytes(self) -> float:
        return float(self.n_params * self.bytes_per_param)

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes per token over all layers (K and V), before tensor-parallel sharding."""
        return float(2 * self.n_layers * self.n_kv_heads * self.head_dim * self.bytes_per_param)


@cache
def _load(kind: str) -> dict[str, dict[str, Any]]:
    text = resources.files("schedgym.data").joinpath(f"serving/catalog/{kind}.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def gpu_names() -> list[str]:
    return sorted(_load("gpus"))


def model_names() -> list[str]:
    return sorted(_load("models"))


def _resolve(name: str, table: dict[str, dict[str, Any]], aliases: dict[str, str], what: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a string, got {type(name).__name__}")
    if name in table:
        return name
    if name in aliases:
        return aliases[name]
    lower = {k.lower(): k for k in list(table) + list(aliases)}
    if name.lower() in lower:
        key = lower[name.lower()]
        return aliases.get(key, key)
    raise ValueError(f"unknown {what} {name!r}; expected one of {sorted(table)} (aliases: {sorted(aliases)})")


@cache
def gpu(name: str) -> GpuSpec:
    """The catalog entry of GPU ``name`` (exact name or alias)."""
    key = _resolve(name, _load("gpus"), GPU_ALIASES, "GPU")
    e = _load("gpus")[key]
    return GpuSpec(key, e["peak_bf16_tflops"] * 1e12, e["hbm_tbps"] * 1e12, e["memory_gb"] * GB, e["interconnect"],
                   e["interconnect_gbps"] * GB, e["pcie_gbps"] * GB, float(e["price_per_hour"]),
                   e["efficiency_from"], e.get("source", ""))


@cache
def model(name: str) -> ModelSpec:
    """The catalog entry of model ``name`` (exact name or alias)."""
    key = _resolve(name, _load("models"), MODEL_ALIASES, "model")
    e = _load("models")[key]
    return ModelSpec(key, e["n_layers"], e["hidden_size"], e["n_heads"], e["n_kv_heads"], e["ffn_size"],
                     e["vocab_size"], bool(e["gated_mlp"]), e["max_context"], e["bytes_per_param"],
                     e.get("hf_id", ""), e.get("source", ""))


CUDA_CONTEXT_BYTES = 1.0 * GB  # CUDA context, NCCL buffers, CUDA graphs: vLLM's non-torch memory (typical)


def kv_plan(g: GpuSpec, m: ModelSpec, tp: int, *, block_size: int, gpu_memory_utilization: float,
            max_num_batched_tokens: int, max_num_seqs: int) -> tuple[int, dict[str, float]]:
    """KV-cache blocks of one instance, vLLM-style: utilisation x memory - weights - activations - context.

    Activations are the peak of one layer's intermediates for ``max_num_batched_tokens`` tokens plus fp32
    logits for ``max_num_seqs`` sequences (what vLLM's profiling run measures). Raises if the model does not
    fit, naming the numbers.
    """
    if tp < 1 or m.n_heads % tp or (m.n_kv_heads % tp and tp % m.n_kv_heads):
        raise ValueError(f"tensor-parallel degree {tp} must be >= 1 and divide {m.name}'s {m.n_heads} heads")
    usable = gpu_memory_utilization * g.memory_bytes
    weights = m.weight_bytes / tp
    h, f = m.hidden_size, m.ffn_size
    act = max_num_batched_tokens * (4 * h + 3 * f / tp) * m.bytes_per_param + max_num_seqs * m.vocab_size / tp * 4
    reserve = CUDA_CONTEXT_BYTES + act
    kv = usable - weights - reserve
    kv_heads_per_gpu = max(1, m.n_kv_heads // tp)  # replicated KV heads when tp > n_kv_heads
    block_bytes = 2.0 * m.n_layers * kv_heads_per_gpu * m.head_dim * m.bytes_per_param * block_size
    parts = {"usable_gb": usable / GB, "weights_gb": weights / GB, "reserve_gb": reserve / GB, "kv_gb": kv / GB}
    if kv < block_bytes:
        raise ValueError(
            f"model {m.name} does not fit GPU {g.name} at tensor-parallel {tp}: {gpu_memory_utilization:.2f} x "
            f"{g.memory_bytes / GB:.0f} GB = {usable / GB:.1f} GB usable per GPU, weights {weights / GB:.1f} GB + "
            f"activations/context {reserve / GB:.1f} GB leave {kv / GB:.2f} GB for the KV cache; expected a larger "
            f"GPU, a higher tensor-parallel degree, or a smaller max_num_batched_tokens")
    return int(math.floor(kv / block_bytes)), parts
