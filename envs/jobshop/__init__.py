"""Job-shop dispatching: which job's next operation to dispatch (``schedgym/JobShop-v0``)."""

from schedgym.envs.jobshop.types import JobShopInstance, JobShopSchedule
from schedgym.envs.jobshop.validator import ScheduleError, validate_schedule

__all__ = ["JobShopInstance", "JobShopSchedule", "ScheduleError", "validate_schedule"]
