"""The plaintext ws:// rule, checked against the official one.

The official clients check a URL twice: the ``openclaw`` CLI with ``isSecureWebSocketUrl``
of ``src/gateway/net.ts``, then the client transport (``resolveGatewayWebSocketTransport``
of ``packages/gateway-client``, built on its own ``isTrustedPlaintextWebSocketHost``).  Both
are run with the pinned Node from the pinned openclaw install on the URL table below;
a URL is accepted when both accept it, and gwclient must answer the same.  The table is
only evaluated as config: nothing ever connects to these addresses.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gwclient import ConfigError, GatewayConfig
from gwclient._config.plaintext import is_loopback_host, is_secure_websocket_url, url_hostname
from gwclient.testing import ensure_openclaw

# url -> (accepted by default, accepted with OPENCLAW_ALLOW_INSECURE_PRIVATE_WS=1)
# The official answers (openclaw 2026.9.6); test_table_matches_the_official_functions
# re-derives every row from the official code, so this table cannot drift from it.
# Rows marked "net.ts only" are accepted by net.ts but refused by the transport.
TABLE: dict[str, tuple[bool, bool]] = {
    # loopback
    "ws://127.0.0.1:18789": (True, True),
    "ws://127.8.9.10:1": (True, True),
    "ws://localhost:18789": (True, True),
    "ws://LOCALHOST.:18789": (True, True),
    "ws://[::1]:18789": (True, True),
    "ws://[::ffff:127.0.0.1]:1": (True, True),
    "ws://127.1:18789": (True, True),              # URL-standard IPv4 shorthand
    "ws://2130706433:18789": (True, True),
    "ws://0x7f.0.0.1:18789": (True, True),
    # RFC 1918, CGNAT, link-local
    "ws://10.1.2.3:18789": (True, True),
    "ws://172.16.0.5:18789": (True, True),
    "ws://172.31.255.255:18789": (True, True),
    "ws://172.32.0.1:18789": (False, False),
    "ws://192.168.1.20:18789": (True, True),
    "ws://100.64.0.1:18789": (True, True),
    "ws://100.127.255.254:18789": (True, True),
    "ws://100.128.0.1:18789": (False, False),
    "ws://169.254.10.20:18789": (True, True),
    # IPv6 link-local, ULA, site-local, embedded private IPv4
    "ws://[fe80::1]:18789": (True, True),
    "ws://[fd12:3456::1]:18789": (True, True),
    "ws://[fc00::1]:18789": (True, True),
    "ws://[fec0::1]:18789": (True, True),
    "ws://[::ffff:192.168.1.2]:18789": (True, True),
    "ws://[64:ff9b::c0a8:102]:18789": (False, False),   # NAT64 of 192.168.1.2: net.ts only
    "ws://[64:ff9b:1::c0a8:102]:18789": (False, False),  # RFC 8215 local-use NAT64
    "ws://[2002:c0a8:102::1]:18789": (False, False),   # 6to4 of 192.168.1.2: net.ts only
    "ws://[2001:db8::1]:18789": (False, False),        # "reserved" in ipaddr.js: net.ts only
    "ws://[ff02::1]:18789": (False, False),          # multicast
    "ws://[::]:18789": (False, False),
    "ws://0.0.0.0:18789": (False, False),
    # names
    "ws://gateway.local:18789": (True, True),
    "ws://Gateway.LOCAL.:18789": (True, True),
    "ws://box.tail1234.ts.net:18789": (True, True),
    "ws://gateway.lan:18789": (False, True),         # break-glass: any DNS name
    "ws://gateway.example:18789": (False, True),
    "ws://localhost.example:18789": (False, True),
    "ws://local:18789": (False, True),
    # public literals stay refused even with the break-glass
    "ws://203.0.113.7:18789": (False, False),
    "ws://8.8.8.8:18789": (False, False),
    "ws://[2a00:1450::1]:18789": (False, False),
    "ws://256.1.1.1:18789": (False, False),          # not a valid URL at all
    # TLS is always fine; other schemes never
    "wss://gateway.example": (True, True),
    "wss://8.8.8.8:443": (True, True),
    "http://192.168.1.2:18789": (True, True),
    "ftp://127.0.0.1:18789": (False, False),
}

_NODE_SCRIPT = r"""
const [netChunk, netSecure, netLoopback, transportChunk, resolveTransport, urls] = process.argv.slice(1);
const net = await import(netChunk), transport = await import(transportChunk);
const transportAccepts = (url, env) => {
  try { transport[resolveTransport]({url, env}); return true; }
  catch (err) { if (err.constructor.name.endsWith("ConfigurationError")) return false; throw err; }
};
const out = {};
for (const url of JSON.parse(urls)) {
  let loopback = null;
  try { loopback = net[netLoopback](new URL(url).hostname); } catch {}
  out[url] = {
    net: [net[netSecure](url), net[netSecure](url, {allowPrivateWs: true})],
    transport: [transportAccepts(url, {}), transportAccepts(url, {OPENCLAW_ALLOW_INSECURE_PRIVATE_WS: "1"})],
    loopback,
  };
}
console.log(JSON.stringify(out));
"""


def _chunk(dist: Path, defines: str, *exports: str) -> tuple[Path, list[str]]:
    """The dist chunk that defines ``defines`` and exports ``exports``, and their aliases."""
    found = []
    for path in sorted(dist.glob("*.mjs")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if defines not in text:
            continue
        aliases = [re.search(rf"\b{name} as (\w+)", text) for name in exports]
        if all(aliases):
            found.append((path, [m.group(1) for m in aliases if m]))
    assert len(found) == 1, f"expected one dist chunk with {defines} exporting {exports}, got {found}"
    return found[0]


def _official(urls: list[str]) -> dict[str, dict[str, Any]]:
    inst = ensure_openclaw()
    dist = inst.openclaw_prefix / "node_modules" / "openclaw" / "dist"
    net, (net_secure, net_loopback) = _chunk(
        dist, "//#region src/gateway/net.ts", "isSecureWebSocketUrl", "isLoopbackHost")
    transport, (resolve,) = _chunk(
        dist, "//#region packages/gateway-client/src/websocket-transport.ts", "resolveGatewayWebSocketTransport")
    out = subprocess.run(
        [str(inst.node), "--input-type=module", "-e", _NODE_SCRIPT, "--", net.as_uri(), net_secure, net_loopback,
         transport.as_uri(), resolve, json.dumps(urls)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, dict[str, Any]] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def official() -> dict[str, dict[str, Any]]:
    return _official(list(TABLE))


def _both(answer: dict[str, Any]) -> tuple[bool, bool]:
    net, transport = answer["net"], answer["transport"]
    return (net[0] and transport[0], net[1] and transport[1])


def test_table_matches_the_official_functions(official: dict[str, dict[str, Any]]) -> None:
    wrong = {url: (official[url], expected) for url, expected in TABLE.items() if _both(official[url]) != expected}
    assert wrong == {}, "official answer != table"
    # The transport's rule is the narrower one: what it accepts, net.ts accepts too.
    assert all(a["net"][i] for a in official.values() for i in (0, 1) if a["transport"][i])
    assert any(a["net"] != a["transport"] for a in official.values())  # the table shows where they differ


@pytest.mark.parametrize("url", list(TABLE))
def test_gwclient_answers_like_the_official_functions(url: str, official: dict[str, dict[str, Any]]) -> None:
    secure, break_glass = _both(official[url])
    assert is_secure_websocket_url(url) is secure
    assert is_secure_websocket_url(url, allow_private_ws=True) is break_glass
    host, loopback = url_hostname(url), official[url]["loopback"]
    if loopback is not None and host is not None:
        assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("url", [u for u in TABLE if u.startswith("ws://")])
def test_config_follows_the_table(url: str, tmp_path: Path) -> None:
    secure, break_glass = TABLE[url]
    if secure:
        assert GatewayConfig(url=url).url == url
    else:
        with pytest.raises(ConfigError, match="refusing plaintext ws://"):
            GatewayConfig(url=url)
    env = {"HOME": str(tmp_path), "OPENCLAW_GATEWAY_URL": url, "OPENCLAW_ALLOW_INSECURE_PRIVATE_WS": "1"}
    if break_glass:
        assert GatewayConfig.from_environment(env).url == url
    elif url_hostname(url) is not None:
        with pytest.raises(ConfigError, match="refusing plaintext ws://"):
            GatewayConfig.from_environment(env)
    if url_hostname(url) is not None:  # a parseable URL: the explicit switch allows anything
        assert GatewayConfig(url=url, allow_insecure_remote=True).allow_insecure_remote


def test_plaintext_to_a_non_loopback_host_warns_once_per_url(caplog: pytest.LogCaptureFixture) -> None:
    url = "ws://10.99.98.97:18789"
    with caplog.at_level(logging.WARNING, logger="gwclient.config"):
        GatewayConfig(url=url, token="SECRET-token-1")
        GatewayConfig(url=url, token="SECRET-token-2")
        GatewayConfig(url="ws://127.0.0.1:18789")
        GatewayConfig(url="wss://10.99.98.97:18789")
    warnings = [r.getMessage() for r in caplog.records if r.name == "gwclient.config"]
    assert warnings == [
        "plaintext ws:// to non-loopback ws://10.99.98.97:18789: the token and chat data travel "
        "unencrypted; prefer wss:// or an SSH tunnel"
    ]
    assert "SECRET" not in caplog.text


def test_cli_allow_insecure_flag(capsys: pytest.CaptureFixture[str]) -> None:
    # ``connections`` only reads the config (for its port) and this machine's socket table:
    # no traffic goes to the (public, documentation-range) address.
    from gwclient.cli import main

    url = "ws://203.0.113.7:18789"
    assert main(["--url", url, "connections", "--json"]) == 2
    err = capsys.readouterr().err
    assert "refusing plaintext ws://" in err and "--allow-insecure" in err
    assert main(["--allow-insecure", "--url", url, "connections", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["port"] == 18789
    assert main(["--url", url, "connections", "--allow-insecure", "--json"]) == 0  # after the command too
    capsys.readouterr()
