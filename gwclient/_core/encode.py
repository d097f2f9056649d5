"""Encoding a caller's request at the call site (pure code).

Runs in the caller's thread, before anything is queued or sent, so a request that cannot
be encoded fails *that caller* at once with a :class:`~gwclient.UsageError` and nobody
else ever sees it:

* ``NaN``/``Infinity`` are refused (``allow_nan=False``): they are not JSON, and the
  gateway silently ignored such frames, leaving the caller to time out;
* nesting deeper than the interpreter's recursion limit (about 900 levels) is refused;
* objects json cannot encode (sets, custom classes, circular structures) are refused;
* lone surrogates (``os.fsdecode`` of undecodable file-name bytes, e.g. ``"\\udcff"``)
  are **escaped**, not refused: the frame is sent with ``\\uXXXX`` escapes, which JSON
  allows and the gateway decodes back to the same string.

Method names must be non-empty strings of at most 256 printable, non-space characters.
"""

from __future__ import annotations

import json
from typing import Any

from .._errors import UsageError
from .nesting import too_deep

__all__ = ["check_method", "encode_request"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


_valid_methods: set[str] = set()  # names already checked (a program uses a handful)


def check_method(method: object) -> str:
    if method in _valid_methods:
        return method  # type: ignore[return-value]
    if not isinstance(method, str) or not method:
        raise UsageError("method must be a non-empty string")
    if len(method) > 256 or not method.isprintable() or any(c.isspace() for c in method):
        raise UsageError(f"method {method[:40]!r} is not a valid gateway method name")
    if len(_valid_methods) < 1024:
        _valid_methods.add(method)
    return method


def encode_request(request_id: str, method: str, params: Any, traceparent: str | None = None) -> bytes:
    """The request frame as UTF-8 bytes, or :class:`UsageError`."""
    frame: dict[str, Any] = {"type": "req", "id": request_id, "method": method}
    if params is not None:
        frame["params"] = params
    if traceparent is not None:
        frame["traceparent"] = traceparent
    try:
        text = _dumps(frame)
    except RecursionError:
        raise UsageError(f"params for {method} are nested too deeply to send") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"params for {method} are not JSON: {exc}") from None
    if too_deep(text):  # the same limit on every Python (3.12+ encode deeper)
        raise UsageError(f"params for {method} are nested too deeply to send")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates: escape them (\\udcff) instead of failing; documented above.
        return _dumps_ascii(frame).encode("ascii")
