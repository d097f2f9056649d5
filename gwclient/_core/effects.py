"""What the session core returns (effects) and the clamps it applies to server values.
Pure data: frozen dataclasses, executed in order by :mod:`gwclient._engine.channel`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .frames import HelloOk
from .pushes import Push
from .retry import RetryPolicy

__all__ = [
    "AttemptEnded",
    "CloseSocket",
    "Connected",
    "Effect",
    "Lost",
    "OpenSocket",
    "Ping",
    "Publish",
    "Send",
    "SessionLimits",
    "Settle",
    "StickyAnswer",
    "Timer",
    "clamp_hello",
]

# ------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Settle:
    waiter: Any
    outcome: Any


@dataclass(frozen=True)
class Publish:
    push: Push
    size: int = 0


@dataclass(frozen=True)
class Connected:
    """hello-ok accepted: persist the device token (before the Settle effects that follow)."""

    hello: HelloOk


@dataclass(frozen=True)
class Timer:
    """Arm (``delay`` seconds) or cancel (``delay`` None) the timer called ``name``."""

    name: str
    delay: float | None


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class CloseSocket:
    code: int
    reason: str


@dataclass(frozen=True)
class StickyAnswer:
    """The gateway answered the sticky request ``key`` (a session subscription): ``outcome``
    is its payload, or the error that refused it (the core has dropped the sticky then; its
    subscribers must be told: nobody else waits on that answer)."""

    key: object
    outcome: Any


@dataclass(frozen=True)
class OpenSocket:
    """Start attempt ``attempt``: the shell opens a socket (on a new reader thread, started
    by the channel actor) and reports it with ``opened`` or ``open_failed``.  ``token``
    identifies the attempt: an open for an attempt the core has given up is discarded."""

    attempt: int
    token: int


@dataclass(frozen=True)
class AttemptEnded:
    """The attempt ended before hello-ok (a report: the core has already decided whether and
    when to retry; ``paused`` means it will not).  ``transport``: nothing was said at the
    protocol level (a refused or dropped socket)."""

    error: BaseException
    paused: bool
    transport: bool
    retry_after_ms: int | None = None
    close_code: int | None = None


@dataclass(frozen=True)
class Lost:
    """A connected socket ended; pending requests were failed (a report: the core has
    already scheduled the reconnect)."""

    why: str
    restart_expected_ms: int | None


Effect = (Send | Settle | Publish | Connected | Timer | Ping | CloseSocket | OpenSocket | StickyAnswer
          | AttemptEnded | Lost)

# ------------------------------------------------------------------- limits and clamps


@dataclass(frozen=True)
class SessionLimits:
    connect_timeout: float = 15.0
    liveness_timeout: float | None = None
    ping_interval: float | None = None
    max_early_events: int = 256
    label: str = "gateway"
    #: The scopes asked for (a warning names those the gateway did not grant).
    scopes: tuple[str, ...] = ()
    #: Appended when nothing listens (e.g. how to start the SSH tunnel in remote mode).
    unreachable_hint: str = ""
    #: The reconnect policy the core computes every retry delay from.
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: The endpoint is on this machine (a refused connect costs nothing: retry quickly).
    loopback: bool = False


#: Server values are clamped into these ranges (a value from the network never kills a
#: thread: ``tickIntervalMs: 1e13`` used to overflow the timer).  The tick floor is the
#: official client's watchdog cadence, ``max(tickIntervalMs, 1000)`` (PROTOCOL.md 5.1): a
#: claimed 1 ms tick made the liveness bound 20 ms and an idle client reconnect all the time.
TICK_MS_RANGE = (1000, 3_600_000)
MAX_PAYLOAD_RANGE = (1024, 1 << 30)
RESTART_HINT_MAX_MS = 3_600_000


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def clamp_hello(hello: HelloOk) -> HelloOk:
    policy = hello.policy
    clamped = dataclasses.replace(
        policy,
        tick_interval_ms=_clamp(policy.tick_interval_ms, TICK_MS_RANGE),
        max_payload=_clamp(policy.max_payload, MAX_PAYLOAD_RANGE),
        max_buffered_bytes=_clamp(policy.max_buffered_bytes, MAX_PAYLOAD_RANGE),
    )
    return hello if clamped == policy else dataclasses.replace(hello, policy=clamped)


