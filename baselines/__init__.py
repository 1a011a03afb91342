"""Classic heuristics, one file per algorithm, all satisfying ``schedgym.Policy`` (``schedgym.baselines``)."""

from __future__ import annotations

from schedgym.baselines.cpsat import CpSat
from schedgym.baselines.cpsat_memory import CpSatMemory
from schedgym.baselines.fifo import Fifo
from schedgym.baselines.firstfit_start import FirstFitStart
from schedgym.baselines.lor import Lor
from schedgym.baselines.lpt import Lpt
from schedgym.baselines.lwkr import Lwkr
from schedgym.baselines.minimalloc_dfs import MinimallocDfs
from schedgym.baselines.mor import Mor
from schedgym.baselines.mwkr import Mwkr
from schedgym.baselines.random import Random
from schedgym.baselines.spt import Spt
from schedgym.baselines.tflite_bestfit import TfliteBestFit
from schedgym.baselines.tflm_firstfit import TflmFirstFit
from schedgym.baselines.xla_msa import XlaMsa
from schedgym.policy import register_baseline

ALL = (Spt, Lpt, Mwkr, Lwkr, Mor, Lor, Fifo, Random, CpSat,
       XlaMsa, TfliteBestFit, TflmFirstFit, FirstFitStart, MinimallocDfs, CpSatMemory)
for _cls in ALL:
    for _env_id in _cls.env_ids:
        register_baseline(_env_id, _cls.name, _cls)

__all__ = ["CpSat", "CpSatMemory", "Fifo", "FirstFitStart", "Lor", "Lpt", "Lwkr", "MinimallocDfs", "Mor",
           "Mwkr", "Random", "Spt", "TfliteBestFit", "TflmFirstFit", "XlaMsa"]
