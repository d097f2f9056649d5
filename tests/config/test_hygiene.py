"""Secrets and file-system hygiene (issue 16 point 8): a hello-ok's device token never
leaves through to_dict()/to_json(); the parents gwclient creates are private whatever the
umask; a blank HOME means unset; a symlinked state dir planted under a directory others
can write to is refused."""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from _util import DEV_TOKEN

from gwclient import ConfigError, GatewayConfig, GatewayConnection
from gwclient._config.locations import default_state_dir
from gwclient.device import DeviceIdentity, DeviceTokenStore
from gwclient.testing import DevGateway


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.usefixtures("shutdown_all_after")
def test_hello_ok_to_dict_and_to_json_do_not_carry_the_device_token(gw: DevGateway) -> None:
    hello = GatewayConnection.shared(GatewayConfig(url=gw.url, token=DEV_TOKEN)).connect()
    assert hello.auth is not None
    token = hello.auth.device_token
    assert token  # the gateway issued one
    for text in (hello.to_json(), json.dumps(hello.to_dict()), hello.auth.to_json(), repr(hello)):
        assert token not in text
    assert json.loads(hello.to_json())["auth"]["deviceToken"] == "<redacted>"  # there was one
    assert hello.auth.device_token == token  # the attribute itself is intact


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_000")
def test_parents_created_under_umask_000_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GWCLIENT_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    state = default_state_dir()
    assert state == home / ".local" / "state" / "gwclient"
    DeviceIdentity.load_or_create(state)
    DeviceTokenStore(state).save("gw", "dev", "operator", "tok", [])
    assert {p.name: oct(mode(p)) for p in (home / ".local", home / ".local" / "state", state)} == {
        ".local": "0o700", "state": "0o700", "gwclient": "0o700"}
    assert oct(mode(state / "device.json")) == oct(mode(state / "device-tokens.json")) == "0o600"


def test_a_blank_home_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    passwd_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    expected = passwd_home / ".local" / "state" / "gwclient"
    for blank in ("", "  "):
        assert default_state_dir({"HOME": blank}) == expected
        monkeypatch.setenv("HOME", blank)
        monkeypatch.delenv("GWCLIENT_STATE_DIR", raising=False)
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
        assert default_state_dir() == expected
        assert GatewayConfig(url="ws://127.0.0.1:1", token="t").effective_state_dir == expected
    assert default_state_dir({}) == expected  # unset: the same
    assert default_state_dir({"HOME": "/somewhere"}) == Path("/somewhere/.local/state/gwclient")


@pytest.mark.parametrize("parent_mode", [0o777, 0o1777, 0o770], ids=["world-writable", "sticky-tmp", "group-writable"])
def test_a_symlinked_state_dir_under_a_parent_others_can_write_is_refused(tmp_path: Path, parent_mode: int) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(parent_mode)
    link = shared / "gwstate"
    link.symlink_to(real)
    with pytest.raises(ConfigError) as info:
        DeviceIdentity.load_or_create(link)
    assert str(link) in str(info.value) and "symbolic link" in str(info.value)
    with pytest.raises(ConfigError):
        DeviceTokenStore(link).save("gw", "dev", "operator", "tok", [])
    assert list(real.iterdir()) == []  # nothing written through the link
    assert mode(real) == 0o700
    # The same directory through a link in a directory only its owner can write: followed.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "gwstate").symlink_to(real)
    identity = DeviceIdentity.load_or_create(private / "gwstate")
    assert DeviceIdentity.load_or_create(real) == identity
