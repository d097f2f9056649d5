"""Connection configuration: :class:`GatewayConfig` and how it is read from the environment.

A :class:`GatewayConfig` is a frozen, hashable value.  Two configs that compare equal
describe the same effective connection (endpoint, credentials, client identity, scopes,
timeouts...), which is how the library shares one websocket per effective config.
Secrets (token, password) are part of equality but never of ``repr``/``str``.

:meth:`GatewayConfig.from_environment` resolves a config the way the official OpenClaw
tools do (``OPENCLAW_GATEWAY_*`` environment variables and the JSON5 config file
``openclaw.json``); the precedence rules are in its docstring and in
``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import ipaddress
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import SplitResult, urlsplit

from ._errors import ConfigError
from ._retry import RetryPolicy

__all__ = [
    "CLIENT_IDS",
    "CLIENT_MODES",
    "DEFAULT_PORT",
    "DEFAULT_SCOPES",
    "DEFAULT_URL",
    "ROLES",
    "GatewayConfig",
    "SshTunnelConfig",
    "default_platform",
    "default_state_dir",
    "normalize_tls_fingerprint",
    "openclaw_config_path",
    "redact_url",
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

_FALLBACK_VERSION = "0.1.0"
_BIND_MODES = frozenset({"loopback", "lan", "tailnet", "custom", "auto"})
_SSH_HOST_KEY_POLICIES = frozenset({"strict", "openssh"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COLON_HEX = re.compile(r"(?:[0-9a-f]{2}:){31}[0-9a-f]{2}")
_ENV_SECRET_ID = re.compile(r"[A-Z][A-Z0-9_]{0,127}")
_ENV_SHORTHAND = re.compile(r"\$\{([A-Z][A-Z0-9_]{0,127})\}|\$([A-Z][A-Z0-9_]{0,127})")
_JSON5_POSITION = re.compile(r":(\d+) (Unexpected (?:end of input)?).*?at column (\d+)")


# --------------------------------------------------------------------------- helpers


def _client_version() -> str:
    # Imported lazily (gwclient/__init__ imports this module) and by name, so that type
    # checking this module does not pull in the whole package.
    try:
        package = importlib.import_module("gwclient")
    except ImportError:  # pragma: no cover - package being replaced
        return _FALLBACK_VERSION
    version = getattr(package, "__version__", None)
    return version if isinstance(version, str) and version else _FALLBACK_VERSION


def default_platform() -> str:
    """A stable, normalised platform name (``linux``, ``macos``, ``windows``, ``freebsd``...).

    The gateway pins ``client.platform`` when a device is paired; it must not change
    between runs, so it is derived from ``sys.platform`` only (no OS version)."""
    plat = sys.platform
    if plat.startswith("linux"):
        return "linux"
    if plat == "darwin":
        return "macos"
    if plat in ("win32", "cygwin", "msys"):
        return "windows"
    return plat.rstrip("0123456789") or plat


def _home(env: Mapping[str, str] | None) -> Path:
    if env is not None:
        home = env.get("HOME", "").strip()
        if home:
            return Path(home)
    return Path.home()


def _expand_user(value: str, env: Mapping[str, str] | None) -> Path:
    if value == "~" or value.startswith(("~/", "~" + os.sep)):
        return _home(env) / value[2:] if len(value) > 1 else _home(env)
    return Path(value).expanduser()


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where gwclient keeps its device identity and device tokens.

    ``$GWCLIENT_STATE_DIR``, else ``$XDG_STATE_HOME/gwclient`` (absolute paths only,
    as the XDG spec requires), else ``~/.local/state/gwclient``.  ``env`` defaults to
    ``os.environ``; ``HOME`` is taken from it when present."""
    source: Mapping[str, str] = os.environ if env is None else env
    explicit = source.get("GWCLIENT_STATE_DIR", "").strip()
    if explicit:
        return _expand_user(explicit, source)
    xdg = source.get("XDG_STATE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "gwclient"
    return _home(source) / ".local" / "state" / "gwclient"


def _openclaw_home(env: Mapping[str, str]) -> Path:
    value = env.get("OPENCLAW_HOME", "").strip()
    if value:
        return _expand_user(value, env)
    return _home(env)


def _openclaw_state_dir(env: Mapping[str, str]) -> Path:
    value = env.get("OPENCLAW_STATE_DIR", "").strip()
    if value:
        return _expand_user(value, {**env, "HOME": str(_openclaw_home(env))})
    return _openclaw_home(env) / ".openclaw"


def openclaw_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The OpenClaw config file the official tools would read.

    ``$OPENCLAW_CONFIG_PATH``, else ``$OPENCLAW_STATE_DIR/openclaw.json``, else
    ``~/.openclaw/openclaw.json`` (home: ``$OPENCLAW_HOME``, else ``$HOME``)."""
    source: Mapping[str, str] = os.environ if env is None else env
    explicit = source.get("OPENCLAW_CONFIG_PATH", "").strip()
    if explicit:
        return _expand_user(explicit, {**source, "HOME": str(_openclaw_home(source))})
    return _openclaw_state_dir(source) / "openclaw.json"


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


def _is_loopback_host(host: str) -> bool:
    host = host.strip().lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _is_private_host(host: str) -> bool:
    """Hosts the official tools accept over ws:// with OPENCLAW_ALLOW_INSECURE_PRIVATE_WS=1."""
    host = host.strip().lower().rstrip(".")
    if host.endswith((".local", ".ts.net")):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        return True
    return addr.is_private or addr.is_link_local or addr.is_loopback


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


@dataclass(frozen=True, repr=False)
class GatewayConfig:
    """How to reach and authenticate to one OpenClaw gateway.

    Frozen and hashable; equal configs share one websocket.  ``repr``/``str`` never show
    the token or password (only whether they are set).  Validation happens on creation
    and raises :class:`ConfigError`.
    """

    url: str = DEFAULT_URL
    token: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    client_id: str = "cli"
    client_mode: str = "cli"
    client_version: str = field(default_factory=_client_version)
    #: Pinned by the gateway at pairing time: keep it stable.
    platform: str = field(default_factory=default_platform)
    device_family: str | None = None
    instance_id: str | None = None
    display_name: str | None = None
    role: str = "operator"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    caps: tuple[str, ...] = ()
    #: Sign connects with the Ed25519 device identity stored in the state dir.
    device_identity: bool = True
    #: Where the identity and device tokens live; ``None`` = :func:`default_state_dir`.
    state_dir: str | None = None
    #: Seconds for each of: the ``connect.challenge`` wait and the ``hello-ok`` wait.
    connect_timeout: float = 15.0
    #: Default per-request timeout in seconds.
    request_timeout: float = 30.0
    #: SHA-256 of the server certificate (DER), normalised to 64 lowercase hex digits.
    tls_fingerprint: str | None = None
    #: Allow plaintext ``ws://`` to a non-loopback host (credentials travel in clear).
    allow_insecure_remote: bool = False
    #: Remote mode via an SSH tunnel; ``url`` is then the local (loopback) end.
    ssh: SshTunnelConfig | None = None
    #: Default bound of a subscription queue.
    max_queue: int = 1000
    #: Reconnect backoff; ``None`` = the channel's default :class:`RetryPolicy`.
    retry: RetryPolicy | None = None
    #: Send a websocket ping every this many seconds (NAT/proxy keepalive); ``None`` = off.
    #: The gateway already pings every 25 s and ticks every 30 s.
    ping_interval: float | None = None
    #: Explicit proxy for a remote ``wss://`` gateway (``http://host:port``, ``socks5://``,
    #: ``socks5h://``); never used for loopback, refused with ``ws://``.  The environment's
    #: ``http_proxy``/``https_proxy``/``no_proxy`` are never applied (docs/configuration.md).
    proxy: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.url, str):
            raise ConfigError("url must be a string")
        url = self.url.strip()
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"invalid gateway url {redact_url(url)!r}: {exc}") from None
        if scheme not in ("ws", "wss") or not host:
            raise ConfigError(
                f"gateway url must be ws://host[:port] or wss://host[:port], "
                f"got {redact_url(url)!r}"
            )
        if port == 0:
            raise ConfigError(f"invalid port in gateway url {redact_url(url)!r}")
        if not url.startswith(scheme):
            url = scheme + url[len(scheme) :]
        set_(self, "url", url)
        loopback = _is_loopback_host(host)
        if scheme == "ws" and not loopback and not self.allow_insecure_remote:
            raise ConfigError(
                f"refusing plaintext ws:// to non-loopback host in {redact_url(url)!r}: "
                "credentials and chat data would travel unencrypted; use wss://, an SSH "
                "tunnel, or set allow_insecure_remote=True on a trusted network"
            )
        if self.ssh is not None:
            if not isinstance(self.ssh, SshTunnelConfig):
                raise ConfigError("ssh must be an SshTunnelConfig or None")
            if not loopback:
                raise ConfigError(
                    "with an SSH tunnel the url must be the local (loopback) end of the "
                    f"tunnel, got {redact_url(url)!r}"
                )
        for name in ("token", "password"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None")
            if value is not None and not value.strip():
                set_(self, name, None)
        if self.client_id not in CLIENT_IDS:
            raise ConfigError(
                f"client_id {self.client_id!r} is not one of: {', '.join(sorted(CLIENT_IDS))}"
            )
        if self.client_mode not in CLIENT_MODES:
            raise ConfigError(
                f"client_mode {self.client_mode!r} is not one of: {', '.join(sorted(CLIENT_MODES))}"
            )
        if self.role not in ROLES:
            raise ConfigError(f"role {self.role!r} must be 'operator' or 'node'")
        _check_text("client_version", self.client_version, optional=False)
        _check_text("platform", self.platform, optional=False)
        _check_text("device_family", self.device_family, optional=True)
        _check_text("instance_id", self.instance_id, optional=True)
        _check_text("display_name", self.display_name, optional=True)
        set_(self, "scopes", _string_tuple("scopes", self.scopes))
        set_(self, "caps", _string_tuple("caps", self.caps))
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ConfigError("retry must be a RetryPolicy or None")
        _check_timeout("connect_timeout", self.connect_timeout)
        _check_timeout("request_timeout", self.request_timeout)
        if self.ping_interval is not None:
            _check_timeout("ping_interval", self.ping_interval)
        if self.state_dir is not None:
            if isinstance(self.state_dir, os.PathLike):
                set_(self, "state_dir", os.fspath(self.state_dir))
            _check_text("state_dir", self.state_dir, optional=False)
        if self.tls_fingerprint is not None:
            if not isinstance(self.tls_fingerprint, str):
                raise ConfigError("tls_fingerprint must be a string or None")
            if scheme != "wss":
                raise ConfigError("tls_fingerprint requires a wss:// url")
            set_(self, "tls_fingerprint", normalize_tls_fingerprint(self.tls_fingerprint))
        if self.proxy is not None:
            from ._proxy import parse_proxy  # here: _proxy imports this module

            set_(self, "proxy", parse_proxy(self.proxy, url))

    # ------------------------------------------------------------------ derived values

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """The URL's host, lowercased, without IPv6 brackets."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The TCP port the websocket connects to: the URL's port, else 80 (ws) / 443 (wss).

        Those are the ports any websocket library uses for a URL without a port
        (e.g. ``wss://gateway.example`` behind a reverse proxy); the gateway's own
        default is 18789, which :data:`DEFAULT_URL` spells out explicitly."""
        port = urlsplit(self.url).port
        if port is not None:
            return port
        return 443 if self.scheme == "wss" else 80

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and ``localhost``."""
        return _is_loopback_host(self.host)

    @property
    def is_secure(self) -> bool:
        return self.scheme == "wss"

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    @property
    def effective_state_dir(self) -> Path:
        if self.state_dir is not None:
            return Path(self.state_dir).expanduser()
        return default_state_dir()

    @property
    def gateway_key(self) -> str:
        """A stable id of the gateway, used to key stored device tokens.

        ``scheme://host:port`` (host lowercased, IPv6 in brackets, port explicit).  In SSH
        tunnel mode the remote side is used (``scheme://<ssh host>:<remote_port>``), so
        different hosts reached through the same local port do not share tokens."""
        if self.ssh is not None:
            host, port = self.ssh.host.lower(), self.ssh.remote_port
        else:
            host, port = self.host, self.port
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}"

    @property
    def has_credentials(self) -> bool:
        return self.token is not None or self.password is not None

    def with_changes(self, **changes: Any) -> GatewayConfig:
        """A copy with some fields changed (validated again)."""
        _reject_unknown_fields(changes)
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        parts = [
            f"url={self.redacted_url!r}",
            f"client={self.client_id}/{self.client_mode}",
            f"role={self.role}",
            f"scopes={list(self.scopes)!r}",
            f"token=<{'set' if self.token is not None else 'unset'}>",
            f"password=<{'set' if self.password is not None else 'unset'}>",
        ]
        if self.tls_fingerprint:
            parts.append(f"tls_fingerprint={self.tls_fingerprint[:12]}...")
        if self.ssh is not None:
            parts.append(f"ssh={self.ssh.target}:{self.ssh.port}->{self.ssh.remote_port}")
        if not self.device_identity:
            parts.append("device_identity=False")
        if self.proxy is not None:
            from ._proxy import redact_proxy  # here: _proxy imports this module

            parts.append(f"proxy={redact_proxy(self.proxy)!r}")
        return f"GatewayConfig({', '.join(parts)})"

    __str__ = __repr__

    # ------------------------------------------------------------------ environment

    @classmethod
    def from_environment(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        config_path: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> GatewayConfig:
        """Resolve a config like the official OpenClaw tools.

        Sources, highest first (each field is resolved on its own):

        1. ``overrides`` (keyword arguments named like the fields; ``token=None`` counts
           as an explicit "no token").
        2. Environment (``env``, default ``os.environ``): ``OPENCLAW_GATEWAY_URL``,
           ``OPENCLAW_GATEWAY_TOKEN``, ``OPENCLAW_GATEWAY_PASSWORD``; ``OPENCLAW_GATEWAY_PORT``
           changes the port of the *local* URL built from the file.
        3. The config file (JSON5): ``config_path``, else ``$OPENCLAW_CONFIG_PATH``, else
           ``$OPENCLAW_STATE_DIR/openclaw.json``, else ``~/.openclaw/openclaw.json``
           (home from ``$OPENCLAW_HOME``/``$HOME`` in ``env``).  A missing file means
           no file settings; an unreadable or invalid one raises :class:`ConfigError`.

           * ``gateway.mode: "local"`` (default): URL ``ws[s]://127.0.0.1:<port>``
             (``wss`` if ``gateway.tls.enabled``; port from ``gateway.port``; with
             ``gateway.bind: "custom"``, ``gateway.customBindHost`` if it is loopback or
             TLS is on, since the gateway keeps a 127.0.0.1 listener for same-host clients).
             Credentials ``gateway.auth.token``/``.password``, falling back to
             ``gateway.remote.token``/``.password`` when the auth one is unset.
             With TLS, the local certificate (``gateway.tls.certPath`` or
             ``$OPENCLAW_STATE_DIR/gateway/tls/gateway-cert.pem``) is pinned if readable.
           * ``gateway.mode: "remote"``: URL ``gateway.remote.url`` (local URL if
             unset); credentials ``gateway.remote.token``/``.password``, falling back to
             ``gateway.auth.*``; pin ``gateway.remote.tlsFingerprint`` (wss only);
             ``gateway.remote.transport`` ``"ssh"`` (the default) with
             ``gateway.remote.sshTarget`` set gives an :class:`SshTunnelConfig`
             (``sshIdentity``, ``remotePort``, ``sshHostKeyPolicy``).
           * Secrets may be SecretRefs: ``{source: "env", id: "VAR"}`` (or ``"${VAR}"``)
             reads ``VAR`` from ``env``; other sources raise :class:`ConfigError`.
             An unresolvable ref fails closed (no fallback to another source).
        4. Field defaults.

        Safety rule (as in the official tools): credentials, the TLS pin and the SSH
        tunnel from the *file* are used only when the URL also comes from the file (or
        the default); with a URL from ``OPENCLAW_GATEWAY_URL`` only environment
        credentials apply (the remote TLS pin still applies, as in the official tools),
        and with a ``url=`` override only override and environment credentials apply.

        When ``env`` is given explicitly, ``state_dir`` defaults to
        ``default_state_dir(env)`` (so the whole config derives from that mapping);
        with ``env=None`` it stays ``None`` (resolved from ``os.environ`` when used).
        ``OPENCLAW_ALLOW_INSECURE_PRIVATE_WS=1`` permits plaintext ``ws://`` to private,
        link-local, CGNAT, ``.local`` and ``.ts.net`` hosts (the official break-glass).
        """
        _reject_unknown_fields(overrides)
        source: Mapping[str, str] = os.environ if env is None else env
        if config_path is not None:
            path = _expand_user(os.fspath(config_path), source)
        else:
            path = openclaw_config_path(source)
        file_cfg = _FileSettings(_read_config_file(path), path, source)

        values: dict[str, Any] = {}

        # --- endpoint
        env_url = _env_value(source, "OPENCLAW_GATEWAY_URL")
        if "url" in overrides:
            url_source: Literal["override", "env", "file"] = "override"
            url = overrides["url"]
        elif env_url is not None:
            url_source, url = "env", env_url
        else:
            url_source, url = "file", file_cfg.url()
        values["url"] = url

        # --- credentials
        for name, env_name in (
            ("token", "OPENCLAW_GATEWAY_TOKEN"),
            ("password", "OPENCLAW_GATEWAY_PASSWORD"),
        ):
            if name in overrides:
                continue
            value = _env_value(source, env_name)
            if value is None and url_source == "file":
                value = file_cfg.secret(name)
            values[name] = value

        # --- TLS pin and SSH tunnel (bound to the file's endpoint)
        is_wss = isinstance(url, str) and url.strip().lower().startswith("wss:")
        if "tls_fingerprint" not in overrides and is_wss:
            if url_source == "env" or (url_source == "file" and file_cfg.remote_url_used):
                values["tls_fingerprint"] = file_cfg.remote_tls_fingerprint()
            elif url_source == "file" and file_cfg.local_url_used:
                values["tls_fingerprint"] = file_cfg.local_tls_fingerprint()
        if "ssh" not in overrides and url_source == "file":
            values["ssh"] = file_cfg.ssh_tunnel()

        if (
            "allow_insecure_remote" not in overrides
            and source.get("OPENCLAW_ALLOW_INSECURE_PRIVATE_WS", "").strip() == "1"
            and isinstance(url, str)
        ):
            try:
                host = urlsplit(url.strip()).hostname
            except ValueError:
                host = None
            if host and _is_private_host(host):
                values["allow_insecure_remote"] = True

        if env is not None and "state_dir" not in overrides:
            values["state_dir"] = str(default_state_dir(env))

        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if v is not None or k in overrides})


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(GatewayConfig))


def _reject_unknown_fields(kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(kwargs) - _FIELD_NAMES)
    if unknown:
        raise ConfigError(f"unknown GatewayConfig field(s): {', '.join(unknown)}")


def _env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


# --------------------------------------------------------------------------- config file


def _read_config_file(path: Path) -> dict[str, Any]:
    import json5

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read OpenClaw config file {path}: {reason}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"invalid OpenClaw config file {path}: not UTF-8 (byte offset {exc.start})"
        ) from None
    if not text.strip():
        return {}
    try:
        data = json5.loads(text)
    except (ValueError, RecursionError) as exc:
        # json5 messages look like '<string>:3 Unexpected "x" at column 7'; keep only the
        # position so that no fragment of the file (maybe a secret) reaches the message.
        match = _JSON5_POSITION.search(str(exc))
        if match:
            what = (
                "unexpected end of input"
                if "end of input" in match.group(2)
                else ("unexpected character")
            )
            where = f"line {match.group(1)}, column {match.group(3)}: {what}"
        else:
            where = "cannot parse"
        raise ConfigError(f"invalid JSON5 in OpenClaw config file {path}: {where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid OpenClaw config file {path}: top level must be an object")
    return data


class _FileSettings:
    """Typed, validated access to the parts of ``openclaw.json`` gwclient uses."""

    def __init__(self, data: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> None:
        self._data = data
        self._path = path
        self._env = env
        self.gateway = self._section(data, "gateway")
        mode = self._str(self.gateway, "gateway.mode") or "local"
        if mode not in ("local", "remote"):
            self._fail("gateway.mode must be 'local' or 'remote'")
        self.mode = mode
        self.auth = self._section(self.gateway, "auth", "gateway.auth")
        self.remote = self._section(self.gateway, "remote", "gateway.remote")
        self.tls = self._section(self.gateway, "tls", "gateway.tls")
        self.remote_url_used = False
        self.local_url_used = False

    # -- low level
    def _fail(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (in OpenClaw config file {self._path})")

    def _section(
        self, parent: Mapping[str, Any], key: str, name: str | None = None
    ) -> Mapping[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self._fail(f"{name or key} must be an object")
        return value

    def _str(self, section: Mapping[str, Any], name: str) -> str | None:
        value = section.get(name.rpartition(".")[2])
        if value is None:
            return None
        if not isinstance(value, str):
            self._fail(f"{name} must be a string")
        return value.strip() or None

    def _port(self, section: Mapping[str, Any], name: str) -> int | None:
        value = section.get(name.rpartition(".")[2])
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            self._fail(f"{name} must be an integer 1-65535")
        return int(value)

    # -- endpoint
    def local_port(self) -> int:
        env_port = _env_value(self._env, "OPENCLAW_GATEWAY_PORT")
        if env_port is not None:
            digits = env_port.rpartition(":")[2]
            if digits.isdigit() and 0 < int(digits) < 65536:
                return int(digits)
        return self._port(self.gateway, "gateway.port") or DEFAULT_PORT

    def local_url(self) -> str:
        tls = self.tls.get("enabled")
        if tls is not None and not isinstance(tls, bool):
            self._fail("gateway.tls.enabled must be true or false")
        scheme = "wss" if tls else "ws"
        bind = self._str(self.gateway, "gateway.bind") or "loopback"
        if bind not in _BIND_MODES:
            self._fail(f"gateway.bind must be one of {', '.join(sorted(_BIND_MODES))}")
        host = "127.0.0.1"
        if bind == "custom":
            custom = self._str(self.gateway, "gateway.customBindHost")
            # The gateway keeps a 127.0.0.1 listener beside a custom bind for same-host
            # clients, so plaintext stays on loopback; with TLS the custom host is used.
            if custom and custom not in ("0.0.0.0", "::") and (tls or _is_loopback_host(custom)):
                host = f"[{custom}]" if ":" in custom else custom
        return f"{scheme}://{host}:{self.local_port()}"

    def url(self) -> str:
        if self.mode == "remote":
            remote_url = self._str(self.remote, "gateway.remote.url")
            if remote_url:
                self.remote_url_used = True
                return remote_url
        self.local_url_used = True
        return self.local_url()

    # -- secrets
    def secret(self, name: str) -> str | None:
        """token/password for the file's endpoint: the mode's own section first, then
        the other one (the official fallback), failing closed on unresolvable refs."""
        sections = [("gateway.auth", self.auth), ("gateway.remote", self.remote)]
        if self.mode == "remote":
            sections.reverse()
        for prefix, section in sections:
            value = section.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            return self._resolve_secret(f"{prefix}.{name}", value)
        return None

    def _resolve_secret(self, key: str, value: object) -> str:
        if isinstance(value, str):
            text = value.strip()
            match = _ENV_SHORTHAND.fullmatch(text)
            if match is None:
                return text
            return self._env_secret(key, match.group(1) or match.group(2), None)
        if not isinstance(value, dict):
            self._fail(f"{key} must be a string or a SecretRef object")
        ref: dict[str, Any] = value
        source = ref.get("source")
        if source != "env":
            self._fail(
                f"{key} is a SecretRef with source {source!r}; gwclient supports only "
                "source 'env' (set OPENCLAW_GATEWAY_TOKEN / OPENCLAW_GATEWAY_PASSWORD "
                "or pass the secret explicitly instead)"
            )
        var = ref.get("id")
        if not isinstance(var, str) or not _ENV_SECRET_ID.fullmatch(var):
            self._fail(f"{key}: env SecretRef id must be an environment variable name")
        provider = ref.get("provider")
        if provider is not None and not isinstance(provider, str):
            self._fail(f"{key}: SecretRef provider must be a string")
        return self._env_secret(key, var, provider)

    def _env_secret(self, key: str, var: str, provider: str | None) -> str:
        secrets = self._section(self._data, "secrets")
        defaults = self._section(secrets, "defaults", "secrets.defaults")
        default_alias = defaults.get("env") if isinstance(defaults.get("env"), str) else None
        alias = provider or default_alias or "default"
        providers = self._section(secrets, "providers", "secrets.providers")
        entry = providers.get(alias)
        if isinstance(entry, dict) and entry.get("source") == "env":
            allow = entry.get("allowlist")
            if isinstance(allow, list) and var not in allow:
                self._fail(f"{key}: env var {var} is not in the allowlist of provider {alias!r}")
        elif alias not in ("default", default_alias):
            self._fail(f"{key}: unknown env secret provider {alias!r}")
        value = _env_value(self._env, var)
        if value is None:
            # An explicit SecretRef is authoritative: fail closed, no fallback.
            self._fail(f"{key} refers to environment variable {var}, which is not set")
        return value

    # -- TLS pins
    def remote_tls_fingerprint(self) -> str | None:
        if self.mode != "remote":
            return None
        value = self._str(self.remote, "gateway.remote.tlsFingerprint")
        if value is None:
            return None
        try:
            return normalize_tls_fingerprint(value)
        except ConfigError:
            self._fail("gateway.remote.tlsFingerprint is not a SHA-256 fingerprint")

    def local_tls_fingerprint(self) -> str | None:
        """SHA-256 of the local gateway's certificate, if the file is readable."""
        cert = self._str(self.tls, "gateway.tls.certPath")
        if cert:
            cert_path = _expand_user(cert, self._env)
        else:
            cert_path = _openclaw_state_dir(self._env) / "gateway" / "tls" / "gateway-cert.pem"
        try:
            pem = cert_path.read_bytes()
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding

            der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
        except (OSError, ValueError):
            return None
        return hashlib.sha256(der).hexdigest()

    # -- SSH
    def ssh_tunnel(self) -> SshTunnelConfig | None:
        if self.mode != "remote":
            return None
        transport = self._str(self.remote, "gateway.remote.transport") or "ssh"
        if transport not in ("ssh", "direct"):
            self._fail("gateway.remote.transport must be 'ssh' or 'direct'")
        target = self._str(self.remote, "gateway.remote.sshTarget")
        if transport != "ssh" or not target:
            return None
        remote_port = self._port(self.remote, "gateway.remote.remotePort")
        if remote_port is None:
            remote_url = self._str(self.remote, "gateway.remote.url")
            try:
                remote_port = urlsplit(remote_url).port if remote_url else None
            except ValueError:
                remote_port = None
        identity = self._str(self.remote, "gateway.remote.sshIdentity")
        policy = self._str(self.remote, "gateway.remote.sshHostKeyPolicy") or "strict"
        try:
            return SshTunnelConfig.parse_target(
                target,
                identity_file=str(_expand_user(identity, self._env)) if identity else None,
                remote_port=remote_port or DEFAULT_PORT,
                host_key_policy=policy,
            )
        except ConfigError as exc:
            self._fail(f"gateway.remote: {exc}")
