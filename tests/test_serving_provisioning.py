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


# ---------------------------------------------------------------------------------------------- the env
def _play(env, actions):
    obs, info = env.reset(seed=0)
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
    return r, term, info


def test_provisioning_env_scores_the_allocation_by_its_validated_serving_episode() -> None:
    import gymnasium as gym

    import schedgym  # noqa: F401
    from schedgym.envs.provisioning.validator import penalty

    env = gym.make("schedgym/Provisioning-v0", instance="melange")
    base = env.unwrapped
    # 2 x H100 (slot 3) then provision: the validator's cost, attainment and objective agree with the env.
    r, term, info = _play(env, [3, 3, 5])
    assert term and info["counts"].tolist() == [0, 0, 0, 2]
    v = base.validate()
    assert v["cost_per_hour"] == pytest.approx(2 * 7.52)
    assert v["penalized_cost_per_hour"] == info["penalized_cost_per_hour"]
    assert v["slo_attainment"] == info["slo_attainment"]
    assert r == pytest.approx(-info["penalized_cost_per_hour"] / penalty(base.instance))
    # One L4 misses the target: penalised by the largest allocation's price.
    r, term, info = _play(env, [0, 5])
    assert not info["meets_target"] and info["penalized_cost_per_hour"] == pytest.approx(0.7 + penalty(base.instance))


def test_provisioning_validator_rejects_a_forged_allocation() -> None:
    from dataclasses import replace

    import gymnasium as gym

    import schedgym  # noqa: F401
    from schedgym.envs.serving.validator import ScheduleError

    env = gym.make("schedgym/Provisioning-v0")
    _play(env, [2, 2, 5])
    base = env.unwrapped
    s = base.schedule()
    with pytest.raises(ScheduleError, match="ran on"):  # claims 1 A100 but served on 2
        base.validator(base.instance, replace(s, counts=s.counts - (s.counts > 0)))
    with pytest.raises(ScheduleError, match="0..3"):
        base.validator(base.instance, replace(s, counts=s.counts + 4))
    with pytest.raises(ScheduleError, match="never served"):
        base.validator(base.instance, replace(s, serving=None))


def test_melange_baseline_through_the_env_meets_the_target_on_the_harness() -> None:
    from schedgym.envs.provisioning.datasets import _load
    from schedgym.evaluation import evaluate

    problems = [_load(f"azure-conv-2023/test/{i:03d}") for i in range(3)]
    rows = evaluate("schedgym/Provisioning-v0", ["melange"], instances=problems, seeds=[0]).rows
    assert len(rows) == 3
    for row in rows:
        assert row["meets_target"] == 1.0 and row["penalized_cost_per_hour"] == row["cost_per_hour"]


def test_bad_provisioning_instances_are_rejected() -> None:
    import gymnasium as gym

    import schedgym  # noqa: F401

    with pytest.raises(ValueError, match="unknown provisioning preset"):
        gym.make("schedgym/Provisioning-v0", instance="cheap")
    w = part("azure-conv-2023", "test").slice(0, 10)
    env = gym.make("schedgym/Provisioning-v0", instance=ProvisioningProblem(w, "Llama-3-8B", ("CPU", "L4")))
    with pytest.raises(ValueError, match="CPU"):
        env.reset(seed=0)


def test_provisioning_env_renders_the_allocation() -> None:
    import gymnasium as gym

    import schedgym  # noqa: F401

    env = gym.make("schedgym/Provisioning-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(3)
    text = env.render()
    assert "H100-80GB" in text and "total $7.52/h" in text
    env.step(5)
    assert "SLO attainment" in env.render()
