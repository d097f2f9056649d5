"""Messages of the channel actor.  Frozen dataclasses: pykka does not copy messages.

The public ones come from the facade (user threads); the internal ones from the socket
worker's reader/writer threads and the timer thread, each tagged with the generation of
the socket it concerns so the actor can ignore messages about a socket it has replaced.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ._frames import HelloOk
from ._transport import SocketWorker

__all__ = [
    "AwaitConnected",
    "Cancel",
    "Closed",
    "FrameIn",
    "HandshakeTimeout",
    "OpenFailed",
    "Opened",
    "PingDue",
    "Reconnect",
    "Request",
    "Retry",
    "Stop",
    "Watchdog",
]


# ---------------------------------------------------------------- public messages


@dataclass(frozen=True)
class Request:
    request_id: str
    method: str
    params: Any
    future: Future[Any] = field(compare=False)
    expect_final: bool = False


@dataclass(frozen=True)
class Cancel:
    request_id: str


@dataclass(frozen=True)
class AwaitConnected:
    future: Future[HelloOk] = field(compare=False)


@dataclass(frozen=True)
class Retry:
    """Leave PAUSED (or cut a backoff wait short) and connect now."""


@dataclass(frozen=True)
class Stop:
    """Close the socket and stop.  ``retired`` means the config changed (the facade moved
    to another channel): pending callers get :class:`Disconnected`, which they may retry,
    rather than :class:`ClientClosed`."""

    reason: str = "shutdown"
    retired: bool = False


# -------------------------------------------------------------- internal messages


@dataclass(frozen=True)
class Opened:
    gen: int
    worker: SocketWorker


@dataclass(frozen=True)
class OpenFailed:
    gen: int
    error: BaseException


@dataclass(frozen=True)
class FrameIn:
    gen: int
    text: str


@dataclass(frozen=True)
class Closed:
    gen: int
    code: int | None
    reason: str


@dataclass(frozen=True)
class HandshakeTimeout:
    gen: int
    phase: str


@dataclass(frozen=True)
class Reconnect:
    gen: int


@dataclass(frozen=True)
class Watchdog:
    gen: int


@dataclass(frozen=True)
class PingDue:
    gen: int
