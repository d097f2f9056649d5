"""A hello-ok ``tickIntervalMs`` no gateway could mean (1 ms) must not make an idle client
reconnect: the interval is taken as at least 1 s, the official client's watchdog cadence
(``max(tickIntervalMs, 1000)``, PROTOCOL.md 5.1), so the liveness bound is at least 2 s
(issue 16 point 7).  The dev gateway really ticks every 300 ms and claims 1 ms."""

from __future__ import annotations

import pytest
from _util import DEV_TOKEN

from gwclient import Event, GatewayConfig, GatewayConnection, RetryPolicy
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")


@pytest.mark.parametrize("claimed", [1, 0, 10, 999])
def test_an_idle_client_does_not_reconnect_on_an_absurdly_short_tick(claimed: int) -> None:
    with DevGateway(token=DEV_TOKEN, tick_interval_ms=300) as gw:
        gw.policy_overrides["tickIntervalMs"] = claimed
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=DEV_TOKEN,
                                                      retry=RetryPolicy(initial=0.05, maximum=0.2)))
        hello = conn.connect()
        with conn.subscribe(["tick"], include_state=False) as sub:
            ticks = 0
            while ticks < 10:  # about 3 s of an idle client: it only listens
                if isinstance(sub.get(timeout=10), Event):
                    ticks += 1
        assert gw.handshakes_completed == 1 and gw.sockets_accepted == 1
        assert hello.policy.tick_interval_ms == 1000
        conn.shutdown()
