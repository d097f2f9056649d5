"""The official rule for plaintext ``ws://``: which hosts the OpenClaw clients talk to
without TLS.  Pure functions, no I/O.

The official clients check a gateway URL twice: the ``openclaw`` CLI with
``isSecureWebSocketUrl`` of ``src/gateway/net.ts`` (connection details), then the client
transport with ``isSecureWebSocketUrl``/``isTrustedPlaintextWebSocketHost`` of
``packages/gateway-client/src/websocket-transport.ts`` (openclaw 2026.9.6).  A URL works
only if both accept it; the transport's rule is the narrower one (net.ts also accepts some
special IPv6 ranges, e.g. ``2001:db8::/32`` and IPv6 forms embedding a private IPv4), so
this module ports the transport's rule.  tests/test_plaintext.py runs both official
functions from the pinned install and checks this module against them, URL by URL.

* ``wss://`` is always accepted.
* ``ws://`` is accepted to a *trusted plaintext host*: ``localhost``; an IP literal that is
  loopback, RFC 1918 private, CGNAT (100.64/10), link-local (169.254/16, fe80::/10), IPv6
  unique-local (fc00::/7) or site-local (fec0::/10) (``::ffff:``-mapped IPv4 counts as
  IPv4); and any name ending in ``.local`` or ``.ts.net``.
* With ``OPENCLAW_ALLOW_INSECURE_PRIVATE_WS=1`` (exactly ``1``), also any DNS name (the
  official break-glass trusts the network's resolver); public IP literals stay refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = [
    "ALLOW_PRIVATE_WS_ENV",
    "allow_private_ws",
    "is_loopback_host",
    "is_private_or_loopback_host",
    "is_secure_websocket_url",
    "is_trusted_plaintext_host",
    "url_hostname",
]

ALLOW_PRIVATE_WS_ENV = "OPENCLAW_ALLOW_INSECURE_PRIVATE_WS"

_IPv4 = ipaddress.IPv4Address
_IPv6 = ipaddress.IPv6Address
_net = ipaddress.ip_network

# PRIVATE_OR_LOOPBACK_IPV4_RANGES / _IPV6_RANGES of gateway-client's websocket-transport.ts,
# as ipaddr.js ranges: loopback, private, linkLocal, carrierGradeNat / loopback, linkLocal,
# uniqueLocal, deprecatedSiteLocal.  None overlaps a range ipaddr.js matches earlier.
_PRIVATE_V4 = tuple(_net(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                      "169.254.0.0/16", "100.64.0.0/10"))
_PRIVATE_V6 = tuple(_net(n) for n in ("::1/128", "fe80::/10", "fc00::/7", "fec0::/10"))


def allow_private_ws(env: Mapping[str, str]) -> bool:
    """The official break-glass: ``OPENCLAW_ALLOW_INSECURE_PRIVATE_WS`` is exactly ``"1"``."""
    return env.get(ALLOW_PRIVATE_WS_ENV) == "1"


# ------------------------------------------------------------------ host parsing (WHATWG)


def _ipv4_number(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
        if not digits:
            return 0
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    try:
        return int(digits, base) if digits.isascii() and digits.isalnum() else None
    except ValueError:
        return None


def _whatwg_ipv4(host: str) -> str | bool | None:
    """The URL standard's IPv4 host parser: the dotted-decimal form for hosts that "end in
    a number" (``127.1``, ``0x7f.0.0.1``, ``2130706433``), ``False`` when such a host is
    invalid (the URL does not parse), ``None`` for a domain."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]
    last = parts[-1]
    if not last or not ((last.isascii() and last.isdigit()) or _ipv4_number(last) is not None):
        return None
    if len(parts) > 4:
        return False
    numbers = [_ipv4_number(p) if p else None for p in parts]
    if any(n is None for n in numbers):
        return False
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return False
    value = values[-1]
    for i, n in enumerate(values[:-1]):
        value += n * 256 ** (3 - i)
    return str(_IPv4(value))


def url_hostname(url: str) -> str | None:
    """The URL's host as the URL standard (``new URL(url).hostname``) gives it, lowercased,
    without IPv6 brackets; ``None`` when the URL or its host does not parse."""
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    if not host or "%" in host:  # percent-decoding of hosts is not mirrored: refuse
        return None
    if ":" in host:
        try:
            return str(_IPv6(host))
        except ValueError:
            return None
    ipv4 = _whatwg_ipv4(host)
    if ipv4 is False:
        return None
    return host if ipv4 is None else str(ipv4)


def _ip(host: str) -> _IPv4 | _IPv6 | None:
    """A canonical IP literal (mapped IPv6 turned into IPv4), else ``None``."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, _IPv6) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


# ------------------------------------------------------------------ the rule


def _is_private_or_loopback_ip(addr: _IPv4 | _IPv6) -> bool:
    nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        _PRIVATE_V4 if isinstance(addr, _IPv4) else _PRIVATE_V6)
    return any(addr in net for net in nets)


def is_loopback_host(host: str) -> bool:
    """``localhost`` (trailing dots allowed), 127.0.0.0/8, ``::1`` and ``::ffff:127.x``."""
    host = host.strip().lower()
    if host.rstrip(".") == "localhost":
        return True
    addr = _ip(host.removeprefix("[").removesuffix("]"))
    return addr is not None and addr.is_loopback


def is_private_or_loopback_host(host: str) -> bool:
    """Official ``isPrivateOrLoopbackHost``: localhost or a private/loopback IP literal."""
    host = host.strip().lower()
    if host.rstrip(".") == "localhost":
        return True
    addr = _ip(host.removeprefix("[").removesuffix("]"))
    return addr is not None and _is_private_or_loopback_ip(addr)


def is_trusted_plaintext_host(host: str) -> bool:
    """Official ``isTrustedPlaintextWebSocketHost``: private or loopback, ``*.local`` or
    ``*.ts.net``.  ``host`` is a URL hostname (:func:`url_hostname`)."""
    if is_private_or_loopback_host(host):
        return True
    name = host.strip().lower().rstrip(".")
    return name.endswith(".local") or name.endswith(".ts.net")


def is_secure_websocket_url(url: str, *, allow_private_ws: bool = False) -> bool:
    """Official ``isSecureWebSocketUrl``: may this URL carry credentials?  ``wss://`` always;
    ``ws://`` to a trusted plaintext host; with ``allow_private_ws`` (the break-glass) also
    ``ws://`` to any DNS name.  ``http(s)://`` count as ``ws(s)://``."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return False
    host = url_hostname(url)
    if host is None:
        return False
    scheme = {"https": "wss", "http": "ws"}.get(scheme, scheme)
    if scheme == "wss":
        return True
    if scheme != "ws":
        return False
    if is_trusted_plaintext_host(host):
        return True
    return allow_private_ws and _ip(host) is None
