"""Chaos: a real gateway killed mid-request, and a port held by something that is not a
gateway (a silent TCP listener, an HTTP server).

The gateway is a real ``openclaw gateway run`` (``RealGateway``), shared by the module.
Sockets are counted by the operating system (psutil).  Nothing sleeps: tests wait on
futures, events and subscriptions; loops are bounded by deadlines.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import psutil
import pytest
from _util import WrappedTransport

from gwclient import (
    Disconnected,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    GatewayTimeout,
    RetryPolicy,
    Snapshot,
)
from gwclient._engine.transport import OpenGuard, Transport, TransportOptions, open_transport
from gwclient.testing._realgateway import RealGateway

RETRY = RetryPolicy(initial=0.2, maximum=2.0)
#: How soon a pending request must fail after its socket died.
PROMPT = 3.0


def _client_ports(port: int) -> set[int]:
    """Local ports of this process's ESTABLISHED TCP connections to ``port``."""
    return {
        c.laddr.port
        for c in psutil.Process(os.getpid()).net_connections(kind="inet")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def _gwclient_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gwclient-") and t.is_alive()]


def _in_thread(fn: Callable[[], Any]) -> tuple[Future[Any], threading.Thread]:
    fut: Future[Any] = Future()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:  # handed to the test through the future
            fut.set_exception(exc)

    thread = threading.Thread(target=run, name="test-caller")
    thread.start()
    return fut, thread


class _SentFrames:
    """The transport seam, spying: ``event`` is set once a frame containing ``marker`` has
    been handed to the socket."""

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode()
        self.event = threading.Event()

    def transport(self, options: TransportOptions, guard: OpenGuard) -> Transport:
        return _SpyTransport(open_transport(options, guard), self)


class _SpyTransport(WrappedTransport):
    def __init__(self, inner: Transport, spy: _SentFrames) -> None:
        super().__init__(inner)
        self._spy = spy

    def send(self, data: bytes) -> None:
        super().send(data)
        if self._spy.marker in data:
            self._spy.event.set()


# ------------------------------------------------------------------ the real gateway


@pytest.fixture(scope="module")
def gateway() -> Iterator[RealGateway]:
    with RealGateway() as gw:
        yield gw


@pytest.mark.realgateway
def test_sigkill_mid_request_fails_promptly_and_reconnects_once(
    gateway: RealGateway, shutdown_all_after: None
) -> None:
    config = GatewayConfig(url=gateway.url, token=gateway.token, retry=RETRY, connect_timeout=10.0,
                           request_timeout=60.0)
    spy = _SentFrames('"agent.wait"')
    conn = GatewayConnection.shared(config, transport=spy.transport)
    assert isinstance(conn.request("health", timeout=30), dict)
    sub = conn.subscribe()
    assert isinstance(sub.get(timeout=10), Snapshot)  # the current connection's snapshot

    # A request the gateway holds for a minute (an unknown run waited on), on the wire.
    params = {"runId": f"chaos-{uuid.uuid4()}", "timeoutMs": 60_000}
    fut, caller = _in_thread(lambda: conn.request("agent.wait", params, timeout=90))
    assert spy.event.wait(15), "the request never reached the socket"
    assert not fut.done()
    pid = gateway.pid
    assert pid is not None
    killed_at = time.monotonic()
    os.killpg(pid, signal.SIGKILL)
    error = fut.exception(timeout=PROMPT + 5)
    failed_after = time.monotonic() - killed_at
    caller.join(5)
    assert isinstance(error, Disconnected), repr(error)
    assert failed_after <= PROMPT, f"the pending request failed {failed_after:.1f} s after the kill"

    # Reap the killed process (SIGKILL is asynchronous: it may still look alive for a
    # moment, and start() would then be a no-op) and end its helpers, then start again
    # on the same port.
    gateway.stop()
    gateway.start()
    assert isinstance(conn.request("health", timeout=60), dict)
    assert isinstance(conn.request("health", timeout=30), dict)
    snapshots = 0
    while True:  # drain what the reconnect published (a Snapshot per successful handshake)
        try:
            push = sub.get(timeout=0)
        except GatewayTimeout:
            break
        snapshots += isinstance(push, Snapshot)
    assert snapshots == 1, f"{snapshots} reconnects after one restart"
    assert len(_client_ports(gateway.port)) == 1
    sub.close()
    conn.shutdown()
    assert _client_ports(gateway.port) == set()


# ------------------------------------------------------------ not a gateway on the port


class _SilentListener:
    """Accepts TCP connections (the kernel completes the handshake) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="test-silent-listener")
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._cond:
                self.accepted.append(conn)
                self._cond.notify_all()

    def wait_accepted(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.accepted) >= n, timeout)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() (Linux)
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


BODY_MARKER = "this-is-not-a-gateway-body"


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = (BODY_MARKER + "\n" + "x" * 4000).encode()
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _hammer(conn: GatewayConnection, seconds: float) -> list[BaseException]:
    """Call ``request`` over and over for ``seconds`` (each call bounded by its timeout)."""
    errors: list[BaseException] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            conn.request("health", timeout=max(0.1, end - time.monotonic()))
        except GatewayError as exc:
            errors.append(exc)
    return errors


def _max_attempts(policy: RetryPolicy, seconds: float) -> int:
    """Most connect attempts ``policy`` allows in ``seconds`` (shortest jittered delays)."""
    attempts, elapsed = 1, 0.0
    while True:
        elapsed += min(policy.maximum, policy.initial * policy.multiplier ** (attempts - 1)) * (1 - policy.jitter)
        if elapsed > seconds:
            return attempts
        attempts += 1


def _check_prompt_shutdown(conn: GatewayConnection, port: int) -> None:
    started = time.monotonic()
    conn.shutdown(timeout=5)
    took = time.monotonic() - started
    assert took < 2.0, f"shutdown() took {took:.1f} s"
    assert _gwclient_threads() == [], "gwclient threads alive after shutdown()"
    assert _client_ports(port) == set(), "a socket to the port is still open after shutdown()"


def test_a_silent_tcp_listener_gives_a_clear_error_bounded_retries_and_a_prompt_shutdown(
    shutdown_all_after: None,
) -> None:
    listener = _SilentListener()
    try:
        config = GatewayConfig(url=f"ws://127.0.0.1:{listener.port}", token="t", retry=RETRY,
                               connect_timeout=2.0)
        conn = GatewayConnection.shared(config)
        started = time.monotonic()
        with pytest.raises(GatewayError) as info:
            conn.request("health", timeout=10)
        assert time.monotonic() - started <= config.connect_timeout + 1.5  # the open timeout bounds it
        text = str(info.value)
        assert f"127.0.0.1:{listener.port}" in text and "did not complete the websocket upgrade" in text
        window = 5.0
        _hammer(conn, window)
        assert 1 <= len(listener.accepted) <= _max_attempts(RETRY, window + config.connect_timeout + 1.5) + 1
        # Shut down while an attempt is blocked in the websocket upgrade (the listener
        # never answers it): shutdown() must not wait for the open timeout, and must leave
        # no reader blocked behind it.
        fut, caller = _in_thread(lambda: conn.request("health", timeout=30))
        assert listener.wait_accepted(len(listener.accepted) + 1, 10)
        _check_prompt_shutdown(conn, listener.port)
        assert isinstance(fut.exception(timeout=5), GatewayError)
        caller.join(5)
    finally:
        listener.close()


def test_an_http_server_gives_a_clear_error_bounded_retries_and_a_prompt_shutdown(
    shutdown_all_after: None,
) -> None:
    _HttpHandler.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HttpHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http-server")
    thread.start()
    port = server.server_address[1]
    try:
        conn = GatewayConnection.shared(GatewayConfig(url=f"ws://127.0.0.1:{port}", token="t", retry=RETRY))
        started = time.monotonic()
        with pytest.raises(GatewayError) as info:
            conn.request("health", timeout=10)
        assert time.monotonic() - started < 2.0
        text = str(info.value)
        assert f"127.0.0.1:{port}" in text and "404" in text
        # Clear means short: the server's headers and body are not pasted into the message.
        assert BODY_MARKER not in text and len(text) < 300, text[:400]
        window = 4.0
        errors = _hammer(conn, window)
        assert errors and all(isinstance(e, GatewayError) for e in errors)
        assert 1 <= _HttpHandler.hits <= _max_attempts(RETRY, window + 1.0) + 1, _HttpHandler.hits
        _check_prompt_shutdown(conn, port)
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
