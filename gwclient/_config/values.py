"""The small values under :class:`~gwclient.GatewayConfig`: defaults, the client enums, URL
and TLS-pin helpers, field checks, :class:`SshTunnelConfig`, environment reads.  Shared by
:mod:`.config` and :mod:`.openclaw_file` (which :mod:`.config` imports), so neither needs
the other's privates."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .._errors import ConfigError
from .plaintext import is_loopback_host, url_hostname

__all__ = [
    "CLIENT_IDS",
    "CLIENT_MODES",
    "DEFAULT_PORT",
    "DEFAULT_SCOPES",
    "DEFAULT_URL",
    "ROLES",
    "SHARE_MODES",
    "SshTunnelConfig",
    "env_value",
    "normalize_tls_fingerprint",
    "redact_url",
    "share_mode_from_env",
    "ssh_local_end_error",
]

DEFAULT_PORT = 18789
DEFAULT_URL = f"ws://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_SCOPES: tuple[str, ...] = (
    "operator.admin",
    "operator.read",
    "operator.write",
    "operator.approvals",
    "operator.questions",
    "operator.pairing",
)

#: ``connect.params.client.id`` values accepted by the gateway (PROTOCOL.md §2.2).
CLIENT_IDS: frozenset[str] = frozenset(
    {
        "webchat-ui",
        "openclaw-control-ui",
        "openclaw-browser-copilot",
        "openclaw-tui",
        "webchat",
        "cli",
        "gateway-client",
        "openclaw-macos",
        "openclaw-linux",
        "openclaw-ios",
        "openclaw-watchos",
        "openclaw-android",
        "node-host",
        "openclaw-worker",
        "test",
        "fingerprint",
        "openclaw-probe",
    }
)
#: ``connect.params.client.mode`` values accepted by the gateway (PROTOCOL.md §2.2).
CLIENT_MODES: frozenset[str] = frozenset(
    {"webchat", "cli", "ui", "backend", "node", "worker", "probe", "test"}
)
ROLES: frozenset[str] = frozenset({"operator", "node"})

_SSH_HOST_KEY_POLICIES = frozenset({"strict", "openssh"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COLON_HEX = re.compile(r"(?:[0-9a-f]{2}:){31}[0-9a-f]{2}")


# --------------------------------------------------------------------------- helpers


def redact_url(url: str) -> str:
    """``url`` without userinfo, query or fragment (safe for messages and logs)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc.rpartition("@")[2]
    return SplitResult(parts.scheme, netloc, parts.path, "", "").geturl()


def normalize_tls_fingerprint(value: str) -> str:
    """Normalise a SHA-256 certificate fingerprint to 64 lowercase hex digits.

    Accepts an optional ``sha256:`` prefix, colons between byte pairs and any case
    (``AB:CD:...``, ``sha256:abcd...``).  Raises :class:`ConfigError` otherwise."""
    text = value.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :].strip()
    if _COLON_HEX.fullmatch(text):
        text = text.replace(":", "")
    if not _HEX64.fullmatch(text):
        raise ConfigError(
            "tls_fingerprint must be a SHA-256 certificate fingerprint "
            "(64 hex digits, colons and a 'sha256:' prefix allowed)"
        )
    return text


#: The hosts an SSH tunnel's local end may have: the tunnel listens on 127.0.0.1 only.
_TUNNEL_LOCAL_HOSTS = ("127.0.0.1", "localhost")


def ssh_local_end_error(url: str) -> str | None:
    """The one rule for the URL of an SSH-tunnelled config (used by :class:`GatewayConfig`
    and the remote-mode coordinator): its host must be ``127.0.0.1`` or ``localhost``, where
    the tunnel listens.  Returns the reason it is not, else ``None``."""
    host = url_hostname(url)
    if host in _TUNNEL_LOCAL_HOSTS:
        return None
    return (
        "with an SSH tunnel the url must be ws://127.0.0.1:<port> or ws://localhost:<port> "
        f"(the tunnel listens on 127.0.0.1), got {redact_url(url)!r}"
    )


_plaintext_log = logging.getLogger("gwclient.config")
_plaintext_warned: set[str] = set()
_plaintext_lock = threading.Lock()


def _warn_plaintext_once(url: str) -> None:
    """Log (once per URL per process) that credentials will travel in clear."""
    safe = redact_url(url)
    with _plaintext_lock:
        if safe in _plaintext_warned:
            return
        _plaintext_warned.add(safe)
    _plaintext_log.warning(
        "plaintext ws:// to non-loopback %s: the token and chat data travel unencrypted; "
        "prefer wss:// or an SSH tunnel", safe,
    )


SHARE_MODES = ("off", "auto", "required")


def share_mode_from_env(env: Mapping[str, str] | None = None) -> str:
    """``$GWCLIENT_SHARE`` (``off``/``auto``/``required``, any case), else ``off``."""
    value = (os.environ if env is None else env).get("GWCLIENT_SHARE", "").strip().lower()
    if not value:
        return "off"
    if value not in SHARE_MODES:
        raise ConfigError(f"GWCLIENT_SHARE must be one of {', '.join(SHARE_MODES)}, got {value!r}")
    return value


def _check_text(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string")


def _string_tuple(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be an iterable of strings (not a single string)")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{name} must contain only non-empty strings")
    return items


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers the websocket upgrade itself sets: an edge header may not replace them.
_RESERVED_HEADERS = frozenset({"host", "upgrade", "connection", "origin", "sec-websocket-key",
                               "sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions"})


def _check_headers(value: object, url: str) -> tuple[tuple[str, str], ...]:
    """``headers``: a mapping or pairs of (name, value) strings -> sorted pairs.  Only for
    a remote ``wss://`` gateway (an edge proxy's credentials must not travel in clear, and
    a loopback gateway has no edge)."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError("headers must be a mapping of header names to values")
    else:
        items = list(value)
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise ConfigError("headers must map header names (strings) to values (strings)")
        name, text = item[0].strip(), item[1].strip()
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
            raise ConfigError(f"headers: {name!r} is not a header name gwclient may set")
        if not text or any(c in text for c in "\r\n\0"):
            raise ConfigError(f"headers: the value of {name} must be non-empty, on one line")
        pairs.append((name, text))
    if not pairs:
        return ()
    if urlsplit(url).scheme.lower() != "wss":
        raise ConfigError("headers (edge auth, e.g. Cloudflare Access) require a wss:// url: "
                          "they carry credentials and must not travel in clear")
    if is_loopback_host(url_hostname(url) or ""):
        raise ConfigError("headers (edge auth, e.g. Cloudflare Access) are for a remote gateway behind "
                          "an identity-aware proxy, not a loopback one")
    return tuple(sorted(pairs, key=lambda p: p[0].lower()))


def _check_timeout(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name} must be a positive number of seconds")


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class SshTunnelConfig:
    """Remote mode over SSH: forward a local port to the gateway's loopback port on ``host``.

    Used by the tunnel manager; :class:`GatewayConfig.url` is then the local end of the
    tunnel (a loopback URL).  No password fields: authentication is by key/agent only."""

    host: str
    user: str | None = None
    port: int = 22
    identity_file: str | None = None
    #: Gateway port on the remote host (bound to loopback there).
    remote_port: int = DEFAULT_PORT
    #: ``strict`` (known host keys only) or ``openssh`` (defer to the user's ssh config),
    #: like ``gateway.remote.sshHostKeyPolicy``.
    host_key_policy: str = "strict"

    def __post_init__(self) -> None:
        _check_text("ssh.host", self.host, optional=False)
        _check_text("ssh.user", self.user, optional=True)
        _check_text("ssh.identity_file", self.identity_file, optional=True)
        for name, value in (("ssh.port", self.port), ("ssh.remote_port", self.remote_port)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise ConfigError(f"{name} must be an integer 1-65535")
        if self.host_key_policy not in _SSH_HOST_KEY_POLICIES:
            raise ConfigError("ssh.host_key_policy must be 'strict' or 'openssh'")

    @property
    def target(self) -> str:
        """``user@host`` (or ``host``), as passed to ssh."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @classmethod
    def parse_target(cls, target: str, **kwargs: Any) -> SshTunnelConfig:
        """Build from ``gateway.remote.sshTarget``: ``host``, ``user@host``, ``user@host:port``
        or ``user@[v6addr]:port``; ``kwargs`` are the other fields."""
        text = target.strip()
        user: str | None = None
        if "@" in text:
            user, _, text = text.rpartition("@")
            user = user or None
        port = kwargs.pop("port", 22)
        host = text
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
        if match:
            host = match.group(1)
            if match.group(2):
                port = int(match.group(2))
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            if not port_text.isdigit():
                raise ConfigError("ssh target port must be a number")
            port = int(port_text)
        if not host:
            raise ConfigError("ssh target has no host")
        return cls(host=host, user=user, port=port, **kwargs)


def env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None
