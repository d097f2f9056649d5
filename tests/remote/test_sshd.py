"""Remote mode through a real OpenSSH server (``gwclient.testing.OpenSshServer``).

Each test gets its own ``sshd`` on a free 127.0.0.1 port, with a fresh host key and one
authorized client key.  Behind it: the dev gateway, and the real OpenClaw gateway (one per
module), which sees the tunnel's loopback peer and pairs the device silently.

Counts come from outside gwclient: SSH connections and logins from sshd's own log, SSH
sessions from sshd's process tree, websockets from the gateway (the dev gateway's
counters, the real gateway's sockets via psutil) and from the snapshots every new socket
yields.  Nothing sleeps: tests wait on subscriptions, events and futures.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from gwclient import (
    ConfigError,
    Disconnected,
    Event,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    RetryPolicy,
    Snapshot,
    SshTunnelConfig,
    Subscription,
    TunnelError,
)
from gwclient.remote import (
    ConnectionModeCoordinator,
    EndpointNotReady,
    EndpointReady,
    EndpointState,
    EndpointUnavailable,
    GatewayEndpointStore,
    RemoteTunnelManager,
    TunnelState,
    TunnelStatus,
    TunnelSubscription,
)
from gwclient.testing import DevGateway, OpenSshServer, RealGateway, SshdError
from gwclient.testing._sshd import new_ed25519_key

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

DEV_TOKEN = "sshd-test-token-51c2"
FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
WAIT = 30.0


# ================================================================== fixtures


@dataclass
class Target:
    """The gateway behind the tunnel: the dev gateway or the real one."""

    name: str
    port: int
    token: str
    dev: DevGateway | None = None
    real: RealGateway | None = None

    def local_config(self) -> GatewayConfig:
        return GatewayConfig(url=f"ws://127.0.0.1:{self.port}", token=self.token, retry=FAST,
                             connect_timeout=15.0, request_timeout=20.0)

    def peers(self) -> set[int]:
        """Peer ports of the ESTABLISHED websockets the gateway holds (dev: its count)."""
        pid = os.getpid() if self.dev is not None else self.real.pid  # type: ignore[union-attr]
        assert pid is not None
        return {c.raddr.port for c in psutil.Process(pid).net_connections(kind="inet")
                if c.laddr and c.laddr.port == self.port and c.raddr and c.status == psutil.CONN_ESTABLISHED}


@pytest.fixture(scope="module")
def real_gateway() -> Iterator[RealGateway]:
    with RealGateway() as gw:
        yield gw


@pytest.fixture(params=["dev", pytest.param("real", marks=pytest.mark.realgateway)])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "dev":
        with DevGateway(token=DEV_TOKEN) as gw:
            yield Target("dev", gw.port, DEV_TOKEN, dev=gw)
    else:
        real: RealGateway = request.getfixturevalue("real_gateway")
        yield Target("real", real.port, real.token, real=real)


@pytest.fixture
def dev() -> Iterator[DevGateway]:
    with DevGateway(token=DEV_TOKEN) as gw:
        yield gw


@pytest.fixture
def sshd() -> Iterator[OpenSshServer]:
    with OpenSshServer() as server:
        yield server


@pytest.fixture
def known_hosts(tmp_path: Path, sshd: OpenSshServer) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line + "\n", encoding="utf-8")
    return path


def make_manager(known_hosts: Path, **kwargs: Any) -> RemoteTunnelManager:
    options: dict[str, Any] = {"retry": FAST, "known_hosts": [known_hosts], "ssh_config": None,
                               "use_agent": False, "connect_timeout": 10.0}
    options.update(kwargs)
    return RemoteTunnelManager(**options)


@pytest.fixture
def coordinator(known_hosts: Path) -> Iterator[ConnectionModeCoordinator]:
    coord = ConnectionModeCoordinator(manager=make_manager(known_hosts), ensure_timeout=WAIT)
    yield coord
    coord.stop()  # first: shutdown_all() waits for every gwclient-* thread, the tunnel's too
    GatewayConnection.shutdown_all()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ssh_settings(sshd: OpenSshServer, remote_port: int, **changes: Any) -> SshTunnelConfig:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                            "identity_file": str(sshd.client_key_path), "remote_port": remote_port}
    base.update(changes)
    return SshTunnelConfig(**base)


def tunnel_config(sshd: OpenSshServer, target_port: int, token: str, **ssh_changes: Any) -> GatewayConfig:
    return GatewayConfig(url=f"ws://127.0.0.1:{free_port()}", token=token, retry=FAST, connect_timeout=15.0,
                         request_timeout=20.0, ssh=ssh_settings(sshd, target_port, **ssh_changes))


# ================================================================== OS-level views


def session_gateway_sockets(sshd: OpenSshServer, gateway_port: int) -> list[tuple[int, int]]:
    """(session pid, local port) of every connection sshd's sessions hold to the gateway."""
    out = []
    for pid in sshd.session_pids():
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            out += [(proc.pid, c.laddr.port) for c in proc.net_connections(kind="inet")
                    if c.raddr and c.raddr.port == gateway_port and c.status == psutil.CONN_ESTABLISHED]
    return out


def own_sockets_to(port: int) -> list[int]:
    """Local ports of this process's ESTABLISHED connections to 127.0.0.1:port."""
    return [c.laddr.port for c in psutil.Process(os.getpid()).net_connections(kind="inet")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED]


# ================================================================== waiting helpers


def wait_sessions_gone(sshd: OpenSshServer) -> bool:
    procs = []
    for pid in sshd.session_pids():
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return psutil.wait_procs(procs, timeout=WAIT)[1] == []


class Pushes:
    """Drains a subscription on its own thread; tests wait on what it has seen."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self._items: list[object] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="test-pushes")
        self._thread.start()

    def _run(self) -> None:
        for push in self.sub:
            with self._cond:
                self._items.append(push)
                self._cond.notify_all()

    def snapshots(self) -> int:
        with self._cond:
            return sum(isinstance(p, Snapshot) for p in self._items)

    def wait_for(self, pred: Callable[[list[object]], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pred(self._items), timeout)

    def close(self) -> None:
        self.sub.close()
        self._thread.join(10)


def next_status(sub: TunnelSubscription, pred: Callable[[TunnelStatus], bool]) -> TunnelStatus:
    while True:
        status = sub.get(timeout=WAIT)
        if pred(status):
            return status


def wait_state(store: GatewayEndpointStore, pred: Callable[[EndpointState], bool]) -> EndpointState:
    with store.subscribe() as sub:
        while True:
            state = sub.get(timeout=WAIT)
            if pred(state):
                return state


def in_thread(fn: Callable[[], object], name: str) -> tuple[threading.Thread, Future[object]]:
    fut: Future[object] = Future()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, fut


# ================================================================== the helper itself


def test_the_test_sshd_listens_on_loopback_only_and_takes_keys_only(sshd: OpenSshServer) -> None:
    assert sshd.pid is not None
    listeners = [c.laddr for c in psutil.Process(sshd.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listeners] == [("127.0.0.1", sshd.port)]
    config = sshd.config_path.read_text()
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
                 "AllowTcpForwarding local", "ListenAddress 127.0.0.1"):
        assert line in config.splitlines()
    expected_root = "PermitRootLogin prohibit-password" if os.geteuid() == 0 else "PermitRootLogin no"
    assert expected_root in config.splitlines()


def test_a_missing_sshd_is_a_clear_error_not_a_skip(tmp_path: Path) -> None:
    with pytest.raises(SshdError, match="scripts/install-sshd"):
        OpenSshServer(sshd=str(tmp_path / "no-sshd"))


# ================================================================== point 1: the main path


@pytest.mark.timeout(180)
def test_requests_and_subscriptions_work_through_real_sshd(
        target: Target, sshd: OpenSshServer, coordinator: ConnectionModeCoordinator) -> None:
    cfg = tunnel_config(sshd, target.port, target.token)
    assert coordinator.apply(cfg) == EndpointReady(cfg)
    conn = GatewayConnection.shared(provider=coordinator.store)
    sub = conn.subscribe(include_state=False)
    assert isinstance(sub.get(timeout=WAIT), Snapshot)  # hello-ok, through the tunnel
    assert conn.request("health")["ok"] is True
    if target.dev is not None:
        target.dev.broadcast("gwclient.test", {"n": 1})
        wanted = "gwclient.test"
    else:
        assert conn.request("system-event", {"text": "through sshd"}) == {"ok": True}
        wanted = "presence"
    while True:
        push = sub.get(timeout=WAIT)
        if isinstance(push, Event) and push.event == wanted:
            break
    sub.close()
    assert sshd.connections == 1 and sshd.authenticated == 1
    sockets = session_gateway_sockets(sshd, target.port)
    assert len(sockets) == 1  # sshd's session holds the one websocket to the gateway
    assert sockets[0][1] in target.peers()
    if target.real is not None:  # loopback peer: paired silently, no approval needed
        assert "device pairing auto-approved" in target.real.log_text()


@pytest.mark.timeout(180)
def test_16_threads_make_one_ssh_session_and_one_websocket(
        target: Target, sshd: OpenSshServer, coordinator: ConnectionModeCoordinator) -> None:
    cfg = tunnel_config(sshd, target.port, target.token)
    assert coordinator.apply(cfg) == EndpointReady(cfg)
    start = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            conn = GatewayConnection.shared(provider=coordinator.store)
            start.wait(WAIT)
            for _ in range(3):
                assert conn.request("health")["ok"] is True
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"test-worker-{n}") for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert errors == []
    assert sshd.connections == 1 and sshd.authenticated == 1
    assert len(sshd.session_pids()) == 1
    assert len(session_gateway_sockets(sshd, target.port)) == 1
    assert len(own_sockets_to(cfg.port)) == 1  # one websocket into the tunnel
    assert len(own_sockets_to(sshd.port)) == 1  # one SSH connection
    if target.dev is not None:
        assert target.dev.sockets_accepted == 1 and target.dev.handshakes_completed == 1


@pytest.mark.timeout(180)
def test_killed_session_and_restarted_sshd_restart_the_tunnel_once(
        target: Target, sshd: OpenSshServer, known_hosts: Path) -> None:
    # The supervisor's backoff wait lasts until its wake event is set: by the test, once
    # sshd is back (so the restart happens at a known moment), or by stop().
    wakes: list[threading.Event] = []
    in_backoff = threading.Event()

    def wait(wake: threading.Event, seconds: float) -> object:
        wakes.append(wake)
        in_backoff.set()
        return wake.wait()

    coordinator = ConnectionModeCoordinator(manager=make_manager(known_hosts, wait=wait), ensure_timeout=WAIT)
    try:
        cfg = tunnel_config(sshd, target.port, target.token)
        assert coordinator.apply(cfg) == EndpointReady(cfg)
        conn = GatewayConnection.shared(provider=coordinator.store)
        pushes = Pushes(conn.subscribe())
        assert conn.request("health")["ok"] is True
        assert pushes.wait_for(lambda items: any(isinstance(p, Snapshot) for p in items))
        pending: Future[object] | None = None
        if target.dev is not None:
            target.dev.never_answer("slow")
            worker, pending = in_thread(lambda: conn.request("slow", timeout=WAIT), "test-pending")
            assert target.dev.wait_for(lambda g: g.requests_by_method.get("slow", 0) == 1, WAIT)
        before = own_sockets_to(cfg.port)
        assert len(before) == 1

        with coordinator.manager.subscribe() as statuses:
            killed = sshd.kill_sessions()
            assert len(killed) == 1
            down = next_status(statuses, lambda s: s.state is TunnelState.DOWN)
            assert "lost" in down.detail
            if pending is not None:
                with pytest.raises(Disconnected) as info:
                    pending.result(timeout=WAIT)
                assert isinstance(info.value, GatewayError)
                worker.join(WAIT)
            assert in_backoff.wait(WAIT)
            sshd.restart()  # the same port and host key: the same server to the client
            wakes[-1].set()  # end the backoff now
            up = next_status(statuses, lambda s: s.state is TunnelState.UP)
        assert up.attempts == 2  # the first start and exactly one restart
        wait_state(coordinator.store, lambda s: isinstance(s, EndpointReady))
        assert conn.request("health")["ok"] is True
        assert pushes.wait_for(lambda items: sum(isinstance(p, Snapshot) for p in items) >= 2)
        assert pushes.snapshots() == 2  # reconnected exactly once
        assert sshd.authenticated == 2  # counted over both sshd lifetimes: one restart
        assert len(sshd.session_pids()) == 1
        assert len(session_gateway_sockets(sshd, target.port)) == 1
        assert len(own_sockets_to(cfg.port)) == 1 and own_sockets_to(cfg.port) != before
        assert len(own_sockets_to(sshd.port)) == 1
        if target.dev is not None:
            assert target.dev.sockets_accepted == 2
        pushes.close()
    finally:
        coordinator.stop()
        GatewayConnection.shutdown_all()


@pytest.mark.timeout(180)
def test_local_remote_local_switches_reconnect_once_each(
        target: Target, sshd: OpenSshServer, coordinator: ConnectionModeCoordinator) -> None:
    local = target.local_config()
    remote = tunnel_config(sshd, target.port, target.token)
    assert coordinator.apply(local) == EndpointReady(local)
    conn = GatewayConnection.shared(provider=coordinator.store)
    pushes = Pushes(conn.subscribe())
    assert conn.request("health")["ok"] is True
    assert sshd.connections == 0

    assert coordinator.apply(remote) == EndpointReady(remote)
    assert conn.request("health")["ok"] is True
    assert len(session_gateway_sockets(sshd, target.port)) == 1

    assert coordinator.apply(local) == EndpointReady(local)
    assert conn.request("health")["ok"] is True
    assert pushes.wait_for(lambda items: sum(isinstance(p, Snapshot) for p in items) >= 3)
    assert pushes.snapshots() == 3  # three sockets: one per switch, no more
    assert sshd.authenticated == 1
    assert wait_sessions_gone(sshd)  # the tunnel was closed: sshd's session ended
    assert len(own_sockets_to(target.port)) == 1 and own_sockets_to(remote.port) == []
    if target.dev is not None:
        assert target.dev.sockets_accepted == 3
    pushes.close()


# ================================================================== point 1: nothing implicit


@pytest.mark.timeout(180)
def test_a_request_never_starts_a_tunnel(target: Target, sshd: OpenSshServer,
                                         coordinator: ConnectionModeCoordinator) -> None:
    cfg = tunnel_config(sshd, target.port, target.token)
    peers_before = target.peers()
    # A connection to the SSH config itself: it only ever dials config.url.
    with pytest.raises(Disconnected):  # nothing listens on the local port
        GatewayConnection.shared(cfg).request("health", timeout=WAIT)
    # A connection following a store that was never applied: refused at once.
    with pytest.raises(EndpointNotReady):
        GatewayConnection.shared(provider=coordinator.store).request("health", timeout=WAIT)
    assert coordinator.manager.tunnels() == []
    assert sshd.connections == 0 and sshd.session_pids() == []  # sshd saw nothing
    assert target.peers() <= peers_before  # and the gateway no new socket
    if target.dev is not None:
        assert target.dev.sockets_accepted == 0


# ================================================================== point 1: host keys and keys


def _no_credential_offered(log: str) -> bool:
    """sshd logs every authentication request and every key a client offers."""
    return not any(word in log for word in ("userauth", "publickey", "Accepted key", "matching key", "Failed"))


@pytest.mark.parametrize("problem", ["unknown", "changed"])
def test_untrusted_host_key_is_a_clear_error_before_any_credential(
        problem: str, dev: DevGateway, sshd: OpenSshServer, tmp_path: Path) -> None:
    known = tmp_path / "strict_known_hosts"
    if problem == "unknown":
        known.write_text("", encoding="utf-8")
    else:
        other = new_ed25519_key(tmp_path / "other_host_key")
        known.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other.split()[:2])}\n", encoding="utf-8")
    coordinator = ConnectionModeCoordinator(manager=make_manager(known), ensure_timeout=WAIT)
    try:
        cfg = tunnel_config(sshd, dev.port, DEV_TOKEN)
        assert cfg.ssh is not None and cfg.ssh.host_key_policy == "strict"
        state = coordinator.apply(cfg)
        assert isinstance(state, EndpointUnavailable) and isinstance(state.error, ConfigError)
        fingerprint = sshd.host_key_fingerprint
        assert fingerprint in state.reason
        if problem == "unknown":
            assert "is not trusted" in state.reason and "strict" in state.reason
        else:
            assert "does not match known_hosts" in state.reason and "ssh-keygen -R" in state.reason
        with pytest.raises(ConfigError, match="remote endpoint unavailable"):
            coordinator.store()
        status = coordinator.manager.tunnels()[0]
        assert status.state is TunnelState.FAILED and status.attempts == 1  # not retried
    finally:
        coordinator.stop()
    assert sshd.connections == 1
    assert _no_credential_offered(sshd.log_text()), sshd.log_text()
    assert sshd.authenticated == 0 and dev.sockets_accepted == 0


def test_a_wrong_key_is_a_clear_auth_error(dev: DevGateway, sshd: OpenSshServer, known_hosts: Path,
                                           tmp_path: Path) -> None:
    wrong = tmp_path / "id_wrong"
    new_ed25519_key(wrong)
    coordinator = ConnectionModeCoordinator(manager=make_manager(known_hosts), ensure_timeout=WAIT)
    try:
        state = coordinator.apply(tunnel_config(sshd, dev.port, DEV_TOKEN, identity_file=str(wrong)))
        assert isinstance(state, EndpointUnavailable) and isinstance(state.error, ConfigError)
        assert f"rejected the key(s) for user {sshd.user!r}" in state.reason
        assert "SHA256:" in state.reason and "BEGIN" not in state.reason
        assert coordinator.manager.tunnels()[0].attempts == 1  # a ConfigError: not retried
    finally:
        coordinator.stop()
    assert sshd.authenticated == 0 and sshd.auth_failures >= 1
    assert dev.sockets_accepted == 0


def test_repeated_ssh_failures_back_off_and_end_unavailable(
        dev: DevGateway, sshd: OpenSshServer, known_hosts: Path) -> None:
    sshd.stop()  # the port is closed: every attempt is refused
    delays: list[float] = []

    def wait(wake: threading.Event, seconds: float) -> object:
        delays.append(seconds)
        return wake.wait(0)  # the backoff is recorded, not waited out

    retry = RetryPolicy(initial=1.0, multiplier=2.0, maximum=3.0, jitter=0.0)
    manager = make_manager(known_hosts, retry=retry, wait=wait, max_failures=4)
    coordinator = ConnectionModeCoordinator(manager=manager, ensure_timeout=WAIT)
    try:
        cfg = tunnel_config(sshd, dev.port, DEV_TOKEN)
        with manager.subscribe() as statuses:
            coordinator.apply(cfg)
            failed = next_status(statuses, lambda s: s.state is TunnelState.FAILED)
        assert failed.attempts == 4
        assert delays == [1.0, 2.0, 3.0]  # backoff between the four attempts, capped
        assert failed.detail.startswith("gave up after 4 failed attempts in a row: cannot reach SSH server")
        state = wait_state(coordinator.store, lambda s: isinstance(s, EndpointUnavailable)
                           and s.reason.startswith("gave up"))
        assert isinstance(state, EndpointUnavailable) and isinstance(state.error, TunnelError)
        assert "Connection refused" in state.reason
        with pytest.raises(EndpointNotReady, match="gave up after 4"):
            coordinator.store()
        assert manager.status(cfg.ssh, cfg.port).attempts == 4  # type: ignore[arg-type, union-attr]

        # Fixed (sshd is back): an explicit apply() tries again and succeeds.
        sshd.start()
        assert coordinator.apply(cfg) == EndpointReady(cfg)
        assert GatewayConnection.shared(provider=coordinator.store).request("health")["ok"] is True
    finally:
        coordinator.stop()
    assert sshd.authenticated == 1
