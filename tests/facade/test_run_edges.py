"""Run edges (issue 16 point 6): ``Run.wait()``/``updates()`` timeouts are validated like
every other timeout, and after a queue overflow that lost the *start* of the reply the
deltas still add up to the result.  The overflow is made deterministic: the dev gateway
streams a first part of the reply and pauses; an ``echo`` round trip proves the client
has queued (and dropped) those events before anything reads the run."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from gwclient import GatewayConfig, GatewayConnection, RetryPolicy, UsageError
from gwclient.runs import TextDelta
from gwclient.testing import DevGateway
from gwclient.testing._devgw_runs import RunScript

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

TOKEN = "dev-token-run-edges"
WORDS = " ".join(f"word{i}" for i in range(60))


@pytest.fixture
def gw() -> Iterator[DevGateway]:
    with DevGateway(token=TOKEN) as gateway:
        gateway.runs.when("HANG", RunScript(hang=True))
        gateway.runs.when("PAUSE", RunScript(pause_after=40))
        gateway.runs.when("BARE", RunScript(pause_after=40, cumulative=False))
        yield gateway


def connection(gw: DevGateway, max_queue: int = 1000) -> GatewayConnection:
    return GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, max_queue=max_queue,
                                                  retry=RetryPolicy(initial=0.05, maximum=0.5),
                                                  request_timeout=10))


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, "1", b"1", True, [1]], ids=repr)
def test_run_wait_and_updates_refuse_bad_timeouts(gw: DevGateway, bad: Any) -> None:
    run = connection(gw).chat("agent:main:edges", "HANG")
    with pytest.raises(UsageError):
        run.wait(bad)
    with pytest.raises(UsageError):
        run.updates(timeout=bad)  # at the call, not at the first next()
    assert not run.done
    assert gw.wait_for(lambda g: g.runs.paused == 1, timeout=10)
    gw.runs.release()
    assert run.wait(10).text.startswith("ECHO")


def test_run_wait_and_updates_take_huge_timeouts_as_long_waits(gw: DevGateway) -> None:
    huge = 10**400  # beyond the float range: clamped, like every gwclient timeout
    run = connection(gw).chat("agent:main:edges", "HANG")
    assert gw.wait_for(lambda g: g.runs.paused == 1, timeout=10)
    gw.runs.release()
    assert run.wait(huge).text == "ECHO: HANG"
    assert [u for u in run.updates(timeout=huge) if isinstance(u, TextDelta)]


@pytest.mark.parametrize("marker", ["PAUSE", "BARE"], ids=["cumulative-deltas", "bare-deltas"])
def test_deltas_add_up_after_an_overflow_lost_the_start(gw: DevGateway, marker: str) -> None:
    conn = connection(gw, max_queue=8)
    run = conn.chat("agent:main:edges", f"{marker} {WORDS}")
    assert gw.wait_for(lambda g: g.runs.paused == 1, timeout=10)
    assert conn.request("echo", 1) == 1  # everything sent before the pause has been queued
    assert run._sub.dropped_total > 0  # type: ignore[attr-defined]  # the start of the reply was dropped
    gw.runs.release()
    deltas = [u for u in run.updates(timeout=20) if isinstance(u, TextDelta)]
    result = run.wait(10)
    assert result.text == f"ECHO: {marker} {WORDS}"
    assert "".join(d.text for d in deltas) == result.text
    assert "".join(run) == result.text
    assert all(d.full == result.text[:len(d.full)] for d in deltas)  # every ``full`` is a prefix
