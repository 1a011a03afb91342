"""Engines as servers: each ``LiveEngine`` runs its iteration loop in a background thread, hosted either in
this process (``mode="thread"``) or in a Ray actor (``mode="ray"``: one per GPU, or on CPU one process per
engine with a fixed thread count), so a cluster spans one or many machines.

The driver (``LiveCluster``) submits requests, polls live statistics and the incremental event log, moves
running sequences between engines (``migrate``: the source exports at its next iteration boundary and the
package comes back in ``poll()``; ``deliver``: the destination imports it; ``kv_transfer.py``), and notices
dead engines (a killed actor raises on the next call): their unfinished requests are reported so
the caller can re-dispatch them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from schedgym.hwbackend.engine import LiveEngine, Residency, Segment


def _drain(q: queue.SimpleQueue, handle: Callable[[Any], None]) -> bool:
    """Handle every message queued now; True if there was any."""
    got = False
    while True:
        try:
            handle(q.get_nowait())
        except queue.Empty:
            return got
        got = True


class EngineServer:
    """A ``LiveEngine`` stepping in a background thread; every method is safe to call from other threads.

    The step runs without any lock: after each iteration the loop publishes a snapshot (statistics and the new
    log entries) under a short lock, and ``poll()`` only swaps that snapshot out. (Holding one lock across the
    whole step starved ``poll()``: Python locks are unfair, so the re-acquiring engine thread won a lock convoy
    and the router waited many iterations per decision.)"""

    def __init__(self, model: Any, engine: dict[str, Any], num_blocks: int, context_limit: int, *, seed: int = 0,
                 device: str = "cpu", threads: int | None = 1, epoch: float | None = None,
                 transfer_via_host: bool = False, prefix_block_tokens: int | None = None) -> None:
        if threads is not None:
            import torch
            torch.set_num_threads(int(threads))
        self.epoch = time.time() if epoch is None else float(epoch)
        self.engine = LiveEngine(model, engine, num_blocks, context_limit=context_limit, seed=seed, device=device,
                                 clock=lambda: time.time() - self.epoch, prefix_block_tokens=prefix_block_tokens)
        self.engine.warmup()  # one-off first-iteration costs are paid here, before the episode clock starts
        self.engine.transfer_via_host = bool(transfer_via_host)
        self._ctl: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()  # KV moves, applied between iterations
        self._declined: list[int] = []
        self._imported: list[int] = []
        self._inbox: queue.SimpleQueue[tuple[int, int, int, float, list[int] | None, int, float,
                                             list[int] | None]] = \
            queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()   # guards the published snapshot only
        self._res_seen = self._seg_seen = self._rcv_seen = 0
        self._pub: dict[str, Any] = {"stats": self.engine.stats(), "res": [], "seg": [], "received": [],
                                     "busy_s": 0.0, "exported": [], "declined": [], "imported": [], "running": [],
                                     "cached": None}
        self._cache_version = -1
        self.error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="live-engine", daemon=True)
        self._thread.start()

    def ready(self) -> bool:
        return True

    def set_epoch(self, epoch: float) -> None:
        """Time zero of the episode (``time.time()`` seconds); engine times are relative to it."""
        self.epoch = float(epoch)

    def submit(self, rid: int, prompt_tokens: int, output_tokens: int, prompt: list[int] | None = None,
               priority: int = 0, deadline: float = float("inf"), hashes: list[int] | None = None) -> None:
        """Queue a request (``prompt``: real token ids, else synthetic ones; ``priority``/``deadline`` order the
        engine's queue; ``hashes``: its prefix-block hashes; see ``LiveEngine.submit``)."""
        self._inbox.put((int(rid), int(prompt_tokens), int(output_tokens), time.time() - self.epoch, prompt,
                         int(priority), float(deadline), hashes))
        self._wake.set()

    def migrate(self, rid: int) -> None:
        """Export decoding ``rid`` at the next iteration boundary (its package, or its id in ``declined`` if it is
        no longer decoding here, comes back in ``poll()``)."""
        self._ctl.put(("migrate", int(rid)))
        self._wake.set()

    def import_seq(self, pkg: Any, ready_at: float) -> None:
        """Take over an exported sequence (``kv_transfer.KVPackage``); it resumes once ``ready_at`` has passed."""
        self._ctl.put(("import", pkg, float(ready_at)))
        self._wake.set()

    def set_prefill_only(self, flag: bool) -> None:
        """Disaggregated prefill pool: export every request after its prefill (``LiveEngine.prefill_only``)."""
        self._ctl.put(("prefill_only", bool(flag)))
        self._wake.set()

    def _control(self, msg: tuple[Any, ...]) -> None:
        eng = self.engine
        if msg[0] == "migrate":
            pkg = eng.export_seq(msg[1])
            if pkg is None:
                self._declined.append(msg[1])
            else:
                eng.outbox.append(pkg)
        elif msg[0] == "import":
            eng.import_seq(msg[1], msg[2])
            self._imported.append(msg[1].rid)
        else:
            eng.prefill_only = msg[1]

    def _publish(self) -> None:
        """Move the log entries recorded since the last publish, and fresh statistics, into the snapshot."""
        eng = self.engine
        res, rcv = eng.res_log[self._res_seen:], eng.received[self._rcv_seen:]
        seg = [(*g, *sh) for g, sh in zip(eng.seg_log[self._seg_seen:], eng.shape_log[self._seg_seen:])]
        self._res_seen += len(res)
        self._seg_seen += len(seg)
        self._rcv_seen += len(rcv)
        stats = eng.stats()
        out, eng.outbox = eng.outbox, []
        dec, self._declined = self._declined, []
        imp, self._imported = self._imported, []
        running = eng.running_kv()
        cached = None
        if eng.pc is not None and eng.pc.version != self._cache_version:
            self._cache_version, cached = eng.pc.version, eng.pc.keys()
        with self._lock:
            p = self._pub
            p["res"] += res
            p["seg"] += seg
            p["received"] += rcv
            p["exported"] += out
            p["declined"] += dec
            p["imported"] += imp
            p["stats"], p["busy_s"], p["running"] = stats, eng.busy_s, running
            if cached is not None:
                p["cached"] = cached

    def _loop(self) -> None:
        eng = self.engine
        try:
            while not self._stop.is_set():
                got = _drain(self._inbox, lambda m: eng.submit(*m)) | _drain(self._ctl, self._control)
                ran = eng.step()
                if ran or got:
                    self._publish()
                if not ran:  # submit() and stop() set it: no busy polling (GIL); wake for a transfer's end
                    self._wake.wait(min(0.05, max(0.0, eng.next_ready_in())))
                    self._wake.clear()
        except Exception as exc:  # reported to the driver by poll(); the engine is dead from here on
            self.error = f"{type(exc).__name__}: {exc}"

    def poll(self) -> dict[str, Any]:
        """Live statistics (``features.LIVE`` columns, as of the last finished iteration) and the log entries
        published since the last poll; never waits for an iteration. ``seg`` entries are the simulator's segment
        tuple followed by the iteration's shape (``LiveEngine.shape_log``). ``cached``: the prefix-block hashes in
        the engine's prefix cache (a frozenset) when they changed since the last poll, else None."""
        with self._lock:
            p = self._pub
            out = {"stats": p["stats"], "res": p["res"], "seg": p["seg"], "received": p["received"],
                   "error": self.error, "busy_s": p["busy_s"], "exported": p["exported"], "declined": p["declined"],
                   "imported": p["imported"], "running": p["running"], "cached": p["cached"]}
            p["cached"] = None
            p["res"], p["seg"], p["received"] = [], [], []
            p["exported"], p["declined"], p["imported"] = [], [], []
        return out

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)


class LiveCluster:
    """N engine servers behind one driver API (submit / poll / kill / close)."""

    def __init__(self, n: int, model: Any, engine: dict[str, Any], num_blocks: int, context_limit: int, *,
                 mode: str = "thread", seed: int = 0, device: str = "cpu", threads: int | None = 1,
                 epoch: float | None = None, ray_options: dict[str, Any] | None = None,
                 prefix_block_tokens: int | None = None) -> None:
        if mode not in ("thread", "ray"):
            raise ValueError(f"mode must be 'thread' or 'ray', got {mode!r}")
        if n < 1:
            raise ValueError(f"a live cluster needs at least one engine, got {n}")
        self.mode, self.n = mode, n
        self.epoch = time.time() if epoch is None else epoch
        args = (model, engine, num_blocks, context_limit)
        kw = dict(seed=seed, device=device, threads=threads, epoch=self.epoch, transfer_via_host=mode == "ray",
                  prefix_block_tokens=prefix_block_tokens)
        self.alive = np.ones(n, bool)
        self.errors: list[str | None] = [None] * n
        if mode == "thread":
            self.servers: list[Any] = [EngineServer(*args, **kw) for _ in range(n)]
        else:
            import ray
            if not ray.is_initialized():
                raise RuntimeError("mode='ray' needs ray.init() first (e.g. ray.init(num_cpus=2) on one machine, "
                                   "ray.init(address='auto') on a cluster)")
            opts = {"num_cpus": 1 if device == "cpu" else 0, "num_gpus": 0 if device == "cpu" else 1,
                    "max_restarts": 0, **(ray_options or {})}
            actor = ray.remote(EngineServer).options(**opts)
            self.servers = [actor.remote(*args, **kw) for _ in range(n)]
            ray.get([s.ready.remote() for s in self.servers])

    def start_clock(self, lead_s: float = 0.02) -> float:
        """Set time zero ``lead_s`` from now on every engine (after they are up: actor start-up is not
        charged to the first requests); returns the epoch."""
        self.epoch = time.time() + lead_s
        for i in range(self.n):
            self._call(i, "set_epoch", self.epoch)
        return self.epoch

    def _call(self, i: int, name: str, *args: Any) -> Any:
        """Call a server method; a dead Ray actor marks engine ``i`` dead and returns None."""
        if not self.alive[i]:
            return None
        s = self.servers[i]
        if self.mode == "thread":
            return getattr(s, name)(*args)
        import ray
        try:
            return ray.get(getattr(s, name).remote(*args))
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            self.alive[i] = False
            self.errors[i] = f"actor died: {type(exc).__name__}"
            return None

    def submit(self, i: int, rid: int, prompt_tokens: int, output_tokens: int, priority: int = 0,
               deadline: float = float("inf"), hashes: list[int] | None = None) -> bool:
        """Send a request to engine ``i`` (``hashes``: its prefix-block hashes); False if the engine is known
        dead. Ray: fire and forget (no round trip on the request's critical path); a dead actor is noticed by the
        next ``poll()``."""
        return self._send(i, "submit", rid, prompt_tokens, output_tokens, None, priority, deadline, hashes)

    def _send(self, i: int, name: str, *args: Any) -> bool:
        """Fire-and-forget call of a server method (Ray: no round trip); False if engine ``i`` is known dead."""
        if not self.alive[i]:
            return False
        if self.mode == "thread":
            getattr(self.servers[i], name)(*args)
        else:
            getattr(self.servers[i], name).remote(*args)
        return True

    def migrate(self, i: int, rid: int) -> bool:
        """Ask engine ``i`` to export decoding ``rid`` at its next iteration boundary (package in ``poll()``)."""
        return self._send(i, "migrate", rid)

    def deliver(self, i: int, pkg: Any, ready_at: float) -> bool:
        """Hand an exported ``KVPackage`` to engine ``i`` (Ray: the tensors travel in the call's arguments)."""
        return self._send(i, "import_seq", pkg, ready_at)

    def set_prefill_only(self, i: int, flag: bool = True) -> bool:
        return self._send(i, "set_prefill_only", flag)

    def poll(self) -> list[dict[str, Any] | None]:
        """Each engine's poll() (None for a dead engine); an engine whose loop raised is marked dead."""
        if self.mode == "ray":
            import ray
            refs = [s.poll.remote() if self.alive[i] else None for i, s in enumerate(self.servers)]
            out: list[dict[str, Any] | None] = []
            for i, ref in enumerate(refs):
                if ref is None:
                    out.append(None)
                    continue
                try:
                    out.append(ray.get(ref))
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                    self.alive[i] = False
                    self.errors[i] = f"actor died: {type(exc).__name__}"
                    out.append(None)
        else:
            out = [s.poll() if self.alive[i] else None for i, s in enumerate(self.servers)]
        for i, p in enumerate(out):
            if p is not None and p["error"]:
                self.alive[i] = False
                self.errors[i] = p["error"]
        return out

    def kill(self, i: int) -> None:
        """Fault injection: kill engine ``i`` (its Ray actor process, or its thread in thread mode)."""
        if self.mode == "ray":
            import ray
            ray.kill(self.servers[i], no_restart=True)
        else:
            self.servers[i].stop()
            self.alive[i] = False
            self.errors[i] = "killed"

    def close(self) -> None:
        for i, s in enumerate(self.servers):
            if self.mode == "thread":
                s.stop()
            elif self.alive[i]:
                import ray
                ray.kill(s, no_restart=True)
        self.alive[:] = False


__all__ = ["EngineServer", "LiveCluster", "Residency", "Segment"]
