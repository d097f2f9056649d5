"""The RealGateway helper against a real openclaw@2026.9.6 gateway (or the release named
by ``GWCLIENT_OPENCLAW_VERSION``).

One gateway is shared by the module (startup is ~10 s).  Every test that needs it running
calls ``start()`` first (a no-op when it already runs), so the order of the tests does not
matter.  The first test's setup may include installing Node + openclaw into the cache
(~35 s from a warm npm cache, minutes from a cold one), hence the long timeout.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import websocket

from gwclient.testing._realgateway import RealGateway, RealGatewayError

pytestmark = [pytest.mark.realgateway, pytest.mark.timeout(600)]

_REAL_STATE = Path.home() / ".openclaw"
_BOGUS_URL = "ws://127.0.0.1:9"


def _snapshot(path: Path) -> dict[str, int] | None:
    """mtimes of everything under *path* (``None`` if it does not exist)."""
    if not path.exists():
        return None
    entries = [path, *path.rglob("*")]
    return {str(p): p.lstat().st_mtime_ns for p in entries}


@pytest.fixture(scope="module")
def real_state_before() -> dict[str, int] | None:
    return _snapshot(_REAL_STATE)


@pytest.fixture(scope="module")
def gateway(real_state_before: dict[str, int] | None) -> Iterator[RealGateway]:
    gw = RealGateway()
    # The caller's OPENCLAW_GATEWAY_* must not reach the gateway (nor the CLI).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENCLAW_GATEWAY_URL", _BOGUS_URL)
        mp.setenv("OPENCLAW_GATEWAY_TOKEN", "bogus-caller-token")
        gw.start()
    with gw:
        yield gw
    assert not gw.home.exists(), "the temporary home was not removed"


def _challenge(url: str) -> dict[str, object]:
    ws = websocket.create_connection(url, suppress_origin=True, timeout=10)
    try:
        frame: dict[str, object] = json.loads(ws.recv())
    finally:
        ws.close()
    return frame


def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def test_ready_and_reachable(gateway: RealGateway) -> None:
    gateway.start()
    assert gateway.running
    assert gateway.url == f"ws://127.0.0.1:{gateway.port}"
    assert gateway.port != 18789
    assert re.search(r"\[gateway\] ready\b", gateway.log_text())

    frame = _challenge(gateway.url)
    assert frame["type"] == "event"
    assert frame["event"] == "connect.challenge"
    payload = frame["payload"]
    assert isinstance(payload, dict)
    assert payload["nonce"]

    # The token set up by the helper is the one the gateway enforces.
    ws = websocket.create_connection(gateway.url, suppress_origin=True, timeout=10)
    try:
        json.loads(ws.recv())
        connect = {
            "type": "req",
            "id": "1",
            "method": "connect",
            "params": {
                "minProtocol": 4,
                "maxProtocol": 4,
                "client": {"id": "cli", "mode": "cli", "version": "0.0.0", "platform": "linux"},
                "scopes": ["operator.read"],
                "auth": {"token": gateway.token},
            },
        }
        ws.send(json.dumps(connect))
        res = json.loads(ws.recv())
    finally:
        ws.close()
    assert res["ok"] is True, res.get("error")
    assert res["payload"]["protocol"] == 4


def test_home_is_private(gateway: RealGateway, real_state_before: dict[str, int] | None) -> None:
    gateway.start()
    assert gateway.home.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert gateway.state_dir == gateway.home / ".openclaw"
    assert gateway.config_path.is_file()
    assert gateway.log_path.is_file()
    assert gateway.log_path.is_relative_to(gateway.home)

    pid = gateway.pid
    assert pid is not None
    env = psutil.Process(pid).environ()
    assert env["HOME"] == str(gateway.home)
    assert env["OPENCLAW_STATE_DIR"] == str(gateway.state_dir)
    assert "OPENCLAW_GATEWAY_URL" not in env
    assert env.get("OPENCLAW_GATEWAY_TOKEN") == gateway.token
    assert gateway.token not in " ".join(psutil.Process(pid).cmdline())

    # The gateway's JSON file log is redirected from /tmp/openclaw into the home.
    match = re.search(r"\[gateway\] log file: (\S+)", gateway.log_text())
    assert match, "the gateway did not report its log file"
    assert Path(match.group(1)) == gateway.file_log_path
    assert gateway.file_log_path.is_file()

    text = gateway.log_text()
    assert "\x1b[" not in text, "ANSI colour codes in the console log"
    assert gateway.token not in gateway.log_path.read_text(encoding="utf-8", errors="replace")
    assert gateway.token not in repr(gateway)

    assert _snapshot(_REAL_STATE) == real_state_before, "the real ~/.openclaw was touched"


def test_devices_cli(gateway: RealGateway) -> None:
    gateway.start()
    devices = gateway.devices_list()
    assert isinstance(devices["pending"], list)
    assert isinstance(devices["paired"], list)

    # The wording changed in 2026.9 ("unknown requestId" before).
    with pytest.raises(RealGatewayError, match=r"No pending device request|unknown requestId") as info:
        gateway.devices_approve("no-such-request")
    assert gateway.token not in str(info.value)
    with pytest.raises(ValueError):
        gateway.devices_approve("--latest")


def test_restart_keeps_port_and_home(gateway: RealGateway) -> None:
    gateway.start()
    port, home, pid = gateway.port, gateway.home, gateway.pid
    assert pid is not None
    old_tree = _tree(pid)
    config = gateway.config_path.read_text(encoding="utf-8")

    gateway.restart()

    assert gateway.running
    assert (gateway.port, gateway.home) == (port, home)
    assert gateway.pid != pid
    assert not [p.pid for p in old_tree if p.is_running()], "old gateway processes survived"
    assert gateway.config_path.read_text(encoding="utf-8") == config
    assert gateway.log_text().count("--- RealGateway: starting on port") >= 2
    assert _challenge(gateway.url)["event"] == "connect.challenge"


def test_stop_leaves_nothing(gateway: RealGateway) -> None:
    gateway.start()
    pid = gateway.pid
    assert pid is not None
    tree = _tree(pid)
    # 2026.9 runs helper processes (spawn broker, sqlite worker); older releases may not.
    assert len(tree) > (1 if gateway.version_info >= (2026, 9) else 0)

    gateway.stop()

    assert gateway.pid is None
    assert not gateway.running
    assert not [p.pid for p in tree if p.is_running()], "gateway processes survived stop()"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).create_time() != tree[0].create_time()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gateway.port), timeout=5).close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("realgw-")]
    gateway.stop()  # idempotent
    assert gateway.home.is_dir(), "stop() must keep the home for a restart"
    assert os.listdir(gateway.state_dir)
