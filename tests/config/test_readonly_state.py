"""A state dir on a read-only mount is usable with a stored device token: reading the
identity and the token takes no lock file and writes nothing (issue 16 point 5).  The
mount is real: a child interpreter runs in a private mount namespace (``unshare -rm``)
where the state dir is bind-mounted read-only, so every write fails with EROFS whoever
the caller is (root included)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _util import DEV_TOKEN

from gwclient import GatewayConfig, GatewayConnection
from gwclient.device import DeviceIdentity, DeviceTokenStore
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

CHILD = """
import logging, os, sys
from pathlib import Path
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
state = Path(os.environ["GWCLIENT_STATE_DIR"])
try:
    (state / "probe").write_text("x")
except OSError as exc:
    print("read-only:", exc.errno == __import__("errno").EROFS, flush=True)
from gwclient import GatewayConfig, GatewayConnection
conn = GatewayConnection.shared(GatewayConfig(url={url!r}, token=None, connect_timeout=5, request_timeout=10))
print("echo:", conn.request("echo", "from a read-only state dir"), flush=True)
conn.shutdown()
"""


def test_a_read_only_state_dir_works_with_a_stored_device_token(gw: DevGateway) -> None:
    state = Path(os.environ["GWCLIENT_STATE_DIR"])
    shared = GatewayConfig(url=gw.url, token=DEV_TOKEN, connect_timeout=5, request_timeout=10)
    hello = GatewayConnection.shared(shared).connect()  # pairs the device; its token is stored
    assert hello.auth is not None and hello.auth.device_token
    GatewayConnection.shutdown_all()
    device_id = DeviceIdentity.load_or_create(state).device_id
    assert DeviceTokenStore(state).load(shared.gateway_key, device_id, "operator") is not None
    connects = gw.handshakes_completed

    script = textwrap.dedent(CHILD.format(url=gw.url))
    mount = 'mount --bind "$D" "$D" && mount -o remount,ro,bind "$D" "$D" && exec "$PY" -c "$SCRIPT"'
    env = {**os.environ, "D": str(state), "PY": sys.executable, "SCRIPT": script}
    out = subprocess.run(["unshare", "-rm", "sh", "-c", mount], env=env, capture_output=True, text=True,
                         timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["read-only: True", "echo: from a read-only state dir"], out.stderr
    assert gw.handshakes_completed == connects + 1
    assert gw.connect_requests[-1]["auth"].get("deviceToken")  # with the stored token
    assert not (state / "probe").exists()
