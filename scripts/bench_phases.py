#!/usr/bin/env python3
"""Where a sequential request's time goes: gwclient's round trip split into phases,
next to the raw websocket-client round trip, against the same fast gateway.

    python scripts/bench_phases.py [--n 3000] [--dev-gateway]

A profiling aid for BENCHMARKS.md, not a benchmark: it wraps gwclient's transport and
settle function with timestamps (private names; expect to adapt it when they change).
Phases (medians, microseconds):

* prepare: ``request()`` called -> the transport's ``send`` is entered (validate, encode,
  Future, session decision under the lock); raw: ``json.dumps``;
* send: websocket-client framing + mask + the ``send`` syscall (the same code for both);
* wire: frame sent -> the reader's ``recv()`` returns the answer (gateway + kernel + the
  reader thread's wake-up and websocket-client frame parsing);
* reader: ``recv()`` returned -> the future is about to be settled (JSON decode, frame
  dataclass, session lookup);
* wake-up: settle -> ``request()`` returns in the caller (Future.set_result, notify,
  the caller's thread switch and GIL hand-over).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # the sibling script: gateway launcher and raw client

from gwclient import GatewayConfig, GatewayConnection, _link, _transport


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--dev-gateway", action="store_true")
    args = parser.parse_args(argv)
    marks: dict[str, float] = {}
    orig_send = _transport._WebSocketTransport.send
    orig_recv = _transport._WebSocketTransport.recv
    orig_settle = _link._settle

    def send(self: Any, data: bytes) -> None:
        marks["send0"] = time.perf_counter()
        orig_send(self, data)
        marks["sent"] = time.perf_counter()

    def recv(self: Any) -> bytes | None:
        out = orig_recv(self)
        marks["recv"] = time.perf_counter()
        return out

    def settle(fut: Any, outcome: Any) -> None:
        marks["settle"] = time.perf_counter()
        orig_settle(fut, outcome)

    _transport._WebSocketTransport.send = send  # type: ignore[method-assign]
    _transport._WebSocketTransport.recv = recv  # type: ignore[method-assign]
    _link._settle = settle

    gw = bench.start_gateway("phase-token", force_dev=args.dev_gateway)
    print(f"gateway: {gw.kind}")
    try:
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token="phase-token", device_identity=False,
                                                      scopes=("operator.read",)))
        conn.request("health")
        raw = bench.Raw(gw.url, "phase-token")
        ours: dict[str, list[float]] = {k: [] for k in ("prepare", "send", "wire", "reader", "wake-up", "total")}
        base: dict[str, list[float]] = {k: [] for k in ("prepare", "send", "wire", "decode", "total")}
        for _ in range(args.n):
            t0 = time.perf_counter()
            conn.request("health")
            t1 = time.perf_counter()
            ours["prepare"].append(marks["send0"] - t0)
            ours["send"].append(marks["sent"] - marks["send0"])
            ours["wire"].append(marks["recv"] - marks["sent"])
            ours["reader"].append(marks["settle"] - marks["recv"])
            ours["wake-up"].append(t1 - marks["settle"])
            ours["total"].append(t1 - t0)

            t0 = time.perf_counter()
            raw.ids += 1
            frame = json.dumps({"type": "req", "id": str(raw.ids), "method": "health"})
            t05 = time.perf_counter()
            raw.ws.send(frame)
            t1 = time.perf_counter()
            text = raw.ws.recv()
            t2 = time.perf_counter()
            json.loads(text)
            t3 = time.perf_counter()
            base["prepare"].append(t05 - t0)
            base["send"].append(t1 - t05)
            base["wire"].append(t2 - t1)
            base["decode"].append(t3 - t2)
            base["total"].append(t3 - t0)
        raw.close()
        print(f"{args.n} sequential 'health' requests, medians in microseconds")
        print("  gwclient: " + "  ".join(f"{k} {statistics.median(v) * 1e6:6.1f}" for k, v in ours.items()))
        print("  raw:      " + "  ".join(f"{k} {statistics.median(v) * 1e6:6.1f}" for k, v in base.items()))
    finally:
        GatewayConnection.shutdown_all()
        gw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
