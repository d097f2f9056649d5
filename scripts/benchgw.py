#!/usr/bin/env python3
"""The benchmark's fallback gateway (when Node is not installed): the dev gateway in its
own process, with the two methods scripts/bench.py needs.

    python scripts/benchgw.py --token T      # prints the URL, runs until SIGTERM

``bench.burst`` {count, size} broadcasts ``count`` ``bench.tick`` events (per-connection
seq) as fast as the dev gateway can, then answers {count}; ``bench.stats`` answers
{accepted}.  Unlike scripts/fastgw.mjs a burst goes to every connected socket, and the
server is Python (it competes with the client for the same cores): the figures are
rougher than with the Node gateway.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from gwclient.testing import DevGateway


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with DevGateway(token=args.token) as gw:
        def burst(params: Any) -> Any:
            count = int(params.get("count", 0))
            pad = "x" * int(params.get("size", 0))
            for i in range(count):
                gw.broadcast("bench.tick", {"i": i, "data": pad})
            return {"count": count}

        gw.set_handler("bench.burst", burst)
        gw.set_handler("bench.stats", lambda _params: {"accepted": gw.sockets_accepted})
        print(gw.url, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
