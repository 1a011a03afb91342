"""Trace loaders: Azure LLM inference 2023 (CSV), Mooncake (JSONL), ShareGPT length statistics (CSV).

Every malformed row raises a ``ValueError`` naming the file, the line and the field, with the expected
form; nothing is dropped, clamped or reordered. Shipped traces are read lazily from
``schedgym/data/serving/traces`` (byte-identical copies, see the README there).
"""

from __future__ import annotations

import csv
import io
import json
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from schedgym.envs.serving.types import ServingWorkload

TRACES = {
    "azure-conv-2023": ("AzureLLMInferenceTrace_conv.csv", "azure"),
    "azure-code-2023": ("AzureLLMInferenceTrace_code.csv", "azure"),
    "mooncake-conversation": ("mooncake_conversation_trace.jsonl", "mooncake"),
    "mooncake-synthetic": ("mooncake_synthetic_trace.jsonl", "mooncake"),
}
SHAREGPT = "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")
SHAREGPT_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


def _tokens(src: str, line: int, field: str, value: object) -> int:
    """A token count >= 1 from a CSV/JSON field, or an error naming where and what was expected."""
    try:
        f = float(value)  # type: ignore[arg-type]
        ok = np.isfinite(f) and f == int(f)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{src}: line {line}: field {field!r} = {value!r}: expected an integer token count >= 1")
    if int(f) < 1:
        raise ValueError(f"{src}: line {line}: field {field!r} = {value!r}: expected a token count >= 1")
    return int(f)


def _check_sorted(src: str, times: np.ndarray, first_line: int) -> None:
    bad = np.flatnonzero(np.diff(times) < 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(f"{src}: line {i + first_line}: timestamp goes backwards ({times[i]} after {times[i - 1]}); "
                         "expected rows sorted by arrival time")


def parse_azure(text: str, src: str, name: str) -> ServingWorkload:
    """Azure LLM inference trace 2023: ``TIMESTAMP`` (absolute), ``ContextTokens``, ``GeneratedTokens``."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in AZURE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{src}: missing column(s) {missing}; expected columns {list(AZURE_COLUMNS)}")
    stamps, prompt, output = [], [], []
    for i, row in enumerate(reader):
        line = i + 2
        ts = row.get("TIMESTAMP")
        if not ts:
            raise ValueError(f"{src}: line {line}: field 'TIMESTAMP' is empty; expected e.g. 2023-11-16 18:15:46.68")
        try:
            stamps.append(np.datetime64(ts.strip().replace(" ", "T"), "ns"))
        except ValueError:
            raise ValueError(f"{src}: line {line}: field 'TIMESTAMP' = {ts!r}: "
                             "expected 'YYYY-MM-DD HH:MM:SS.fff'") from None
        prompt.append(_tokens(src, line, "ContextTokens", row.get("ContextTokens")))
        output.append(_tokens(src, line, "GeneratedTokens", row.get("GeneratedTokens")))
    if not stamps:
        raise ValueError(f"{src}: no rows")
    ns = np.array(stamps, dtype="datetime64[ns]").astype(np.int64)
    t = (ns - ns[0]) / 1e9
    _check_sorted(src, t, 2)
    return ServingWorkload(name, t, np.array(prompt), np.array(output), source=src)


def parse_mooncake(text: str, src: str, name: str) -> ServingWorkload:
    """Mooncake FAST'25 JSONL: ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids``
    (512-token prefix blocks)."""
    times, prompt, output, hashes, offsets = [], [], [], [], [0]
    for i, raw in enumerate(text.splitlines()):
        line = i + 1
        if not raw.strip():
            raise ValueError(f"{src}: line {line}: empty line; expected one JSON object per line")
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{src}: line {line}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{src}: line {line}: expected a JSON object with {list(MOONCAKE_FIELDS)}")
        for f in MOONCAKE_FIELDS:
            if f not in obj:
                raise ValueError(f"{src}: line {line}: missing field {f!r}; "
                                 f"expected {list(MOONCAKE_FIELDS) + ['hash_ids']}")
        ts = obj["timestamp"]
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not np.isfinite(ts) or ts < 0:
            raise ValueError(f"{src}: line {line}: field 'timestamp' = {ts!r}: expected milliseconds >= 0")
        times.append(float(ts) / 1000.0)
        prompt.append(_tokens(src, line, "input_length", obj["input_length"]))
        output.append(_tokens(src, line, "output_length", obj["output_length"]))
        h = obj.get("hash_ids", [])
        if not isinstance(h, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in h):
            raise ValueError(f"{src}: line {line}: field 'hash_ids' must be a list of integers")
        hashes.extend(h)
        offsets.append(len(hashes))
    if not times:
        raise ValueError(f"{src}: no rows")
    t = np.array(times)
    _check_sorted(src, t, 1)
    return ServingWorkload(name, t - t[0], np.array(prompt), np.array(output), None,
                           np.array(hashes, np.int64), np.array(offsets, np.int64), 512, src)


def parse_sharegpt(text: str, src: str) -> tuple[np.ndarray, np.ndarray]:
    """ShareGPT length statistics: (prompt tokens, output tokens) per conversation turn (no timestamps)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in SHAREGPT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{src}: missing column(s) {missing}; expected columns {list(SHAREGPT_COLUMNS)}")
    p, o = [], []
    for i, row in enumerate(reader):
        p.append(_tokens(src, i + 2, "num_prefill_tokens", row.get("num_prefill_tokens")))
        o.append(_tokens(src, i + 2, "num_decode_tokens", row.get("num_decode_tokens")))
    if not p:
        raise ValueError(f"{src}: no rows")
    return np.array(p, np.int64), np.array(o, np.int64)


def _shipped(filename: str) -> str:
    return resources.files("schedgym.data").joinpath(f"serving/traces/{filename}").read_text()


@cache
def load_trace(name: str) -> ServingWorkload:
    """A shipped trace by name (``TRACES``), whole, times starting at 0."""
    if name not in TRACES:
        raise ValueError(f"unknown trace {name!r}; expected one of {sorted(TRACES)}")
    filename, kind = TRACES[name]
    src = f"schedgym/data/serving/traces/{filename}"
    parse = parse_azure if kind == "azure" else parse_mooncake
    return parse(_shipped(filename), src, name)


@cache
def load_sharegpt() -> tuple[np.ndarray, np.ndarray]:
    """The shipped ShareGPT length statistics (read-only arrays)."""
    p, o = parse_sharegpt(_shipped(SHAREGPT), f"schedgym/data/serving/traces/{SHAREGPT}")
    p.flags.writeable = False
    o.flags.writeable = False
    return p, o


def load_trace_file(path: str) -> ServingWorkload:
    """A trace file in one of the shipped formats, detected by extension and header (for ``--instances``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"trace file {p} does not exist")
    text = p.read_text()
    if p.suffix.lower() == ".jsonl":
        return parse_mooncake(text, str(p), p.stem)
    header = text.split("\n", 1)[0]
    if "TIMESTAMP" in header or "ContextTokens" in header:
        return parse_azure(text, str(p), p.stem)
    raise ValueError(f"{p}: unrecognised trace format; expected an Azure-style CSV with columns "
                     f"{list(AZURE_COLUMNS)} or a Mooncake-style .jsonl with fields {list(MOONCAKE_FIELDS)}")
