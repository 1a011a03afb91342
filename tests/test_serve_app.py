"""The Ray Serve app on CPU with the tiny model (one app shared by the file): completions (plain and streamed),
the router's policy decides and its replica serves, malformed requests get 4xx, a replica killed during a
load test stops receiving requests while the service keeps answering."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("ray.serve")

from schedgym.hwbackend.serve.loadtest import run_load, trace_workload  # noqa: E402

N_REPLICAS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    import ray
    from ray import serve

    from schedgym.hwbackend.serve.app import start
    from schedgym.hwbackend.serve.state import ReplicaSpec

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        url = start(ReplicaSpec(), N_REPLICAS, "round_robin", port=free_port(), cpus_per_replica=0.1)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def post(url: str, body, raw: bytes | None = None) -> tuple[int, dict, str]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url + "/v1/completions", data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def router_report(url: str) -> dict:
    with urllib.request.urlopen(url + "/v1/router", timeout=10) as r:
        rep = json.loads(r.read())
    assert len(rep["routers"]) <= 1  # created lazily, at the first request
    return rep


@pytest.mark.slow
def test_completion_plain_and_streamed(app) -> None:
    status, headers, text = post(app, {"prompt": "Hello, world", "max_tokens": 7})
    assert status == 200, text
    body = json.loads(text)
    assert body["object"] == "text_completion" and body["model"] == "schedgym-tiny"
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert body["choices"][0]["finish_reason"] == "length"
    assert headers["x-schedgym-replica"] == body["replica"]
    # Same prompt as token ids, streamed: greedy decoding on the same seeded weights gives the same tokens.
    status, headers, text = post(app, {"prompt": list(b"Hello, world"), "max_tokens": 7, "stream": True,
                                       "stream_options": {"include_usage": True}})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e[len("data: "):] for e in text.strip().split("\n\n")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    ids = [t for c in chunks[:-1] for t in c["token_ids"]]
    assert len(ids) == 7 and "".join(c["choices"][0]["text"] for c in chunks[:-1]) == body["choices"][0]["text"]
    with urllib.request.urlopen(app + "/v1/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "schedgym-tiny"


@pytest.mark.slow
def test_router_policy_decides_and_its_replica_serves(app) -> None:
    before = router_report(app)["routers"][0]
    served = []
    for i in range(2 * N_REPLICAS):
        status, _, text = post(app, {"prompt": f"request {i}", "max_tokens": 3})
        assert status == 200, text
        served.append(json.loads(text))
    rep = router_report(app)["routers"][0]
    assert rep["policy"] == "round_robin" and len(rep["replicas"]) == N_REPLICAS
    assert rep["outcomes"]["policy"] - before["outcomes"]["policy"] == 2 * N_REPLICAS
    decisions = {d["id"]: d for d in rep["decisions"]}
    for body in served:  # the policy's choice is the replica that generated the tokens
        assert decisions[body["id"]]["chosen"] == decisions[body["id"]]["replica"] == body["replica"]
    # Round robin (sequential requests): every replica once per round, in the same order both rounds.
    order = [b["replica"] for b in served]
    assert sorted(order[:N_REPLICAS]) == sorted(rep["replicas"]) and order[:N_REPLICAS] == order[N_REPLICAS:]


@pytest.mark.slow
def test_malformed_requests_get_4xx_with_a_message(app) -> None:
    for body, raw, status, field in [
        (None, b"{not json", 400, None),
        ({"max_tokens": 3}, None, 400, "prompt"),
        ({"prompt": "a", "max_tokens": -1}, None, 400, "max_tokens"),
        ({"prompt": "a" * 600, "max_tokens": 1}, None, 400, "max_tokens"),
        ({"prompt": [1, 99999]}, None, 400, "prompt"),
        ({"prompt": "a", "model": "gpt-4"}, None, 404, "model"),
    ]:
        code, _, text = post(app, body, raw)
        err = json.loads(text)["error"]
        assert code == status, text
        assert err["message"] and err["param"] == field
        if field:
            assert field in err["message"]


@pytest.mark.slow
def test_killed_replica_stops_receiving_and_service_keeps_answering(app) -> None:
    import ray

    from schedgym.hwbackend.serve.app import replica_actor

    w = trace_workload("azure-conv-2023", 40, rate=10.0, token_scale=0.05, max_request_tokens=512)
    victim: dict[str, float | str] = {}

    def kill(i: int) -> None:
        if i == 12:
            rep = router_report(app)["routers"][0]  # prefer a replica with requests in flight
            victim["uid"] = max(rep["replicas"], key=lambda u: rep["in_flight"].get(u, 0))
            ray.kill(replica_actor(victim["uid"]), no_restart=True)
            victim["t"] = time.perf_counter()

    res = run_load(app, w, timeout_s=60, on_sent=kill)
    rep = res.report()
    dead = victim["uid"]
    # Requests in flight on the killed replica either were retried elsewhere (no token sent yet) or ended with
    # an error that names the replica; everything else succeeded.
    assert rep["n_ok"] >= w.n_requests - 6, rep
    for msg in rep["errors"]:
        assert f"replica {dead} failed after streaming" in msg, msg
    assert rep["n_wrong_length"] == 0
    # After the kill (plus the time Serve takes to notice), the router sends nothing to the dead replica.
    late = [o for o in res.outcomes if o.scheduled > res.outcomes[12].scheduled + 2.0]
    assert late and all(o.replica != dead for o in late)
    deadline = time.time() + 20
    while dead in router_report(app)["routers"][0]["replicas"]:  # the router's candidates drop it
        assert time.time() < deadline, "the killed replica is still a routing candidate after 20 s"
        time.sleep(0.5)
    # The service keeps answering.
    status, _, text = post(app, {"prompt": "still there?", "max_tokens": 4})
    assert status == 200, text
    assert json.loads(text)["replica"] != dead


def wait_in_flight(url: str, timeout: float = 20.0) -> str:
    """The replica the router has a request in flight on (polls the router report)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        routers = router_report(url)["routers"]
        inf = routers[0]["in_flight"] if routers else {}
        if inf:
            return max(inf, key=inf.get)
        time.sleep(0.05)
    raise AssertionError("no request in flight")


@pytest.mark.slow
def test_in_flight_requests_on_a_killed_replica_are_retried_or_fail_clearly(app) -> None:
    """Non-streaming: retried whole on another replica (nothing was sent yet). Streaming: once tokens have been
    sent, the stream ends with an error event naming the replica."""
    import threading

    import ray

    from schedgym.hwbackend.serve.app import replica_actor

    out: dict[str, tuple] = {}
    # How long 480 tokens take on this machine now (~0.5 s when quiet, seconds when busy): the kill must land
    # while the replica generates — after Serve's assignment (which would retry a dead replica by itself, unseen
    # by the ingress) and before the last token.
    t0 = time.perf_counter()
    assert post(app, {"prompt": "long", "max_tokens": 480})[0] == 200
    generate_s = time.perf_counter() - t0
    before = router_report(app)["ingress"].get("retried", 0)
    th = threading.Thread(target=lambda: out.update(r=post(app, {"prompt": "long", "max_tokens": 480})))
    th.start()
    victim = wait_in_flight(app)
    time.sleep(0.3 * generate_s)
    ray.kill(replica_actor(victim), no_restart=True)
    th.join(120)
    status, headers, text = out["r"]
    assert status == 200, text
    assert json.loads(text)["usage"]["completion_tokens"] == 480
    assert headers["x-schedgym-replica"] != victim
    rep = router_report(app)
    assert rep["ingress"].get("retried", 0) > before, (victim, rep)

    req = urllib.request.Request(app + "/v1/completions", headers={"content-type": "application/json"},
                                 data=json.dumps({"prompt": "long", "max_tokens": 480, "stream": True}).encode())
    with urllib.request.urlopen(req, timeout=120) as r:
        victim = r.headers["x-schedgym-replica"]
        first = r.readline()  # the first event has arrived: tokens were sent
        assert first.startswith(b"data: {")
        ray.kill(replica_actor(victim), no_restart=True)
        events = [e for e in r.read().decode().split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    err = json.loads(events[-2][len("data: "):])["error"]
    assert f"replica {victim} failed after streaming" in err["message"]
    assert "not retried" in err["message"]
    status, _, text = post(app, {"prompt": "still there?", "max_tokens": 4})
    assert status == 200, text


@pytest.mark.slow
def test_loadtest_cli_reports_percentiles(app, capsys, tmp_path) -> None:
    from schedgym.cli import main

    out = tmp_path / "rep.json"
    rc = main(["loadtest", "--url", app, "--requests", "8", "--rate", "8", "--token-scale", "0.02",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "8/8 ok, 0 errors, 0 wrong length" in text and "ttft" in text
    rep = json.loads(out.read_text())
    assert rep["n_ok"] == 8 and 0 < rep["p50_ttft"] <= rep["p99_ttft"] and 0 < rep["p50_e2e"]
