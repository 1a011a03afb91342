"""Save and load a ``GraphPolicyNet`` as one self-describing ``.pt`` file (no pickled classes).

The file holds the observation spec, the architecture, the weights and free-form metadata (env id, env
kwargs, training algorithm and budget). It loads with ``torch.load(weights_only=True)``, so moving or
renaming Python classes never breaks a checkpoint (unlike pickled SB3 zips, REFERENCE §3.3).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec

FORMAT = "schedgym-graph-policy"
VERSION = 1


def save_net(net: GraphPolicyNet, path: str | Path, meta: dict[str, Any] | None = None,
             optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write ``net`` (and optionally the optimizer state, for resuming) to ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    blob: dict[str, Any] = {"format": FORMAT, "version": VERSION, "spec": asdict(net.spec),
                            "net": net.cfg.to_dict(), "state_dict": net.state_dict(),
                            "meta": dict(meta or {})}
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    tmp = p.with_suffix(p.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(p)  # atomic: a crash mid-write never leaves a truncated checkpoint
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict; raises ValueError naming what is wrong with a foreign file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")
    blob = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{p}: not a schedgym graph-policy checkpoint (expected format={FORMAT!r})")
    if blob.get("version") != VERSION:
        raise ValueError(f"{p}: checkpoint version {blob.get('version')!r} is not supported "
                         f"(expected {VERSION})")
    return blob


def load_net(path: str | Path) -> tuple[GraphPolicyNet, dict[str, Any]]:
    """(net in eval mode, metadata) from a file written by ``save_net``."""
    blob = load_checkpoint(path)
    net = GraphPolicyNet(ObsSpec(**blob["spec"]), NetConfig.from_dict(blob["net"]))
    net.load_state_dict(blob["state_dict"])
    net.eval()
    return net, dict(blob["meta"])
