"""Benchmark: decision latency (p50/p99) of an ONNX-exported GNN policy on an env's real observations.

    python scripts/bench_policy.py --env schedgym/JobShop-v0 --env-kwargs '{"instance": "ta01"}' \
        [--policy runs/selflabel/best.pt|policy.onnx] [--observations 500] [--static]
    python scripts/bench_policy.py --env ID --conv dense_gin --layers 2 --directions forward --static

Observations come from random masked rollouts of the env. A .pt/.zip/RLlib checkpoint is exported to
ONNX first (--static: fixed shapes of this env's padded observation, batch 1); without --policy an
untrained net of the architecture given by --conv/--hidden/--layers/--directions is exported (latency
does not depend on the weights). One decision = feed preparation + onnxruntime (1 thread) + argmax, per
observation, batch 1; torch eager is timed on the same observations for reference.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import schedgym  # noqa: E402,F401
from schedgym.agents.encoders import EncoderConfig  # noqa: E402
from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec  # noqa: E402
from schedgym.agents.onnx import OnnxPolicy, export_onnx  # noqa: E402
from schedgym.agents.policy import TorchPolicy, load_net_any  # noqa: E402
from schedgym.agents.rollout import make_env  # noqa: E402


def collect(env_id: str, env_kwargs: dict, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """``n`` observations from random masked rollouts (episodes restart as needed)."""
    env = make_env(env_id, env_kwargs)
    rng = np.random.default_rng(seed)
    out: list[dict[str, np.ndarray]] = []
    ep = 0
    while len(out) < n:
        obs, info = env.reset(seed=seed + ep)
        ep += 1
        done = False
        while not done and len(out) < n:
            out.append(obs)
            valid = np.flatnonzero(info["action_mask"])
            obs, _, term, trunc, info = env.step(int(valid[rng.integers(valid.size)]))
            done = term or trunc
    return out


def latencies(fn, observations: list[dict[str, np.ndarray]], warmup: int = 20) -> np.ndarray:
    for o in observations[:warmup]:
        fn(o, {})
    ts = np.empty(len(observations))
    for i, o in enumerate(observations):
        t = time.perf_counter()
        fn(o, {})
        ts[i] = time.perf_counter() - t
    return ts * 1e6


def _describe(net: GraphPolicyNet | None) -> str:
    if net is None:
        return "(from the .onnx file)"
    e = net.cfg.encoder
    return f"{e.conv} hidden {e.hidden} x {e.layers} layers ({e.directions})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="schedgym/JobShop-v0")
    p.add_argument("--env-kwargs", type=json.loads, default={"instance": "ta01"}, help="JSON object")
    p.add_argument("--policy", default="",
                   help=".onnx, .pt, .zip or RLlib checkpoint dir ('' = untrained net)")
    p.add_argument("--observations", type=int, default=500)
    p.add_argument("--static", action="store_true", help="export with this env's fixed shapes, batch 1")
    p.add_argument("--conv", default="gin", help="untrained net: gin | sage | gat | dense_gin | dense_sage | mlp")
    p.add_argument("--hidden", type=int, default=32, help="untrained net: embedding width")
    p.add_argument("--layers", type=int, default=3, help="untrained net: message-passing layers")
    p.add_argument("--directions", default="both", help="untrained net: forward | both")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.observations < 1:
        p.error("--observations must be >= 1")
    torch.set_num_threads(1)
    obs = collect(a.env, a.env_kwargs, a.observations, a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="schedgym-bench-"))
    net: GraphPolicyNet | None = None
    if a.policy.endswith(".onnx"):
        onnx_path = Path(a.policy)
    else:
        if a.policy:
            net, _ = load_net_any(a.policy)
        else:
            torch.manual_seed(a.seed)
            enc = EncoderConfig(conv=a.conv, hidden=a.hidden, layers=a.layers, directions=a.directions)
            space = make_env(a.env, a.env_kwargs).observation_space
            net = GraphPolicyNet(ObsSpec.from_space(space), NetConfig(enc, head_hidden=a.hidden)).eval()
        onnx_path = export_onnx(net, obs[0], tmp / "policy.onnx", dynamic=not a.static)
    onnx_pol = OnnxPolicy(onnx_path)
    n_nodes = int(obs[0]["node_mask"].sum())
    print(f"$ python scripts/bench_policy.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; torch {torch.__version__}, onnxruntime 1 thread")
    print(f"env {a.env} {json.dumps(a.env_kwargs)}: {len(obs)} observations, {n_nodes} real nodes of "
          f"{obs[0]['node_mask'].size}, {obs[0]['action_mask'].size} actions; "
          f"policy {a.policy or '(untrained)'}, net {_describe(net)}, "
          f"{'static' if a.static else 'dynamic'} shapes")
    rows = [("onnxruntime", latencies(onnx_pol.act, obs))]
    if net is not None:
        rows.append(("torch eager", latencies(TorchPolicy(net).act, obs)))
    for name, ts in rows:
        print(f"  {name:<12} decision latency p50 {np.percentile(ts, 50):8.1f} us   "
              f"p99 {np.percentile(ts, 99):8.1f} us   mean {ts.mean():8.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
