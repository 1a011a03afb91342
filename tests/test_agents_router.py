"""The learned serving router: lookahead teacher, DAgger with soft labels, the lean ``mlp`` encoder, ONNX parity."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import schedgym  # noqa: F401
from schedgym import cli
from schedgym.agents.dagger import DaggerArgs, make_teacher, train_dagger
from schedgym.agents.encoders import EncoderConfig
from schedgym.agents.lookahead import LookaheadRouter, clone_sim, freest
from schedgym.agents.losses import imitation_loss, soft_imitation_loss
from schedgym.agents.masking import SetMask, masked_max, masked_mean
from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec, obs_to_torch
from schedgym.agents.onnx import OnnxPolicy, export_onnx
from schedgym.agents.policy import load_policy

torch.set_num_threads(1)
SERVING = "schedgym/LLMServing-v0"
A10G = {"cluster": ["A10G/Llama-2-7B"] * 4, "rate_scale": 0.5}


def serving_env(n: int = 64) -> gym.Env:
    return gym.make(SERVING, segment_requests=n, **A10G).unwrapped


def test_soft_imitation_loss_hand_computed():
    logits = torch.tensor([[0.0, float(np.log(3.0)), 5.0]])
    mask = torch.tensor([[1, 1, 0]])
    target = torch.tensor([[0.5, 0.5, 0.0]])
    # pi = (1/4, 3/4) over the valid actions; loss = -(0.5 log 1/4 + 0.5 log 3/4)
    expected = -(0.5 * np.log(0.25) + 0.5 * np.log(0.75))
    assert float(soft_imitation_loss(logits, mask, target)) == pytest.approx(expected, rel=1e-6)
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    assert float(soft_imitation_loss(logits, mask, one_hot)) == pytest.approx(
        float(imitation_loss(logits, mask, torch.tensor([1]))), rel=1e-6)
    with pytest.raises(ValueError, match="masked-out"):
        soft_imitation_loss(logits, mask, torch.tensor([[0.0, 0.5, 0.5]]))


def test_set_mask_reductions_equal_masked_mean_and_max():
    x = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    m = SetMask(mask)
    torch.testing.assert_close(m.mean(x), masked_mean(x, mask, 1))
    torch.testing.assert_close(m.max(x), masked_max(x, mask, 1))
    assert m.max(x)[1].abs().sum() == 0  # no valid entry: 0, never MASK_VALUE


def test_clone_sim_is_independent_and_deterministic():
    """A copy run to the end leaves the original untouched; the original then finishes exactly like an env
    that was never copied."""
    envs = [serving_env(), serving_env()]
    for e in envs:
        e.reset(seed=5)
    for _ in range(30):
        a = freest(envs[0].state, envs[0].state.next_req)
        for e in envs:
            e.step(a)
    before = envs[0].state.live_stats().copy(), envs[0].state.now, list(envs[0].state.first_token)
    c = clone_sim(envs[0].state)
    while (q := c.next_decision()) is not None:
        c.route(q, freest(c, q))
    c.drain()
    assert c.res_log and c.res_log is not envs[0].state.res_log
    np.testing.assert_array_equal(envs[0].state.live_stats(), before[0])
    assert envs[0].state.now == before[1]
    np.testing.assert_array_equal(envs[0].state.first_token, before[2])
    infos = []
    for e in envs:
        done = False
        while not done:
            _, _, term, trunc, info = e.step(freest(e.state, e.state.next_req))
            done = term or trunc
        infos.append(e.validate())
    assert infos[0] == infos[1]
    # the copy routed the same requests the same way, so it reached the same end
    np.testing.assert_allclose(c.first_token, envs[0].state.first_token)


def test_lookahead_picks_its_cheapest_rollout_without_touching_the_env():
    env = serving_env()
    obs, info = env.reset(seed=2)
    teacher = LookaheadRouter(horizon=8, power=2)
    teacher.reset(env)
    for _ in range(40):
        stats, now = env.state.live_stats().copy(), env.state.now
        costs = teacher.action_costs(obs, info)
        np.testing.assert_array_equal(env.state.live_stats(), stats)
        assert env.state.now == now
        valid = info["action_mask"].astype(bool)
        assert np.isfinite(costs[valid]).all() and np.isinf(costs[~valid]).all()
        a = teacher.act(obs, info)
        assert valid[a] and (valid.sum() == 1 or costs[a] == costs[valid].min())
        obs, _, _, _, info = env.step(a)
    with pytest.raises(ValueError, match="horizon"):
        LookaheadRouter(horizon=-1)


def test_make_teacher_knows_lookahead_and_baselines():
    assert isinstance(make_teacher(SERVING, "lookahead", horizon=4), LookaheadRouter)
    assert make_teacher(SERVING, "jsq").name == "jsq"
    with pytest.raises(ValueError, match="unknown policy"):
        make_teacher(SERVING, "nope")


@pytest.mark.slow
def test_dagger_learns_llumnix_dispatch_and_exports_with_parity(tmp_path):
    """DAgger on Llumnix's own labels: the student ends up choosing its teacher's action far more often than
    chance; its ONNX export chooses the torch net's actions on >= 100 rollout observations."""
    res = train_dagger(DaggerArgs(env=SERVING, env_kwargs={**A10G, "segment_requests": 64}, out=str(tmp_path),
                                  teacher="llumnix", rounds=3, episodes_per_round=3, epochs=40, lr=3e-3,
                                  candidate_context=False, val_episodes=2, progress=False))  # the router's net
    assert res.rounds == 3 and res.best_checkpoint.is_file()
    assert res.history[-1]["student_agreement"] > 0.5  # 4 instances: chance is about 0.25-0.4
    torch_pol = load_policy(res.best_checkpoint, name="torch")
    env = serving_env(128)
    obs, info = env.reset(seed=11)
    observations = []
    done = False
    rng = np.random.default_rng(0)
    while not done:
        observations.append(obs)
        obs, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        done = term or trunc
    assert len(observations) >= 100
    for dynamic in (False, True):
        onnx_pol = OnnxPolicy(export_onnx(torch_pol.net, observations[0], tmp_path / f"r{dynamic}.onnx",
                                          dynamic=dynamic))
        for o in observations:
            valid = o["action_mask"].astype(bool)
            np.testing.assert_allclose(onnx_pol.logits(o)[valid], torch_pol.logits(o)[valid], rtol=1e-4, atol=1e-4)
            assert onnx_pol.act(o, {}) == torch_pol.act(o, {})


def test_dagger_soft_labels_come_from_the_teachers_costs(tmp_path):
    res = train_dagger(DaggerArgs(env=SERVING, env_kwargs={**A10G, "segment_requests": 16}, out=str(tmp_path),
                                  teacher="lookahead", teacher_kwargs={"horizon": 4}, soft_temperature=0.3,
                                  rounds=1, episodes_per_round=1, epochs=1, val_episodes=1, progress=False))
    assert res.samples > 0 and 0.0 <= res.history[0]["student_agreement"] <= 1.0
    with pytest.raises(ValueError, match="rounds"):
        train_dagger(DaggerArgs(rounds=0, out=str(tmp_path)))


def test_mlp_encoder_reads_the_request_to_instance_edge():
    """Only instance i's score moves when the prefill time on its edge changes (no message passing)."""
    env = serving_env()
    obs, _ = env.reset(seed=0)
    torch.manual_seed(0)
    net = GraphPolicyNet(ObsSpec.from_space(env.observation_space),
                         NetConfig(EncoderConfig(conv="mlp", hidden=16, layers=1), head_hidden=16,
                                   candidate_context=False)).eval()
    nodes0, _ = net.encoder(*(obs_to_torch(obs)[k] for k in ("node_features", "edge_index", "edge_features",
                                                               "node_mask", "edge_mask")))
    bumped = {k: v.copy() for k, v in obs.items()}
    bumped["edge_features"][2, 0] += 1.0  # edge 2: request -> instance 2
    nodes1, _ = net.encoder(*(obs_to_torch(bumped)[k] for k in ("node_features", "edge_index", "edge_features",
                                                                 "node_mask", "edge_mask")))
    changed = (nodes0 - nodes1).abs().sum(-1)[0] > 0
    assert changed.tolist() == [False, False, True, False, False]


def test_eval_env_kwargs_reach_the_env(capsys):
    code = cli.main(["eval", "--env", SERVING, "--policy", "jsq", "--dataset", "serving/azure-conv-2023",
                     "--env-kwargs", '{"cluster": "no-such-cluster"}', "--no-progress"])
    assert code == 2 and "unknown cluster preset 'no-such-cluster'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["eval", "--env", SERVING, "--policy", "jsq", "--dataset", "serving/azure-conv-2023",
                  "--env-kwargs", "[1, 2]"])
    assert "expected a JSON object" in capsys.readouterr().err


@pytest.mark.slow
def test_train_router_script_trains_exports_and_compares(tmp_path, capsys, monkeypatch):
    """The figure's one command, shrunk: trains, exports ONNX, evaluates it next to a baseline on every test
    window through the harness (validated), and prints the comparison."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_router.py"
    spec = importlib.util.spec_from_file_location("train_router", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_router", mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    code = mod.main(["--out", str(tmp_path), "--env-kwargs", '{"cluster": ["A10G/Llama-2-7B", "A10G/Llama-2-7B", '
                     '"A10G/Llama-2-7B", "A10G/Llama-2-7B"], "rate_scale": 0.5, "segment_requests": 16}',
                     "--teacher-kwargs", '{"horizon": 2}', "--rounds", "1", "--teacher-rounds", "1",
                     "--episodes-per-round", "1", "--epochs", "1", "--val-episodes", "1", "--seeds", "1",
                     "--baselines", "jsq", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "router.onnx").is_file() and (tmp_path / "eval.json").is_file()
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(("router ", "jsq "))}
    assert set(lines) == {"router", "jsq"}
    assert len(lines["router"].split("   ")[-1].split()) == 6  # p99 TTFT of each of the 6 test windows
