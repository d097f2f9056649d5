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
    the last hello-ok.  A server's ``retryAfterMs`` is a floor; a ``shutdown`` event's
    ``restartExpectedMs`` replaces the first delay after a restart notice."""

    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2
    #: ``random.random``-like source in [0, 1); injectable for deterministic tests.
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("RetryPolicy needs 0 <= initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy.jitter must be in [0, 1)")

    def delay(self, attempt: int, *, floor: float = 0.0) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt))
        scaled = base * (1 - self.jitter + 2 * self.jitter * self.rng())
        return max(floor, min(self.maximum, scaled))
