"""Self-labelling training (Corsini, Porrello, Calderara, Dell'Amico, NeurIPS 2024), for any padded-graph env.

Each iteration draws a training instance (``env.reset(seed)``), samples ``samples`` complete solutions
with the current policy on copies of the env, labels the best one (highest episode return; for
JobShop-v0 that is the lowest makespan) and takes a gradient step on the cross-entropy of its actions in
its own states. No critic, no reward shaping: the policy imitates its own best guess and improves as
its samples do.

Optionally the net is first warm-started by behaviour cloning a registered baseline for a few episodes
(``warm_start="mwkr"``): the reported figures say whether that was used.

Everything is logged to TensorBoard (``<out>/tb``); ``<out>/last.pt`` (with the optimizer, for
``resume``) and ``<out>/best.pt`` (best greedy validation return on held-out seeds) are
``schedgym.agents.checkpoint`` files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from schedgym.agents.checkpoint import load_checkpoint, save_net
from schedgym.agents.encoders import EncoderConfig
from schedgym.agents.losses import imitation_loss
from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec, obs_to_torch, stack_obs
from schedgym.agents.rollout import make_env, objective_of, replay, sample_episodes

VAL_SEED0 = 10**9  # validation instances come from seeds no training iteration uses


@dataclass
class SelfLabelArgs:
    """Arguments of ``train_selflabel`` (and of ``schedgym train --algo selflabel``)."""

    env: str = field(default="schedgym/JobShop-v0", metadata={"help": "environment id"})
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"dataset": "jobshop/random-10x10"},
                                       metadata={"help": "keyword arguments of gym.make"})
    out: str = field(default="runs/selflabel", metadata={"help": "output directory (checkpoints, tb/)"})
    samples: int = field(default=32, metadata={"help": "solutions sampled per training instance"})
    instances_per_update: int = field(default=1, metadata={"help": "instances per gradient step"})
    iterations: int = field(default=1000, metadata={
        "help": "self-labelling iterations (stop here or at --time-budget-s, whichever first; 0 = clone)"})
    time_budget_s: float = field(default=0.0, metadata={"help": "time budget in seconds, 0 = none"})
    budget_clock: str = field(default="wall", metadata={"help": "what --time-budget-s counts: wall | cpu "
                                                                "(this process's CPU time)"})
    lr: float = field(default=2e-4, metadata={"help": "Adam learning rate"})
    conv: str = field(default="gin", metadata={"help": "gin | sage | gat"})
    hidden: int = field(default=32, metadata={"help": "embedding width"})
    layers: int = field(default=3, metadata={"help": "message-passing layers"})
    directions: str = field(default="both", metadata={"help": "forward | both (also along reversed edges)"})
    warm_start: str = field(default="", metadata={"help": "baseline to clone first (e.g. mwkr); '' = none"})
    warm_start_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "options of the cloned baseline, e.g. {\"time_limit\": 2, \"num_workers\": 1} for cpsat"})
    warm_start_episodes: int = field(default=0, metadata={"help": "episodes of the baseline to clone"})
    warm_start_epochs: int = field(default=8, metadata={"help": "passes over the cloned episodes"})
    warm_start_lr: float = field(default=1e-3, metadata={"help": "learning rate of the cloning phase"})
    warm_start_budget_frac: float = field(default=0.5, metadata={
        "help": "share of --time-budget-s the cloning phase may use (self-labelling gets the rest)"})
    val_every: int = field(default=50, metadata={"help": "validate every N iterations (0 = only at the end)"})
    val_episodes: int = field(default=8, metadata={"help": "held-out validation instances (greedy)"})
    checkpoint_every: int = field(default=100, metadata={"help": "write last.pt every N iterations"})
    seed: int = field(default=0, metadata={"help": "seed of instances, sampling and initial weights"})
    resume: bool = field(default=False, metadata={"help": "continue from <out>/last.pt"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def net_config(self) -> NetConfig:
        return NetConfig(EncoderConfig(conv=self.conv, hidden=self.hidden, layers=self.layers,
                                       directions=self.directions), head_hidden=self.hidden)


@dataclass
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    best_checkpoint: Path
    tb_dir: Path
    iterations: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)


def train_selflabel(args: SelfLabelArgs, on_iteration: Callable[[int, dict[str, float]], None] | None = None
                    ) -> TrainResult:
    """Train a ``GraphPolicyNet`` by self-labelling; returns the checkpoints and the learning curve."""
    from torch.utils.tensorboard import SummaryWriter

    _check(args)
    torch.set_num_threads(1)  # small nets on CPU: one thread is 10-20x faster here (REFERENCE §3.2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    envs = [make_env(args.env, args.env_kwargs) for _ in range(args.samples)]
    net = GraphPolicyNet(ObsSpec.from_space(envs[0].observation_space), args.net_config())
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    start_it, best_val, elapsed0, cpu_before = 0, -np.inf, 0.0, 0.0
    last, best = out / "last.pt", out / "best.pt"
    if args.resume:
        blob = load_checkpoint(last)
        net.load_state_dict(blob["state_dict"])
        opt.load_state_dict(blob["optimizer"])
        start_it = int(blob["meta"]["iterations"])
        best_val = float(blob["meta"].get("best_val_return", -np.inf))
        elapsed0 = float(blob["meta"].get("wall_s", 0.0))
        cpu_before = float(blob["meta"].get("cpu_s", 0.0))
    (out / "args.json").write_text(json.dumps(asdict(args), indent=1))
    writer = SummaryWriter(str(out / "tb"))
    history: list[dict[str, float]] = []
    t0, cpu0, c0 = time.perf_counter(), time.process_time(), _clock(args)

    def meta(it: int) -> dict[str, Any]:
        return {"env_id": args.env, "env_kwargs": args.env_kwargs, "algo": "selflabel", "iterations": it,
                "samples": args.samples, "warm_start": args.warm_start, "best_val_return": best_val,
                "wall_s": elapsed0 + time.perf_counter() - t0,
                "cpu_s": cpu_before + time.process_time() - cpu0}

    bar = _Progress(args, start_it, c0)
    validated_at = -1
    if start_it == 0 and args.warm_start:
        clone_epochs = [0]

        def on_epoch(epoch: int, loss: float) -> None:
            """Log the cloning curve; every cloned epoch is a candidate for best.pt."""
            nonlocal best_val
            clone_epochs[0] = epoch
            writer.add_scalar("clone/loss", loss, epoch)
            if args.val_every:
                val = validate(net, envs, args.val_episodes)
                for k, v in val.items():
                    writer.add_scalar(f"clone/val_{k}", v, epoch)
                if val["mean_return"] > best_val:
                    best_val = val["mean_return"]
                    save_net(net, best, meta(0))

        # Cloning may use a share of the time budget; self-labelling gets the rest.
        deadline = c0 + args.time_budget_s * args.warm_start_budget_frac if args.time_budget_s > 0 else None
        behaviour_clone(net, args, deadline=deadline, tick=bar.tick, on_epoch=on_epoch)
        if not args.val_every or clone_epochs[0] < args.warm_start_epochs:  # validate the final clone
            val = validate(net, envs, args.val_episodes)
            for k, v in val.items():
                writer.add_scalar(f"clone/val_{k}", v, clone_epochs[0] + 1)
            if val["mean_return"] > best_val:
                best_val = val["mean_return"]
                save_net(net, best, meta(0))
        validated_at = 0
    it = start_it
    try:
        while it < args.iterations and not _out_of_time(args, c0):
            stats = _iteration(net, opt, envs, args, it)
            it += 1
            for k, v in stats.items():
                writer.add_scalar(f"selflabel/{k}", v, it)
            if (args.val_every and it % args.val_every == 0) or it == args.iterations:
                val = validate(net, envs, args.val_episodes)
                stats.update({f"val_{k}": v for k, v in val.items()})
                for k, v in val.items():
                    writer.add_scalar(f"eval/{k}", v, it)
                validated_at = it
                if val["mean_return"] > best_val:
                    best_val = val["mean_return"]
                    save_net(net, best, meta(it))
            stats["iteration"], stats["wall_s"] = it, elapsed0 + time.perf_counter() - t0
            stats["cpu_s"] = cpu_before + time.process_time() - cpu0
            writer.add_scalar("time/wall_s", stats["wall_s"], it)
            writer.add_scalar("time/cpu_s", stats["cpu_s"], it)
            history.append(stats)
            if on_iteration is not None:
                on_iteration(it, stats)
            bar.tick(f"it {it} best {stats['best_return']:.3f} loss {stats['loss']:.3f}", iteration=True)
            if it % args.checkpoint_every == 0:
                save_net(net, last, meta(it), opt)
    finally:
        bar.close()
    if validated_at != it:  # always end with a validation
        val = validate(net, envs, args.val_episodes)
        for k, v in val.items():
            writer.add_scalar(f"eval/{k}", v, it)
        if val["mean_return"] > best_val:
            best_val = val["mean_return"]
            save_net(net, best, meta(it))
    save_net(net, last, meta(it), opt)
    if not best.exists():
        save_net(net, best, meta(it))
    writer.close()
    return TrainResult(last, best, out / "tb", it, elapsed0 + time.perf_counter() - t0, history)


def _iteration(net: GraphPolicyNet, opt: torch.optim.Optimizer, envs: list[Any], args: SelfLabelArgs,
               it: int) -> dict[str, float]:
    """Sample, label the best, one gradient step; returns the iteration's statistics.

    Instances and sampling noise are seeded per iteration, so a resumed run repeats an uninterrupted one.
    """
    gen = torch.Generator().manual_seed(_train_seed(args.seed + 2, it))
    states, targets, best_r, mean_r, best_obj = [], [], [], [], []
    for j in range(args.instances_per_update):
        seed = _train_seed(args.seed, it * args.instances_per_update + j)
        net.eval()
        eps = sample_episodes(envs, net, seed, gen)
        rets = np.array([e.ret for e in eps])
        b = int(np.argmax(rets))
        states += replay(envs[0], seed, eps[b].actions)
        targets += eps[b].actions
        best_r.append(rets[b])
        mean_r.append(rets.mean())
        if eps[b].objective is not None:
            best_obj.append(eps[b].objective)
    net.train()
    obs = obs_to_torch(stack_obs(states))
    logits = net(obs)[0]
    loss = imitation_loss(logits, obs["action_mask"], torch.as_tensor(targets))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    stats = {"loss": float(loss.detach()), "best_return": float(np.mean(best_r)),
             "mean_return": float(np.mean(mean_r))}
    if best_obj:
        stats["best_objective"] = float(np.mean(best_obj))
    return stats


@torch.no_grad()
def validate(net: GraphPolicyNet, envs: list[Any], n: int) -> dict[str, float]:
    """Greedy episodes on ``n`` held-out seeds (one env copy each, batched): mean return / objective."""
    net.eval()
    pool = envs[:n] if len(envs) >= n else envs
    rets, objs = [], []
    for start in range(0, n, len(pool)):
        for k, env in enumerate(pool[: n - start]):
            ep = sample_episodes([env], net, VAL_SEED0 + start + k, None)[0]
            rets.append(ep.ret)
            if ep.objective is not None:
                objs.append(ep.objective)
    out = {"mean_return": float(np.mean(rets))}
    if objs:
        out["mean_objective"] = float(np.mean(objs))
    return out


def baseline_validation(env_id: str, env_kwargs: dict[str, Any], baseline: str, n: int) -> dict[str, float]:
    """A registered baseline on the same held-out validation seeds as ``validate``: mean return/objective."""
    from schedgym.policy import make_policy

    env = make_env(env_id, env_kwargs)
    pol = make_policy(env_id, baseline)
    rets, objs = [], []
    for k in range(n):
        obs, info = env.reset(seed=VAL_SEED0 + k)
        pol.reset(env, seed=k)
        total, done, term = 0.0, False, False
        while not done:
            obs, r, term, trunc, info = env.step(pol.act(obs, info))
            total += float(r)
            done = term or trunc
        rets.append(total)
        obj = objective_of(env) if term else None
        if obj is not None:
            objs.append(obj)
    out = {"mean_return": float(np.mean(rets))}
    if objs:
        out["mean_objective"] = float(np.mean(objs))
    return out


def behaviour_clone(net: GraphPolicyNet, args: SelfLabelArgs, batch: int = 256, deadline: float | None = None,
                    tick: Callable[[str], None] | None = None,
                    on_epoch: Callable[[int, float], None] | None = None) -> float:
    """Clone baseline ``args.warm_start`` on ``warm_start_episodes`` training instances (stopping early at
    ``deadline``, a ``_clock(args)`` value); ``on_epoch(epoch, mean loss)`` after each full pass.
    Returns the last minibatch loss."""
    from schedgym.policy import make_policy

    if args.warm_start_episodes < 1:
        raise ValueError("warm_start needs warm_start_episodes >= 1")
    env = make_env(args.env, args.env_kwargs)
    teacher = make_policy(args.env, args.warm_start, **args.warm_start_kwargs)
    states: list[dict[str, np.ndarray]] = []
    targets: list[int] = []
    for e in range(args.warm_start_episodes):
        obs, info = env.reset(seed=_train_seed(args.seed + 1, e))
        teacher.reset(env, seed=e)
        done = False
        while not done:
            a = int(teacher.act(obs, info))
            states.append(obs)
            targets.append(a)
            obs, _, term, trunc, info = env.step(a)
            done = term or trunc
        if tick is not None:
            tick(f"cloning {args.warm_start}: episode {e + 1}/{args.warm_start_episodes}")
    rng = np.random.default_rng(args.seed)
    opt = torch.optim.Adam(net.parameters(), lr=args.warm_start_lr)
    net.train()
    loss = torch.tensor(0.0)
    for epoch in range(args.warm_start_epochs):
        order = rng.permutation(len(states))
        losses = []
        net.train()
        for s in range(0, len(order), batch):
            if deadline is not None and _clock(args) >= deadline:
                return float(loss.detach())
            idx = order[s: s + batch]
            obs_t = obs_to_torch(stack_obs([states[i] for i in idx]))
            target = torch.as_tensor([targets[i] for i in idx])
            loss = imitation_loss(net(obs_t)[0], obs_t["action_mask"], target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if tick is not None:
                tick(f"cloning {args.warm_start}: epoch {epoch + 1}/{args.warm_start_epochs} "
                     f"loss {losses[-1]:.3f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, float(np.mean(losses)))
    return float(loss.detach())


def _train_seed(seed: int, i: int) -> int:
    return seed * 100_000_003 + i


def _clock(args: SelfLabelArgs) -> float:
    return time.process_time() if args.budget_clock == "cpu" else time.perf_counter()


def _out_of_time(args: SelfLabelArgs, t0: float) -> bool:
    """``t0`` is a ``_clock(args)`` reading taken at the start."""
    return args.time_budget_s > 0 and _clock(args) - t0 >= args.time_budget_s


class _Progress:
    """A tqdm bar over the time budget (seconds of ``budget_clock``) or, without one, over iterations."""

    def __init__(self, args: SelfLabelArgs, start_it: int, c0: float) -> None:
        self.args, self.c0, self.bar = args, c0, None
        if not args.progress:
            return
        from tqdm import tqdm

        if args.time_budget_s > 0:
            self.bar = tqdm(total=round(args.time_budget_s), desc="training", unit="s", disable=None,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")
        else:
            self.bar = tqdm(total=args.iterations, initial=start_it, desc="self-labelling", unit="it",
                            disable=None)

    def tick(self, postfix: str = "", iteration: bool = False) -> None:
        if self.bar is None:
            return
        if self.args.time_budget_s > 0:
            self.bar.n = min(self.bar.total, _clock(self.args) - self.c0)
        elif iteration:
            self.bar.update(1)
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check(args: SelfLabelArgs) -> None:
    for f in ("samples", "instances_per_update", "val_episodes", "checkpoint_every"):
        if getattr(args, f) < 1:
            raise ValueError(f"--{f.replace('_', '-')} must be >= 1, got {getattr(args, f)}")
    if args.iterations < 0:
        raise ValueError(f"--iterations must be >= 0, got {args.iterations}")
    if args.iterations == 0 and not args.warm_start:
        raise ValueError("--iterations 0 (clone only) needs --warm-start")
    if not 0 < args.warm_start_budget_frac <= 1:
        raise ValueError(f"--warm-start-budget-frac must be in (0, 1], got {args.warm_start_budget_frac}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.budget_clock not in ("wall", "cpu"):
        raise ValueError(f"--budget-clock must be 'wall' or 'cpu', got {args.budget_clock!r}")
    if args.time_budget_s < 0:
        raise ValueError(f"--time-budget-s must be >= 0, got {args.time_budget_s}")
