"""schedgym: a research gym for learned schedulers.

Importing the package registers every environment id with Gymnasium, every named dataset and every
baseline; ``gym.make("schedgym:schedgym/JobShop-v0")`` does this in any fresh process.
"""

from __future__ import annotations

import gymnasium as gym

from schedgym.graph import GraphSpec, to_pyg
from schedgym.policy import Policy, make_policy

__version__ = "0.1.0"

ENV_IDS = {
    "schedgym/JobShop-v0": "schedgym.envs.jobshop.env:JobShopEnv",
    "schedgym/LLMServing-v0": "schedgym.envs.serving.backends:make_llm_serving",  # backend="sim" | "live"
    "schedgym/DAGDispatch-v0": "schedgym.envs.dag.env:DAGDispatchEnv",
    "schedgym/MemoryMapping-v0": "schedgym.envs.memory.env:MemoryMappingEnv",
    "schedgym/MemoryOffsets-v0": "schedgym.envs.memory.offsets_env:MemoryOffsetsEnv",
    "schedgym/LLMServingLive-v0": "schedgym.envs.serving.live_env:LLMServingLiveEnv",
    "schedgym/Provisioning-v0": "schedgym.envs.provisioning.env:ProvisioningEnv",
}
# Ids whose episodes depend on wall-clock timing (real engines): registered nondeterministic=True.
NONDETERMINISTIC_IDS = frozenset({"schedgym/LLMServingLive-v0"})

for _id, _entry in ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry, disable_env_checker=False,
                     nondeterministic=_id in NONDETERMINISTIC_IDS)

# Domain datasets and baselines register themselves on import.
import schedgym.baselines  # noqa: E402,F401
import schedgym.envs.dag.datasets  # noqa: E402,F401
import schedgym.envs.jobshop.datasets  # noqa: E402,F401
import schedgym.envs.memory.datasets  # noqa: E402,F401
import schedgym.envs.provisioning.datasets  # noqa: E402,F401
import schedgym.envs.serving.datasets  # noqa: E402,F401
from schedgym.evaluation import Results, evaluate  # noqa: E402

__all__ = ["ENV_IDS", "GraphSpec", "Policy", "Results", "evaluate", "make_policy", "to_pyg"]
