"""RLlib PPO (new API stack) with the graph RLModule, under Ray Tune: one end-to-end run (~40-100 s)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import schedgym  # noqa: F401

pytest.importorskip("ray.rllib")
JOBSHOP = "schedgym/JobShop-v0"


@pytest.mark.slow
def test_rllib_ppo_trains_logs_checkpoints_and_exports(tmp_path):
    from schedgym.agents.checkpoint import load_net
    from schedgym.agents.plots import read_scalars
    from schedgym.agents.policy import TorchPolicy, load_policy
    from schedgym.agents.rllib import GraphRLModule, RLlibArgs, load_rllib_net, train_rllib
    from schedgym.agents.rollout import make_env

    torch.set_num_threads(1)
    args = RLlibArgs(env=JOBSHOP, env_kwargs={"dataset": "jobshop/random-4x3"}, out=str(tmp_path),
                     iterations=2, num_env_runners=0, num_envs_per_env_runner=2, train_batch_size=128,
                     minibatch_size=64, num_epochs=1, hidden=16, layers=2, num_cpus=2, checkpoint_every=1)
    res = train_rllib(args)
    assert res.iterations == 2
    assert res.last_result["num_env_steps_sampled_lifetime"] >= 256
    # Tune wrote TensorBoard events with RLlib's metrics
    scalars = read_scalars(res.trial_dir)
    ret = scalars["ray/tune/env_runners/episode_return_mean"]
    assert [s for s, _ in ret] == [1, 2] and all(np.isfinite(v) for _, v in ret)
    assert "ray/tune/learners/default_policy/total_loss" in scalars
    # the checkpoint holds our module; the exported .pt acts identically and validly
    net, meta = load_rllib_net(res.checkpoint)
    assert meta["algo"] == "rllib-ppo" and net.mode == "action_node"
    from ray.rllib.core.rl_module.rl_module import RLModule

    module_dir = res.checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy"
    assert isinstance(RLModule.from_checkpoint(str(module_dir)), GraphRLModule)
    pt, _ = load_net(res.policy)
    env = make_env(JOBSHOP, {"instance": "ft06"})
    obs, info = env.reset(seed=0)
    a, b = TorchPolicy(net), load_policy(res.checkpoint)
    done = False
    while not done:
        act = a.act(obs, info)
        assert info["action_mask"][act] and act == b.act(obs, info) == TorchPolicy(pt).act(obs, info)
        obs, _, done, _, info = env.step(act)
    assert env.unwrapped.validate()["makespan"] == info["makespan"]


def test_rllib_arguments_are_checked():
    from schedgym.agents.rllib import RLlibArgs, train_rllib

    with pytest.raises(ValueError, match="--iterations"):
        train_rllib(RLlibArgs(iterations=0))
    with pytest.raises(ValueError, match="--num-env-runners"):
        train_rllib(RLlibArgs(num_env_runners=-1))
