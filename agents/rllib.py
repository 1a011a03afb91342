"""RLlib (2.60, new API stack) glue: a ``TorchRLModule`` around the shared ``GraphPolicyNet``, and PPO
training through Ray Tune, locally or on an existing Ray cluster (``address``).

The module returns the masked logits as ``ACTION_DIST_INPUTS`` and the graph embedding as ``EMBEDDINGS``;
``compute_values`` maps that embedding through the net's value head, so PPO's learner runs the encoder
once per minibatch. Dict observations reach the module as dicts of tensors (int64 ``edge_index`` intact).

Every worker must be able to ``import schedgym`` (install the package on every node, see the README):
envs are created from the ``"schedgym:<id>"`` string, which imports and registers schedgym there.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from schedgym.agents.encoders import EncoderConfig
from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec

MODULE_SUBDIR = Path("learner_group") / "learner" / "rl_module" / "default_policy"


class GraphRLModule(TorchRLModule, ValueFunctionAPI):
    """PPO-ready RLModule: masked categorical logits over the env's actions and a value head.

    ``model_config = {"net_config": NetConfig.to_dict()}`` (missing keys take the defaults).
    """

    def setup(self) -> None:
        spec = ObsSpec.from_space(self.observation_space)
        self.net = GraphPolicyNet(spec, NetConfig.from_dict((self.model_config or {}).get("net_config", {})))

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        logits, _, graph = self.net(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: graph}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is None:
            embeddings = self.net(batch[Columns.OBS])[2]
        return self.net.value_head(embeddings).squeeze(-1)


@dataclass
class RLlibArgs:
    """Arguments of ``scripts/train_rllib.py`` / ``schedgym train --algo rllib``."""

    env: str = field(default="schedgym/JobShop-v0", metadata={"help": "environment id"})
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"dataset": "jobshop/random-10x10"},
                                       metadata={"help": "keyword arguments of gym.make on every env runner"})
    out: str = field(default="runs/rllib", metadata={"help": "Tune storage directory (made absolute)"})
    name: str = field(default="ppo", metadata={"help": "Tune experiment name"})
    address: str = field(default="", metadata={"help": "Ray cluster to join ('auto' or host:port); "
                                                      "'' = start a local Ray"})
    num_cpus: int = field(default=0, metadata={"help": "CPUs of a local Ray instance (0 = Ray's default)"})
    num_env_runners: int = field(default=1, metadata={"help": "sampling actors (0 = sample in the driver)"})
    num_envs_per_env_runner: int = field(default=2, metadata={"help": "envs vectorised inside each runner"})
    num_learners: int = field(default=0, metadata={"help": "learner actors (0 = one learner in the driver)"})
    num_gpus_per_learner: float = field(default=0.0, metadata={"help": "GPUs per learner actor"})
    iterations: int = field(default=10, metadata={"help": "training iterations"})
    time_budget_s: float = field(default=0.0, metadata={"help": "stop after this many seconds (0 = none)"})
    train_batch_size: int = field(default=1024, metadata={"help": "env steps per learner per iteration"})
    minibatch_size: int = field(default=256, metadata={"help": "SGD minibatch"})
    num_epochs: int = field(default=4, metadata={"help": "epochs per iteration"})
    lr: float = field(default=3e-4, metadata={"help": "learning rate"})
    gamma: float = field(default=1.0, metadata={"help": "discount"})
    lambda_: float = field(default=0.95, metadata={"help": "GAE lambda"})
    entropy_coeff: float = field(default=0.01, metadata={"help": "entropy bonus"})
    conv: str = field(default="gin", metadata={"help": "gin | sage | gat"})
    hidden: int = field(default=32, metadata={"help": "embedding width"})
    layers: int = field(default=3, metadata={"help": "message-passing layers"})
    directions: str = field(default="both", metadata={"help": "forward | both"})
    checkpoint_every: int = field(default=5, metadata={"help": "checkpoint every N iterations (and at end)"})
    seed: int = field(default=0, metadata={"help": "seed"})

    def net_config(self) -> dict[str, Any]:
        return NetConfig(EncoderConfig(conv=self.conv, hidden=self.hidden, layers=self.layers,
                                       directions=self.directions), head_hidden=self.hidden).to_dict()


@dataclass
class RLlibResult:
    checkpoint: Path
    policy: Path
    trial_dir: Path
    iterations: int
    wall_s: float
    last_result: dict[str, Any]


def ppo_config(args: RLlibArgs) -> Any:
    """The ``PPOConfig`` for ``args`` (no Ray calls; usable with ``build_algo()`` or Tune)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    env_id = args.env if ":" in args.env else f"schedgym:{args.env}"
    return (
        PPOConfig()
        .environment(env_id, env_config=dict(args.env_kwargs))
        .env_runners(num_env_runners=args.num_env_runners,
                     num_envs_per_env_runner=args.num_envs_per_env_runner)
        .learners(num_learners=args.num_learners, num_gpus_per_learner=args.num_gpus_per_learner)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=GraphRLModule,
                                               model_config={"net_config": args.net_config()}))
        .training(train_batch_size_per_learner=args.train_batch_size, minibatch_size=args.minibatch_size,
                  num_epochs=args.num_epochs, lr=args.lr, gamma=args.gamma, lambda_=args.lambda_,
                  entropy_coeff=args.entropy_coeff)
        .debugging(seed=args.seed)
    )


def train_rllib(args: RLlibArgs) -> RLlibResult:
    """PPO under Ray Tune: TensorBoard events, ``result.json`` and checkpoints in ``<out>/<name>/<trial>/``.

    Joins ``args.address`` when given (the cluster's own CPUs/GPUs are used), else starts a local Ray.
    Afterwards the trained net is also written as ``<out>/<name>/policy.pt`` for ``schedgym eval``.
    """
    import ray
    from ray import tune

    from schedgym.agents.checkpoint import save_net

    _check(args)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # Ray sets it for workers, not for the driver
    torch.set_num_threads(1)
    out = Path(args.out).resolve()  # Tune chdirs into the trial directory
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}_args.json").write_text(json.dumps(asdict(args), indent=1))
    started = False
    if not ray.is_initialized():
        init: dict[str, Any] = {"include_dashboard": False,
                                "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1"}}}
        if args.address:
            init["address"] = args.address
        elif args.num_cpus:
            init["num_cpus"] = args.num_cpus
        ray.init(**init)
        started = True
    try:
        stop: dict[str, Any] = {"training_iteration": args.iterations}
        if args.time_budget_s > 0:
            stop["time_total_s"] = args.time_budget_s
        t0 = time.perf_counter()
        tuner = tune.Tuner(
            "PPO", param_space=ppo_config(args),
            run_config=tune.RunConfig(
                name=args.name, storage_path=str(out), stop=stop, verbose=1,
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=args.checkpoint_every,
                                                        checkpoint_at_end=True)),
        )
        results = tuner.fit()
        wall = time.perf_counter() - t0
        res = results[0]
        if res.error is not None:
            raise RuntimeError(f"RLlib training failed: {res.error}")
        ckpt = Path(res.checkpoint.path)
        net, _ = load_rllib_net(ckpt)
        it = int(res.metrics.get("training_iteration", 0))
        policy = save_net(net, out / args.name / "policy.pt",
                          {"env_id": args.env, "env_kwargs": args.env_kwargs, "algo": "rllib-ppo",
                           "iterations": it, "wall_s": wall, "checkpoint": str(ckpt)})
        return RLlibResult(ckpt, policy, Path(res.path), it, wall, dict(res.metrics))
    finally:
        if started:
            ray.shutdown()


def load_rllib_net(path: str | Path) -> tuple[GraphPolicyNet, dict[str, Any]]:
    """The ``GraphPolicyNet`` of an RLlib checkpoint: the algorithm directory or its RLModule directory."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    p = Path(path).resolve()
    module_dir = p / MODULE_SUBDIR if (p / MODULE_SUBDIR).is_dir() else p
    if not (module_dir / "module_state.pt").exists() and not any(module_dir.glob("module_state*")):
        raise ValueError(f"{p}: not an RLlib checkpoint (no {MODULE_SUBDIR}/module_state*)")
    module = RLModule.from_checkpoint(str(module_dir))
    if not isinstance(module, GraphRLModule):
        raise ValueError(f"{p}: RLModule is {type(module).__name__}, not schedgym's GraphRLModule")
    return module.net.eval(), {"algo": "rllib-ppo", "checkpoint": str(p)}


def _check(args: RLlibArgs) -> None:
    for f in ("iterations", "train_batch_size", "minibatch_size", "num_epochs", "num_envs_per_env_runner",
              "checkpoint_every"):
        if getattr(args, f) < 1:
            raise ValueError(f"--{f.replace('_', '-')} must be >= 1, got {getattr(args, f)}")
    for f in ("num_env_runners", "num_learners", "num_cpus"):
        if getattr(args, f) < 0:
            raise ValueError(f"--{f.replace('_', '-')} must be >= 0, got {getattr(args, f)}")
