"""Train the learned LLM router and compare it with the routing baselines on the held-back Azure conv test part.

    python scripts/train_router.py --out runs/router            # the README figure's recipe
    python scripts/train_router.py --help                       # every option (DAgger's, plus the ones below)

Recipe (defaults): LLMServing-v0 on a memory-constrained cluster (4 x A10G / Llama-2-7B) with the Azure conv
2023 trace replayed at x0.5 (high load: round-robin's p99 TTFT is several seconds). The student imitates the
clairvoyant ``lookahead`` router (``schedgym.agents.lookahead``: one-step rollout over Llumnix dispatch,
horizon 32 arrivals, squared-TTFT cost) with soft labels over its rollout costs, on random 256-request
windows of the trace's training part (first 80 % of its time span). All 4 rounds roll out the teacher
(behaviour cloning, data aggregated over rounds): DAgger rounds in the student's own states made it worse,
because the rollout teacher's labels assume Llumnix dispatch continues after the step, which holds in the
teacher's states but not in the student's (there the teacher agreed with the student, and with Llumnix,
on only ~25 % of decisions vs ~80 % in its own states). The student is a lean ``mlp`` encoder (no
message passing) with the candidate-comparison head (without the DeepSets context), picked by greedy
p99 TTFT on 24 held-out training windows. The best checkpoint is exported to ONNX and the exported router
goes through the standard harness (``schedgym.evaluate``, validator-checked) next to the baselines on the
test part's 500-request windows: the same as ``schedgym eval --env schedgym/LLMServing-v0
--policy <out>/router.onnx,round_robin,... --dataset serving/azure-conv-2023
--env-kwargs '<env kwargs without segment_requests>'``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from schedgym.agents.args import parse  # noqa: E402
from schedgym.agents.dagger import DaggerArgs, train_dagger  # noqa: E402

A10G_X4 = ["A10G/Llama-2-7B"] * 4


@dataclass
class RouterArgs(DaggerArgs):
    """DAgger's arguments with the router recipe as defaults, plus the evaluation's."""

    env: str = field(default="schedgym/LLMServing-v0", metadata={"help": "environment id"})
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {
        "cluster": A10G_X4, "rate_scale": 0.5, "segment_requests": 256}, metadata={
        "help": "keyword arguments of gym.make for training (evaluation drops segment_requests)"})
    out: str = field(default="runs/router", metadata={"help": "output directory"})
    teacher: str = field(default="lookahead", metadata={"help": "teacher (lookahead or a baseline name)"})
    teacher_kwargs: dict[str, Any] = field(default_factory=lambda: {"horizon": 32, "power": 2},
                                           metadata={"help": "options of the teacher"})
    soft_temperature: float = field(default=0.3, metadata={"help": "soft-label temperature (cost units: s^2)"})
    rounds: int = field(default=4, metadata={"help": "DAgger rounds"})
    teacher_rounds: int = field(default=4, metadata={"help": "first rounds rolled out by the teacher"})
    episodes_per_round: int = field(default=8, metadata={"help": "training windows labelled per round"})
    epochs: int = field(default=40, metadata={"help": "passes over the aggregated data per round"})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate"})
    candidate_context: bool = field(default=False, metadata={
        "help": "candidate scores also see the max/mean over all candidates (off: 14 fewer ONNX operators; "
                "it did not help here)"})
    val_episodes: int = field(default=24, metadata={"help": "held-out training windows for model selection"})
    time_budget_s: float = field(default=900.0, metadata={"help": "CPU seconds (no new round after this)"})
    eval_dataset: str = field(default="serving/azure-conv-2023", metadata={
        "help": "evaluation dataset (default split: test = the trace's last 20 %, 500-request windows)"})
    baselines: str = field(default="round_robin,jsq,llumnix,power_of_two", metadata={
        "help": "comma-separated baselines evaluated next to the router"})
    seeds: int = field(default=3, metadata={"help": "seeds per test window (baselines break ties with them)"})


def main(argv: list[str] | None = None) -> int:
    from schedgym import evaluate
    from schedgym.agents.checkpoint import load_net
    from schedgym.agents.onnx import OnnxPolicy, export_onnx
    from schedgym.agents.rollout import make_env
    from schedgym.policy import make_policy

    torch.set_num_threads(1)
    args = parse(RouterArgs, argv, description=__doc__.splitlines()[0])
    res = train_dagger(args)
    out = Path(args.out)
    net, meta = load_net(res.best_checkpoint)
    eval_kwargs = {k: v for k, v in args.env_kwargs.items() if k != "segment_requests"}
    obs, _ = make_env(args.env, args.env_kwargs).reset(seed=0)
    onnx_path = export_onnx(net, obs, out / "router.onnx", meta=meta, dynamic=False)
    policies: dict[str, Any] = {"router": OnnxPolicy(onnx_path, name="router")}
    policies.update({b: make_policy(args.env, b) for b in args.baselines.split(",") if b})
    results = evaluate(args.env, policies, args.eval_dataset, args.seeds, env_kwargs=eval_kwargs,
                       out=out / "eval.json")
    print(f"$ python scripts/train_router.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"trained {res.rounds} DAgger rounds ({res.samples} labelled states) in {res.cpu_s / 60:.1f} CPU-min "
          f"({res.wall_s / 60:.1f} min wall); best round {meta['rounds']} (validation p99 TTFT "
          f"{meta['best_val']:.2f} s)")
    print(f"checkpoint {res.best_checkpoint}, ONNX {onnx_path}; evaluation on {args.eval_dataset} test windows, "
          f"{args.seeds} seed(s), env kwargs {json.dumps(eval_kwargs)}:")
    print(figure_table(results.rows))
    return 0


def figure_table(rows: list[dict[str, Any]]) -> str:
    """Per policy: mean over windows x seeds of p99 TTFT, mean TTFT, p99 E2E, and p99 TTFT per window."""
    pols = list(dict.fromkeys(r["policy"] for r in rows))
    windows = list(dict.fromkeys(r["instance"] for r in rows))
    head = f"{'policy':<14}{'p99 TTFT':>10}{'mean TTFT':>11}{'p99 E2E':>10}   p99 TTFT per window (" + \
        ", ".join(w.rsplit("/", 1)[-1] for w in windows) + ")"
    lines = [head, "-" * len(head)]
    for p in pols:
        mine = [r for r in rows if r["policy"] == p]
        per = [np.mean([r["p99_ttft"] for r in mine if r["instance"] == w]) for w in windows]
        lines.append(f"{p:<14}{np.mean([r['p99_ttft'] for r in mine]):>10.2f}"
                     f"{np.mean([r['mean_ttft'] for r in mine]):>11.3f}{np.mean([r['p99_e2e'] for r in mine]):>10.2f}"
                     "   " + " ".join(f"{x:.2f}" for x in per))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
