"""``gwclient share run|start|status|stop`` and the cheap attach of ``call``/``health``/
``status`` through the share (``--share MODE`` / ``GWCLIENT_SHARE``).

The cheap path imports the standard library, the config and the share's stdlib client
only: no websocket stack, cryptography, pykka or dataclasses-json (the human-readable
``health``/``status`` summaries load the typed views they need).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ._codes import EXIT_FAILURE, EXIT_OK, EXIT_PAIRING, EXIT_USAGE, PROG, UsageProblem, read_params

__all__ = ["add_share_command", "cmd_share", "fast_command"]

_FAST = frozenset({"call", "health", "status"})


def add_share_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    share = command("share", "the local share: one gateway socket for every gwclient process of this user "
                             "(docs/share.md)")
    share.add_argument("action", choices=("run", "start", "status", "stop"),
                       help="run: in the foreground (for a systemd/launchd unit); start: in the background; "
                            "status: what it holds; stop: ask it to exit")
    share.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)


def add_share_option(group: argparse._ArgumentGroup, default: Any) -> None:
    group.add_argument("--share", choices=("off", "auto", "required"), default=default, metavar="MODE",
                       help="off|auto|required: use the local share instead of a socket of this process's "
                            "own (default: $GWCLIENT_SHARE, else off; docs/share.md)")


# ----------------------------------------------------------------------- the cheap path


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", "")
    detail = getattr(exc, "detail_code", "")
    method = getattr(exc, "method", "")
    text = str(exc) or type(exc).__name__
    if code and method and method != "connect":
        return f"{method} failed ({code}{'/' + detail if detail else ''}): {text}"
    return text


def fast_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int | None:
    """Run ``call``/``health``/``status`` through the share; ``None`` when the ordinary
    path must run instead (share off, or ``auto`` and the share cannot be used: then
    ``args.share`` is set to ``off`` after one note)."""
    if args.command not in _FAST or getattr(args, "setup_code", None):
        return None  # (a setup code pairs on the ordinary path, which reads it)
    from gwclient import ConfigError, GatewayConfig, GatewayError, PairingRequired  # loads _config, _errors only
    from gwclient.share import mode_from_env

    secrets: list[str] = [s for s in (args.token, args.password) if s]

    def say(stream: TextIO, text: str) -> None:
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        print(text, file=stream, flush=True)

    try:
        mode = args.share or mode_from_env()
        if mode == "off":
            return None
        overrides: dict[str, Any] = {"share": mode}
        for name in ("url", "token", "password"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        if args.allow_insecure:
            overrides["allow_insecure_remote"] = True
        config = GatewayConfig.from_environment(config_path=args.config, **overrides)
    except ConfigError as exc:
        say(err, f"{PROG}: error: {exc}")
        return EXIT_USAGE
    secrets += [s for s in (config.token, config.password) if s]
    if config.ssh is not None:
        return None  # SSH-tunnelled configs are not shared
    timeout = args.timeout if args.timeout is not None else config.request_timeout
    from gwclient.share import ShareRefused, open_share

    try:
        share = open_share(start=True, timeout=min(timeout, 10.0))
    except OSError as exc:
        reason = str(exc) if isinstance(exc, ShareRefused) else f"cannot attach to the share: {exc.strerror or exc}"
        if mode == "required":
            say(err, f"{PROG}: error: GWCLIENT_SHARE=required but the share cannot be used: {reason}")
            return EXIT_FAILURE
        say(err, f"{PROG}: note: the share cannot be used ({reason}); using a direct socket")
        args.share = "off"
        return None
    try:
        return _run(args, config, share, timeout=timeout, out=out, say=say)
    except UsageProblem as exc:
        say(err, f"{PROG}: error: {exc}")
        return EXIT_USAGE
    except PairingRequired as exc:
        say(err, f"{PROG}: error: {_describe(exc)}")
        return EXIT_PAIRING
    except GatewayError as exc:
        say(err, f"{PROG}: error: {_describe(exc)}")
        return EXIT_FAILURE
    except TimeoutError:
        say(err, f"{PROG}: error: no answer through the share within {timeout:g} s")
        return EXIT_FAILURE
    except (OSError, EOFError, ConnectionError) as exc:
        say(err, f"{PROG}: error: the share's stream ended: {exc}")
        return EXIT_FAILURE
    finally:
        share.close()


def _run(args: argparse.Namespace, config: Any, share: Any, *, timeout: float, out: TextIO,
         say: Callable[[TextIO, str], None]) -> int:
    from gwclient.share import OneShot

    client = OneShot(share, config, timeout)
    if args.command == "call":
        params = read_params(args.params)
        result = client.request(args.method, params, expect_final=bool(args.expect_final) or args.method == "agent")
        if args.json:
            say(out, json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str))
        else:
            say(out, json.dumps(result, indent=2, ensure_ascii=False, default=str))
        return EXIT_OK
    result = client.request(args.command)
    if args.json:
        say(out, json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str))
    else:
        from ._render import health_lines, status_lines

        lines = health_lines if args.command == "health" else status_lines
        for line in lines(result, config.redacted_url):
            say(out, line)
    if args.command == "health" and isinstance(result, dict) and result.get("ok") is False:
        return EXIT_FAILURE
    return EXIT_OK


# ----------------------------------------------------------------------- share commands


def cmd_share(session: Any) -> int:
    from gwclient import share as share_api
    from gwclient.share import ShareNotRunning, ShareRefused

    action = session.args.action
    if action == "run":
        import logging

        from gwclient.share import ShareServer

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("gwclient")
        root.addHandler(handler)
        if not session.args.verbose:
            root.setLevel(logging.INFO)
        return ShareServer(ready_fd=session.args.ready_fd).run()
    if action == "start":
        pid = share_api.start()
        if pid is None:
            session.note("a share is already running")
        else:
            session.note(f"share started (pid {pid})")
        return EXIT_OK
    if action == "stop":
        pid = share_api.stop()
        session.note("no share is running" if pid is None else f"share {pid} stopped")
        return EXIT_OK
    try:
        status = share_api.status()
    except ShareNotRunning:
        if session.json:
            session.print_json({"running": False, "socket": str(share_api.socket_path())})
        else:
            session.print(f"share: not running (socket {share_api.socket_path()})")
        return EXIT_FAILURE
    except ShareRefused as exc:
        session.error(exc)
        return EXIT_FAILURE
    if session.json:
        session.print_json({"running": True, **status})
        return EXIT_OK
    for line in status_lines(status):
        session.print(line)
    return EXIT_OK


def status_lines(status: dict[str, Any]) -> list[str]:
    from ._render import duration

    lines = [f"share: running, pid {status.get('pid')}, gwclient {status.get('version')}",
             f"socket: {status.get('socket')}",
             f"uptime: {duration(1000 * float(status.get('uptime') or 0))}, lingers {status.get('persist'):g} s "
             "after the last process",
             f"attached: {len(status.get('attached') or [])} now, {status.get('attaches')} since start"]
    for entry in status.get("attached") or []:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(entry.get("since") or 0)))
        lines.append(f"  pid {entry.get('pid')} since {since} ({entry.get('gateway')})")
    for gateway in status.get("gateways") or []:
        lines.append(f"gateway {gateway.get('url')}: {gateway.get('state')}, connection "
                     f"{gateway.get('connection')}, {gateway.get('requests_relayed')} requests relayed, "
                     f"{gateway.get('reconnects')} reconnects")
    return lines
