"""Train a GNN policy with MaskablePPO (sb3-contrib) on any schedgym env.

    python scripts/train_sb3.py --env schedgym/JobShop-v0 --env-kwargs '{"dataset": "jobshop/random-10x10"}' \
        --total-timesteps 20000 --out runs/sb3
    tensorboard --logdir runs/sb3/tb

Writes <out>/model.zip (MaskablePPO), <out>/policy.pt (the net, for `schedgym eval --policy`),
<out>/checkpoints/, <out>/tb/; `--resume <out>/model.zip` continues the same run.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

from schedgym.agents.args import parse  # noqa: E402
from schedgym.agents.sb3 import SB3Args, train_sb3  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse(SB3Args, argv, description=__doc__.splitlines()[0])
    res = train_sb3(args)
    print(f"$ python scripts/train_sb3.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"trained {res.timesteps} env steps in {res.wall_s:.1f} s")
    print(f"model: {res.model}\npolicy: {res.policy}\ntensorboard: {res.tb_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
