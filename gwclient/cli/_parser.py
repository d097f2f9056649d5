"""The argument parser (standard library only: ``--help`` must not load the client)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gwclient import __version__

from ._codes import PROG

__all__ = ["build_parser"]

# OpenClaw's default gateway port, for the help text only (the real default comes from
# the resolved config, see ``connections``).
_OPENCLAW_DEFAULT_PORT = 18789

_EPILOG = """\
global options may be given before or after the command.
the gateway comes from --url/--token/--password, else OPENCLAW_GATEWAY_URL/_TOKEN/_PASSWORD,
else the OpenClaw config file (~/.openclaw/openclaw.json, or --config PATH, which must exist).

exit codes: 0 ok, 1 gateway or request error, 2 usage or configuration error,
3 duplicate connections found (connections), 4 device pairing required, 130 interrupted.
"""


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


def _method(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a method name is required, e.g. health")
    return text


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
    group.add_argument("--setup-code", default=default(None), metavar="CODE",
                       help="pair this device with a setup code (oc-pair://..., from openclaw qr or the "
                            "Control UI): its URL and bootstrap token; later runs need neither")
    group.add_argument("--config", default=default(None), metavar="PATH",
                       help="OpenClaw config file to read instead of ~/.openclaw/openclaw.json "
                            "(must exist)")
    group.add_argument("--allow-insecure", action="store_true", default=default(False),
                       help="allow plaintext ws:// to any host (the token travels unencrypted); "
                            "loopback, private, .local and .ts.net hosts need no flag")
    group.add_argument("--timeout", type=_positive_float, default=default(None), metavar="S",
                       help="seconds: request timeout (call/health/status), total run time (watch), "
                            "the run's time limit (chat/agent), approval wait (pair --wait, default 300)")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="machine-readable output: compact JSON, one object per line")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False),
                       help="DEBUG logging on stderr and tracebacks on errors")
    from ._share import add_share_option

    add_share_option(group, default(None))


def build_parser() -> argparse.ArgumentParser:
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
    call.add_argument("method", metavar="METHOD", type=_method,
                      help="gateway method, e.g. health, system-presence")
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
    pair.add_argument("--scopes", metavar="A,B",
                      help="ask for these operator scopes too (a scope upgrade; approved on the gateway "
                           "host; with --wait, wait for the decision)")

    conns = command("connections", "list processes connected to the gateway port on this machine")
    conns.add_argument("--port", type=_port, metavar="PORT",
                       help="gateway port (default: the configured gateway's port, normally "
                            f"{_OPENCLAW_DEFAULT_PORT})")

    command("demo", "run the demo: an embedded dev gateway, three consumers, one socket "
                    "(human-readable report only; no --json)")
    add_run_commands(command)
    from ._share import add_share_command

    add_share_command(command)
    return parser


def add_run_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Declare ``chat`` and ``agent``; ``command(name, help)`` makes a subparser that
    already carries the global options (``--timeout`` is the run's time limit, ``--json``
    one object per update)."""
    chat = command("chat", "send a chat message (chat.send) and stream the reply")
    chat.add_argument("message", metavar="MESSAGE", help="the message")
    chat.add_argument("--session", default="main", metavar="KEY",
                      help="session key (default: main, the agent's main session)")
    chat.add_argument("--queue-mode", default=None, choices=("steer", "followup", "collect", "interrupt"),
                      help="while the session is busy: steer the message into the running turn, or run it"
                           " as a turn of its own (followup) ... (default: the session's own; openclaw 2026.9)")
    agent = command("agent", "run an agent turn (agent) and stream the reply")
    agent.add_argument("message", metavar="MESSAGE", help="the message")
    agent.add_argument("--session", default=None, metavar="KEY", help="session key (default: the agent's own)")
    agent.add_argument("--agent", dest="agent_id", default=None, metavar="ID", help="agent id (default: main)")

