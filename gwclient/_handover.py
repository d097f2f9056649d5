"""What finalizers may do: hand work to its owner, nothing else.

The cyclic collector runs finalizers on whatever thread allocates at the time, in the
middle of any code: on the reader inside ``Bus.publish()`` holding the bus lock, under a
queue's lock, anywhere.  A finalizer that took a gwclient lock could deadlock on a lock its
own thread holds (none of them is re-entrant), so the rule is: **no finalizer and no
user-reachable code runs under a gwclient lock, and a finalizer only appends to a
:class:`Handovers`** (``collections.deque.append`` is atomic and takes no lock the caller
could hold).  The owner runs the work later, at a point where it holds no lock
(:meth:`Handovers.run`).

:class:`WeakSubscribers` is the bus's list of one slot's subscriptions, held weakly so a
subscription the user drops without ``close()`` is collected (with its queue) instead of
staying on the bus forever; its finalizer hands the release to the bus.
"""

from __future__ import annotations

import collections
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Handovers", "WeakSubscribers"]

log = logging.getLogger("gwclient.connection")

T = TypeVar("T")


class Handovers:
    """Work handed over by finalizers, run by the owner outside its locks."""

    def __init__(self) -> None:
        self._work: collections.deque[Callable[[], None]] = collections.deque()

    def put(self, work: Callable[[], None]) -> None:
        """Safe anywhere, under any lock, from a finalizer: takes no lock."""
        self._work.append(work)

    def __len__(self) -> int:
        return len(self._work)

    def run(self) -> None:
        """Run what was handed over.  Call it holding no lock: the work takes locks."""
        while True:
            try:
                work = self._work.popleft()
            except IndexError:
                return
            try:
                work()
            except Exception:  # pragma: no cover - a bug; never kill the caller's thread
                log.exception("releasing a dropped subscription failed")


class WeakSubscribers(Generic[T]):
    """An ordered list that holds its items weakly.  Not thread-safe (the bus lock guards
    it); a collected item just disappears from iteration and is purged by :meth:`purge`."""

    __slots__ = ("_refs",)

    def __init__(self) -> None:
        self._refs: list[weakref.ref[T]] = []

    def append(self, item: T) -> None:
        self._refs.append(weakref.ref(item))

    def remove(self, item: T) -> None:
        self._refs = [r for r in self._refs if r() is not item and r() is not None]

    def purge(self) -> None:
        self._refs = [r for r in self._refs if r() is not None]

    def __contains__(self, item: object) -> bool:
        return any(r() is item for r in self._refs)

    def __iter__(self) -> Iterator[T]:
        for ref in self._refs:
            item = ref()
            if item is not None:
                yield item

    def __len__(self) -> int:
        return sum(1 for r in self._refs if r() is not None)

    def __bool__(self) -> bool:
        return any(r() is not None for r in self._refs)
