"""Per-iteration cost model of an LLM engine: how long one batch iteration takes. Written once, used
everywhere (simulator, validator, features, profiler checks).

Every cost model answers ``iteration_time(prefill_tokens, decode_tokens, kv_context_tokens)`` in seconds:

- ``prefill_tokens``: prompt tokens processed this iteration (the sum of the prefill chunks),
- ``decode_tokens``: sequences decoding one token each,
- ``kv_context_tokens``: KV-cache tokens the decoding sequences attend to (the sum of their contexts),
- keyword ``prefill_context_tokens``: KV tokens already cached for the sequences being prefilled (earlier
  chunks, prefix-cache hits), which the prefill attention reads;
- keyword ``prefill_attention_pairs``: sum over prefill chunks of ``c * (prior + (c + 1) / 2)`` (causal
  query-key pairs); the default is that of one sequence.

and ``decode_coefficients(batch) -> (alpha, beta)`` such that a decode-only iteration of ``batch`` sequences
with total context ``S`` takes ``alpha + beta * S``. That affine form is what lets the simulator skip over a
run of decode iterations in closed form.

Two implementations:

- ``RooflineCostModel``: per operator of a Llama-style layer, ``kernel overhead + (c**p + m**p)**(1/p)``
  with ``c`` = FLOPs / (efficiency x peak) and ``m`` = bytes / (efficiency x bandwidth) (a smoothed roofline;
  p -> inf is the classic max). Efficiency constants per GPU are fitted to Vidur's measured operator timings
  (``schedgym/data/serving/costmodel_fit.json``, produced by ``scripts/bench_costmodel.py --write``).
- ``TableCostModel``: a calibration table of measured iteration times (see ``load_calibration_table``)
  overriding the analytic model; the live backend's profiler writes these.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from schedgym.envs.serving.catalog import GpuSpec, ModelSpec
from schedgym.envs.serving.variability import (
    INTERFERENCE_KEY,
    OVERLAP_KEY,
    QUANTILES_KEY,
    WAKE_KEY,
    check_by_overlap,
    check_interference,
    check_quantiles,
)

# Engine CPU work per iteration (schedule, sample, detokenise): not in Vidur's GPU profiles, so not fitted.
DEFAULT_ITERATION_OVERHEAD_S = 1.0e-3


@runtime_checkable
class CostModel(Protocol):
    """What the simulator needs to know about how long work takes (the ``Backend`` contract)."""

    def iteration_time(self, prefill_tokens: int, decode_tokens: int, kv_context_tokens: int, *,
                       prefill_context_tokens: int = 0, prefill_attention_pairs: float | None = None) -> float: ...

    def decode_coefficients(self, batch: int) -> tuple[float, float]: ...


@dataclass(frozen=True)
class Efficiency:
    """Fitted constants of the smoothed roofline for one GPU (see module docstring)."""

    gemm_compute: float = 0.7          # fraction of peak FLOP/s reached by large GEMMs
    gemm_memory: float = 0.8           # fraction of HBM bandwidth reached streaming weights
    sharpness: float = 2.0             # p of the smoothed max (c**p + m**p) ** (1/p)
    kernel_overhead_s: float = 4e-6    # fixed cost per kernel
    norm_passes: float = 3.0           # RMSNorm traffic in units of (read + write) of the hidden state
    rope_passes: float = 3.0
    act_passes: float = 1.5
    add_passes: float = 1.0
    emb_passes: float = 1.0
    attn_compute: float = 0.3          # fraction of peak FLOP/s reached by prefill attention
    attn_memory: float = 0.7           # fraction of HBM bandwidth reached reading the KV cache
    attn_overhead_s: float = 1e-5
    reshape_passes: float = 1.0
    allreduce_latency_s: float = 1e-5
    allreduce_bw_factor: float = 0.7   # x catalog link bandwidth (may exceed 1: NVSwitch in-network reduction)

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> Efficiency:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown efficiency constants {bad}; expected a subset of {sorted(known)}")
        return cls(**{k: float(v) for k, v in d.items()})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@cache
def fitted_efficiency(gpu_name: str) -> Efficiency:
    """The shipped constants fitted for ``gpu_name`` (an A100/H100 profile; others borrow via the catalog)."""
    text = resources.files("schedgym.data").joinpath("serving/costmodel_fit.json").read_text()
    table = json.loads(text)["efficiency"]
    if gpu_name not in table:
        raise ValueError(f"no fitted efficiency constants for GPU {gpu_name!r}; expected one of {sorted(table)}")
    return Efficiency.from_dict(table[gpu_name])


def _smooth(c: Any, m: Any, p: float) -> Any:
    """(c**p + m**p) ** (1/p): a smooth maximum that works on floats and numpy arrays alike."""
    return (c ** p + m ** p) ** (1.0 / p)


class RooflineCostModel:
    """Analytic cost of one iteration of ``model`` on ``tp`` GPUs of type ``gpu`` (tensor parallel).

    The per-layer operators match the ones Vidur profiles, so each can be checked against measurements:
    ``linear_ops(T)`` (QKV/out projections, up/down MLP, norms, RoPE, activation, residual add),
    ``attention_decode(B, S)``, ``attention_prefill(P, prior, pairs)``, ``allreduce(bytes)``.
    """

    def __init__(self, gpu: GpuSpec, model: ModelSpec, tp: int = 1, efficiency: Efficiency | None = None,
                 iteration_overhead_s: float = DEFAULT_ITERATION_OVERHEAD_S) -> None:
        if tp < 1:
            raise ValueError(f"tensor-parallel degree must be >= 1, got {tp}")
        if iteration_overhead_s < 0:
            raise ValueError(f"iteration_overhead_s must be >= 0, got {iteration_overhead_s}")
        self.gpu, self.model, self.tp = gpu, model, int(tp)
        self.eff = efficiency if efficiency is not None else fitted_efficiency(gpu.efficiency_from)
        self.iteration_overhead_s = float(iteration_overhead_s)
        e, m = self.eff, model
        b = m.bytes_per_param
        self._flops = gpu.peak_flops * e.gemm_compute
        self._bw = gpu.hbm_bw * e.gemm_memory
        self._attn_flops = gpu.peak_flops * e.attn_compute
        self._attn_bw = gpu.hbm_bw * e.attn_memory
        h, d = m.hidden_size, m.head_dim
        self._nh = m.n_heads / tp                      # query heads per GPU
        self._nkv = max(1.0, m.n_kv_heads / tp)        # KV heads per GPU (replicated when tp > n_kv_heads)
        # GEMM shapes (K, N) per GPU, column/row parallel as in Megatron/vLLM.
        self._gemms = {
            "attn_pre_proj": (h, (self._nh + 2 * self._nkv) * d),
            "attn_post_proj": (self._nh * d, h),
            "mlp_up_proj": (h, (2 if m.gated_mlp else 1) * m.ffn_size / tp),
            "mlp_down_proj": (m.ffn_size / tp, h),
        }
        # Nominal bytes per token (one read + one write of the tensor) of the elementwise operators.
        self._elementwise = {
            "input_layernorm": (2 * h * b, e.norm_passes),
            "post_attention_layernorm": (2 * h * b, e.norm_passes),
            "attn_rope": (2 * (self._nh + self._nkv) * d * b, e.rope_passes),
            "mlp_act": (((3 if m.gated_mlp else 2) * m.ffn_size / tp) * b, e.act_passes),
            "add": (3 * h * b, e.add_passes),
        }
        self._kv_token_bytes = 2 * self._nkv * d * b      # per layer per GPU
        self._qo_token_bytes = 2 * self._nh * d * b
        self._attn_flops_per_pair = 4.0 * self._nh * d   # QK^T and PV, 2 FLOPs per multiply-add
        self._lin_cache: dict[int, float] = {}
        self._decode_cache: dict[int, tuple[float, float]] = {}
        self._prefill_cache: dict[tuple[int, int], float] = {}

    # ------------------------------------------------------------------ operators (one layer, one GPU)
    def gemm(self, tokens: Any, k: float, n: float) -> Any:
        e = self.eff
        c = 2.0 * tokens * k * n / self._flops
        mem = (k * n + tokens * (k + n)) * self.model.bytes_per_param / self._bw
        return e.kernel_overhead_s + _smooth(c, mem, e.sharpness)

    def linear_ops(self, tokens: Any) -> dict[str, Any]:
        """Time of each non-attention operator of one layer for ``tokens`` tokens (Vidur's mlp.csv ops)."""
        out = {name: self.gemm(tokens, k, n) for name, (k, n) in self._gemms.items()}
        for name, (per_token, passes) in self._elementwise.items():
            out[name] = self.eff.kernel_overhead_s + passes * tokens * per_token / self.gpu.hbm_bw
        return out

    def embedding(self, tokens: Any) -> Any:
        """Input embedding lookup (vocab-parallel: each GPU writes the full hidden state)."""
        return self.eff.kernel_overhead_s + self.eff.emb_passes * tokens * 2 * self.model.hidden_size * \
            self.model.bytes_per_param / self.gpu.hbm_bw

    def lm_head(self, sequences: Any) -> Any:
        """Logits for the last token of each sequence."""
        return self.gemm(sequences, self.model.hidden_size, self.model.vocab_size / self.tp)

    def attention_decode(self, batch: Any, context_tokens: Any) -> Any:
        """Paged decode attention of ``batch`` sequences over ``context_tokens`` KV tokens in total."""
        e = self.eff
        c = self._attn_flops_per_pair * context_tokens / self._attn_flops
        m = context_tokens * self._kv_token_bytes / self._attn_bw
        reshape = e.reshape_passes * batch * self._qo_token_bytes / self.gpu.hbm_bw
        return e.attn_overhead_s + _smooth(c, m, e.sharpness) + reshape

    def attention_prefill(self, tokens: Any, prior_tokens: Any, pairs: Any) -> Any:
        """Causal attention of ``tokens`` new tokens (``pairs`` query-key pairs) reading ``prior_tokens`` of KV."""
        e = self.eff
        c = self._attn_flops_per_pair * pairs / self._attn_flops
        m = ((tokens + prior_tokens) * self._kv_token_bytes + tokens * self._qo_token_bytes) / self._attn_bw
        reshape = e.reshape_passes * tokens * self._qo_token_bytes / self.gpu.hbm_bw
        return e.attn_overhead_s + _smooth(c, m, e.sharpness) + reshape

    def allreduce(self, nbytes: Any) -> Any:
        """Ring all-reduce of ``nbytes`` over the instance's ``tp`` GPUs (0 when tp == 1)."""
        if self.tp == 1:
            return 0.0 * nbytes
        e, n = self.eff, self.tp
        return e.allreduce_latency_s + 2.0 * (n - 1) / n * nbytes / (self.gpu.interconnect_bw * e.allreduce_bw_factor)

    # ------------------------------------------------------------------ whole iterations
    def dense_time(self, tokens: int) -> float:
        """Everything whose cost depends only on the token count: layers' linear ops, all-reduces, embedding."""
        t = self._lin_cache.get(tokens)
        if t is None:
            ops = self.linear_ops(float(tokens))
            ar = 2.0 * self.allreduce(float(tokens) * self.model.hidden_size * self.model.bytes_per_param)
            t = self.model.n_layers * (sum(ops.values()) + ar) + self.embedding(float(tokens))
            self._lin_cache[tokens] = t
        return t

    def iteration_time(self, prefill_tokens: int, decode_tokens: int, kv_context_tokens: int, *,
                       prefill_context_tokens: int = 0, prefill_attention_pairs: float | None = None) -> float:
        """Seconds for one engine iteration (see the module docstring for the arguments)."""
        P, D = prefill_tokens, decode_tokens
        if P < 0 or D < 0 or kv_context_tokens < 0 or prefill_context_tokens < 0:
            raise ValueError(f"token counts must be >= 0, got prefill={P} decode={D} kv={kv_context_tokens} "
                             f"prefill_context={prefill_context_tokens}")
        if P + D == 0:
            return 0.0
        attn = 0.0
        seqs = D
        if D:
            attn += self.attention_decode(D, kv_context_tokens)
        if P:
            pairs = prefill_attention_pairs
            if pairs is None:
                pairs = P * (prefill_context_tokens + (P + 1) / 2.0)
            attn += self.attention_prefill(P, prefill_context_tokens, pairs)
            seqs += 1
        return (self.dense_time(P + D) + self.model.n_layers * attn + self.lm_head(seqs)
                + self.iteration_overhead_s)

    def decode_coefficients(self, batch: int) -> tuple[float, float]:
        """(alpha, beta): a decode-only iteration of ``batch`` sequences over ``S`` context takes alpha + beta*S."""
        co = self._decode_cache.get(batch)
        if co is None:
            e = self.eff
            L = self.model.n_layers
            beta = L * _smooth(self._attn_flops_per_pair / self._attn_flops, self._kv_token_bytes / self._attn_bw,
                               e.sharpness)
            reshape = e.reshape_passes * batch * self._qo_token_bytes / self.gpu.hbm_bw
            alpha = self.dense_time(batch) + L * (e.attn_overhead_s + reshape) + self.lm_head(batch) + \
                self.iteration_overhead_s
            co = (float(alpha), float(beta))
            self._decode_cache[batch] = co
        return co

    def prefill_time(self, prompt_tokens: int, cached_tokens: int = 0) -> float:
        """One prompt prefilled alone (the lower bound on its time to first token); memoised."""
        key = (prompt_tokens, cached_tokens)
        t = self._prefill_cache.get(key)
        if t is None:
            t = self._prefill_cache[key] = self.iteration_time(prompt_tokens - cached_tokens, 0, 0,
                                                               prefill_context_tokens=cached_tokens)
        return t


# ---------------------------------------------------------------------------------------------- tables
CALIBRATION_COLUMNS = ("prefill_tokens", "decode_tokens", "kv_context_tokens", "time_s")
CALIBRATION_SCHEMA = "schedgym.calibration/v1"


@dataclass(frozen=True)
class CalibrationTable:
    """Measured iteration times over a grid of batch shapes (one instance type).

    Schema (CSV with a header, or JSON ``{"schema": "schedgym.calibration/v1", "gpu": ..., "model": ...,
    "tp": ..., "rows": [{column: value}, ...]}``), one row per measured shape:

    - ``prefill_tokens`` (int >= 0), ``decode_tokens`` (int >= 0, at least one of the two > 0),
    - ``kv_context_tokens`` (int >= 0): total KV context of the decoding sequences,
    - ``time_s`` (float > 0): measured wall time of the iteration (median of repeats).

    Other columns (``repeats``, ``std_s``, ...) are allowed and ignored. Optional top-level
    ``attention_pair_s`` (JSON, >= 0): seconds per causal query-key pair of prefill attention. The rows time
    one fresh prompt of ``prefill_tokens`` tokens; an iteration whose prefill chunks have a different number
    of pairs (several shorter prompts, or chunks after cached context) is corrected by this rate times the
    difference. The (prefill, decode) pairs must form a full grid; at each grid node the time is fitted as
    ``a + b * kv_context_tokens`` by least squares over its rows (attention cost is linear in the KV read),
    and ``a``, ``b`` are interpolated bilinearly between nodes (``a`` made non-decreasing along both axes first:
    more work never costs less, whatever the noise of one node). Outside the grid they are extrapolated along
    the edge segment's slope clamped at >= 0 (more prefill tokens or decode sequences never cost less; a
    noisy last segment that falls would otherwise drive the time towards zero or below far past the grid,
    e.g. decode batches of 256 from a grid that ends at 64), and never below 0.
    """

    prefill: np.ndarray   # (NP,) sorted distinct prefill_tokens
    decode: np.ndarray    # (ND,) sorted distinct decode_tokens
    a: np.ndarray         # (NP, ND) seconds
    b: np.ndarray         # (NP, ND) seconds per KV-context token
    meta: dict[str, Any]


def _row_error(src: str, i: int, msg: str) -> ValueError:
    return ValueError(f"{src}: row {i}: {msg}")


def load_calibration_table(path: str | Path) -> CalibrationTable:
    """Read and check a calibration table (CSV or JSON); errors name the file, row and column."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"calibration table {p} does not exist")
    meta: dict[str, Any] = {"path": str(p)}
    if p.suffix.lower() == ".json":
        doc = json.loads(p.read_text())
        ok = isinstance(doc, dict) and doc.get("schema") == CALIBRATION_SCHEMA and isinstance(doc.get("rows"), list)
        if not ok:
            raise ValueError(f"{p}: expected a JSON object with schema={CALIBRATION_SCHEMA!r} and a 'rows' list")
        rows = doc["rows"]
        meta.update({k: v for k, v in doc.items() if k != "rows"})
        first = 0
    else:
        with p.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CALIBRATION_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{p}: missing column(s) {missing}; expected {list(CALIBRATION_COLUMNS)}")
            rows = list(reader)
        first = 2  # header is line 1
    return calibration_from_rows(rows, str(p), first_line=first, meta=meta)


def calibration_from_rows(rows: list[dict[str, Any]], src: str = "calibration table", first_line: int = 0,
                          meta: dict[str, Any] | None = None) -> CalibrationTable:
    """Build a ``CalibrationTable`` from row dicts (see ``CalibrationTable`` for the schema)."""
    if not rows:
        raise ValueError(f"{src}: no rows")
    P, D, K, T = [], [], [], []
    for i, r in enumerate(rows):
        line = i + first_line
        for c in CALIBRATION_COLUMNS:
            if c not in r or r[c] in (None, ""):
                raise _row_error(src, line, f"missing value for column {c!r}")
        try:
            p, d, k = (int(float(r[c])) for c in CALIBRATION_COLUMNS[:3])
            t = float(r["time_s"])
            if any(float(r[c]) != int(float(r[c])) for c in CALIBRATION_COLUMNS[:3]):
                raise ValueError
        except (TypeError, ValueError):
            raise _row_error(src, line, f"token columns must be integers and time_s a number, got "
                                        f"{ {c: r[c] for c in CALIBRATION_COLUMNS} }") from None
        if p < 0 or d < 0 or k < 0 or p + d == 0:
            raise _row_error(src, line, f"expected prefill_tokens, decode_tokens, kv_context_tokens >= 0 and "
                                        f"prefill + decode > 0, got {p}, {d}, {k}")
        if not (t > 0 and math.isfinite(t)):
            raise _row_error(src, line, f"time_s must be a finite number > 0, got {r['time_s']!r}")
        P.append(p), D.append(d), K.append(k), T.append(t)
    P_, D_, K_, T_ = (np.asarray(x) for x in (P, D, K, T))
    ps, ds = np.unique(P_), np.unique(D_)
    a = np.full((ps.size, ds.size), np.nan)
    b = np.zeros((ps.size, ds.size))
    missing = []
    for i, pv in enumerate(ps):
        for j, dv in enumerate(ds):
            sel = (P_ == pv) & (D_ == dv)
            if not sel.any():
                if pv + dv > 0:
                    missing.append((int(pv), int(dv)))
                continue
            k, t = K_[sel].astype(float), T_[sel]
            if np.unique(k).size >= 2:
                b[i, j], a[i, j] = np.polyfit(k, t, 1)
            else:
                a[i, j] = t.mean()
    if missing:
        raise ValueError(f"{src}: (prefill_tokens, decode_tokens) must form a full grid; missing {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}")
    if ps.size < 2 or ds.size < 2:
        raise ValueError(f"{src}: the grid needs at least 2 distinct prefill_tokens and 2 distinct decode_tokens "
                         f"values, got {ps.tolist()} and {ds.tolist()}")
    # The (0, 0) node is never measured (no work, no iteration) but anchors the interpolation below the first
    # prefill node at D = 0 and below the first decode node at P = 0: it takes the cheaper neighbour's fixed
    # cost (the smallest iteration still pays the fixed per-iteration cost; a linear extrapolation
    # a[1,0] + a[0,1] - a[1,1] went to 0 or below and made a 3-token prefill free when the grid's first
    # prefill node was 8).
    if ps[0] == 0 and ds[0] == 0:
        a[0, 0] = min(a[1, 0], a[0, 1])
        b[0, 0] = max(min(b[1, 0], b[0, 1]), 0.0)
    # More prefill tokens or more decode sequences never cost less: a noisy node (a 1-token prefill measured
    # slower than a 16-token one while the machine was busy) would otherwise make a batch cheaper than one of
    # its prompts alone. Running maximum of the fixed cost along both axes.
    a = np.maximum.accumulate(np.maximum.accumulate(a, axis=0), axis=1)
    return CalibrationTable(ps.astype(float), ds.astype(float), a, b, dict(meta or {}))


def _lerp(grid: np.ndarray, v0: float, v1: float, i: int, x: float) -> float:
    """Value at ``x`` on the segment from ``(grid[i], v0)`` to ``(grid[i+1], v1)``; outside the grid the edge
    segment's slope is clamped at >= 0 (costs never fall with more work) and the result at >= 0."""
    w = (x - grid[i]) / (grid[i + 1] - grid[i])
    if 0.0 <= w <= 1.0:
        return (1.0 - w) * v0 + w * v1
    slope = max(v1 - v0, 0.0)
    return max(v1 + slope * (w - 1.0) if w > 1.0 else v0 + slope * w, 0.0)


def _cell(grid: np.ndarray, x: float) -> int:
    """Index i of the grid cell [grid[i], grid[i+1]] holding ``x`` (the edge cell when outside)."""
    i = int(np.searchsorted(grid, x, side="right")) - 1
    return min(max(i, 0), grid.size - 2)


class TableCostModel:
    """Iteration times from a ``CalibrationTable`` (the calibration override of the analytic model)."""

    def __init__(self, table: CalibrationTable) -> None:
        self.table = table
        self._decode_cache: dict[int, tuple[float, float]] = {}
        rate = table.meta.get("attention_pair_s", 0.0)
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate >= 0):
            raise ValueError(f"{table.meta.get('path', 'calibration table')}: attention_pair_s must be a finite "
                             f"number >= 0, got {rate!r}")
        self.pair_s = float(rate)
        # Measured interference and iteration-time ratios (``variability.py``), if fitted to a live run.
        src = table.meta.get("path", "calibration table")
        q, s = table.meta.get(QUANTILES_KEY), table.meta.get(INTERFERENCE_KEY)
        self.ratio_quantiles = None if q is None else check_quantiles(q, src)
        self.interference = None if s is None else check_interference(s, src)
        bo = table.meta.get(OVERLAP_KEY)
        self.ratio_quantiles_by_overlap = None if bo is None else check_by_overlap(bo, src)
        wq = table.meta.get(WAKE_KEY)
        self.wake_quantiles = None if wq is None else check_quantiles(wq, src, WAKE_KEY)
        # No iteration is faster than the fastest measured one (bounds the attention-pair correction).
        self._floor = float(min(np.nanmin(table.a[1:, :]), np.nanmin(table.a[:, 1:])))
        # Prefill-only times at the prefill nodes, running maximum: ``_alone_bound`` below.
        nodes = [max(self._ab(float(p), 0.0)[0], 0.0) for p in table.prefill]
        self._pre_max = np.maximum.accumulate(np.array(nodes))

    def _ab(self, prefill: float, decode: float) -> tuple[float, float]:
        """Bilinear inside the grid: along the decode axis at the two neighbouring prefill rows, then along
        the prefill axis (each step extrapolates with a clamped slope, ``_lerp``)."""
        t = self.table
        i, j = _cell(t.prefill, prefill), _cell(t.decode, decode)
        out = []
        for m in (t.a, t.b):
            lo = _lerp(t.decode, m[i, j], m[i, j + 1], j, decode)
            hi = _lerp(t.decode, m[i + 1, j], m[i + 1, j + 1], j, decode)
            out.append(_lerp(t.prefill, lo, hi, i, prefill))
        return float(out[0]), float(out[1])

    def iteration_time(self, prefill_tokens: int, decode_tokens: int, kv_context_tokens: int, *,
                       prefill_context_tokens: int = 0, prefill_attention_pairs: float | None = None) -> float:
        """Interpolated measured time; prior prefill context is charged like decode context (a KV read), and
        attention pairs other than one fresh prompt's at ``attention_pair_s`` each (class docstring)."""
        if prefill_tokens + decode_tokens == 0:
            return 0.0
        a, b = self._ab(prefill_tokens, decode_tokens)
        t = max(a + b * (kv_context_tokens + prefill_context_tokens), 0.0)
        if self.pair_s and prefill_tokens and prefill_attention_pairs is not None:
            single = prefill_tokens * (prefill_tokens + 1) / 2.0
            corrected = t + self.pair_s * (prefill_attention_pairs - single)
            t = max(corrected, min(t, max(self._floor, self._alone_bound(prefill_attention_pairs))))
        return t

    def _alone_bound(self, pairs: float) -> float:
        """The most a batch with ``pairs`` attention pairs may be undercut to: the table's time for the longest
        prompt that has at most that many pairs (every prompt in the batch is at most that long), taken as a
        running maximum over the prefill axis. A batch is never faster than prefilling one of its prompts
        alone — the validator's TTFT lower bound; the linear per-pair correction alone broke it on the H100
        1b table (interpolated single-prompt times are not quadratic between grid nodes)."""
        q = (math.sqrt(8.0 * pairs + 1.0) - 1.0) / 2.0
        t = self.table
        i = int(np.searchsorted(t.prefill, q, side="right")) - 1
        at_q = max(self._ab(q, 0.0)[0], 0.0)
        return float(max(at_q, self._pre_max[i])) if i >= 0 else at_q

    def decode_coefficients(self, batch: int) -> tuple[float, float]:
        co = self._decode_cache.get(batch)
        if co is None:
            co = self._decode_cache[batch] = self._ab(0.0, float(batch))
        return co

    def prefill_time(self, prompt_tokens: int, cached_tokens: int = 0) -> float:
        return self.iteration_time(prompt_tokens - cached_tokens, 0, 0, prefill_context_tokens=cached_tokens)
