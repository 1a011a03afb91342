"""DAG baselines: each rule's choice on a hand-made instance, online planners executing their offline plans
exactly, every baseline finishing validated on streams, clusters and under noise, the CLI path."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym import datasets, evaluate
from schedgym.baselines._listsched import Residual
from schedgym.baselines.cpop import cpop_plan
from schedgym.baselines.heft import heft_plan
from schedgym.baselines.peft import peft_plan
from schedgym.cli import main
from schedgym.envs.dag.generator import random_instance
from schedgym.envs.dag.io import instance_to_json
from schedgym.envs.dag.platforms import cluster, soc
from schedgym.envs.dag.sim import DagState
from schedgym.envs.dag.types import INF, DagInstance, DagWorkload, Platform
from schedgym.policy import baselines, make_policy

ENV = "schedgym/DAGDispatch-v0"
NAMES = {"heft", "cpop", "peft", "etf", "minmin", "maxmin", "met", "mct", "roundrobin", "random"}


def choice_instance() -> DagInstance:
    """PE0 fast (1/unit), PE1 slow (3/unit), PE2 only runs type 'y'. t0 work 2, t1 work 1, both type 'x'."""
    pf = Platform(
        "p",
        ("fast", "slow", "special"),
        np.array([0, 1, 2]),
        ("F", "S", "Y"),
        ("x", "y"),
        np.array([[1.0, 3.0, INF], [1.0, 1.0, 1.0]]),
        np.zeros((3, 3)),
        np.ones((3, 3)),
    )
    wl = DagWorkload(
        "w",
        ("j",),
        np.zeros(1),
        np.zeros(2, np.int64),
        ("x", "x"),
        np.array([2.0, 1.0]),
        np.array([], np.int64),
        np.array([], np.int64),
        np.array([]),
        ("t0", "t1"),
    )
    return DagInstance("choice", pf, wl)


def first_choice(name: str) -> tuple[int, int] | None:
    env = gym.make(ENV, instance=choice_instance())
    obs, info = env.reset(seed=0)
    pol = make_policy(ENV, name)
    pol.reset(env, seed=0)
    return env.unwrapped.decode(pol.act(obs, info))


def test_all_ten_baselines_are_registered():
    assert set(baselines(ENV)) == NAMES


@pytest.mark.parametrize(
    "name, expected",
    [
        ("met", (0, 0)),  # FIFO task t0, fastest PE
        ("mct", (0, 0)),  # t0: EFT 2 on fast vs 6 on slow
        ("minmin", (1, 0)),  # best completions t0: 2, t1: 1 -> t1 on fast
        ("maxmin", (0, 0)),  # -> t0 on fast
        ("etf", (0, 0)),  # both start at 0; larger static level (t0) first, then earliest finish
        ("roundrobin", (0, 0)),
        ("heft", (0, 0)),  # rank_u t0 = 4 > t1 = 2; EFT on fast
    ],
)
def test_first_decision_of_each_rule(name, expected):
    assert first_choice(name) == expected


def test_roundrobin_cycles_and_skips_unsupported_pes():
    env = gym.make(ENV, instance=choice_instance())
    obs, info = env.reset(seed=0)
    pol = make_policy(ENV, "roundrobin")
    pol.reset(env)
    picks = []
    for _ in range(2):
        a = pol.act(obs, info)
        picks.append(env.unwrapped.decode(a))
        obs, _, term, _, info = env.step(a)
    assert picks == [(0, 0), (1, 1)]
    assert pol.next_pe == 2


def test_met_ignores_load_but_breaks_ties_by_finish():
    """Two identical fast cores: MET sends the second task to the idle twin, never to the slow core."""
    pf = Platform(
        "p",
        ("f0", "f1", "s"),
        np.array([0, 0, 1]),
        ("F", "S"),
        ("x",),
        np.array([[1.0, 5.0]]),
        np.zeros((3, 3)),
        np.ones((3, 3)),
    )
    wl = DagWorkload(
        "w",
        ("j",),
        np.zeros(1),
        np.zeros(3, np.int64),
        ("x",) * 3,
        np.ones(3),
        np.array([], np.int64),
        np.array([], np.int64),
        np.array([]),
        ("a", "b", "c"),
    )
    env = gym.make(ENV, instance=DagInstance("twins", pf, wl))
    obs, info = env.reset(seed=0)
    pol = make_policy(ENV, "met")
    pol.reset(env)
    pes = []
    for _ in range(3):
        a = pol.act(obs, info)
        pes.append(env.unwrapped.decode(a)[1])
        obs, _, term, _, info = env.step(a)
    assert pes == [0, 1, 0] and term


def test_random_is_seeded_valid_and_never_waits():
    inst = datasets.get("dag/stream-layered-10").load("stream-layered-10-soc-001")
    res = evaluate(ENV, ["random"], instances=[inst], seeds=[3, 3, 4])
    m = [r["makespan"] for r in res.rows]
    assert m[0] == m[1] and m[0] != m[2]
    assert all(r["invalid_actions"] == 0 for r in res.rows)


@pytest.mark.parametrize("seed", range(6))
def test_online_planners_execute_their_offline_plan_exactly(seed):
    rng = np.random.default_rng(seed)
    shape = ("layered", "forkjoin", "sp")[seed % 3]
    inst = random_instance(rng, (soc(), cluster())[seed % 2], shape, 25)
    for plan_fn, name in ((heft_plan, "heft"), (cpop_plan, "cpop"), (peft_plan, "peft")):
        st = DagState(inst, np.ones(inst.n_tasks), inst.n_tasks, max(1, inst.workload.n_edges))
        planned = max(plan_fn(Residual(st)).finish.values())
        row = evaluate(ENV, [name], instances=[inst]).rows[0]
        assert row["makespan"] == pytest.approx(planned, rel=1e-12), name


@pytest.mark.parametrize(
    "dataset, kwargs",
    [
        ("dag/stream-layered-15", {}),
        ("dag/stream-sp-15-cluster", {}),
        ("dag/topcuoglu-stream", {"noise": 0.3}),
    ],
)
def test_every_baseline_finishes_validated(dataset, kwargs):
    ds = datasets.get(dataset)
    insts = [ds.load(n) for n in ds.names("test")[:2]]
    res = evaluate(ENV, sorted(NAMES), instances=insts, env_kwargs=kwargs)  # raises on any validator mismatch
    assert len(res) == 2 * len(NAMES)
    for r in res.rows:
        assert r["invalid_actions"] == 0 and r["mean_slowdown"] > 0 and 0 < r["utilisation"] <= 1
    by = {(r["instance"], r["policy"]): r["makespan"] for r in res.rows}
    for inst in insts:  # the informed rules beat random on these loaded systems
        assert by[(inst.name, "heft")] < by[(inst.name, "random")]


def test_cli_eval_with_a_dataset_and_with_instance_files(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "--env",
                ENV,
                "--policy",
                "heft,cpop",
                "--dataset",
                "dag/topcuoglu",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert {r["policy"]: r["makespan"] for r in rows} == {"heft": 80.0, "cpop": 86.0}
    f = tmp_path / "t.json"
    f.write_text(json.dumps(instance_to_json(datasets.get("dag/random-sp-6").load("random-sp-6-soc-000"))))
    assert (
        main(
            ["eval", "--env", ENV, "--policy", "heft:replan=arrivals", "--instances", str(f), "--no-progress"]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "--env",
                ENV,
                "--policy",
                "heft:replan=never",
                "--dataset",
                "dag/topcuoglu",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "replan must be one of" in capsys.readouterr().err


def test_cli_run_main_job_writes_table_results_and_gantt(tmp_path, capsys):
    assert (
        main(["run", "--env", ENV, "--dataset", "dag/topcuoglu", "--out", str(tmp_path), "--no-progress"])
        == 0
    )
    text = capsys.readouterr().out
    assert "heft" in text and "80.00" in text
    pngs = list(tmp_path.glob("gantt_topcuoglu_*.png"))
    assert len(pngs) == 1 and (tmp_path / "results.json").exists() and (tmp_path / "results.csv").exists()
