"""Per-process state: the connection actor and its registry; the fork hook; the helpers
that stop channels and join their threads within a deadline."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Any, cast

import pykka

from .._errors import ClientClosed, GatewayTimeout
from .actor import GatewayChannelActor, Stop
from .registry import ConnectionActor, GetRegistry, Registry, Retire

__all__ = ["Runtime", "ask", "current_runtime", "fork_generation", "join", "retire", "stop_channels"]


class Runtime:
    """Replaced after a fork: the parent's threads do not exist in the child."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.actor: pykka.ActorRef[ConnectionActor] | None = None
        self.registry: Registry | None = None

    def connection_actor(self) -> tuple[pykka.ActorRef[ConnectionActor], Registry]:
        with self.lock:
            if self.actor is None or not self.actor.is_alive() or self.registry is None:
                self.actor = ConnectionActor.start()
                self.registry = cast(Registry, ask(self.actor, GetRegistry()))
            return self.actor, self.registry

    def forget(self) -> pykka.ActorRef[ConnectionActor] | None:
        """Drop the actor and registry (shutdown_all); returns the actor to retire."""
        with self.lock:
            actor, self.actor, self.registry = self.actor, None, None
            return actor


_runtime = Runtime()
_runtime_lock = threading.Lock()


def current_runtime() -> Runtime:
    global _runtime
    if _runtime.pid != os.getpid():
        with _runtime_lock:
            if _runtime.pid != os.getpid():
                _runtime = Runtime()
    return _runtime


#: Counts forks into this process (the child's value differs from the parent's): the
#: facade's per-request check that its binding is still this process's, without the
#: ``getpid()`` system call on every request.
fork_generation = 0


def _after_fork_in_child() -> None:
    # Never close the parent's sockets from the child; it connects afresh on first use.
    global _runtime, fork_generation
    _runtime = Runtime()
    fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def join(threads: Iterable[threading.Thread], deadline: float) -> None:
    me = threading.current_thread()
    for thread in threads:
        if thread is me or thread.ident is None:  # never started (an open that failed early)
            continue
        thread.join(max(0.0, deadline - time.monotonic()))


def ask(ref: pykka.ActorRef[Any], message: Any, timeout: float = 30.0) -> Any:
    """Ask one of our actors; they never block, so the timeout only guards against a bug or
    an actor that is already gone.  No pykka exception crosses the public API."""
    try:
        return ref.ask(message, timeout=timeout)
    except pykka.ActorDeadError as exc:
        raise ClientClosed("the gwclient connection actor has stopped") from exc
    except pykka.Timeout as exc:  # pragma: no cover - a bug
        raise GatewayTimeout(f"gwclient actor did not answer {type(message).__name__} in {timeout:g} s") from exc


def stop_channels(refs: Iterable[pykka.ActorRef[GatewayChannelActor]], deadline: float) -> None:
    for ref in refs:
        try:
            threads = cast("list[threading.Thread]",
                           ref.ask(Stop(), timeout=max(0.1, deadline - time.monotonic())))
        except (pykka.ActorDeadError, pykka.Timeout):
            continue
        join(threads, deadline)


def retire(actor: pykka.ActorRef[ConnectionActor], deadline: float) -> None:
    try:
        thread = cast(threading.Thread, actor.ask(Retire(), timeout=max(0.1, deadline - time.monotonic())))
    except (pykka.ActorDeadError, pykka.Timeout):  # pragma: no cover - already gone
        return
    join([thread], deadline)
