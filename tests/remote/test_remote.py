"""Remote mode over SSH: RemoteTunnelManager, GatewayEndpointStore, ConnectionModeCoordinator.

Everything runs on loopback with real sockets: a real OpenSSH server
(``gwclient.testing.OpenSshServer``: its own host key, one authorized client key,
``direct-tcpip`` to loopback only) forwards to a :class:`DevGateway` playing the remote
gateway.  SSH connections, logins and forwards are counted from sshd's log, websockets by
the gateway.  tests/remote/test_sshd.py adds the real OpenClaw gateway and the failure paths.
No sleeps: waits are on events, subscriptions and joins."""

from __future__ import annotations

import getpass
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
from _util import DEV_TOKEN
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gwclient import (
    ClientClosed,
    ConfigError,
    Disconnected,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    GatewayTimeout,
    RetryPolicy,
    SshTunnelConfig,
)
from gwclient.remote import (
    ConnectionModeCoordinator,
    EndpointConnecting,
    EndpointNotReady,
    EndpointReady,
    EndpointState,
    EndpointUnavailable,
    GatewayEndpointStore,
    RemoteTunnelManager,
    TunnelError,
    TunnelState,
)
from gwclient.testing import DevGateway, OpenSshServer

TOKEN = DEV_TOKEN  # the shared ``gw`` fixture's token (conftest.py)
USER = getpass.getuser()  # sshd lets in existing accounts only (see docs/remote.md)
FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
WAIT = 15.0


# ============================================================== fixtures and helpers


def _new_key(path: Path, passphrase: bytes | None = None) -> paramiko.PKey:
    key = ed25519.Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption))
    path.chmod(0o600)
    if passphrase:
        return None
    return paramiko.PKey.from_path(str(path))


@dataclass
class Keys:
    dir: Path
    client_path: Path
    client: paramiko.PKey
    host: paramiko.PKey
    known_hosts: Path
    server: OpenSshServer  # not started: the ``sshd`` fixture or the test starts it

    def trust(self, port: int, key: paramiko.PKey | None = None) -> None:
        key = key or self.host
        with self.known_hosts.open("a") as fh:
            fh.write(f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n")


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Keys]:
    known = tmp_path / "known_hosts"
    known.write_text("")
    server = OpenSshServer()
    yield Keys(tmp_path, server.client_key_path, paramiko.PKey.from_path(str(server.client_key_path)),
               paramiko.PKey.from_path(str(server.host_key_path)), known, server)
    server.close()


@pytest.fixture
def sshd(keys: Keys) -> Iterator[OpenSshServer]:
    server = keys.server.start()
    keys.trust(server.port)
    yield server
    server.stop()


def _manager(keys: Keys, **kwargs: Any) -> RemoteTunnelManager:
    options: dict[str, Any] = {"retry": FAST, "known_hosts": [keys.known_hosts], "ssh_config": None,
                               "use_agent": False, "connect_timeout": 5.0, "max_failures": None}
    options.update(kwargs)
    return RemoteTunnelManager(**options)


@pytest.fixture
def manager(keys: Keys) -> Iterator[RemoteTunnelManager]:
    mgr = _manager(keys)
    yield mgr
    mgr.stop_all()


@pytest.fixture
def coordinator(manager: RemoteTunnelManager) -> Iterator[ConnectionModeCoordinator]:
    coord = ConnectionModeCoordinator(manager=manager, ensure_timeout=WAIT)
    yield coord
    # The coordinator first: GatewayConnection.shutdown_all() waits for every gwclient-*
    # thread, tunnel threads included.
    coord.stop()
    GatewayConnection.shutdown_all()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ssh_config(keys: Keys, port: int, **changes: Any) -> SshTunnelConfig:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": port, "user": USER,
                            "identity_file": str(keys.client_path), "remote_port": 1}
    base.update(changes)
    return SshTunnelConfig(**base)


def remote_config(keys: Keys, sshd_port: int, gw: DevGateway, *, local_port: int | None = None,
                  **ssh_changes: Any) -> GatewayConfig:
    ssh_changes.setdefault("remote_port", gw.port)
    return GatewayConfig(
        url=f"ws://127.0.0.1:{local_port or free_port()}", token=TOKEN, retry=FAST, connect_timeout=5.0,
        request_timeout=10.0, ssh=ssh_config(keys, sshd_port, **ssh_changes), state_dir=str(keys.dir / "state"),
    )


def wait_state(sub_store: GatewayEndpointStore, pred: Callable[[EndpointState], bool],
               timeout: float = WAIT) -> EndpointState:
    """Wait (on a subscription, which starts with the current state) for a matching state."""
    deadline = time.monotonic() + timeout
    with sub_store.subscribe() as sub:
        while True:
            state = sub.get(timeout=max(0.01, deadline - time.monotonic()))
            if pred(state):
                return state


def is_ready(state: EndpointState) -> bool:
    return isinstance(state, EndpointReady)


def is_unavailable(state: EndpointState) -> bool:
    return isinstance(state, EndpointUnavailable)


def tunnel_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("gwclient-tunnel-"))


def listening(port: int) -> bool:
    probe = socket.socket()
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    except OSError:
        return True
    finally:
        probe.close()
    return False


def assert_gwclient_error(exc: BaseException) -> None:
    """A gwclient error whose chain may hold anything, but which is itself ours."""
    assert isinstance(exc, GatewayError)
    assert type(exc).__module__.startswith("gwclient"), type(exc)


# ============================================================== the main path


def test_request_goes_through_the_tunnel_on_one_socket_and_one_ssh_connection(
        keys: Keys, gw: DevGateway, sshd: OpenSshServer, coordinator: ConnectionModeCoordinator) -> None:
    cfg = remote_config(keys, sshd.port, gw)
    with coordinator.store.subscribe() as sub:
        state = coordinator.apply(cfg)
        assert state == EndpointReady(cfg)
        seen = [sub.get(timeout=WAIT) for _ in range(3)]
    assert isinstance(seen[0], EndpointUnavailable) and seen[0].reason == "not configured"
    assert isinstance(seen[1], EndpointConnecting)
    assert seen[2] == EndpointReady(cfg)

    conn = GatewayConnection.shared(provider=coordinator.store)
    for _ in range(5):
        assert conn.request("health")["ok"] is True
    assert conn.request("echo", {"x": 1}) == {"x": 1}
    assert gw.sockets_accepted == 1 and gw.handshakes_completed == 1
    assert sshd.connections == 1 and sshd.authenticated == 1
    assert sshd.forwards == [("127.0.0.1", gw.port)]  # sshtunnel's own tunnel check is off
    names = tunnel_threads()
    assert f"gwclient-tunnel-{cfg.port}" in names and f"gwclient-tunnel-listen-{cfg.port}" in names
    assert any(n.startswith("gwclient-tunnel-ssh-") for n in names)
    assert any(n.startswith("gwclient-tunnel-conn-") for n in names)


def test_stop_leaves_no_thread_or_socket_and_requests_fail_clearly(
        keys: Keys, gw: DevGateway, sshd: OpenSshServer, coordinator: ConnectionModeCoordinator) -> None:
    cfg = remote_config(keys, sshd.port, gw)
    assert is_ready(coordinator.apply(cfg))
    conn = GatewayConnection.shared(provider=coordinator.store)
    assert conn.request("health")["ok"] is True

    coordinator.stop()
    assert coordinator.store.current() == EndpointUnavailable("stopped")
    assert tunnel_threads() == []
    assert not listening(cfg.port)
    sshd.wait_idle()
    with pytest.raises(EndpointNotReady, match="remote endpoint unavailable: stopped") as info:
        conn.request("health")
    assert isinstance(info.value, Disconnected)
    with pytest.raises(ClientClosed):
        coordinator.apply(cfg)
    GatewayConnection.shutdown_all()
    assert [t.name for t in threading.enumerate() if t.name.startswith("gwclient-")] == []
    # (the autouse leak checker verifies sockets and threads once more)


def test_ensure_reuses_a_running_tunnel(keys: Keys, gw: DevGateway, sshd: OpenSshServer,
                                         manager: RemoteTunnelManager) -> None:
    ssh = ssh_config(keys, sshd.port, remote_port=gw.port)
    port = free_port()
    assert manager.ensure(ssh, port, timeout=WAIT) == port
    assert manager.ensure(ssh, port, timeout=WAIT) == port
    status = manager.status(ssh, port)
    assert status is not None and status.state is TunnelState.UP and status.attempts == 1
    assert sshd.connections == 1
    assert manager.tunnels() == [status]

    manager.stop(ssh, port)
    assert manager.status(ssh, port) is None
    assert tunnel_threads() == []
    assert not listening(port)
    sshd.wait_idle()


def test_concurrent_ensures_open_one_ssh_connection(keys: Keys, gw: DevGateway, sshd: OpenSshServer,
                                                    manager: RemoteTunnelManager) -> None:
    ssh = ssh_config(keys, sshd.port, remote_port=gw.port)
    port = free_port()
    start = threading.Barrier(8)
    results: list[object] = []

    def worker() -> None:
        start.wait()
        try:
            results.append(manager.ensure(ssh, port, timeout=WAIT))
        except GatewayError as exc:  # pragma: no cover - reported by the assert below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert results == [port] * 8
    assert sshd.connections == 1


def test_a_listener_already_on_the_local_port_is_reused(keys: Keys, gw: DevGateway, sshd: OpenSshServer,
                                                        coordinator: ConnectionModeCoordinator) -> None:
    """Like the user's own ``ssh -L`` on the port: here the gateway itself listens there."""
    cfg = remote_config(keys, sshd.port, gw, local_port=gw.port)
    assert coordinator.apply(cfg) == EndpointReady(cfg)
    status = coordinator.manager.status(cfg.ssh, gw.port)  # type: ignore[arg-type]
    assert status is not None and status.state is TunnelState.EXTERNAL
    assert GatewayConnection.shared(provider=coordinator.store).request("health")["ok"] is True
    assert sshd.connections == 0 and tunnel_threads() == []
    assert gw.sockets_accepted == 1  # the port probe binds, it never connects


def test_config_change_stops_the_old_tunnel(keys: Keys, gw: DevGateway, sshd: OpenSshServer,
                                            coordinator: ConnectionModeCoordinator) -> None:
    remote = remote_config(keys, sshd.port, gw)
    assert is_ready(coordinator.apply(remote))
    conn = GatewayConnection.shared(provider=coordinator.store)
    assert conn.request("health")["ok"] is True

    direct = GatewayConfig(url=gw.url, token=TOKEN, retry=FAST, connect_timeout=5.0,
                           state_dir=remote.state_dir)
    assert coordinator.apply(direct) == EndpointReady(direct)
    assert coordinator.manager.tunnels() == [] and tunnel_threads() == []
    assert not listening(remote.port)
    sshd.wait_idle()
    assert conn.request("health")["ok"] is True  # reconnected once, directly
    assert gw.sockets_accepted == 2 and sshd.connections == 1

    # Same SSH target, another local port: a new tunnel, the old port stays free.
    again = remote_config(keys, sshd.port, gw)
    assert is_ready(coordinator.apply(again))
    assert conn.request("health")["ok"] is True
    assert sshd.connections == 2 and gw.sockets_accepted == 3


# ============================================================== host keys and keys


def test_unknown_host_key_under_strict_is_a_config_error(keys: Keys, gw: DevGateway,
                                                          coordinator: ConnectionModeCoordinator) -> None:
    server = keys.server.start()  # not in known_hosts
    try:
        ssh = ssh_config(keys, server.port, remote_port=gw.port)
        with pytest.raises(ConfigError, match="not trusted") as info:
            coordinator.manager.ensure(ssh, free_port(), timeout=WAIT)
        assert_gwclient_error(info.value)
        assert keys.host.fingerprint in str(info.value)
        status = coordinator.manager.status(ssh, next(iter(coordinator.manager.tunnels())).local_port)
        assert status is not None and status.state is TunnelState.FAILED
        assert server.authenticated == 0  # rejected before authenticating

        cfg = remote_config(keys, server.port, gw)
        state = coordinator.apply(cfg)
        assert isinstance(state, EndpointUnavailable) and isinstance(state.error, ConfigError)
        assert "not trusted" in state.reason
        with pytest.raises(ConfigError, match=r"remote endpoint unavailable: .*not trusted"):
            GatewayConnection.shared(provider=coordinator.store).request("health")
        assert gw.sockets_accepted == 0
    finally:
        coordinator.stop()
        coordinator.manager.stop_all()


def test_changed_host_key_is_a_config_error(keys: Keys, gw: DevGateway, manager: RemoteTunnelManager) -> None:
    server = keys.server.start()
    impostor_key = _new_key(keys.dir / "other_host_key")
    keys.trust(server.port, impostor_key)
    try:
        with pytest.raises(ConfigError, match="does not match known_hosts"):
            manager.ensure(ssh_config(keys, server.port, remote_port=gw.port), free_port(), timeout=WAIT)
        assert server.authenticated == 0
    finally:
        manager.stop_all()


def test_openssh_policy_follows_the_ssh_config(keys: Keys, gw: DevGateway) -> None:
    """``openssh`` defers to StrictHostKeyChecking: ``accept-new`` records the key; the
    default (ask, impossible in batch mode) refuses; ``strict`` ignores the SSH config."""
    server = keys.server.start()
    recorded = keys.dir / "ssh" / "known_hosts"
    config_file = keys.dir / "ssh_config"
    config_file.write_text(
        f"Host gw-alias\n  HostName 127.0.0.1\n  Port {server.port}\n  User {USER}\n"
        f"  StrictHostKeyChecking accept-new\n  UserKnownHostsFile {recorded}\n"
        f"Host *\n  IdentityFile {keys.client_path}\n"
    )
    mgr = _manager(keys, known_hosts=None, ssh_config=config_file)
    try:
        # strict: accept-new in the SSH config does not apply
        strict = SshTunnelConfig(host="gw-alias", remote_port=gw.port, host_key_policy="strict")
        with pytest.raises(ConfigError, match="'strict' requires a known host key"):
            mgr.ensure(strict, free_port(), timeout=WAIT)
        assert not recorded.exists()
        mgr.stop_all()

        openssh = SshTunnelConfig(host="gw-alias", remote_port=gw.port, host_key_policy="openssh")
        port = free_port()
        assert mgr.ensure(openssh, port, timeout=WAIT) == port
        line = recorded.read_text()
        assert line == f"[127.0.0.1]:{server.port} {keys.host.get_name()} {keys.host.get_base64()}\n"
        assert (recorded.stat().st_mode & 0o777) == 0o600
        mgr.stop_all()

        # Now known: strict accepts it too (same file via the SSH config).
        assert mgr.ensure(strict, port, timeout=WAIT) == port
        mgr.stop_all()

        # openssh without accept-new in the config: unknown keys are refused.
        plain = keys.dir / "plain_config"
        plain.write_text(f"Host *\n  User {USER}\n  IdentityFile {keys.client_path}\n"
                         f"  UserKnownHostsFile {keys.dir / 'none'}\n")
        mgr2 = _manager(keys, known_hosts=None, ssh_config=plain)
        with pytest.raises(ConfigError, match="StrictHostKeyChecking does not accept new keys"):
            mgr2.ensure(SshTunnelConfig(host="127.0.0.1", port=server.port, remote_port=gw.port,
                                        host_key_policy="openssh"), free_port(), timeout=WAIT)
        mgr2.stop_all()
    finally:
        mgr.stop_all()


def test_proxy_jump_in_the_ssh_config_is_refused_clearly(keys: Keys, tmp_path: Path) -> None:
    config_file = tmp_path / "cfg"
    config_file.write_text("Host behind\n  ProxyJump bastion\n")
    mgr = _manager(keys, ssh_config=config_file)
    try:
        with pytest.raises(ConfigError, match=r"proxyjump.*open the tunnel yourself"):
            mgr.ensure(SshTunnelConfig(host="behind", identity_file=str(keys.client_path)), free_port(),
                       timeout=WAIT)
    finally:
        mgr.stop_all()


@pytest.mark.parametrize("problem", ["missing", "junk", "encrypted", "unauthorized"])
def test_unusable_identity_is_a_config_error(problem: str, keys: Keys, gw: DevGateway, sshd: OpenSshServer,
                                             manager: RemoteTunnelManager) -> None:
    path = keys.dir / f"key-{problem}"
    passphrase = "correct horse battery staple"
    if problem == "junk":
        path.write_text("not a key\n")
    elif problem == "encrypted":
        _new_key(path, passphrase.encode())
    elif problem == "unauthorized":
        _new_key(path)
    expected = {"missing": "does not exist", "junk": "not a supported private key",
                "encrypted": "passphrase-protected.*ssh-add", "unauthorized": "rejected the key"}[problem]
    with pytest.raises(ConfigError, match=expected) as info:
        manager.ensure(ssh_config(keys, sshd.port, identity_file=str(path), remote_port=gw.port), free_port(),
                       timeout=WAIT)
    assert_gwclient_error(info.value)
    assert passphrase not in str(info.value)
    assert sshd.connections == (1 if problem == "unauthorized" else 0)
    assert sshd.authenticated == 0


# ============================================================== the SSH server going away


def test_ssh_server_down_means_unavailable_then_ready_when_it_returns(
        keys: Keys, gw: DevGateway, coordinator: ConnectionModeCoordinator) -> None:
    port = keys.server.port  # the server is not started: nothing listens on the SSH port
    keys.trust(port)

    cfg = remote_config(keys, port, gw)
    state = coordinator.apply(cfg)
    assert isinstance(state, EndpointUnavailable), state
    assert isinstance(state.error, TunnelError) and isinstance(state.error, Disconnected)
    assert "cannot reach SSH server" in state.reason
    assert isinstance(state.error.__cause__, OSError)
    conn = GatewayConnection.shared(provider=coordinator.store)
    with pytest.raises(EndpointNotReady, match="remote endpoint unavailable: cannot reach SSH server") as info:
        conn.request("health")
    assert_gwclient_error(info.value)
    assert gw.sockets_accepted == 0 and not listening(cfg.port)

    # The tunnel keeps retrying with backoff; when the server is back, the store is ready.
    revived = keys.server.start()
    try:
        assert wait_state(coordinator.store, is_ready) == EndpointReady(cfg)
        assert conn.request("health")["ok"] is True
        assert revived.connections == 1 and gw.sockets_accepted == 1
    finally:
        coordinator.stop()


def test_lost_tunnel_is_published_and_restarted(keys: Keys, gw: DevGateway, sshd: OpenSshServer,
                                                coordinator: ConnectionModeCoordinator) -> None:
    cfg = remote_config(keys, sshd.port, gw)
    assert is_ready(coordinator.apply(cfg))
    conn = GatewayConnection.shared(provider=coordinator.store)
    assert conn.request("health")["ok"] is True

    with coordinator.store.subscribe() as sub:
        assert sub.get(timeout=WAIT) == EndpointReady(cfg)
        sshd.stop()
        lost = sub.get(timeout=WAIT)
        assert isinstance(lost, EndpointUnavailable) and "lost" in lost.reason
        assert isinstance(lost.error, TunnelError)
    with pytest.raises(EndpointNotReady):
        conn.request("health")

    revived = sshd.start()  # the same port and host key
    try:
        assert wait_state(coordinator.store, is_ready) == EndpointReady(cfg)
        assert conn.request("health")["ok"] is True
        assert revived.connections == 2 and gw.sockets_accepted == 2  # sshd's log spans both runs
        status = coordinator.manager.status(cfg.ssh, cfg.port)  # type: ignore[arg-type]
        assert status is not None and status.state is TunnelState.UP and status.attempts >= 2
    finally:
        coordinator.stop()


def test_backoff_waits_go_through_the_injected_wait_and_stop_interrupts_them(keys: Keys, gw: DevGateway) -> None:
    port = keys.server.port  # never started: the SSH port is closed
    in_backoff = threading.Event()
    delays: list[float] = []

    def wait(event: threading.Event, seconds: float) -> bool:
        delays.append(seconds)
        in_backoff.set()
        return event.wait(seconds)

    slow = RetryPolicy(initial=300.0, multiplier=2.0, maximum=600.0, jitter=0.0)
    mgr = _manager(keys, retry=slow, wait=wait)
    ssh = ssh_config(keys, port, remote_port=gw.port)
    local = free_port()
    try:
        with pytest.raises(TunnelError, match="cannot reach SSH server"):
            mgr.ensure(ssh, local, timeout=WAIT)
        assert in_backoff.wait(WAIT)
        assert delays == [300.0]
        status = mgr.status(ssh, local)
        assert status is not None and status.state is TunnelState.DOWN

        # An explicit ensure() cuts the backoff short (one more attempt, same outcome).
        with pytest.raises(TunnelError):
            mgr.ensure(ssh, local, timeout=WAIT)
        assert mgr.status(ssh, local).attempts == 2  # type: ignore[union-attr]

        began = time.monotonic()
        mgr.stop(ssh, local)
        assert time.monotonic() - began < 5.0
        assert tunnel_threads() == []
    finally:
        mgr.stop_all()


# ============================================================== the endpoint store


def test_store_publishes_in_order_current_state_first_and_is_a_provider(keys: Keys) -> None:
    store = GatewayEndpointStore()
    assert store.current() == EndpointUnavailable("not configured")
    with pytest.raises(EndpointNotReady, match="remote endpoint unavailable: not configured"):
        store()

    cfg = GatewayConfig(token=TOKEN, state_dir=str(keys.dir))
    first = store.subscribe()
    assert store.publish(EndpointConnecting("opening"))
    assert not store.publish(EndpointConnecting("opening"))  # equal: ignored
    with pytest.raises(EndpointNotReady, match="not ready: opening") as info:
        store.config()
    assert isinstance(info.value.state, EndpointConnecting)
    assert store.publish(EndpointReady(cfg))
    assert store() is cfg and store.wait_ready(timeout=0) is cfg

    late = store.subscribe()
    assert late.get(timeout=0) == EndpointReady(cfg)  # the current state first
    with pytest.raises(GatewayTimeout):
        late.get(timeout=0.01)
    assert [first.get(timeout=0) for _ in range(3)] == [
        EndpointUnavailable("not configured"), EndpointConnecting("opening"), EndpointReady(cfg)]

    error = ConfigError("bad key")
    store.publish(EndpointUnavailable("bad key", error))
    with pytest.raises(ConfigError, match="remote endpoint unavailable: bad key") as cinfo:
        store()
    assert cinfo.value.__cause__ is error
    with pytest.raises(GatewayTimeout, match="not ready within"):
        store.wait_ready(timeout=0.01)
    first.close()
    late.close()
    assert list(late) == []  # closed: queued states are discarded (as Subscription.close)
    with pytest.raises(ClientClosed):
        late.get(timeout=0)


def test_store_subscription_keeps_the_newest_state_on_overflow(keys: Keys) -> None:
    store = GatewayEndpointStore()
    with store.subscribe(maxsize=2) as sub:
        for i in range(10):
            store.publish(EndpointConnecting(f"step {i}"))
        assert [sub.get(timeout=0) for _ in range(2)] == [EndpointConnecting("step 8"), EndpointConnecting("step 9")]


def test_direct_configs_are_ready_at_once_and_followed_by_the_connection(
        keys: Keys, gw: DevGateway, coordinator: ConnectionModeCoordinator) -> None:
    cfg = GatewayConfig(url=gw.url, token=TOKEN, retry=FAST, state_dir=str(keys.dir))
    assert coordinator.apply(cfg) == EndpointReady(cfg)
    conn = GatewayConnection.shared(provider=coordinator.store)
    assert conn.request("health")["ok"] is True
    assert coordinator.apply(cfg.with_changes(display_name="renamed")).config.display_name == "renamed"  # type: ignore[union-attr]
    assert conn.request("health")["ok"] is True
    assert gw.sockets_accepted == 2  # the config changed once: one reconnect
    assert tunnel_threads() == []


@pytest.mark.parametrize("url", ["ws://[::1]:18789", "ws://127.0.0.2:18789", "ws://[::ffff:127.0.0.1]:18789"])
def test_ssh_tunnel_needs_the_127_0_0_1_local_end(url: str) -> None:
    # One rule (gwclient._config.config.ssh_local_end_error) for the config and the coordinator:
    # the tunnel listens on 127.0.0.1 only, so other loopback URLs would miss it.
    with pytest.raises(ConfigError, match=r"ws://127\.0\.0\.1:<port> or ws://localhost:<port>"):
        GatewayConfig(url=url, ssh=SshTunnelConfig(host="example.invalid"))
    for ok in ("ws://127.0.0.1:18789", "ws://localhost:18789", "wss://LOCALHOST:18789"):
        assert GatewayConfig(url=ok, ssh=SshTunnelConfig(host="example.invalid")).ssh is not None


def test_the_coordinator_applies_the_same_local_end_rule(keys: Keys, coordinator: ConnectionModeCoordinator) -> None:
    # A config built around validation (as a subclass or a future field could) still meets
    # the coordinator's check, which is the same function.
    cfg = GatewayConfig(url="ws://127.0.0.1:18789", ssh=SshTunnelConfig(host="example.invalid"),
                        state_dir=str(keys.dir))
    object.__setattr__(cfg, "url", "ws://[::1]:18789")
    state = coordinator.apply(cfg)
    assert isinstance(state, EndpointUnavailable) and isinstance(state.error, ConfigError)
    assert "127.0.0.1" in state.reason


def test_logs_carry_no_secrets(keys: Keys, gw: DevGateway, sshd: OpenSshServer,
                               coordinator: ConnectionModeCoordinator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = remote_config(keys, sshd.port, gw)
    assert is_ready(coordinator.apply(cfg))
    assert GatewayConnection.shared(provider=coordinator.store).request("health")["ok"] is True
    coordinator.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    names = {r.name for r in caplog.records}
    # sshtunnel and paramiko log under gwclient (whose NullHandler keeps them off stderr).
    assert {"gwclient.tunnel", "gwclient.tunnel.paramiko"} <= names, names
    assert not any(n == "sshtunnel" or n.startswith("paramiko") for n in names), names
    assert TOKEN not in text
    secret_lines = [ln for ln in keys.client_path.read_text().splitlines() if not ln.startswith("-----")]
    assert all(line not in text for line in secret_lines)


def test_ensure_rejects_a_port_owned_by_another_tunnel(keys: Keys, gw: DevGateway, sshd: OpenSshServer,
                                                       manager: RemoteTunnelManager) -> None:
    port = free_port()
    manager.ensure(ssh_config(keys, sshd.port, remote_port=gw.port), port, timeout=WAIT)
    with pytest.raises(ConfigError, match="already forwarded"):
        manager.ensure(ssh_config(keys, sshd.port, remote_port=gw.port + 1 if gw.port < 65535 else 1), port,
                       timeout=WAIT)
    assert sshd.connections == 1


def test_wrong_remote_port_keeps_the_tunnel_up_but_requests_fail(
        keys: Keys, gw: DevGateway, sshd: OpenSshServer, coordinator: ConnectionModeCoordinator) -> None:
    """SSH is fine but nothing listens on the remote port: the endpoint is ready (as with
    ``ssh -L``), each websocket attempt is refused at the far end, requests fail typed."""
    cfg = remote_config(keys, sshd.port, gw, remote_port=free_port())
    assert is_ready(coordinator.apply(cfg))
    with pytest.raises(GatewayError) as info:
        GatewayConnection.shared(provider=coordinator.store).request("health", timeout=2.0)
    assert_gwclient_error(info.value)
    assert sshd.connections == 1 and sshd.forwards == [] and gw.sockets_accepted == 0


def test_ssh_config_used_without_a_tunnel_says_how_to_start_it(tmp_path: Path) -> None:
    """No tunnel side effects from requests: a request never starts the tunnel; when the
    local end is not listening the error says what to do."""
    port = free_port()
    cfg = GatewayConfig(url=f"ws://127.0.0.1:{port}", token=TOKEN, state_dir=str(tmp_path),
                        ssh=SshTunnelConfig(host="gateway-host.invalid", user="u", remote_port=18789))
    conn = GatewayConnection.shared(cfg)
    try:
        with pytest.raises(Disconnected, match="ConnectionModeCoordinator"):
            conn.request("health", timeout=10)
    finally:
        conn.shutdown()
