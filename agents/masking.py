"""Action masking and masked reductions, shared by every head, trainer and exporter.

Masked logits are set to a large *finite* negative value (``MASK_VALUE``) rather than ``-inf``: the
probability of a masked action is then exactly 0 in float32, while ``0 * log p`` terms in entropies and KL
divergences stay 0 instead of NaN (``0 * -inf``). A row with no valid action (a terminal observation
that a vectorised runner batches anyway) yields a uniform distribution, never NaN.
"""

from __future__ import annotations

import torch

MASK_VALUE = -1e9


def apply_mask(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``logits`` where ``mask`` is true, ``MASK_VALUE`` elsewhere (mask: bool or 0/1, same shape)."""
    return logits.masked_fill(~mask.bool(), MASK_VALUE)


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the valid actions of the last axis (masked entries ~ MASK_VALUE)."""
    return torch.log_softmax(apply_mask(logits, mask), dim=-1)


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical over valid actions; masked actions contribute exactly 0."""
    logp = masked_log_softmax(logits, mask)
    p = logp.exp()
    return -(p * logp).masked_fill(~mask.bool(), 0.0).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` counting only entries with ``mask`` (mask broadcastable to x); 0 if none."""
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Max of ``x`` over ``dim`` among entries with ``mask``; 0 where no entry is valid."""
    m = mask.bool()
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    out = x.masked_fill(~m, MASK_VALUE).max(dim).values
    return torch.where(m.any(dim), out, torch.zeros_like(out))


class SetMask:
    """A (B, K) mask over axis 1, prepared once for several masked reductions of (B, K, H) tensors.

    Same values as ``masked_mean`` / ``masked_max`` over dim 1, but the mask is cast and counted once
    instead of once per reduction: fewer operators in an exported graph, where per-operator overhead
    dominates single-decision latency.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        self.valid = mask.bool().unsqueeze(-1)  # (B,K,1)
        self.invalid = ~self.valid
        self.weight = self.valid.to(torch.float32)
        self.count = self.weight.sum(1)  # (B,1)
        self.any = self.count > 0

    def mean(self, x: torch.Tensor, premasked: bool = False) -> torch.Tensor:
        """Masked mean; ``premasked=True`` when ``x`` is already zero at masked entries (one op fewer)."""
        return (x if premasked else x * self.weight).sum(1) / self.count.clamp(min=1.0)

    def max(self, x: torch.Tensor) -> torch.Tensor:
        out = x.masked_fill(self.invalid, MASK_VALUE).max(1).values
        return torch.where(self.any, out, torch.zeros_like(out))
