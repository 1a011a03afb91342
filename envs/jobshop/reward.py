"""Job-shop reward: minus the increase of the makespan lower bound (L2D-style), scaled.

The lower bound is max over jobs of (completion of the last scheduled operation + remaining work), which
equals the makespan once every operation is scheduled. The episode return is therefore
``-(makespan - initial_lower_bound) / time_scale``: an affine function of the final makespan.
"""

from __future__ import annotations


def lower_bound_reward(previous_lb: int, new_lb: int, time_scale: float) -> float:
    """Dense reward for one dispatch."""
    return -(new_lb - previous_lb) / time_scale
