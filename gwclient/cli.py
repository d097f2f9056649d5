"""``gwclient``: the command line, a thin layer over the public API.

    gwclient [global options] COMMAND [command options]

Commands: ``call METHOD``, ``health``, ``status``, ``watch``, ``pair``, ``connections``,
``demo``, ``chat MESSAGE``, ``agent MESSAGE``.  Global options (``--url``, ``--token``,
``--password``, ``--config``, ``--timeout``, ``--json``, ``-v``) are accepted before *or*
after the command name.
The gateway is resolved like the library does (:meth:`GatewayConfig.from_environment`
with the options as overrides).

Exit codes:

===  ===========================================================================
0    success
1    gateway or request error (unreachable, refused, timed out, ``ok:false``...);
     a ``chat``/``agent`` run that failed, was aborted or interrupted
2    usage or configuration error (bad arguments, bad ``--params``, bad URL/config)
3    ``connections`` found a process holding more than one gateway connection
4    this device must be paired (approve it: ``openclaw devices approve <id>``)
130  interrupted (Ctrl-C); ``watch`` treats Ctrl-C as its normal end and exits 0
===  ===========================================================================

Errors are one line on stderr (``gwclient: error: <message>``); ``--verbose`` adds the
traceback and DEBUG logging.  Secrets (token, password, URL credentials) are never
printed: they are scrubbed from every message, log line and traceback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from ._cli_runs import add_run_commands, run_command
from ._config import DEFAULT_PORT, GatewayConfig, redact_url
from ._connection import DEFAULT, GatewayConnection
from ._device import DeviceIdentity
from ._errors import (
    ClientClosed,
    ConfigError,
    GatewayError,
    GatewayTimeout,
    PairingRequired,
    ProtocolError,
    RequestError,
)
from ._frames import HelloOk
from ._netstat import ConnectionReport, gateway_connections
from ._payloads import HealthSnapshot
from ._pushes import ConnectionState, Event, Overflow, Push, SeqGap, Snapshot, StateChange

__all__ = [
    "EXIT_DUPLICATES",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAIRING",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DUPLICATES = 3
EXIT_PAIRING = 4
EXIT_INTERRUPTED = 130

PROG = "gwclient"
_PAYLOAD_PREVIEW = 200  # characters of an event payload shown per human-readable line

_EPILOG = """\
global options may be given before or after the command.
the gateway comes from --url/--token/--password, else OPENCLAW_GATEWAY_URL/_TOKEN/_PASSWORD,
else the OpenClaw config file (~/.openclaw/openclaw.json or --config).

exit codes: 0 ok, 1 gateway or request error, 2 usage or configuration error,
3 duplicate connections found (connections), 4 device pairing required, 130 interrupted.
"""


class _UsageProblem(Exception):
    """Bad input found after argparse accepted the command line (exit 2)."""


# ---------------------------------------------------------------------- argparse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1-65535: {text!r}")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The same options on the top parser and on every subcommand.  On subcommands their
    default is SUPPRESS, so an option given before the command is not reset by the
    subcommand's defaults (argparse copies the sub-namespace over the top one)."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument("--url", default=default(None), metavar="URL",
                       help="gateway URL (ws:// or wss://); default: environment, then OpenClaw config")
    group.add_argument("--token", default=default(None), metavar="TOKEN",
                       help="gateway token (prefer OPENCLAW_GATEWAY_TOKEN: a command line is visible to ps)")
    group.add_argument("--password", default=default(None), metavar="PASSWORD",
                       help="gateway password (prefer OPENCLAW_GATEWAY_PASSWORD)")
    group.add_argument("--config", default=default(None), metavar="PATH",
                       help="OpenClaw config file to read instead of ~/.openclaw/openclaw.json")
    group.add_argument("--timeout", type=_positive_float, default=default(None), metavar="S",
                       help="seconds: request timeout (call/health/status), total run time (watch), "
                            "approval wait (pair --wait), run time limit (chat/agent)")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="machine-readable output: compact JSON, one object per line")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False),
                       help="DEBUG logging on stderr and tracebacks on errors")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Talk to an OpenClaw gateway over one shared websocket.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=_EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_global_options(sub, top=False)
        return sub

    call = command("call", "send one request and print its answer")
    call.add_argument("method", metavar="METHOD", help="gateway method, e.g. health, system-presence")
    call.add_argument("--params", metavar="JSON|@FILE",
                      help="request params as JSON, or @FILE to read them from a file (@- for stdin)")
    call.add_argument("--expect-final", action="store_true",
                      help="wait for the final answer of a two-stage method (default for 'agent')")

    command("health", "gateway health (a short summary; --json for the whole answer)")
    command("status", "gateway status (a short summary; --json for the whole answer)")

    watch = command("watch", "stream snapshots, events, gaps and connection states until stopped")
    watch.add_argument("--events", metavar="A,B", help="only these event names (default: all)")
    watch.add_argument("--count", type=_positive_int, metavar="N", help="stop after N events")

    pair = command("pair", "show this device's identity and pairing state")
    pair.add_argument("--wait", action="store_true",
                      help="wait until an operator approves this device (default timeout 300 s)")

    conns = command("connections", "list processes connected to the gateway port on this machine")
    conns.add_argument("--port", type=_port, metavar="PORT",
                       help=f"gateway port (default: the configured gateway's port, normally {DEFAULT_PORT})")

    command("demo", "run the demo: an embedded dev gateway, three consumers, one socket")
    add_run_commands(command)
    return parser


# ------------------------------------------------------------------- the session


class _Scrubber:
    """Replaces every known secret in text shown to the user."""

    def __init__(self) -> None:
        self._pairs: dict[str, str] = {}

    def add_secret(self, value: str | None) -> None:
        if value:
            self._pairs[value] = "***"

    def add_url(self, url: str | None) -> None:
        if url:
            redacted = redact_url(url)
            if redacted != url:
                self._pairs[url] = redacted

    def __call__(self, text: str) -> str:
        # Longest first, so a URL containing a token is replaced as a whole.
        for secret in sorted(self._pairs, key=len, reverse=True):
            text = text.replace(secret, self._pairs[secret])
        return text


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, scrub: _Scrubber) -> None:
        super().__init__("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


class _Session:
    """One ``main()`` run: the parsed arguments, the streams and the secrets to hide."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.scrub = _Scrubber()
        for value in (args.token, args.password):
            self.scrub.add_secret(value)
        self.scrub.add_url(args.url)
        self._config: GatewayConfig | None = None

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def config(self) -> GatewayConfig:
        """The effective config (resolved once per run)."""
        if self._config is not None:
            return self._config
        overrides: dict[str, Any] = {}
        for name in ("url", "token", "password"):
            value = getattr(self.args, name)
            if value is not None:
                overrides[name] = value
        config = GatewayConfig.from_environment(config_path=self.args.config, **overrides)
        self.scrub.add_secret(config.token)
        self.scrub.add_secret(config.password)
        self.scrub.add_url(config.url)
        self._config = config
        return config

    def print(self, text: str = "") -> None:
        print(self.scrub(text), file=self.out, flush=True)

    def print_json(self, value: Any) -> None:
        self.print(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))

    def note(self, text: str) -> None:
        print(self.scrub(f"{PROG}: {text}"), file=self.err, flush=True)

    def error(self, exc: BaseException, message: str | None = None) -> None:
        if self.args.verbose:
            tb = "".join(traceback.format_exception(exc))
            self.err.write(self.scrub(tb))
        text = message if message is not None else _describe(exc)
        text = " ".join(text.split())  # one line, whatever the message holds
        print(self.scrub(f"{PROG}: error: {text}"), file=self.err, flush=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RequestError):
        code = exc.code + (f"/{exc.detail_code}" if exc.detail_code else "")
        what = f"{exc.method} failed" if exc.method else "request failed"
        text = f"{what} ({code}): {exc}" if code else f"{what}: {exc}"
        if exc.recommended_next_step:
            text += f" (next step: {exc.recommended_next_step})"
        return text
    if isinstance(exc, (GatewayError, _UsageProblem)):
        return str(exc) or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {exc} (run with --verbose for a traceback)"


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, PairingRequired):
        return EXIT_PAIRING
    if isinstance(exc, (ConfigError, _UsageProblem)):
        return EXIT_USAGE
    return EXIT_FAILURE


@contextmanager
def _logging(session: _Session) -> Iterator[None]:
    """With ``--verbose``: the ``gwclient`` loggers at DEBUG on stderr (scrubbed), for this
    run only.  Without it the package's NullHandler keeps the library quiet: errors are
    reported once, by the CLI."""
    if not session.args.verbose:
        yield
        return
    logger = logging.getLogger("gwclient")
    handler = logging.StreamHandler(session.err)
    handler.setFormatter(_ScrubbingFormatter(session.scrub))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@contextmanager
def _connection(config: GatewayConfig) -> Iterator[GatewayConnection]:
    """The process's shared connection for ``config``, always shut down at the end."""
    conn = GatewayConnection.shared(config)
    try:
        yield conn
    finally:
        conn.shutdown()


# ----------------------------------------------------------------------- output


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _duration(ms: Any) -> str:
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return "?"
    seconds = int(ms // 1000)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


def _count(value: Any) -> str | None:
    """A human count for a list, or a ``{count: n}`` / mapping value."""
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict):
        count = value.get("count")
        if isinstance(count, int) and not isinstance(count, bool):
            return str(count)
        return str(len(value))
    return None


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _health_lines(payload: Any, url: str) -> list[str]:
    if not isinstance(payload, dict):
        return [f"health: {_compact(payload)}"]
    try:
        health = HealthSnapshot.from_payload(payload)
    except ProtocolError:  # an unexpected shape: still show it, do not fail the command
        return [f"health: {_compact(payload)}"]
    ok = {True: "ok", False: "NOT OK", None: "unknown"}[health.ok]
    lines = [f"health: {ok}", f"gateway: {redact_url(url)}"]
    if health.default_agent_id:
        lines.append(f"default agent: {health.default_agent_id}")
    if health.agents is not None:
        lines.append(f"agents: {len(health.agents)}")
    if health.sessions is not None:
        lines.append(f"sessions: {_count(health.sessions)}")
    if health.channels is not None:
        raw_labels = payload.get("channelLabels")
        labels: dict[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
        names = [str(labels.get(name, name)) for name in health.channels]
        lines.append(f"channels: {', '.join(names) if names else 'none'}")
    if health.heartbeat_seconds:
        lines.append(f"heartbeat: every {health.heartbeat_seconds} s")
    if health.duration_ms is not None:
        lines.append(f"checked in: {health.duration_ms} ms")
    return lines


def _status_lines(payload: Any, url: str) -> list[str]:
    if not isinstance(payload, dict):
        return [f"status: {_compact(payload)}"]
    lines = [f"gateway: {redact_url(url)}"]
    if "ok" in payload:
        lines.insert(0, f"status: {'ok' if payload.get('ok') else 'NOT OK'}")
    for key, value in payload.items():
        if key == "ok":
            continue
        if key == "uptimeMs":
            lines.append(f"uptime: {_duration(value)}")
            continue
        if key == "heartbeat" and isinstance(value, dict) and "enabled" in value:
            lines.append(f"heartbeat: {'on' if value.get('enabled') else 'off'}")
            continue
        text = _scalar(value)
        if text is None:
            text = _count(value)
            if text is None:
                continue
            text = f"{text} item(s)" if not isinstance(value, dict) or "count" not in value else text
        lines.append(f"{key}: {text}")
    lines.append("(the whole answer: gwclient status --json)")
    return lines


# --------------------------------------------------------------------- commands


def _read_params(spec: str | None) -> Any:
    if spec is None:
        return None
    source = "--params"
    if spec.startswith("@"):
        name = spec[1:]
        if not name:
            raise _UsageProblem("--params @FILE needs a file name (or @- for stdin)")
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _UsageProblem(f"--params: cannot read {name}: {reason}") from None
        source = f"--params {spec}"
    else:
        text = spec
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: never echo the text, it may hold a secret.
        raise _UsageProblem(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def _request(session: _Session, method: str, params: Any, *, expect_final: bool | None = None) -> Any:
    config = session.config()
    timeout = session.args.timeout if session.args.timeout is not None else DEFAULT
    with _connection(config) as conn:
        return conn.request(method, params, timeout=timeout, expect_final=expect_final)


def _cmd_call(session: _Session) -> int:
    params = _read_params(session.args.params)
    result = _request(session, session.args.method, params,
                      expect_final=True if session.args.expect_final else None)
    session.print(_compact(result) if session.json else _pretty(result))
    return EXIT_OK


def _cmd_health(session: _Session) -> int:
    result = _request(session, "health", None)
    if session.json:
        session.print_json(result)
    else:
        url = session.config().url
        for line in _health_lines(result, url):
            session.print(line)
    healthy = not (isinstance(result, dict) and result.get("ok") is False)
    return EXIT_OK if healthy else EXIT_FAILURE


def _cmd_status(session: _Session) -> int:
    result = _request(session, "status", None)
    if session.json:
        session.print_json(result)
    else:
        for line in _status_lines(result, session.config().url):
            session.print(line)
    return EXIT_OK


# -- watch


class _Watch:
    """Formats pushes for ``watch``: one JSON object per line, or one human line each."""

    def __init__(self, session: _Session) -> None:
        self.session = session
        self.snapshots = 0
        self.events = 0

    def show(self, push: Push) -> None:
        if isinstance(push, Snapshot):
            self.snapshots += 1
            self._snapshot(push, reconnected=self.snapshots > 1)
        elif isinstance(push, Event):
            self.events += 1
            self._event(push)
        elif isinstance(push, SeqGap):
            self._emit({"type": "gap", "expected": push.expected, "received": push.received,
                        "missed": push.missed},
                       f"gap: expected seq {push.expected}, received {push.received} "
                       f"({push.missed} missed; re-read state)")
        elif isinstance(push, StateChange):
            if self.snapshots == 0 and push.state != ConnectionState.PAUSED:
                return  # the first connect's own states: its snapshot line says it all
            detail = f" ({push.detail})" if push.detail else ""
            self._emit({"type": "state", "state": push.state.value, "detail": push.detail},
                       f"state: {push.state.value}{detail}")
        elif isinstance(push, Overflow):
            self._emit({"type": "overflow", "dropped": push.dropped},
                       f"overflow: {push.dropped} item(s) dropped (this watcher was too slow)")

    def _snapshot(self, push: Snapshot, *, reconnected: bool) -> None:
        hello = push.hello
        version = push.state_version
        about = f"connection {push.connection_number}"
        human = (f"{'reconnected' if reconnected else 'connected'} ({about}): gateway "
                 f"{hello.server.version or '?'}, protocol {hello.protocol}, state version "
                 f"presence {version.presence} health {version.health}")
        self._emit(
            {
                "type": "snapshot",
                "connection": push.connection_number,
                "reconnected": reconnected,
                "protocol": hello.protocol,
                "server": {"version": hello.server.version, "connId": hello.server.conn_id},
                "stateVersion": {"presence": version.presence, "health": version.health},
                "snapshot": hello.snapshot,
            },
            human,
        )
        if reconnected and self.session.json:
            self.session.note(f"reconnected ({about})")

    def _event(self, push: Event) -> None:
        record: dict[str, Any] = {"type": "event", "event": push.event, "seq": push.seq,
                                  "payload": push.payload}
        if push.state_version is not None:
            record["stateVersion"] = {"presence": push.state_version.presence,
                                      "health": push.state_version.health}
        preview = _compact(push.payload)
        if len(preview) > _PAYLOAD_PREVIEW:
            preview = preview[: _PAYLOAD_PREVIEW - 3] + "..."
        seq = f" #{push.seq}" if push.seq is not None else ""
        self._emit(record, f"event {push.event}{seq} {preview}")

    def _emit(self, record: dict[str, Any], human: str) -> None:
        if self.session.json:
            self.session.print_json(record)
        else:
            self.session.print(f"{time.strftime('%H:%M:%S')} {human}")


def _cmd_watch(session: _Session) -> int:
    args = session.args
    config = session.config()
    events = [e.strip() for e in args.events.split(",") if e.strip()] if args.events else None
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    view = _Watch(session)

    def remaining() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    connected = False
    with _connection(config) as conn:
        try:
            with conn.subscribe(events) as sub:
                # Subscribed before the handshake completes, so the events the gateway sends
                # right after hello-ok (health) are seen too; then wait for the connect, so
                # an unreachable gateway or bad credentials fail fast with one error line
                # instead of an endless stream of reconnecting states.
                left = remaining()
                conn.connect(timeout=DEFAULT if left is None else min(left, 2 * config.connect_timeout))
                connected = True
                while args.count is None or view.events < args.count:
                    left = remaining()
                    if left is not None and left <= 0:
                        raise GatewayTimeout("")
                    push = sub.get(timeout=left)
                    view.show(push)
                    if isinstance(push, StateChange) and push.state == ConnectionState.PAUSED:
                        # Reconnecting cannot help until something changes: say why and stop.
                        raise push.error if push.error is not None else GatewayError(
                            f"connection paused: {push.detail}"
                        )
        except GatewayTimeout:
            if not connected or deadline is None or time.monotonic() < deadline:
                raise  # connect() timed out: a real error
            if args.count is not None:
                raise GatewayTimeout(
                    f"watch ended after {args.timeout:g} s with {view.events} of {args.count} events"
                ) from None
        except ClientClosed:
            pass  # the subscription ended (shut down): nothing more will come
        except KeyboardInterrupt:
            session.note("stopped")  # Ctrl-C is how a watch normally ends: exit 0
    return EXIT_OK


# -- pair


class _PairingProgress:
    """Shows that ``pair --wait`` is alive.  On a terminal: a spinner line with the elapsed
    seconds, redrawn by a small thread (``gwclient-cli-progress`` is *not* a gwclient
    library thread name: it never calls the library).  Elsewhere: a plain line at the
    first refusal and then every ``interval`` seconds."""

    def __init__(self, err: TextIO, *, interval: float = 15.0) -> None:
        self._err = err
        self._tty = _isatty(err)
        self._interval = interval
        self._started = time.monotonic()
        self._last_line = -interval
        self._request: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _PairingProgress:
        if self._tty:
            self._thread = threading.Thread(target=self._spin, name="cli-pair-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            with self._lock:
                self._err.write("\r\033[K")
                self._err.flush()

    def waiting(self, error: PairingRequired) -> None:
        with self._lock:
            self._request = error.request_id
        elapsed = time.monotonic() - self._started
        if not self._tty and elapsed - self._last_line >= self._interval:
            self._last_line = elapsed
            what = f"request {error.request_id}" if error.request_id else "this device"
            print(f"{PROG}: waiting for approval of {what} ({elapsed:.0f} s elapsed)",
                  file=self._err, flush=True)

    def _spin(self) -> None:
        for frame in itertools.cycle("|/-\\"):
            with self._lock:
                elapsed = time.monotonic() - self._started
                what = f" of request {self._request}" if self._request else ""
                self._err.write(f"\r\033[K{frame} waiting for approval{what}... {elapsed:.0f} s "
                                "(Ctrl-C to stop)")
                self._err.flush()
            if self._stop.wait(0.2):
                return


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _pairing_record(config: GatewayConfig, identity: DeviceIdentity) -> dict[str, Any]:
    return {"deviceId": identity.device_id, "stateDir": str(config.effective_state_dir),
            "gateway": redact_url(config.url)}


def _show_paired(session: _Session, record: dict[str, Any], hello: HelloOk) -> None:
    auth = hello.auth
    record.update(state="paired", paired=True, role=auth.role if auth else None,
                  scopes=list(auth.scopes) if auth else [], authMethod=auth.method if auth else None)
    if session.json:
        session.print_json(record)
        return
    scopes = ", ".join(record["scopes"]) or "none"
    session.print(f"pairing:   paired (role {record['role'] or '?'}; scopes {scopes}; "
                  f"auth {record['authMethod'] or '?'})")


def _show_pairing_required(session: _Session, record: dict[str, Any], error: PairingRequired) -> None:
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


def _cmd_pair(session: _Session) -> int:
    config = session.config()
    identity = DeviceIdentity.load_or_create(config.effective_state_dir)
    record = _pairing_record(config, identity)
    if not session.json:
        session.print(f"device:    {identity.device_id}")
        session.print(f"state dir: {config.effective_state_dir}")
        session.print(f"gateway:   {redact_url(config.url)}")
    with _connection(config) as conn:
        if not session.args.wait:
            try:
                hello = conn.connect(timeout=DEFAULT if session.args.timeout is None else session.args.timeout)
            except PairingRequired as exc:
                _show_pairing_required(session, record, exc)
                return EXIT_PAIRING
            _show_paired(session, record, hello)
            return EXIT_OK
        timeout = session.args.timeout if session.args.timeout is not None else 300.0
        shown: set[str | None] = set()
        last: list[PairingRequired] = []

        def on_waiting(error: PairingRequired) -> None:
            last[:] = [error]
            if error.request_id not in shown:
                shown.add(error.request_id)
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


# -- connections


def _cmd_connections(session: _Session) -> int:
    port = session.args.port if session.args.port is not None else session.config().port
    report = gateway_connections(port)
    if session.json:
        session.print_json(report.to_json())
    else:
        for line in _connection_lines(report):
            session.print(line)
    for note in report.notes:
        session.note(f"note: {note}")
    return EXIT_DUPLICATES if report.duplicates else EXIT_OK


def _connection_lines(report: ConnectionReport) -> list[str]:
    if not report.processes:
        return [f"no established connections to port {report.port} on this machine"]
    lines = [f"established TCP connections to port {report.port} on this machine:"]
    for proc in report.processes:
        pid = str(proc.pid) if proc.pid is not None else "?"
        name = proc.info.name or ("(access denied)" if proc.info.access_denied else "?")
        flag = "  DUPLICATE" if proc.duplicate else ""
        plural = "s" if proc.count != 1 else ""
        lines.append(f"  pid {pid}  {name}  {proc.count} connection{plural}{flag}")
        if proc.info.cmdline:
            command = shlex.join(proc.info.cmdline)
            if len(command) > 160:
                command = command[:157] + "..."
            lines.append(f"      {command}")
        for local, remote in proc.sockets:
            lines.append(f"      {local} -> {remote}")
    dups = len(report.duplicates)
    lines.append(
        f"{len(report.processes)} process(es), {report.total} connection(s); "
        + (f"{dups} process(es) hold more than one (exit code 3)" if dups else "no duplicates")
    )
    return lines


# -- demo


def _cmd_demo(session: _Session) -> int:
    if session.args.password is not None or session.args.config is not None:
        raise _UsageProblem("demo takes only --url and --token")
    from gwclient._demo import run_demo  # type: ignore[import-not-found, unused-ignore]

    url = token = None
    if session.args.url is not None:
        # Someone else's gateway: its token comes from --token, else the environment.
        config = session.config()
        url, token = config.url, config.token
    code: int = run_demo(out=session.out, url=url, token=token)
    return code


def _cmd_run(session: _Session) -> int:
    with _connection(session.config()) as conn:
        return run_command(session.args, conn, session.out, session.err, session.scrub)


_COMMANDS: dict[str, Callable[[_Session], int]] = {
    "call": _cmd_call,
    "health": _cmd_health,
    "status": _cmd_status,
    "watch": _cmd_watch,
    "pair": _cmd_pair,
    "connections": _cmd_connections,
    "demo": _cmd_demo,
    "chat": _cmd_run,
    "agent": _cmd_run,
}


# ------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gwclient`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.
    Never raises (argparse's ``SystemExit`` becomes the return value)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    session = _Session(args, sys.stdout, sys.stderr)
    with _logging(session):
        try:
            return _COMMANDS[args.command](session)
        except KeyboardInterrupt:
            session.note("interrupted")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (`gwclient watch | head -1`): stop quietly, and keep the
            # interpreter's final flush of stdout from raising again.
            _silence_stdout(session.out)
            return EXIT_FAILURE
        except (GatewayError, _UsageProblem) as exc:
            session.error(exc)
            return _exit_code(exc)
        except Exception as exc:
            session.error(exc)
            return EXIT_FAILURE


def _silence_stdout(stream: TextIO) -> None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing will flush it at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover - python -m gwclient.cli
    sys.exit(main())
