"""The entry point: parse, dispatch, and one line (never a traceback) on Ctrl-C.

Start-up cost is kept to the standard library and this package's small modules: the
client (and what it imports) is loaded only once a command that talks to a gateway is
known, inside the ``KeyboardInterrupt`` guard, so ``--help`` is fast and a Ctrl-C at any
moment of start-up prints ``gwclient: interrupted`` and exits 130.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from ._codes import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG

if TYPE_CHECKING:
    from ._invocation import Invocation

__all__ = ["main"]

# command -> (module, function); imported only when that command runs.
_COMMANDS: dict[str, tuple[str, str]] = {
    "call": ("_commands", "cmd_call"),
    "health": ("_commands", "cmd_health"),
    "status": ("_commands", "cmd_status"),
    "connections": ("_commands", "cmd_connections"),
    "demo": ("_commands", "cmd_demo"),
    "watch": ("_watch", "cmd_watch"),
    "pair": ("_pair", "cmd_pair"),
    "chat": ("_runs", "cmd_run"),
    "agent": ("_runs", "cmd_run"),
    "share": ("_share", "cmd_share"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gwclient`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.
    Never raises (argparse's ``SystemExit`` becomes the return value)."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        # Reached only before a session exists (parsing, importing the client) or from
        # the session's own clean-up; a command's Ctrl-C is handled in _run.
        _interrupted(sys.stderr)
        return EXIT_INTERRUPTED


def _interrupted(err: TextIO, word: str = "interrupted") -> None:
    try:
        print(f"{PROG}: {word}", file=err, flush=True)
    except (OSError, ValueError):
        pass


def _run(argv: Sequence[str] | None) -> int:
    from ._parser import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    module_name, function_name = _COMMANDS[args.command]
    # Ctrl-C is how a watch normally ends (exit 0), from the moment its command line is
    # parsed: also while the client is still being imported or the config read.
    stopped = EXIT_OK if args.command == "watch" else EXIT_INTERRUPTED
    try:
        from ._share import fast_command  # through the share: without loading the engine

        fast = fast_command(args, sys.stdout, sys.stderr)
        if fast is not None:
            return fast
        # The client is imported here, inside main()'s KeyboardInterrupt guard.
        from ._invocation import Invocation, report_error

        module = importlib.import_module(f"{__package__}.{module_name}")
        command: Callable[[Invocation], int] = getattr(module, function_name)
        session = Invocation(args, sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        _interrupted(sys.stderr, "stopped" if stopped == EXIT_OK else "interrupted")
        return stopped
    with session.logging():
        try:
            return command(session)
        except KeyboardInterrupt:
            session.note("stopped" if stopped == EXIT_OK else "interrupted")
            return stopped
        except BrokenPipeError:
            # The reader went away (`gwclient watch | head -1`): stop quietly, and keep the
            # interpreter's final flush of stdout from raising again.
            _silence_stdout(session.out)
            return EXIT_FAILURE
        except Exception as exc:
            return report_error(session, exc)


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
