"""Router-visible features: the one place they are defined (the env, baselines and exported routers use it).

``router_features`` turns what a router can observe — per-instance live statistics, per-instance static
specs, and the arriving request — into the padded-graph arrays of ``schedgym.graph``. It imports nothing
from the simulator, so a live router (ONNX policy behind a serving gateway) can call it with statistics
polled from real engines.

Graph: nodes ``0..N-1`` are instances, node ``N`` is the arriving request; edges request -> instance
(``0..N-1``) and instance -> request (``N..2N-1``). Columns (all float32, scaled to O(1)):

Instance nodes: ``is_instance``, waiting requests / 10, running requests / 100, swapped requests / 10, KV
used fraction, free KV tokens / 1e5, pending prefill tokens / 1e4, running context tokens / 1e5, current
decode step (s) x 10, peak PFLOP/s, HBM TB/s, price $/h / 10, context limit / 1e5.
Request node: ``is_request``, prompt tokens / 1e4, output-length estimate / 1e3 (0 if none), has-estimate
flag, priority class, TTFT SLO (s), TPOT SLO (s) x 10.
Edges: estimated prefill time of the request alone on the instance (s), prefix-cache hit fraction on the
instance (router-side estimate, 0 without prefix hashes), feasible (the action mask), direction
(0 request -> instance, 1 back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Live statistics columns (what ``ClusterSim.live_stats`` and a live poller provide).
LIVE = ("waiting", "running", "swapped", "used_blocks", "pending_prefill_tokens", "context_tokens", "decode_step_s")
# Static per-instance columns.
STATIC = ("total_blocks", "block_size", "peak_tflops", "hbm_tbps", "price_per_hour", "context_limit")

INSTANCE_COLS = ("is_instance", "waiting", "running", "swapped", "kv_used_frac", "free_kv_tokens",
                 "pending_prefill_tokens", "context_tokens", "decode_step", "peak_pflops", "hbm_tbps", "price",
                 "context_limit")
REQUEST_COLS = ("is_request", "prompt_tokens", "output_estimate", "has_estimate", "priority", "ttft_slo", "tpot_slo")
EDGE_COLS = ("prefill_time_s", "prefix_hit", "feasible", "direction")
NODE_DIM = len(INSTANCE_COLS) + len(REQUEST_COLS)
EDGE_DIM = len(EDGE_COLS)


@dataclass(frozen=True)
class RequestView:
    """What the router may know about an arriving request (never its true output length unless estimated)."""

    prompt_tokens: int
    priority: int
    ttft_slo: float
    tpot_slo: float
    output_estimate: float | None = None


def empty_buffers(n_instances: int) -> dict[str, np.ndarray]:
    """Zeroed observation arrays for ``n_instances`` instances with the static graph wiring filled in."""
    N = n_instances
    ei = np.zeros((2, 2 * N), np.int64)
    ei[0, :N], ei[1, :N] = N, np.arange(N)
    ei[0, N:], ei[1, N:] = np.arange(N), N
    ef = np.zeros((2 * N, EDGE_DIM), np.float32)
    ef[N:, 3] = 1.0
    return {"node_features": np.zeros((N + 1, NODE_DIM), np.float32), "edge_index": ei, "edge_features": ef,
            "node_mask": np.ones(N + 1, np.int8), "edge_mask": np.ones(2 * N, np.int8),
            "action_mask": np.zeros(N, np.int8), "action_node": np.arange(N, dtype=np.int64)}


class FeatureEncoder:
    """Precomputes everything static about the instances so each observation costs a few array ops.

    Instance columns are ``C0 + live[:, SRC] * COEF`` (per instance), which covers every column above: the
    static ones have ``COEF = 0``; ``kv_used_frac`` scales used blocks by ``1 / total``; free KV tokens are
    ``total * block_size - used * block_size``.
    """

    def __init__(self, static: np.ndarray) -> None:
        static = np.asarray(static, np.float64)
        if static.ndim != 2 or static.shape[1] != len(STATIC) or (static[:, 0] <= 0).any():
            raise ValueError(f"static must be (N, {len(STATIC)}) with total_blocks > 0, got shape {static.shape}")
        self.N = N = static.shape[0]
        total, bs = static[:, 0], static[:, 1]
        K = len(INSTANCE_COLS)
        self.src = np.array([0, 0, 1, 2, 3, 3, 4, 5, 6, 0, 0, 0, 0])
        coef = np.zeros((N, K))
        c0 = np.zeros((N, K))
        c0[:, 0] = 1.0
        coef[:, 1:4] = (0.1, 0.01, 0.1)
        coef[:, 4] = 1.0 / total
        c0[:, 5], coef[:, 5] = total * bs * 1e-5, -bs * 1e-5
        coef[:, 6:9] = (1e-4, 1e-5, 10.0)
        c0[:, 9:13] = static[:, 2:6] * (1e-3, 1.0, 0.1, 1e-5)
        self.coef, self.c0 = coef, c0

    def encode(self, live: np.ndarray, request: RequestView, prefill_time_s: np.ndarray, prefix_hit: np.ndarray,
               feasible: np.ndarray, out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Fill (or create) the observation arrays; ``live`` is (N, len(LIVE))."""
        N = self.N
        b = out if out is not None else empty_buffers(N)
        nf = b["node_features"]
        nf[:N, :len(INSTANCE_COLS)] = self.c0 + live[:, self.src] * self.coef
        est = request.output_estimate
        nf[N, len(INSTANCE_COLS):] = (1.0, request.prompt_tokens / 1e4, 0.0 if est is None else est / 1e3,
                                      0.0 if est is None else 1.0, float(request.priority), request.ttft_slo,
                                      request.tpot_slo * 10.0)
        ef = b["edge_features"].reshape(2, N, EDGE_DIM)  # both directions share the first three columns
        ef[:, :, 0] = prefill_time_s
        ef[:, :, 1] = prefix_hit
        ef[:, :, 2] = feasible
        b["action_mask"][:] = feasible
        return b


def router_features(live: np.ndarray, static: np.ndarray, request: RequestView, prefill_time_s: np.ndarray,
                    prefix_hit: np.ndarray, feasible: np.ndarray, out: dict[str, np.ndarray] | None = None
                    ) -> dict[str, np.ndarray]:
    """Fill (or create) the observation arrays. ``live`` is (N, len(LIVE)), ``static`` (N, len(STATIC));
    ``prefill_time_s``, ``prefix_hit`` (fraction) and ``feasible`` are per instance. (Build a
    ``FeatureEncoder`` once to encode many observations of the same cluster.)"""
    return FeatureEncoder(static).encode(live, request, prefill_time_s, prefix_hit, feasible, out)


# ---------------------------------------------------------------------------------------------- migration
# With ``migration.decider == "agent"`` the observation also carries the migration decision point: the router
# graph above (node N is the arriving request at a routing decision, the *tick* node at a migration tick)
# plus one node per candidate-move slot (``migration.move_slots``), wired move -> source, move -> destination
# and back. Extra node columns (zero on the router graph's nodes except ``is_tick``):
MOVE_COLS = ("is_tick", "is_move", "move_kv_tokens", "move_generated_tokens", "move_transfer_s", "move_priority")
# Extra edge columns: the edge joins a move node and its source / its destination instance.
MOVE_EDGE_COLS = ("move_src", "move_dst")


class MoveEncoder:
    """The observation with the migration decision point (``slots``: (M, 2) source, destination per slot).

    Actions: ``0..N-1`` route the arriving request to instance i (node i); ``N + j`` takes candidate move
    ``j`` (node ``N + 1 + j``); ``N + M`` is "no migration" (node N, the tick node). At a routing decision
    only the instances can be valid; at a tick only the present moves and "no migration".
    """

    def __init__(self, n_instances: int, slots: np.ndarray) -> None:
        self.N, self.slots = n_instances, np.asarray(slots, np.int64)
        self.M = M = self.slots.shape[0]
        self.n_nodes, self.n_edges, self.n_actions = n_instances + 1 + M, 2 * n_instances + 4 * M, n_instances + M + 1
        self.node_dim, self.edge_dim = NODE_DIM + len(MOVE_COLS), EDGE_DIM + len(MOVE_EDGE_COLS)

    def empty_buffers(self) -> dict[str, np.ndarray]:
        """Zeroed arrays with the static wiring (router edges, then 4 edges per move slot)."""
        N, M = self.N, self.M
        base = empty_buffers(N)
        move = N + 1 + np.arange(M)
        src, dst = self.slots[:, 0], self.slots[:, 1]
        ei = np.concatenate([base["edge_index"], np.stack([
            np.stack([move, move, src, dst], 1).ravel(), np.stack([src, dst, move, move], 1).ravel()])], 1)
        ef = np.zeros((self.n_edges, self.edge_dim), np.float32)
        ef[:2 * N, :EDGE_DIM] = base["edge_features"]
        mv = ef[2 * N:].reshape(M, 4, self.edge_dim)
        mv[:, 2:, 3] = 1.0                           # direction: instance -> move
        mv[:, (0, 2), EDGE_DIM] = 1.0                # joins the source
        mv[:, (1, 3), EDGE_DIM + 1] = 1.0            # joins the destination
        node_mask = np.zeros(self.n_nodes, np.int8)
        node_mask[:N + 1] = 1
        edge_mask = np.zeros(self.n_edges, np.int8)
        edge_mask[:2 * N] = 1
        action_node = np.r_[np.arange(N), N + 1 + np.arange(M), N].astype(np.int64)
        return {"node_features": np.zeros((self.n_nodes, self.node_dim), np.float32), "edge_index": ei,
                "edge_features": ef, "node_mask": node_mask, "edge_mask": edge_mask,
                "action_mask": np.zeros(self.n_actions, np.int8), "action_node": action_node}

    def encode(self, router: dict[str, np.ndarray], moves: np.ndarray | None, out: dict[str, np.ndarray]
               ) -> dict[str, np.ndarray]:
        """Copy the router graph (``router``: ``FeatureEncoder`` buffers) into ``out`` and add the moves:
        ``moves`` is ``None`` at a routing decision, else (M, 5) per slot: present flag, KV tokens, tokens
        generated so far, transfer time (s), priority class (a slot without a candidate has flag 0)."""
        N, M = self.N, self.M
        nf, mask, node_mask, edge_mask = out["node_features"], out["action_mask"], out["node_mask"], out["edge_mask"]
        nf[:N + 1, :NODE_DIM] = router["node_features"]
        out["edge_features"][:2 * N, :EDGE_DIM] = router["edge_features"]
        mask[:N] = router["action_mask"]
        if moves is None:
            nf[N, NODE_DIM] = 0.0
            nf[N + 1:] = 0.0
            node_mask[N + 1:] = 0
            edge_mask[2 * N:] = 0
            mask[N:] = 0
            return out
        present = moves[:, 0] > 0
        nf[N, len(INSTANCE_COLS)] = 0.0  # node N is the tick, not a request
        nf[N, NODE_DIM] = 1.0
        mv = nf[N + 1:]
        mv[:, NODE_DIM:] = moves[:, (0, 0, 1, 2, 3, 4)] * (0.0, 1.0, 1e-4, 1e-3, 1.0, 1.0)
        mv[~present] = 0.0
        node_mask[N + 1:] = present
        edge_mask[2 * N:] = np.repeat(present, 4)
        mask[N:N + M] = present
        mask[N + M] = 1
        return out
