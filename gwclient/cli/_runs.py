"""The ``gwclient chat`` and ``gwclient agent`` commands: start a run, stream its reply.

Only the public API is used (``GatewayConnection.chat``/``agent`` and :class:`~gwclient.Run`),
so the commands can live beside any CLI front end: :func:`gwclient.cli._parser.add_run_commands` declares them,
:func:`run_command` runs one with a connection the caller owns.

* The reply is written to stdout as it arrives (a newline is added at the end).
* On a terminal, stderr shows a spinner until the first text arrives.
* Exit 0 when the run succeeded, 1 when it failed/aborted/was interrupted (the gateway's
  reason goes to stderr), 130 on Ctrl-C, after aborting the run.
* ``--json``: one compact JSON object per update (``{"kind": "text", "text": ...}``...),
  then ``{"kind": "result", ...}`` or ``{"kind": "error", ...}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from gwclient import GatewayConnection, GatewayError, Run, RunError
from gwclient.runs import TextDelta

from ._invocation import Invocation, connection
from ._spinner import Spinner, isatty

__all__ = ["EXIT_INTERRUPTED", "RUN_COMMANDS", "cmd_run", "run_command"]

PROG = "gwclient"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
RUN_COMMANDS = ("chat", "agent")
_ABORT_WAIT = 5.0


def _line(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str) + "\n")
    out.flush()


def _start(args: argparse.Namespace, conn: GatewayConnection) -> Run:
    timeout = getattr(args, "timeout", None)
    if args.command == "chat":
        return conn.chat(args.session, args.message, timeout=timeout, queue_mode=args.queue_mode)
    return conn.agent(args.message, session_key=args.session, agent_id=args.agent_id, timeout=timeout)


def run_command(args: argparse.Namespace, conn: GatewayConnection, out: TextIO, err: TextIO,
                scrub: Callable[[str], str] = str) -> int:
    """Run ``chat`` or ``agent`` (``args.command``) on ``conn`` and return the exit code.

    A :class:`~gwclient.GatewayError` that prevents the run from starting propagates (the
    caller reports it); a run that ends without a reply returns 1 with its reason on
    ``err``; Ctrl-C aborts the run and returns 130."""
    as_json = bool(getattr(args, "json", False))
    run = _start(args, conn)
    wrote_text = ""
    try:
        with Spinner(err, lambda: "waiting for the reply... (Ctrl-C to abort)", name="cli-run-progress",
                     enabled=isatty(err) and not as_json, interval=0.15) as spinner:
            if as_json:
                _line(out, {"kind": "started", "runId": run.run_id, "sessionKey": run.session_key})
            for update in run.updates():
                if as_json:
                    _line(out, {"kind": update.kind, **{k: v for k, v in update.to_dict().items() if k != "kind"}})
                elif isinstance(update, TextDelta) and update.text:
                    spinner.stop()
                    out.write(update.text)
                    out.flush()
                    wrote_text += update.text
        result = run.wait()
        if as_json:
            _line(out, {"kind": "result", **result.to_dict()})
        else:
            tail = "" if wrote_text else result.text  # no deltas streamed: the final text
            out.write(tail + ("" if (wrote_text + tail).endswith("\n") else "\n"))
            out.flush()
        return EXIT_OK
    except RunError as exc:
        if wrote_text and not as_json:
            out.write("\n")
            out.flush()
        if as_json:
            _line(out, {"kind": "error", "error": type(exc).__name__, "runId": exc.run_id,
                        "message": scrub(str(exc)), "reason": scrub(getattr(exc, "reason", str(exc)))})
        print(scrub(f"{PROG}: error: {' '.join(str(exc).split())}"), file=err, flush=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        if wrote_text and not as_json:
            out.write("\n")
            out.flush()
        aborted = _abort(run)
        print(f"{PROG}: interrupted{' (run aborted)' if aborted else ''}", file=err, flush=True)
        return EXIT_INTERRUPTED
    finally:
        run.close()


def _abort(run: Run) -> bool:
    """Abort after Ctrl-C and wait briefly for the gateway to confirm (a second Ctrl-C
    stops waiting)."""
    try:
        aborted = run.abort(timeout=_ABORT_WAIT)
        if aborted:
            try:
                run.wait(timeout=_ABORT_WAIT)
            except GatewayError:
                pass
        return aborted
    except (GatewayError, KeyboardInterrupt):
        return False


def cmd_run(session: Invocation) -> int:
    """``gwclient chat`` / ``gwclient agent``."""
    with connection(session.config()) as conn:
        return run_command(session.args, conn, session.out, session.err, session.scrub)
