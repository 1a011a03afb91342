"""A Llama-style decoder-only transformer in plain torch with a paged KV cache.

RMSNorm, rotary position embeddings, grouped-query attention and a SwiGLU MLP, with seeded random weights
(the gym measures serving dynamics, not text quality). The KV cache is a pool of fixed-size blocks on the
device, ``(n_layers, num_blocks, block_size, n_kv_heads, head_dim)`` for keys and values; each sequence owns a
block table (list of block ids) and attention gathers its keys/values through it (``paged_attention``).
``dense_attention`` is the reference the tests compare against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from schedgym.config import resolve


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the transformer (Hugging Face ``config.json`` names in comments)."""

    n_layers: int = 2            # num_hidden_layers
    hidden_size: int = 64
    n_heads: int = 4             # num_attention_heads
    n_kv_heads: int = 2          # num_key_value_heads (GQA)
    ffn_size: int = 128          # intermediate_size (SwiGLU)
    vocab_size: int = 512
    max_context: int = 4096      # max_position_embeddings
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for f in ("n_layers", "hidden_size", "n_heads", "n_kv_heads", "ffn_size", "vocab_size", "max_context"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"ModelConfig.{f}={getattr(self, f)!r}: expected an integer >= 1")
        if self.hidden_size % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"ModelConfig: hidden_size ({self.hidden_size}) must be divisible by n_heads "
                             f"({self.n_heads}) and n_heads by n_kv_heads ({self.n_kv_heads})")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"ModelConfig.dtype={self.dtype!r}: expected 'float32', 'float16' or 'bfloat16'")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def n_params(self) -> int:
        h, d = self.hidden_size, self.head_dim
        layer = h * (self.n_heads + 2 * self.n_kv_heads) * d + self.n_heads * d * h + 3 * h * self.ffn_size + 2 * h
        return self.n_layers * layer + 2 * self.vocab_size * h + h

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_any(cls, spec: ModelConfig | str | dict[str, Any] | None) -> ModelConfig:
        """A config, a preset name (``PRESETS``) or a dict of fields (``None``: the tiny preset)."""
        return resolve(spec, cls, PRESETS, "model", default=PRESETS["tiny"])  # type: ignore[return-value]


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),                                                         # ~0.1 M params: tests
    "small": ModelConfig(4, 256, 8, 4, 688, 4096),                                 # ~5 M params: CPU figures
    "1b": ModelConfig(16, 2048, 32, 8, 8192, 32000, dtype="bfloat16"),             # ~1.1 B params: one GPU
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps) * self.weight).to(x.dtype)  # bf16 models stay bf16


def rope_tables(cfg: ModelConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (max_context, head_dim/2) for rotary embeddings."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
    t = torch.arange(cfg.max_context, device=device, dtype=torch.float32)
    ang = torch.outer(t, inv)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (T, heads, d) by per-token (T, d/2) angles (interleaved-halves convention of Llama in HF)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prior: int) -> torch.Tensor:
    """Reference causal attention of one sequence: q (Q, H, d) new tokens after ``prior`` cached ones,
    k/v (prior + Q, KVH, d). Returns (Q, H, d)."""
    Q, H, d = q.shape
    rep = H // k.shape[1]
    kk = k.repeat_interleave(rep, dim=1).float()
    vv = v.repeat_interleave(rep, dim=1).float()
    scores = torch.einsum("qhd,khd->hqk", q.float(), kk) / d ** 0.5
    qpos = prior + torch.arange(Q, device=q.device)
    kpos = torch.arange(k.shape[0], device=q.device)
    scores = scores.masked_fill(kpos[None, None, :] > qpos[None, :, None], float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), vv).to(q.dtype)


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                    context_lens: torch.Tensor, query_lens: torch.Tensor) -> torch.Tensor:
    """Causal attention for B sequences reading keys/values through their block tables.

    q: (B, Qmax, H, d) new-token queries (padded); k_cache/v_cache: (num_blocks, block_size, KVH, d) of one
    layer; block_tables: (B, max_blocks) int64 (padding entries may be any valid block id); context_lens: (B,)
    tokens in the cache including the new ones; query_lens: (B,) new tokens (the last ``query_lens`` of the
    context). Returns (B, Qmax, H, d); padded query rows are zero.
    """
    B, Qmax, H, d = q.shape
    bs, kvh = k_cache.shape[1], k_cache.shape[2]
    S = block_tables.shape[1] * bs
    k = k_cache[block_tables].reshape(B, S, kvh, d)
    v = v_cache[block_tables].reshape(B, S, kvh, d)
    rep = H // kvh
    # Grouped-query attention without materialising repeated heads: (B, KVH, rep, Q, S).
    qg = q.float().reshape(B, Qmax, kvh, rep, d).permute(0, 2, 3, 1, 4)
    scores = torch.einsum("bgrqd,bsgd->bgrqs", qg, k.float()) / d ** 0.5
    prior = (context_lens - query_lens)[:, None]                       # (B, 1)
    qpos = prior + torch.arange(Qmax, device=q.device)[None, :]         # (B, Q)
    kpos = torch.arange(S, device=q.device)
    valid = (kpos[None, None, :] <= qpos[:, :, None]) & (kpos[None, None, :] < context_lens[:, None, None])
    qvalid = torch.arange(Qmax, device=q.device)[None, :] < query_lens[:, None]
    valid = valid | ~qvalid[:, :, None]                                 # padded rows: attend anywhere (discarded)
    scores = scores.masked_fill(~valid[:, None, None], float("-inf"))
    out = torch.einsum("bgrqs,bsgd->bgrqd", scores.softmax(-1), v.float())
    out = out.permute(0, 3, 1, 2, 4).reshape(B, Qmax, H, d)
    return (out * qvalid[:, :, None, None]).to(q.dtype)


class KVPool:
    """The device block pool: keys and values ``(n_layers, num_blocks, block_size, n_kv_heads, head_dim)``."""

    def __init__(self, cfg: ModelConfig, num_blocks: int, block_size: int, device: torch.device) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"KV pool needs num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}")
        shape = (cfg.n_layers, num_blocks, block_size, cfg.n_kv_heads, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=cfg.torch_dtype, device=device)
        self.v = torch.zeros(shape, dtype=cfg.torch_dtype, device=device)
        self.num_blocks, self.block_size = num_blocks, block_size


@dataclass
class SeqBatch:
    """One iteration's work, flattened: the new tokens of every scheduled sequence.

    token_ids/positions: (T,) int64; slots: (T,) int64 flat cache slots (block * block_size + offset) where the
    new tokens' keys/values are written; per sequence (B,): query_lens, context_lens (after this iteration),
    block_tables (B, max_blocks).
    """

    token_ids: torch.Tensor
    positions: torch.Tensor
    slots: torch.Tensor
    query_lens: torch.Tensor
    context_lens: torch.Tensor
    block_tables: torch.Tensor
    groups: list[tuple[torch.Tensor, torch.Tensor, int]]


class Transformer(nn.Module):
    """The decoder; ``forward`` runs one engine iteration and returns the last-token logits per sequence."""

    def __init__(self, cfg: ModelConfig, seed: int = 0, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.cfg = cfg
        dev = torch.device(device)
        # Weights are drawn on the device itself (a 1B model drawn on one CPU thread takes tens of seconds), so
        # the same seed gives different values on CPU and CUDA; timing does not depend on them.
        g = torch.Generator(device=dev).manual_seed(int(seed))
        h, d, dt = cfg.hidden_size, cfg.head_dim, cfg.torch_dtype

        def w(*shape: int) -> nn.Parameter:
            return nn.Parameter((torch.randn(*shape, generator=g, device=dev) * shape[-1] ** -0.5).to(dt),
                                requires_grad=False)

        self.embed = w(cfg.vocab_size, h)
        self.layers = nn.ModuleList()
        for _ in range(cfg.n_layers):
            layer = nn.Module()
            layer.attn_norm = RMSNorm(h, cfg.norm_eps, dt)
            layer.wqkv = w((cfg.n_heads + 2 * cfg.n_kv_heads) * d, h)
            layer.wo = w(h, cfg.n_heads * d)
            layer.mlp_norm = RMSNorm(h, cfg.norm_eps, dt)
            layer.w_gate_up = w(2 * cfg.ffn_size, h)
            layer.w_down = w(h, cfg.ffn_size)
            self.layers.append(layer)
        self.norm = RMSNorm(h, cfg.norm_eps, dt)
        self.lm_head = w(cfg.vocab_size, h)
        self.to(dev)
        self.cos, self.sin = rope_tables(cfg, dev)
        self.device = dev

    @torch.inference_mode()
    def forward(self, batch: SeqBatch, pool: KVPool) -> torch.Tensor:  # type: ignore[override]
        cfg = self.cfg
        H, KVH, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        T = batch.token_ids.shape[0]
        cos, sin = self.cos[batch.positions], self.sin[batch.positions]
        x = self.embed[batch.token_ids]
        for li, layer in enumerate(self.layers):
            a = layer.attn_norm(x) @ layer.wqkv.T
            q, k, v = a.split([H * d, KVH * d, KVH * d], dim=-1)
            q = apply_rope(q.reshape(T, H, d), cos, sin)
            k = apply_rope(k.reshape(T, KVH, d), cos, sin)
            pool.k[li].view(-1, KVH, d)[batch.slots] = k
            pool.v[li].view(-1, KVH, d)[batch.slots] = v.reshape(T, KVH, d)
            o = torch.empty_like(q)
            for seqs, toks, width in batch.groups:
                o[toks] = paged_attention(q[toks], pool.k[li], pool.v[li], batch.block_tables[seqs, :width],
                                          batch.context_lens[seqs], batch.query_lens[seqs])
            x = x + o.reshape(T, H * d) @ layer.wo.T
            gu = layer.mlp_norm(x) @ layer.w_gate_up.T
            gate, up = gu.chunk(2, dim=-1)
            x = x + (torch.nn.functional.silu(gate) * up) @ layer.w_down.T
        last = torch.cumsum(batch.query_lens, 0) - 1
        return self.norm(x[last]) @ self.lm_head.T
