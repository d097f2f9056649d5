#!/usr/bin/env python3
"""A plain synchronous script making a few gateway requests.

It used to open a websocket per call; with gwclient every call goes through the one
shared connection of this process, so the whole script uses a single socket.

    OPENCLAW_GATEWAY_URL=ws://127.0.0.1:18789 OPENCLAW_GATEWAY_TOKEN=... python examples/legacy_script.py

The gateway comes from the environment (OPENCLAW_GATEWAY_URL / OPENCLAW_GATEWAY_TOKEN)
or ~/.openclaw/openclaw.json, like the official tools.
"""

from __future__ import annotations

import sys
from typing import Any

from gwclient import GatewayConnection, GatewayError, PairingRequired


def gateway_call(method: str, params: Any = None) -> Any:
    """The old helper's signature, unchanged; it no longer opens a socket of its own."""
    return GatewayConnection.shared().request(method, params, timeout=10)


def main() -> int:
    try:
        health = gateway_call("health")
        print(f"health: {'ok' if health.get('ok') else 'not ok'}")
        status = gateway_call("status")
        print(f"status: gateway version {status.get('runtimeVersion', '?')}, pid {status.get('pid', '?')}")
        presence = gateway_call("system-presence")
        print(f"presence: {len(presence)} entr{'y' if len(presence) == 1 else 'ies'}")
        answered = 0
        for _ in range(5):  # repeated calls reuse the same socket
            gateway_call("health")
            answered += 1
        print(f"{answered} more requests answered")
    except PairingRequired as exc:
        print(f"this device must be approved first: {exc.approve_command or exc}", file=sys.stderr)
        return 4
    except GatewayError as exc:
        print(f"gateway error: {exc}", file=sys.stderr)
        return 1
    finally:
        GatewayConnection.shared().shutdown()  # optional: atexit does it too
    return 0


if __name__ == "__main__":
    sys.exit(main())
