"""``GraphPolicyNet``: encoder + masked categorical action head + value head, for any padded-graph env.

How actions are scored (decided once from the observation space, see ``action_mode``):

- ``"action_node"`` — the observation has ``action_node`` (A,): action a is scored from the embedding of
  node ``action_node[a]`` (gathered), so the head is independent of N and A and transfers across sizes
  (train on 10x10 job shops, run on 20x20).
- ``"node"`` — no ``action_node`` but A == N: action i refers to node i (same scorer, identity gather).
- ``"graph"`` — otherwise: an MLP maps the graph embedding to A logits (A fixed by the space).

In the two node modes each candidate is described by its node embedding, the graph embedding, its raw
node features and their differences to the minimum and maximum over the valid candidates; its score also
sees the masked max and mean of all valid candidates' hidden vectors (a DeepSets context). So it can
compare itself with the alternatives — e.g. "starts earliest among the ready jobs" — which a per-node
score alone cannot express. Masked actions get ``MASK_VALUE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from schedgym.agents.encoders import EncoderConfig, GraphEncoder
from schedgym.agents.masking import MASK_VALUE, SetMask, apply_mask

ACTION_MODES = ("action_node", "node", "graph")
OBS_KEYS = ("node_features", "edge_index", "edge_features", "node_mask", "edge_mask", "action_mask")


@dataclass(frozen=True)
class ObsSpec:
    """What the net needs to know about an env's padded-graph observation space."""

    node_dim: int
    edge_dim: int
    max_nodes: int
    n_actions: int
    action_node: bool

    @classmethod
    def from_space(cls, space: spaces.Space[Any]) -> ObsSpec:
        if not isinstance(space, spaces.Dict):
            raise TypeError(f"expected a padded-graph Dict observation space, got {type(space).__name__}")
        missing = [k for k in OBS_KEYS if k not in space.spaces]
        if missing:
            raise ValueError(f"observation space lacks padded-graph fields {missing} (see schedgym.graph)")
        n, f = space["node_features"].shape
        return cls(node_dim=int(f), edge_dim=int(space["edge_features"].shape[1]), max_nodes=int(n),
                   n_actions=int(space["action_mask"].shape[0]), action_node="action_node" in space.spaces)

    @property
    def action_mode(self) -> str:
        if self.action_node:
            return "action_node"
        return "node" if self.n_actions == self.max_nodes else "graph"


@dataclass(frozen=True)
class NetConfig:
    """Architecture of a ``GraphPolicyNet``: the encoder's plus the heads' hidden width."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head_hidden: int = 64
    candidate_context: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetConfig:
        d = dict(d)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"NetConfig: unknown fields {sorted(unknown)}")
        enc = d.pop("encoder", {})
        return cls(encoder=enc if isinstance(enc, EncoderConfig) else EncoderConfig(**enc), **d)


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, o))


class GraphPolicyNet(nn.Module):
    """obs (dict of batched tensors) -> (masked logits (B,A), value (B,), graph embedding (B,H))."""

    def __init__(self, spec: ObsSpec, cfg: NetConfig | None = None) -> None:
        super().__init__()
        self.spec, self.cfg = spec, cfg or NetConfig()
        h, hh = self.cfg.encoder.hidden, self.cfg.head_hidden
        self.encoder = GraphEncoder(spec.node_dim, spec.edge_dim, self.cfg.encoder)
        self.mode = spec.action_mode
        if self.mode == "graph":
            self.graph_head = _mlp(h, hh, spec.n_actions)
        else:
            self.cand = nn.Sequential(nn.Linear(2 * h + 3 * spec.node_dim, hh), nn.ReLU(), nn.Linear(hh, hh))
            ctx = 2 * hh if self.cfg.candidate_context else 0
            self.score = nn.Sequential(nn.Linear(hh + ctx, hh), nn.ReLU(), nn.Linear(hh, 1))
        self.value_head = _mlp(h, hh, 1)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = obs["node_features"].float()
        mask = obs["action_mask"].bool()  # bool once: later .bool() calls are no-ops (fewer exported ops)
        nodes, graph = self.encoder(x, obs["edge_index"].long(), obs["edge_features"],
                                    obs["node_mask"].bool(), obs["edge_mask"].bool())
        if self.mode == "graph":
            scores = self.graph_head(graph)
        else:
            if self.mode == "action_node":
                idx = obs["action_node"].long()
                emb = torch.gather(nodes, 1, idx.unsqueeze(-1).expand(-1, -1, nodes.shape[-1]))
                raw = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            else:
                emb, raw = nodes, x
            g = graph.unsqueeze(1).expand(-1, emb.shape[1], -1)
            # per-feature max and min over the valid candidates, in one masked reduction
            am = SetMask(mask)
            hi, neg_lo = am.max(torch.cat([raw, -raw], -1)).unsqueeze(1).chunk(2, -1)
            u = self.cand(torch.cat([emb, g, raw, raw + neg_lo, raw - hi], -1))
            if self.cfg.candidate_context:
                ctx = torch.cat([am.max(u), am.mean(u)], -1)
                u = torch.cat([u, ctx.unsqueeze(1).expand(-1, u.shape[1], -1)], -1)
            # mask with the prepared (B,A,1) mask before squeezing: one operator fewer than apply_mask
            return (self.score(u).masked_fill(am.invalid, MASK_VALUE).squeeze(-1),
                    self.value_head(graph).squeeze(-1), graph)
        return apply_mask(scores, mask), self.value_head(graph).squeeze(-1), graph


def obs_to_torch(obs: Mapping[str, Any], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """One observation or a batch (numpy or torch) -> dict of batched tensors with the expected dtypes."""
    out: dict[str, torch.Tensor] = {}
    batched = np.ndim(obs["node_features"]) == 3
    for k, v in obs.items():
        if k not in (*OBS_KEYS, "action_node"):
            continue
        t = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v))
        if not batched:
            t = t.unsqueeze(0)
        out[k] = t.to(device)
    return out


def stack_obs(observations: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """A list of single observations -> one batch (numpy, leading axis)."""
    keys = [k for k in observations[0] if k in (*OBS_KEYS, "action_node")]
    return {k: np.stack([o[k] for o in observations]) for k in keys}
