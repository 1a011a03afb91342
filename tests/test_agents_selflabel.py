"""Self-labelling and behaviour cloning: learning, TensorBoard, checkpoints and resume, the Policy wrapper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from agents_toy_env import ENV_IDS, register

import schedgym  # noqa: F401
from schedgym import evaluate
from schedgym.agents.checkpoint import load_checkpoint, load_net
from schedgym.agents.plots import read_scalars
from schedgym.agents.policy import TorchPolicy, load_policy
from schedgym.agents.rollout import make_env, replay, sample_episodes
from schedgym.agents.selflabel import SelfLabelArgs, train_selflabel
from schedgym.envs.jobshop.io import load_benchmark

torch.set_num_threads(1)
register()
JOBSHOP = "schedgym/JobShop-v0"


def toy_args(out, **kw) -> SelfLabelArgs:
    base = dict(env=ENV_IDS["action_node"], env_kwargs={}, out=str(out), samples=8, instances_per_update=4,
                iterations=40, lr=3e-3, hidden=16, layers=2, val_every=20, val_episodes=16,
                checkpoint_every=20, progress=False)
    return SelfLabelArgs(**{**base, **kw})


def test_self_labelling_learns_the_toy_env(tmp_path):
    res = train_selflabel(toy_args(tmp_path))
    net, meta = load_net(res.best_checkpoint)
    assert meta["algo"] == "selflabel" and meta["iterations"] in (20, 40)
    env = make_env(ENV_IDS["action_node"])
    greedy = [sample_episodes([env], net, 90_000 + s, None)[0].ret for s in range(40)]
    rng = np.random.default_rng(0)
    rand = []
    for s in range(40):
        _, info = env.reset(seed=90_000 + s)
        total, done = 0.0, False
        while not done:
            _, r, done, _, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
            total += r
        rand.append(total)
    assert np.mean(rand) < 1.5
    assert np.mean(greedy) >= np.mean(rand) + 1.0, (np.mean(greedy), np.mean(rand))
    # TensorBoard: the loss and the validation curve are there and readable
    scalars = read_scalars(res.tb_dir)
    assert [s for s, _ in scalars["selflabel/loss"]] == list(range(1, 41))
    assert [s for s, _ in scalars["eval/mean_return"]] == [20, 40]
    assert res.history[-1]["iteration"] == 40


def test_resume_continues_iterations_and_seed_stream(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    full = train_selflabel(toy_args(a, iterations=6, checkpoint_every=3, val_every=0, instances_per_update=1))
    train_selflabel(toy_args(b, iterations=3, checkpoint_every=3, val_every=0, instances_per_update=1))
    resumed = train_selflabel(toy_args(b, iterations=6, checkpoint_every=3, val_every=0,
                                       instances_per_update=1, resume=True))
    assert resumed.iterations == 6
    assert load_checkpoint(b / "last.pt")["meta"]["iterations"] == 6
    # same instances, same samples, same updates: resuming reproduces the uninterrupted run's losses
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in full.history[3:]],
                               rtol=1e-5)
    steps = [s for s, _ in read_scalars(b / "tb")["selflabel/loss"]]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert json.loads((b / "args.json").read_text())["resume"] is True


def test_sampled_copies_share_the_instance_and_replay_is_exact():
    envs = [make_env(JOBSHOP, {"dataset": "jobshop/random-5x4"}) for _ in range(4)]
    torch.manual_seed(0)
    from schedgym.agents.model import GraphPolicyNet, ObsSpec

    net = GraphPolicyNet(ObsSpec.from_space(envs[0].observation_space)).eval()
    eps = sample_episodes(envs, net, seed=7, gen=torch.Generator().manual_seed(0))
    assert len({e.unwrapped.instance.name for e in envs}) == 1
    assert len({tuple(e.unwrapped.instance.durations.ravel()) for e in envs}) == 1
    for env, ep in zip(envs, eps, strict=True):
        assert len(ep.actions) == 20
        assert ep.objective == env.unwrapped.validate()["makespan"]
    states = replay(envs[0], 7, eps[2].actions)
    assert len(states) == 20 and all(s["action_mask"][a] for s, a in zip(states, eps[2].actions, strict=True))
    assert envs[0].unwrapped.validate()["makespan"] == eps[2].objective


@pytest.mark.slow
def test_jobshop_self_labelling_improves_over_its_start_and_goes_through_the_harness(tmp_path):
    """On ft06, a few self-labelling iterations lower the greedy makespan; the agent is a Policy that the
    evaluation harness validates like any baseline."""
    args = SelfLabelArgs(env=JOBSHOP, env_kwargs={"instance": "ft06"}, out=str(tmp_path), samples=16,
                         iterations=25, lr=3e-3, hidden=16, layers=2, val_every=25, val_episodes=1,
                         checkpoint_every=25, progress=False)
    res = train_selflabel(args)
    first_best = res.history[0]["best_objective"]
    trained = load_policy(res.checkpoint, name="gnn")
    rows = evaluate(JOBSHOP, {"gnn": trained}, instances=[load_benchmark("ft06")])
    makespan = rows.rows[0]["makespan"]
    assert rows.rows[0]["invalid_actions"] == 0 and rows.rows[0]["gap_pct"] >= 0
    assert makespan <= first_best, (makespan, first_best)  # greedy now matches the first iteration's best
    assert isinstance(trained, TorchPolicy) and isinstance(trained, schedgym.Policy)


def test_behaviour_cloning_imitates_the_teacher(tmp_path):
    """Cloning MWKR on 6x4 job shops: on held-out instances the clone agrees with MWKR far more often than a
    random valid choice does. (Exact agreement is out of reach: MWKR's non-delay filter compares start
    times that differ by fractions of a percent of the normalised time scale.)"""
    from schedgym.agents.model import GraphPolicyNet, ObsSpec
    from schedgym.agents.selflabel import behaviour_clone
    from schedgym.policy import make_policy

    args = SelfLabelArgs(env=JOBSHOP, env_kwargs={"dataset": "jobshop/random-6x4"}, warm_start="mwkr",
                         warm_start_episodes=30, warm_start_epochs=15, hidden=16, layers=2)
    env = make_env(args.env, args.env_kwargs)
    torch.manual_seed(0)
    net = GraphPolicyNet(ObsSpec.from_space(env.observation_space), args.net_config())
    behaviour_clone(net, args)
    clone, teacher = TorchPolicy(net), make_policy(JOBSHOP, "mwkr")
    agree = total = 0
    chance = 0.0
    for s in range(5):
        obs, info = env.reset(seed=77_000 + s)
        teacher.reset(env)
        done = False
        while not done:
            a = teacher.act(obs, info)
            agree += clone.act(obs, info) == a
            chance += 1 / info["action_mask"].sum()
            total += 1
            obs, _, done, _, info = env.step(a)
    assert agree / total >= chance / total + 0.1, (agree / total, chance / total)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="--samples"):
        train_selflabel(SelfLabelArgs(samples=0))
    with pytest.raises(ValueError, match="--budget-clock"):
        train_selflabel(SelfLabelArgs(budget_clock="gpu"))
    with pytest.raises(FileNotFoundError):
        load_policy("/nonexistent/policy.pt")
    with pytest.raises(ValueError, match="expected a .pt"):
        load_policy(__file__)
