"""ONNX export: the exported policy chooses the torch policy's actions on observations from rollouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from agents_toy_env import ENV_IDS, register

import schedgym  # noqa: F401
from schedgym import evaluate
from schedgym.agents.onnx import OnnxPolicy, export_onnx
from schedgym.agents.policy import TorchPolicy, load_policy
from schedgym.agents.rollout import make_env
from schedgym.agents.selflabel import SelfLabelArgs, train_selflabel
from schedgym.envs.jobshop.io import load_benchmark

torch.set_num_threads(1)
register()
JOBSHOP = "schedgym/JobShop-v0"


@pytest.fixture(scope="module")
def jobshop_policy(tmp_path_factory):
    """A briefly trained JobShop net (sharper logits than an untrained one) and its ONNX export."""
    out = tmp_path_factory.mktemp("onnx")
    res = train_selflabel(SelfLabelArgs(env=JOBSHOP, env_kwargs={"dataset": "jobshop/random-6x6"},
                                        out=str(out), samples=8, iterations=6, lr=3e-3, hidden=16, layers=2,
                                        val_every=0, val_episodes=1, progress=False))
    torch_pol = load_policy(res.checkpoint, name="torch")
    env = make_env(JOBSHOP, {"dataset": "jobshop/random-6x6"})
    obs, _ = env.reset(seed=0)
    path = export_onnx(torch_pol.net, obs, out / "policy.onnx", meta={"algo": "selflabel"})
    return torch_pol, path


def rollout_observations(env_id: str, kwargs: dict, n: int) -> list[dict[str, np.ndarray]]:
    env = make_env(env_id, kwargs)
    rng = np.random.default_rng(0)
    out: list[dict[str, np.ndarray]] = []
    seed = 0
    while len(out) < n:
        obs, info = env.reset(seed=seed)
        seed += 1
        done = False
        while not done:
            out.append(obs)
            obs, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
            done = term or trunc
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [{"dataset": "jobshop/random-6x6"}, {"instance": "ta01"}])
def test_onnx_and_torch_choose_the_same_actions(jobshop_policy, kwargs):
    """At least 100 rollout observations, on the training size and on a larger instance (dynamic shapes)."""
    torch_pol, path = jobshop_policy
    onnx_pol = OnnxPolicy(path)
    observations = rollout_observations(JOBSHOP, kwargs, 150)
    assert len(observations) >= 100
    for obs in observations:
        lt, lo = torch_pol.logits(obs), onnx_pol.logits(obs)
        valid = obs["action_mask"].astype(bool)
        np.testing.assert_allclose(lo[valid], lt[valid], rtol=1e-4, atol=1e-4)
        assert (lo[~valid] <= -1e8).all()
        assert onnx_pol.act(obs, {}) == torch_pol.act(obs, {})
    batch = {k: np.stack([o[k] for o in observations[:7]]) for k in observations[0]}
    assert onnx_pol.logits(batch).shape == (7, observations[0]["action_mask"].size)  # dynamic batch axis
    assert onnx_pol.meta == {"algo": "selflabel"}


@pytest.mark.slow
def test_onnx_policy_goes_through_the_harness_with_identical_schedules(jobshop_policy):
    torch_pol, path = jobshop_policy
    onnx_pol = load_policy(path)
    assert isinstance(onnx_pol, OnnxPolicy) and isinstance(onnx_pol, schedgym.Policy)
    res = evaluate(JOBSHOP, {"torch": torch_pol, "onnx": onnx_pol}, instances=[load_benchmark("ft06"),
                                                                                 load_benchmark("la01")])
    by = {(r["instance"], r["policy"]): r for r in res.rows}
    for inst in ("ft06", "la01"):
        assert by[inst, "onnx"]["schedule"] == by[inst, "torch"]["schedule"]
        assert by[inst, "onnx"]["invalid_actions"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("layout,conv,dynamic", [("node", "sage", True), ("graph", "sage", True),
                                                 ("action_node", "dense_gin", False)])
def test_export_parity_on_the_synthetic_env_layouts(layout, conv, dynamic, tmp_path):
    """The fallbacks without action_node (A == N; graph-embedding head) export too, as do the dense
    encoders and fixed-shape (batch 1) exports; legacy exporter (fast)."""
    from schedgym.agents.encoders import EncoderConfig
    from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec

    env_id = ENV_IDS[layout]
    env = make_env(env_id)
    torch.manual_seed(0)
    net = GraphPolicyNet(ObsSpec.from_space(env.observation_space),
                         NetConfig(EncoderConfig(conv=conv, hidden=8, layers=1), head_hidden=8)).eval()
    obs0, _ = env.reset(seed=0)
    path = export_onnx(net, obs0, tmp_path / "p.onnx", exporter="legacy", dynamic=dynamic)
    onnx_pol = OnnxPolicy(path)
    torch_pol = TorchPolicy(net)
    for obs in rollout_observations(env_id, {}, 30):
        np.testing.assert_allclose(onnx_pol.logits(obs), torch_pol.logits(obs), rtol=1e-4, atol=1e-5)
        assert onnx_pol.act(obs, {}) == torch_pol.act(obs, {})


def test_onnx_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxPolicy(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="greedily"):
        load_policy(tmp_path / "x.onnx", deterministic=False)
