"""Stable-Baselines3 glue: MaskablePPO (sb3-contrib) with the shared ``GraphPolicyNet``.

SB3's actor-critic is features extractor -> ``mlp_extractor`` -> ``action_net`` / ``value_net``. Node-level
action scores do not fit a flat ``action_net``, so the features extractor here runs the whole
``GraphPolicyNet`` and emits ``[masked logits (A), value (1)]``; ``MaskableGraphPolicy`` splits that
vector and uses identities for ``action_net``/``value_net``. MaskablePPO still applies the env's
``action_masks()`` on top (masked logits are already ``MASK_VALUE``, so the two agree).

SB3 casts every Box observation to float (REFERENCE §3.2): the net casts ``edge_index``/``action_node``
back to int64 (exact below 2^24 nodes).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from schedgym.agents.encoders import EncoderConfig
from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec


class GraphFeaturesExtractor(BaseFeaturesExtractor):
    """Runs ``GraphPolicyNet`` and returns ``[masked logits, value]`` (features_dim = A + 1)."""

    def __init__(self, observation_space: gym.spaces.Dict, net_config: dict[str, Any] | None = None) -> None:
        spec = ObsSpec.from_space(observation_space)
        super().__init__(observation_space, features_dim=spec.n_actions + 1)
        self.net = GraphPolicyNet(spec, NetConfig.from_dict(net_config or {}))

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, value, _ = self.net(observations)
        return torch.cat([logits, value.unsqueeze(-1)], -1)


class _Split(nn.Module):
    """Stands in for SB3's ``MlpExtractor``: features -> (logits, value)."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.latent_dim_pi, self.latent_dim_vf = n_actions, 1

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return features[:, : self.n_actions], features[:, self.n_actions:]

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.n_actions]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, self.n_actions:]


class MaskableGraphPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy whose logits and value come from one ``GraphPolicyNet`` (shared encoder)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space, lr_schedule: Any,
                 net_config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs["features_extractor_class"] = GraphFeaturesExtractor
        kwargs["features_extractor_kwargs"] = {"net_config": net_config or {}}
        kwargs["ortho_init"] = False  # the net initialises itself; SB3's gains target flat MLPs
        kwargs["share_features_extractor"] = True
        self.net_config = net_config or {}
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        self.mlp_extractor = _Split(int(self.action_space.n))  # type: ignore[attr-defined]
        self.action_net = nn.Identity()
        self.value_net = nn.Identity()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.pop("features_extractor_class", None)
        data.pop("features_extractor_kwargs", None)
        data["net_config"] = self.net_config
        return data

    @property
    def graph_net(self) -> GraphPolicyNet:
        return self.features_extractor.net  # type: ignore[union-attr,return-value]


@dataclass
class SB3Args:
    """Arguments of ``scripts/train_sb3.py`` / ``schedgym train --algo sb3``."""

    env: str = field(default="schedgym/JobShop-v0", metadata={"help": "environment id"})
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"dataset": "jobshop/random-10x10"},
                                       metadata={"help": "keyword arguments of gym.make"})
    out: str = field(default="runs/sb3", metadata={"help": "output directory (model.zip, policy.pt, tb/, "
                                                          "checkpoints/)"})
    total_timesteps: int = field(default=20_000, metadata={"help": "environment steps to train for"})
    n_envs: int = field(default=4, metadata={"help": "parallel envs"})
    subproc: bool = field(default=False, metadata={"help": "SubprocVecEnv instead of DummyVecEnv"})
    n_steps: int = field(default=256, metadata={"help": "steps per env per rollout"})
    batch_size: int = field(default=256, metadata={"help": "minibatch size"})
    n_epochs: int = field(default=4, metadata={"help": "PPO epochs per rollout"})
    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate"})
    gamma: float = field(default=1.0, metadata={"help": "discount (1.0: the job-shop return is -makespan)"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    clip_range: float = field(default=0.2, metadata={"help": "PPO clip range"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy bonus"})
    conv: str = field(default="gin", metadata={"help": "gin | sage | gat"})
    hidden: int = field(default=32, metadata={"help": "embedding width"})
    layers: int = field(default=3, metadata={"help": "message-passing layers"})
    directions: str = field(default="both", metadata={"help": "forward | both"})
    checkpoint_every: int = field(default=10_000, metadata={"help": "save a checkpoint every N env steps"})
    eval_every: int = field(default=0, metadata={"help": "greedy evaluation every N env steps (0 = off)"})
    eval_episodes: int = field(default=5, metadata={"help": "episodes per evaluation"})
    seed: int = field(default=0, metadata={"help": "seed"})
    resume: str = field(default="", metadata={"help": "a model.zip (or checkpoint zip) to continue from"})
    init: str = field(default="", metadata={
        "help": "a GraphPolicyNet .pt (e.g. an imitation-trained best.pt) to start from: its architecture "
                "replaces --conv/--hidden/--layers/--directions and its weights the random initialisation"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def net_config(self) -> dict[str, Any]:
        return NetConfig(EncoderConfig(conv=self.conv, hidden=self.hidden, layers=self.layers,
                                       directions=self.directions), head_hidden=self.hidden).to_dict()


@dataclass
class SB3Result:
    model: Path
    policy: Path
    tb_dir: Path
    timesteps: int
    wall_s: float


def _make_vec(args: SB3Args, n: int, seed: int) -> Any:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    env_id = args.env if ":" in args.env else f"schedgym:{args.env}"  # workers import schedgym themselves
    cls = SubprocVecEnv if args.subproc and n > 1 else DummyVecEnv
    return make_vec_env(env_id, n_envs=n, seed=seed, env_kwargs=dict(args.env_kwargs), vec_env_cls=cls)


def train_sb3(args: SB3Args) -> SB3Result:
    """Train MaskablePPO with the graph policy; TensorBoard in ``<out>/tb``, checkpoints, resume."""
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
    from stable_baselines3.common.callbacks import CheckpointCallback

    from schedgym.agents.checkpoint import load_checkpoint, save_net

    torch.set_num_threads(1)
    if args.init and args.resume:
        raise ValueError("--init starts a new run from a .pt; --resume continues a model.zip: pass one of them")
    for f in ("total_timesteps", "n_envs", "n_steps", "batch_size", "n_epochs", "checkpoint_every",
              "eval_episodes"):
        if getattr(args, f) < 1:
            raise ValueError(f"--{f.replace('_', '-')} must be >= 1, got {getattr(args, f)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(asdict(args), indent=1))
    env = _make_vec(args, args.n_envs, args.seed)
    if args.resume:
        model = MaskablePPO.load(args.resume, env=env, device="cpu", tensorboard_log=str(out / "tb"))
    else:
        init = load_checkpoint(args.init) if args.init else None
        model = MaskablePPO(
            MaskableGraphPolicy, env, learning_rate=args.lr, n_steps=args.n_steps, batch_size=args.batch_size,
            n_epochs=args.n_epochs, gamma=args.gamma, gae_lambda=args.gae_lambda, clip_range=args.clip_range,
            ent_coef=args.ent_coef, policy_kwargs={"net_config": init["net"] if init else args.net_config()},
            tensorboard_log=str(out / "tb"), seed=args.seed, device="cpu", verbose=0,
        )
        if init is not None:
            model.policy.graph_net.load_state_dict(init["state_dict"])  # type: ignore[attr-defined]
    callbacks: list[Any] = [CheckpointCallback(max(1, args.checkpoint_every // args.n_envs),
                                               str(out / "checkpoints"), name_prefix="ppo")]
    if args.eval_every:
        callbacks.append(MaskableEvalCallback(
            _make_vec(args, 1, args.seed + 10_000), n_eval_episodes=args.eval_episodes,
            eval_freq=max(1, args.eval_every // args.n_envs), deterministic=True,
            best_model_save_path=str(out / "best"), verbose=0))
    t0 = time.perf_counter()
    model.learn(args.total_timesteps, callback=callbacks, tb_log_name="ppo",
                reset_num_timesteps=not args.resume, progress_bar=args.progress and _has_rich())
    wall = time.perf_counter() - t0
    model.save(out / "model.zip")
    policy_pt = save_net(model.policy.graph_net, out / "policy.pt",  # type: ignore[attr-defined]
                         {"env_id": args.env, "env_kwargs": args.env_kwargs, "algo": "sb3-maskableppo",
                          "init": args.init,
                          "timesteps": int(model.num_timesteps), "wall_s": wall})
    env.close()
    return SB3Result(out / "model.zip", policy_pt, out / "tb", int(model.num_timesteps), wall)


def load_sb3_net(path: str | Path) -> tuple[GraphPolicyNet, dict[str, Any]]:
    """The ``GraphPolicyNet`` inside a MaskablePPO zip written by ``train_sb3``."""
    from sb3_contrib import MaskablePPO

    model = MaskablePPO.load(str(path), device="cpu")
    if not isinstance(model.policy, MaskableGraphPolicy):
        raise ValueError(f"{path}: a MaskablePPO model, but not with schedgym's MaskableGraphPolicy")
    return model.policy.graph_net.eval(), {"algo": "sb3-maskableppo", "timesteps": int(model.num_timesteps)}


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True
