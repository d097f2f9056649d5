"""One terminal spinner for the commands that wait (``pair --wait``, ``chat``, ``agent``).

A small thread redraws one stderr line with ``text()`` until :meth:`Spinner.stop`; the
thread (named ``cli-...``, not ``gwclient-...``) never calls the library.  Disabled (no
thread, nothing written) when stderr is not a terminal.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Spinner", "isatty"]


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Spinner:
    def __init__(self, err: TextIO, text: Callable[[], str], *, name: str, enabled: bool,
                 interval: float = 0.2) -> None:
        self._err = err
        self._text = text
        self._interval = interval
        self._stop = threading.Event()
        #: Held while a line is drawn: other writers to ``err`` take it too.
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, name=name, daemon=True) if enabled else None

    def __enter__(self) -> Spinner:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        with self.lock:
            self._err.write("\r\033[K")
            self._err.flush()

    @contextmanager
    def cleared(self) -> Iterator[None]:
        """For writing other lines (to stdout too, which may share the terminal): the
        spinner line is erased first and redrawn by the next frame."""
        with self.lock:
            if self._thread is not None and not self._stop.is_set():
                self._err.write("\r\033[K")
                self._err.flush()
            yield

    def _spin(self) -> None:
        for frame in itertools.cycle("|/-\\"):
            with self.lock:
                self._err.write(f"\r\033[K{frame} {self._text()}")
                self._err.flush()
            if self._stop.wait(self._interval):
                return
