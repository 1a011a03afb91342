"""The agent side of the ``schedgym`` command: ``train`` dispatch and the agent of ``schedgym run``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np


def _selflabel(opts: Any) -> Iterator[str]:
    from schedgym.agents.selflabel import train_selflabel

    res = train_selflabel(opts)
    yield f"trained {res.iterations} iterations in {res.wall_s:.1f} s"
    yield f"best: {res.best_checkpoint}\nlast: {res.checkpoint}\ntensorboard: {res.tb_dir}"


def _sb3(opts: Any) -> Iterator[str]:
    from schedgym.agents.sb3 import train_sb3

    res = train_sb3(opts)
    yield f"trained {res.timesteps} env steps in {res.wall_s:.1f} s"
    yield f"model: {res.model}\npolicy: {res.policy}\ntensorboard: {res.tb_dir}"


def _rllib(opts: Any) -> Iterator[str]:
    from schedgym.agents.rllib import train_rllib

    res = train_rllib(opts)
    yield f"trained {res.iterations} iterations in {res.wall_s:.1f} s"
    yield f"checkpoint: {res.checkpoint}\npolicy: {res.policy}\ntrial (TensorBoard events): {res.trial_dir}"


def _dagger(opts: Any) -> Iterator[str]:
    from schedgym.agents.dagger import train_dagger

    res = train_dagger(opts)
    yield f"trained {res.rounds} rounds ({res.samples} labelled states) in {res.wall_s:.1f} s ({res.cpu_s:.1f} CPU s)"
    yield f"best: {res.best_checkpoint}\nlast: {res.checkpoint}\ntensorboard: {res.tb_dir}"


def algorithm(name: str) -> tuple[type, Callable[[Any], Iterator[str]]]:
    """(arguments dataclass, trainer yielding report lines) of a training algorithm; imports lazily."""
    if name == "selflabel":
        from schedgym.agents.selflabel import SelfLabelArgs

        return SelfLabelArgs, _selflabel
    if name == "sb3":
        from schedgym.agents.sb3 import SB3Args

        return SB3Args, _sb3
    if name == "rllib":
        from schedgym.agents.rllib import RLlibArgs

        return RLlibArgs, _rllib
    if name == "dagger":
        from schedgym.agents.dagger import DaggerArgs

        return DaggerArgs, _dagger
    raise ValueError(f"unknown algorithm {name!r}; expected one of selflabel, sb3, rllib, dagger")


def train_default_agent(out: Path, dataset: str, seconds: float, progress: bool = True) -> Any:
    """The agent of ``schedgym run``: clone CP-SAT schedules (0.5 s per training instance) of ``dataset``
    for ``seconds`` of wall time; returns the best-validated epoch as a greedy ``Policy`` named ``gnn``.

    No self-labelling phase: on job shops it improved the training size but hurt the transfer to the
    larger Taillard instances ``run`` evaluates on (see the README's agent figures)."""
    from schedgym.agents.checkpoint import load_net
    from schedgym.agents.policy import TorchPolicy
    from schedgym.agents.selflabel import SelfLabelArgs, train_selflabel

    args = SelfLabelArgs(env="schedgym/JobShop-v0", env_kwargs={"dataset": dataset}, out=str(out),
                         iterations=0, time_budget_s=seconds, warm_start="cpsat",
                         warm_start_kwargs={"time_limit": 0.5, "num_workers": 1}, warm_start_episodes=80,
                         warm_start_epochs=40, warm_start_budget_frac=1.0, val_every=1, val_episodes=8,
                         progress=progress)
    print(f"Training a GNN agent on {dataset} for {seconds:g} s: imitate CP-SAT schedules (0.5 s each) of "
          f"{args.warm_start_episodes} training instances; tensorboard --logdir {out / 'tb'}")
    res = train_selflabel(args)
    net, meta = load_net(res.best_checkpoint)
    print(f"trained in {res.wall_s:.0f} s; using {res.best_checkpoint} (best greedy validation makespan)\n")
    (out / "train_summary.txt").write_text(f"{asdict(args)}\n{meta}\n")
    return TorchPolicy(net, name="gnn")


def agent_figures(res: Any, agent: str, ds: Any, out: Path) -> list[Path]:
    """Learning curve and the agent's best Gantt chart for ``schedgym run``; returns the files written."""
    from schedgym.agents.plots import Panel, save_learning_curve
    from schedgym.envs.jobshop import viewer
    from schedgym.plotting import save_gantt

    written = []
    tb = out / "agent" / "tb"
    if tb.is_dir():
        from schedgym.agents.selflabel import SelfLabelArgs, baseline_validation

        cfg = SelfLabelArgs(**json.loads((out / "agent" / "args.json").read_text()))
        ref = baseline_validation(cfg.env, cfg.env_kwargs, "mwkr", cfg.val_episodes).get("mean_objective")
        refs = {"mwkr (same instances)": ref} if ref is not None else {}
        written.append(save_learning_curve(tb, out / "learning_curve.png", [
            Panel("imitating CP-SAT", "epoch", ["clone/val_mean_objective"], "greedy makespan", refs),
            Panel("self-labelling", "iteration", ["eval/mean_objective", "selflabel/best_objective"],
                  "makespan", refs),
        ], title=f"GNN agent, {cfg.val_episodes} held-out {cfg.env_kwargs.get('dataset', '')} instances"))
    rows = [r for r in res.rows if r["policy"] == agent]
    if rows:
        best = min(rows, key=lambda r: r["gap_pct"])
        inst = ds.load(best["instance"])
        written.append(save_gantt(
            viewer.intervals(inst, np.asarray(best["schedule"]["start_times"])),
            out / f"schedule_{agent}_{best['instance']}.png",
            title=f"{best['instance']} / {agent}: makespan {best['makespan']} (gap {best['gap_pct']:.1f} %)",
            resource_label="machine"))
    return written
