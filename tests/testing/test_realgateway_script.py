"""scripts/real-gateway and the RealGateway helper's choices that need no running gateway:
port checks (fast, before any install), the openclaw version parameter, the kept token."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _util import scaled

from gwclient.testing._realgateway import (
    OPENCLAW_VERSION,
    RealGateway,
    RealGatewayError,
    find_openclaw,
    main,
    openclaw_version,
    port_problem,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def listener() -> Iterator[int]:
    """A port taken by a listening socket on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("port", ["0", "70000", "65534", "http"])
def test_an_impossible_port_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", port], prog="real-gateway")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port" in err and "Traceback" not in err


def test_a_taken_port_is_refused_at_once_before_any_install(
        listener: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty_cache = tmp_path / "cache"  # nothing installed: reaching the install would run npm
    t0 = time.monotonic()
    code = main(["serve", "--port", str(listener), "--home", str(tmp_path / "home"),
                 "--cache-dir", str(empty_cache)], prog="real-gateway")
    assert code == 1
    assert time.monotonic() - t0 < scaled(5)
    assert f"error: cannot start the gateway: port {listener} is in use on loopback" in capsys.readouterr().err
    assert not empty_cache.exists()


def test_older_gateways_also_need_port_plus_two(listener: int) -> None:
    assert port_problem(listener - 2) == (
        f"port {listener} is in use on loopback (the gateway also uses port+2)"
    )
    gw = RealGateway(port=listener - 2, cache_dir="/nonexistent", install=False)
    try:
        with pytest.raises(RealGatewayError, match=r"also uses port\+2"):
            gw.start()
    finally:
        gw.close()


def test_automatic_ports_leave_port_plus_two_free() -> None:
    gateways = [RealGateway(install=False) for _ in range(5)]
    try:
        for gw in gateways:
            assert gw.port != 18789 and port_problem(gw.port) is None
    finally:
        for gw in gateways:
            gw.close()


def test_the_openclaw_version_is_a_parameter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GWCLIENT_OPENCLAW_VERSION", raising=False)
    assert openclaw_version() == OPENCLAW_VERSION
    monkeypatch.setenv("GWCLIENT_OPENCLAW_VERSION", "2026.5.12")
    assert openclaw_version() == "2026.5.12"
    gw = RealGateway(install=False, cache_dir=tmp_path)
    try:
        assert gw.version == "2026.5.12" and gw.version_info == (2026, 5, 12)
        with pytest.raises(RealGatewayError, match=r"openclaw 2026\.5\.12 / Node .* not installed"):
            gw.start()
    finally:
        gw.close()
    assert find_openclaw(tmp_path) is None
    monkeypatch.setenv("GWCLIENT_OPENCLAW_VERSION", "latest")
    with pytest.raises(RealGatewayError, match="not an exact openclaw release"):
        openclaw_version()


def test_the_token_is_kept_in_the_home_between_runs(tmp_path: Path, listener: int) -> None:
    """Without --home every run has a new token (and says so); with --home the token is
    kept, so a restart without --token does not lock running clients out."""
    home = tmp_path / "home"

    def serve(*extra: str) -> str:
        out = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "real-gateway"), "--port", str(listener),
             "--cache-dir", str(tmp_path / "cache"), *extra],
            capture_output=True, text=True, timeout=scaled(30), check=False)
        assert out.returncode == 1 and "is in use" in out.stderr  # stops before starting
        return out.stdout

    serve("--home", str(home), "--token", "kept-token-1")
    kept = home / "realgw-token"
    assert kept.read_text(encoding="utf-8") == "kept-token-1\n"
    assert kept.stat().st_mode & 0o077 == 0
    serve("--home", str(home))
    assert kept.read_text(encoding="utf-8") == "kept-token-1\n"  # reused, not replaced
