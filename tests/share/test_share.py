"""The local share (docs/share.md) against the dev gateway, with real processes, real Unix
sockets and real restarts.  Every test has its own runtime dir (so its own share socket)
and state dir, and kills every share it started (``_share_util.share_env``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from _share_util import CHILD, ShareEnv, read_json_line, reap, share_env
from _util import DEV_TOKEN

from gwclient import (
    Event,
    GatewayConfig,
    GatewayConnection,
    PairingRequired,
    ProtocolMismatch,
    ShareUnavailable,
    Snapshot,
)
from gwclient import share as share_api
from gwclient.share._client import OneShot, open_share
from gwclient.share._wire import control
from gwclient.testing import DevGateway

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def se(gw: DevGateway) -> Iterator[ShareEnv]:
    with share_env(gw.url, DEV_TOKEN) as env:
        yield env


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _talk(proc: subprocess.Popen[str], line: str) -> Any:
    _send(proc, line)
    return read_json_line(proc.stdout)


def _finish(proc: subprocess.Popen[str]) -> None:
    _send(proc, "exit")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


# ------------------------------------------------------------------------ one socket


def test_twenty_concurrent_cli_calls_start_one_share_and_one_gateway_socket(se: ShareEnv, gw: DevGateway) -> None:
    procs = [se.spawn_cli("call", "health", "--json") for _ in range(20)]
    results = [p.communicate(timeout=90) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["ok"] is True
    assert len(se.share_processes()) == 1
    assert gw.sockets_accepted == 1
    assert gw.requests_by_method.get("health") == 20
    status = share_api.status()
    assert status["attaches"] == 20 and status["gateways"][0]["requests_relayed"] == 20


def test_off_starts_nothing(se: ShareEnv, gw: DevGateway) -> None:
    env = dict(se.env, GWCLIENT_SHARE="off")
    for _ in range(2):
        done = se.cli("call", "health", "--json", env=env)
        assert done.returncode == 0, done.stderr
    assert se.share_processes() == []
    assert not se.socket.exists()
    assert gw.sockets_accepted == 2  # a socket per process, as before


def test_the_share_option_overrides_the_environment(se: ShareEnv, gw: DevGateway) -> None:
    env = dict(se.env, GWCLIENT_SHARE="off")
    for _ in range(3):
        done = se.cli("--share", "auto", "call", "health", env=env)
        assert done.returncode == 0, done.stderr
    assert gw.sockets_accepted == 1 and len(se.share_processes()) == 1


# ----------------------------------------------------------------------- events


def test_two_attached_processes_both_receive_a_broadcast_after_their_snapshot(se: ShareEnv, gw: DevGateway) -> None:
    a, b = se.python(CHILD), se.python(CHILD)
    for proc in (a, b):
        assert read_json_line(proc.stdout)["ready"]["kind"] == "snapshot"
    gw.broadcast("presence", {"who": "everyone"})
    for proc in (a, b):
        seen = _talk(proc, "event presence")["event"]
        assert seen["payload"] == {"who": "everyone"} and seen["seq"] >= 1
    assert gw.sockets_accepted == 1
    for proc in (a, b):
        _finish(proc)


def _observer_frames(gw: DevGateway) -> list[tuple[str, Any]]:
    return [r for r in gw.session_requests if r[0].startswith("sessions.messages.")]


def test_session_observers_of_two_processes_are_one_gateway_observer(se: ShareEnv, gw: DevGateway) -> None:
    """The gateway keeps one observer entry per connection and session: through the share,
    a plain subscriber beside an approvals one must not re-key it, nor silence it when it
    leaves.  The share's core coalesces them as it does a direct socket's observers."""
    a, b = se.python(CHILD), se.python(CHILD)
    for proc in (a, b):
        assert read_json_line(proc.stdout)["ready"]["kind"] == "snapshot"
    approvals = ("sessions.messages.subscribe", {"key": "main", "includeApprovals": True})
    _talk(a, 'req sessions.messages.subscribe {"key": "main", "includeApprovals": true}')
    ok = gw.wait_for(lambda g: _observer_frames(g) == [approvals], 10)
    assert ok, _observer_frames(gw)
    _talk(b, 'req sessions.messages.subscribe {"key": "agent:main:main"}')  # the same session, plain
    _talk(b, 'req sessions.messages.unsubscribe {"key": "agent:main:main"}')
    _talk(a, "req health")  # (after the share handled b's two: it serves one process in order)
    assert _observer_frames(gw) == [approvals]  # nothing re-keyed, nothing unsubscribed
    _talk(a, 'req sessions.messages.unsubscribe {"key": "main"}')
    assert gw.wait_for(lambda g: _observer_frames(g)[1:] == [("sessions.messages.unsubscribe", {"key": "main"})], 10)
    for proc in (a, b):
        _finish(proc)


def test_a_gateway_restart_gives_each_attached_process_one_reconnect_and_a_fresh_snapshot(
        se: ShareEnv, gw: DevGateway) -> None:
    a, b = se.python(CHILD), se.python(CHILD)
    for proc in (a, b):
        assert read_json_line(proc.stdout)["ready"] == {"kind": "snapshot", "number": 1}
    gw.restart(restart_expected_ms=100)
    for proc in (a, b):
        pushes = _talk(proc, "until 1")["pushes"]
        snapshots = [p for p in pushes if p["kind"] == "snapshot"]
        assert snapshots == [{"kind": "snapshot", "number": 2}]
        assert pushes[-1]["kind"] == "snapshot"  # nothing after it but what comes next
        assert _talk(proc, "req health")["answer"]["ok"] is True
    assert gw.sockets_accepted_per_lifetime == [1, 1]
    assert gw.max_open_sockets == 1
    status = share_api.status()
    assert status["gateways"][0]["reconnects"] == 1
    assert sorted(entry["pid"] for entry in status["attached"]) == sorted([a.pid, b.pid])
    for proc in (a, b):
        _finish(proc)


def test_a_slow_attached_subscriber_loses_events_visibly_and_never_slows_a_fast_one(
        gw: DevGateway) -> None:
    with share_env(gw.url, DEV_TOKEN) as se:
        os.environ["GWCLIENT_SHARE_MAX_EVENTS"] = "500"
        try:
            fast, slow = se.python(CHILD), se.python(CHILD)
            for proc in (fast, slow):
                assert read_json_line(proc.stdout)["ready"]["kind"] == "snapshot"
            slow.send_signal(signal.SIGSTOP)  # reads nothing: its socket and its outbox fill up
            try:
                chunk, chunks = 250, 80  # a chunk fits the fast one's outbox: it never drops
                for k in range(chunks):
                    for i in range(k * chunk, (k + 1) * chunk):
                        gw.broadcast("burst", {"i": i})
                    report = _talk(fast, f"burst burst {(k + 1) * chunk - 1}")
                    assert report == {"seen": chunk, "gaps": []}
            finally:
                slow.send_signal(signal.SIGCONT)
            report = _talk(slow, f"burst burst {chunk * chunks - 1}")
            assert report["gaps"], "the slow process must learn of its loss"
            assert report["seen"] + sum(r - e for e, r in report["gaps"]) == chunk * chunks
            assert report["seen"] < chunk * chunks
            assert "reads too slowly" in se.log_text()
            assert gw.sockets_accepted == 1
            for proc in (fast, slow):
                _finish(proc)
        finally:
            del os.environ["GWCLIENT_SHARE_MAX_EVENTS"]


# ------------------------------------------------------------------------ lifecycle


def test_sigkill_of_the_share_mid_request_fails_it_with_disconnected_and_the_process_carries_on(
        se: ShareEnv, gw: DevGateway) -> None:
    proc = se.python(CHILD)
    assert read_json_line(proc.stdout)["ready"]["kind"] == "snapshot"
    (old,) = se.share_processes()
    gw.never_answer("status")
    _send(proc, "req status")
    assert gw.wait_for(lambda g: g.requests_by_method.get("status", 0) >= 1, 30)
    old.send_signal(signal.SIGKILL)
    answer = read_json_line(proc.stdout)
    assert answer["error"] == "Disconnected", answer  # not a timeout: nothing hung
    gw.clear_faults()
    assert _talk(proc, "req health")["answer"]["ok"] is True  # auto: a new share, stale socket replaced
    (new,) = se.share_processes()
    assert new.pid != old.pid
    _finish(proc)


def test_the_share_exits_when_the_last_process_leaves_with_persist_zero(se: ShareEnv, gw: DevGateway) -> None:
    env = dict(se.env, GWCLIENT_SHARE_PERSIST="0")
    proc = se.python(CHILD, env=env)
    assert read_json_line(proc.stdout)["ready"]["kind"] == "snapshot"
    (share,) = se.share_processes()
    _finish(proc)
    share.wait(30)
    assert not se.socket.exists()
    assert "no process attached for 0 s: exiting" in se.log_text()


def test_share_start_status_stop(se: ShareEnv, gw: DevGateway) -> None:
    started = se.cli("share", "start")
    assert started.returncode == 0 and "share started" in started.stderr
    again = se.cli("share", "start")
    assert again.returncode == 0 and "already running" in again.stderr
    call = se.cli("call", "health")
    assert call.returncode == 0, call.stderr
    status = se.cli("share", "status", "--json")
    data = json.loads(status.stdout)
    assert data["running"] is True and data["version"] == share_api.status()["version"]
    assert data["gateways"][0]["url"] == gw.url and data["gateways"][0]["state"] == "connected"
    assert DEV_TOKEN not in status.stdout and DEV_TOKEN not in se.log_text()
    human = se.cli("share", "status")
    assert "requests relayed" in human.stdout and DEV_TOKEN not in human.stdout
    stopped = se.cli("share", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert se.cli("share", "status").returncode == 1


def test_a_share_of_another_version_is_not_used_silently(se: ShareEnv, gw: DevGateway) -> None:
    directory = se.socket.parent
    directory.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(se.socket))
    listener.listen(8)
    stop = threading.Event()

    def fake_share() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(control({"op": "hello", "version": "0.0.1-other", "wire": 1, "pid": 1}))

    thread = threading.Thread(target=fake_share, daemon=True)
    thread.start()
    try:
        done = se.cli("call", "health")
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("0.0.1-other") == 1 and "direct socket" in done.stderr
        assert gw.sockets_accepted == 1  # the direct one
        status = se.cli("share", "status")
        assert status.returncode == 1 and "0.0.1-other" in status.stderr
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)


def test_required_never_opens_a_direct_socket(se: ShareEnv, gw: DevGateway) -> None:
    directory = se.socket.parent
    directory.mkdir()
    os.chmod(directory, 0o777)  # unsafe: the share refuses it
    done = se.cli("--share", "required", "call", "health")
    assert done.returncode == 1 and "required" in done.stderr and "writable by others" in done.stderr
    auto = se.cli("--share", "auto", "call", "health")
    assert auto.returncode == 0 and auto.stderr.count("direct socket") == 1
    assert gw.sockets_accepted == 1  # only auto's fallback
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=DEV_TOKEN, share="required"))
    try:
        with pytest.raises(ShareUnavailable, match="writable by others"):
            conn.request("health", timeout=20)
    finally:
        conn.shutdown()
    assert gw.sockets_accepted == 1


# ------------------------------------------------------------------------- security


def _as_nobody(path: Path) -> int:
    """Connect to ``path`` from a child running as uid 65534; its exit status: 0 = the
    share closed without a byte, 1 = it sent something, 2 = the connect was refused."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(20)
            try:
                sock.connect(str(path))
            except OSError:
                code = 2
            else:
                code = 0 if sock.recv(1) == b"" else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_another_user_is_refused(se: ShareEnv, gw: DevGateway) -> None:
    assert os.geteuid() == 0, "this test drops privileges in a child"
    assert se.cli("share", "start").returncode == 0
    assert _as_nobody(se.socket) == 2  # the 0700 directory keeps them out
    directory = se.socket.parent
    os.chmod(se.run_dir, 0o711)
    os.chmod(directory, 0o711)  # even if the directory were opened up...
    os.chmod(se.socket, 0o666)
    try:
        assert _as_nobody(se.socket) == 0  # ...the uid check drops them before a byte
    finally:
        os.chmod(directory, 0o700)
        os.chmod(se.run_dir, 0o700)
    assert "refused a connection from uid 65534" in se.log_text()
    assert se.cli("call", "health").returncode == 0  # the share goes on


def test_the_socket_is_private(se: ShareEnv, gw: DevGateway) -> None:
    assert se.cli("share", "start").returncode == 0
    assert (se.socket.parent.stat().st_mode & 0o777) == 0o700
    assert (se.socket.stat().st_mode & 0o777) == 0o600
    assert not any(c.laddr and c.status == psutil.CONN_LISTEN for p in se.share_processes()
                   for c in p.net_connections(kind="inet"))  # never TCP


def test_a_symlinked_share_directory_is_refused(se: ShareEnv, gw: DevGateway, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    se.socket.parent.symlink_to(target)
    done = se.cli("--share", "required", "call", "health")
    assert done.returncode == 1 and "symlink" in done.stderr


def test_a_thousand_attach_detach_cycles_leave_threads_fds_and_memory_flat(se: ShareEnv, gw: DevGateway) -> None:
    config = GatewayConfig(url=gw.url, token=DEV_TOKEN)

    def cycle() -> None:
        client = OneShot(open_share(start=True, timeout=10), config, 10)
        try:
            assert client.request("health")["ok"] is True
        finally:
            client.close()

    def settled() -> dict[str, Any]:
        """The share's status once the last stream has detached (its threads joined)."""
        for _ in range(100):  # each status() is a round trip to the share; no sleeping
            if not share_api.status()["attached"]:
                break
        return share_api.status()

    for _ in range(50):
        cycle()
    before = settled()
    for _ in range(1000):
        cycle()
    after = settled()
    assert after["attached"] == [] and after["attaches"] == before["attaches"] + 1000
    assert after["threads"] == before["threads"]
    assert after["fds"] == before["fds"]
    assert after["rss"] - before["rss"] < 8 * 1024 * 1024
    assert gw.sockets_accepted == 1


# ------------------------------------------------- the library through the share


@pytest.fixture
def shared_conn(se: ShareEnv, gw: DevGateway) -> Iterator[GatewayConnection]:
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=DEV_TOKEN, share="auto",
                                                  request_timeout=20))
    try:
        yield conn
    finally:
        conn.shutdown()
        share_api.stop()
        reap()


def test_requests_two_stage_runs_and_session_subscriptions_work_through_the_share(
        shared_conn: GatewayConnection, gw: DevGateway) -> None:
    assert shared_conn.request("health")["ok"] is True
    odd = {"name": "report-\udcff.txt", "text": "naïve ☃"}  # a lone surrogate and non-ASCII
    assert shared_conn.request("echo", odd) == odd
    run = shared_conn.agent("hi agent", session_key="agent:main:ag")
    assert run.run_id and run.wait(20).text == "ECHO: hi agent"
    chat = shared_conn.chat("agent:main:c", "hello chat")
    assert chat.wait(20).text == "ECHO: hello chat"
    accepted = shared_conn.request("agent", {"message": "two", "idempotencyKey": "k-2"}, expect_final=False)
    assert accepted["status"] == "accepted"  # the interim answer is relayed too
    with shared_conn.subscribe_session("main") as sub:
        assert isinstance(sub.get(10), Snapshot)
        assert gw.wait_for(lambda g: g.session_subscribers("agent:main:main") == 1, 10)
        gw.publish_session_message("agent:main:main", {"text": "through the share"})
        item = sub.get(10)
        assert isinstance(item, Event) and item.event == "session.message"
    assert gw.wait_for(lambda g: g.session_subscribers("agent:main:main") == 0, 10)
    assert gw.sockets_accepted == 1


@pytest.mark.devgateway(auto_approve=False)
def test_pairing_required_surfaces_with_its_request_id_through_the_share(
        shared_conn: GatewayConnection, gw: DevGateway) -> None:
    with pytest.raises(PairingRequired) as info:
        shared_conn.request("health")
    (pending,) = gw.pending_pairing_requests()
    assert info.value.request_id == pending["requestId"]
    assert str(info.value).count("openclaw devices approve") == 1
    gw.approve(pending["requestId"])
    shared_conn.wait_for_pairing(timeout=30, poll_interval=0.2)
    assert shared_conn.request("health")["ok"] is True


def test_protocol_mismatch_surfaces_through_the_share(shared_conn: GatewayConnection, gw: DevGateway) -> None:
    gw.reject_next_like_protocol_3()
    with pytest.raises(ProtocolMismatch) as info:
        shared_conn.request("health")
    assert info.value.server_protocol == 3 and str(info.value).count("openclaw") <= 2


def test_connections_shows_the_share_process_with_its_one_socket(se: ShareEnv, gw: DevGateway) -> None:
    for _ in range(3):
        assert se.cli("call", "health").returncode == 0
    (share,) = se.share_processes()
    done = se.cli("connections", "--port", str(gw.port), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(p["pid"], p["connections"]) for p in report["processes"]] == [(share.pid, 1)]
    assert "share" in report["processes"][0]["cmdline"]


def test_a_cli_call_through_the_share_imports_no_engine(se: ShareEnv, gw: DevGateway) -> None:
    assert se.cli("call", "health").returncode == 0  # the share runs now
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "gwclient", "call", "health", "--json"],
                          env=se.env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    heavy = {m for m in loaded if m.split(".")[0] in ("websocket", "cryptography", "pykka", "dataclasses_json")
             or m in ("gwclient._connection", "gwclient._engine.transport", "gwclient._config.device",
                      "gwclient._core.frames")}
    assert "gwclient.share._client" in loaded and heavy == set()
    direct = subprocess.run([sys.executable, "-X", "importtime", "-m", "gwclient", "--share", "off", "call", "health"],
                            env=se.env, capture_output=True, text=True, timeout=60, check=False)
    assert "pykka" in direct.stderr and "websocket" in direct.stderr  # what the share path saves


def test_the_socket_of_a_config_nobody_uses_any_more_is_closed_after_the_linger(se: ShareEnv, gw: DevGateway) -> None:
    env = dict(se.env, GWCLIENT_SHARE_PERSIST="1")
    proc = se.python(CHILD, env=env)  # config A stays attached
    assert read_json_line(proc.stdout)["ready"]["kind"] == "snapshot"
    other = GatewayConfig(url=gw.url, token=DEV_TOKEN, request_timeout=11.0)  # config B: its own socket
    client = OneShot(open_share(start=False, timeout=10), other, 10)
    assert client.request("health")["ok"] is True
    assert gw.open_sockets == 2
    client.close()
    assert gw.wait_for(lambda g: g.open_sockets == 1, 30)  # B's closed; A's stays
    assert _talk(proc, "req health")["answer"]["ok"] is True
    assert gw.sockets_accepted == 2
    _finish(proc)
    assert "closing its socket" in se.log_text()
