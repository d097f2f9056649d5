"""How deeply a JSON text nests, without recursion (the same limit on every Python).

json's C decoder refuses deep nesting with ``RecursionError`` only as deep as the
interpreter's C recursion limit allows: about 1000 levels on 3.11, several thousand on
3.12/3.13.  gwclient refuses more than :data:`MAX_DEPTH` levels everywhere.  Cheap for
normal texts: fewer brackets than the limit cannot nest that deep (``str.count`` in C);
only a text with that many brackets is walked.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "too_deep"]

MAX_DEPTH = 900


def too_deep(text: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON *text* has arrays/objects nested more than *limit* levels."""
    if isinstance(text, bytes):
        if text.count(b"[") + text.count(b"{") <= limit:
            return False
        text = text.decode("utf-8", errors="replace")
    elif text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False
