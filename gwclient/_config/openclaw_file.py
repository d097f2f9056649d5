"""Reading the OpenClaw config file (``openclaw.json``, JSON5) for
:meth:`GatewayConfig.from_environment <gwclient.GatewayConfig.from_environment>`.

:func:`read_config_file` parses the file (errors name the path and a position, never a
fragment of the file, which may hold a secret); :class:`FileSettings` gives typed,
validated access to the parts gwclient uses (endpoint, credentials with SecretRefs, TLS
pins, the SSH tunnel).  The precedence rules are in ``from_environment``'s docstring and
``docs/configuration.md``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from .._errors import ConfigError
from .locations import expand_user, openclaw_state_dir, profile_port
from .plaintext import is_loopback_host
from .values import DEFAULT_PORT, SshTunnelConfig, env_value, normalize_tls_fingerprint

__all__ = ["FileSettings", "read_config_file"]

_BIND_MODES = frozenset({"loopback", "lan", "tailnet", "custom", "auto"})
_ENV_SECRET_ID = re.compile(r"[A-Z][A-Z0-9_]{0,127}")
_ENV_SHORTHAND = re.compile(r"\$\{([A-Z][A-Z0-9_]{0,127})\}|\$([A-Z][A-Z0-9_]{0,127})")
_JSON5_POSITION = re.compile(r":(\d+) (Unexpected (?:end of input)?).*?at column (\d+)")


def read_config_file(path: Path, *, required: bool = False) -> dict[str, Any]:
    """The file's top-level object; ``{}`` for an empty file, or a missing one unless
    *required* (a file the caller named must exist: a typo must not silently mean "no
    settings").  Raises :class:`ConfigError`."""
    import json5

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"OpenClaw config file {path} does not exist") from None
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


class FileSettings:
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
        env_port = env_value(self._env, "OPENCLAW_GATEWAY_PORT")
        if env_port is not None:
            digits = env_port.rpartition(":")[2]
            if digits.isdigit() and 0 < int(digits) < 65536:
                return int(digits)
        return self._port(self.gateway, "gateway.port") or profile_port(self._env) or DEFAULT_PORT

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
            if custom and custom not in ("0.0.0.0", "::") and (tls or is_loopback_host(custom)):
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
        value = env_value(self._env, var)
        if value is None:
            # An explicit SecretRef is authoritative: fail closed, no fallback.
            self._fail(f"{key} refers to environment variable {var}, which is not set")
        return value

    # -- TLS pins
    def edge_headers(self) -> tuple[tuple[str, str], ...]:
        """``gateway.cloudflareAccess.clientId``/``clientSecret`` (SecretRefs allowed) as
        the Cloudflare Access service-token headers, else ``$CF_ACCESS_CLIENT_ID`` /
        ``$CF_ACCESS_CLIENT_SECRET`` (the official node host's fallback); both or neither."""
        section = self._section(self.gateway, "cloudflareAccess", "gateway.cloudflareAccess")
        if section:
            values = [section.get(k) for k in ("clientId", "clientSecret")]
            if any(v is None for v in values):
                self._fail("gateway.cloudflareAccess needs both clientId and clientSecret")
            client_id = self._resolve_secret("gateway.cloudflareAccess.clientId", values[0])
            secret = self._resolve_secret("gateway.cloudflareAccess.clientSecret", values[1])
        else:
            client_id = env_value(self._env, "CF_ACCESS_CLIENT_ID") or ""
            secret = env_value(self._env, "CF_ACCESS_CLIENT_SECRET") or ""
            if bool(client_id) != bool(secret):
                raise ConfigError("CF_ACCESS_CLIENT_ID and CF_ACCESS_CLIENT_SECRET must be set together")
        if not (client_id and secret):
            return ()
        return (("CF-Access-Client-Id", client_id), ("CF-Access-Client-Secret", secret))

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
            cert_path = expand_user(cert, self._env)
        else:
            cert_path = openclaw_state_dir(self._env) / "gateway" / "tls" / "gateway-cert.pem"
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
                identity_file=str(expand_user(identity, self._env)) if identity else None,
                remote_port=remote_port or DEFAULT_PORT,
                host_key_policy=policy,
            )
        except ConfigError as exc:
            self._fail(f"gateway.remote: {exc}")
