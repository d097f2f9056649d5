"""Which proxy, if any, a gateway websocket goes through (pure code, no sockets).

websocket-client reads ``http_proxy``/``https_proxy``/``no_proxy`` from the environment
by itself, with no loopback exemption: with ``http_proxy`` set, ``ws://127.0.0.1`` traffic
(the token included) went through whatever proxy the environment named.  gwclient never
applies the environment's proxy variables; the rules are:

* a proxy is used only when configured explicitly (``GatewayConfig.proxy``);
* never for a loopback gateway (127.0.0.0/8, ::1, ``localhost``): the proxy is ignored;
* never for plaintext ``ws://``: :func:`parse_proxy` (called by ``GatewayConfig``)
  refuses that combination with a :class:`~gwclient.ConfigError`.

:func:`proxy_kwargs` returns the keyword arguments for ``websocket.create_connection``.
"""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from .._errors import ConfigError
from .plaintext import is_loopback_host

__all__ = ["PROXY_SCHEMES", "parse_proxy", "proxy_kwargs", "redact_proxy"]

#: Proxy URL schemes gwclient accepts (socks* need the ``python-socks`` package).
PROXY_SCHEMES = frozenset({"http", "socks5", "socks5h"})

# How to make websocket-client ignore the environment: it only consults the environment
# when no proxy host is given, and it skips every proxy for a host matched by
# ``http_no_proxy`` (checked before anything else, "*" matches all).  So "no proxy" is a
# placeholder host that is never contacted (``.invalid`` never resolves, RFC 6761) plus a
# no-proxy list of "*".  tests/test_proxy.py proves it against a recording proxy.
_NO_PROXY: dict[str, Any] = {
    "http_proxy_host": "no-proxy.invalid",
    "http_proxy_port": 9,
    "http_no_proxy": ["*"],
    "proxy_type": "http",
}
# With an explicit proxy, an empty no-proxy list would make websocket-client read
# ``no_proxy`` from the environment; a list that matches no real host prevents that.
_NO_EXEMPTIONS = ["no-exemption.invalid"]


def redact_proxy(proxy: str) -> str:
    """``proxy`` without its credentials (safe for reprs, logs and messages)."""
    try:
        parts = urlsplit(proxy.strip())
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<unparseable proxy>"
    return SplitResult(parts.scheme, netloc, "", "", "").geturl()


def parse_proxy(proxy: object, url: str) -> str:
    """Validate an explicit proxy for the gateway ``url``; return it stripped.

    ``http://[user:password@]host:port``, ``socks5://...`` or ``socks5h://...`` (DNS
    through the proxy).  Raises :class:`ConfigError` for anything else, for a plaintext
    ``ws://`` gateway, and for a socks proxy without the ``python-socks`` package."""
    if not isinstance(proxy, str) or not proxy.strip():
        raise ConfigError("proxy must be a non-empty string like http://host:port, or None")
    text = proxy.strip()
    shown = redact_proxy(text)
    try:
        parts = urlsplit(text)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid proxy {shown!r}: {exc}") from None
    if scheme not in PROXY_SCHEMES or not host or port is None or port == 0:
        raise ConfigError(
            f"proxy must be http://host:port, socks5://host:port or socks5h://host:port, got {shown!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"proxy must not have a path, query or fragment, got {shown!r}")
    if urlsplit(url.strip()).scheme.lower() != "wss":
        raise ConfigError(
            "a proxy is only used for wss:// gateways: plaintext ws:// never goes through a proxy "
            "(the proxy would see the token)"
        )
    if scheme.startswith("socks") and importlib.util.find_spec("python_socks") is None:
        raise ConfigError(f"a {scheme}:// proxy needs the python-socks package (pip install python-socks)")
    return text


def proxy_kwargs(url: str, proxy: str | None) -> dict[str, Any]:
    """Keyword arguments for ``websocket.create_connection(url, ...)``.

    Environment proxy variables are never applied.  ``proxy`` (already validated by
    :func:`parse_proxy`) is used only for a ``wss://`` gateway that is not on loopback."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if proxy is None or is_loopback_host(host):
        return dict(_NO_PROXY)
    text = parse_proxy(proxy, url)
    p = urlsplit(text)
    auth = (unquote(p.username or ""), unquote(p.password or "")) if p.username else None
    return {
        "http_proxy_host": p.hostname,
        "http_proxy_port": p.port,
        "http_proxy_auth": auth,
        "http_no_proxy": list(_NO_EXEMPTIONS),
        "proxy_type": p.scheme.lower(),
    }
