"""Train a GNN policy by self-labelling (sample many solutions, imitate the best) on any schedgym env.

    python scripts/train_selflabel.py --env schedgym/JobShop-v0 \
        --env-kwargs '{"dataset": "jobshop/random-10x10"}' --time-budget-s 1200 --out runs/selflabel
    tensorboard --logdir runs/selflabel/tb

Writes <out>/best.pt (best greedy validation), <out>/last.pt (with optimizer; --resume continues), <out>/tb/.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from schedgym.agents.args import parse  # noqa: E402
from schedgym.agents.selflabel import SelfLabelArgs, train_selflabel  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    args = parse(SelfLabelArgs, argv, description=__doc__.splitlines()[0])
    res = train_selflabel(args)
    print(f"$ python scripts/train_selflabel.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"trained {res.iterations} iterations in {res.wall_s:.1f} s")
    print(f"best: {res.best_checkpoint}\nlast: {res.checkpoint}\ntensorboard: {res.tb_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
