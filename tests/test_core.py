"""The shared core: event engine, padded-graph observations, datasets registry, evaluation harness."""

from __future__ import annotations

import copy
import csv
import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
from helpers import rollout

import schedgym
import schedgym.policy
from schedgym import datasets
from schedgym.engine import EventQueue
from schedgym.envs.jobshop import JobShopInstance, validate_schedule
from schedgym.envs.jobshop.io import load_benchmark
from schedgym.graph import GraphSpec, to_pyg
from schedgym.metrics import gap_percent, summarize

ENV_ID = "schedgym/JobShop-v0"


# ============================================================================================ EventQueue
class TestEventQueue:
    def test_orders_by_time(self):
        q: EventQueue[str] = EventQueue()
        for t, e in [(5.0, "c"), (1.0, "a"), (3.0, "b"), (10.0, "d")]:
            q.push(t, e)
        assert len(q) == 4 and q.peek_time() == 1.0
        assert [q.pop() for _ in range(4)] == [(1.0, "a"), (3.0, "b"), (5.0, "c"), (10.0, "d")]
        assert q.now == 10.0 and len(q) == 0 and q.peek_time() == float("inf")

    def test_equal_times_order_by_priority_then_insertion(self):
        q: EventQueue[str] = EventQueue()
        q.push(2.0, "p1-first", priority=1)
        q.push(2.0, "p0-first", priority=0)
        q.push(2.0, "p1-second", priority=1)
        q.push(2.0, "p-1", priority=-1)
        q.push(2.0, "p0-second", priority=0)
        q.push(1.0, "early", priority=9)
        assert [e for _, e in (q.pop() for _ in range(6))] == [
            "early", "p-1", "p0-first", "p0-second", "p1-first", "p1-second"]

    def test_uncomparable_events_never_get_compared(self):
        q: EventQueue[dict] = EventQueue()
        for i in range(50):
            q.push(1.0, {"i": i})  # dicts do not support <; the seq number breaks every tie
        assert [q.pop()[1]["i"] for _ in range(50)] == list(range(50))

    def test_pushing_into_the_past_raises(self):
        q: EventQueue[str] = EventQueue()
        q.push(4.0, "x")
        q.pop()
        q.push(4.0, "same time is fine")
        with pytest.raises(ValueError, match=r"event time 3.9 is before the current time 4.0"):
            q.push(3.9, "y")
        assert len(q) == 1

    def test_pop_empty_raises(self):
        with pytest.raises(IndexError):
            EventQueue().pop()

    def test_pop_until(self):
        q: EventQueue[str] = EventQueue()
        for t, e in [(1.0, "a"), (2.0, "b"), (2.0, "c"), (3.0, "d"), (7.0, "e")]:
            q.push(t, e)
        assert q.pop_until(2.0) == [(1.0, "a"), (2.0, "b"), (2.0, "c")]
        assert q.now == 2.0
        assert q.pop_until(5.0) == [(3.0, "d")]
        assert q.now == 5.0, "the clock advances to the horizon even without an event there"
        with pytest.raises(ValueError):
            q.push(4.0, "too late")
        assert q.pop_until(1.0) == [] and q.now == 5.0, "pop_until never moves the clock back"
        assert q.pop() == (7.0, "e")

    def test_clear_rewinds(self):
        q: EventQueue[str] = EventQueue()
        q.push(5.0, "a")
        q.pop()
        q.push(6.0, "b")
        q.clear()
        assert len(q) == 0 and q.now == 0.0
        q.push(0.0, "c")
        assert q.pop() == (0.0, "c")

    @pytest.mark.parametrize("how", ["pickle", "deepcopy"])
    def test_copies_are_independent_and_identical(self, how):
        q: EventQueue[tuple] = EventQueue()
        for i, t in enumerate([3.0, 1.0, 1.0, 2.0, 1.0]):
            q.push(t, ("ev", i), priority=i % 2)
        q.pop()
        c = pickle.loads(pickle.dumps(q)) if how == "pickle" else copy.deepcopy(q)
        assert c.now == q.now and len(c) == len(q)
        # same subsequent insertion order in both
        q.push(2.0, ("new", 0))
        c.push(2.0, ("new", 0))
        out_q = [q.pop() for _ in range(len(q))]
        assert len(c) == 5, "popping the original must not drain the copy"
        out_c = [c.pop() for _ in range(len(c))]
        assert out_q == out_c

    def test_two_queues_are_independent(self):
        a: EventQueue[str] = EventQueue()
        b: EventQueue[str] = EventQueue()
        a.push(1.0, "a0")
        for i in range(10):
            b.push(1.0, f"b{i}")
        a.push(1.0, "a1")
        b.pop()
        assert a.now == 0.0 and len(a) == 2 and len(b) == 9
        assert [a.pop()[1], a.pop()[1]] == ["a0", "a1"]
        assert [b.pop()[1] for _ in range(9)] == [f"b{i}" for i in range(1, 10)]
        # a fresh queue's tie-breaking starts from scratch regardless of other queues' history
        c: EventQueue[str] = EventQueue()
        c.push(1.0, "x")
        c.push(1.0, "y")
        assert [c.pop()[1], c.pop()[1]] == ["x", "y"]


# ====================================================================================== GraphSpec / to_pyg
class TestGraphSpec:
    def test_space_shapes_and_dtypes(self):
        spec = GraphSpec(max_nodes=7, max_edges=11, node_dim=3, edge_dim=2, n_actions=4)
        sp = spec.space()
        assert isinstance(sp, gym.spaces.Dict)
        expect = {
            "node_features": ((7, 3), np.float32), "edge_index": ((2, 11), np.int64),
            "edge_features": ((11, 2), np.float32), "node_mask": ((7,), np.int8),
            "edge_mask": ((11,), np.int8), "action_mask": ((4,), np.int8),
        }
        assert set(sp.spaces) == set(expect)
        for k, (shape, dtype) in expect.items():
            assert sp[k].shape == shape and sp[k].dtype == dtype, k
        assert sp["edge_index"].high.max() == 6 and sp["edge_index"].low.min() == 0
        z = spec.zeros()
        assert sp.contains(z)
        for k, (shape, dtype) in expect.items():
            assert z[k].shape == shape and z[k].dtype == dtype and not z[k].any()

    def test_action_node_field(self):
        spec = GraphSpec(7, 11, 3, 2, 4, action_node=True)
        sp = spec.space(0.0, 1.0)
        assert sp["action_node"].shape == (4,) and sp["action_node"].dtype == np.int64
        assert sp["node_features"].low.min() == 0.0 and sp["node_features"].high.max() == 1.0
        z = spec.zeros()
        z["node_features"][0, 0] = 2.0  # outside [0, 1]
        assert not sp.contains(z)

    @pytest.mark.parametrize("field", ["max_nodes", "max_edges", "node_dim", "edge_dim", "n_actions"])
    def test_rejects_non_positive_sizes(self, field):
        kwargs = dict(max_nodes=2, max_edges=2, node_dim=1, edge_dim=1, n_actions=1)
        kwargs[field] = 0
        with pytest.raises(ValueError, match=rf"GraphSpec.{field} must be >= 1, got 0"):
            GraphSpec(**kwargs)


def _padded_observations(n: int = 3) -> tuple[gym.Env, list[dict[str, np.ndarray]]]:
    """Observations of a 3x3 instance in a 5x4-padded job-shop env, at different points of an episode."""
    inst = JobShopInstance("g", [[0, 1, 2], [1, 0, 2], [2, 1, 0]], [[3, 2, 2], [2, 1, 4], [4, 3, 1]], 3)
    env = gym.make(ENV_ID, instance=inst, max_jobs=5, max_machines=4)
    traj = rollout(env, 0, 0)
    picks = np.linspace(0, len(traj.observations) - 1, n).astype(int)
    return env, [traj.observations[i] for i in picks]


class TestToPyg:
    def test_single_observation(self, torch):
        _, obs_list = _padded_observations()
        for obs in obs_list:
            data = to_pyg(obs)
            nm = obs["node_mask"].astype(bool)
            em = obs["edge_mask"].astype(bool)
            assert data.num_nodes == nm.sum() == 9
            assert data.edge_index.shape == (2, em.sum())
            assert data.edge_index.dtype == torch.long
            if data.edge_index.numel():
                assert int(data.edge_index.min()) >= 0 and int(data.edge_index.max()) < data.num_nodes
            np.testing.assert_array_equal(data.x.numpy(), obs["node_features"][nm])
            np.testing.assert_array_equal(data.edge_attr.numpy(), obs["edge_features"][em])
            assert data.action_mask.dtype == torch.bool
            np.testing.assert_array_equal(data.action_mask.numpy(), obs["action_mask"].astype(bool))
            # Node renumbering: real node j*4+k (padded stride 4) becomes j*3+k.
            old = obs["edge_index"][:, em]
            np.testing.assert_array_equal(data.edge_index.numpy(), (old // 4) * 3 + old % 4)
            real = obs["action_mask"].astype(bool)
            np.testing.assert_array_equal(data.action_node.numpy()[real],
                                          (obs["action_node"][real] // 4) * 3 + obs["action_node"][real] % 4)

    def test_batch_of_three(self, torch):
        _, obs_list = _padded_observations(3)
        batch_obs = {k: np.stack([o[k] for o in obs_list], axis=0) for k in obs_list[0]}
        assert batch_obs["node_features"].shape[0] == 3
        batch = to_pyg(batch_obs)
        assert batch.num_graphs == 3
        assert batch.num_nodes == int(batch_obs["node_mask"].sum())
        assert batch.edge_index.shape[1] == int(batch_obs["edge_mask"].sum())
        assert int(batch.edge_index.max()) < batch.num_nodes
        for b, obs in enumerate(obs_list):
            g = batch.get_example(b)
            assert g.num_nodes == int(obs["node_mask"].sum())
            assert g.edge_index.shape[1] == int(obs["edge_mask"].sum())
            if g.edge_index.numel():
                assert int(g.edge_index.max()) < g.num_nodes
            # the batch's node ownership matches the per-graph counts
            assert int((batch.batch == b).sum()) == g.num_nodes
        # the three graphs differ in their edge counts (machine edges are added as the episode goes)
        counts = [int(o["edge_mask"].sum()) for o in obs_list]
        assert counts[0] < counts[-1]

    def test_batch_of_torch_tensors_with_float_edge_index(self, torch):
        """SB3 hands observations over as float tensors; the result must be the same."""
        _, obs_list = _padded_observations(3)
        batch_obs = {k: np.stack([o[k] for o in obs_list], axis=0) for k in obs_list[0]}
        as_torch = {k: torch.as_tensor(v).float() for k, v in batch_obs.items()}
        a, b = to_pyg(batch_obs), to_pyg(as_torch)
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.x, b.x)

    def test_edge_to_padded_node_raises(self, torch):
        _, obs_list = _padded_observations(2)
        obs = {k: v.copy() for k, v in obs_list[-1].items()}
        pad = int(np.flatnonzero(obs["node_mask"] == 0)[0])
        first_real_edge = int(np.flatnonzero(obs["edge_mask"])[0])
        obs["edge_index"][1, first_real_edge] = pad
        with pytest.raises(ValueError, match="padded node"):
            to_pyg(obs)
        # ... but a masked-out edge may point anywhere
        free = int(np.flatnonzero(obs["edge_mask"] == 0)[0])
        ok = {k: v.copy() for k, v in obs_list[-1].items()}
        ok["edge_index"][:, free] = pad
        assert to_pyg(ok).edge_index.shape[1] == int(ok["edge_mask"].sum())


# ============================================================================================ datasets
class TestDatasets:
    def test_unknown_name_lists_names(self):
        with pytest.raises(ValueError) as exc:
            datasets.get("jobshop/nosuch")
        msg = str(exc.value)
        assert "unknown dataset 'jobshop/nosuch'" in msg
        for name in ("jobshop/taillard", "jobshop/ft", "jobshop/taillard-15x15", "jobshop/random-JxM"):
            assert f"'{name}'" in msg

    def test_unknown_split(self):
        msg = r"dataset jobshop/taillard has no split 'train'; expected one of \['test'\]"
        with pytest.raises(ValueError, match=msg):
            datasets.parse("jobshop/taillard:train")
        with pytest.raises(ValueError, match=r"has no split 'valid'; expected one of \['test', 'train'\]"):
            datasets.parse("jobshop/random-4x3:valid")

    def test_parse(self):
        ds, split = datasets.parse("jobshop/taillard:test")
        assert ds.name == "jobshop/taillard" and split == "test"
        ds, split = datasets.parse("jobshop/ft")
        assert ds.name == "jobshop/ft" and split == "test"
        ds, split = datasets.parse("jobshop/random-4x3:train")
        assert ds.name == "jobshop/random-4x3" and split == "train"
        ds, split = datasets.parse("jobshop/random-4x3", default_split="train")
        assert split == "train"
        assert datasets.get("jobshop/ft:test") is datasets.get("jobshop/ft")

    def test_catalogue(self):
        rows = {name: (env_id, sizes, desc) for name, env_id, sizes, desc in datasets.catalogue()}
        assert rows["jobshop/taillard"][0] == ENV_ID
        assert rows["jobshop/taillard"][1] == {"test": 80}
        assert rows["jobshop/lawrence"][1] == {"test": 40}
        assert rows["jobshop/ft"][1] == {"test": 3}
        for group in ("15x15", "100x20"):
            assert rows[f"jobshop/taillard-{group}"][1] == {"test": 10}
        assert "jobshop/random-JxM" in rows and rows["jobshop/random-JxM"][2]
        names = [r[0] for r in datasets.catalogue()]
        assert names == sorted(names)

    def test_pattern_dataset_and_bad_sizes(self):
        ds = datasets.get("jobshop/random-12x7")
        assert ds.split_size("train") is None and ds.split_size("test") == 100
        assert ds.names("test")[0] == "random-12x7-000"
        with pytest.raises(ValueError, match="unbounded generator; use sample"):
            ds.names("train")
        inst = ds.sample(np.random.default_rng(0), "train")
        assert (inst.n_jobs, inst.n_machines) == (12, 7)
        with pytest.raises(ValueError, match=r"J, M >= 1, got 0x3"):
            datasets.get("jobshop/random-0x3")

    def test_finite_split_sampling_and_cache(self):
        ds = datasets.get("jobshop/ft")
        a = ds.sample(np.random.default_rng(1), "test")
        b = ds.sample(np.random.default_rng(1), "test")
        assert a is b  # cached per dataset object
        assert a.name in ds.names("test")
        assert [i.name for i in ds.instances("test")] == ["ft06", "ft10", "ft20"]

    def test_duplicate_registration_raises(self):
        existing = datasets.get("jobshop/ft")
        with pytest.raises(ValueError, match="already registered"):
            datasets.register(existing)


# ============================================================================================ evaluation
class InvalidForever:
    """Always picks the padding job, which is masked out."""

    name = "invalid-forever"

    def __init__(self, action: int) -> None:
        self.action = action

    def reset(self, env, seed=None) -> None:
        pass

    def act(self, obs, info) -> int:
        return self.action


class FirstValid:
    """A learned-agent stand-in: uses only the observation."""

    name = "first-valid"

    def reset(self, env, seed=None) -> None:
        pass

    def act(self, obs, info) -> int:
        return int(np.flatnonzero(obs["action_mask"])[0])


class TestEvaluate:
    def test_rows_per_instance_seed_policy_and_outputs(self, tmp_path):
        out_json = tmp_path / "sub" / "res.json"
        res = schedgym.evaluate(ENV_ID, ["spt", "mwkr"], "jobshop/ft", seeds=[3, 7], out=out_json)
        assert len(res) == 3 * 2 * 2
        keys = {(r["instance"], r["seed"], r["policy"]) for r in res.rows}
        assert keys == {(i, s, p) for i in ("ft06", "ft10", "ft20") for s in (3, 7) for p in ("spt", "mwkr")}
        assert res.policies() == ["spt", "mwkr"]
        for r in res.rows:
            assert r["env_id"] == ENV_ID and r["dataset"] == "jobshop/ft"
            inst = load_benchmark(r["instance"])
            start = np.array(r["schedule"]["start_times"])
            assert start.shape == (inst.n_jobs, inst.n_ops_per_job)
            assert r["schedule"]["instance"] == r["instance"]
            assert validate_schedule(inst, start)["makespan"] == r["makespan"]
            assert r["best_known"] == inst.best_known
            assert r["gap_pct"] == pytest.approx(100 * (r["makespan"] - inst.best_known) / inst.best_known)
            assert r["steps"] == inst.n_jobs * inst.n_ops_per_job and r["invalid_actions"] == 0
        # JSON on disk
        data = json.loads(out_json.read_text())
        assert data["rows"] == json.loads(json.dumps(res.rows))
        assert [s["policy"] for s in data["summary"]] == ["spt", "mwkr"]
        # CSV on disk
        out_csv = res.write(tmp_path / "res.csv")
        with out_csv.open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 12
        for r, orig in zip(rows, res.rows, strict=True):
            assert r["instance"] == orig["instance"] and int(r["seed"]) == orig["seed"]
            sched = json.loads(r["schedule"])
            inst = load_benchmark(r["instance"])
            assert validate_schedule(inst, np.array(sched["start_times"]))["makespan"] == int(r["makespan"])
        with pytest.raises(ValueError, match=r"must end in .csv or .json"):
            res.write(tmp_path / "res.txt")

    def test_summary_and_table(self):
        res = schedgym.evaluate(ENV_ID, ["spt", "mor"], "jobshop/ft", seeds=1)
        summ = {s["policy"]: s for s in res.summary()}
        for p in ("spt", "mor"):
            assert summ[p]["runs"] == 3
            assert summ[p]["mean_gap_pct"] == pytest.approx(np.mean(res.column("gap_pct", p)))
            assert summ[p]["max_gap_pct"] == pytest.approx(max(res.column("gap_pct", p)))
        mk = {s["policy"]: s["mean_makespan"] for s in res.summary("makespan")}
        assert mk["spt"] == pytest.approx(np.mean(res.column("makespan", "spt")))
        table = res.table()
        assert "spt" in table and "mean_gap_pct" in table

    def test_instances_argument_and_seed_count(self):
        insts = [load_benchmark("ft06"), JobShopInstance("nobound", [[0, 1], [1, 0]], [[2, 3], [4, 1]], 2)]
        res = schedgym.evaluate(ENV_ID, FirstValid(), instances=insts, seeds=2)
        assert [(r["instance"], r["seed"]) for r in res.rows] == [
            ("ft06", 0), ("ft06", 1), ("nobound", 0), ("nobound", 1)]
        nb = [r for r in res.rows if r["instance"] == "nobound"]
        assert "gap_pct" not in nb[0] and "best_known" not in nb[0]
        start = np.array(nb[0]["schedule"]["start_times"])
        assert nb[0]["makespan"] == validate_schedule(insts[1], start)["makespan"]
        # summary falls back to the objective when some rows have no gap
        assert "mean_makespan" in res.summary()[0]

    def test_policy_that_never_finishes_raises(self):
        inst = load_benchmark("ft06")
        msg = r"policy invalid-forever did not finish ft06: truncated after 36 steps"
        with pytest.raises(RuntimeError, match=msg):
            schedgym.evaluate(ENV_ID, InvalidForever(6), instances=[inst], seeds=1,
                              env_kwargs={"max_jobs": 7})

    def test_unknown_policy_lists_valid_names(self):
        with pytest.raises(ValueError) as exc:
            schedgym.evaluate(ENV_ID, "nosuch", "jobshop/ft")
        msg = str(exc.value)
        assert "unknown policy 'nosuch'" in msg
        for name in ("spt", "mwkr", "mor", "cpsat", "random"):
            assert f"'{name}'" in msg

    def test_argument_errors(self):
        inst = load_benchmark("ft06")
        with pytest.raises(ValueError, match="exactly one of dataset= or instances="):
            schedgym.evaluate(ENV_ID, "spt")
        with pytest.raises(ValueError, match="exactly one of dataset= or instances="):
            schedgym.evaluate(ENV_ID, "spt", "jobshop/ft", instances=[inst])
        with pytest.raises(ValueError, match="seeds must name at least one seed"):
            schedgym.evaluate(ENV_ID, "spt", instances=[inst], seeds=0)
        with pytest.raises(ValueError, match="no instances"):
            schedgym.evaluate(ENV_ID, "spt", instances=[])
        with pytest.raises(ValueError, match="two policies are named 'spt'"):
            schedgym.evaluate(ENV_ID, ["spt", "spt"], instances=[inst])

    def test_mapping_of_policies_uses_given_names(self):
        inst = load_benchmark("ft06")
        pols = {"a": schedgym.make_policy(ENV_ID, "spt"), "b": schedgym.make_policy(ENV_ID, "spt")}
        res = schedgym.evaluate(ENV_ID, pols, instances=[inst])
        assert [r["policy"] for r in res.rows] == ["a", "b"]
        assert res.rows[0]["makespan"] == res.rows[1]["makespan"]


# ====================================================================================== policy / metrics
def test_policy_registry():
    names = schedgym.policy.baselines(ENV_ID)
    assert names == schedgym.policy.baselines("schedgym:" + ENV_ID)
    assert schedgym.policy.baselines("schedgym/Nope-v0") == {}
    for name in names:
        pol = schedgym.make_policy(ENV_ID, name)
        assert isinstance(pol, schedgym.Policy)
        assert pol.name == name
    assert isinstance(FirstValid(), schedgym.Policy)
    with pytest.raises(ValueError, match=r"already registered"):
        schedgym.policy.register_baseline(ENV_ID, "spt", FirstValid)


def test_gap_and_summary():
    assert gap_percent(110, 100) == pytest.approx(10.0)
    assert gap_percent(100, 100) == 0.0
    with pytest.raises(ValueError, match="reference must be > 0"):
        gap_percent(1, 0)
    assert summarize([]) == []
    rows = [{"policy": "p", "makespan": 10, "wall_s": 1.0}, {"policy": "p", "makespan": 20, "wall_s": 3.0}]
    (s,) = summarize(rows)
    assert s == {"policy": "p", "runs": 2, "mean_makespan": 15.0, "max_makespan": 20.0, "mean_wall_s": 2.0}
