"""SSH settings and host keys: what ``ssh`` would resolve for a target (``~/.ssh/config``),
known_hosts checks under the ``strict``/``openssh`` policies, and the keys to offer.

Imported only when a tunnel is opened: it needs ``paramiko``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko  # type: ignore[import-untyped]

from .._config.config import SshTunnelConfig
from .._errors import ConfigError

log = logging.getLogger("gwclient.tunnel")

_DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
_DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
_DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
_ACCEPT_NEW = frozenset({"accept-new", "no", "off", "false"})

def _expand(path: str) -> Path:
    return Path(os.path.expanduser(path))


def describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def fingerprint(key: Any) -> str:
    fp = getattr(key, "fingerprint", None)
    if isinstance(fp, str) and fp:
        return fp
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Resolved:
    """One SSH target after ``~/.ssh/config`` (like ``ssh`` would see it)."""

    target: str            # for messages: user@host:port as configured
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...]
    explicit_identity: bool
    known_hosts: tuple[Path, ...]
    write_known_hosts: Path | None
    host_key_names: tuple[str, ...]
    accept_new: bool
    policy: str


def resolve(ssh: SshTunnelConfig, ssh_config_file: Path | None,
             known_hosts: Sequence[Path] | None) -> Resolved:
    options: dict[str, Any] = {}
    if ssh_config_file is not None:
        try:
            options = dict(paramiko.SSHConfig.from_path(str(ssh_config_file)).lookup(ssh.host))
        except FileNotFoundError:
            options = {}
        except OSError as exc:
            raise ConfigError(f"cannot read SSH config {ssh_config_file}: {describe_os_error(exc)}") from exc
        except Exception as exc:  # paramiko ConfigParseError, Match exec failures...
            raise ConfigError(f"cannot use SSH config {ssh_config_file}: {type(exc).__name__}") from exc
    for name in ("proxycommand", "proxyjump"):
        value = options.get(name)
        if value and str(value).lower() != "none":
            raise ConfigError(
                f"the SSH config for {ssh.host!r} uses {name} (from {ssh_config_file}), which gwclient's "
                f"built-in SSH client does not support; open the tunnel yourself "
                f"(ssh -N -L <local port>:127.0.0.1:{ssh.remote_port} {ssh.target}) and gwclient reuses it"
            )
    hostname = str(options.get("hostname") or ssh.host)
    port = ssh.port
    if port == 22 and options.get("port"):
        try:
            port = int(options["port"])
        except ValueError as exc:
            raise ConfigError(f"invalid Port in SSH config for {ssh.host!r}") from exc
    user = ssh.user or options.get("user")
    if not user:
        try:
            user = getpass.getuser()
        except Exception as exc:  # no USER/LOGNAME and no passwd entry
            raise ConfigError("no SSH user: set one in the SSH target (user@host)") from exc
    if ssh.identity_file:
        identities: tuple[Path, ...] = (_expand(ssh.identity_file),)
    else:
        configured = options.get("identityfile") or []
        identities = tuple(_expand(p) for p in (configured or _DEFAULT_IDENTITIES))
    if known_hosts is not None:
        files = tuple(known_hosts)
        write = files[0] if files else None
    else:
        user_files = str(options.get("userknownhostsfile") or "").split() or list(_DEFAULT_USER_KNOWN_HOSTS)
        global_files = str(options.get("globalknownhostsfile") or "").split() or list(_DEFAULT_GLOBAL_KNOWN_HOSTS)
        users = [_expand(p) for p in user_files if p.lower() != "none"]
        files = tuple(users + [_expand(p) for p in global_files if p.lower() != "none"])
        write = users[0] if users else None
    alias = str(options.get("hostkeyalias") or hostname)
    name = alias if port == 22 else f"[{alias}]:{port}"
    strict = str(options.get("stricthostkeychecking") or "ask").lower()
    accept_new = ssh.host_key_policy == "openssh" and strict in _ACCEPT_NEW
    return Resolved(
        target=f"{ssh.target}:{ssh.port}", hostname=hostname, port=port, user=str(user),
        identity_files=identities, explicit_identity=bool(ssh.identity_file), known_hosts=files,
        write_known_hosts=write, host_key_names=(name,), accept_new=accept_new,
        policy=ssh.host_key_policy,
    )


class HostKeys:
    """known_hosts lookups and checks for one resolved target."""

    def __init__(self, res: Resolved) -> None:
        self._res = res
        self._keys = paramiko.HostKeys()
        for path in res.known_hosts:
            if not path.is_file():
                continue
            try:
                self._keys.load(str(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read known_hosts file {path}: {describe_os_error(exc)}") from exc
            except Exception as exc:  # a corrupt entry paramiko does not skip
                raise ConfigError(f"cannot parse known_hosts file {path} ({type(exc).__name__})") from exc
        self.known: dict[str, Any] = {}
        for name in res.host_key_names:
            entry = self._keys.lookup(name)
            if entry:
                for keytype in entry.keys():
                    self.known.setdefault(keytype, entry[keytype])

    def prefer_known_types(self, transport: Any) -> None:
        """Ask the server for a key type we already know (as OpenSSH and SSHClient do)."""
        if not self.known:
            return
        options = transport.get_security_options()
        offered = list(options.key_types)
        wanted: list[str] = []
        for keytype in self.known:
            if keytype == "ssh-rsa":
                wanted.extend(t for t in ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if t in offered)
            elif keytype in offered:
                wanted.append(keytype)
        if wanted:
            options.key_types = wanted + [t for t in offered if t not in wanted]

    def verify(self, server_key: Any) -> None:
        res = self._res
        fp = f"{server_key.get_name()} {fingerprint(server_key)}"
        where = f"{res.hostname}:{res.port}"
        files = ", ".join(str(p) for p in res.known_hosts) or "no known_hosts file"
        if self.known:
            ours = self.known.get(server_key.get_name())
            if ours is not None and ours.asbytes() == server_key.asbytes():
                return
            raise ConfigError(
                f"SSH host key of {where} does not match known_hosts ({files}): the server presented "
                f"{fp}. Either someone is intercepting the connection or the host key changed; if the "
                f"change is expected, remove the old entry (ssh-keygen -R '{res.host_key_names[0]}') "
                "and add the verified new key"
            )
        if res.accept_new and res.write_known_hosts is not None:
            self._remember(server_key, res.write_known_hosts)
            log.warning("permanently added %s (%s) to %s (host_key_policy 'openssh', StrictHostKeyChecking "
                        "from the SSH config)", res.host_key_names[0], fp, res.write_known_hosts)
            return
        why = ("host_key_policy 'strict' requires a known host key" if res.policy == "strict"
               else "the SSH config's StrictHostKeyChecking does not accept new keys (and gwclient cannot ask)")
        raise ConfigError(
            f"SSH host key of {where} is not trusted ({fp}): {why}. Verify the fingerprint out of band, "
            f"then add it to known_hosts ({files}), e.g. by connecting once with "
            f"`ssh -p {res.port} {res.user}@{res.hostname}`"
        )

    def _remember(self, key: Any, path: Path) -> None:
        line = paramiko.hostkeys.HostKeyEntry(list(self._res.host_key_names), key).to_line()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            raise ConfigError(f"cannot record the new SSH host key in {path}: {describe_os_error(exc)}") from exc


def _load_key(path: Path) -> tuple[Any | None, bool]:
    """``(key, encrypted)``; raises ConfigError for a missing or unusable file."""
    try:
        return paramiko.PKey.from_path(str(path)), False
    except (TypeError, paramiko.PasswordRequiredException):
        # cryptography raises TypeError for an encrypted key without a password.
        return None, True
    except FileNotFoundError as exc:
        raise ConfigError(f"SSH identity file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read SSH identity file {path}: {describe_os_error(exc)}") from exc
    except Exception as exc:  # ValueError, UnknownKeyType, SSHException...
        raise ConfigError(f"SSH identity file {path} is not a supported private key "
                          f"(OpenSSH or PEM; ed25519, ecdsa or rsa)") from exc


def select_keys(res: Resolved, *, use_agent: bool) -> tuple[list[Any], Any | None]:
    """The keys to try, in order, and the ssh-agent connection to close afterwards."""
    keys: list[Any] = []
    encrypted: list[Path] = []
    for path in res.identity_files:
        if not res.explicit_identity and not path.is_file():
            continue  # default / ssh-config identities are optional, like in ssh
        try:
            key, is_encrypted = _load_key(path)
        except ConfigError:
            if res.explicit_identity:
                raise
            log.warning("skipping unusable SSH identity %s", path)
            continue
        if key is not None:
            keys.append(key)
        elif is_encrypted:
            encrypted.append(path)
    agent = None
    if use_agent and os.environ.get("SSH_AUTH_SOCK") and not (res.explicit_identity and keys):
        try:
            agent = paramiko.Agent()
            keys.extend(agent.get_keys())
        except Exception as exc:  # an unreachable agent is like no agent
            log.info("ssh-agent not usable: %s", type(exc).__name__)
    if not keys:
        if agent is not None:
            agent.close()
        if encrypted:
            names = ", ".join(str(p) for p in encrypted)
            raise ConfigError(
                f"SSH identity {names} is passphrase-protected and gwclient never asks for passphrases: "
                f"load it into ssh-agent (ssh-add {encrypted[0]}) or use an unencrypted key"
            )
        raise ConfigError(
            f"no SSH key available for {res.user}@{res.hostname}: set ssh.identity_file "
            "(gateway.remote.sshIdentity) or load a key into ssh-agent"
        )
    return keys, agent
