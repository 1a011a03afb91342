"""DAG dispatch on heterogeneous processing elements (``schedgym/DAGDispatch-v0``)."""

from schedgym.envs.dag.types import DagError, DagInstance, DagSchedule, DagWorkload, Platform
from schedgym.envs.dag.validator import ScheduleError, validate_schedule

__all__ = [
    "DagError",
    "DagInstance",
    "DagSchedule",
    "DagWorkload",
    "Platform",
    "ScheduleError",
    "validate_schedule",
]
