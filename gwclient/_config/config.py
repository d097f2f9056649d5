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
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .._core.retry import RetryPolicy
from .._errors import ConfigError
from .locations import (
    client_version,
    default_platform,
    default_state_dir,
    expand_user,
    openclaw_config_path,
)
from .openclaw_file import FileSettings, read_config_file
from .plaintext import allow_private_ws, is_loopback_host, is_secure_websocket_url, url_hostname
from .proxy import parse_proxy, redact_proxy
from .setup_code import decode_setup_code
from .values import (
    CLIENT_IDS,
    CLIENT_MODES,
    DEFAULT_PORT,
    DEFAULT_SCOPES,
    DEFAULT_URL,
    ROLES,
    SHARE_MODES,
    SshTunnelConfig,
    _check_headers,
    _check_text,
    _check_timeout,
    _string_tuple,
    _warn_plaintext_once,
    env_value,
    normalize_tls_fingerprint,
    redact_url,
    share_mode_from_env,
    ssh_local_end_error,
)

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
    "share_mode_from_env",
    "ssh_local_end_error",
]

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
    client_version: str = field(default_factory=client_version)
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
    #: Allow plaintext ``ws://`` to any host, also those the official rule refuses (public
    #: addresses and names; see docs/configuration.md).  Credentials travel in clear.
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
    #: Longest wait, in seconds, without receiving anything (event, answer, tick, pong)
    #: before the socket is declared dead and replaced; ``None`` = twice the gateway's tick
    #: interval.  When shorter than the tick interval, gwclient pings to provoke pongs.
    liveness_timeout: float | None = None
    #: Byte bound of a subscription queue, in memory held by its decoded events (besides
    #: ``max_queue`` items); ``None`` = unbounded.
    max_queue_bytes: int | None = 64 * 1024 * 1024
    #: Largest inbound frame accepted before hello-ok (after it: the gateway's
    #: ``policy.maxPayload``); a larger frame closes the socket (1009) unread.
    max_frame_bytes: int = 32 * 1024 * 1024
    #: Explicit proxy for a remote ``wss://`` gateway (``http://host:port``, ``socks5://``,
    #: ``socks5h://``); never used for loopback, refused with ``ws://``.  The environment's
    #: ``http_proxy``/``https_proxy``/``no_proxy`` are never applied (docs/configuration.md).
    proxy: str | None = None
    #: Default of ``request()``/``submit()``'s ``wait_for_ready``: True waits for the
    #: (re)connect; False fails at once with :class:`GatewayUnavailable` while not connected.
    wait_for_ready: bool = True
    #: Extra HTTP headers of the websocket upgrade for an identity-aware proxy in front of
    #: a remote ``wss://`` gateway (Cloudflare Access: ``CF-Access-Client-Id`` and
    #: ``CF-Access-Client-Secret``); refused for ``ws://`` and loopback.  A mapping or
    #: pairs; the values are secrets (never shown).
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: A bootstrap (setup-code) token: used, as the official client does, only when no
    #: shared token, password or stored device token is available; the gateway answers
    #: with a device token, stored for later connects.
    bootstrap_token: str | None = field(default=None, repr=False)
    #: The local share (docs/share.md): ``"off"`` (own socket), ``"auto"`` (attach to the
    #: share, start it if needed, else a direct socket with one warning) or ``"required"``
    #: (never a direct socket).  Default: ``$GWCLIENT_SHARE``, else ``"off"``.
    share: str = field(default_factory=share_mode_from_env)

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
        if scheme == "ws":
            if not self.allow_insecure_remote and not is_secure_websocket_url(url):
                raise ConfigError(
                    f"refusing plaintext ws:// to {redact_url(url)!r}: the host is not loopback, a "
                    "private or link-local address, .local or .ts.net, so the token and chat data "
                    "would travel unencrypted; use wss:// or an SSH tunnel. To allow it on a trusted "
                    "network: OPENCLAW_ALLOW_INSECURE_PRIVATE_WS=1 (host names; as the official "
                    "tools), or allow_insecure_remote=True (Python) / --allow-insecure (gwclient CLI)"
                )
            if not is_loopback_host(url_hostname(url) or host):
                _warn_plaintext_once(url)
        if self.ssh is not None:
            if not isinstance(self.ssh, SshTunnelConfig):
                raise ConfigError("ssh must be an SshTunnelConfig or None")
            ssh_error = ssh_local_end_error(url)
            if ssh_error is not None:
                raise ConfigError(ssh_error)
        set_(self, "headers", _check_headers(self.headers, url))
        for name in ("token", "password", "bootstrap_token"):
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
        if self.liveness_timeout is not None:
            _check_timeout("liveness_timeout", self.liveness_timeout)
        for name, low in (("max_queue_bytes", 1), ("max_frame_bytes", 1024)):
            value = getattr(self, name)
            if value is None and name == "max_queue_bytes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}")
        if self.share not in SHARE_MODES:
            raise ConfigError(f"share must be one of {', '.join(SHARE_MODES)}, got {self.share!r}")
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
        return is_loopback_host(self.host)

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
    def scopes_default(self) -> bool:
        """The scopes are the default ones (not chosen): a connect with only the stored
        device token then asks for the scopes that token was issued with."""
        return self.scopes == DEFAULT_SCOPES

    @property
    def has_credentials(self) -> bool:
        return self.token is not None or self.password is not None

    @classmethod
    def from_setup_code(cls, code: str, **changes: Any) -> GatewayConfig:
        """A config from a setup code (``oc-pair://<code>``, as ``openclaw qr`` or the
        Control UI's pairing dialog print it): its gateway ``url``, its bootstrap token
        (the first connect pairs this device and stores its device token: later connects
        need no code), and its certificate pin for ``wss://``.  ``scopes`` default to
        the operator scopes a setup code hands over on every release
        (``SetupCode.scopes``; a 2026.9 full-access code allows more: pass
        ``scopes=``).  ``changes`` set further fields (``state_dir``...).  Raises
        :class:`ConfigError` for an invalid or expired code (docs/configuration.md,
        "Setup codes")."""
        values: dict[str, Any] = decode_setup_code(code).config_fields()
        values.update(changes)
        _reject_unknown_fields(values)
        return cls(**values)

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
        if self.share != "off":
            parts.append(f"share={self.share!r}")
        if self.proxy is not None:

            parts.append(f"proxy={redact_proxy(self.proxy)!r}")
        if self.headers:
            parts.append(f"headers=<{', '.join(name for name, _ in self.headers)}: set>")
        if self.bootstrap_token is not None:
            parts.append("bootstrap_token=<set>")
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
           no file settings, except a ``config_path`` or ``$OPENCLAW_CONFIG_PATH`` that
           does not exist (a mistyped path), which raises :class:`ConfigError` naming the
           file, as does an unreadable or invalid file.

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
        ``OPENCLAW_ALLOW_INSECURE_PRIVATE_WS=1`` (exactly ``1``, as the official tools read
        it) also permits plaintext ``ws://`` to any host *name* (the official break-glass for
        private DNS; public IP literals stay refused): it sets ``allow_insecure_remote``
        for such a URL only.
        """
        _reject_unknown_fields(overrides)
        source: Mapping[str, str] = os.environ if env is None else env
        if config_path is not None:
            path = expand_user(os.fspath(config_path), source)
        else:
            path = openclaw_config_path(source)
        # Only the default location may be absent; a file named by the caller (config_path
        # or $OPENCLAW_CONFIG_PATH) must exist: a mistyped name is an error, not "no settings".
        named = config_path is not None or bool(source.get("OPENCLAW_CONFIG_PATH", "").strip())
        file_cfg = FileSettings(read_config_file(path, required=named), path, source)

        values: dict[str, Any] = {}

        # --- endpoint
        env_url = env_value(source, "OPENCLAW_GATEWAY_URL")
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
            value = env_value(source, env_name)
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
            and allow_private_ws(source)
            and isinstance(url, str)
            and is_secure_websocket_url(url, allow_private_ws=True)
        ):
            values["allow_insecure_remote"] = True

        if env is not None and "state_dir" not in overrides:
            values["state_dir"] = str(default_state_dir(env))
        if env is not None and "share" not in overrides:
            values["share"] = share_mode_from_env(env)

        # --- edge auth (Cloudflare Access) for a remote wss:// gateway only
        if "headers" not in overrides and is_wss and not is_loopback_host(url_hostname(url) or ""):
            values["headers"] = file_cfg.edge_headers() if url_source == "file" else \
                FileSettings({}, path, source).edge_headers()

        # --- handshake timeouts, as the official tools read them
        if "connect_timeout" not in overrides:
            values["connect_timeout"] = handshake_timeout(source)

        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if v is not None or k in overrides})


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(GatewayConfig))


def _reject_unknown_fields(kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(kwargs) - _FIELD_NAMES)
    if unknown:
        raise ConfigError(f"unknown GatewayConfig field(s): {', '.join(unknown)}")


def _positive_ms(env: Mapping[str, str], name: str) -> int | None:
    """A positive whole number of milliseconds (``^\\+?\\d+$``), else ``None`` (ignored)."""
    value = env.get(name, "").strip()
    if not re.fullmatch(r"\+?\d+", value):
        return None
    number = int(value)
    return number if number > 0 else None


def handshake_timeout(env: Mapping[str, str]) -> float | None:
    """``connect_timeout`` from ``OPENCLAW_CONNECT_CHALLENGE_TIMEOUT_MS`` (at least 250 ms),
    else ``OPENCLAW_HANDSHAKE_TIMEOUT_MS``, else ``None`` (the default)."""
    challenge = _positive_ms(env, "OPENCLAW_CONNECT_CHALLENGE_TIMEOUT_MS")
    if challenge is not None:
        return max(250, challenge) / 1000
    handshake = _positive_ms(env, "OPENCLAW_HANDSHAKE_TIMEOUT_MS")
    return None if handshake is None else handshake / 1000
