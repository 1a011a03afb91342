"""Llumnix's full policy through the agent interface: freeness dispatch at each arrival, and at each migration
tick (``migration="agent"``) the built-in pairing rule (``migration.llumnix_moves``: instances below the
migrate-out freeness threshold, most loaded first, paired with the freest above the migrate-in threshold,
moving the running request with the fewest KV blocks) played as the agent's moves. The rule is the same
function the simulator runs with ``migration="llumnix"``, so the two reproduce each other exactly.

Source: B. Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving", OSDI 2024
(``llumnix/global_scheduler/migration_scheduler.py``: pair migrate-out with migrate-in instances by load;
request policy SR, shortest running first).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from schedgym.baselines.llumnix import Llumnix
from schedgym.envs.serving.migration import llumnix_moves


class LlumnixMigration(Llumnix):
    """Llumnix dispatch, and Llumnix's migration rule at every tick of the agent migration decision point."""

    name = "llumnix_migration"
    env_ids = ("schedgym/LLMServing-v0",)  # the migration decision point exists in the simulator only

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        super().reset(env, seed)
        self._tick = -1
        self._plan: list[tuple[int, int, int]] = []

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if info.get("decision") != "migrate":
            return super().act(obs, info)
        sim = self.state
        assert sim is not None
        if sim.n_ticks != self._tick:  # first decision of this tick: plan it as the built-in rule does
            self._tick = sim.n_ticks
            self._plan = llumnix_moves(sim, sim.migration, sim.tick)  # type: ignore[arg-type]
        no_move = len(info["action_mask"]) - 1
        if not self._plan:
            return no_move
        move = self._plan.pop(0)
        n = len(sim.engines)
        try:
            return n + sim.tick_moves.index(move)
        except ValueError:
            raise RuntimeError(f"{self.name}: the rule's move {move} is not among the tick's candidates "
                               f"{[m for m in sim.tick_moves if m is not None]}") from None
