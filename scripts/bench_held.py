#!/usr/bin/env python3
"""What a subscription's byte bound really holds: the decoded size of event shapes next
to their frame size and gwclient's estimate (``gwclient/_held.py``), then the RSS one
never-reading subscriber adds when object-heavy events arrive faster than it reads.

    PYTHONPATH=$PWD python scripts/bench_held.py                # default 64 MiB bound
    PYTHONPATH=$PWD python scripts/bench_held.py --bound-mib 8

A measurement for BENCHMARKS.md, not a timed test.  The dev gateway runs in this process
(it keeps nothing of what it sends); the subscriber never reads until the end, after an
``echo`` round trip proved every event was offered to it.  Run it against an older
checkout (PYTHONPATH) for the "before" figure: there the bound counts wire bytes.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import string
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import psutil

from gwclient import GatewayConfig, GatewayConnection
from gwclient.testing import DevGateway

estimate_of: Callable[[str], int] | None
try:
    from gwclient._core.held import held_size as estimate_of
except ImportError:  # an older gwclient: its bound counts the frame's length
    estimate_of = None

TOKEN = "bench-held-token"


def shapes() -> dict[str, Any]:
    rng = random.Random(1)

    def word(n: int) -> str:
        return "".join(rng.choice(string.ascii_letters) for _ in range(n))

    return {
        "chat delta (real shape)": {"runId": "7e838224-d1b3-4aeb-8e04-0eef10e7be80", "sessionKey": "agent:main:x",
                                    "seq": 6, "state": "delta", "deltaText": " hello",
                                    "message": {"role": "assistant",
                                                "content": [{"type": "text", "text": "ECHO: hello chat " * 20}]}},
        "presence list": {"presence": [{"host": word(8), "ip": "10.0.0.1", "version": "2026.9.6", "mode": "cli",
                                        "ts": 1795970034008 + i, "roles": ["operator"],
                                        "scopes": ["operator.read", "operator.write"]} for i in range(300)]},
        "dict of small ints": {f"k{i}": i for i in range(2000)},
        "list of small dicts": [{"a": i, "b": i * 1.5, "c": True} for i in range(2000)],
        "list of ints": list(range(100_000, 120_000)),
        "list of empty dicts": [{} for _ in range(20_000)],
        "nested empty lists": [[[]] for _ in range(20_000)],
        "short strings": [word(3) for _ in range(20_000)],
        "one long string": {"text": word(200_000)},
        "prose with commas": {"text": "one, two, three, four " * 10_000},
    }


def decoded_bytes(text: str) -> int:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    obj = json.loads(text)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del obj
    return after - before


def table() -> None:
    print(f"{'event shape':26} {'frame B':>9} {'decoded B':>10} {'x frame':>8} {'estimate B':>11} {'est/dec':>8}")
    for name, payload in shapes().items():
        frame = json.dumps({"type": "event", "event": "x", "payload": payload, "seq": 1}, separators=(",", ":"))
        decoded = decoded_bytes(frame)
        estimate = estimate_of(frame) if estimate_of is not None else len(frame)
        print(f"{name:26} {len(frame):9d} {decoded:10d} {decoded / len(frame):8.2f} {estimate:11d} "
              f"{estimate / decoded:8.2f}")


def rss_mb() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


def never_reading(bound: int, wire_multiple: float) -> None:
    payload: list[dict[str, int]] = [{} for _ in range(20_000)]  # ~60 KB frames that decode to ~24x that
    frame_len = len(json.dumps({"type": "event", "event": "blob", "payload": payload, "seq": 1}))
    count = max(1, int(bound * wire_multiple / frame_len))
    with DevGateway(token=TOKEN) as gw:
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, max_queue=10**6,
                                                      max_queue_bytes=bound, request_timeout=120))
        conn.request("echo", 0)
        base = rss_mb()
        sub = conn.subscribe(["blob"], include_state=False)
        for _ in range(count):
            gw.broadcast("blob", payload)
        conn.request("echo", 1)  # every event has been offered to the subscription
        held = rss_mb()
        queued = len(sub._queue)
        sub.close()
        conn.shutdown()
    print(f"one never-reading subscriber, bound {bound / 2**20:g} MiB, {count} object-heavy events of "
          f"{frame_len / 1024:.0f} KB ({count * frame_len / 2**20:.0f} MiB on the wire): "
          f"{queued} queued, RSS +{held - base:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bound-mib", type=float, default=64.0, help="the subscription's max_bytes (MiB)")
    parser.add_argument("--wire-multiple", type=float, default=2.0,
                        help="send this many times the bound in frame bytes")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}; "
          + ("estimate: gwclient._held.held_size" if estimate_of is not None else "this gwclient counts frame bytes"))
    table()
    never_reading(int(args.bound_mib * 2**20), args.wire_multiple)
    return 0


if __name__ == "__main__":
    sys.exit(main())
