"""``gwclient pair --scopes a,b [--wait]``: ask for more operator scopes (a scope upgrade,
:meth:`gwclient.GatewayConnection.request_scopes`) and print the exact command that
approves it on the gateway host, as ``pair`` does for a pairing request.

Exit codes: 0 granted, 4 still waiting for approval (or rejected/expired: ask again).
"""

from __future__ import annotations

from typing import Any

from gwclient import GatewayConfig, GatewayConnection, HelloOk, ScopeUpgrade
from gwclient.device import DeviceIdentity, DeviceTokenStore

from ._codes import EXIT_OK, EXIT_PAIRING
from ._invocation import Invocation
from ._spinner import Spinner, isatty

__all__ = ["approved_scopes_config", "upgrade_scopes"]


def approved_scopes_config(config: GatewayConfig, identity: DeviceIdentity) -> GatewayConfig:
    """Connect with the scopes this device already has (its stored device token's, as the
    official client does), so that the connect itself is not refused as an upgrade."""
    stored = DeviceTokenStore(config.effective_state_dir).load(config.gateway_key, identity.device_id, config.role)
    if stored is None or not stored.scopes:
        return config
    return config.with_changes(scopes=tuple(stored.scopes))


def _show(session: Invocation, record: dict[str, Any], outcome: ScopeUpgrade) -> None:
    record.update(scopeUpgrade=outcome.status, requestId=outcome.request_id or None,
                  scopes=list(outcome.scopes),
                  approveCommand=outcome.approve_command if outcome.status == "pending" else None)
    if session.json:
        session.print_json(record)
        return
    scopes = ", ".join(outcome.scopes)
    if outcome.status == "approved":
        session.print(f"scopes:    granted ({scopes})")
    elif outcome.status == "pending":
        session.print(f"scopes:    upgrade to {scopes} pending approval (request {outcome.request_id})")
        session.print(f"approve:   {outcome.approve_command}")
        session.print("           (run it on the gateway host; then run this command again, or use --wait)")
    else:
        session.print(f"scopes:    upgrade to {scopes} {outcome.status} (request {outcome.request_id}); "
                      "ask again to file a new request")


def upgrade_scopes(session: Invocation, conn: GatewayConnection, record: dict[str, Any], hello: HelloOk,
                   scopes_arg: str) -> int:
    wanted = [s.strip() for s in scopes_arg.split(",") if s.strip()]
    auth = hello.auth
    record.update(state="paired", paired=True, role=auth.role if auth else None)
    if not session.args.wait:
        outcome = conn.request_scopes(wanted)
        _show(session, record, outcome)
        return EXIT_OK if outcome.approved else EXIT_PAIRING
    timeout = session.args.timeout if session.args.timeout is not None else 300.0
    spinner = Spinner(session.err, lambda: "waiting for approval of the scope upgrade... (Ctrl-C to stop)",
                      name="cli-pair-progress", enabled=isatty(session.err))

    spinning: list[bool] = []

    def pending(outcome: ScopeUpgrade) -> None:
        _show(session, dict(record), outcome)  # the approve command first, then the wait
        spinner.__enter__()
        spinning.append(True)

    try:
        outcome = conn.request_scopes(wanted, wait=True, timeout=timeout, on_pending=pending)
    finally:
        if spinning:
            spinner.stop()
    _show(session, record, outcome)
    return EXIT_OK if outcome.approved else EXIT_PAIRING
