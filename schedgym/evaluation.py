"""The one evaluation harness: policies x instances x seeds -> a tidy table, every objective validated.

Each row holds the instance, policy, seed, the objectives recomputed by the domain's independent
validator from the produced schedule, the gap to the instance's best-known bound when it has one, the
decision count, wall time and the full schedule. A mismatch between what the env reported and what the
validator recomputes raises: no number leaves the harness unchecked.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym import datasets
from schedgym.metrics import gap_percent, summarize
from schedgym.policy import Policy, make_policy


@dataclass
class Results:
    """Rows of an evaluation (one per instance x seed x policy) plus writers and summaries."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, key: str, policy: str | None = None) -> list[Any]:
        return [r[key] for r in self.rows if policy is None or r["policy"] == policy]

    def policies(self) -> list[str]:
        return list(dict.fromkeys(r["policy"] for r in self.rows))

    def summary(self, metric: str | None = None) -> list[dict[str, Any]]:
        """Per policy: mean objective, mean gap (if known), mean wall time."""
        return summarize(self.rows, metric)

    def table(self, metric: str | None = None) -> str:
        rows = self.summary(metric)
        if not rows:
            return "(no results)"
        keys = list(rows[0])
        fmt = [max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys]
        line = "  ".join(k.ljust(w) for k, w in zip(keys, fmt))
        out = [line, "-" * len(line)]
        out += ["  ".join(_fmt(r[k]).ljust(w) for k, w in zip(keys, fmt)) for r in rows]
        return "\n".join(out)

    def to_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"rows": self.rows, "summary": self.summary()}, indent=1))
        return p

    def to_csv(self, path: str | Path) -> Path:
        """CSV with one row per run; the schedule column holds the schedule as JSON."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            for r in self.rows:
                w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
        return p

    def write(self, path: str | Path) -> Path:
        """Write CSV or JSON by the file's suffix."""
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            return self.to_csv(path)
        if suffix == ".json":
            return self.to_json(path)
        raise ValueError(f"results file must end in .csv or .json, got {path!r}")


def evaluate(
    env_id: str,
    policies: Policy | str | Sequence[Policy | str] | Mapping[str, Policy],
    dataset: str | None = None,
    seeds: int | Iterable[int] = 1,
    *,
    instances: Sequence[Any] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> Results:
    """Run every policy on every instance of ``dataset`` (``name[:split]``, default split ``test``) or of
    ``instances``, once per seed, and return validated rows. ``seeds`` is a count (0..n-1) or an iterable.
    """
    if (dataset is None) == (instances is None):
        raise ValueError("pass exactly one of dataset= or instances=")
    if instances is None:
        ds, split = datasets.parse(dataset)  # type: ignore[arg-type]
        insts = list(ds.instances(split))
    else:
        insts = list(instances)
    if not insts:
        raise ValueError("no instances to evaluate")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("seeds must name at least one seed")
    pols = _policies(env_id, policies)
    jobs = [(inst, seed, name, pol) for inst in insts for seed in seed_list for name, pol in pols.items()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"eval {env_id}", unit="run", disable=None)  # off when not a TTY
    results = Results()
    try:
        for inst, seed, name, pol in jobs:
            if bar is not None:
                bar.set_postfix_str(f"{getattr(inst, 'name', '?')} {name}")
            results.rows.append(run_episode(env_id, pol, inst, seed, name, dataset, env_kwargs))
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    if out is not None:
        results.write(out)
    return results


def run_episode(
    env_id: str, policy: Policy, instance: Any, seed: int, name: str | None = None,
    dataset: str | None = None, env_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One validated episode of ``policy`` on ``instance``; returns its result row."""
    env = gym.make(env_id, instance=instance, **dict(env_kwargs or {}))
    try:
        t0 = time.perf_counter()
        obs, info = env.reset(seed=seed)
        policy.reset(env, seed=seed)
        steps, invalid, done = 0, 0, False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
            steps += 1
            invalid += bool(info.get("invalid_action", False))
            done = terminated or truncated
        wall = time.perf_counter() - t0
        base = env.unwrapped
        if not terminated:
            raise RuntimeError(
                f"policy {name or policy.name} did not finish {instance.name}: truncated after {steps} steps"
            )
        objectives = base.validate()
        objective = base.objective
        reported = info.get(objective)
        if reported is not None and not np.isclose(reported, objectives[objective]):
            raise RuntimeError(f"{env_id} reported {objective}={reported} but the validator recomputed "
                               f"{objectives[objective]} on {instance.name}")
        row: dict[str, Any] = {"env_id": env_id, "dataset": dataset or "", "instance": instance.name,
                               "policy": name or policy.name, "seed": seed, **objectives}
        bound = getattr(instance, "best_known", None)
        if bound is not None:
            row["best_known"] = bound
            row["gap_pct"] = gap_percent(objectives[objective], bound)
        row.update({"steps": steps, "invalid_actions": invalid, "wall_s": round(wall, 4),
                    "schedule": base.schedule().to_json()})
        return row
    finally:
        env.close()


def _policies(env_id: str, policies: Any) -> dict[str, Policy]:
    if isinstance(policies, Mapping):
        return dict(policies)
    if isinstance(policies, (str, Policy)) or not isinstance(policies, Sequence):
        policies = [policies]
    out: dict[str, Policy] = {}
    for p in policies:
        pol = make_policy(env_id, p) if isinstance(p, str) else p
        if pol.name in out:
            raise ValueError(f"two policies are named {pol.name!r}; pass a mapping name -> policy")
        out[pol.name] = pol
    return out


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)
