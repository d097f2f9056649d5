"""A :class:`~gwclient.remote._supervisor.Tunnel` alone: its supervisor thread driven through a
fake :class:`~gwclient.remote._supervisor.TunnelHost` (no sshd, no paramiko): what it
announces, how it restarts a lost connection, gives up, and stops a forwarder mid-start."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gwclient import ConfigError, RetryPolicy, SshTunnelConfig, TunnelError
from gwclient.remote import TunnelState, TunnelStatus
from gwclient.remote._supervisor import Tunnel, TunnelForwarder

WAIT = 10.0
SSH = SshTunnelConfig(host="gw.example", remote_port=18790)


class FakeTransport:
    def __init__(self) -> None:
        self.dead = threading.Event()

    def is_alive(self) -> bool:
        return not self.dead.is_set()

    def join(self, timeout: float | None = None) -> None:
        self.dead.wait(timeout)


class FakeForwarder:
    """Starts at once, or blocks in ``gw_start`` until aborted (``block=True``)."""

    def __init__(self, *, block: bool = False, fail: Exception | None = None) -> None:
        self.transport = FakeTransport()
        self.block = block
        self.fail = fail
        self.starting = threading.Event()
        self.aborted = threading.Event()
        self.closed = threading.Event()

    def gw_start(self) -> None:
        self.starting.set()
        if self.fail is not None:
            raise self.fail
        if self.block:
            self.aborted.wait(WAIT)
            raise TunnelError("aborted while connecting")

    def gw_transport(self) -> Any:
        return self.transport

    def gw_abort(self) -> None:
        self.aborted.set()
        self.transport.dead.set()

    def gw_close(self, timeout: float = 5.0) -> None:
        self.closed.set()


class FakeHost:
    """A TunnelHost: hands out the queued forwarders, records announcements and waits."""

    def __init__(self, *forwarders: FakeForwarder, max_failures: int | None = None) -> None:
        self.forwarders = list(forwarders)
        self.built: list[tuple[SshTunnelConfig, int]] = []
        self.statuses: queue.Queue[TunnelStatus] = queue.Queue()
        self.waits: list[float] = []
        self._retry = RetryPolicy(initial=2.0, multiplier=2.0, maximum=30.0, jitter=0.0)
        self._max_failures = max_failures

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    @property
    def max_failures(self) -> int | None:
        return self._max_failures

    def wait(self, event: threading.Event, seconds: float) -> object:
        self.waits.append(seconds)  # no backoff in tests: the next attempt starts at once
        return event.is_set()

    def announce(self, status: TunnelStatus) -> None:
        self.statuses.put(status)

    @contextlib.contextmanager
    def forwarder(self, ssh: SshTunnelConfig, local_port: int) -> Iterator[TunnelForwarder]:
        self.built.append((ssh, local_port))
        yield self.forwarders.pop(0)

    def next_state(self) -> TunnelState:
        return self.statuses.get(timeout=WAIT).state


@pytest.fixture
def started() -> Iterator[list[Tunnel]]:
    tunnels: list[Tunnel] = []
    yield tunnels
    for tunnel in tunnels:
        tunnel.stop(time.monotonic() + WAIT)


def _start(host: FakeHost, tunnels: list[Tunnel]) -> Tunnel:
    tunnel = Tunnel(host, SSH, 40001)
    tunnels.append(tunnel)
    assert tunnel.thread is not None
    tunnel.thread.start()
    return tunnel


def test_a_tunnel_comes_up_restarts_after_a_loss_and_stops(started: list[Tunnel]) -> None:
    first, second = FakeForwarder(), FakeForwarder()
    host = FakeHost(first, second)
    tunnel = _start(host, started)

    tunnel.ensure(WAIT)
    assert [host.next_state(), host.next_state()] == [TunnelState.STARTING, TunnelState.UP]
    assert host.built == [(SSH, 40001)]

    first.transport.dead.set()  # the SSH connection drops
    assert host.next_state() is TunnelState.DOWN
    assert host.next_state() is TunnelState.UP
    assert first.closed.is_set() and host.waits == [2.0]
    assert tunnel.status().state is TunnelState.UP and tunnel.status().attempts == 2

    tunnel.stop(time.monotonic() + WAIT)
    assert host.next_state() is TunnelState.STOPPED
    assert second.aborted.is_set() and second.closed.is_set()
    assert tunnel.thread is not None and not tunnel.thread.is_alive()


def test_stop_aborts_the_forwarder_being_started(started: list[Tunnel]) -> None:
    connecting = FakeForwarder(block=True)
    host = FakeHost(connecting)
    tunnel = _start(host, started)
    assert connecting.starting.wait(WAIT)

    tunnel.stop(time.monotonic() + WAIT)

    assert connecting.aborted.is_set() and connecting.closed.is_set()
    assert tunnel.thread is not None and not tunnel.thread.is_alive()
    assert tunnel.status().state is TunnelState.STOPPED


def test_a_config_error_fails_the_tunnel_until_ensure_is_called_again(started: list[Tunnel]) -> None:
    host = FakeHost(FakeForwarder(fail=ConfigError("host key not trusted")), FakeForwarder())
    tunnel = _start(host, started)
    assert [host.next_state(), host.next_state()] == [TunnelState.STARTING, TunnelState.FAILED]
    assert host.waits == []  # not retried on its own

    tunnel.ensure(WAIT)
    assert [host.next_state(), host.next_state()] == [TunnelState.STARTING, TunnelState.UP]


def test_the_tunnel_gives_up_after_the_hosts_max_failures(started: list[Tunnel]) -> None:
    # Spare refusals: after ensure()'s attempt the supervisor retries until it gives up again.
    host = FakeHost(*(FakeForwarder(fail=TunnelError("refused")) for _ in range(8)), max_failures=3)
    tunnel = _start(host, started)

    states = [host.next_state() for _ in range(4)]
    assert states == [TunnelState.STARTING, TunnelState.DOWN, TunnelState.DOWN, TunnelState.FAILED]
    assert "gave up after 3 failed attempts" in tunnel.status().detail
    assert host.waits == [2.0, 4.0]
    with pytest.raises(TunnelError, match="refused"):  # ensure() tries once more, and says why not
        tunnel.ensure(WAIT)
