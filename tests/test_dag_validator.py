"""The independent DAG validator: accepts a hand-checked schedule with exact objectives, rejects each kind of
violation with a message naming the task or PE."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.envs.dag.types import INF, DagInstance, DagSchedule, DagWorkload, Platform
from schedgym.envs.dag.validator import ScheduleError, critical_path_lower_bounds, validate_schedule


def tiny() -> DagInstance:
    """2 PEs (cpu, acc); types a (cpu 4, acc 2) and b (cpu 3, acc unsupported). Job 0: x -> y (data 10),
    x -> z (data 0); job 1 (arrives at 5): w alone. Links: latency 1, bandwidth 5 (10 units take 3)."""
    pf = Platform(
        "p",
        ("cpu0", "acc0"),
        np.array([0, 1]),
        ("cpu", "acc"),
        ("a", "b"),
        np.array([[4.0, 2.0], [3.0, INF]]),
        np.array([[0, 1.0], [1.0, 0]]),
        np.array([[INF, 5.0], [5.0, INF]]),
    )
    wl = DagWorkload(
        "w",
        ("j0", "j1"),
        np.array([0.0, 5.0]),
        np.array([0, 0, 0, 1]),
        ("a", "b", "a", "b"),
        np.array([1.0, 1.0, 2.0, 1.0]),
        np.array([0, 0]),
        np.array([1, 2]),
        np.array([10.0, 0.0]),
        ("x", "y", "z", "w"),
    )
    return DagInstance("tiny", pf, wl)


def sched(pe, start, noise=None) -> DagSchedule:  # type: ignore[no-untyped-def]
    inst = tiny()
    pe, start = np.array(pe), np.array(start, float)
    noise = np.ones(4) if noise is None else np.array(noise, float)
    return DagSchedule("tiny", pe, start, start + inst.exec_time[np.arange(4), pe] * noise, noise)


# x on acc [0,2); y on cpu: data arrives 2 + 1 + 10/5 = 5 -> [5,8); z (work 2) on acc [2,6); w on cpu [8,11)
GOOD = ([1, 0, 1, 0], [0, 5, 2, 8])


def test_valid_schedule_objectives_by_hand():
    out = validate_schedule(tiny(), sched(*GOOD))
    assert out["makespan"] == 11.0
    # cp lower bounds: job0 = x fastest 2 + max(y 3, z 4) = 6; job1 = 3. Responses 8 and 6.
    np.testing.assert_array_equal(critical_path_lower_bounds(tiny()), [6.0, 3.0])
    np.testing.assert_allclose(out["mean_slowdown"], (8 / 6 + 6 / 3) / 2)
    assert out["max_slowdown"] == 2.0
    np.testing.assert_allclose(out["p99_slowdown"], np.percentile([8 / 6, 2.0], 99))
    assert out["mean_response"] == 7.0
    np.testing.assert_allclose(out["utilisation"], (2 + 3 + 4 + 3) / (2 * 11))


def test_json_round_trip_is_accepted():
    s = sched(*GOOD)
    assert validate_schedule(tiny(), s.to_json()) == validate_schedule(tiny(), s)


def test_noise_scales_durations():
    s = sched(
        [1, 0, 1, 0], [0, 5, 2, 8], noise=[1.5, 1, 1, 1]
    )  # x ends at 3 -> y data at 6: y at 5 is too early
    with pytest.raises(ScheduleError, match="'y' starts at 5.0 .* parent 'x'"):
        validate_schedule(tiny(), s)
    ok = sched([1, 0, 1, 0], [0, 6, 3, 9], noise=[1.5, 1, 1, 1])
    assert validate_schedule(tiny(), ok)["makespan"] == 12.0


@pytest.mark.parametrize(
    "pe, start, pattern",
    [
        ([1, 0, 1, 0], [0, 4.9, 2, 8], r"task 'y' starts at 4.9 on PE 'cpu0' before the data of parent 'x'"),
        (
            [1, 1, 1, 0],
            [0, 5, 2, 8],
            r"task 'y' \(type 'b'\) is placed on PE 'acc0', which does not support it",
        ),
        (
            [1, 0, 1, 0],
            [0, 5, 1, 8],
            r"task 'z' starts at 1.0 on PE 'acc0' before the data of parent 'x' \(finish 2.0",
        ),
        ([1, 0, 1, 0], [0, 5, 2, 4], r"task 'w' starts at 4.0 before its job arrives at 5.0"),
        ([1, 0, -1, 0], [0, 5, 2, 8], r"task 'z' is not placed"),
        ([1, 0, 1, 0], [0, 5, 2, 6], r"PE 'cpu0': task 'w' starts at 6.0 before task 'y' ends at 8.0"),
    ],
)
def test_violations_are_rejected_naming_the_culprit(pe, start, pattern):
    inst = tiny()
    pe_a, st = np.array(pe), np.array(start, float)
    dur = np.where(pe_a >= 0, inst.exec_time[np.arange(4), np.maximum(pe_a, 0)], 0)
    s = DagSchedule("tiny", pe_a, st, st + dur, np.ones(4))
    with pytest.raises(ScheduleError, match=pattern):
        validate_schedule(inst, s)


def test_wrong_duration_and_bad_noise_and_missing_start_are_rejected():
    s = sched(*GOOD)
    bad = DagSchedule("tiny", s.pe, s.start, s.finish + np.array([0, 0, 0.5, 0]), s.noise)
    with pytest.raises(ScheduleError, match="task 'z': finish 6.5 != start 2.0"):
        validate_schedule(tiny(), bad)
    with pytest.raises(ScheduleError, match="noise factor -1"):
        validate_schedule(tiny(), DagSchedule("tiny", s.pe, s.start, s.finish, np.array([1, -1.0, 1, 1])))
    with pytest.raises(ScheduleError, match="task 'w' has no start time"):
        validate_schedule(tiny(), DagSchedule("tiny", s.pe, np.array([0, 5, 2, np.nan]), s.finish, s.noise))
    with pytest.raises(ScheduleError, match="shape"):
        validate_schedule(tiny(), DagSchedule("tiny", s.pe[:3], s.start, s.finish, s.noise))


def test_zero_length_tasks_occupy_nothing():
    pf = Platform(
        "p", ("c",), np.array([0]), ("cpu",), ("a",), np.array([[1.0]]), np.zeros((1, 1)), np.ones((1, 1))
    )
    wl = DagWorkload(
        "w",
        ("j",),
        np.zeros(1),
        np.zeros(2, np.int64),
        ("a", "a"),
        np.array([0.0, 2.0]),
        np.array([], np.int64),
        np.array([], np.int64),
        np.array([]),
        ("zero", "two"),
    )
    inst = DagInstance("z", pf, wl)
    s = DagSchedule("z", np.array([0, 0]), np.array([1.0, 0.0]), np.array([1.0, 2.0]), np.ones(2))
    assert validate_schedule(inst, s)["makespan"] == 2.0
