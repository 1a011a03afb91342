"""Classic heuristics, one file per algorithm, all satisfying ``schedgym.Policy`` (``schedgym.baselines``)."""

from __future__ import annotations

from schedgym.baselines.cache_aware import CacheAware
from schedgym.baselines.cpsat import CpSat
from schedgym.baselines.fifo import Fifo
from schedgym.baselines.jsq import Jsq
from schedgym.baselines.least_kv import LeastKv
from schedgym.baselines.llumnix import Llumnix
from schedgym.baselines.lor import Lor
from schedgym.baselines.lpt import Lpt
from schedgym.baselines.lwkr import Lwkr
from schedgym.baselines.mor import Mor
from schedgym.baselines.mwkr import Mwkr
from schedgym.baselines.power_of_two import PowerOfTwo
from schedgym.baselines.random import Random
from schedgym.baselines.random_routing import RandomRouting
from schedgym.baselines.round_robin import RoundRobin
from schedgym.baselines.spt import Spt
from schedgym.policy import register_baseline

ALL = (Spt, Lpt, Mwkr, Lwkr, Mor, Lor, Fifo, Random, CpSat,
       RoundRobin, RandomRouting, Jsq, LeastKv, PowerOfTwo, Llumnix, CacheAware)
for _cls in ALL:
    for _env_id in _cls.env_ids:
        register_baseline(_env_id, _cls.name, _cls)

__all__ = ["CacheAware", "CpSat", "Fifo", "Jsq", "LeastKv", "Llumnix", "Lor", "Lpt", "Lwkr", "Mor", "Mwkr",
           "PowerOfTwo", "Random", "RandomRouting", "RoundRobin", "Spt"]
