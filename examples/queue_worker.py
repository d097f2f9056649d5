#!/usr/bin/env python3
"""A worker thread consuming a Subscription queue while the main thread makes requests.

The worker handles every kind of push: a Snapshot (connected or reconnected: re-read the
state you keep), an Event, a SeqGap (events were lost: re-read state), a StateChange and
an Overflow (this worker was too slow; the oldest items were dropped).  It stops after
RUN_SECONDS or MAX_ITEMS, whichever comes first, so the script ends on its own.

    OPENCLAW_GATEWAY_URL=... OPENCLAW_GATEWAY_TOKEN=... python examples/queue_worker.py
"""

from __future__ import annotations

import sys
import threading
import time

from gwclient import (
    ClientClosed,
    Event,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    GatewayTimeout,
    Overflow,
    SeqGap,
    Snapshot,
    StateChange,
    Subscription,
)

RUN_SECONDS = 3.0
MAX_ITEMS = 50


def worker(sub: Subscription, conn: GatewayConnection) -> None:
    deadline = time.monotonic() + RUN_SECONDS
    handled = 0
    while handled < MAX_ITEMS:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            item = sub.get(timeout=remaining)
        except GatewayTimeout:
            break  # nothing more within our time budget
        except ClientClosed:
            break  # the subscription or the connection was closed
        handled += 1
        if isinstance(item, Snapshot):
            # Blocking calls are fine here: this is our own thread, not a gwclient one.
            presence = conn.request("system-presence", timeout=10)
            print(f"worker: snapshot (connection {item.connection_number}); {len(presence)} presence entries")
        elif isinstance(item, Event):
            print(f"worker: event {item.event} seq={item.seq}")
        elif isinstance(item, SeqGap):
            print(f"worker: lost {item.missed} event(s); refreshing health")
            conn.request("health", timeout=10)
        elif isinstance(item, StateChange):
            print(f"worker: connection {item.state.value}")
        elif isinstance(item, Overflow):
            print(f"worker: too slow, {item.dropped} item(s) dropped")
    print(f"worker: handled {handled} item(s)")


def main() -> int:
    config = GatewayConfig.from_environment()
    conn = GatewayConnection.shared(config)
    try:
        # Subscribe before the first request so the worker also sees the events the
        # gateway sends right after connecting (a `health` event).
        with conn.subscribe(maxsize=100) as sub:
            thread = threading.Thread(target=worker, args=(sub, conn), name="queue-worker")
            thread.start()
            try:
                for i in range(3):
                    health = conn.request("health", timeout=10)
                    print(f"main: health #{i + 1}: {'ok' if health.get('ok') else 'not ok'}")
            except GatewayError:
                sub.close()  # ends the worker's get() at once
                raise
            finally:
                thread.join()
    except GatewayError as exc:
        print(f"gateway error: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
