"""The install command the CLI suggests for a missing extra (the CLI's own copy of
``gwclient._extras.install_hint``: the CLI imports only public gwclient modules).

From a checkout (the package sits next to a ``setup.cfg`` naming gwclient): an editable
install of that checkout with the extra, for the interpreter running gwclient, and the
package-index form; otherwise the package-index form only.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

__all__ = ["install_hint"]

_CHECKOUT = Path(__file__).resolve().parent.parent.parent


def install_hint(extra: str) -> str:
    index = f"pip install 'gwclient[{extra}]'"
    try:
        named = "name = gwclient" in (_CHECKOUT / "setup.cfg").read_text(encoding="utf-8")
    except OSError:
        named = False
    if not named:
        return index
    python = shlex.quote(sys.executable or "python3")
    return (f"{python} -m pip install -e {shlex.quote(f'{_CHECKOUT}[{extra}]')} "
            f"(this checkout; from a package index: {index})")
