"""Mélange provisioning: a mixed GPU allocation is cheaper than any single type at the same attainment target,
the solver's answer is the cheapest evaluated one that meets it, and bad problems are rejected."""

from __future__ import annotations

import pytest

from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.provisioning import ProvisioningProblem, evaluate, melange_problem, solve


@pytest.mark.slow
def test_mixed_allocation_is_cheaper_than_the_best_single_type() -> None:
    p = melange_problem()
    res = solve(p)
    singles = [e["cost_per_hour"] for e in res.best_single.values() if e]
    assert res.best is not None and singles and res.best["cost_per_hour"] < min(singles)
    assert sum(1 for n in res.best["counts"] if n) >= 2  # really a mix
    assert res.best["slo_attainment"] >= p.target
    cheaper = [e for e in res.evaluated if e["cost_per_hour"] < res.best["cost_per_hour"]]
    assert cheaper and not any(e["meets_target"] for e in cheaper)


def test_evaluate_prices_and_validates_an_allocation() -> None:
    w = part("azure-conv-2023", "test").slice(0, 60)
    p = ProvisioningProblem(w, "Llama-3-8B", ("L4", "H100-80GB"), max_per_type=2)
    e = evaluate(p, (1, 1))
    assert e["cost_per_hour"] == pytest.approx(0.7 + 7.52)
    assert 0 <= e["slo_attainment"] <= 1 and e["meets_target"] == (e["slo_attainment"] >= 0.9)


@pytest.mark.parametrize("kw,match", [
    (dict(gpus=()), "at least one GPU"),
    (dict(gpus=("L4", "L4")), "distinct"),
    (dict(gpus=("TPU",)), "TPU"),
    (dict(max_per_type=0), "max_per_type"),
    (dict(target=1.5), "target"),
])
def test_bad_problems_are_rejected(kw, match) -> None:
    w = part("azure-conv-2023", "test").slice(0, 10)
    args = dict(workload=w, model="Llama-3-8B", gpus=("L4",)) | kw
    with pytest.raises(ValueError, match=match):
        ProvisioningProblem(**args)


def test_bad_allocation_is_rejected() -> None:
    w = part("azure-conv-2023", "test").slice(0, 10)
    p = ProvisioningProblem(w, "Llama-3-8B", ("L4", "H100-80GB"))
    with pytest.raises(ValueError, match="not all zero"):
        evaluate(p, (0, 0))
