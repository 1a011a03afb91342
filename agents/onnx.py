"""ONNX export of a ``GraphPolicyNet`` (observation -> masked action logits) and ``OnnxPolicy``.

The exported graph takes the padded observation fields as separate inputs, with their env dtypes
(``node_features`` float32, ``edge_index`` int64, ``edge_features`` float32, masks int8, ``action_node``
int64) and a dynamic batch axis; node, edge and action counts are dynamic too, so one file serves every
instance size of an env. The mask is applied inside the graph (masked logits = ``MASK_VALUE``), so an
argmax over the output is always a valid action. Exported with torch's dynamo exporter (``onnxscript``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from schedgym.agents.model import OBS_KEYS, GraphPolicyNet

OPSET = 20
LEGACY_OPSET = 17


class _LogitsOnly(nn.Module):
    """Positional-input wrapper: the observation fields -> masked logits."""

    def __init__(self, net: GraphPolicyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, node_features: torch.Tensor, edge_index: torch.Tensor, edge_features: torch.Tensor,
                node_mask: torch.Tensor, edge_mask: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
        return self.net({"node_features": node_features, "edge_index": edge_index,
                         "edge_features": edge_features, "node_mask": node_mask, "edge_mask": edge_mask,
                         "action_mask": action_mask})[0]


class _LogitsOnlyActionNode(nn.Module):
    """As ``_LogitsOnly`` with the ``action_node`` input."""

    def __init__(self, net: GraphPolicyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, node_features: torch.Tensor, edge_index: torch.Tensor, edge_features: torch.Tensor,
                node_mask: torch.Tensor, edge_mask: torch.Tensor, action_mask: torch.Tensor,
                action_node: torch.Tensor) -> torch.Tensor:
        return self.net({"node_features": node_features, "edge_index": edge_index,
                         "edge_features": edge_features, "node_mask": node_mask, "edge_mask": edge_mask,
                         "action_mask": action_mask, "action_node": action_node})[0]


def input_names(net: GraphPolicyNet) -> tuple[str, ...]:
    return (*OBS_KEYS, "action_node") if net.spec.action_node else OBS_KEYS


def export_onnx(net: GraphPolicyNet, example_obs: Mapping[str, np.ndarray], path: str | Path,
                meta: Mapping[str, Any] | None = None, exporter: str = "dynamo",
                dynamic: bool = True) -> Path:
    """Write ``net`` as ONNX to ``path``; ``example_obs`` is one (unbatched) observation of the env.

    ``exporter="dynamo"`` (torch.export + onnxscript, torch's default) or ``"legacy"`` (TorchScript
    tracing, opset 17): both give the same graph semantics here; legacy exports ~25x faster.
    ``dynamic=False`` fixes every axis to ``example_obs``'s shapes with batch 1 (one env's padded
    observation, one decision): shape arithmetic folds away, fewer operators, lower latency.
    """
    import onnx

    if exporter not in ("dynamo", "legacy"):
        raise ValueError(f"exporter must be 'dynamo' or 'legacy', got {exporter!r}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    names = input_names(net)
    wrapper = (_LogitsOnlyActionNode if net.spec.action_node else _LogitsOnly)(net.eval()).eval()
    # Two identical samples: a batch of 1 would let the exporter specialise the batch axis to 1.
    copies = 2 if dynamic else 1
    args = tuple(torch.from_numpy(np.stack([np.asarray(example_obs[k])] * copies)) for k in names)
    b, n, e, a = (torch.export.Dim(x, min=1, max=1 << 20) for x in ("batch", "nodes", "edges", "actions"))
    axes = {"node_features": {0: b, 1: n}, "edge_index": {0: b, 2: e}, "edge_features": {0: b, 1: e},
            "node_mask": {0: b, 1: n}, "edge_mask": {0: b, 1: e}, "action_mask": {0: b, 1: a},
            "action_node": {0: b, 1: a}}
    if net.spec.action_mode == "node":  # actions are nodes: A and N are the same axis
        axes["action_mask"] = {0: b, 1: n}
    elif net.spec.action_mode == "graph":  # the head's output width is fixed
        axes["action_mask"] = {0: b}
    shapes: dict[str, Any] | None = {k: axes[k] for k in names} if dynamic else None
    with torch.no_grad():
        if exporter == "dynamo":
            prog = torch.onnx.export(wrapper, args, dynamo=True, dynamic_shapes=shapes,
                                     input_names=list(names), output_names=["logits"], opset_version=OPSET,
                                     verbose=False)
            prog.save(str(p))
        else:
            axis_names = {k: {i: d.__name__ for i, d in v.items()} for k, v in (shapes or {}).items()}
            torch.onnx.export(wrapper, args, str(p), dynamo=False, input_names=list(names),
                              output_names=["logits"], opset_version=LEGACY_OPSET, dynamic_axes=axis_names)
    model = onnx.load(str(p))
    from dataclasses import asdict

    props = {"schedgym.spec": json.dumps(asdict(net.spec)), "schedgym.net": json.dumps(net.cfg.to_dict()),
             "schedgym.meta": json.dumps(dict(meta or {}), default=str)}
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(p))
    return p


class OnnxPolicy:
    """A ``schedgym.Policy`` backed by an exported ``.onnx`` file (onnxruntime, CPU, one thread)."""

    def __init__(self, path: str | Path, name: str = "onnx", threads: int = 1) -> None:
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"ONNX policy {str(p)!r} does not exist")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        self._dtypes = {i.name: _NP[i.type] for i in self.session.get_inputs()}
        self.name = name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.meta = json.loads(meta.get("schedgym.meta", "{}"))

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        """Stateless: nothing to reset."""

    def logits(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Masked logits for one observation (A,) or a batch (B, A)."""
        batched = np.ndim(obs["node_features"]) == 3
        feed = {}
        for k in self.inputs:
            if k not in obs:
                raise KeyError(f"observation lacks field {k!r} that the ONNX policy needs")
            v = np.asarray(obs[k], dtype=self._dtypes[k])
            feed[k] = v if batched else v[None]
        out = self.session.run(None, feed)[0]
        return out if batched else out[0]

    def act(self, obs: Mapping[str, np.ndarray], info: dict[str, Any]) -> int:
        return int(np.argmax(self.logits(obs)))


_NP = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int8)": np.int8,
       "tensor(bool)": np.bool_, "tensor(int32)": np.int32, "tensor(double)": np.float64}
