"""The one observation format: a ``spaces.Dict`` of fixed-shape arrays padded to declared maxima.

Fields (``N`` = max nodes, ``E`` = max edges, ``A`` = number of actions):

- ``node_features`` (N, F) float32, ``edge_index`` (2, E) int64, ``edge_features`` (E, G) float32,
- ``node_mask`` (N,) int8, ``edge_mask`` (E,) int8, ``action_mask`` (A,) int8 (1 = valid),
- optionally ``action_node`` (A,) int64: the node each action refers to, so a GNN can score actions by
  gathering node embeddings.

``spaces.Graph`` is not used: neither SB3 nor RLlib can batch it. ``to_pyg`` turns one observation or a
batch (leading batch axis) into a torch-geometric ``Data``/``Batch`` for tools and encoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

GRAPH_KEYS = ("node_features", "edge_index", "edge_features", "node_mask", "edge_mask", "action_mask")


@dataclass(frozen=True)
class GraphSpec:
    """Declared maxima and feature widths of a padded-graph observation."""

    max_nodes: int
    max_edges: int
    node_dim: int
    edge_dim: int
    n_actions: int
    action_node: bool = False

    def __post_init__(self) -> None:
        for field in ("max_nodes", "max_edges", "node_dim", "edge_dim", "n_actions"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"GraphSpec.{field} must be >= 1, got {getattr(self, field)}")

    def space(self, feature_low: float = -np.inf, feature_high: float = np.inf) -> spaces.Dict:
        """The Gymnasium observation space for this spec."""
        n, e = self.max_nodes, self.max_edges
        fields: dict[str, spaces.Space[Any]] = {
            "node_features": spaces.Box(feature_low, feature_high, (n, self.node_dim), np.float32),
            "edge_index": spaces.Box(0, n - 1, (2, e), np.int64),
            "edge_features": spaces.Box(feature_low, feature_high, (e, self.edge_dim), np.float32),
            "node_mask": spaces.Box(0, 1, (n,), np.int8),
            "edge_mask": spaces.Box(0, 1, (e,), np.int8),
            "action_mask": spaces.Box(0, 1, (self.n_actions,), np.int8),
        }
        if self.action_node:
            fields["action_node"] = spaces.Box(0, n - 1, (self.n_actions,), np.int64)
        return spaces.Dict(fields)

    def zeros(self) -> dict[str, np.ndarray]:
        """Preallocated buffers with the space's shapes and dtypes, all zero."""
        return {k: np.zeros(s.shape, s.dtype) for k, s in self.space().spaces.items()}


def to_pyg(obs: dict[str, Any]) -> Any:
    """Convert one padded observation, or a batch of them, to a torch-geometric ``Data``/``Batch``.

    Padded nodes and edges are dropped; ``action_mask`` (and ``action_node``) travel as graph attributes.
    Accepts numpy arrays or torch tensors (e.g. from SB3, which casts ``edge_index`` to float).
    """
    import torch
    from torch_geometric.data import Batch, Data

    def t(x: Any) -> torch.Tensor:
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))

    x = t(obs["node_features"])
    if x.dim() == 3:  # batch
        items = [{k: v[b] for k, v in obs.items()} for b in range(x.shape[0])]
        return Batch.from_data_list([to_pyg(item) for item in items])
    node_mask = t(obs["node_mask"]).bool()
    edge_mask = t(obs["edge_mask"]).bool()
    # Renumber the kept nodes densely so edge indices stay valid after dropping padding.
    new_id = torch.cumsum(node_mask.long(), 0) - 1
    ei = t(obs["edge_index"]).long()[:, edge_mask]
    if ei.numel() and not bool(node_mask[ei].all()):
        raise ValueError("edge_index refers to a padded node (node_mask == 0) through an unmasked edge")
    data = Data(
        x=x[node_mask].float(),
        edge_index=new_id[ei],
        edge_attr=t(obs["edge_features"])[edge_mask].float(),
        action_mask=t(obs["action_mask"]).bool(),
    )
    if "action_node" in obs:
        data.action_node = new_id[t(obs["action_node"]).long()]
    return data
