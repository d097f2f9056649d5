"""The official rule for plaintext ``ws://``: which hosts the OpenClaw clients talk to
without TLS.  Pure functions, no I/O.

A port of openclaw 2026.9.6 ``src/gateway/net.ts`` (``isSecureWebSocketUrl``,
``isTrustedPlaintextWebSocketHost``, ``isPrivateOrLoopbackHost``, ``isLoopbackHost``) and
``packages/net-policy/src/ip.ts`` (``isPrivateOrLoopbackIpAddress``), which decide on the
IP ranges of ipaddr.js.  tests/test_plaintext.py runs the official functions from the
pinned install and checks this module against them, URL by URL.

* ``wss://`` is always accepted.
* ``ws://`` is accepted to a *trusted plaintext host*: ``localhost``; an IP literal that is
  loopback, RFC 1918 private, CGNAT (100.64/10), link-local (169.254/16, fe80::/10), IPv6
  unique-local (fc00::/7) or site-local (fec0::/10), a few reserved IPv6 ranges, or an
  IPv6 address that embeds such an IPv4 address (mapped, NAT64, 6to4, Teredo...); and any
  name ending in ``.local`` or ``.ts.net``.
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

# ipaddr.js IPv4 ranges that count as "private or loopback" (loopback, private, linkLocal,
# carrierGradeNat).  They do not overlap ranges ipaddr.js checks earlier.
_PRIVATE_V4 = tuple(_net(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                      "169.254.0.0/16", "100.64.0.0/10"))

# ipaddr.js IPv6 SpecialRanges, in its order: range() is the FIRST match.
_V6_RANGES: tuple[tuple[str, tuple[ipaddress.IPv6Network, ...]], ...] = tuple(
    (name, tuple(ipaddress.IPv6Network(n) for n in nets.split()))
    for name, nets in (
        ("unspecified", "::/128"),
        ("linkLocal", "fe80::/10"),
        ("multicast", "ff00::/8"),
        ("loopback", "::1/128"),
        ("uniqueLocal", "fc00::/7"),
        ("ipv4Mapped", "::ffff:0:0/96"),
        ("deprecatedSiteLocal", "fec0::/10"),
        ("discard", "100::/64"),
        ("rfc6145", "::ffff:0:0:0/96"),
        ("rfc6052", "64:ff9b::/96 64:ff9b:1::/48"),
        ("6to4", "2002::/16"),
        ("teredo", "2001::/32"),
        ("benchmarking", "2001:2::/48"),
        ("amt", "2001:3::/32"),
        ("as112v6", "2001:4:112::/48 2620:4f:8000::/48"),
        ("deprecatedOrchid", "2001:10::/28"),
        ("orchid2", "2001:20::/28"),
        ("droneRemoteIdProtocolEntityTags", "2001:30::/28"),
        ("segmentRouting", "5f00::/16"),
        ("reserved", "2001::/23 2001:db8::/32 3fff::/20"),
    )
)
# BLOCKED_IPV6_SPECIAL_USE_RANGES of net-policy/src/ip.ts.
_BLOCKED_V6 = frozenset({"unspecified", "loopback", "linkLocal", "uniqueLocal", "multicast", "reserved",
                         "benchmarking", "discard", "orchid2"})
_NAT64_LOCAL_USE = _net("64:ff9b:1::/48")
_CLOUD_METADATA = frozenset({_IPv4("100.100.100.200"), _IPv6("fd00:ec2::254")})


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


def _v6_range(addr: _IPv6) -> str:
    for name, nets in _V6_RANGES:
        if any(addr in net for net in nets):
            return name
    return "unicast"


def _embedded_ipv4(addr: _IPv6, range_name: str) -> _IPv4 | None:
    value = int(addr)
    hextets = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    if range_name == "rfc6145" or (range_name == "rfc6052" and addr not in _NAT64_LOCAL_USE):
        return _IPv4(value & 0xFFFFFFFF)
    if range_name == "6to4":
        return _IPv4((hextets[1] << 16) | hextets[2])
    if range_name == "teredo":
        return _IPv4((value & 0xFFFFFFFF) ^ 0xFFFFFFFF)
    compatible = hextets[:6] == [0] * 6
    isatap = (hextets[4] & 0xFCFF) == 0 and hextets[5] == 0x5EFE
    if compatible or isatap:
        return _IPv4(value & 0xFFFFFFFF)
    return None


def _is_private_or_loopback_ip(addr: _IPv4 | _IPv6) -> bool:
    if isinstance(addr, _IPv4):
        return any(addr in net for net in _PRIVATE_V4)
    range_name = _v6_range(addr)
    embedded = _embedded_ipv4(addr, range_name)
    if addr in _NAT64_LOCAL_USE:
        return False  # blocked for SSRF, but not a private destination (net.ts)
    if addr in _CLOUD_METADATA or (embedded is not None and embedded in _CLOUD_METADATA):
        return True
    if range_name in _BLOCKED_V6 or (int(addr) >> 112) & 0xFFC0 == 0xFEC0:
        return True
    return embedded is not None and any(embedded in net for net in _PRIVATE_V4)


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
    if addr is None or not _is_private_or_loopback_ip(addr):
        return False
    return not (isinstance(addr, _IPv6) and (addr.is_multicast or addr == _IPv6("::")))


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
