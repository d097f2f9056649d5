"""``gwclient pair``: this device's identity and pairing state; ``--wait`` for approval;
``--scopes a,b`` for a scope upgrade (:mod:`._pair_scopes`)."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any, TextIO

from gwclient import DEFAULT, GatewayConfig, GatewayTimeout, HelloOk, PairingRequired
from gwclient.device import DeviceIdentity

from ._codes import EXIT_OK, EXIT_PAIRING, PROG
from ._invocation import Invocation, connection
from ._pair_scopes import approved_scopes_config, upgrade_scopes
from ._spinner import Spinner, isatty

__all__ = ["cmd_pair"]


class _PairingProgress:
    """Shows that ``pair --wait`` is alive.  On a terminal: a spinner line with the elapsed
    seconds (``cli-pair-progress``).  Elsewhere: a plain line at the first refusal and then
    every ``interval`` seconds."""

    def __init__(self, err: TextIO, *, interval: float = 15.0) -> None:
        self._err = err
        self._tty = isatty(err)
        self._interval = interval
        self._started = time.monotonic()
        self._last_line = -interval
        self._request: str | None = None
        self._spinner = Spinner(err, self._text, name="cli-pair-progress", enabled=self._tty)

    def _text(self) -> str:
        elapsed = time.monotonic() - self._started
        what = f" of request {self._request}" if self._request else ""
        return f"waiting for approval{what}... {elapsed:.0f} s (Ctrl-C to stop)"

    def __enter__(self) -> _PairingProgress:
        self._spinner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._spinner.stop()

    def cleared(self) -> AbstractContextManager[None]:
        """Around other output: the spinner line is erased first (stdout may share the terminal)."""
        return self._spinner.cleared()

    def waiting(self, error: PairingRequired) -> None:
        with self._spinner.lock:
            self._request = error.request_id
        elapsed = time.monotonic() - self._started
        if not self._tty and elapsed - self._last_line >= self._interval:
            self._last_line = elapsed
            what = f"request {error.request_id}" if error.request_id else "this device"
            print(f"{PROG}: waiting for approval of {what} ({elapsed:.0f} s elapsed)",
                  file=self._err, flush=True)


def _pairing_record(config: GatewayConfig, identity: DeviceIdentity) -> dict[str, Any]:
    return {"deviceId": identity.device_id, "stateDir": str(config.effective_state_dir),
            "gateway": config.redacted_url}


def _show_paired(session: Invocation, record: dict[str, Any], hello: HelloOk) -> None:
    auth = hello.auth
    record.update(state="paired", paired=True, role=auth.role if auth else None,
                  scopes=list(auth.scopes) if auth else [], authMethod=auth.method if auth else None)
    if session.json:
        session.print_json(record)
        return
    scopes = ", ".join(record["scopes"]) or "none"
    session.print(f"pairing:   paired (role {record['role'] or '?'}; scopes {scopes}; "
                  f"auth {record['authMethod'] or '?'})")


def _show_pairing_required(session: Invocation, record: dict[str, Any], error: PairingRequired) -> None:
    record.update(state="pairing-required", paired=False, requestId=error.request_id,
                  approveCommand=error.approve_command)
    if session.json:
        session.print_json(record)
        return
    if error.request_id:
        session.print(f"pairing:   pairing required (request {error.request_id})")
        session.print(f"approve:   {error.approve_command}")
        session.print("           (run it on the gateway host; add --url/--token if the openclaw CLI "
                      "needs them)")
    else:
        session.print("pairing:   pairing required (no request id; list requests with "
                      "`openclaw devices list`)")


def cmd_pair(session: Invocation) -> int:
    config = session.config()
    identity = DeviceIdentity.load_or_create(config.effective_state_dir)
    record = _pairing_record(config, identity)
    if not session.json:
        session.print(f"device:    {identity.device_id}")
        session.print(f"state dir: {config.effective_state_dir}")
        session.print(f"gateway:   {config.redacted_url}")
    scopes = getattr(session.args, "scopes", None)
    if scopes:
        config = approved_scopes_config(config, identity)
    with connection(config) as conn:
        if not session.args.wait or scopes:
            try:
                hello = conn.connect(timeout=DEFAULT if session.args.timeout is None else session.args.timeout)
            except PairingRequired as exc:
                _show_pairing_required(session, record, exc)
                return EXIT_PAIRING
            if scopes:
                return upgrade_scopes(session, conn, record, hello, scopes)
            _show_paired(session, record, hello)
            return EXIT_OK
        timeout = session.args.timeout if session.args.timeout is not None else 300.0
        shown: set[str | None] = set()
        last: list[PairingRequired] = []

        def on_waiting(error: PairingRequired) -> None:
            last[:] = [error]
            if error.request_id not in shown:
                shown.add(error.request_id)
                with progress.cleared():
                    if session.json:
                        session.print_json({**record, "state": "pairing-required", "paired": False,
                                            "requestId": error.request_id,
                                            "approveCommand": error.approve_command})
                    else:
                        _show_pairing_required(session, dict(record), error)
            progress.waiting(error)

        with _PairingProgress(session.err) as progress:
            try:
                hello = conn.wait_for_pairing(timeout=timeout, on_waiting=on_waiting)
            except (GatewayTimeout, PairingRequired) as exc:
                if not last:
                    raise
                command = last[0].approve_command
                hint = f"; approve it with `{command}`" if command else ""
                raise PairingRequired(f"device was not approved within {timeout:g} s{hint}") from exc
        _show_paired(session, record, hello)
        return EXIT_OK
