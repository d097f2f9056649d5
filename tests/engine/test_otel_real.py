"""The real gateway continues the trace gwclient sends: with an OpenTelemetry tracer
provider configured, a request's traceparent reaches openclaw, whose JSON file log writes
the request's diagnostic trace context (its trace id, and our request span as the parent)
on the records logged while handling it (here the ``res ✗`` line of a failed request).

Without openclaw's ``diagnostics-otel`` plugin (installed separately) the gateway exports
no spans; its file log is what shows, in a plain install, that the trace was continued.
Releases before 2026.9 take no traceparent (closed frame params): none is sent to them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from test_otel import Otel, otel  # noqa: F401 (the fixture)

from gwclient import GatewayConfig, GatewayConnection, RequestError
from gwclient._core.protocol import TRACEPARENT_SINCE
from gwclient.testing._realgateway import RealGateway

pytestmark = [pytest.mark.realgateway, pytest.mark.usefixtures("shutdown_all_after")]


@pytest.fixture
def gateway() -> Iterator[RealGateway]:
    with RealGateway() as gw:
        gw.start()
        yield gw


@pytest.mark.timeout(180)
def test_the_real_gateway_logs_the_request_under_our_trace(gateway: RealGateway, otel: Otel) -> None:  # noqa: F811
    conn = GatewayConnection.shared(GatewayConfig(url=gateway.url, token=gateway.token))
    with otel.tracer.start_as_current_span("caller"):
        conn.request("health")
        with pytest.raises(RequestError):
            conn.request("nosuch.method")
    (span,) = otel.finished("nosuch.method")
    assert span.context is not None
    trace_id, span_id = f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"
    GatewayConnection.shutdown_all()
    gateway.stop()  # the file log is written asynchronously: stopping flushes it
    records = [json.loads(line) for line in gateway.file_log_path.read_text(encoding="utf-8").splitlines()
               if line.startswith("{")]
    if gateway.version_info < TRACEPARENT_SINCE:
        # Older releases refuse a traceparent on request frames: gwclient sends none there
        # (the requests above worked), so nothing is logged on our trace.
        assert not [r for r in records if r.get("traceId") == trace_id]
        return
    (failed,) = [r for r in records if "res ✗ nosuch.method" in str(r.get("1", ""))]
    assert failed["traceId"] == trace_id, failed
    assert failed["parentSpanId"] == span_id, failed
    assert failed["spanId"] != span_id  # the gateway's own child span
    # Every record on our trace is a child of one of our request spans (a slow `health` is
    # logged too): nothing else, the connect's records included, is on it.
    requests = {f"{s.context.span_id:016x}" for s in otel.spans.get_finished_spans()
                if s.name in ("health", "nosuch.method") and s.context is not None}
    ours = [r for r in records if r.get("traceId") == trace_id]
    assert ours and all(r["parentSpanId"] in requests for r in ours)
