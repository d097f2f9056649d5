"""Timeouts and deadlines: the one helper every blocking call uses.

Pure code (no clock, no threads; the clock-reading ``Deadline`` is in
:mod:`gwclient._engine.waiter`).  A caller's ``timeout`` is normalised once, at the
call site, by :func:`check_timeout`: ``None`` (and ``inf``) mean "wait forever", a negative
or non-number is a :class:`~gwclient.UsageError`, and anything longer than
:data:`MAX_TIMEOUT` is clamped (``threading`` waits overflow near 2**31 s, which used to
surface as a bare ``OverflowError`` after the request had been sent).
"""

from __future__ import annotations

import math

from .._errors import UsageError

__all__ = ["MAX_TIMEOUT", "check_timeout"]

#: The longest finite wait gwclient performs in one call (about 11.5 days); longer values
#: are clamped to it.  ``threading.Condition.wait`` rejects values above ~2**31 s.
MAX_TIMEOUT = 1_000_000.0


def check_timeout(value: object, what: str = "timeout") -> float | None:
    """Normalise a caller's timeout: ``None``/``inf`` -> ``None`` (forever), huge -> clamped,
    negative, NaN or not a number -> :class:`UsageError` (raised before anything is sent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond the float range (10**400)
        seconds = math.inf if value > 0 else -math.inf
    if math.isnan(seconds):
        raise UsageError(f"{what} must be a number of seconds or None, not NaN")
    if seconds < 0:
        raise UsageError(f"{what} must not be negative (got {value!r}); use None to wait forever")
    if math.isinf(seconds):
        return None
    return min(seconds, MAX_TIMEOUT)
