"""gwclient against the real gateway (openclaw@2026.9.6 on Node 24, via ``RealGateway``).

``GWCLIENT_OPENCLAW_VERSION`` runs the module against another release (``scripts/compat``
runs it against the supported range, 2026.5.12 to the pinned one).  What older gateways do
not send is asserted only where they send it: ``auth.method`` in hello-ok (absent in
2026.5.12) is "token" when present; versions are compared with the release under test.

The invariants of ``test_connection.py``, checked where the fake gateway cannot prove them:
real pairing and auth decisions, a real restart, and sockets counted by the operating
system (psutil), never by gwclient's own counters.

A gateway takes ~10 s to start, so one token-auth gateway is shared by the module (the
restart tests come last and leave it running) and a second one, with silent local pairing
turned off, serves the pairing test.  Every test gets a fresh device identity (conftest
sets a per-test ``GWCLIENT_STATE_DIR``).  Nothing sleeps: tests wait on futures, events,
subscriptions and conditions fed by real traffic.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from gwclient import (
    AuthRejected,
    ClientClosed,
    ConnectionState,
    Disconnected,
    Event,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    GatewayTimeout,
    GatewayUnavailable,
    HelloOk,
    PairingRequired,
    Push,
    RetryPolicy,
    Snapshot,
    StateChange,
    Subscription,
)
from gwclient.cli import main as cli_main
from gwclient.cli._demo import run_demo
from gwclient.device import DeviceIdentity, DeviceTokenStore
from gwclient.payloads import HealthSnapshot, SnapshotPayload, presence_entries
from gwclient.testing._realgateway import RealGateway, RealGatewayError

pytestmark = [pytest.mark.realgateway, pytest.mark.usefixtures("shutdown_all_after")]

RETRY = RetryPolicy(initial=0.2, maximum=2.0)
NO_AUTO_APPROVE = {"gateway": {"nodes": {"pairing": {"autoApproveLocal": False}}}}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def gateway() -> Iterator[RealGateway]:
    with RealGateway() as gw:
        yield gw


@dataclass
class PairingSetup:
    gw: RealGateway
    trigger: str
    """"not-paired": silent local pairing is off; "scope-upgrade": releases without that
    switch (2026.5.12, 2026.7.1) pair a new loopback device silently, so the test pairs it
    with operator.read first and then asks for more scopes, which needs an approval."""


@pytest.fixture(scope="module")
def pairing_gateway() -> Iterator[PairingSetup]:
    gw = RealGateway(config=NO_AUTO_APPROVE)
    try:
        gw.start()
        trigger = "not-paired"
    except RealGatewayError as exc:
        gw.close()
        # 2026.5.12: 'Unrecognized key: "autoApproveLocal"'; 2026.7.1: 'Invalid input'.
        if "gateway.nodes.pairing" not in str(exc):
            raise
        gw = RealGateway()
        trigger = "scope-upgrade"
    with gw:
        yield PairingSetup(gw, trigger)


def config(gw: RealGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": gw.token, "retry": RETRY, "connect_timeout": 10.0,
                               "request_timeout": 20.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------ OS-level views


def client_ports(gw: RealGateway) -> set[int]:
    """Local ports of this process's ESTABLISHED TCP connections to the gateway port."""
    return {
        c.laddr.port
        for c in psutil.Process(os.getpid()).net_connections(kind="inet")
        if c.raddr and c.raddr.port == gw.port and c.status == psutil.CONN_ESTABLISHED
    }


def gateway_peers(gw: RealGateway) -> set[int]:
    """The gateway's own view: peer ports of the ESTABLISHED connections it accepted."""
    assert gw.pid is not None
    return {
        c.raddr.port
        for c in psutil.Process(gw.pid).net_connections(kind="inet")
        if c.laddr and c.laddr.port == gw.port and c.raddr and c.status == psutil.CONN_ESTABLISHED
    }


def gwclient_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gwclient-")]


# ----------------------------------------------------------------- sync helpers


class Progress:
    """A counter that threads bump and the test waits on (no sleeping)."""

    def __init__(self) -> None:
        self._n = 0
        self._cond = threading.Condition()

    def add(self) -> None:
        with self._cond:
            self._n += 1
            self._cond.notify_all()

    @property
    def value(self) -> int:
        with self._cond:
            return self._n

    def wait_for(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._n >= n, timeout)


class Recorder:
    """Drains a subscription on its own thread and timestamps every push, so a test can
    wait for a condition on everything seen so far and measure when it happened."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self._items: list[tuple[float, Push]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="test-recorder")
        self._thread.start()

    def _run(self) -> None:
        for push in self.sub:
            with self._cond:
                self._items.append((time.monotonic(), push))
                self._cond.notify_all()

    def items(self) -> list[tuple[float, Push]]:
        with self._cond:
            return list(self._items)

    def pushes(self) -> list[Push]:
        return [push for _, push in self.items()]

    def wait_for(self, predicate: Callable[[list[Push]], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate([p for _, p in self._items]), timeout)

    def close(self) -> None:
        self.sub.close()
        self._thread.join(5)


def snapshots(pushes: list[Push]) -> list[Snapshot]:
    return [p for p in pushes if isinstance(p, Snapshot)]


def states(pushes: list[Push], state: ConnectionState) -> list[StateChange]:
    return [p for p in pushes if isinstance(p, StateChange) and p.state == state]


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


# ------------------------------------------------- 1 + 7: fresh device, typed payloads


_SECOND_PROCESS = textwrap.dedent("""
    import json, sys
    from gwclient import GatewayConfig, GatewayConnection, RetryPolicy
    cfg = GatewayConfig(url=sys.argv[1], retry=RetryPolicy(initial=0.2, maximum=2.0), connect_timeout=10.0)
    assert cfg.token is None and cfg.password is None
    conn = GatewayConnection.shared(cfg)
    hello = conn.connect()
    status = conn.request("status")
    print(json.dumps({"method": hello.auth.method, "scopes": hello.auth.scopes,
                      "new_device_token": bool(hello.auth.device_token),
                      "runtime": status.get("runtimeVersion")}))
    conn.shutdown()
""")


@pytest.mark.timeout(120)
def test_fresh_device_is_paired_silently_and_a_second_process_uses_its_device_token(
        gateway: RealGateway) -> None:
    cfg = config(gateway)
    state_dir = cfg.effective_state_dir
    assert not list(state_dir.iterdir()), "the test should start without a device identity"
    conn = GatewayConnection.shared(cfg)

    hello = conn.connect()

    # Silently paired on loopback (no PairingRequired, a device token was issued): the
    # gateway saw no Origin header (with one it would require approval and strip scopes).
    assert hello.protocol == 4 and hello.server.version == gateway.version
    assert hello.auth is not None
    assert hello.auth.method in ("token", None)  # None: 2026.5.12 does not say
    assert set(cfg.scopes) <= set(hello.auth.scopes)  # the default scopes, all granted
    assert "operator.read" in hello.auth.scopes
    assert hello.auth.device_token
    device_id = DeviceIdentity.load_or_create(state_dir).device_id  # created by the connect
    assert f"device pairing auto-approved device={device_id}" in gateway.log_text()
    stored = DeviceTokenStore(state_dir).load(cfg.gateway_key, device_id, "operator")
    assert stored is not None and "operator.read" in stored.scopes

    status = conn.request("status")
    assert status["runtimeVersion"] == gateway.version
    presence = presence_entries(conn.request("system-presence"))
    assert any(e.mode == "gateway" and e.reason == "self" for e in presence)
    health = HealthSnapshot.from_payload(conn.request("health"))
    assert health.ok is True and health.ts and isinstance(health.channels, dict)

    with conn.subscribe(include_state=False) as sub:
        first = sub.get(timeout=5)
    assert isinstance(first, Snapshot) and first.connection_number == 1
    snap = SnapshotPayload.from_payload(first.snapshot)
    assert snap.uptime_ms is not None and snap.uptime_ms > 0
    assert snap.state_version.presence >= 1 and snap.state_version.health >= 1
    assert snap.auth_mode == "token"  # only admin-scoped clients are told
    assert any(e.reason == "self" for e in snap.presence_entries)
    defaults = snap.defaults
    assert defaults is not None and defaults.main_session_key == "agent:main:main"

    # A second process with the same state dir and no token: the stored device token.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    assert env["GWCLIENT_STATE_DIR"] == str(state_dir)
    out = subprocess.run([sys.executable, "-c", _SECOND_PROCESS, gateway.url], capture_output=True,
                         text=True, timeout=60, env=env, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    child = json.loads(out.stdout.strip().splitlines()[-1])
    # No token, no password: only the stored device token can have let it in.
    assert child["method"] in ("device-token", None)
    assert "operator.read" in child["scopes"]
    assert child["runtime"] == gateway.version
    assert child["new_device_token"] is True  # the gateway rotates it; the child stored it
    assert conn.request("health")["ok"] is True  # the parent's token connection is unaffected


# --------------------------------------------- 2: many consumers, one TCP connection


@pytest.mark.timeout(90)
def test_consumers_and_sixteen_threads_share_one_tcp_connection(gateway: RealGateway) -> None:
    cfg = config(gateway)
    workers, per_worker = 16, 20
    stop = threading.Event()
    start = threading.Barrier(workers + 3)
    done = Progress()
    errors: list[BaseException] = []
    marker = f"gwclient-test-{uuid.uuid4()}"

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
                done.add()
        return run

    def worker() -> None:
        conn = GatewayConnection.shared(cfg)
        start.wait()
        for i in range(per_worker):
            method = ("health", "status", "system-presence")[i % 3]
            assert conn.request(method) is not None
            done.add()

    def poller() -> None:
        conn = GatewayConnection.shared(cfg)
        start.wait()
        while not stop.is_set():
            assert HealthSnapshot.from_payload(conn.request("health")).ok is True
            done.add()

    def rpc_user() -> None:
        conn = GatewayConnection.shared(cfg)
        start.wait()
        while not stop.is_set():
            assert conn.request("status")["runtimeVersion"] == gateway.version
            done.add()

    seen: Future[Event] = Future()

    def watcher(sub: Subscription) -> None:
        start.wait()
        for push in sub:
            if isinstance(push, Event) and any(e.text == marker for e in presence_entries(push.payload)):
                seen.set_result(push)
                return

    sub = GatewayConnection.shared(cfg).subscribe(events=["presence"], include_state=False)
    threads = [threading.Thread(target=guarded(worker), name=f"test-worker-{n}") for n in range(workers)]
    threads += [threading.Thread(target=guarded(poller), name="test-poller"),
                threading.Thread(target=guarded(rpc_user), name="test-rpc"),
                threading.Thread(target=guarded(lambda: watcher(sub)), name="test-watcher")]
    for t in threads:
        t.start()
    total = workers * per_worker
    samples: list[set[int]] = []
    peers: list[set[int]] = []
    for milestone in (total // 8, total // 4, total // 2, 3 * total // 4, total):
        assert done.wait_for(milestone, timeout=60), (done.value, errors)
        samples.append(client_ports(gateway))
        peers.append(gateway_peers(gateway))
        if milestone == total // 2:
            # A presence beacon: the watcher must see the broadcast on the shared socket.
            assert GatewayConnection.shared(cfg).request("system-event", {"text": marker}) == {"ok": True}
    event = seen.result(timeout=20)
    assert event.seq is not None and event.state_version is not None
    stop.set()
    for t in threads:
        t.join(30)
    sub.close()
    assert errors == []
    # Counted by the operating system: the same single connection at every sample, and
    # the gateway holds exactly that one connection.
    assert all(len(s) == 1 for s in samples), samples
    assert len(set.union(*samples)) == 1, samples
    assert all(p == samples[0] for p in peers), (peers, samples)
    print(f"\nconsumers: {done.value} requests from {len(threads)} threads, {len(samples)} OS samples, "
          f"all on local port {samples[0]}")


# ----------------------------------------------------- 4: wrong token, no loop


@pytest.mark.timeout(90)
def test_wrong_token_is_typed_and_never_loops(gateway: RealGateway) -> None:
    instance = str(uuid.uuid4())  # finds this client's attempts in the gateway's log
    wrong = "wrong-" + uuid.uuid4().hex
    cfg = config(gateway, token=wrong, device_identity=False, instance_id=instance)
    conn = GatewayConnection.shared(cfg)
    rec = Recorder(conn.subscribe())

    with pytest.raises(AuthRejected) as info:
        conn.request("health")
    err = info.value
    assert err.detail_code == "AUTH_TOKEN_MISMATCH"
    assert err.code == "INVALID_REQUEST" and "token mismatch" in str(err)
    assert wrong not in str(err) and gateway.token not in str(err)
    assert rec.wait_for(lambda ps: bool(states(ps, ConnectionState.PAUSED)), timeout=10)

    # Many further requests from threads: all AuthRejected at once, no new connection.
    threads, per_thread = 16, 25
    progress = Progress()
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(per_thread):
            t0 = time.monotonic()
            try:
                conn.request("status")
                kind = "answered"
            except GatewayError as exc:
                kind = type(exc).__name__ if not isinstance(exc, AuthRejected) else exc.detail_code
            with lock:
                outcomes.append((kind, time.monotonic() - t0))
            progress.add()

    pool = [threading.Thread(target=caller, name=f"test-caller-{n}") for n in range(threads)]
    for t in pool:
        t.start()
    samples = []
    for milestone in range(0, threads * per_thread + 1, threads * per_thread // 5):
        assert progress.wait_for(milestone, timeout=30)
        samples.append(client_ports(gateway))
    for t in pool:
        t.join(30)

    assert Counter(kind for kind, _ in outcomes) == {"AUTH_TOKEN_MISMATCH": threads * per_thread}
    assert max(took for _, took in outcomes) < 1.0  # immediate: no connect, no timeout
    assert samples == [set()] * len(samples)
    assert client_ports(gateway) == set()
    connecting = states(rec.pushes(), ConnectionState.CONNECTING)
    # The gateway's console log is written synchronously before it answers a connect, so
    # every attempt it rejected is in it by now.
    rejected = [line for line in gateway.log_text().splitlines()
                if "unauthorized conn=" in line and f"instance={instance}" in line]
    assert all("reason=token_mismatch" in line for line in rejected)
    assert 1 <= len(rejected) <= 2 and len(connecting) == len(rejected), (rejected, connecting)
    print(f"\nwrong token: {len(rejected)} connect attempt(s) (gateway log), {len(connecting)} CONNECTING; "
          f"{len(outcomes)} later requests, slowest {max(took for _, took in outcomes) * 1000:.1f} ms")
    rec.close()


# --------------------------------------------------------- 6: shutdown leaves nothing


@pytest.mark.timeout(60)
def test_shutdown_leaves_no_connection_and_no_thread(gateway: RealGateway) -> None:
    conn = GatewayConnection.shared(config(gateway))
    sub = conn.subscribe()
    conn.request("health")
    ports = client_ports(gateway)
    assert len(ports) == 1 and ports <= gateway_peers(gateway)

    conn.shutdown()

    assert client_ports(gateway) == set()
    assert gwclient_threads() == []
    list(sub)  # the subscription ended; iterating it returns
    assert sub.closed
    with pytest.raises(ClientClosed):
        conn.request("health")
    assert client_ports(gateway) == set()  # nothing reconnected


# ------------------------------------------------------------------ 3: restarts


@pytest.mark.timeout(60)
def test_demo_main_job_on_the_real_gateway(gateway: RealGateway) -> None:
    """``gwclient demo --url`` (the main job, three consumers) against the real gateway:
    every consumer answered, one TCP connection counted from the OS."""
    out = io.StringIO()
    assert run_demo(out=out, url=gateway.url, token=gateway.token, phase_seconds=1.0) == 0, out.getvalue()
    report = out.getvalue()
    assert "peak TCP connections from this process (OS count): 1" in report
    assert re.search(r"rpc status\s+answered [1-9]", report) and re.search(r"poller health\s+answered [1-9]", report)
    assert "snapshots: 1" in report


@pytest.mark.timeout(60)
def test_status_summary_and_the_legacy_example_on_the_real_gateway(
        gateway: RealGateway, capsys: pytest.CaptureFixture[str]) -> None:
    """``gwclient status`` summarises what the real gateway means (its version, task
    totals), and examples/legacy_script.py finds the version in ``runtimeVersion``."""
    args = ["--url", gateway.url, "--token", gateway.token, "status"]
    assert cli_main([*args, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert cli_main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"version: {gateway.version}" in lines
    tasks = answer["tasks"]
    assert f"tasks: {tasks['total']} total, {tasks['active']} active, {tasks['failures']} failed" in lines
    assert not any("item(s)" in line for line in lines), lines

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    env.update(OPENCLAW_GATEWAY_URL=gateway.url, OPENCLAW_GATEWAY_TOKEN=gateway.token, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "legacy_script.py")], env=env,
                         capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"status: gateway version {gateway.version}, pid " in out.stdout


@pytest.mark.timeout(120)
def test_restart_fails_requests_clearly_then_reconnects_once(gateway: RealGateway) -> None:
    gateway.start()  # no-op unless an earlier test left it stopped
    conn = GatewayConnection.shared(config(gateway))
    rec = Recorder(conn.subscribe())
    conn.connect()
    assert rec.wait_for(lambda ps: len(snapshots(ps)) == 1, timeout=10)
    before = client_ports(gateway)
    assert len(before) == 1

    timeout = 3.0
    stop = threading.Event()
    answered = Progress()
    failures: list[GatewayError] = []
    overdue: list[float] = []
    lock = threading.Lock()

    def hammer() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                conn.request("health", timeout=timeout)
                answered.add()
            except GatewayError as exc:
                with lock:
                    failures.append(exc)
            took = time.monotonic() - t0
            if took > timeout + 1.0:
                overdue.append(took)

    threads = [threading.Thread(target=hammer, name=f"test-hammer-{n}") for n in range(8)]
    for t in threads:
        t.start()
    assert answered.wait_for(50, timeout=20)

    gateway.restart()  # SIGTERM: drain, `shutdown` event, close 1012; then start again
    ready_at = time.monotonic()
    assert rec.wait_for(lambda ps: len(snapshots(ps)) == 2, timeout=30)
    back = answered.value
    assert answered.wait_for(back + 100, timeout=20)  # requests resumed without user action
    after = client_ports(gateway)
    peers = gateway_peers(gateway)
    stop.set()
    for t in threads:
        t.join(timeout + 5)
    assert conn.request("status")["runtimeVersion"] == gateway.version

    items = rec.items()
    pushes = [p for _, p in items]
    snaps = snapshots(pushes)
    assert [s.connection_number for s in snaps] == [1, 2]  # exactly one reconnect
    assert snaps[1].hello.server.conn_id != snaps[0].hello.server.conn_id
    reconnected_at = next(t for t, p in items if p is snaps[1])
    shutdown = [p for p in pushes if isinstance(p, Event) and p.event == "shutdown"]
    # A SIGTERM stop says "stopping" without restartExpectedMs (only restart-in-place does;
    # releases before 2026.9 send it as null).
    assert [s.payload.get("reason") for s in shutdown] == ["gateway stopping"]
    assert shutdown[0].payload.get("restartExpectedMs") is None
    lost = states(pushes, ConnectionState.RECONNECTING)
    assert "1012" in lost[0].detail, lost[0]
    # Counted by the OS: one connection, a new one (not the old socket), and the gateway
    # holds exactly it.
    assert len(after) == 1 and after != before
    assert peers == after
    # Every failure was typed and said why; none waited past its timeout.
    kinds = Counter(type(e).__name__ for e in failures)
    assert set(kinds) <= {"Disconnected", "GatewayTimeout", "GatewayUnavailable"}, kinds
    for exc in failures:
        if isinstance(exc, Disconnected):
            assert "before health was answered" in str(exc) and exc.close_code == 1012
        elif isinstance(exc, GatewayTimeout):
            assert f"health got no answer within {timeout:g} s" in str(exc)
        else:
            # The draining gateway's own answer ("health unavailable during gateway
            # restart", or "Error: Gateway request entry is closed" for one it had
            # admitted): typed, retryable by its code.
            assert isinstance(exc, GatewayUnavailable) and exc.code == "UNAVAILABLE" and str(exc)
    assert overdue == []
    starting = [s for s in lost if "gateway starting" in s.detail]
    print(f"\nrestart: gateway ready after {gateway.last_restart_seconds:.1f} s; client reconnected "
          f"{reconnected_at - ready_at:+.2f} s after ready; {len(states(pushes, ConnectionState.CONNECTING))} "
          f"connect attempts, {len(starting)} answered 1013 'gateway starting'; failures {dict(kinds)}; "
          f"messages {sorted({f'{type(e).__name__}: {e}' for e in failures})}")
    rec.close()


@pytest.mark.timeout(120)
def test_gateway_killed_with_a_request_pending(gateway: RealGateway) -> None:
    """A request the gateway is still working on when it dies fails with Disconnected (a
    SIGTERM stop drains such requests, so the stop is escalated to SIGKILL after 1 s);
    a second connection shut down while the gateway is unreachable leaves nothing."""
    gateway.start()
    conn = GatewayConnection.shared(config(gateway))
    rec = Recorder(conn.subscribe())
    conn.connect()
    other = GatewayConnection.shared(config(gateway, display_name="second tool"))
    other_rec = Recorder(other.subscribe())
    other.connect()
    assert len(client_ports(gateway)) == 2

    # agent.wait for a run that never comes: the gateway holds it for timeoutMs.
    waiter, pending = in_thread(
        lambda: conn.request("agent.wait", {"runId": f"never-{uuid.uuid4()}", "timeoutMs": 60_000}, timeout=90),
        name="test-pending")
    # Requests on one socket go out in order: once health is answered, agent.wait is on
    # the gateway (the server handles requests concurrently).
    assert conn.request("health")["ok"] is True
    assert not pending.done()

    t0 = time.monotonic()
    gateway.stop(timeout=1.0)  # SIGTERM, then SIGKILL while agent.wait holds the drain
    with pytest.raises(Disconnected) as info:
        pending.result(timeout=10)
    failed_after = time.monotonic() - t0
    waiter.join()
    assert "before agent.wait was answered" in str(info.value)
    # Killed: no close frame.  Releases before 2026.9 do not hold a pending request open
    # through a SIGTERM: they close with 1012 at once; either way the request fails.
    assert info.value.close_code in ((None, 1012) if gateway.version_info < (2026, 9) else (None,))

    # Shut the second connection down while it retries against a closed port.
    assert other_rec.wait_for(
        lambda ps: any("Connection refused" in s.detail for s in states(ps, ConnectionState.RECONNECTING)),
        timeout=20)
    other.shutdown()  # used to raise RuntimeError joining the refused attempt's writer
    other_rec.close()
    # Only the first connection's channel actor and timer are left.
    label = f"127.0.0.1:{gateway.port}"
    assert sorted(t for t in gwclient_threads() if t.startswith(("gwclient-channel-", "gwclient-timer-"))) == [
        f"gwclient-channel-{label}", f"gwclient-timer-{label}"]

    gateway.start()
    ready_at = time.monotonic()
    assert rec.wait_for(lambda ps: len(snapshots(ps)) == 2, timeout=30)
    assert conn.request("health")["ok"] is True
    assert len(client_ports(gateway)) == 1
    assert client_ports(gateway) == gateway_peers(gateway)
    reconnected_at = next(t for t, p in rec.items() if isinstance(p, Snapshot) and p.connection_number == 2)
    print(f"\nkill: pending request failed {failed_after:.2f} s after the stop began; reconnected "
          f"{reconnected_at - ready_at:+.2f} s after ready")
    rec.close()


# ------------------------------------------------------------------ 5: pairing


@pytest.mark.timeout(120)
def test_pairing_required_then_wait_for_pairing(pairing_gateway: PairingSetup, tmp_path: Path) -> None:
    gw = pairing_gateway.gw
    cfg = config(gw)
    if pairing_gateway.trigger == "scope-upgrade":
        reader = GatewayConnection.shared(config(gw, scopes=("operator.read",)))
        hello_read = reader.connect()
        assert hello_read.auth is not None and hello_read.auth.scopes == ["operator.read"]
        reader.shutdown()
        # The openclaw CLI of these releases cannot approve a scope upgrade (it would need
        # one itself); an operator device with operator.pairing approves over RPC instead.
        approver = GatewayConnection.shared(config(gw, state_dir=str(tmp_path / "approver")))

        def pending_requests() -> list[dict[str, object]]:
            return list(approver.request("device.pair.list")["pending"])

        def approve(request_id: str) -> None:
            approver.request("device.pair.approve", {"requestId": request_id})
    else:
        def pending_requests() -> list[dict[str, object]]:
            return list(gw.devices_list()["pending"])

        def approve(request_id: str) -> None:
            gw.devices_approve(request_id)
    conn = GatewayConnection.shared(cfg)

    with pytest.raises(PairingRequired) as info:
        conn.request("health")
    err = info.value
    request_id = err.request_id
    assert request_id and err.detail_code == "PAIRING_REQUIRED"
    assert f"openclaw devices approve {request_id}" in str(err)
    assert gw.token not in str(err)
    pending = pending_requests()
    assert request_id in [p.get("requestId") for p in pending], pending

    waiting = threading.Event()
    seen: list[PairingRequired] = []

    def on_waiting(exc: PairingRequired) -> None:
        seen.append(exc)
        waiting.set()

    waiter, result = in_thread(
        lambda: conn.wait_for_pairing(timeout=60, poll_interval=1.0, on_waiting=on_waiting),
        name="test-wait-for-pairing")
    assert waiting.wait(20)
    t0 = time.monotonic()
    approve(request_id)
    hello = result.result(timeout=30)
    waited = time.monotonic() - t0
    waiter.join()

    assert isinstance(hello, HelloOk) and hello.auth is not None
    assert hello.auth.device_token and "operator.read" in hello.auth.scopes
    assert seen and all(e.request_id == request_id for e in seen)
    # wait_for_pairing() returns once the device token is stored.
    assert err.device_id
    stored = DeviceTokenStore(cfg.effective_state_dir).load(cfg.gateway_key, err.device_id, "operator")
    assert stored is not None and "operator.read" in stored.scopes
    assert conn.request("status")["runtimeVersion"] == gw.version
    print(f"\npairing: approved (CLI) and connected {waited:.1f} s after the approve began, "
          f"{len(seen)} PairingRequired while waiting")
