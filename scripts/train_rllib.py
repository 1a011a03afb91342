"""Train a GNN policy with RLlib PPO (new API stack) through Ray Tune, locally or on a Ray cluster.

    python scripts/train_rllib.py --env schedgym/JobShop-v0 --iterations 10 --num-env-runners 1
    python scripts/train_rllib.py --env schedgym/JobShop-v0 --address auto \
        --num-env-runners 8 --num-learners 2 --iterations 200      # on an existing cluster
    tensorboard --logdir runs/rllib

Writes Tune's trial directory (result.json, progress.csv, events.out.tfevents.*, checkpoints) under
<out>/<name>/ and the trained net as <out>/<name>/policy.pt (for `schedgym eval --policy`).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

from schedgym.agents.args import parse  # noqa: E402
from schedgym.agents.rllib import RLlibArgs, train_rllib  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse(RLlibArgs, argv, description=__doc__.splitlines()[0])
    res = train_rllib(args)
    print(f"$ python scripts/train_rllib.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    ret = res.last_result.get("env_runners", {}).get("episode_return_mean")
    print(f"trained {res.iterations} iterations in {res.wall_s:.1f} s; last episode_return_mean {ret}")
    print(f"checkpoint: {res.checkpoint}\npolicy: {res.policy}\ntrial (TensorBoard events): {res.trial_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
