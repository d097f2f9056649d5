"""The install command to suggest when an optional extra is missing: one that works here.

From a checkout (the package sits next to a ``setup.cfg`` naming gwclient) that is an
editable install of that checkout with the extra, for the interpreter running gwclient;
the package-index form is given too.  Otherwise only the package-index form.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

__all__ = ["install_hint"]

_CHECKOUT = Path(__file__).resolve().parent.parent


def _checkout() -> Path | None:
    try:
        text = (_CHECKOUT / "setup.cfg").read_text(encoding="utf-8")
    except OSError:
        return None
    return _CHECKOUT if "name = gwclient" in text else None


def install_hint(extra: str) -> str:
    """``pip install ...`` for *extra* (both forms when running from a checkout)."""
    index = f"pip install 'gwclient[{extra}]'"
    checkout = _checkout()
    if checkout is None:
        return index
    python = shlex.quote(sys.executable or "python3")
    return (f"{python} -m pip install -e {shlex.quote(f'{checkout}[{extra}]')} "
            f"(this checkout; from a package index: {index})")
