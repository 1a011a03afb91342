"""Exact figures on Topcuoglu et al. (2002)'s 10-task, 3-processor example: HEFT 80, CPOP 86 (offline,
through the env, through the harness), with the paper's ranks and per-task placements."""

from __future__ import annotations

from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym import evaluate
from schedgym.baselines._listsched import Residual
from schedgym.baselines.cpop import Cpop, cpop_plan
from schedgym.baselines.heft import Heft, heft_plan
from schedgym.envs.dag.io import topcuoglu
from schedgym.envs.dag.sim import DagState
from schedgym.envs.dag.types import DagSchedule
from schedgym.envs.dag.validator import validate_schedule

ENV = "schedgym/DAGDispatch-v0"
F = Fraction
RANK_U = [108, 77, 80, 80, 69, F(190, 3), F(128, 3), F(107, 3), F(133, 3), F(44, 3)]
RANK_D = [0, 31, 25, 22, 24, 27, F(187, 3), F(200, 3), F(191, 3), F(280, 3)]
# (processor 1..3, start, finish) per task n1..n10, from the paper (REFERENCE.md 10.2).
HEFT = [
    (3, 0, 9),
    (1, 27, 40),
    (3, 9, 28),
    (2, 18, 26),
    (3, 28, 38),
    (2, 26, 42),
    (3, 38, 49),
    (1, 57, 62),
    (2, 56, 68),
    (2, 73, 80),
]
CPOP = [
    (2, 0, 16),
    (2, 16, 35),
    (1, 28, 39),
    (3, 25, 42),
    (2, 35, 48),
    (3, 42, 51),
    (1, 39, 46),
    (3, 54, 68),
    (2, 65, 77),
    (2, 79, 86),
]


def fresh_residual() -> Residual:
    inst = topcuoglu()
    return Residual(DagState(inst, np.ones(inst.n_tasks), inst.n_tasks, inst.workload.n_edges))


def as_schedule(plan) -> DagSchedule:  # type: ignore[no-untyped-def]
    n = topcuoglu().n_tasks
    return DagSchedule(
        "topcuoglu",
        np.array([plan.pe[i] for i in range(n)]),
        np.array([plan.start[i] for i in range(n)]),
        np.array([plan.finish[i] for i in range(n)]),
        np.ones(n),
    )


def test_fixture_matches_the_paper():
    inst = topcuoglu()
    assert inst.exec_time[0].tolist() == [14, 16, 9] and inst.exec_time[8].tolist() == [
        18,
        12,
        20,
    ]  # n9 P3 = 20
    assert inst.workload.n_edges == 15 and inst.exec_time.shape == (10, 3)
    assert inst.comm_time(0, 1, 18.0) == 18.0 and inst.comm_time(2, 2, 18.0) == 0.0


def test_upward_and_downward_ranks_match_the_paper():
    res = fresh_residual()
    up, down = res.upward_rank(), res.downward_rank()
    np.testing.assert_allclose([up[i] for i in range(10)], [float(x) for x in RANK_U], rtol=1e-12)
    np.testing.assert_allclose([down[i] for i in range(10)], [float(x) for x in RANK_D], atol=1e-12)


@pytest.mark.parametrize("plan_fn, expected, makespan", [(heft_plan, HEFT, 80), (cpop_plan, CPOP, 86)])
def test_offline_plan_is_the_papers_schedule(plan_fn, expected, makespan):
    plan = plan_fn(fresh_residual())
    got = [(plan.pe[i] + 1, plan.start[i], plan.finish[i]) for i in range(10)]
    assert got == expected
    objectives = validate_schedule(topcuoglu(), as_schedule(plan))
    assert objectives["makespan"] == makespan


def test_heft_emission_order_is_start_order():
    plan = heft_plan(fresh_residual())
    order = sorted(plan.pe, key=plan.key.__getitem__)
    assert [plan.start[i] for i in order] == sorted(plan.start.values())
    assert plan.per_pe[2] == [0, 2, 4, 6]  # P3 runs n1, n3, n5, n7


@pytest.mark.parametrize("policy, expected, makespan", [(Heft, HEFT, 80), (Cpop, CPOP, 86)])
def test_policy_through_the_env_reproduces_the_plan_exactly(policy, expected, makespan):
    env = gym.make(ENV, instance="topcuoglu")
    pol = policy()
    obs, info = env.reset(seed=0)
    pol.reset(env, seed=0)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(pol.act(obs, info))
        done = term or trunc
    assert term and not info["invalid_action"]
    assert info["makespan"] == makespan
    base = env.unwrapped
    assert base.validate()["makespan"] == makespan
    sched = base.schedule()
    assert [(int(sched.pe[i]) + 1, sched.start[i], sched.finish[i]) for i in range(10)] == expected
    assert pol.n_plans == 1  # one plan, executed as planned


def test_harness_reports_validated_80_and_86():
    res = evaluate(ENV, ["heft", "cpop"], "dag/topcuoglu")
    got = {r["policy"]: r["makespan"] for r in res.rows}
    assert got == {"heft": 80.0, "cpop": 86.0}
    assert all(r["instance"] == "topcuoglu" and r["invalid_actions"] == 0 for r in res.rows)
