"""Losses of the training methods implemented here (PPO's live in SB3 and RLlib).

- ``imitation_loss``: masked cross-entropy of target actions; used by self-labelling (Corsini et al.,
  "Self-Labeling the Job Shop Scheduling Problem", NeurIPS 2024: sample many solutions with the current
  policy, imitate the best) and by behaviour cloning of a heuristic.
- ``gae``: generalised advantage estimation (Schulman et al. 2016) for a single trajectory, with the
  value of the state after the last step for truncated episodes; used to check the PPO glue's returns.
"""

from __future__ import annotations

import torch

from schedgym.agents.masking import masked_log_softmax


def imitation_loss(logits: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-log pi(action | state)`` with the action mask applied.

    Raises ValueError if a target action is masked out (it would have probability 0: infinite loss).
    """
    if not bool(mask.bool().gather(1, actions.long().unsqueeze(1)).all()):
        raise ValueError("imitation_loss: a target action is masked out in its own state")
    logp = masked_log_softmax(logits, mask)
    return -logp.gather(1, actions.long().unsqueeze(1)).mean()


def soft_imitation_loss(logits: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the cross-entropy ``-sum_a target(a) log pi(a | state)`` (target: (B, A)
    distributions; one-hot rows give ``imitation_loss``). Raises ValueError if a target puts weight on a
    masked action."""
    m = mask.bool()
    if bool((target.masked_fill(m, 0.0) > 0).any()):
        raise ValueError("soft_imitation_loss: a target puts probability on a masked-out action")
    logp = masked_log_softmax(logits, m)
    return -(target * logp).masked_fill(~m, 0.0).sum(-1).mean()


def gae(rewards: torch.Tensor, values: torch.Tensor, last_value: float, terminated: bool,
        gamma: float = 0.99, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) of one trajectory of T steps.

    ``values[t]`` = V(s_t); ``last_value`` = V(s_T) is bootstrapped only when the episode was cut off
    (``terminated=False``). delta_t = r_t + gamma V(s_{t+1}) - V(s_t); A_t = sum_k (gamma lam)^k delta_{t+k}.
    """
    t_len = rewards.shape[0]
    if values.shape[0] != t_len:
        raise ValueError(f"gae: {t_len} rewards but {values.shape[0]} values")
    adv = torch.zeros_like(rewards)
    nxt = 0.0 if terminated else float(last_value)
    running = 0.0
    for t in range(t_len - 1, -1, -1):
        delta = float(rewards[t]) + gamma * nxt - float(values[t])
        running = delta + gamma * lam * running
        adv[t] = running
        nxt = float(values[t])
    return adv, adv + values
