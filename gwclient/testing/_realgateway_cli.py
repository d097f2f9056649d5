"""The command line of the real-gateway helper: ``python -m gwclient.testing._realgateway
install|serve`` (``scripts/real-gateway``); :func:`main` is re-exported by
:mod:`gwclient.testing._realgateway`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gwclient.testing._openclaw_install import (
    OPENCLAW_VERSION,
    RealGatewayError,
    _cmd_install,
    _install_help,
    _install_options,
    _say,
    _tail,
)
from gwclient.testing._realgateway import RealGateway, _new_token
from gwclient.testing._realgw_procs import _PORT_SPAN

__all__ = ["main"]


_TOKEN_FILE = "realgw-token"
#: ``--require-pairing``: no silent pairing of local devices (openclaw >= 2026.9.6).
REQUIRE_PAIRING_CONFIG = {"gateway": {"nodes": {"pairing": {"autoApproveLocal": False}}}}


def _serve_token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The token to use and a note on how long it lives.

    With ``--home`` the token is kept in ``<home>/realgw-token`` (mode 0600), so a restart
    without ``--token`` keeps running clients working.
    """
    if args.home is None:
        note = "a new token on every run: pass --token (or --home) to keep it across restarts"
        return args.token, note
    path = Path(args.home).expanduser() / _TOKEN_FILE
    if args.token is None:
        with contextlib.suppress(OSError):
            kept = path.read_text(encoding="utf-8").strip()
            if kept:
                return kept, f"token kept from the previous run ({path})"
    token = args.token or _new_token()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, f"token kept in {path} for the next run"


def _cmd_serve(args: argparse.Namespace) -> int:
    token, token_note = _serve_token(args)
    gw = RealGateway(
        token=token,
        port=args.port,
        home=args.home,
        config=REQUIRE_PAIRING_CONFIG if args.require_pairing else None,
        cache_dir=args.cache_dir,
        version=args.openclaw_version,
        progress=_say,
    )
    # Ctrl-C and SIGTERM both end the wait and stop the gateway cleanly (SIGINT explicitly:
    # a shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(f"starting openclaw {gw.version} gateway on port {gw.port} in {gw.home} ...", flush=True)
        gw.start()
        print(
            f"ready in {gw.last_startup_seconds or 0:.1f} s (pid {gw.pid})\n"
            f"url:   {gw.url}\n"
            f"token: {gw.token}  ({token_note})\n"
            f"log:   {gw.log_path}\n\n"
            f"export OPENCLAW_GATEWAY_URL={gw.url} OPENCLAW_GATEWAY_TOKEN={gw.token}\n\n"
            + (_pairing_note(gw) if args.require_pairing else "")
            + "Ctrl-C stops it.",
            flush=True,
        )
        while gw.running:
            time.sleep(0.5)
        print("the gateway exited on its own; last log lines:\n" + _tail(gw.log_text()))
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not abandon the gateway half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        gw.close()
        print("stopped.", flush=True)


def approve_command_line(gw: RealGateway, request_id: str) -> str:
    """The shell command that approves ``request_id`` on this gateway: the openclaw CLI of
    the gateway host (``scripts/openclaw`` when no ``openclaw`` is on PATH), run in the
    gateway's own home and state dir (where the host's CLI identity lives) with the URL and
    token (``--url`` makes the CLI ignore its config's credentials)."""
    import shlex

    from gwclient._approve import openclaw_command

    return (f"HOME={shlex.quote(str(gw.home))} OPENCLAW_STATE_DIR={shlex.quote(str(gw.state_dir))} "
            f"{openclaw_command('devices', 'approve', request_id)} --json --url {shlex.quote(gw.url)} "
            f"--token {shlex.quote(gw.token)}")


def _pairing_note(gw: RealGateway) -> str:
    return (
        "pairing: every new device needs approval (gateway.nodes.pairing.autoApproveLocal: false).\n"
        "  In a shell with the export line above, `gwclient pair` prints the request id; approve it\n"
        "  as this gateway's host would, in any shell:\n"
        f"  {approve_command_line(gw, '<requestId>').replace(chr(39) + '<requestId>' + chr(39), '<requestId>')}\n\n"
    )


def _port_arg(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port <= 65535 - _PORT_SPAN:
        raise argparse.ArgumentTypeError(
            f"port {port} is out of range (1-{65535 - _PORT_SPAN}; the gateway also uses port+{_PORT_SPAN})"
        )
    return port


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``install`` (print the openclaw bin path) or ``serve`` (run until Ctrl-C)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m gwclient.testing._realgateway",
        description=f"Install or run a real OpenClaw gateway (pinned: {OPENCLAW_VERSION}).",
    )
    common = _install_options()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", parents=[common], help=_install_help())
    serve = sub.add_parser("serve", parents=[common], help="run a local gateway until Ctrl-C")
    serve.add_argument("--port", type=_port_arg, help="loopback port (default: a free one)")
    serve.add_argument("--token", help="shared token (default: random, or the one kept in --home)")
    serve.add_argument(
        "--home",
        help="HOME for the gateway (default: a temporary folder removed on exit); reuse a folder to keep state",
    )
    serve.add_argument(
        "--require-pairing", action="store_true",
        help="turn silent local pairing off (gateway.nodes.pairing.autoApproveLocal: false): every new "
             "device must be approved, e.g. with scripts/openclaw devices approve <id> (openclaw >= 2026.9.6)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.command == "install":
            return _cmd_install(args)
        return _cmd_serve(args)
    except RealGatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
