"""Resync after a reconnect (issue 18, point 5), against the dev gateway through a relay:
a run resumed mid-stream adopts ``chat.history``'s ``inFlightRun`` so its deltas add up
to the final text character for character.  Nothing sleeps: the run pauses and is released
by the dev gateway; the relay swallows what the gateway streams while it is frozen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import gwclient._runs
from gwclient import GatewayConfig, GatewayConnection, RetryPolicy, RunFailed, RunInterrupted
from gwclient.runs import TextDelta
from gwclient.testing import DevGateway
from gwclient.testing._devgw_runs import RunScript
from gwclient.testing._relay import TcpRelay

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

TOKEN = "dev-token-resync"
WORDS = " ".join(f"w{i}" for i in range(10))


@pytest.fixture
def gw() -> Iterator[DevGateway]:
    with DevGateway(token=TOKEN) as gateway:
        gateway.runs.when("TWICE", RunScript(pause_after=2, pauses=(6,)))
        yield gateway


@pytest.fixture
def relay(gw: DevGateway) -> Iterator[TcpRelay]:
    with TcpRelay(gw.port) as r:
        yield r


def test_a_run_resumed_mid_stream_adopts_the_in_flight_text(gw: DevGateway, relay: TcpRelay) -> None:
    conn = GatewayConnection.shared(GatewayConfig(url=relay.url, token=TOKEN,
                                                  retry=RetryPolicy(initial=0.05, maximum=0.2),
                                                  connect_timeout=5.0, request_timeout=10.0))
    run = conn.chat("agent:main:resync", f"TWICE {WORDS}")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)  # "ECHO: TWICE" streamed
    updates = run.updates(timeout=10)
    seen = ""
    while seen != "ECHO: TWICE":
        update = next(updates)
        if isinstance(update, TextDelta):
            seen = update.full
    assert relay.freeze() == 1
    gw.runs.release()  # w0..w3 go into the frozen socket: lost to the client
    assert gw.wait_for(lambda g: g.runs.paused >= 1 and len(g.runs.text(run.run_id)) > len(seen), timeout=10)
    lost = gw.runs.text(run.run_id)
    assert relay.drop() == 1  # the client sees its socket close and reconnects
    # Before the gateway streams another word, the resumed run has the text it missed.
    while seen != lost:
        update = next(updates)
        if isinstance(update, TextDelta):
            seen = update.full
    assert run.text == lost == "ECHO: TWICE w0 w1 w2 w3"
    gw.runs.release()
    deltas = list(run)
    result = run.wait(10)
    assert result.text == f"ECHO: TWICE {WORDS}"
    assert "".join(deltas) == result.text  # character for character
    assert gw.handshakes_completed == 2


def test_without_a_boot_id_a_reconnect_is_not_taken_for_a_restart(gw: DevGateway) -> None:
    """2026.7.1's hello has no bootId: the run asks the session whether a turn still goes
    on rather than ending as if the gateway had restarted."""
    gw.runs.release_2026_7 = True
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, retry=RetryPolicy(initial=0.05, maximum=0.2),
                                                  connect_timeout=5.0, request_timeout=10.0))
    run = conn.chat("agent:main:noboot", f"TWICE {WORDS}")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    gw.drop_connections()
    assert gw.wait_for(lambda g: g.handshakes_completed >= 2, timeout=10)
    gw.runs.release()
    assert gw.wait_for(lambda g: g.runs.paused >= 1 and g.runs.text(run.run_id) == "ECHO: TWICE w0 w1 w2 w3",
                       timeout=10)  # the second pause
    gw.runs.release()
    deltas = list(run)
    assert run.wait(10).text == f"ECHO: TWICE {WORDS}" == "".join(deltas)


def test_without_a_boot_id_a_restart_still_interrupts_the_run(gw: DevGateway) -> None:
    gw.runs.release_2026_7 = True
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, retry=RetryPolicy(initial=0.05, maximum=0.2),
                                                  connect_timeout=5.0, request_timeout=10.0))
    run = conn.chat("agent:main:noboot2", f"TWICE {WORDS}")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    gw.restart()
    with pytest.raises(RunInterrupted) as info:
        run.wait(15)
    assert "may have restarted" in str(info.value)


def test_a_lifecycle_error_without_a_chat_error_fails_the_run(gw: DevGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """2026.5.12: a failing model gives lifecycle errors, no chat error, and agent.wait
    answers "ok" without a terminal reply; the run fails with the lifecycle's error."""
    monkeypatch.setattr(gwclient._runs, "SETTLE_SECONDS", 0.05)
    gw.runs.release_2026_5 = True
    gw.runs.when("BOOM", RunScript(fail="500 fake model failure (500)", fail_after=1))
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, connect_timeout=5.0, request_timeout=10.0))
    run = conn.chat("agent:main:boom", "BOOM now")
    with pytest.raises(RunFailed) as info:
        run.wait(10)
    assert info.value.reason == "500 fake model failure (500)"
