"""Setup codes (``oc-pair://<code>``, issue 18 point 3): decoded the way the gateway's own
decoder checks them, made into a config, and given to the CLI; the bootstrap token never
shows.  The real ``openclaw qr`` code is in test_real_gateway_2026_9.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from _util import DEV_TOKEN

from gwclient import ConfigError, GatewayConfig, GatewayConnection, decode_setup_code
from gwclient.cli import main
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

SECRET = "boot-Zq8XfW2vLm4R"
PIN = "AB:" * 31 + "AB"


def encode(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_a_setup_link_and_a_bare_code_decode_alike() -> None:
    code = encode({"url": "ws://127.0.0.1:18790", "bootstrapToken": SECRET, "expiresAtMs": 4_102_444_800_000})
    for text in (f"oc-pair://{code}", f"  OC-PAIR://{code}\n", code):
        setup = decode_setup_code(text)
        assert (setup.url, setup.bootstrap_token, setup.expires_at) == ("ws://127.0.0.1:18790", SECRET, 4_102_444_800.0)
        assert SECRET not in repr(setup)
    wss = decode_setup_code(encode({"url": "wss://gw.example.com", "urls": ["wss://gw.example.com", "wss://b.example"],
                                    "bootstrapToken": SECRET, "tlsFingerprint": PIN}))
    assert wss.urls == ("wss://gw.example.com", "wss://b.example") and wss.tls_fingerprint == "ab" * 32


@pytest.mark.parametrize(("payload", "message"), [
    ("not base64 !", "invalid setup code"),
    (base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="), "invalid setup code"),
    (encode([1, 2]), "not a setup payload"),
    (encode({"url": "ws://h:1"}), "no bootstrap token"),
    (encode({"url": "http://h:1", "bootstrapToken": SECRET}), "not a ws:// or wss:// url"),
    (encode({"url": " ws://h:1", "bootstrapToken": SECRET}), "not a ws:// or wss:// url"),
    (encode({"url": "ws://h:1", "bootstrapToken": SECRET, "urls": []}), "1 to 8"),
    (encode({"url": "ws://h:1", "bootstrapToken": SECRET, "urls": ["ws://h:1"] * 9}), "1 to 8"),
    (encode({"url": "ws://h:1", "bootstrapToken": SECRET, "expiresAtMs": 1000}), "has expired"),
    (encode({"url": "ws://h:1", "bootstrapToken": SECRET, "expiresAtMs": "soon"}), "not a time"),
    (encode({"url": "wss://h:1", "bootstrapToken": SECRET, "tlsFingerprint": "xyz"}), "SHA-256"),
])
def test_a_bad_code_is_a_config_error_that_never_quotes_it(payload: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        decode_setup_code(payload)
    assert SECRET not in str(info.value) and payload not in str(info.value)


def test_from_setup_code_makes_the_config() -> None:
    code = encode({"url": "wss://gw.example.com", "bootstrapToken": SECRET, "tlsFingerprint": PIN})
    config = GatewayConfig.from_setup_code(f"oc-pair://{code}", display_name="phone")
    assert (config.url, config.bootstrap_token, config.tls_fingerprint) == ("wss://gw.example.com", SECRET, "ab" * 32)
    assert config.token is None and config.display_name == "phone"
    assert SECRET not in repr(config) and "bootstrap_token=<set>" in repr(config)
    with pytest.raises(ConfigError):
        GatewayConfig.from_setup_code(encode({"url": "ws://h:1", "bootstrapToken": SECRET}), no_such_field=1)


def test_the_cli_pairs_with_a_setup_code_and_hides_it(gw: DevGateway, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCLAW_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv("OPENCLAW_GATEWAY_URL", raising=False)
    code = f"oc-pair://{encode({'url': gw.url, 'bootstrapToken': SECRET})}"
    assert main(["--setup-code", code, "--json", "-v", "call", "health"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[-1])["ok"] is True
    assert gw.connect_requests[-1]["auth"] == {"bootstrapToken": SECRET}
    assert SECRET not in captured.err and code not in captured.err
    # the device token it got is stored: the next run needs only the url
    assert main(["--url", gw.url, "call", "health"]) == 0
    assert "deviceToken" in gw.connect_requests[-1]["auth"]
    assert main(["--setup-code", "oc-pair://garbage!", "call", "health"]) == 2
    assert "invalid setup code" in capsys.readouterr().err


@pytest.fixture
def gw() -> Any:
    with DevGateway(token=DEV_TOKEN) as gateway:
        gateway.set_token(None)  # an open gateway: any connect is accepted and pairs the device (no check
        yield gateway            # of the bootstrap token here: the real one is in the real-gateway test)


def test_a_bootstrap_connect_needs_no_shared_token(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(GatewayConfig.from_setup_code(encode({"url": gw.url, "bootstrapToken": SECRET})))
    assert conn.request("health")["ok"] is True
    assert gw.connect_requests[-1]["auth"] == {"bootstrapToken": SECRET}


def test_a_setup_code_takes_the_ordinary_path_not_the_shares_shortcut() -> None:
    """The share's cheap path builds its config from --url/--token only: a setup code goes
    the ordinary way (which reads it), whatever the share mode."""
    import io

    from gwclient.cli._parser import build_parser
    from gwclient.cli._share import fast_command

    code = f"oc-pair://{encode({'url': 'ws://127.0.0.1:9', 'bootstrapToken': SECRET})}"
    args = build_parser().parse_args(["--setup-code", code, "--share", "required", "call", "health"])
    assert fast_command(args, io.StringIO(), io.StringIO()) is None
