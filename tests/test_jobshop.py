"""Job shop: instance files, validator, instance checks, env semantics, datasets, rules, CP-SAT."""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
from helpers import assert_obs_equal, rollout

import schedgym
import schedgym.policy
from schedgym import datasets
from schedgym.baselines.cpsat import CpSat, solve
from schedgym.envs.jobshop import JobShopInstance, ScheduleError, validate_schedule
from schedgym.envs.jobshop.env import (
    EDGE_MACHINE,
    EDGE_PRECEDENCE,
    F_NEXT,
    F_SCHEDULED,
    JobShopEnv,
)
from schedgym.envs.jobshop.io import (
    InstanceFormatError,
    benchmark_bounds,
    format_instance,
    load_benchmark,
    load_instance,
    parse_instance,
)
from schedgym.envs.jobshop.sim import JobShopState

ENV_ID = "schedgym/JobShop-v0"

# A 3x3 instance and a hand-built feasible schedule (makespan 11):
#   M0: J0.0 [0,3)  J1.1 [3,4)  J2.2 [8,9)
#   M1: J1.0 [0,2)  J0.1 [3,5)  J2.1 [5,8)
#   M2: J2.0 [0,4)  J0.2 [5,7)  J1.2 [7,11)
SMALL_MACHINES = [[0, 1, 2], [1, 0, 2], [2, 1, 0]]
SMALL_DURATIONS = [[3, 2, 2], [2, 1, 4], [4, 3, 1]]
SMALL_START = np.array([[0, 3, 5], [0, 3, 7], [0, 5, 8]], np.int64)


@pytest.fixture
def small() -> JobShopInstance:
    return JobShopInstance("small", SMALL_MACHINES, SMALL_DURATIONS, 3)


@pytest.fixture(scope="module")
def ft06() -> JobShopInstance:
    return load_benchmark("ft06")


GOOD_TEXT = """3 3
0 3 1 2 2 2
1 2 0 1 2 4
2 4 1 3 0 1
"""


# ============================================================================================ parser
class TestParser:
    def test_parses_the_standard_format(self, small):
        inst = parse_instance(GOOD_TEXT, "t")
        assert inst.name == "t"
        assert (inst.n_jobs, inst.n_machines, inst.n_ops_per_job) == (3, 3, 3)
        np.testing.assert_array_equal(inst.machines, small.machines)
        np.testing.assert_array_equal(inst.durations, small.durations)
        assert inst.machines.dtype == np.int64 and inst.durations.dtype == np.int64

    def test_comments_and_blank_lines_are_ignored_but_line_numbers_are_the_files(self):
        text = "# a comment\n\n3 3\n0 3 1 2 2 2\n\n# job 1 next\n1 2 0 1 2 x\n2 4 1 3 0 1\n"
        msg = r"^t:7: duration of operation 2 must be an integer, got 'x'"
        with pytest.raises(InstanceFormatError, match=msg):
            parse_instance(text, "t")
        ok = parse_instance(text.replace(" x", " 4"), "t")
        assert ok.durations[1, 2] == 4

    @pytest.mark.parametrize(
        ("text", "pattern"),
        [
            ("3 3 1\n", r"^t:1: expected 'n_jobs n_machines' \(2 integers\), got 3 fields"),
            ("3\n", r"^t:1: expected 'n_jobs n_machines' \(2 integers\), got 1 fields"),
            ("3 a\n", r"^t:1: n_machines must be an integer, got 'a'"),
            ("0 3\n", r"^t:1: n_jobs and n_machines must be >= 1"),
            ("", r"^t: empty file"),
            ("# only a comment\n\n", r"^t: empty file"),
            # numbers per line
            ("3 3\n0 3 1 2 2 2\n1 2 0 1 2\n2 4 1 3 0 1\n", r"^t:3: job 1 has 5 numbers; expected 6"),
            ("3 3\n0 3 1 2 2 2\n1 2 0 1 2 4 0 0\n2 4 1 3 0 1\n", r"^t:3: job 1 has 8 numbers; expected 6"),
            # non-integer / negative durations
            ("3 3\n0 3 1 2.5 2 2\n1 2 0 1 2 4\n2 4 1 3 0 1\n",
             r"^t:2: duration of operation 1 must be an integer, got '2.5'"),
            ("3 3\n0 3 1 2 2 2\n1 2 0 1 2 4\n2 4 1 -3 0 1\n",
             r"^t:4: duration -3 of operation 1 is negative"),
            # machines
            ("3 3\n0 3 1 2 2 2\n1 2 0 1 3 4\n2 4 1 3 0 1\n",
             r"^t:3: machine 3 of operation 2 is out of range 0\.\.2"),
            ("3 3\n0 3 1 2 2 2\n1 2 0 1 2 4\n2 4 -1 3 0 1\n",
             r"^t:4: machine -1 of operation 1 is out of range 0\.\.2"),
            ("3 3\n0 3 1 2 2 2\n1 2 0 1 2 4\n2 4 1 3 1 1\n",
             r"^t:4: job 2 visits machine 1 twice \(operation 2\)"),
            ("3 3\n0 3 1 2 2 2\nm 2 0 1 2 4\n2 4 1 3 0 1\n",
             r"^t:3: machine of operation 0 must be an integer, got 'm'"),
        ],
    )
    def test_errors_name_the_line_and_the_problem(self, text, pattern):
        with pytest.raises(InstanceFormatError, match=pattern):
            parse_instance(text, "t")

    def test_too_few_job_lines(self):
        msg = r"^t:3: the file ends after 2 job lines; the header \(line 1\) declares n_jobs=3"
        with pytest.raises(InstanceFormatError, match=msg):
            parse_instance("3 3\n0 3 1 2 2 2\n1 2 0 1 2 4\n", "t")

    def test_too_many_job_lines_names_the_extra_line(self):
        msg = r"^t:4: extra job line; the header \(line 1\) declares n_jobs=2"
        with pytest.raises(InstanceFormatError, match=msg):
            parse_instance("2 3\n0 3 1 2 2 2\n1 2 0 1 2 4\n2 4 1 3 0 1\n", "t")

    def test_format_error_is_a_value_error(self):
        assert issubclass(InstanceFormatError, ValueError)

    def test_load_instance_uses_the_file_stem_in_messages(self, tmp_path):
        p = tmp_path / "mine.txt"
        p.write_text("2 2\n0 1 1 2\n0 3 1 -4\n")
        with pytest.raises(InstanceFormatError, match=r"^mine:3: duration -4 of operation 1 is negative"):
            load_instance(p)
        p.write_text(GOOD_TEXT)
        inst = load_instance(str(p))
        assert inst.name == "mine" and inst.n_jobs == 3

    @pytest.mark.parametrize("name", ["ft06", "la01", "ta01", "swv11", "yn1"])
    def test_format_parse_round_trip_benchmarks(self, name):
        inst = load_benchmark(name)
        back = parse_instance(format_instance(inst), name)
        np.testing.assert_array_equal(back.machines, inst.machines)
        np.testing.assert_array_equal(back.durations, inst.durations)
        assert back.n_machines == inst.n_machines

    def test_format_parse_round_trip_random_and_zero_durations(self):
        from schedgym.envs.jobshop.generator import random_instance

        inst = random_instance(np.random.default_rng(0), 7, 4, low=0, high=5, name="r")
        assert (inst.durations == 0).any()  # zero durations are legal and must survive
        text = format_instance(inst)
        assert text.splitlines()[0] == "7 4" and text.endswith("\n")
        back = parse_instance(text)
        np.testing.assert_array_equal(back.machines, inst.machines)
        np.testing.assert_array_equal(back.durations, inst.durations)


# ============================================================================================ benchmarks
class TestBenchmarks:
    def test_all_162_shipped_benchmarks_load_with_consistent_bounds(self):
        bounds = benchmark_bounds()
        assert len(bounds) == 162
        families = {"ta": 80, "la": 40, "swv": 20, "orb": 10, "abz": 5, "yn": 4, "ft": 3}
        for prefix, count in families.items():
            got = [n for n in bounds if n.rstrip("0123456789") == prefix]
            assert len(got) == count, prefix
        for name, b in bounds.items():
            inst = load_benchmark(name)
            assert inst.name == name
            assert (inst.n_jobs, inst.n_machines) == (b["n_jobs"], b["n_machines"]), name
            assert inst.n_ops_per_job == inst.n_machines, name
            # every job visits every machine exactly once
            np.testing.assert_array_equal(np.sort(inst.machines, axis=1),
                                          np.broadcast_to(np.arange(inst.n_machines), inst.machines.shape))
            assert (inst.durations >= 0).all()
            assert b["lower_bound"] is not None and b["upper_bound"] is not None, name
            assert b["lower_bound"] <= b["upper_bound"], name
            if b["optimum"] is not None:
                assert b["optimum"] == b["lower_bound"] == b["upper_bound"], name
            # Trivial lower bounds: no schedule beats the longest job or the busiest machine.
            trivial = max(int(inst.durations.sum(axis=1).max()),
                          max(int(inst.durations[inst.machines == m].sum()) for m in range(inst.n_machines)))
            assert trivial <= b["lower_bound"], name
            assert inst.best_known == (b["optimum"] if b["optimum"] is not None else b["upper_bound"])

    def test_known_optima(self):
        assert load_benchmark("ft10").optimum == 930
        assert load_benchmark("ta01").optimum == 1231
        assert load_benchmark("ft06").optimum == 55
        ta01 = load_benchmark("ta01")
        assert (ta01.n_jobs, ta01.n_machines) == (15, 15)

    def test_unknown_benchmark_lists_names(self):
        with pytest.raises(ValueError, match=r"unknown job-shop benchmark 'ta99'.*'ft06'"):
            load_benchmark("ta99")


# ============================================================================================ validator
class TestValidator:
    def test_accepts_hand_built_schedule(self, small):
        assert validate_schedule(small, SMALL_START) == {"makespan": 11}
        # idle time and a later start are still feasible
        later = SMALL_START.copy()
        later[1, 2] = 20
        assert validate_schedule(small, later) == {"makespan": 24}

    def test_accepts_list_input(self, small):
        assert validate_schedule(small, SMALL_START.tolist())["makespan"] == 11

    def test_rejects_precedence_violation(self, small):
        s = SMALL_START.copy()
        s[0, 1] = 2  # J0.1 would start before J0.0 ends at 3 (no machine clash on M1: [2,4) vs [0,2),[5,8))
        msg = r"job 0: operation 1 starts at 2 before operation 0 ends at 3"
        with pytest.raises(ScheduleError, match=msg):
            validate_schedule(small, s)

    def test_rejects_machine_overlap(self, small):
        s = SMALL_START.copy()
        s[1, 1] = 2  # J1.1 on M0 [2,3) overlaps J0.0 [0,3); its job precedence still holds
        msg = r"machine 0: an operation starts at 2 before another ends at 3"
        with pytest.raises(ScheduleError, match=msg):
            validate_schedule(small, s)

    def test_rejects_identical_starts_on_one_machine(self, small):
        s = SMALL_START.copy()
        s[0, 2] = 7
        s[1, 2] = 7  # J0.2 and J1.2 both on M2 at 7
        with pytest.raises(ScheduleError, match=r"machine 2"):
            validate_schedule(small, s)

    @pytest.mark.parametrize("value", [-1, -5])
    def test_rejects_negative_or_unscheduled_starts(self, small, value):
        s = SMALL_START.copy()
        s[2, 2] = value
        with pytest.raises(ScheduleError, match=rf"operation \(2,2\) has a negative start time {value}"):
            validate_schedule(small, s)

    @pytest.mark.parametrize("shape", [(3, 2), (2, 3), (9,), (3, 3, 1)])
    def test_rejects_wrong_shape(self, small, shape):
        with pytest.raises(ScheduleError, match=r"shape"):
            validate_schedule(small, np.zeros(shape, np.int64))

    def test_rejects_float_start_times(self, small):
        with pytest.raises(ScheduleError, match=r"integers"):
            validate_schedule(small, SMALL_START.astype(float))

    def test_zero_length_operations_occupy_nothing(self):
        inst = JobShopInstance("z", [[0, 1], [0, 1]], [[4, 1], [0, 1]], 2)
        # J1.0 has length 0 on M0 at time 2, inside J0.0's [0,4): fine.
        assert validate_schedule(inst, np.array([[0, 4], [2, 2]]))["makespan"] == 5
        # ... but J1.1 on M1 [2,3) then must not clash with J0.1 [4,5): fine; make it clash:
        with pytest.raises(ScheduleError, match=r"machine 1"):
            validate_schedule(inst, np.array([[0, 4], [2, 4]]))

    def test_schedule_error_is_value_error(self):
        assert issubclass(ScheduleError, ValueError)


# ============================================================================================ instance checks
class TestInstance:
    @pytest.mark.parametrize(
        ("machines", "durations", "n_machines", "pattern"),
        [
            ([[0, 1], [1, 0]], [[1, 2, 3], [1, 2, 3]], 2,
             r"durations shape \(2, 3\) differs from machines shape \(2, 2\)"),
            ([[0, 1], [1, 0]], [[1, -2], [1, 2]], 2, r"durations must be >= 0"),
            ([[0, 2], [1, 0]], [[1, 2], [1, 2]], 2, r"machines must lie in 0\.\.1"),
            ([[0, -1], [1, 0]], [[1, 2], [1, 2]], 2, r"machines must lie in 0\.\.1"),
            ([[0, 0], [1, 0]], [[1, 2], [1, 2]], 2, r"job 0 visits a machine more than once"),
            ([0, 1], [1, 2], 2, r"machines must be a non-empty \(n_jobs, n_ops\) matrix, got shape \(2,\)"),
            (np.zeros((0, 2)), np.zeros((0, 2)), 2, r"machines must be a non-empty .* got shape \(0, 2\)"),
            ([[0, 1]], [[1, 2]], 0, r"n_machines must be >= 1"),
        ],
    )
    def test_rejects_bad_arrays(self, machines, durations, n_machines, pattern):
        with pytest.raises(ValueError, match=r"^bad: " + pattern):
            JobShopInstance("bad", machines, durations, n_machines)

    def test_arrays_are_frozen_int64_copies(self):
        m = np.array([[0, 1], [1, 0]])
        d = np.array([[1, 2], [3, 4]], np.int32)
        inst = JobShopInstance("x", m, d, 2)
        assert inst.durations.dtype == np.int64
        m[0, 0] = 1  # the caller's array is not aliased
        assert inst.machines[0, 0] == 0
        with pytest.raises(ValueError):
            inst.durations[0, 0] = 7

    def test_more_machines_than_operations_is_allowed(self):
        inst = JobShopInstance("x", [[0, 3], [2, 1]], [[1, 2], [3, 4]], 4)
        assert (inst.n_jobs, inst.n_ops_per_job, inst.n_machines) == (2, 2, 4)


# ============================================================================================ env
def dispatch_in_start_order(env: gym.Env, start: np.ndarray) -> tuple[float, dict]:
    """Dispatch every operation in increasing start-time order (ties: operation index, then job)."""
    j, k = np.nonzero(np.ones_like(start, dtype=bool))
    order = np.lexsort((j, k, start[j, k]))
    total, info, term = 0.0, {}, False
    for a in j[order].tolist():
        assert not term
        _, r, term, trunc, info = env.step(a)
        assert not trunc and not info["invalid_action"]
        total += r
    assert term
    return total, info


class TestEnv:
    def test_episode_return_is_affine_in_makespan(self):
        env = gym.make(ENV_ID)
        for seed in range(5):
            traj = rollout(env, seed, seed)
            inst = env.unwrapped.instance
            ts = max(1.0, inst.durations.sum() / inst.n_machines)
            lb0 = int(inst.durations.sum(axis=1).max())  # longest job = initial lower bound
            assert traj.infos[0]["makespan_lb"] == lb0
            assert env.unwrapped.time_scale == pytest.approx(ts)
            mk = traj.final_info["makespan"]
            assert sum(traj.rewards) == pytest.approx(-(mk - lb0) / ts, rel=1e-9, abs=1e-9)
            lbs = [i["makespan_lb"] for i in traj.infos]
            assert lbs == sorted(lbs), "the lower bound never decreases"
            assert lbs[-1] == mk
            assert all(r <= 0 for r in traj.rewards)

    def test_replaying_cpsat_optimum_of_ft06_gives_55(self, ft06):
        start, info = solve(ft06, time_limit=10)
        assert info["solver_status"] == "OPTIMAL"
        assert validate_schedule(ft06, start)["makespan"] == 55
        env = gym.make(ENV_ID, instance=ft06)
        env.reset(seed=0)
        ret, last = dispatch_in_start_order(env, start)
        assert last["makespan"] == 55
        assert env.unwrapped.validate() == {"makespan": 55}
        got = env.unwrapped.schedule().start_times
        assert (got <= start).all(), "replay yields the same or a left-shifted schedule"
        assert int(ft06.durations.sum(axis=1).max()) == 47  # ft06's longest job: the initial lower bound
        assert ret == pytest.approx(-(55 - 47) / env.unwrapped.time_scale)

    def test_replaying_a_semi_active_schedule_reproduces_it_exactly(self, small):
        env = gym.make(ENV_ID, instance=small)
        env.reset(seed=0)
        dispatch_in_start_order(env, SMALL_START)
        got = env.unwrapped.schedule().start_times
        # The hand schedule is semi-active (no operation can start earlier without reordering a machine),
        # so dispatching in start order reproduces it exactly.
        np.testing.assert_array_equal(got, SMALL_START)
        assert env.unwrapped.validate()["makespan"] == 11

    def test_reset_with_instance_bigger_than_padding_raises(self):
        env = gym.make(ENV_ID, dataset="jobshop/random-5x4")
        big = load_benchmark("ft06")
        msg = r"ft06 \(6x6\) does not fit the padding max_jobs x max_machines = 5x4"
        with pytest.raises(ValueError, match=msg):
            env.reset(seed=0, options={"instance": big})
        with pytest.raises(TypeError, match="JobShopInstance"):
            env.reset(seed=0, options={"instance": "ft06"})

    def test_smaller_instance_is_padded_and_padding_is_masked(self, small):
        env = gym.make(ENV_ID, dataset="jobshop/random-5x4")
        obs, info = env.reset(seed=0, options={"instance": small})
        assert env.unwrapped.instance is small
        np.testing.assert_array_equal(info["action_mask"], [1, 1, 1, 0, 0])
        nm = obs["node_mask"].reshape(5, 4)
        np.testing.assert_array_equal(nm, np.pad(np.ones((3, 3), np.int8), ((0, 2), (0, 1))))
        # the padded job is a no-op
        _, r, term, trunc, i = env.step(4)
        assert i["invalid_action"] and r == -1.0 and not term and not trunc
        # finishing works on the padded layout; action_node points at next operations
        traj = rollout(env, None, 0, first=(obs, info))
        assert traj.final_info["makespan"] == env.unwrapped.validate()["makespan"]
        # the next reset without options samples from the dataset again
        env.reset()
        assert env.unwrapped.instance.n_jobs == 5

    def test_max_padding_smaller_than_instances_is_rejected(self):
        msg = r"max_jobs x max_machines = 4x4 is smaller than the instances \(5x4\)"
        with pytest.raises(ValueError, match=msg):
            gym.make(ENV_ID, dataset="jobshop/random-5x4", max_jobs=4)

    def test_make_with_benchmark_name(self):
        env = gym.make(ENV_ID, instance="ta01")
        obs, _ = env.reset(seed=0)
        inst = env.unwrapped.instance
        assert inst.name == "ta01" and inst.optimum == 1231
        assert env.action_space == gym.spaces.Discrete(15)
        assert obs["node_features"].shape == (225, 8)
        env.reset(seed=1)
        assert env.unwrapped.instance is inst  # a fixed instance for every episode

    def test_make_with_file_path(self, tmp_path, small):
        p = tmp_path / "tiny.txt"
        p.write_text(format_instance(small))
        env = gym.make(ENV_ID, instance=str(p))
        env.reset(seed=0)
        inst = env.unwrapped.instance
        assert inst.name == "tiny"
        np.testing.assert_array_equal(inst.durations, small.durations)

    def test_make_with_bad_instance_arguments(self, tmp_path):
        with pytest.raises(ValueError, match="unknown job-shop benchmark 'nosuch'"):
            gym.make(ENV_ID, instance="nosuch")
        bad = tmp_path / "bad.txt"
        bad.write_text("2 2\n0 1 1 2\n")
        with pytest.raises(InstanceFormatError, match=r"bad:2: the file ends after 1 job lines"):
            gym.make(ENV_ID, instance=str(bad))
        with pytest.raises(TypeError, match="instance must be"):
            gym.make(ENV_ID, instance=42)
        with pytest.raises(ValueError, match=r"render_mode must be one of \['ansi', 'rgb_array'\]"):
            JobShopEnv(instance="ft06", render_mode="human")

    def test_rllib_style_config_dict(self):
        env = JobShopEnv({"instance": "ft06", "strict": True})
        assert env.strict and env.max_jobs == 6
        with pytest.raises(TypeError, match=r"unknown config keys \['bogus'\]"):
            JobShopEnv({"instance": "ft06", "bogus": 1})

    def test_truncated_after_n_operations_invalid_actions(self, small):
        env = gym.make(ENV_ID, instance=small, max_jobs=4)
        env.reset(seed=0)
        for i in range(8):
            _, r, term, trunc, info = env.step(3)
            assert info["invalid_action"] and not term and not trunc, i
        _, r, term, trunc, info = env.step(3)
        assert trunc and not term and r == -1.0
        assert "makespan" not in info

    def test_observation_graph_structure(self, ft06):
        env = gym.make(ENV_ID, instance=ft06, max_jobs=7, max_machines=8)
        obs, info = env.reset(seed=0)
        J, K, KK = 6, 6, 8
        assert obs["node_features"].shape == (7 * 8, 8)
        n_prec = J * (K - 1)
        assert obs["edge_mask"].sum() == n_prec
        assert (obs["edge_features"][:n_prec, EDGE_PRECEDENCE] == 1).all()
        np.testing.assert_array_equal(obs["action_node"], np.arange(7) * KK)
        np.testing.assert_array_equal(obs["node_features"][np.arange(J) * KK, F_NEXT], 1)
        traj = rollout(env, None, 0, first=(obs, info))
        last = traj.observations[-1]
        # every machine with n operations contributes n - 1 machine-order edges
        assert last["edge_mask"].sum() == n_prec + (J * K - ft06.n_machines)
        em = last["edge_mask"].astype(bool)
        assert (last["edge_features"][em].sum(axis=1) == 1).all()
        src, dst = last["edge_index"][:, em]
        assert (last["node_mask"][src] == 1).all() and (last["node_mask"][dst] == 1).all()
        start = env.unwrapped.schedule().start_times
        mach = last["edge_features"][em, EDGE_MACHINE] == 1
        for s, d in zip(src[mach], dst[mach], strict=True):
            (js, ks), (jd, kd) = divmod(int(s), KK), divmod(int(d), KK)
            assert ft06.machines[js, ks] == ft06.machines[jd, kd]
            assert start[js, ks] + ft06.durations[js, ks] <= start[jd, kd]
        assert (last["node_features"][last["node_mask"] == 1, F_SCHEDULED] == 1).all()
        assert last["action_mask"].sum() == 0

    def test_render_modes(self, small):
        env = gym.make(ENV_ID, instance=small, render_mode="ansi")
        env.reset(seed=0)
        dispatch_in_start_order(env, SMALL_START)
        text = env.render()
        assert "makespan 11" in text and "9/9 operations" in text
        assert "J2.2@8" in text
        env = gym.make(ENV_ID, instance=small, render_mode="rgb_array")
        env.reset(seed=0)
        img = env.render()
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8

    def test_pickle_fixed_instance_env_mid_episode(self, ft06):
        env = gym.make(ENV_ID, instance=ft06)
        rng = np.random.default_rng(3)
        head = rollout(env, 3, rng, max_steps=10)
        clone = pickle.loads(pickle.dumps(env))
        rng2 = copy.deepcopy(rng)
        first = (head.observations[-1], head.infos[-1])
        t1 = rollout(clone, None, rng2, first=first)
        t2 = rollout(env, None, rng, first=first)
        assert t1.final_info["makespan"] == t2.final_info["makespan"]
        for a, b in zip(t1.observations, t2.observations, strict=True):
            assert_obs_equal(a, b)

    def test_sim_rejects_dispatching_a_finished_job(self, small):
        st = JobShopState(small)
        for _ in range(3):
            st.dispatch(0)
        assert not st.legal()[0] and st.legal()[1:].all()
        with pytest.raises(ValueError, match="job 0 has no unscheduled operation"):
            st.dispatch(0)
        assert st.earliest_starts()[0] == np.iinfo(np.int64).max
        assert st.next_durations()[0] == 0


# ============================================================================================ datasets
class TestRandomDataset:
    def test_env_with_random_5x4_dataset(self):
        env = gym.make(ENV_ID, dataset="jobshop/random-5x4")
        obs, _ = env.reset(seed=0)
        inst = env.unwrapped.instance
        assert (inst.n_jobs, inst.n_machines, inst.n_ops_per_job) == (5, 4, 4)
        assert env.action_space == gym.spaces.Discrete(5)
        assert obs["node_features"].shape == (20, 8)
        assert ((inst.durations >= 1) & (inst.durations <= 99)).all()

    def test_test_split_has_100_fixed_instances(self):
        ds1 = datasets.get("jobshop/random-5x4")
        ds2 = datasets.get("jobshop/random-5x4")
        names = ds1.names("test")
        assert len(names) == 100 and len(set(names)) == 100
        assert ds1.split_size("test") == 100 and ds1.split_size("train") is None
        a, b = list(ds1.instances("test")), list(ds2.instances("test"))
        for x, y in zip(a, b, strict=True):
            assert x.name == y.name
            np.testing.assert_array_equal(x.machines, y.machines)
            np.testing.assert_array_equal(x.durations, y.durations)
        assert not np.array_equal(a[0].durations, a[1].durations)
        assert all((i.n_jobs, i.n_machines) == (5, 4) for i in a)

    def test_test_split_does_not_depend_on_size_of_other_datasets(self):
        # instance i of random-5x4 is the same no matter which other datasets were loaded first
        x = datasets.get("jobshop/random-5x4").load("random-5x4-007")
        datasets.get("jobshop/random-6x4").load("random-6x4-007")
        y = datasets.get("jobshop/random-5x4").load("random-5x4-007")
        np.testing.assert_array_equal(x.durations, y.durations)

    def test_train_sampling_is_seeded_by_env_seed(self):
        def first_instance(seed):
            env = gym.make(ENV_ID, dataset="jobshop/random-5x4")
            env.reset(seed=seed)
            return env.unwrapped.instance

        a, b, c = first_instance(3), first_instance(3), first_instance(4)
        np.testing.assert_array_equal(a.durations, b.durations)
        np.testing.assert_array_equal(a.machines, b.machines)
        assert not np.array_equal(a.durations, c.durations)
        env = gym.make(ENV_ID, dataset="jobshop/random-5x4")
        env.reset(seed=3)
        d1 = env.unwrapped.instance.durations
        env.reset()
        d2 = env.unwrapped.instance.durations
        assert not np.array_equal(d1, d2), "successive resets draw new instances"

    def test_test_split_env_samples_the_fixed_instances(self):
        env = gym.make(ENV_ID, dataset="jobshop/random-5x4", split="test")
        names = set(datasets.get("jobshop/random-5x4").names("test"))
        for seed in range(3):
            env.reset(seed=seed)
            assert env.unwrapped.instance.name in names

    def test_benchmark_dataset_env_pads_to_the_largest(self):
        env = gym.make(ENV_ID, dataset="jobshop/ft", split="test")
        assert (env.unwrapped.max_jobs, env.unwrapped.max_machines) == (20, 10)
        seen = set()
        for seed in range(12):
            env.reset(seed=seed)
            seen.add(env.unwrapped.instance.name)
        assert seen <= {"ft06", "ft10", "ft20"} and len(seen) >= 2

    def test_train_split_of_benchmark_dataset_is_an_error(self):
        with pytest.raises(ValueError, match=r"has no split 'train'; expected one of \['test'\]"):
            gym.make(ENV_ID, dataset="jobshop/taillard")

    def test_taillard_groups(self):
        for g, group in enumerate(["15x15", "20x15", "20x20", "30x15", "30x20", "50x15", "50x20", "100x20"]):
            ds = datasets.get(f"jobshop/taillard-{group}")
            names = ds.names("test")
            assert names == tuple(f"ta{10 * g + i:02d}" for i in range(1, 11))
            j, m = map(int, group.split("x"))
            assert ds.meta["max_size"] == (j, m)


# ============================================================================================ rules
def _rule_action(name: str, inst: JobShopInstance) -> int:
    env = gym.make(ENV_ID, instance=inst)
    obs, info = env.reset(seed=0)
    pol = schedgym.make_policy(ENV_ID, name)
    pol.reset(env, seed=0)
    return pol.act(obs, info)


class TestDispatchingRules:
    # Three jobs whose first operations use different machines, so all are non-delay candidates at t=0.
    RULES = JobShopInstance("rules", [[0, 1, 2], [1, 2, 0], [2, 0, 1]],
                            [[5, 1, 1], [2, 9, 9], [7, 1, 1]], 3)

    @pytest.mark.parametrize(("rule", "expected"), [
        ("spt", 1),   # shortest next op: 2
        ("lpt", 2),   # longest next op: 7
        ("mwkr", 1),  # most work remaining: 20
        ("lwkr", 0),  # least work remaining: 7
        ("mor", 0),   # all have 3 ops left: tie -> lowest index
        ("lor", 0),
        ("fifo", 0),  # all ready at 0: tie -> lowest index
    ])
    def test_rule_choice_at_start(self, rule, expected):
        assert _rule_action(rule, self.RULES) == expected

    def test_rules_keep_only_non_delay_candidates(self):
        # A case where the preferred job cannot start earliest.
        inst = JobShopInstance("nd", [[0, 1], [1, 0]], [[5, 5], [1, 1]], 2)
        env = gym.make(ENV_ID, instance=inst)
        obs, info = env.reset(seed=0)
        env.step(0)  # J0.0 on M0 [0,5); J1.0 on M1 can start at 0, J0.1 on M1 only at 5
        pol = schedgym.make_policy(ENV_ID, "lpt")
        pol.reset(env, seed=0)
        # LPT would prefer J0.1 (5) over J1.0 (1), but J1.0 is the only non-delay candidate.
        assert pol.act(None, {}) == 1

    def test_every_baseline_is_a_policy_and_finishes_ft06_validly(self, ft06):
        names = sorted(schedgym.policy.baselines(ENV_ID))
        assert sorted(schedgym.policy.baselines("schedgym:" + ENV_ID)) == names
        assert names == ["cpsat", "fifo", "lor", "lpt", "lwkr", "mor", "mwkr", "random", "spt"]
        res = schedgym.evaluate(ENV_ID, [n for n in names if n != "cpsat"], instances=[ft06], seeds=[0, 1])
        for row in res.rows:
            assert row["makespan"] >= 55
            assert row["invalid_actions"] == 0 and row["steps"] == 36
            start = np.array(row["schedule"]["start_times"])
            assert validate_schedule(ft06, start)["makespan"] == row["makespan"]
        # deterministic rules give the same makespan for every seed
        for name in ("spt", "mwkr", "mor"):
            assert len(set(res.column("makespan", name))) == 1

    def test_random_rule_is_seeded(self):
        inst = load_benchmark("la01")
        r = schedgym.evaluate(ENV_ID, "random", instances=[inst], seeds=[0, 0, 1, 2, 3])
        mk = r.column("makespan")
        assert mk[0] == mk[1]
        assert len(set(mk)) > 1


PUBLISHED = {  # job-shop-lib's published mean Taillard gaps (%)
    "spt": [25.9, 32.8, 27.8, 35.3, 34.4, 24.1, 25.5, 14.4],
    "mwkr": [19.2, 23.4, 21.8, 23.9, 25.1, 16.9, 17.9, 8.3],
    "mor": [20.5, 23.6, 21.7, 22.8, 24.9, 17.4, 17.7, 9.2],
}
COMMUNITY_15x15 = {"spt": 26.1, "mwkr": 19.1, "mor": 20.4}
GROUPS = ["15x15", "20x15", "20x20", "30x15", "30x20", "50x15", "50x20", "100x20"]


def _mean_gaps(group: str) -> dict[str, float]:
    res = schedgym.evaluate(ENV_ID, ["spt", "mwkr", "mor"], f"jobshop/taillard-{group}", seeds=1)
    assert len(res) == 30
    return {p: float(np.mean(res.column("gap_pct", p))) for p in ("spt", "mwkr", "mor")}


def test_dispatching_rules_match_published_taillard_15x15():
    gaps = _mean_gaps("15x15")
    for rule, value in gaps.items():
        assert round(value, 1) == PUBLISHED[rule][0], (rule, value)
        assert abs(value - COMMUNITY_15x15[rule]) <= 1.5, (rule, value)


@pytest.mark.slow
def test_dispatching_rules_match_published_taillard_all_groups():
    for g, group in enumerate(GROUPS):
        gaps = _mean_gaps(group)
        for rule, value in gaps.items():
            assert round(value, 1) == PUBLISHED[rule][g], (group, rule, value)


def test_cpsat_policy_solves_ft06_through_evaluate(ft06):
    res = schedgym.evaluate(ENV_ID, CpSat(time_limit=5), instances=[ft06], seeds=1)
    (row,) = res.rows
    assert row["policy"] == "cpsat" and row["instance"] == "ft06"
    assert row["makespan"] == 55
    assert row["best_known"] == 55 and row["gap_pct"] == 0.0
    assert validate_schedule(ft06, np.array(row["schedule"]["start_times"]))["makespan"] == 55


def test_cpsat_rejects_bad_arguments():
    with pytest.raises(ValueError, match="time_limit"):
        CpSat(time_limit=0)
    with pytest.raises(ValueError, match="num_workers"):
        CpSat(num_workers=0)
