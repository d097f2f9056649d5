"""Notice at once that stdout's reader went away (``gwclient watch | head -1``).

A write to a pipe whose reader closed fails with ``EPIPE``, but ``watch`` writes only when
a push arrives: with a quiet gateway that can be a tick interval (30 s) later.
:class:`ReaderGone` watches the write end instead: ``poll()`` reports ``POLLERR`` (Linux)
or ``POLLHUP`` on it as soon as the last reader closes.  One small thread blocks in
``poll()`` on stdout and on a wake-up pipe, so :meth:`close` ends it at once; it runs no
user code, only the given callback (which must be thread-safe and quick).  Only pipes and
sockets are watched: a terminal or a file has no reader to lose.
"""

from __future__ import annotations

import os
import select
import stat
import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["ReaderGone"]

_GONE = select.POLLERR | select.POLLHUP


class ReaderGone:
    """Calls ``on_gone()`` once, from its own thread, when the reader of ``fd`` closes."""

    def __init__(self, fd: int | None, on_gone: Callable[[], None]) -> None:
        self.gone = threading.Event()
        self._on_gone = on_gone
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        if fd is None or not _watchable(fd):
            return
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="gwclient-cli-stdout-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, 0)  # errors and hang-ups are always reported
        poller.register(self._wake_r, select.POLLIN)
        while True:
            for fd, events in poller.poll():
                if fd == self._wake_r:
                    return
                if events & _GONE:
                    self.gone.set()
                    self._on_gone()
                    return

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            os.write(self._wake_w, b"x")
            thread.join()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> ReaderGone:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _watchable(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
