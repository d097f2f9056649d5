"""A real OpenSSH server for tests: ``sshd -D -e -f <temp config>`` on a free 127.0.0.1 port.

Everything it uses lives in one temporary folder: a fresh ed25519 host key, one generated
ed25519 client key (the only authorized key), the config, the pid file and the log.  The
server listens on 127.0.0.1 only, takes public keys only (no passwords, no keyboard-
interactive, no PAM), allows local forwarding (``ssh -L``) to loopback destinations only,
and logs every connection, authentication and forward (``LogLevel DEBUG1``) to
:attr:`log_path`, which the counters read.

Users: sshd lets in only existing accounts, and the tests must not create any, so the
login user is the one running the tests.  As root (CI containers) that means root login
with the key (``PermitRootLogin prohibit-password``: never with a password); as any other
user sshd runs unprivileged and ``PermitRootLogin no``.

Install: ``scripts/install-sshd`` unpacks Debian's ``openssh-server`` into the cache
(:mod:`gwclient.testing._sshd_install`: nothing is installed on the machine); that sshd is
the default, else ``/usr/sbin/sshd``; ``GWCLIENT_SSHD`` names another.  A missing binary is
a :class:`SshdError` saying so, never a skip.  The unpacked sshd runs with
``LD_LIBRARY_PATH`` pointing at the libraries unpacked with it; as root on a machine
without the ``sshd`` privilege-separation account (which only the package's install script
would create), it also gets a private passwd file through ``libnss_wrapper``
(``NSS_WRAPPER_PASSWD``): the machine's accounts plus ``sshd`` with nobody's ids.  As root,
sshd's compiled-in privilege-separation folder ``/run/sshd`` (empty, on tmpfs) is created
if missing.

    >>> with OpenSshServer() as sshd:                     # doctest: +SKIP
    ...     sshd.port, sshd.client_key_path, sshd.known_hosts_line
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gwclient.testing._sshd_install import SshdInstall, find_sshd

__all__ = ["DEFAULT_SSHD", "OpenSshServer", "SshdError", "new_ed25519_key"]

DEFAULT_SSHD = "/usr/sbin/sshd"
_PRIVSEP_DIR = Path("/run/sshd")
_POLL = 0.02
_LISTENING_RE = re.compile(rb"Server listening on 127\.0\.0\.1 port (\d+)")
_IN_USE_RE = re.compile(rb"Address already in use|Cannot bind any address")
_VERSION_RE = re.compile(r"OpenSSH_(\d+)\.(\d+)")


class SshdError(RuntimeError):
    """sshd is missing, did not start, or did not stop."""


def new_ed25519_key(path: Path, comment: str = "gwclient-test") -> str:
    """Write a new unencrypted ed25519 private key (OpenSSH format, mode 0600) to ``path``
    and its public key to ``path.pub``; return the public key line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {comment}"
    Path(f"{path}.pub").write_text(line + "\n", encoding="utf-8")
    return line


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _sshd_version(sshd: str, env: dict[str, str] | None = None) -> tuple[int, int]:
    out = subprocess.run([sshd, "-V"], capture_output=True, text=True, timeout=30, check=False, env=env)
    match = _VERSION_RE.search(out.stderr + out.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


class OpenSshServer:
    """One ``sshd`` on 127.0.0.1 with its own host key and one authorized client key.

    :meth:`stop` / :meth:`start` keep the port, the keys and the log (a restart looks like
    the same server to a client); :meth:`close` also removes the folder.  Session
    processes (one per SSH connection) are children of the listener: see
    :meth:`session_pids` and :meth:`kill_sessions`.  Counters come from the log.
    """

    def __init__(self, *, sshd: str | None = None, port: int | None = None,
                 startup_timeout: float = 30.0, extra_config: str = "") -> None:
        found = find_sshd() if sshd is None else SshdInstall(sshd=sshd)
        if found is None or not (os.path.isfile(found.sshd) and os.access(found.sshd, os.X_OK)):
            where = "in the cache or at " + DEFAULT_SSHD if found is None else "at " + found.sshd
            raise SshdError(
                f"OpenSSH server not found {where}: run scripts/install-sshd (it unpacks Debian's "
                "openssh-server into the cache) before the real-sshd tests"
            )
        self.sshd = found.sshd
        self._install = found
        self.user = getpass.getuser()
        self._startup_timeout = startup_timeout
        self._fixed_port = port
        self.port = port if port is not None else _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gwclient-sshd-"))
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        self.host_key_line = new_ed25519_key(self.host_key_path, "gwclient-test-host")
        self.client_key_path = self.dir / "id_ed25519"
        self.client_key_line = new_ed25519_key(self.client_key_path, "gwclient-test-client")
        self.authorized_keys_path = self.dir / "authorized_keys"
        self.authorized_keys_path.write_text(self.client_key_line + "\n", encoding="utf-8")
        self.config_path = self.dir / "sshd_config"
        self.pid_path = self.dir / "sshd.pid"
        self.log_path = self.dir / "sshd.log"
        self._extra = extra_config
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self.env = self._environment()
        if os.geteuid() == 0:
            _PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)

    def _environment(self) -> dict[str, str]:
        """sshd's environment: the unpacked libraries, and as root without an ``sshd``
        account, a private passwd file with one (``libnss_wrapper``)."""
        env = self._install.env()
        if os.geteuid() != 0 or self._install.nss_wrapper is None:
            return env
        try:
            pwd.getpwnam("sshd")
            return env  # the machine has the privilege-separation account
        except KeyError:
            pass
        try:
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        except KeyError:
            uid = gid = 65534
        users = [":".join([p.pw_name, "x", str(p.pw_uid), str(p.pw_gid), p.pw_gecos, p.pw_dir, p.pw_shell])
                 for p in pwd.getpwall()]
        users.append(f"sshd:x:{uid}:{gid}:sshd privilege separation:{_PRIVSEP_DIR}:/usr/sbin/nologin")
        groups = [":".join([g.gr_name, "x", str(g.gr_gid), ",".join(g.gr_mem)]) for g in grp.getgrall()]
        passwd, group = self.dir / "passwd", self.dir / "group"
        passwd.write_text("\n".join(users) + "\n", encoding="utf-8")
        group.write_text("\n".join(groups) + "\n", encoding="utf-8")
        env.update(LD_PRELOAD=self._install.nss_wrapper, NSS_WRAPPER_PASSWD=str(passwd),
                   NSS_WRAPPER_GROUP=str(group))
        return env

    # -- config ---------------------------------------------------------------------------

    def _config(self) -> str:
        root = os.geteuid() == 0
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.pid_path}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            # Tests run as root in CI: the key is the only way in, never a password.
            f"PermitRootLogin {'prohibit-password' if root else 'no'}",
            "UsePAM no",
            # The key files live in the temporary folder, not in a home directory that
            # StrictModes could vouch for (/tmp is world-writable).
            "StrictModes no",
            "AllowTcpForwarding local",
            "PermitOpen 127.0.0.1:* localhost:*",
            "AllowAgentForwarding no",
            "AllowStreamLocalForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "PermitTunnel no",
            "GatewayPorts no",
            "PrintMotd no",
            "MaxStartups 100",
            "LogLevel DEBUG1",  # DEBUG1 for the direct-tcpip (forward) lines
        ]
        if _sshd_version(self.sshd, self.env) >= (9, 8):
            lines.append("PerSourcePenalties no")  # tests fail auth on purpose, from 127.0.0.1
            # An unpacked sshd (not in /usr/sbin): its helper binaries are next to it, not at
            # the compiled-in /usr/lib/openssh paths (OpenSSH 9.8 split sshd-session, 10.0 sshd-auth).
            helpers = Path(self.sshd).resolve().parent.parent / "lib" / "openssh"
            for option, name in (("SshdSessionPath", "sshd-session"), ("SshdAuthPath", "sshd-auth")):
                if self.sshd != DEFAULT_SSHD and (helpers / name).is_file():
                    lines.append(f"{option} {helpers / name}")
        if self._extra:
            lines.append(self._extra)
        return "\n".join(lines) + "\n"

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self) -> OpenSshServer:
        """Start the listener and return once it listens (retries another free port if the
        chosen one was taken meanwhile, unless a port was given)."""
        if self._closed:
            raise SshdError("this OpenSshServer is closed")
        if self.running:
            return self
        for _attempt in range(5):
            try:
                self._launch()
                return self
            except _PortTaken:
                if self._fixed_port is not None:
                    raise
                self.port = _free_port()
        raise SshdError("no free port for sshd after 5 attempts")

    def _launch(self) -> None:
        self.config_path.write_text(self._config(), encoding="utf-8")
        with open(self.log_path, "ab") as log:
            log.write(f"--- OpenSshServer: starting on 127.0.0.1:{self.port} ---\n".encode())
            offset = log.tell()
            proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(self.config_path)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self._proc = proc
        deadline = time.monotonic() + self._startup_timeout
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            data = b""
            while True:
                data += log.read()
                if _LISTENING_RE.search(data):
                    return
                if proc.poll() is not None or time.monotonic() >= deadline:
                    break
                time.sleep(_POLL)  # waiting for another process's log: there is no event to wait on
        self._terminate()
        text = data.decode("utf-8", errors="replace")
        if _IN_USE_RE.search(data):
            raise _PortTaken(text)
        raise SshdError(f"sshd did not start on 127.0.0.1:{self.port}:\n{text[-2000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the listener **and** every session (like ``systemctl stop ssh`` with
        KillMode=control-group); the port, keys and log stay for :meth:`start`."""
        self.kill_sessions()
        self._terminate(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def close(self) -> None:
        """Stop and remove the temporary folder; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> OpenSshServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OpenSshServer 127.0.0.1:{self.port} {'running' if self.running else 'stopped'}>"

    # -- sessions and counters --------------------------------------------------------------

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        import psutil

        if self._proc is None or self._proc.poll() is not None:
            return []
        try:
            return [p.pid for p in psutil.Process(self._proc.pid).children()
                    if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            return []

    def kill_sessions(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> list[int]:
        """Kill every session process (and its own children) with ``sig``; wait until
        they are gone.  Returns the killed session pids."""
        import psutil

        pids = self.session_pids()
        procs: list[Any] = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                session = psutil.Process(pid)
                procs.extend([session, *session.children(recursive=True)])
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _gone, alive = psutil.wait_procs(procs, timeout=timeout)
        if alive:
            raise SshdError(f"sshd session processes {[p.pid for p in alive]} survived signal {sig}")
        return pids

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def connections(self) -> int:
        """TCP connections sshd accepted so far (``Connection from ...`` log lines)."""
        return len(re.findall(r"^Connection from 127\.0\.0\.1 port \d+ on", self.log_text(), re.M))

    @property
    def authenticated(self) -> int:
        """Successful logins so far (``Accepted publickey`` log lines)."""
        return len(re.findall(r"^Accepted publickey for ", self.log_text(), re.M))

    @property
    def auth_failures(self) -> int:
        """Rejected keys (``Failed publickey`` log lines)."""
        return len(re.findall(r"^Failed publickey for |^Connection closed by authenticating user ",
                              self.log_text(), re.M))

    @property
    def forwards(self) -> list[tuple[str, int]]:
        """Local forwards (``direct-tcpip``) that reached their target, in order: each
        requested target minus those sshd could not connect to."""
        text = self.log_text()
        requested = [(h, int(p)) for h, p in re.findall(
            r"server_request_direct_tcpip: originator \S+ port \d+, target (\S+) port (\d+)", text)]
        for host, port in re.findall(r"^connect_to (\S+) port (\d+): failed", text, re.M):
            if (host, int(port)) in requested:
                requested.remove((host, int(port)))
        return requested

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no SSH session is left (e.g. the client closed its tunnel)."""
        import psutil

        procs = []
        for pid in self.session_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.append(psutil.Process(pid))
        _gone, alive = psutil.wait_procs(procs, timeout=timeout)
        if alive:
            raise SshdError(f"sshd sessions {[p.pid for p in alive]} still running after {timeout:g} s")

    @property
    def host_key_fingerprint(self) -> str:
        """``SHA256:...`` of the host key, as ``ssh-keygen -l`` shows it."""
        blob = base64.b64decode(self.host_key_line.split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    @property
    def known_hosts_line(self) -> str:
        """The ``known_hosts`` line for this server (``[127.0.0.1]:port ssh-ed25519 ...``)."""
        key = " ".join(self.host_key_line.split()[:2])
        return f"[127.0.0.1]:{self.port} {key}"


class _PortTaken(SshdError):
    pass
