"""The ``openclaw`` command line to print in pairing messages: one that works here.

``openclaw`` if it is on ``PATH``; otherwise, when gwclient runs from a checkout that has
``scripts/openclaw`` (the pinned openclaw with the pinned Node, installed into the cache
on first use), that script's path; otherwise plain ``openclaw`` (the command to run on
the gateway host).  Arguments from the gateway (request ids) are shell-quoted.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

__all__ = ["openclaw_command"]

_CHECKOUT_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "openclaw"


def _program() -> str:
    if shutil.which("openclaw"):
        return "openclaw"
    if _CHECKOUT_SCRIPT.is_file() and os.access(_CHECKOUT_SCRIPT, os.X_OK):
        return shlex.quote(str(_CHECKOUT_SCRIPT))
    return "openclaw"


def openclaw_command(*args: str) -> str:
    """``openclaw <args>`` as a shell command line that runs on this machine."""
    return " ".join([_program(), *(shlex.quote(a) for a in args)])
