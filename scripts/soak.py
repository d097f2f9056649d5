#!/usr/bin/env python3
"""Soak: mixed requests and subscriptions against a real OpenClaw gateway with periodic
gateway drops, printing this process's RSS, threads, fds, sockets and errors over time.

    PYTHONPATH=$PWD python scripts/soak.py                  # 10 minutes
    PYTHONPATH=$PWD python scripts/soak.py --minutes 3 --drop-every 45

The gateway is ``gwclient.testing.RealGateway`` on loopback (a private HOME, a free port,
the pinned openclaw installed by scripts/install-openclaw).  Drops alternate between a
restart (SIGTERM, start) and a SIGKILL followed by a start.  Every loop is bounded by a
stop event and every call by a timeout.  What to look for (BENCHMARKS.md): flat RSS, flat
thread and fd counts, never more than one socket to the gateway.

``--gateway dev`` soaks against the dev gateway instead, run in a child process (so the
figures are the client's alone) that is restarted (SIGTERM, or SIGKILL) on the same port
every ``--drop-every`` seconds, and adds the careless user: ``--droppers`` threads that
start chat runs (some hang until their time limit, some stream) and drop them unfinished
inside reference cycles, and drop plain and session subscriptions without ``close()``.
The ``bus`` column counts the subscriptions still registered on the bus: it must stay
flat (the live ones), not grow with every dropped one.

    PYTHONPATH=$PWD python scripts/soak.py --gateway dev --minutes 30

Exit status 1 if more than one socket to the gateway was ever seen, or if a gwclient
thread or socket outlived ``shutdown()``.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import psutil

from gwclient import (
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    GatewayTimeout,
    RetryPolicy,
    Snapshot,
)
from gwclient._engine.runtime import current_runtime
from gwclient.testing._realgateway import OPENCLAW_VERSION, RealGateway

DEV_TOKEN = "soak-dev-token"

METHODS = ("health", "status", "system-presence")


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.pushes: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()

    def add_ok(self) -> None:
        with self.lock:
            self.ok += 1

    def add_error(self, exc: BaseException) -> None:
        with self.lock:
            self.errors[type(exc).__name__] += 1

    def add_push(self, push: object) -> None:
        with self.lock:
            self.pushes[type(push).__name__] += 1

    def add_dropped(self, what: str) -> None:
        with self.lock:
            self.dropped[what] += 1

    def snapshot(self) -> tuple[int, dict[str, int], dict[str, int]]:
        with self.lock:
            return self.ok, dict(self.errors), dict(self.pushes)


def requester(conn: GatewayConnection, stop: threading.Event, counters: Counters, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            conn.request(rng.choice(METHODS), timeout=10)
            counters.add_ok()
        except GatewayError as exc:
            counters.add_error(exc)
            stop.wait(0.2)  # while the gateway is down: do not spin


def subscriber(conn: GatewayConnection, stop: threading.Event, counters: Counters, churn: bool) -> None:
    """Reads pushes; with ``churn`` it also closes and re-opens its subscription now and then."""
    while not stop.is_set():
        sub = conn.subscribe()
        try:
            for _ in range(200 if churn else 10**9):
                if stop.is_set():
                    break
                try:
                    counters.add_push(sub.get(timeout=1))
                except GatewayTimeout:
                    continue
        except GatewayError as exc:
            counters.add_error(exc)
        finally:
            sub.close()


class DevChild:
    """A DevGateway in a child process on a fixed port, with what the soak's runs need."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self.token = DEV_TOKEN
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-dev", str(self.port)],
                                     stdout=subprocess.PIPE, start_new_session=True)
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():  # the child prints its URL once it listens
            raise RuntimeError("the dev gateway child did not start")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(30)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> DevChild:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_dev(port: int) -> int:
    """The child of ``--gateway dev``: serve until SIGTERM."""
    from gwclient.testing import DevGateway
    from gwclient.testing._devgw_runs import RunScript

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with DevGateway(token=DEV_TOKEN, port=port, tick_interval_ms=5_000) as gw:
        gw.runs.when("HANG", RunScript(hang=True))
        gw.runs.when("SLOW", RunScript(delay=0.02))
        print(gw.url, flush=True)
        done.wait()
    return 0


class _Careless:
    """An ordinary object in a reference cycle (it keeps a bound method of itself)."""

    def __init__(self, held: object) -> None:
        self.held = held
        self.callback = self.method

    def method(self) -> None:
        pass


def careless(conn: GatewayConnection, stop: threading.Event, counters: Counters, seed: int) -> None:
    """Starts runs and drops them unfinished in reference cycles; drops subscriptions
    (plain and session ones) without closing them."""
    rng = random.Random(seed)
    words = " ".join(f"w{i}" for i in range(40))
    while not stop.wait(0.05):
        try:
            what = rng.random()
            if what < 0.3:
                _Careless(conn.chat(f"agent:main:soak-{seed}-{rng.randrange(4)}", "HANG", timeout=3))
                counters.add_dropped("hanging run")
            elif what < 0.6:
                run = conn.chat(f"agent:main:soak-{seed}", f"SLOW {words}", timeout=20)
                next(iter(run), None)  # a little of it, then dropped in a cycle mid-stream
                _Careless(run)
                counters.add_dropped("streaming run")
            elif what < 0.8:
                _Careless(conn.subscribe())
                counters.add_dropped("subscription")
            else:
                _Careless(conn.subscribe_session(f"agent:main:soak-{rng.randrange(8)}"))
                counters.add_dropped("session subscription")
        except GatewayError as exc:
            counters.add_error(exc)
            stop.wait(0.2)


def bus_subscriptions() -> int:
    """Subscriptions registered on the bus; -1 if its lock stayed taken for 5 s (a frozen
    reader: what a finalizer run under the bus lock used to do)."""
    bus = current_runtime().bus
    if bus is None:
        return 0
    if not bus.lock.acquire(timeout=5):
        return -1
    try:
        return sum(len(subs) for subs in bus._subs.values())
    finally:
        bus.lock.release()


def dropper(gw: RealGateway | DevChild, stop: threading.Event, every: float, log: list[str], t0: float) -> None:
    kill = False
    while not stop.wait(every):
        what = "SIGKILL+start" if kill else "restart"
        started = time.monotonic()
        if kill and gw.pid is not None:
            os.killpg(gw.pid, signal.SIGKILL)
            gw.stop()  # reaps the killed process (start() alone may see it still alive)
            gw.start()
        else:
            gw.restart()
        log.append(f"{time.monotonic() - t0:7.1f}s drop: {what} took {time.monotonic() - started:.1f} s")
        kill = not kill


def sockets_to(port: int) -> int:
    return sum(
        1
        for c in psutil.Process().net_connections(kind="inet")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def sample(proc: psutil.Process, port: int) -> dict[str, Any]:
    names = [t.name for t in threading.enumerate()]
    return {
        "rss_mb": proc.memory_info().rss / 2**20,
        "threads": len(names),
        "gw_threads": sum(n.startswith("gwclient-") for n in names),
        "fds": proc.num_fds(),
        "sockets": sockets_to(port),
        "bus": bus_subscriptions(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--drop-every", type=float, default=60.0, help="seconds between gateway drops")
    parser.add_argument("--report-every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--requesters", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=3)
    parser.add_argument("--gateway", choices=("real", "dev"), default="real",
                        help="the real OpenClaw gateway (default) or the dev gateway in a child process")
    parser.add_argument("--droppers", type=int, default=2,
                        help="with --gateway dev: threads dropping runs and subscriptions unclosed")
    parser.add_argument("--serve-dev", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_dev is not None:
        return serve_dev(args.serve_dev)

    proc = psutil.Process()
    counters = Counters()
    stop = threading.Event()
    drops: list[str] = []
    worst_sockets = 0
    gateway: RealGateway | DevChild = DevChild() if args.gateway == "dev" else RealGateway()
    version = "dev gateway" if args.gateway == "dev" else f"openclaw {OPENCLAW_VERSION}"
    with gateway as gw:
        config = GatewayConfig(url=gw.url, token=gw.token, retry=RetryPolicy(initial=0.2, maximum=2.0),
                               connect_timeout=10.0)
        conn = GatewayConnection.shared(config)
        conn.request("health", timeout=30)
        t0 = time.monotonic()
        threads = [threading.Thread(target=requester, args=(conn, stop, counters, i), name=f"soak-req-{i}")
                   for i in range(args.requesters)]
        threads += [threading.Thread(target=subscriber, args=(conn, stop, counters, i % 2 == 1),
                                     name=f"soak-sub-{i}") for i in range(args.subscribers)]
        if args.gateway == "dev":
            threads += [threading.Thread(target=careless, args=(conn, stop, counters, 100 + i),
                                         name=f"soak-careless-{i}") for i in range(args.droppers)]
        threads.append(threading.Thread(target=dropper, args=(gw, stop, args.drop_every, drops, t0),
                                        name="soak-dropper"))
        for t in threads:
            t.start()
        first = sample(proc, gw.port)
        print(f"soak: {args.minutes:g} min against {gw.url} ({version}), "
              f"{args.requesters} requesters, {args.subscribers} subscribers, a drop every {args.drop_every:g} s")
        print(f"{'t(s)':>7} {'rss MB':>7} {'threads':>7} {'gwcl':>5} {'fds':>5} {'socks':>5} "
              f"{'bus':>5} {'req ok':>8} {'req/s':>6}  errors / pushes")
        end = t0 + args.minutes * 60
        last_ok, last_t = 0, t0
        rss: list[float] = []
        try:
            while not stop.wait(max(0.0, min(args.report_every, end - time.monotonic()))):
                now = time.monotonic()
                s = sample(proc, gw.port)
                worst_sockets = max(worst_sockets, s["sockets"])
                rss.append(s["rss_mb"])
                ok, errors, pushes = counters.snapshot()
                rate = (ok - last_ok) / max(1e-9, now - last_t)
                last_ok, last_t = ok, now
                while drops:
                    print("        " + drops.pop(0))
                print(f"{now - t0:7.1f} {s['rss_mb']:7.1f} {s['threads']:7d} {s['gw_threads']:5d} {s['fds']:5d} "
                      f"{s['sockets']:5d} {s['bus']:5d} {ok:8d} {rate:6.0f}  {errors} {pushes}", flush=True)
                if now >= end:
                    break
        finally:
            stop.set()
            for t in threads:
                t.join(60)
            ok, errors, pushes = counters.snapshot()
            started = time.monotonic()
            conn.shutdown(timeout=10)
            took = time.monotonic() - started
            after = sample(proc, gw.port)
    if counters.dropped:
        print(f"dropped unclosed in reference cycles: {dict(counters.dropped)}")
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith("gwclient-")]
    print()
    print(f"requests ok {ok}, errors {errors}, pushes {pushes}, reconnect snapshots {pushes.get(Snapshot.__name__, 0)}")
    if rss:
        print(f"RSS MB: first sample {rss[0]:.1f}, last {rss[-1]:.1f}, max {max(rss):.1f} "
              f"(before the load {first['rss_mb']:.1f})")
    print(f"threads: before the load {first['threads']}, after shutdown {after['threads']}; "
          f"fds before {first['fds']}, after shutdown {after['fds']}")
    print(f"most sockets to the gateway at once: {worst_sockets}; shutdown took {took:.2f} s; "
          f"gwclient threads left: {leftovers}; sockets left: {after['sockets']}")
    return 1 if worst_sockets > 1 or leftovers or after["sockets"] else 0


if __name__ == "__main__":
    sys.exit(main())
