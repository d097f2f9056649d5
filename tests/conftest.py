"""Shared fixtures.  The autouse ``no_leaks`` fixture fails any test that leaves a thread
alive or a socket open; setup.cfg gives every test a timeout, scaled here by
``GWCLIENT_TEST_TIME_FACTOR`` (see ``_util.py``).  ``gw`` is a DevGateway on a free
loopback port with the token ``_util.DEV_TOKEN`` (options through the ``devgateway``
marker: ``@pytest.mark.devgateway(tick_interval_ms=200)``)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from _util import DEV_TOKEN, SHARED_SERVER_PORTS, TIME_FACTOR, scaled

from gwclient import GatewayConnection
from gwclient.testing import DevGateway

# Every test gets a temporary HOME (no_leaks): the install cache (Node, openclaw, the unpacked
# sshd) stays the one of the user running the tests.
os.environ.setdefault("GWCLIENT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "gwclient"))

# Threads that finish on their own shortly after a test (server handler threads winding
# down after their client closed) get this long to be joined before they count as leaks.
_GRACE = scaled(5.0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scale every test's timeout (its own ``timeout`` mark, else setup.cfg's) by the factor."""
    if TIME_FACTOR == 1.0:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        mark = item.get_closest_marker("timeout")
        seconds = float(mark.args[0]) if mark is not None and mark.args else default
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * TIME_FACTOR), append=False)  # first wins


def _inet_fds() -> set[tuple[int, object, object]]:
    proc = psutil.Process(os.getpid())
    out: set[tuple[int, object, object]] = set()
    for conn in proc.net_connections(kind="inet"):
        if conn.status == psutil.CONN_NONE and not conn.raddr and not conn.laddr:
            continue
        if conn.raddr and conn.laddr and conn.laddr.port in SHARED_SERVER_PORTS:
            continue  # accepted from another process by a module-scoped server (_util.py)
        out.add((conn.fd, conn.laddr, conn.raddr))
    return out


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    threads_before = set(threading.enumerate())
    fds_before = _inet_fds()
    # Every test gets a private gwclient state dir (device identity, device tokens).
    state = tmp_path_factory.mktemp("gwstate")
    mp = pytest.MonkeyPatch()
    mp.setenv("GWCLIENT_STATE_DIR", str(state))
    for name in ("OPENCLAW_GATEWAY_URL", "OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD",
                 "OPENCLAW_CONFIG_PATH", "OPENCLAW_STATE_DIR",
                 # The local share: off unless a test turns it on, never the user's socket.
                 "GWCLIENT_SHARE", "GWCLIENT_SHARE_PERSIST", "GWCLIENT_SHARE_MAX_EVENTS", "XDG_RUNTIME_DIR"):
        mp.delenv(name, raising=False)
    mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    try:
        yield
    finally:
        mp.undo()
    deadline = time.monotonic() + _GRACE
    leaked = []
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread.name)
    fds_after = _inet_fds() - fds_before
    if leaked or fds_after:
        GatewayConnection.shutdown_all(timeout=5)
        pytest.fail(f"test leaked threads {sorted(leaked)} / sockets {sorted(map(str, fds_after))}")


@pytest.fixture
def shutdown_all_after() -> Iterator[None]:
    """Shut every gwclient connection down after the test (before the leak check, which
    then proves shutdown_all() really leaves nothing behind)."""
    yield
    GatewayConnection.shutdown_all()


@pytest.fixture
def gw(request: pytest.FixtureRequest) -> Iterator[DevGateway]:
    """A DevGateway with token ``DEV_TOKEN``; ``@pytest.mark.devgateway(**options)`` adds
    constructor options."""
    mark = request.node.get_closest_marker("devgateway")
    options = dict(mark.kwargs) if mark is not None else {}
    with DevGateway(token=DEV_TOKEN, **options) as gateway:
        yield gateway
