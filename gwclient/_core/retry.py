"""Reconnect policy: exponential backoff with jitter, as an injectable value object."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """``delay(n)`` = ``min(maximum, initial * multiplier**n)`` scaled by a random factor in
    ``[1 - jitter, 1 + jitter]`` (capped at ``maximum``).  ``n`` counts failed attempts since
    the last hello-ok.

    :meth:`after_failure` is what the channel asks: a server's ``retryAfterMs`` ("gateway
    starting") is followed, clamped to [0.1, 2] s (as the official client does); on a
    loopback endpoint a refused connect costs nothing, so it is retried every
    ``loopback_interval`` (jittered) instead of on the growing backoff: the first request
    after a local gateway restart is answered within a fraction of a second of ``ready``.
    That short cadence lasts for a restart's window only, ``loopback_window`` seconds of
    retrying (counted in attempts: ``loopback_window / loopback_interval`` of them, since
    ``attempt`` counts the failures since the drop); after it, a gateway that is still down
    is retried on the normal backoff, starting again from ``initial``, as a remote one is.
    A ``shutdown`` event's ``restartExpectedMs`` never delays a retry beyond ``maximum``."""

    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2
    #: Retry cadence while a loopback gateway refuses connections or says it is starting.
    loopback_interval: float = 0.2
    #: ``random.random``-like source in [0, 1); injectable for deterministic tests.
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)
    #: How long (seconds of retrying after a drop) a loopback gateway gets the short cadence.
    loopback_window: float = 30.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("RetryPolicy needs 0 <= initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy.jitter must be in [0, 1)")
        if not 0 < self.loopback_interval <= 60:
            raise ValueError("RetryPolicy.loopback_interval must be in (0, 60]")
        if not 0 <= self.loopback_window <= 3600:
            raise ValueError("RetryPolicy.loopback_window must be in [0, 3600]")

    @property
    def loopback_attempts(self) -> int:
        """Failed attempts after a drop that still get the loopback cadence."""
        return int(self.loopback_window / self.loopback_interval + 0.5)

    def delay(self, attempt: int, *, floor: float = 0.0) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt))
        scaled = base * (1 - self.jitter + 2 * self.jitter * self.rng())
        return max(floor, min(self.maximum, scaled))

    def _jittered(self, base: float) -> float:
        return max(0.0, min(self.maximum, base * (1 - self.jitter + 2 * self.jitter * self.rng())))

    def after_failure(self, attempt: int, *, retry_after_ms: int | None = None, loopback: bool = False,
                      refused: bool = False) -> float:
        """Delay before the next attempt after attempt number ``attempt`` failed."""
        window = self.loopback_attempts
        if loopback and attempt >= window:
            # The restart window is over: the gateway is down, not restarting.
            loopback, attempt = False, attempt - window
        if retry_after_ms is not None:
            hint = min(2.0, max(0.1, retry_after_ms / 1000.0))
            return min(hint, self.loopback_interval * 2.5) if loopback else min(hint, max(self.maximum, 0.1))
        if loopback and refused:
            return self._jittered(min(self.loopback_interval, self.maximum))
        return self.delay(attempt)

    def after_loss(self, *, restart_expected_ms: int | None = None, loopback: bool = False) -> float:
        """Delay before the first attempt after a connected socket was lost."""
        if loopback:
            return self._jittered(min(self.loopback_interval, self.maximum))
        if restart_expected_ms is not None:
            return min(self.maximum, restart_expected_ms / 1000.0)
        return self.delay(0)
