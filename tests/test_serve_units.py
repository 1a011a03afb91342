"""Serving integration without a running Serve app: the wire protocol, the baselines' view of replica stats,
the PolicyRouter's decisions (policy, ONNX policy, documented fallbacks) and the load-test workload."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("ray.serve")

import schedgym  # noqa: F401,E402
from schedgym.envs.serving import features  # noqa: E402
from schedgym.hwbackend.serve import protocol  # noqa: E402
from schedgym.hwbackend.serve.loadtest import check_loopback, trace_workload  # noqa: E402
from schedgym.hwbackend.serve.state import SERVING, ReplicaSpec, RouterEnv, RouterState, load_policy  # noqa: E402
from schedgym.policy import baselines  # noqa: E402

SPEC = ReplicaSpec()


def parse(body):
    return protocol.parse_completion(body, model="schedgym-tiny", vocab_size=512, max_request_tokens=100)


def test_completion_request_parsing_and_tokenizer() -> None:
    c = parse({"prompt": "héllo", "max_tokens": 3, "stream": True, "model": "schedgym-tiny"})
    assert c.prompt == tuple("héllo".encode()) and c.max_tokens == 3 and c.stream
    assert protocol.decode(list(c.prompt)) == "héllo"
    assert parse({"prompt": [1, 2, 511]}).prompt == (1, 2, 511)
    assert parse({"prompt": ["ab"]}).prompt == (97, 98)
    assert parse({"prompt": "x"}).max_tokens == 16  # OpenAI's default


@pytest.mark.parametrize("body,param,status", [
    ({"max_tokens": 3}, "prompt", 400),
    ({"prompt": 5}, "prompt", 400),
    ({"prompt": ""}, "prompt", 400),
    ({"prompt": [1, 600]}, "prompt", 400),
    ({"prompt": ["a", "b"]}, "prompt", 400),
    ({"prompt": "a", "max_tokens": 0}, "max_tokens", 400),
    ({"prompt": "a", "max_tokens": "3"}, "max_tokens", 400),
    ({"prompt": "a" * 90, "max_tokens": 20}, "max_tokens", 400),
    ({"prompt": "a", "stream": "yes"}, "stream", 400),
    ({"prompt": "a", "n": 2}, "n", 400),
    ({"prompt": "a", "stop": ["\n"]}, "stop", 400),
    ({"prompt": "a", "temperature": -1}, "temperature", 400),
    ({"prompt": "a", "best_of": 2}, "best_of", 400),
    ({"prompt": "a", "model": "gpt-4"}, "model", 404),
    ([1, 2], None, 400),
])
def test_malformed_requests_name_the_field(body, param, status) -> None:
    with pytest.raises(protocol.RequestError) as e:
        parse(body)
    assert e.value.param == param and e.value.status == status
    assert e.value.body()["error"]["message"] == str(e.value)
    if param:
        assert param in str(e.value)


def test_replica_spec_matches_the_live_env() -> None:
    """The static feature row and request limit are the live env's (no train/serve skew)."""
    import gymnasium as gym

    env = gym.make("schedgym/LLMServingLive-v0").unwrapped
    assert SPEC.static_row() == env._static[0].tolist()
    assert SPEC.request_limit() == env._limit
    with pytest.raises(ValueError, match="model"):
        ReplicaSpec(model="huge")
    with pytest.raises(ValueError, match="device"):
        ReplicaSpec(device="tpu")


def stats_state(live: np.ndarray) -> RouterState:
    st = RouterState(live.shape[0], 16)
    st.update(live, np.array([SPEC.static_row()] * live.shape[0]), 10, 0.0)
    return st


ROUTABLE = {"round_robin", "random", "jsq", "least_kv", "power_of_two", "llumnix", "llumnix_priority",
            "cache_aware"}


@pytest.mark.parametrize("name", sorted(baselines(SERVING)))
def test_every_serving_baseline_runs_on_replica_stats_or_is_refused(name) -> None:
    """One copy of each heuristic: the LLMServing-v0 routers decide from a RouterState; a baseline that needs
    simulator-only state (cost model, deadlines) is refused at load time with a clear error."""
    live = np.zeros((3, len(features.LIVE)))
    live[:, 0] = (5, 0, 3)    # waiting
    live[:, 3] = (200, 0, 100)  # used blocks
    st = stats_state(live)
    try:
        pol = load_policy(name)
    except ValueError as exc:
        assert "reads simulator state a live router does not have" in str(exc)
        assert name not in ROUTABLE, exc
        return
    pol.reset(RouterEnv(st), 0)
    mask = np.ones(3, np.int8)
    a = pol.act({}, {"action_mask": mask})
    assert a in (0, 1, 2)
    if name in ("jsq", "least_kv", "llumnix", "lor"):
        assert a == 1  # the idle replica
    mask[1] = 0
    assert pol.act({}, {"action_mask": mask}) in (0, 2)


def test_router_state_takes_the_replicas_block_size() -> None:
    st = RouterState(2, 16)
    static = np.array([SPEC.static_row()] * 2)
    static[:, 1] = 32
    st.update(np.zeros((2, len(features.LIVE))), static, 5, 1.0)
    assert st.cluster.engine.block_size == 32 and st.engines[1].total_blocks == SPEC.num_blocks


def test_a_baseline_needing_simulator_state_is_refused_at_load() -> None:
    from schedgym.baselines._routing import Router
    from schedgym.hwbackend.serve.state import check_routable

    class NeedsDeadlines(Router):  # like a workflow router reading per-request deadlines
        name = "needs_deadlines"

        def choose(self, state, request, valid):
            return int(valid[np.argmin(state.deadline[request] - state.now)])

    with pytest.raises(ValueError, match=r"'needs_deadlines' reads simulator state .*AttributeError.*deadline"):
        check_routable(NeedsDeadlines())


def test_load_policy_errors() -> None:
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        load_policy("nope")
    with pytest.raises(FileNotFoundError):
        load_policy("/nonexistent/p.onnx")


# ---------------------------------------------------------------------------------------------- router
def make_router(**kw):
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID

    from schedgym.hwbackend.serve.router import PolicyRouter

    r = PolicyRouter(deployment_id=DeploymentID("EngineReplica", "test"),
                     handle_source=DeploymentHandleSource.UNKNOWN)
    r.initialize_state(**kw)
    return r


class Replica:
    """The two attributes of Serve's ``RunningReplica`` the router reads (the real one needs a live actor)."""

    def __init__(self, replica_id, routing_stats: dict) -> None:
        self.replica_id, self.routing_stats = replica_id, routing_stats


def replica(uid: str, stats: dict | None) -> Replica:
    from ray.serve._private.common import DeploymentID, ReplicaID

    return Replica(ReplicaID(uid, DeploymentID("EngineReplica", "test")), stats or {})


def stats(waiting: int, t: float | None = None, limit: int = 512) -> dict:
    live = [waiting, 0, 0, 0, 10 * waiting, 0, 0.0]
    return {"t": time.time() if t is None else t, "live": live, "static": SPEC.static_row(), "limit": limit}


def pending(cid: str, p: int, o: int, rid: str):
    from ray.serve._private.common import RequestMetadata
    from ray.serve.request_router import PendingRequest

    return PendingRequest([{"id": cid, "prompt": [1] * p, "max_tokens": o}], {}, RequestMetadata(rid, rid),
                          future=None)  # the router never touches the future


def choose(r, reps, req):
    async def go():
        return await r.choose_replicas(reps, req)
    return asyncio.run(go())


def test_router_follows_the_policy_and_counts_requests_in_transit() -> None:
    r = make_router(policy="jsq")
    reps = [replica("b", stats(2)), replica("a", stats(1)), replica("c", stats(4))]
    tiers = choose(r, reps, pending("x", 5, 5, "r1"))
    assert [x.replica_id.unique_id for x in tiers[0]] == ["a"]
    assert sorted(x.replica_id.unique_id for x in tiers[1]) == ["b", "c"]
    r.on_request_routed(pending("x", 5, 5, "r1"), tiers[0][0].replica_id, None)
    r.on_request_routed(pending("y", 5, 5, "r2"), tiers[0][0].replica_id, None)
    # Two requests sent to "a" after its snapshot: it now looks like 3 waiting, so "b" (2) wins.
    tiers = choose(r, reps, pending("z", 5, 5, "r3"))
    assert tiers[0][0].replica_id.unique_id == "b"
    rep = r.report()
    assert rep["outcomes"]["policy"] == 2 and rep["replicas"] == ["a", "b", "c"]
    assert rep["in_flight"] == {"a": 2}
    r.on_request_completed(tiers[0][0].replica_id, "r1")


def test_router_falls_back_on_stale_or_missing_stats_and_policy_errors(caplog) -> None:
    r = make_router(policy="round_robin", fallback="jsq", stale_after_s=0.5)
    old = time.time() - 5
    reps = [replica("a", stats(0, t=old)), replica("b", stats(0))]
    with caplog.at_level("WARNING", logger="ray.serve"):
        choose(r, reps, pending("x", 5, 5, "r1"))
    assert r.report()["outcomes"]["stale_stats"] == 1
    assert any("falling back to 'jsq' (stale_stats)" in m for m in caplog.messages)
    choose(r, [replica("a", None), replica("b", stats(0))], pending("y", 5, 5, "r2"))
    assert r.report()["outcomes"]["no_stats"] == 1

    # Fallback JSQ uses the router's own in-flight counts: two requests on "a" -> "b".
    for rid in ("r3", "r4"):
        r.on_request_routed(pending(rid, 5, 5, rid), reps[0].replica_id, None)
    tiers = choose(r, [replica("a", None), replica("b", None)], pending("w", 5, 5, "r5"))
    assert tiers[0][0].replica_id.unique_id == "b"

    class Broken:
        name = "broken"

        def reset(self, env, seed=None):
            pass

        def act(self, obs, info):
            raise RuntimeError("boom")

    r.policy = Broken()
    with caplog.at_level("WARNING", logger="ray.serve"):
        choose(r, [replica("a", stats(0)), replica("b", stats(0))], pending("v", 5, 5, "r6"))
    assert r.report()["outcomes"]["policy_error"] == 1
    assert any("failed: RuntimeError: boom" in m for m in caplog.messages)


def test_router_masks_replicas_that_cannot_hold_the_request() -> None:
    r = make_router(policy="round_robin")
    reps = [replica("a", stats(0, limit=20)), replica("b", stats(5, limit=512))]
    for i in range(3):  # round robin would alternate; "a" cannot hold 30 tokens
        assert choose(r, reps, pending(f"x{i}", 20, 10, f"r{i}"))[0][0].replica_id.unique_id == "b"


@pytest.mark.slow
def test_router_with_an_exported_onnx_policy(tmp_path) -> None:
    """An ONNX GraphPolicyNet export for LLMServing-v0 routes from the router's observation."""
    import gymnasium as gym
    import torch

    from schedgym.agents.model import GraphPolicyNet, ObsSpec
    from schedgym.agents.onnx import OnnxPolicy, export_onnx

    torch.manual_seed(0)
    env = gym.make("schedgym/LLMServing-v0", cluster=[{"gpu": "CPU", "model": "schedgym-tiny"}] * 3)
    obs, _ = env.reset(seed=0)
    net = GraphPolicyNet(ObsSpec.from_space(env.observation_space))
    path = export_onnx(net, obs, tmp_path / "router.onnx", exporter="legacy")
    r = make_router(policy=str(path))
    reps = [replica("a", stats(3)), replica("b", stats(0)), replica("c", stats(1))]
    tiers = choose(r, reps, pending("x", 8, 4, "r1"))
    assert r.report()["outcomes"]["policy"] == 1
    # The router's choice is the ONNX argmax on the observation features.py builds from those stats.
    live = np.array([x.routing_stats["live"] for x in sorted(reps, key=lambda x: x.replica_id.unique_id)])
    enc = features.FeatureEncoder(np.array([SPEC.static_row()] * 3))
    view = features.RequestView(8, 0, 2.0, 0.2)
    ob = enc.encode(live, view, np.zeros(3), np.zeros(3), np.ones(3, np.int8))
    want = "abc"[int(np.argmax(OnnxPolicy(path).logits(ob)))]
    assert tiers[0][0].replica_id.unique_id == want


# ---------------------------------------------------------------------------------------------- load test
def test_loopback_only_and_trace_workload_bounds() -> None:
    assert check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert check_loopback("http://localhost:1") == "http://localhost:1"
    assert check_loopback("http://[::1]:80") == "http://[::1]:80"
    for bad in ("http://10.0.0.1:8000", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:8000"):
        with pytest.raises(ValueError, match="--url"):
            check_loopback(bad)
    w = trace_workload("azure-conv-2023", 50, rate=5.0, duration_s=100, token_scale=0.05)
    assert w.n_requests == 50
    assert (w.n_requests - 1) / w.arrival[-1] == pytest.approx(5.0)
    assert trace_workload("azure-conv-2023", 50, rate=5.0, duration_s=2.0).n_requests <= 11
    with pytest.raises(ValueError, match="lower token_scale"):
        trace_workload("azure-conv-2023", 50, rate=5.0, token_scale=1.0, max_request_tokens=512)
    with pytest.raises(ValueError, match="requests must be"):
        trace_workload("azure-conv-2023", 0)
    with pytest.raises(ValueError, match="rate"):
        trace_workload("azure-conv-2023", 5, rate=-1)


def test_cli_rejects_bad_serve_and_loadtest_arguments(capsys) -> None:
    from schedgym.cli import main

    assert main(["loadtest", "--url", "http://192.168.1.10:8000"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert main(["loadtest", "--url", "http://127.0.0.1:9", "--requests", "0"]) == 2
    assert "requests must be in" in capsys.readouterr().err
    assert main(["serve", "--policy", "nope"]) == 2  # before Ray starts
    assert "unknown policy 'nope'" in capsys.readouterr().err
    assert main(["serve", "--policy", "missing.onnx"]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
