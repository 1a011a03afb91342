"""Learned agents as ``schedgym.Policy`` objects, and ``load_policy(path)`` for every artefact kind.

``load_policy`` accepts:

- ``*.pt``   — a ``GraphPolicyNet`` checkpoint (``schedgym.agents.checkpoint``; self-labelling, BC, exports
  from SB3/RLlib),
- ``*.zip``  — a MaskablePPO checkpoint written by ``scripts/train_sb3.py``,
- ``*.onnx`` — an exported policy, run with onnxruntime (``OnnxPolicy``),
- a directory — an RLlib checkpoint (``algo.save_to_path``) or its RLModule sub-directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from schedgym.agents.model import GraphPolicyNet, obs_to_torch


class TorchPolicy:
    """A ``GraphPolicyNet`` acting greedily (argmax of masked logits) or by sampling with a seeded RNG."""

    def __init__(self, net: GraphPolicyNet, name: str = "gnn", deterministic: bool = True) -> None:
        self.net = net.eval()
        self.name = name
        self.deterministic = deterministic
        self._gen = torch.Generator().manual_seed(0)

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        self._gen = torch.Generator().manual_seed(0 if seed is None else int(seed))

    @torch.no_grad()
    def logits(self, obs: dict[str, Any]) -> np.ndarray:
        """Masked logits (A,) for one observation."""
        return self.net(obs_to_torch(obs))[0][0].numpy()

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> int:
        logits = self.net(obs_to_torch(obs))[0][0]
        if self.deterministic:
            return int(torch.argmax(logits))
        return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=self._gen))


def load_net_any(path: str | Path) -> tuple[GraphPolicyNet, dict[str, Any]]:
    """The torch ``GraphPolicyNet`` inside a ``.pt``, SB3 ``.zip`` or RLlib checkpoint directory."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"policy path {str(p)!r} does not exist")
    if p.is_dir():
        from schedgym.agents.rllib import load_rllib_net

        return load_rllib_net(p)
    if p.suffix == ".pt":
        from schedgym.agents.checkpoint import load_net

        return load_net(p)
    if p.suffix == ".zip":
        from schedgym.agents.sb3 import load_sb3_net

        return load_sb3_net(p)
    raise ValueError(f"policy path {str(p)!r}: expected a .pt, .zip or .onnx file or an RLlib checkpoint "
                     "directory")


def load_policy(path: str | Path, name: str | None = None, deterministic: bool = True) -> Any:
    """A ``Policy`` from any trained artefact (see the module docstring); name defaults to the file stem."""
    p = Path(path)
    label = name or p.stem or p.name
    if p.suffix == ".onnx":
        from schedgym.agents.onnx import OnnxPolicy

        if not deterministic:
            raise ValueError("OnnxPolicy acts greedily; sampling needs the torch checkpoint")
        return OnnxPolicy(p, name=label)
    net, _ = load_net_any(p)
    return TorchPolicy(net, name=label, deterministic=deterministic)
