"""Run a DevGateway until Ctrl-C / SIGTERM.

    python -m gwclient.testing --port 18789 --token T [--password P] [--tick-ms MS] [--host 127.0.0.1]

Prints the gateway URL on stdout (one line), logs to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from gwclient.testing._devgateway import DevGateway


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gwclient.testing", description="Run a DevGateway until Ctrl-C / SIGTERM."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: pick a free one)")
    parser.add_argument("--token", default=None, help="shared gateway token")
    parser.add_argument("--password", default=None, help="shared gateway password")
    parser.add_argument("--tick-ms", type=int, default=30_000, help="tick interval in ms (default 30000)")
    parser.add_argument(
        "--no-auto-approve",
        action="store_true",
        help="answer PAIRING_REQUIRED for new devices instead of pairing them silently",
    )
    parser.add_argument("--enforce-scopes", action="store_true", help="emulate scope enforcement")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections to stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    gateway = DevGateway(
        token=args.token,
        password=args.password,
        host=args.host,
        port=args.port,
        tick_interval_ms=args.tick_ms,
        auto_approve=not args.no_auto_approve,
        enforce_scopes=args.enforce_scopes,
    )
    with gateway:
        print(gateway.url, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
