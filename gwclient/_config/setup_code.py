"""Setup codes: the ``oc-pair://<code>`` links and codes that ``openclaw qr`` and the
Control UI's pairing dialog hand out (``docs/gateway/pairing.md``, "One-paste node
pairing").

A code is base64url (no padding) of a JSON object: ``url`` (the gateway's ``ws://`` or
``wss://`` endpoint), ``bootstrapToken`` (short-lived, single use: the gateway answers a
connect with it by pairing the device and handing out its device token), and optionally
``urls`` (up to 8 endpoints), ``expiresAtMs`` and ``tlsFingerprint`` (the certificate pin
of a ``wss://`` gateway that serves its own leaf certificate).  :func:`decode_setup_code`
checks it the way the gateway's own decoder does; ``GatewayConfig.from_setup_code`` makes a
config of it.  The bootstrap token is a secret: never in a repr or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .._errors import ConfigError
from .values import normalize_tls_fingerprint

__all__ = ["SETUP_CODE_SCOPES", "SETUP_URL_PREFIX", "SetupCode", "decode_setup_code"]

#: The link form of a setup code (``openclaw node run --pair "oc-pair://<code>"``).
SETUP_URL_PREFIX = "oc-pair://"
#: The operator scopes a setup code's bootstrap hands over on every release (the gateway's
#: ``BOOTSTRAP_HANDOFF_OPERATOR_SCOPES``); a connect asking for more is refused by releases
#: before 2026.9 ("bootstrap token invalid or expired"), whose codes allow no more.
SETUP_CODE_SCOPES = ("operator.approvals", "operator.read", "operator.talk.secrets", "operator.write")
_CODE = re.compile(r"[A-Za-z0-9_-]+")
_MAX_URLS = 8


@dataclass(frozen=True)
class SetupCode:
    """A decoded setup code."""

    url: str
    """The gateway endpoint to connect to."""
    bootstrap_token: str = field(repr=False)
    """The single-use bootstrap token (a secret)."""
    urls: tuple[str, ...] = ()
    """Further endpoints the code names (the first is ``url``), if any."""
    expires_at: float | None = None
    """When the bootstrap token expires (seconds since the epoch), if the code says."""
    tls_fingerprint: str | None = None
    """The gateway certificate's SHA-256 pin (64 hex digits), for ``wss://``."""

    @property
    def scopes(self) -> tuple[str, ...]:
        """The operator scopes to ask for with this code: :data:`SETUP_CODE_SCOPES`, what
        a code hands over on every release."""
        return SETUP_CODE_SCOPES

    def config_fields(self, url: str | None = None) -> dict[str, object]:
        """The ``GatewayConfig`` fields this code sets: ``url`` (unless another ``url`` is
        given), the bootstrap token, the scopes, and the pin for its own ``wss://`` url."""
        fields: dict[str, object] = {"url": url or self.url, "bootstrap_token": self.bootstrap_token,
                                     "scopes": self.scopes}
        if self.tls_fingerprint is not None and fields["url"] == self.url and self.url.startswith("wss://"):
            fields["tls_fingerprint"] = self.tls_fingerprint
        return fields


def _endpoint(value: object) -> str:
    if not isinstance(value, str) or value != value.strip():
        raise ConfigError("invalid setup code: its gateway url is not a ws:// or wss:// url")
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError("invalid setup code: its gateway url is not a ws:// or wss:// url")
    return value


def decode_setup_code(text: str, *, now: float | None = None) -> SetupCode:
    """Decode ``oc-pair://<code>`` or the bare code.  Raises :class:`ConfigError` for
    anything that is not a valid, unexpired setup code (never quoting the code)."""
    if not isinstance(text, str):
        raise ConfigError("a setup code must be a string")
    code = text.strip()
    if code.lower().startswith(SETUP_URL_PREFIX):
        code = code[len(SETUP_URL_PREFIX):]
    if not _CODE.fullmatch(code):
        raise ConfigError("invalid setup code (expected oc-pair://<code> as openclaw qr prints it)")
    try:
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError("invalid setup code (expected oc-pair://<code> as openclaw qr prints it)") from None
    if not isinstance(payload, dict):
        raise ConfigError("invalid setup code: not a setup payload")
    url = _endpoint(payload.get("url"))
    token = payload.get("bootstrapToken")
    if not isinstance(token, str) or not token.strip():
        raise ConfigError("invalid setup code: it carries no bootstrap token")
    urls: tuple[str, ...] = ()
    if "urls" in payload:
        listed = payload["urls"]
        if not isinstance(listed, list) or not 0 < len(listed) <= _MAX_URLS:
            raise ConfigError(f"invalid setup code: 'urls' must list 1 to {_MAX_URLS} gateway urls")
        urls = tuple(_endpoint(u) for u in listed)
    expires_at: float | None = None
    if "expiresAtMs" in payload:
        ms = payload["expiresAtMs"]
        if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
            raise ConfigError("invalid setup code: 'expiresAtMs' is not a time")
        expires_at = ms / 1000.0
        if expires_at <= (time.time() if now is None else now):
            raise ConfigError("this setup code has expired (they last 10 minutes): ask for a new one"
                              " (openclaw qr, or the Control UI's pairing dialog)")
    pin: str | None = None
    if "tlsFingerprint" in payload:
        if not isinstance(payload["tlsFingerprint"], str):
            raise ConfigError("invalid setup code: 'tlsFingerprint' is not a fingerprint")
        pin = normalize_tls_fingerprint(payload["tlsFingerprint"])
    return SetupCode(url, token.strip(), urls, expires_at, pin)
