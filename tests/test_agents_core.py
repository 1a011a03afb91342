"""Agent maths against hand-computed cases: masking, losses, edge flattening, encoders, heads, checkpoints."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from agents_toy_env import ENV_IDS, register

import schedgym  # noqa: F401
from schedgym.agents.checkpoint import load_net, save_net
from schedgym.agents.encoders import EncoderConfig, dense_adjacency, flatten_edges
from schedgym.agents.losses import gae, imitation_loss
from schedgym.agents.masking import (
    MASK_VALUE,
    apply_mask,
    masked_entropy,
    masked_log_softmax,
    masked_max,
    masked_mean,
)
from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec, obs_to_torch, stack_obs

torch.set_num_threads(1)
register()
JOBSHOP = "schedgym/JobShop-v0"


def small_net(space: gym.spaces.Dict, conv: str = "gin", seed: int = 0) -> GraphPolicyNet:
    torch.manual_seed(seed)
    return GraphPolicyNet(ObsSpec.from_space(space), NetConfig(EncoderConfig(conv=conv, hidden=16, layers=2),
                                                               head_hidden=16)).eval()


# ----------------------------------------------------------------------------- masking
def test_apply_mask_and_log_softmax_hand_computed():
    logits = torch.tensor([[0.0, 5.0, 0.0]])
    mask = torch.tensor([[1, 0, 1]], dtype=torch.int8)
    assert apply_mask(logits, mask).tolist() == [[0.0, MASK_VALUE, 0.0]]
    logp = masked_log_softmax(logits, mask)
    assert logp[0, 0].item() == pytest.approx(math.log(0.5))
    assert logp[0, 2].item() == pytest.approx(math.log(0.5))
    assert logp.exp()[0, 1].item() == 0.0  # exactly zero probability


def test_masked_entropy_hand_computed_and_no_nan():
    logits = torch.zeros(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 0]])
    ent = masked_entropy(logits, mask)
    assert ent.tolist() == pytest.approx([math.log(2), math.log(4), 0.0], abs=1e-6)
    none = masked_entropy(torch.zeros(1, 3), torch.zeros(1, 3))  # a terminal obs: no valid action
    assert torch.isfinite(none).all()


def test_masked_mean_and_max_hand_computed():
    x = torch.tensor([[[1.0, 2.0], [3.0, 40.0], [5.0, 6.0]]])
    mask = torch.tensor([[1, 0, 1]])
    assert masked_mean(x, mask, 1).tolist() == [[3.0, 4.0]]
    assert masked_max(x, mask, 1).tolist() == [[5.0, 6.0]]
    empty = torch.zeros(1, 3)
    assert masked_mean(x, empty, 1).tolist() == [[0.0, 0.0]]
    assert masked_max(x, empty, 1).tolist() == [[0.0, 0.0]]


# ----------------------------------------------------------------------------- losses
def test_imitation_loss_hand_computed_and_rejects_masked_targets():
    logits = torch.tensor([[0.0, 0.0, 9.0], [math.log(3.0), 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    loss = imitation_loss(logits, mask, torch.tensor([1, 0]))
    # row 0: uniform over 2 valid -> -log 1/2; row 1: p(0) = 3/5
    assert loss.item() == pytest.approx((math.log(2) - math.log(3 / 5)) / 2)
    with pytest.raises(ValueError, match="masked out"):
        imitation_loss(logits, mask, torch.tensor([2, 0]))


def test_gae_hand_computed():
    adv, ret = gae(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.5]), last_value=7.0, terminated=True,
                   gamma=1.0, lam=1.0)
    assert adv.tolist() == pytest.approx([1.5, 0.5])  # last_value ignored: the episode ended
    assert ret.tolist() == pytest.approx([2.0, 1.0])
    adv, _ = gae(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.5]), last_value=2.0, terminated=False,
                 gamma=0.9, lam=0.5)
    # delta1 = 1 + 0.9*2 - 0.5 = 2.3 ; delta0 = 1 + 0.9*0.5 - 0.5 = 0.95 ; A0 = 0.95 + 0.45*2.3
    assert adv.tolist() == pytest.approx([0.95 + 0.45 * 2.3, 2.3])


def test_gae_matches_sb3_rollout_buffer():
    """Our GAE and SB3's (which MaskablePPO trains with) agree on a terminated and a truncated trajectory."""
    from stable_baselines3.common.buffers import RolloutBuffer

    rng = np.random.default_rng(0)
    r, v = rng.normal(size=6).astype(np.float32), rng.normal(size=6).astype(np.float32)
    for terminated in (True, False):
        buf = RolloutBuffer(6, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2), gamma=0.97,
                            gae_lambda=0.9)
        for t in range(6):
            buf.add(np.zeros((1, 1)), np.zeros((1, 1)), r[t:t + 1], np.array([t == 0]),
                    torch.tensor([v[t]]), torch.zeros(1))
        buf.compute_returns_and_advantage(torch.tensor([0.3]), np.array([terminated]))
        adv, ret = gae(torch.from_numpy(r), torch.from_numpy(v), 0.3, terminated, gamma=0.97, lam=0.9)
        np.testing.assert_allclose(buf.advantages[:, 0], adv.numpy(), rtol=1e-5)
        np.testing.assert_allclose(buf.returns[:, 0], ret.numpy(), rtol=1e-5)


# ----------------------------------------------------------------------------- encoders
def test_dense_adjacency_counts_unmasked_edges():
    ei = torch.tensor([[[0, 1, 1, 2], [1, 2, 2, 0]]])  # 0->1, 1->2 twice, 2->0 (masked)
    adj = dense_adjacency(ei, torch.tensor([[1, 1, 1, 0]]), n_nodes=3)
    assert adj[0].tolist() == [[0, 0, 0], [1, 0, 0], [0, 2, 0]]  # adj[dst, src]


def test_flatten_edges_offsets_samples_and_sinks_masked_edges():
    ei = torch.tensor([[[0, 1], [1, 2]], [[2, 0], [0, 0]]])  # (B=2, 2, E=2)
    em = torch.tensor([[1, 1], [1, 0]])
    flat = flatten_edges(ei, em, n_nodes=3)
    assert flat.tolist() == [[0, 1, 5, 6], [1, 2, 3, 6]]  # sample 1 offset by 3; masked edge -> sink 6


def permute_nodes(obs: dict[str, np.ndarray], perm: np.ndarray) -> dict[str, np.ndarray]:
    """The same graph with node slot i moved to slot perm[i] (edges and action_node renumbered)."""
    out = dict(obs)
    for k in ("node_features", "node_mask"):
        moved = np.empty_like(obs[k])
        moved[perm] = obs[k]
        out[k] = moved
    out["edge_index"] = perm[obs["edge_index"]]
    out["action_node"] = perm[obs["action_node"]]
    return out


@pytest.mark.parametrize("conv", ["gin", "sage", "gat", "dense_gin", "dense_sage", "mlp"])
def test_padding_and_node_numbering_do_not_change_the_policy(conv):
    """ft06 padded to 6 and to 9 jobs, and with its node slots shuffled, gives the same logits and value
    along a trajectory (machine-order edges appear as it goes). (max_machines stays 6: the env normalises
    a feature by it.)"""
    envs = [gym.make(JOBSHOP, instance="ft06", max_jobs=mj).unwrapped for mj in (6, 9)]
    net = small_net(envs[0].observation_space, conv)
    obs = [e.reset(seed=0)[0] for e in envs]
    rng = np.random.default_rng(1)
    perm = rng.permutation(obs[1]["node_mask"].size)
    for _ in range(12):
        with torch.no_grad():
            (l0, v0, _), (l1, v1, _), (l2, v2, _) = (
                net(obs_to_torch(o)) for o in (obs[0], obs[1], permute_nodes(obs[1], perm)))
        np.testing.assert_allclose(l0[0].numpy(), l1[0, :6].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(l1.numpy(), l2.numpy(), rtol=1e-4, atol=1e-5)
        assert (l1[0, 6:] == MASK_VALUE).all()
        assert v0.item() == pytest.approx(v1.item(), rel=1e-4, abs=1e-5)
        assert v1.item() == pytest.approx(v2.item(), rel=1e-4, abs=1e-5)
        a = int(rng.choice(np.flatnonzero(obs[0]["action_mask"])))
        obs = [e.step(a)[0] for e in envs]


@pytest.mark.parametrize("conv", ["gin", "dense_sage", "mlp"])
def test_masked_edges_and_padded_nodes_are_ignored(conv):
    env = gym.make(JOBSHOP, instance="ft06", max_jobs=7, max_machines=7).unwrapped
    net = small_net(env.observation_space, conv)
    obs, _ = env.reset(seed=0)
    noisy = {k: v.copy() for k, v in obs.items()}
    free = np.flatnonzero(noisy["edge_mask"] == 0)
    noisy["edge_index"][:, free] = np.random.default_rng(0).integers(0, 49, (2, free.size))
    noisy["edge_features"][free] = 5.0
    pad = np.flatnonzero(noisy["node_mask"] == 0)
    noisy["node_features"][pad] = 3.0
    with torch.no_grad():
        a, b = net(obs_to_torch(obs)), net(obs_to_torch(noisy))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_batch_equals_one_by_one():
    env = gym.make(JOBSHOP, dataset="jobshop/random-6x4").unwrapped
    net = small_net(env.observation_space, "sage")
    obs = [env.reset(seed=s)[0] for s in range(4)]
    with torch.no_grad():
        batch = net(obs_to_torch(stack_obs(obs)))[0]
        single = torch.cat([net(obs_to_torch(o))[0] for o in obs])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout,mode,n_actions", [("node", "node", 6), ("action_node", "action_node", 6),
                                                   ("graph", "graph", 2)])
def test_action_modes_on_the_synthetic_env(layout, mode, n_actions):
    env = gym.make(ENV_IDS[layout]).unwrapped
    net = small_net(env.observation_space)
    assert net.mode == mode
    obs, info = env.reset(seed=3)
    with torch.no_grad():
        logits, value, graph = net(obs_to_torch(stack_obs([obs, obs])))
    assert logits.shape == (2, n_actions) and value.shape == (2,) and graph.shape == (2, 16)
    masked = obs["action_mask"] == 0
    assert (logits[:, masked] == MASK_VALUE).all()
    assert (logits[:, ~masked] > MASK_VALUE / 2).all()


def test_action_node_scores_follow_the_referenced_node():
    """Permuting which node each action refers to permutes the scores the same way."""
    env = gym.make(ENV_IDS["action_node"]).unwrapped
    net = small_net(env.observation_space)
    obs, _ = env.reset(seed=0)
    perm = np.array([3, 0, 5, 1, 4, 2])
    moved = dict(obs, action_node=obs["action_node"][perm], action_mask=obs["action_mask"][perm])
    with torch.no_grad():
        a, b = net(obs_to_torch(obs))[0][0], net(obs_to_torch(moved))[0][0]
    torch.testing.assert_close(b, a[perm])


def test_obs_spec_rejects_foreign_spaces():
    with pytest.raises(TypeError, match="Dict"):
        ObsSpec.from_space(gym.spaces.Box(0, 1, (3,)))
    with pytest.raises(ValueError, match="edge_index"):
        ObsSpec.from_space(gym.spaces.Dict({"node_features": gym.spaces.Box(0, 1, (3, 2))}))
    with pytest.raises(ValueError, match="conv"):
        EncoderConfig(conv="gcn")


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    env = gym.make(JOBSHOP, instance="ft06").unwrapped
    net = small_net(env.observation_space, "gat", seed=5)
    path = save_net(net, tmp_path / "n.pt", {"algo": "test", "steps": 3})
    loaded, meta = load_net(path)
    assert meta == {"algo": "test", "steps": 3}
    assert loaded.cfg == net.cfg and loaded.spec == net.spec
    obs, _ = env.reset(seed=0)
    with torch.no_grad():
        torch.testing.assert_close(net(obs_to_torch(obs))[0], loaded(obs_to_torch(obs))[0], rtol=0, atol=0)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a schedgym graph-policy checkpoint"):
        load_net(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError):
        load_net(tmp_path / "missing.pt")
