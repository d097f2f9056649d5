"""Exit codes, the usage-problem exception and ``--params`` reading (standard library only:
imported at start-up, and by the share's cheap path)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_DUPLICATES",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAIRING",
    "EXIT_USAGE",
    "PROG",
    "UsageProblem",
    "read_params",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DUPLICATES = 3
EXIT_PAIRING = 4
EXIT_INTERRUPTED = 130

PROG = "gwclient"


class UsageProblem(Exception):
    """Bad input found after argparse accepted the command line (exit 2)."""


def read_params(spec: str | None) -> Any:
    """``--params``: JSON, ``@FILE`` or ``@-`` (stdin); None without one.  Raises
    :class:`UsageProblem` (never quoting the text: it may hold a secret)."""
    if spec is None:
        return None
    source = "--params"
    if spec.startswith("@"):
        name = spec[1:]
        if not name:
            raise UsageProblem("--params @FILE needs a file name (or @- for stdin)")
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageProblem(f"--params: cannot read {name}: {reason}") from None
        source = f"--params {spec}"
    else:
        text = spec
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: never echo the text, it may hold a secret.
        raise UsageProblem(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise UsageProblem(f"{source}: the JSON is nested too deeply") from None
