"""The local share against the real gateway (openclaw 2026.9.6 via ``RealGateway``), with
real processes and real restarts; sockets are counted by the operating system (psutil),
never by gwclient's own counters.  One gateway serves the module (it takes ~10 s to
start); every test has its own share environment and kills the shares it started."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from _share_util import CHILD, ShareEnv, read_json_line, share_env

from gwclient import share as share_api
from gwclient.testing._realgateway import RealGateway

pytestmark = [pytest.mark.realgateway, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def gateway() -> Iterator[RealGateway]:
    with RealGateway() as gw:
        yield gw


@pytest.fixture
def se(gateway: RealGateway) -> Iterator[ShareEnv]:
    gateway.start()  # no-op unless a restart test left it stopped
    with share_env(gateway.url, gateway.token) as env:
        yield env


def gateway_peers(gw: RealGateway) -> set[int]:
    """Peer ports of the ESTABLISHED connections the gateway accepted (its own view)."""
    assert gw.pid is not None
    return {c.raddr.port for c in psutil.Process(gw.pid).net_connections(kind="inet")
            if c.laddr and c.laddr.port == gw.port and c.raddr and c.status == psutil.CONN_ESTABLISHED}


def client_pids(gw: RealGateway) -> list[int | None]:
    """The owner of every ESTABLISHED client end to the gateway port on this machine,
    the gateway's own process tree left out (it may connect to itself)."""
    assert gw.pid is not None
    gateway = psutil.Process(gw.pid)
    own = {gw.pid, *(p.pid for p in gateway.children(recursive=True))}
    return sorted((c.pid for c in psutil.net_connections(kind="inet")
                   if c.raddr and c.raddr.port == gw.port and c.status == psutil.CONN_ESTABLISHED
                   and c.pid not in own), key=lambda pid: pid or 0)


def the_share(se: ShareEnv) -> int:
    (share,) = se.share_processes()
    return share.pid


def share_ports(se: ShareEnv, gw: RealGateway) -> set[int]:
    return {c.laddr.port for p in se.share_processes() for c in p.net_connections(kind="inet")
            if c.raddr and c.raddr.port == gw.port and c.status == psutil.CONN_ESTABLISHED}


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


def test_twenty_concurrent_cli_calls_make_one_share_and_one_gateway_socket(se: ShareEnv, gateway: RealGateway) -> None:
    procs = [se.spawn_cli("call", "health", "--json") for _ in range(20)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out)["ok"] is True
    assert client_pids(gateway) == [the_share(se)]  # counted by the OS: one socket, the share's
    assert len(share_ports(se, gateway)) == 1 and share_ports(se, gateway) <= gateway_peers(gateway)
    status = share_api.status()
    assert status["attaches"] == 20
    assert status["gateways"][0]["connection"] == 1 and status["gateways"][0]["reconnects"] == 0


def test_two_attached_processes_both_see_a_broadcast_after_their_snapshot(se: ShareEnv, gateway: RealGateway) -> None:
    a, b = se.python(CHILD), se.python(CHILD)
    for proc in (a, b):
        assert read_json_line(proc.stdout)["ready"]["kind"] == "snapshot"
    marker = f"share-{uuid.uuid4().hex[:8]}"
    # From one of them: the same effective config, so the same gateway socket (a process
    # with another config, e.g. another request_timeout, gets a socket of its own).
    assert _talk(a, "req system-event " + json.dumps({"text": marker}))["answer"] == {"ok": True}
    for proc in (a, b):
        while True:  # presence events of other clients may come first
            seen = _talk(proc, "event presence")["event"]
            if marker in json.dumps(seen["payload"]):
                break
        assert seen["seq"] >= 1
    assert client_pids(gateway) == [the_share(se)]
    for proc in (a, b):
        _finish(proc)


def test_sigkill_of_the_share_mid_request_fails_it_and_the_process_carries_on(
        se: ShareEnv, gateway: RealGateway) -> None:
    proc = se.python(CHILD)
    assert read_json_line(proc.stdout)["ready"]["kind"] == "snapshot"
    (old,) = se.share_processes()
    # An unknown run id: the gateway holds agent.wait until its timeout (20 s).
    assert _talk(proc, 'submit agent.wait {"runId": "no-such-run", "timeoutMs": 20000}') == {"sent": True}
    for _ in range(1000):  # the share has relayed it (its own count; no sleeping)
        if share_api.status()["gateways"][0]["requests_relayed"] >= 1:
            break
    old.send_signal(signal.SIGKILL)
    answer = read_json_line(proc.stdout)
    assert answer["error"] == "Disconnected", answer
    assert _talk(proc, "req health")["answer"]["ok"] is True  # a new share
    (new,) = se.share_processes()
    assert new.pid != old.pid
    assert client_pids(gateway) == [new.pid]
    _finish(proc)


def test_a_gateway_restart_gives_each_attached_process_one_reconnect_and_one_socket(
        se: ShareEnv, gateway: RealGateway) -> None:
    a, b = se.python(CHILD), se.python(CHILD)
    for proc in (a, b):
        assert read_json_line(proc.stdout)["ready"] == {"kind": "snapshot", "number": 1}
    assert client_pids(gateway) == [the_share(se)]
    before = share_ports(se, gateway)
    gateway.restart()
    for proc in (a, b):
        pushes = _talk(proc, "until 1")["pushes"]
        assert [p for p in pushes if p["kind"] == "snapshot"] == [{"kind": "snapshot", "number": 2}]
        assert _talk(proc, "req health")["answer"]["ok"] is True
    after = share_ports(se, gateway)
    assert client_pids(gateway) == [the_share(se)] and len(after) == 1 and after != before  # one new socket
    assert share_api.status()["gateways"][0]["reconnects"] == 1
    for proc in (a, b):
        _finish(proc)
