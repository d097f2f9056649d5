#!/usr/bin/env python3
"""A small synchronous chat REPL: type a line, watch the reply stream in.

Each line is sent with ``conn.chat(session, line)`` and the reply is printed as its text
deltas arrive.  Ctrl-C while a reply streams aborts that run (and the REPL goes on);
Ctrl-C at the prompt, Ctrl-D or an empty line ends it.  A failed run prints the gateway's
reason and the REPL goes on.

    OPENCLAW_GATEWAY_URL=... OPENCLAW_GATEWAY_TOKEN=... python examples/chat_repl.py [SESSION]
"""

from __future__ import annotations

import sys

from gwclient import GatewayConnection, GatewayError, RunAborted, RunError


def main() -> int:
    session = sys.argv[1] if len(sys.argv) > 1 else "main"
    conn = GatewayConnection.shared()
    print(f"chatting in session {session!r}; an empty line ends", flush=True)
    try:
        while True:
            try:
                line = input("you> ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                break
            if not line:
                break
            try:
                with conn.chat(session, line, timeout=120) as run:  # an unfinished run is aborted on exit
                    print("bot> ", end="", flush=True)
                    for text in run:
                        print(text, end="", flush=True)
                    print(flush=True)
            except KeyboardInterrupt:
                print("\n(aborted)", flush=True)
            except RunAborted:
                print("\n(aborted on the gateway)", flush=True)
            except RunError as exc:
                print(f"\n(failed: {exc})", flush=True)
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
