"""DAgger (Ross, Gordon, Bagnell, AISTATS 2011): imitate a teacher policy in the states the student visits.

The first ``teacher_rounds`` rounds roll out the teacher and record (observation, teacher action); every
later round rolls out the current student (greedy) and asks the teacher what it would do in each visited
state; the net is trained by masked cross-entropy on the aggregate of all rounds (with ``soft_temperature``
> 0, against a softmax over the teacher's action costs instead of its one action). Student rollouts fix
the compounding-error problem of plain behaviour cloning: the student learns to recover from its own
mistakes (when the teacher's choices can be inferred from what the student observes).

The teacher is a registered baseline of the env or one of ``TEACHERS`` (e.g. the clairvoyant
``lookahead`` router of ``schedgym.agents.lookahead``, which reads the simulator state, so it can only
teach on simulated envs). After each round the student is validated greedily on held-out training
instances (seeds no round uses) by the env's validated objective (lower is better; the episode return
when the env has none); ``<out>/best.pt`` is the best validated round, ``<out>/last.pt`` the last.
TensorBoard logs in ``<out>/tb``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import torch

from schedgym.agents.checkpoint import save_net
from schedgym.agents.encoders import EncoderConfig
from schedgym.agents.losses import soft_imitation_loss
from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec, obs_to_torch, stack_obs
from schedgym.agents.rollout import make_env
from schedgym.agents.selflabel import _train_seed, validate

# Teachers that are not baselines (privileged: they read the simulator), as "module:Class".
TEACHERS = {"lookahead": "schedgym.agents.lookahead:LookaheadRouter"}


@dataclass
class DaggerArgs:
    """Arguments of ``train_dagger`` (and of ``schedgym train --algo dagger``)."""

    env: str = field(default="schedgym/LLMServing-v0", metadata={"help": "environment id"})
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments of gym.make"})
    out: str = field(default="runs/dagger", metadata={"help": "output directory (checkpoints, tb/)"})
    teacher: str = field(default="lookahead", metadata={
        "help": f"teacher: a baseline name of the env or one of {sorted(TEACHERS)}"})
    teacher_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "options of the teacher, e.g. {\"horizon\": 32, \"power\": 2} for lookahead"})
    soft_temperature: float = field(default=0.0, metadata={
        "help": "> 0: train on soft labels softmax(-(cost - min cost) / T) over the teacher's action costs "
                "(teachers with action_costs(), e.g. lookahead); 0: the teacher's action (hard labels)"})
    rounds: int = field(default=6, metadata={"help": "DAgger rounds"})
    teacher_rounds: int = field(default=1, metadata={
        "help": "the first N rounds roll out the teacher (behaviour cloning); later ones the student"})
    episodes_per_round: int = field(default=8, metadata={"help": "training episodes labelled per round"})
    epochs: int = field(default=8, metadata={"help": "passes over the aggregated data after each round"})
    batch: int = field(default=256, metadata={"help": "minibatch size"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    conv: str = field(default="mlp", metadata={"help": "gin | sage | gat | dense_gin | dense_sage | mlp"})
    hidden: int = field(default=32, metadata={"help": "embedding width"})
    layers: int = field(default=1, metadata={"help": "message-passing layers (mlp: hidden layers)"})
    directions: str = field(default="forward", metadata={"help": "forward | both"})
    candidate_context: bool = field(default=True, metadata={
        "help": "candidate scores also see the max/mean over all candidates"})
    val_episodes: int = field(default=8, metadata={"help": "held-out validation instances (greedy)"})
    time_budget_s: float = field(default=0.0, metadata={"help": "stop starting rounds after this many "
                                                                "seconds of --budget-clock, 0 = none"})
    budget_clock: str = field(default="cpu", metadata={"help": "wall | cpu (this process's CPU time)"})
    seed: int = field(default=0, metadata={"help": "seed of instances and initial weights"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def net_config(self) -> NetConfig:
        return NetConfig(EncoderConfig(conv=self.conv, hidden=self.hidden, layers=self.layers,
                                       directions=self.directions), head_hidden=self.hidden,
                         candidate_context=self.candidate_context)


@dataclass
class DaggerResult:
    """What a DAgger run produced."""

    checkpoint: Path
    best_checkpoint: Path
    tb_dir: Path
    rounds: int
    samples: int
    wall_s: float
    cpu_s: float
    history: list[dict[str, float]] = field(default_factory=list)


def make_teacher(env_id: str, name: str, **kwargs: Any) -> Any:
    """A teacher ``Policy``: one of ``TEACHERS`` or a registered baseline of ``env_id``."""
    if name in TEACHERS:
        module, cls = TEACHERS[name].split(":")
        return getattr(import_module(module), cls)(**kwargs)
    from schedgym.policy import make_policy

    return make_policy(env_id, name, **kwargs)


def train_dagger(args: DaggerArgs, on_round: Callable[[int, dict[str, float]], None] | None = None
                 ) -> DaggerResult:
    """Train a ``GraphPolicyNet`` by DAgger; returns the checkpoints and the per-round curve."""
    from torch.utils.tensorboard import SummaryWriter

    _check(args)
    torch.set_num_threads(1)  # small nets on CPU: one thread is 10-20x faster here (REFERENCE §3.2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(asdict(args), indent=1))
    torch.manual_seed(args.seed)
    env = make_env(args.env, args.env_kwargs)
    val_envs = [make_env(args.env, args.env_kwargs) for _ in range(min(args.val_episodes, 8))]
    net = GraphPolicyNet(ObsSpec.from_space(env.observation_space), args.net_config())
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    teacher = make_teacher(args.env, args.teacher, **args.teacher_kwargs)
    rng = np.random.default_rng(args.seed)
    writer = SummaryWriter(str(out / "tb"))
    states: list[dict[str, np.ndarray]] = []
    labels: list[np.ndarray] = []  # per state: a distribution over actions (one-hot for hard labels)
    history: list[dict[str, float]] = []
    best_score, best, last = np.inf, out / "best.pt", out / "last.pt"
    t0, c0 = time.perf_counter(), time.process_time()
    bar = _bar(args)
    k = 0

    def meta(rounds: int) -> dict[str, Any]:
        return {"env_id": args.env, "env_kwargs": args.env_kwargs, "algo": "dagger", "teacher": args.teacher,
                "teacher_kwargs": args.teacher_kwargs, "rounds": rounds, "samples": len(states),
                "best_val": best_score, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}

    try:
        while k < args.rounds and not _out_of_time(args, t0, c0):
            agree = []
            for e in range(args.episodes_per_round):
                seed = _train_seed(args.seed, k * args.episodes_per_round + e)
                s, a, match = _label_episode(env, teacher, net, seed, k < args.teacher_rounds, args.soft_temperature)
                states += s
                labels += a
                agree.append(match)
                if bar is not None:
                    bar.set_postfix_str(f"round {k}: labelled episode {e + 1}/{args.episodes_per_round}")
                    bar.refresh()
            loss = _fit(net, opt, states, labels, args, rng)
            val = validate(net, val_envs, args.val_episodes)
            score = val.get("mean_objective", -val["mean_return"])
            k += 1
            stats = {"round": k, "samples": len(states), "loss": loss, "student_agreement": float(np.mean(agree)),
                     **{f"val_{n}": v for n, v in val.items()}, "wall_s": time.perf_counter() - t0,
                     "cpu_s": time.process_time() - c0}
            for n, v in stats.items():
                if n != "round":
                    writer.add_scalar(f"dagger/{n}", v, k)
            history.append(stats)
            if score < best_score:
                best_score = score
                save_net(net, best, meta(k))
            save_net(net, last, meta(k), opt)
            if on_round is not None:
                on_round(k, stats)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"val {score:.3f} best {best_score:.3f} loss {loss:.3f}")
    finally:
        if bar is not None:
            bar.close()
        writer.close()
    return DaggerResult(last, best, out / "tb", k, len(states), time.perf_counter() - t0,
                        time.process_time() - c0, history)


@torch.no_grad()
def _label_episode(env: Any, teacher: Any, student: GraphPolicyNet, seed: int, follow_teacher: bool,
                   temperature: float) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray], float]:
    """One episode driven by the teacher or by the greedy student, every state labelled by the teacher;
    returns (states, target distributions, fraction of states where the student chose a teacher's best)."""
    obs, info = env.reset(seed=seed)
    teacher.reset(env, seed=seed)
    student.eval()
    n_actions = int(np.asarray(obs["action_mask"]).shape[-1])
    states, targets, agree = [], [], 0
    done = False
    while not done:
        target, best = _teacher_target(teacher, obs, info, n_actions, temperature)
        states.append(obs)
        targets.append(target)
        b = int(torch.argmax(student(obs_to_torch(obs))[0][0]))
        agree += b in best
        obs, _, term, trunc, info = env.step(best[0] if follow_teacher else b)
        done = term or trunc
    return states, targets, agree / len(targets)


def _teacher_target(teacher: Any, obs: dict[str, np.ndarray], info: dict[str, Any], n_actions: int,
                    temperature: float) -> tuple[np.ndarray, list[int]]:
    """(target distribution over actions, the teacher's best actions; the first is the one it takes)."""
    target = np.zeros(n_actions, np.float32)
    if temperature <= 0:
        a = int(teacher.act(obs, info))
        target[a] = 1.0
        return target, [a]
    costs = np.asarray(teacher.action_costs(obs, info), np.float64)
    valid = np.isfinite(costs)
    if not valid.any():
        raise RuntimeError("teacher returned no finite action cost")
    lo = costs[valid].min()
    w = np.where(valid, np.exp(-(np.where(valid, costs, lo) - lo) / temperature), 0.0)
    target[:] = w / w.sum()
    return target, [int(i) for i in np.flatnonzero(valid & (costs == lo))]


def _fit(net: GraphPolicyNet, opt: torch.optim.Optimizer, states: list[dict[str, np.ndarray]],
         labels: list[np.ndarray], args: DaggerArgs, rng: np.random.Generator) -> float:
    """``args.epochs`` passes of masked cross-entropy against the target distributions; returns the last
    epoch's mean loss."""
    net.train()
    data = obs_to_torch(stack_obs(states))
    target = torch.from_numpy(np.stack(labels))
    losses: list[float] = []
    for _ in range(args.epochs):
        losses = []
        order = torch.from_numpy(rng.permutation(len(labels)))
        for s in range(0, len(order), args.batch):
            idx = order[s: s + args.batch]
            batch = {k: v[idx] for k, v in data.items()}
            loss = soft_imitation_loss(net(batch)[0], batch["action_mask"], target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    net.eval()
    return float(np.mean(losses))


def _out_of_time(args: DaggerArgs, t0: float, c0: float) -> bool:
    if args.time_budget_s <= 0:
        return False
    used = time.process_time() - c0 if args.budget_clock == "cpu" else time.perf_counter() - t0
    return used >= args.time_budget_s


def _bar(args: DaggerArgs) -> Any:
    if not args.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=args.rounds, desc="dagger", unit="round", disable=None)


def _check(args: DaggerArgs) -> None:
    for f in ("rounds", "episodes_per_round", "epochs", "batch", "val_episodes"):
        if getattr(args, f) < 1:
            raise ValueError(f"--{f.replace('_', '-')} must be >= 1, got {getattr(args, f)}")
    if args.teacher_rounds < 0:
        raise ValueError(f"--teacher-rounds must be >= 0, got {args.teacher_rounds}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.budget_clock not in ("wall", "cpu"):
        raise ValueError(f"--budget-clock must be 'wall' or 'cpu', got {args.budget_clock!r}")
    if args.time_budget_s < 0:
        raise ValueError(f"--time-budget-s must be >= 0, got {args.time_budget_s}")
