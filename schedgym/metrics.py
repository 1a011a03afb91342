"""Metrics shared by every domain: gaps to reference values and per-policy summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def gap_percent(value: float, reference: float) -> float:
    """100 * (value - reference) / reference."""
    if reference <= 0:
        raise ValueError(f"reference must be > 0 for a gap, got {reference}")
    return 100.0 * (value - reference) / reference


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; nan for no values."""
    return float(np.percentile(np.asarray(values, float), q)) if len(values) else float("nan")


def summarize(rows: Sequence[dict[str, Any]], metric: str | None = None) -> list[dict[str, Any]]:
    """One row per policy (first-seen order): runs, mean of ``metric`` (default: gap_pct when present,
    else the first objective), and mean wall time."""
    if not rows:
        return []
    if metric is None:
        metric = "gap_pct" if all("gap_pct" in r for r in rows) else _first_objective(rows[0])
    out = []
    for pol in dict.fromkeys(r["policy"] for r in rows):
        sel = [r for r in rows if r["policy"] == pol]
        vals = [float(r[metric]) for r in sel]
        out.append({"policy": pol, "runs": len(sel), f"mean_{metric}": float(np.mean(vals)),
                    f"max_{metric}": float(np.max(vals)), "mean_wall_s": float(np.mean([r["wall_s"] for r in sel]))})
    return out


def _first_objective(row: dict[str, Any]) -> str:
    skip = {"env_id", "dataset", "instance", "policy", "seed", "steps", "invalid_actions", "wall_s", "schedule"}
    for k, v in row.items():
        if k not in skip and isinstance(v, (int, float)):
            return k
    raise ValueError("rows have no numeric objective")
