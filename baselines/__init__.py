"""Classic heuristics, one file per algorithm, all satisfying ``schedgym.Policy`` (``schedgym.baselines``).

Each class names the env ids it serves (``env_ids``) and its CLI name (``name``); importing this package
registers them with ``schedgym.policy.register_baseline``.
"""

from __future__ import annotations

from schedgym.baselines.cache_aware import CacheAware
from schedgym.baselines.cpop import Cpop
from schedgym.baselines.cpsat import CpSat
from schedgym.baselines.cpsat_memory import CpSatMemory
from schedgym.baselines.dag_random import DagRandom
from schedgym.baselines.deadline_aware import DeadlineAware
from schedgym.baselines.etf import Etf
from schedgym.baselines.fifo import Fifo
from schedgym.baselines.firstfit_start import FirstFitStart
from schedgym.baselines.heft import Heft
from schedgym.baselines.jsq import Jsq
from schedgym.baselines.least_kv import LeastKv
from schedgym.baselines.llumnix import Llumnix, LlumnixPriority
from schedgym.baselines.llumnix_migration import LlumnixMigration
from schedgym.baselines.lor import Lor
from schedgym.baselines.lpt import Lpt
from schedgym.baselines.lwkr import Lwkr
from schedgym.baselines.maxmin import MaxMin
from schedgym.baselines.mct import Mct
from schedgym.baselines.melange import Melange
from schedgym.baselines.met import Met
from schedgym.baselines.minimalloc_dfs import MinimallocDfs
from schedgym.baselines.minmin import MinMin
from schedgym.baselines.mor import Mor
from schedgym.baselines.mwkr import Mwkr
from schedgym.baselines.peft import Peft
from schedgym.baselines.power_of_two import PowerOfTwo
from schedgym.baselines.random import Random
from schedgym.baselines.random_routing import RandomRouting
from schedgym.baselines.round_robin_routing import RoundRobinRouting
from schedgym.baselines.roundrobin import RoundRobin
from schedgym.baselines.spt import Spt
from schedgym.baselines.tflite_bestfit import TfliteBestFit
from schedgym.baselines.tflm_firstfit import TflmFirstFit
from schedgym.baselines.xla_msa import XlaMsa
from schedgym.policy import register_baseline

JOBSHOP = (Spt, Lpt, Mwkr, Lwkr, Mor, Lor, Fifo, Random, CpSat)
DAG = (Heft, Cpop, Peft, Etf, MinMin, MaxMin, Met, Mct, RoundRobin, DagRandom)
MEMORY = (XlaMsa, TfliteBestFit, TflmFirstFit, FirstFitStart, MinimallocDfs, CpSatMemory)
SERVING = (RoundRobinRouting, RandomRouting, Jsq, LeastKv, PowerOfTwo, Llumnix, LlumnixPriority, CacheAware,
           LlumnixMigration, DeadlineAware)
PROVISIONING = (Melange,)
ALL = JOBSHOP + DAG + MEMORY + SERVING + PROVISIONING
for _cls in ALL:
    for _env_id in _cls.env_ids:
        register_baseline(_env_id, _cls.name, _cls)

__all__ = [c.__name__ for c in ALL]
