"""ProtocolMismatch for every form of the refusal: protocol 3's ``INVALID_REQUEST`` "protocol
mismatch" with ``details.expectedProtocol``, protocol 4's ``details.code: PROTOCOL_MISMATCH``,
and a bare close 1002 during the handshake.  Each names both versions and the minimum
openclaw; the pure mapping is checked with plain asserts, the whole path with the dev gateway.
"""

from __future__ import annotations

from typing import Any

import pytest

from gwclient import ConnectError, GatewayConfig, GatewayConnection, ProtocolMismatch, RequestError
from gwclient._core.frames import PROTOCOL_VERSION, ErrorShape
from gwclient._core.protocol import connect_error_from_close, error_from_shape
from gwclient._errors import MINIMUM_OPENCLAW
from gwclient.testing import DevGateway

TOKEN = "mismatch-token"


def _shape(code: str, message: str, details: dict[str, Any] | None = None) -> ErrorShape:
    return ErrorShape(code=code, message=message, details=details)


def test_minimum_openclaw_and_client_protocol() -> None:
    assert MINIMUM_OPENCLAW == "2026.5.12"
    assert ProtocolMismatch("x").client_protocol == PROTOCOL_VERSION == 4


def test_protocol_3_refusal_without_detail_code() -> None:
    err = error_from_shape(_shape("INVALID_REQUEST", "protocol mismatch", {"expectedProtocol": 3}),
                           method="connect", connect=True)
    assert type(err) is ProtocolMismatch and err.pauses_reconnect
    assert (err.server_protocol, err.client_protocol) == (3, 4)
    assert err.minimum_openclaw == "2026.5.12"
    text = str(err)
    assert text.startswith("protocol mismatch: ")
    assert "gateway speaks protocol 3" in text and "gwclient speaks protocol 4" in text
    assert "upgrade the gateway to openclaw >= 2026.5.12" in text
    assert err.code == "INVALID_REQUEST" and err.details == {"expectedProtocol": 3}


def test_expected_protocol_alone_or_message_alone_is_enough() -> None:
    only_details = error_from_shape(_shape("INVALID_REQUEST", "refused", {"expectedProtocol": 2}), connect=True)
    assert isinstance(only_details, ProtocolMismatch) and only_details.server_protocol == 2
    only_message = error_from_shape(_shape("INVALID_REQUEST", " Protocol Mismatch "), connect=True)
    assert isinstance(only_message, ProtocolMismatch) and only_message.server_protocol is None
    assert "does not accept protocol 4" in str(only_message) and ">= 2026.5.12" in str(only_message)


def test_a_refusal_naming_our_own_protocol() -> None:
    err = ProtocolMismatch("protocol mismatch", server_protocol=4)
    assert "says it speaks protocol 4 but refused it" in str(err) and ">= 2026.5.12" in str(err)
    assert "upgrade gwclient" not in str(err)
    assert str(ProtocolMismatch("", server_protocol=3)).startswith("the gateway speaks protocol 3")


def test_protocol_4_detail_code_from_a_newer_gateway() -> None:
    details = {"code": "PROTOCOL_MISMATCH", "clientMinProtocol": 4, "clientMaxProtocol": 4,
               "expectedProtocol": 5, "minimumProbeProtocol": 3}
    err = error_from_shape(_shape("INVALID_REQUEST", "protocol mismatch", details), connect=True)
    assert type(err) is ProtocolMismatch and err.pauses_reconnect
    assert (err.server_protocol, err.client_protocol) == (5, 4)
    assert "gateway speaks protocol 5, gwclient speaks protocol 4" in str(err)
    assert "upgrade gwclient" in str(err) and "upgrade the gateway" not in str(err)
    # The detail code decides even with another top-level code.
    other = error_from_shape(_shape("FORBIDDEN", "nope", {"code": "PROTOCOL_MISMATCH"}), connect=True)
    assert isinstance(other, ProtocolMismatch) and other.server_protocol is None


@pytest.mark.parametrize("bad", ["3", True, None, 3.0, [3]])
def test_a_malformed_expected_protocol_is_not_trusted(bad: object) -> None:
    err = error_from_shape(_shape("INVALID_REQUEST", "protocol mismatch", {"expectedProtocol": bad}),
                           connect=True)
    assert isinstance(err, ProtocolMismatch) and err.server_protocol is None


def test_not_a_protocol_refusal() -> None:
    # Another INVALID_REQUEST during connect, and the same words answering a normal request.
    params = error_from_shape(_shape("INVALID_REQUEST", "invalid connect params: x"), connect=True)
    assert type(params) is ConnectError
    request = error_from_shape(_shape("INVALID_REQUEST", "protocol mismatch", {"expectedProtocol": 3}),
                               method="echo")
    assert type(request) is RequestError
    unavailable = error_from_shape(_shape("UNAVAILABLE", "protocol mismatch"), connect=True)
    assert not isinstance(unavailable, ProtocolMismatch)


def test_close_1002_during_the_handshake() -> None:
    err = connect_error_from_close(1002, "protocol mismatch")
    assert type(err) is ProtocolMismatch and err.pauses_reconnect
    assert (err.server_protocol, err.client_protocol) == (None, 4)
    text = str(err)
    assert "(1002: protocol mismatch)" in text
    assert "does not accept protocol 4" in text and "openclaw >= 2026.5.12" in text
    assert not isinstance(connect_error_from_close(1008, "protocol mismatch"), ProtocolMismatch)
    assert not isinstance(connect_error_from_close(None, ""), ProtocolMismatch)


# ------------------------------------------------------------------- through the dev gateway


@pytest.mark.parametrize(("respond", "server_protocol"), [(True, 3), (False, None)])
def test_devgw_protocol_3_gateway_gives_protocol_mismatch_and_pauses(
    respond: bool, server_protocol: int | None, shutdown_all_after: None
) -> None:
    with DevGateway(token=TOKEN) as gw:
        gw.reject_next_like_protocol_3(5, respond=respond)
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN))
        for _ in range(3):
            with pytest.raises(ProtocolMismatch) as info:
                conn.request("health", timeout=10)
            assert info.value.server_protocol == server_protocol and info.value.client_protocol == 4
            assert "gwclient speaks protocol 4" in str(info.value) and ">= 2026.5.12" in str(info.value)
        assert gw.connect_attempts == 1  # paused: the refusal is not retried
        conn.shutdown()


def test_devgw_newer_gateway_gives_protocol_mismatch_naming_both(shutdown_all_after: None) -> None:
    with DevGateway(token=TOKEN) as gw:
        gw.reject_next_connects(1, code="INVALID_REQUEST", message="protocol mismatch",
                                details={"code": "PROTOCOL_MISMATCH", "expectedProtocol": 5,
                                         "clientMinProtocol": 4, "clientMaxProtocol": 4},
                                close_code=1002, close_reason="protocol mismatch")
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN))
        with pytest.raises(ProtocolMismatch) as info:
            conn.request("health", timeout=10)
        assert (info.value.server_protocol, info.value.client_protocol) == (5, 4)
        assert "upgrade gwclient" in str(info.value)
        conn.shutdown()
