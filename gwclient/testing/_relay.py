"""A loopback TCP relay that can freeze its connections: a half-open peer on demand.

``TcpRelay(target_port)`` listens on ``127.0.0.1:<port>`` and forwards each accepted
connection to ``127.0.0.1:target_port`` with two pump threads.  :meth:`TcpRelay.freeze`
makes every current connection stop moving bytes in both directions while its sockets
stay open (what a ``SIGSTOP``-ed gateway looks like from the client: the kernel still
holds the connection, nothing answers, not even pongs); :meth:`TcpRelay.drop` cuts them
(a network drop mid-stream).  New connections made after the
freeze are forwarded normally, so a client that replaces its dead socket recovers.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["TcpRelay"]


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket
    frozen: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)  # dropped or closing
    threads: list[threading.Thread] = field(default_factory=list)


class TcpRelay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._closing = threading.Event()
        self.accepted = 0
        #: Seconds between single bytes towards the client (``None``: full speed).
        self.trickle: float | None = None
        self._acceptor = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def freeze(self) -> int:
        """Stop moving bytes on every current connection; returns how many."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.frozen.set()
        return len(pairs)

    def drop(self) -> int:
        """Cut every current connection (both sockets shut down: the client sees its
        socket close mid-stream, the gateway sees the client go); returns how many.  New
        connections are forwarded normally, so the client reconnects through the relay."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.released.set()
            for sock in (pair.client, pair.upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for pair in pairs:
            for thread in pair.threads:
                thread.join(5)
            pair.client.close()
            pair.upstream.close()
        return len(pairs)

    def close(self) -> None:
        self._closing.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:  # pragma: no cover
            pass
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.released.set()
            for sock in (pair.client, pair.upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for pair in pairs:
            for thread in pair.threads:
                thread.join(5)
            pair.client.close()
            pair.upstream.close()
        self._acceptor.join(5)

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, upstream)
            for src, dst, name in ((client, upstream, "up"), (upstream, client, "down")):
                pair.threads.append(threading.Thread(target=self._pump, args=(pair, src, dst),
                                                     name=f"relay-{name}", daemon=True))
            with self._lock:
                if self._closing.is_set():
                    client.close()
                    upstream.close()
                    return
                self._pairs.append(pair)
                self.accepted += 1
            for thread in pair.threads:
                thread.start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                if not pair.frozen.is_set():
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                return
            if pair.frozen.is_set():
                # Frozen: swallow and wait for close() or drop() (a stopped peer neither
                # answers nor closes); the client's liveness watchdog must notice.
                pair.released.wait()
                return
            try:
                if self.trickle is not None and src is pair.upstream:
                    for i in range(len(data)):  # a frame trickling in, byte by byte
                        dst.sendall(data[i:i + 1])
                        if self._closing.wait(self.trickle):
                            return
                else:
                    dst.sendall(data)
            except OSError:
                return
