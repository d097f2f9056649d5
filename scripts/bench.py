#!/usr/bin/env python3
"""Benchmark: gwclient's shared connection against the socket-per-call baseline.

The baseline is what the outdated clients do: open a websocket, wait for the challenge,
send ``connect``, wait for hello-ok, send one request, close.  Both are measured in the
same run against the same gateway (the embedded dev gateway by default, or ``--url`` /
``--token`` for a real one), so the ratios are meaningful on any machine.  Prints figures
and ratios; asserts nothing about speed (that is not what tests are for).

    python scripts/bench.py              # full run (~20 s)
    python scripts/bench.py --quick      # smoke run (~3 s)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psutil
import websocket

from gwclient import GatewayConfig, GatewayConnection
from gwclient.testing import DevGateway


def socket_per_call(url: str, token: str, method: str) -> object:
    ws = websocket.create_connection(url, timeout=10, suppress_origin=True)
    try:
        json.loads(ws.recv())  # connect.challenge
        ws.send(json.dumps({
            "type": "req", "id": str(uuid.uuid4()), "method": "connect",
            "params": {"minProtocol": 4, "maxProtocol": 4, "role": "operator", "scopes": ["operator.read"],
                       "client": {"id": "cli", "version": "bench", "platform": "linux", "mode": "cli"},
                       "auth": {"token": token}},
        }))
        while json.loads(ws.recv()).get("type") != "res":
            pass
        rid = str(uuid.uuid4())
        ws.send(json.dumps({"type": "req", "id": rid, "method": method}))
        while True:
            frame = json.loads(ws.recv())
            if frame.get("type") == "res" and frame.get("id") == rid:
                return frame.get("payload")
    finally:
        ws.close()


def timed(n: int, threads: int, call: Callable[[], object]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        t0 = time.perf_counter()
        call()
        took = time.perf_counter() - t0
        with lock:
            latencies.append(took)

    start = time.perf_counter()
    if threads == 1:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(n)))
    return time.perf_counter() - start, latencies


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def report(label: str, n: int, elapsed: float, lat: list[float]) -> float:
    rate = n / elapsed
    print(f"  {label:<34} {rate:9.0f} req/s   p50 {pct(lat, 0.5):7.2f} ms   p99 {pct(lat, 0.99):7.2f} ms")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--method", default="health")
    args = parser.parse_args(argv)
    n_seq, n_conc, threads, soak = (100, 400, 8, 2000) if args.quick else (1000, 8000, 32, 20000)

    gw = None
    if args.url:
        url, token = args.url, args.token or os.environ.get("OPENCLAW_GATEWAY_TOKEN", "")
    else:
        token = "bench-token"
        gw = DevGateway(token=token).start()
        url = gw.url
    cfg = GatewayConfig(url=url, token=token, device_identity=False, scopes=("operator.read",))
    proc = psutil.Process()
    print(f"gateway {url}  (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    try:
        print(f"sequential, {n_seq} requests:")
        t, lat = timed(n_seq, 1, lambda: socket_per_call(url, token, args.method))
        base_seq = report("baseline: socket per call", n_seq, t, lat)
        conn = GatewayConnection.shared(cfg)
        conn.request(args.method)  # connect outside the timing
        t, lat = timed(n_seq, 1, lambda: conn.request(args.method))
        ours_seq = report("gwclient: one shared socket", n_seq, t, lat)

        print(f"concurrent, {threads} threads x {n_conc // threads} requests:")
        t, lat = timed(n_conc // 4, threads, lambda: socket_per_call(url, token, args.method))
        base_conc = report(f"baseline: socket per call ({n_conc // 4})", n_conc // 4, t, lat)
        t, lat = timed(n_conc, threads, lambda: conn.request(args.method))
        ours_conc = report("gwclient: one shared socket", n_conc, t, lat)

        print(f"memory, {soak} requests on the shared socket:")
        rss0 = proc.memory_info().rss
        tracemalloc.start()
        for _ in range(soak):
            conn.request(args.method)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss1 = proc.memory_info().rss
        print(f"  traced Python memory still held: {current / 1024:.1f} KiB (peak {peak / 1024:.1f} KiB)")
        print(f"  RSS growth: {(rss1 - rss0) / 1024:.0f} KiB ({(rss1 - rss0) / soak:.1f} B/request)")
        gw_threads = [t.name for t in threading.enumerate() if t.name.startswith("gwclient-")]
        print(f"  gwclient threads: {len(gw_threads)} ({', '.join(sorted(gw_threads))})")

        print("ratios (gwclient / baseline, same run):")
        print(f"  sequential throughput  x{ours_seq / base_seq:.1f}")
        print(f"  concurrent throughput  x{ours_conc / base_conc:.1f}")
        if gw is not None:
            total = n_seq + n_conc // 4
            print(f"sockets accepted by the gateway: {gw.sockets_accepted} "
                  f"(baseline {total} + gwclient {gw.sockets_accepted - total})")
    finally:
        GatewayConnection.shutdown_all()
        if gw is not None:
            gw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
