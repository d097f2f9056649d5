"""scripts/install-sshd: Debian's openssh-server unpacked into a cache, nothing installed.

A fresh install into a temporary cache, with package lists apt cannot use (so the
installer must fetch its own, into the cache), run as an unprivileged user when the tests
run as root: afterwards the machine's package state, apt's lists and caches, the service
links and the accounts are as they were, and the unpacked sshd serves a real SSH login.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gwclient.testing import OpenSshServer
from gwclient.testing._sshd_install import find_sshd

REPO = Path(__file__).resolve().parents[2]

# What an install of the package (dpkg, apt, systemd, adduser) would have changed.
WATCHED = [Path("/var/lib/dpkg/status"), Path("/var/lib/apt/lists"), Path("/var/cache/apt"),
           Path("/etc/systemd/system"), Path("/etc/passwd"), Path("/etc/group"), Path("/etc/ssh"),
           Path("/usr/sbin/sshd"), Path("/usr/sbin/policy-rc.d"), Path("/lib/systemd/system/ssh.service")]


def _fingerprint(path: Path) -> list[tuple[str, int, int, str]]:
    """Every file under *path* (or *path* itself): name, size, mtime and content hash."""
    if not path.exists():
        return []
    files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*"))
    out = []
    for item in files:
        try:
            st = item.lstat()
            small = item.is_file() and st.st_size < 1 << 20  # larger ones: size and mtime
            digest = hashlib.sha256(item.read_bytes()).hexdigest() if small else ""
        except (PermissionError, FileNotFoundError):
            continue
        out.append((str(item), st.st_size, st.st_mtime_ns, digest))
    return out


def _machine() -> dict[str, list[tuple[str, int, int, str]]]:
    return {str(p): _fingerprint(p) for p in WATCHED}


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """A folder that an unprivileged user can reach (pytest's own is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="gwclient-sshd-install-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(300)
def test_fresh_install_changes_nothing_on_the_machine_and_the_sshd_serves(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    empty_lists = tmp_path / "no-lists"
    (empty_lists / "partial").mkdir(parents=True)
    apt_conf = tmp_path / "apt.conf"
    apt_conf.write_text(f'Dir::State::Lists "{empty_lists}";\n', encoding="utf-8")
    env = {**os.environ, "GWCLIENT_CACHE": str(cache), "APT_CONFIG": str(apt_conf), "HOME": str(tmp_path)}
    # The installer (a script and one standard-library module) copied where an unprivileged
    # user can read it: a checkout may be private to its owner.
    copy = tmp_path / "checkout"
    (copy / "scripts").mkdir(parents=True)
    (copy / "gwclient" / "testing").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "install-sshd", copy / "scripts" / "install-sshd")
    shutil.copy(REPO / "gwclient" / "testing" / "_sshd_install.py", copy / "gwclient" / "testing")
    command = ["bash", str(copy / "scripts" / "install-sshd")]
    if os.geteuid() == 0:  # as root the test proves it needs no root: run it as nobody
        nobody = pwd.getpwnam("nobody")
        for item in [tmp_path, *tmp_path.rglob("*")]:
            os.chown(item, nobody.pw_uid, nobody.pw_gid)
        command = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *command]
    before = _machine()
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert out.returncode == 0, out.stderr
    assert _machine() == before  # no package, service, account or apt state changed
    sshd = Path(out.stdout.strip().splitlines()[-1])
    assert sshd == cache / "sshd" / "root" / "usr" / "sbin" / "sshd" and sshd.is_file()
    assert "downloading package lists into" in out.stderr  # the unusable lists were not used
    assert not (cache / "sshd" / "apt").exists()  # apt's lists and caches were dropped afterwards
    assert not list((cache / "sshd").glob("*.deb")) and not list((cache / "sshd").glob("debs.*"))

    # Run again: reused, silent, the same path.
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (again.returncode, again.stdout, again.stderr) == (0, out.stdout, "")

    os.environ["GWCLIENT_CACHE"], saved = str(cache), os.environ.get("GWCLIENT_CACHE")
    try:
        found = find_sshd()
        assert found is not None and found.sshd == str(sshd)
        with OpenSshServer() as server:
            assert server.sshd == str(sshd)
            probe = subprocess.run(
                [sys.executable, "-c", "import paramiko, sys\n"
                 "c = paramiko.SSHClient(); c.set_missing_host_key_policy(paramiko.AutoAddPolicy())\n"
                 f"c.connect('127.0.0.1', {server.port}, username={server.user!r}, "
                 f"key_filename={str(server.client_key_path)!r}, allow_agent=False, look_for_keys=False)\n"
                 "print(c.get_transport().is_authenticated()); c.close()"],
                capture_output=True, text=True, timeout=60, check=False)
            assert probe.stdout.strip() == "True", probe.stderr + server.log_text()
            assert server.authenticated == 1
    finally:
        if saved is None:
            del os.environ["GWCLIENT_CACHE"]
        else:
            os.environ["GWCLIENT_CACHE"] = saved
    assert _machine() == before
