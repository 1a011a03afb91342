"""Live backend on CPU with the tiny model: paged attention, the engine's scheduler and exact token counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests_live_helpers import DEVICE

from schedgym.envs.serving.types import END_FINISH, END_RECOMPUTE, END_SWAP_OUT, START_PREFILL
from schedgym.hwbackend.engine import LiveEngine
from schedgym.hwbackend.model import KVPool, ModelConfig, SeqBatch, Transformer, dense_attention, paged_attention

torch.set_num_threads(1)


def test_paged_attention_equals_dense() -> None:
    g = torch.Generator().manual_seed(0)
    H, KVH, d, bs, nblocks = 4, 2, 8, 4, 64
    kc = torch.randn(nblocks, bs, KVH, d, generator=g).to(DEVICE)
    vc = torch.randn(nblocks, bs, KVH, d, generator=g).to(DEVICE)
    perm = torch.randperm(nblocks, generator=g)
    ctx = [13, 5, 9]
    qlen = [4, 1, 9]
    tables = torch.zeros(3, 4, dtype=torch.long)
    used = 0
    for b, c in enumerate(ctx):
        n = -(-c // bs)
        tables[b, :n] = perm[used:used + n]
        used += n
    q = torch.randn(3, 9, H, d, generator=g).to(DEVICE)
    tables = tables.to(DEVICE)
    out = paged_attention(q, kc, vc, tables, torch.tensor(ctx, device=DEVICE), torch.tensor(qlen, device=DEVICE))
    for b, (c, ql) in enumerate(zip(ctx, qlen)):
        k = kc[tables[b]].reshape(-1, KVH, d)[:c]
        v = vc[tables[b]].reshape(-1, KVH, d)[:c]
        ref = dense_attention(q[b, :ql], k, v, c - ql)
        torch.testing.assert_close(out[b, :ql], ref, rtol=1e-5, atol=1e-5)
        assert torch.count_nonzero(out[b, ql:]) == 0


def _dense_forward(model: Transformer, ids: list[int]) -> torch.Tensor:
    """Whole-sequence forward with dense attention (no cache): logits of every position."""
    cfg = model.cfg
    H, KVH, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    from schedgym.hwbackend.model import apply_rope
    pos = torch.arange(len(ids), device=model.device)
    x = model.embed[torch.tensor(ids, device=model.device)]
    for layer in model.layers:
        a = layer.attn_norm(x) @ layer.wqkv.T
        q, k, v = a.split([H * d, KVH * d, KVH * d], dim=-1)
        q = apply_rope(q.reshape(-1, H, d), model.cos[pos], model.sin[pos])
        k = apply_rope(k.reshape(-1, KVH, d), model.cos[pos], model.sin[pos])
        o = dense_attention(q, k, v.reshape(-1, KVH, d), 0)
        x = x + o.reshape(len(ids), -1) @ layer.wo.T
        gate, up = (layer.mlp_norm(x) @ layer.w_gate_up.T).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ layer.w_down.T
    return model.norm(x) @ model.lm_head.T


def test_engine_greedy_tokens_match_dense_model() -> None:
    """Paged, batched, chunked generation produces the same greedy tokens as a dense no-cache forward."""
    eng = LiveEngine("tiny", {"block_size": 4, "chunked_prefill": True, "max_num_batched_tokens": 8,
                              "max_num_seqs": 4}, num_blocks=64, context_limit=256, device=DEVICE)
    lens = [(11, 6), (3, 5), (7, 1)]
    for r, (p, o) in enumerate(lens):
        eng.submit(r, p, o)
    seqs = {s.rid: s for s in eng.waiting}
    eng.run_until_idle()
    for r, (p, o) in enumerate(lens):
        s = seqs[r]
        assert len(s.generated) == o
        ids = s.prompt.tolist()
        with torch.inference_mode():
            for _ in range(o):
                ids.append(int(_dense_forward(eng.model, ids)[-1].argmax()))
        assert ids[p:] == s.generated


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
@pytest.mark.parametrize("chunked", [False, True])
def test_engine_exact_tokens_and_preemption(chunked: bool, preemption: str) -> None:
    """Every request produces exactly its output length, also when a small cache forces recompute or swap —
    and the same greedy tokens as on a cache large enough never to preempt (swapped KV comes back intact)."""
    rng = np.random.default_rng(1)
    P = rng.integers(1, 30, 12)
    OUT = rng.integers(1, 30, 12)
    cfg = {"block_size": 4, "chunked_prefill": chunked, "max_num_batched_tokens": 64, "max_num_seqs": 8,
           "watermark": 0.0, "preemption": preemption}
    engines = [LiveEngine("tiny", cfg, num_blocks=nb, context_limit=64, device=DEVICE) for nb in (24, 512)]
    tokens = []
    for e in engines:
        for r in range(12):
            e.submit(r, int(P[r]), int(OUT[r]))
        seqs = list(e.waiting)
        e.run_until_idle()
        tokens.append({s.rid: s.generated for s in seqs})
    eng, big = engines
    assert sorted(eng.finished) == list(range(12))
    assert len(eng.free_blocks) == eng.num_blocks
    assert eng.host_free == eng.host_blocks and not eng.swapped
    kinds = [x[7] for x in eng.res_log]
    assert kinds.count(END_FINISH) == 12
    forced = END_SWAP_OUT if preemption == "swap" else END_RECOMPUTE
    assert kinds.count(forced) > 0, "the undersized cache should force preemption"
    assert [x[7] for x in big.res_log].count(END_FINISH) == 12 and len(big.res_log) == 12
    assert tokens[0] == tokens[1]
    # Tokens: one per prefill completion plus one per decode iteration while decoding (swap-ins add none).
    seg_end = np.array([s[2] for s in eng.seg_log])
    dec = np.cumsum([s[4] for s in eng.seg_log])
    for r in range(12):
        n = 0
        for (q, _a, start, end, _kv, _c, start_kind, _ek) in eng.res_log:
            if q == r:  # a prefill's completion yields a token; a swap-in resumes decoding
                n += int(start_kind == START_PREFILL) + int(dec[np.searchsorted(seg_end, end, "right") - 1]) - \
                    int(dec[np.searchsorted(seg_end, start, "right") - 1])
        assert n == OUT[r]
    assert all(t1 > t0 for _, t0, t1, *_ in eng.seg_log)


def test_engine_bad_request_errors() -> None:
    eng = LiveEngine("tiny", None, num_blocks=8, context_limit=32, device=DEVICE)
    with pytest.raises(ValueError, match="context limit 32"):
        eng.submit(0, 30, 5)
    with pytest.raises(ValueError, match="output_tokens"):
        eng.submit(0, 3, 0)
    with pytest.raises(ValueError, match="prefix_caching"):
        LiveEngine("tiny", {"prefix_caching": True}, num_blocks=8)
    with pytest.raises(ValueError, match="unknown model preset"):
        ModelConfig.from_any("huge")


def test_batch_shapes_unused_imports_guard() -> None:
    # KVPool and SeqBatch are the public surface the profiler uses.
    pool = KVPool(ModelConfig(), 4, 2, torch.device(DEVICE))
    assert pool.k.shape == (2, 4, 2, 2, 16)
    assert SeqBatch.__dataclass_fields__.keys() >= {"token_ids", "groups"}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_engine_generates_exact_tokens(dtype: str) -> None:
    """The GPU presets are bf16: every layer (norms included) runs in the model dtype, tokens are exact."""
    if dtype == "float16" and DEVICE == "cpu":
        pytest.skip("float16 matmul is a GPU dtype")
    eng = LiveEngine({"dtype": dtype}, {"block_size": 4, "chunked_prefill": True, "max_num_batched_tokens": 16},
                     num_blocks=64, context_limit=128, device=DEVICE)
    assert {p.dtype for p in eng.model.parameters()} == {getattr(torch, dtype)}
    for r, (p, o) in enumerate([(20, 5), (7, 3), (1, 9)]):
        eng.submit(r, p, o)
    eng.run_until_idle()
    assert sorted(eng.finished) == [0, 1, 2]
    assert [len(s) for s in (eng.waiting, eng.prefilling, eng.running)] == [0, 0, 0]
    assert len(eng.free_blocks) == eng.num_blocks


def test_engine_bf16_model_runs() -> None:
    """bf16 weights (the GPU presets) keep every activation in bf16: found on the first H100 run."""
    cfg = {"n_layers": 2, "hidden_size": 64, "n_heads": 4, "n_kv_heads": 2, "ffn_size": 128, "vocab_size": 256,
           "dtype": "bfloat16"}
    eng = LiveEngine(cfg, {"max_num_seqs": 8}, num_blocks=64, context_limit=256, device=DEVICE)
    for r in range(5):
        eng.submit(r, 20 + r, 5)
    eng.run_until_idle()
    assert sorted(eng.finished) == list(range(5))
    assert [x[7] for x in eng.res_log].count(END_FINISH) == 5
    assert eng.model.embed.dtype == torch.bfloat16
