"""The one-shot commands: ``call``, ``health``, ``status``, ``connections``, ``demo``."""

from __future__ import annotations

import importlib
from typing import Any

from gwclient import DEFAULT

from ._codes import EXIT_DUPLICATES, EXIT_FAILURE, EXIT_OK, UsageProblem, read_params
from ._install_hint import install_hint
from ._invocation import Invocation, connection
from ._render import compact, connection_lines, health_lines, pretty, status_lines

__all__ = ["cmd_call", "cmd_connections", "cmd_demo", "cmd_health", "cmd_status", "read_params"]


def require_extra(what: str, extra: str, *modules: str) -> None:
    """A clear usage error (exit 2) when optional dependencies are not installed: all the
    missing ones are named, with an install command that works here."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        names = " and ".join(missing)
        which = f"the {names} package, which is" if len(missing) == 1 else f"the {names} packages, which are"
        raise UsageProblem(f"{what} needs {which} not installed: {install_hint(extra)}")


def _request(session: Invocation, method: str, params: Any, *, expect_final: bool | None = None) -> Any:
    config = session.config()
    timeout = session.args.timeout if session.args.timeout is not None else DEFAULT
    with connection(config) as conn:
        return conn.request(method, params, timeout=timeout, expect_final=expect_final)


def cmd_call(session: Invocation) -> int:
    params = read_params(session.args.params)
    result = _request(session, session.args.method, params,
                      expect_final=True if session.args.expect_final else None)
    session.print(compact(result) if session.json else pretty(result))
    return EXIT_OK


def cmd_health(session: Invocation) -> int:
    result = _request(session, "health", None)
    if session.json:
        session.print_json(result)
    else:
        for line in health_lines(result, session.config().redacted_url):
            session.print(line)
    healthy = not (isinstance(result, dict) and result.get("ok") is False)
    return EXIT_OK if healthy else EXIT_FAILURE


def cmd_status(session: Invocation) -> int:
    result = _request(session, "status", None)
    if session.json:
        session.print_json(result)
    else:
        for line in status_lines(result, session.config().redacted_url):
            session.print(line)
    return EXIT_OK


def cmd_connections(session: Invocation) -> int:
    require_extra("gwclient connections", "cli", "psutil")
    from ._netstat import gateway_connections  # psutil: only this command needs it

    port = session.args.port if session.args.port is not None else session.config().port
    report = gateway_connections(port)
    if session.json:
        session.print_json(report.to_json())
    else:
        for line in connection_lines(report):
            session.print(line)
    for note in report.notes:
        session.note(f"note: {note}")
    return EXIT_DUPLICATES if report.duplicates else EXIT_OK


def cmd_demo(session: Invocation) -> int:
    if session.args.password is not None or session.args.config is not None:
        raise UsageProblem("demo takes only --url and --token")
    if session.json:
        raise UsageProblem("demo prints a report for people; it has no --json output")
    require_extra("gwclient demo", "demo", "psutil", *(["websockets"] if session.args.url is None else []))
    from . import _demo

    url = token = None
    if session.args.url is not None:
        # Someone else's gateway: its token comes from --token, else the environment.
        config = session.config()
        url, token = config.url, config.token
    return _demo.run_demo(out=session.out, url=url, token=token)
