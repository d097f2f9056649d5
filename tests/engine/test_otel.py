"""OpenTelemetry (gwclient[otel]): request spans and their traceparent on the wire (the dev
gateway records request frames), parent-child with a caller's span, never on connect,
nothing without a configured provider (and nothing imported: checked in subprocesses),
run spans, metrics through an in-memory reader, the per-request DEBUG log."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _util import DEV_TOKEN
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gwclient import GatewayConfig, GatewayConnection, RequestError, RetryPolicy, UsageError
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
REPO = Path(__file__).resolve().parents[2]
UPSTREAM = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def config(gw: DevGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": DEV_TOKEN, "retry": FAST, "connect_timeout": 5.0,
                               "request_timeout": 10.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


class _Ended(SpanProcessor):
    """Remembers on which thread each span ended; sets an event per span name."""

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def event(self, name: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(name, threading.Event())

    def on_end(self, span: ReadableSpan) -> None:
        with self.lock:
            self.threads[span.name] = threading.current_thread().name
        self.event(span.name).set()


@dataclass
class Otel:
    spans: InMemorySpanExporter
    ended: _Ended
    metrics: InMemoryMetricReader
    tracer: trace.Tracer

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]


def _reset_globals() -> None:
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    metrics_internal._METER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE._done = False


@pytest.fixture
def otel() -> Iterator[Otel]:
    """Global SDK providers for one test (reset afterwards: the rest of the suite runs
    without a configured provider)."""
    exporter = InMemorySpanExporter()
    ended = _Ended()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(ended)
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    _reset_globals()
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(meters)
    try:
        yield Otel(exporter, ended, reader, provider.get_tracer("tests"))
    finally:
        _reset_globals()
        provider.shutdown()
        meters.shutdown()


def frames(gw: DevGateway, method: str) -> list[dict[str, Any]]:
    return [f for f in gw.request_frames if f["method"] == method]


def traceparent_of(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


# --------------------------------------------------------------------------- spans


def test_a_request_span_goes_out_as_the_traceparent_and_never_on_connect(gw: DevGateway, otel: Otel) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")
    (span,) = otel.finished("health")
    assert span.kind == SpanKind.CLIENT
    assert dict(span.attributes or {}) == {"rpc.system": "openclaw", "rpc.method": "health",
                                           "gwclient.connection": 1}
    assert span.status.status_code == StatusCode.UNSET
    (frame,) = frames(gw, "health")
    assert frame["traceparent"] == traceparent_of(span)
    assert len(frame["traceparent"]) <= 128
    (connect,) = frames(gw, "connect")
    assert "traceparent" not in connect


def test_a_gateway_older_than_2026_9_never_gets_a_traceparent(gw: DevGateway, otel: Otel) -> None:
    """2026.5.12 and 2026.7.1 validate request frames with closed params and refuse one with
    a traceparent.  The first request goes before the hello says the release: refused
    before anything ran, it is sent again without; after that the hello's version says."""
    gw.runs.release_2026_7 = True  # hello-ok server.version 2026.7.1; a traceparent is refused
    conn = GatewayConnection.shared(config(gw))
    assert conn.request("health")["ok"] is True
    assert gw.invalid_frames == 1  # the first frame, with its traceparent
    fut = conn.submit("health")
    assert conn.request("health")["ok"] is True and fut.result(10)["ok"] is True
    assert gw.invalid_frames == 1
    assert [("traceparent" in f) for f in frames(gw, "health")] == [False, False, False]
    assert len(otel.finished("health")) == 3  # the spans are still made
    # submit() first, on a new connection: its refused frame is sent again too
    conn.shutdown()
    conn = GatewayConnection.shared(config(gw, request_timeout=9.0))
    assert conn.submit("health").result(10)["ok"] is True
    assert gw.invalid_frames == 2


def test_the_callers_current_span_is_the_parent(gw: DevGateway, otel: Otel) -> None:
    conn = GatewayConnection.shared(config(gw))
    with otel.tracer.start_as_current_span("outer") as outer:
        conn.request("health")
        fut = conn.submit("status")
    fut.result(10)
    assert otel.ended.event("status").wait(10)
    outer_ctx = outer.get_span_context()
    for name in ("health", "status"):
        (span,) = otel.finished(name)
        assert span.parent is not None and span.parent.span_id == outer_ctx.span_id
        assert span.context is not None and span.context.trace_id == outer_ctx.trace_id
        (frame,) = frames(gw, name)
        assert frame["traceparent"] == traceparent_of(span)
    # submit()'s span ends off the reader thread: span processors never run there.
    assert otel.ended.threads["status"] == "gwclient-otel"
    assert otel.ended.threads["health"] == threading.current_thread().name


def test_an_explicit_traceparent_is_the_parent(gw: DevGateway, otel: Otel) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.request("health", traceparent=UPSTREAM)
    (span,) = otel.finished("health")
    assert span.context is not None and f"{span.context.trace_id:032x}" == UPSTREAM.split("-")[1]
    assert span.parent is not None and f"{span.parent.span_id:016x}" == UPSTREAM.split("-")[2]
    (frame,) = frames(gw, "health")
    assert frame["traceparent"] == traceparent_of(span) != UPSTREAM


def test_a_failed_request_span_has_the_error_code(gw: DevGateway, otel: Otel) -> None:
    conn = GatewayConnection.shared(config(gw))
    with pytest.raises(RequestError):
        conn.request("dev.nosuchmethod")
    (span,) = otel.finished("dev.nosuchmethod")
    assert span.status.status_code == StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == attributes["rpc.response.status_code"] == "INVALID_REQUEST"


def test_run_start_and_wait_spans(gw: DevGateway, otel: Otel) -> None:
    conn = GatewayConnection.shared(config(gw))
    run = conn.chat("agent:main:otel", "hello")
    run.wait(10)
    (start,) = otel.finished("gwclient.run.start")
    (send,) = otel.finished("chat.send")
    (wait,) = otel.finished("gwclient.run.wait")
    assert send.parent is not None and start.context is not None and send.parent.span_id == start.context.span_id
    assert dict(start.attributes or {}) == {"gwclient.run.kind": "chat", "gwclient.run.id": run.run_id}
    assert dict(wait.attributes or {})["gwclient.run.id"] == run.run_id
    assert wait.status.status_code == StatusCode.UNSET


# --------------------------------------------------------------------------- metrics


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_metrics_durations_by_method_and_outcome_and_observed_counters(gw: DevGateway, otel: Otel) -> None:
    conn = GatewayConnection.shared(config(gw))
    for _ in range(3):
        conn.request("health")
    with pytest.raises(RequestError):
        conn.request("dev.nosuchmethod")
    with conn.subscribe(["dev.ev"]) as sub:
        gw.skip_seq(2)
        gw.broadcast("dev.ev")
        while not isinstance(sub.get(timeout=10), __import__("gwclient").SeqGap):
            pass
    points = _points(otel.metrics)
    durations = {(p.attributes["rpc.method"], p.attributes["rpc.response.status_code"]): p.count
                 for p in points["rpc.client.call.duration"]}
    assert durations == {("health", "OK"): 3, ("dev.nosuchmethod", "INVALID_REQUEST"): 1}
    url = config(gw).redacted_url
    observed = {name: {p.attributes["gwclient.gateway"]: p.value for p in points[name]}
                for name in ("gwclient.reconnects", "gwclient.gaps", "gwclient.events.dropped",
                             "gwclient.requests.pending")}
    assert observed == {"gwclient.reconnects": {url: 0}, "gwclient.gaps": {url: 1},
                        "gwclient.events.dropped": {url: 0}, "gwclient.requests.pending": {url: 0}}


# --------------------------------------------------------------------------- off


def test_without_a_configured_provider_nothing_is_sent(gw: DevGateway) -> None:
    # opentelemetry is imported in this process (this module), but no provider is set.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")
    conn.submit("status").result(10)
    conn.request("echo", traceparent=UPSTREAM)  # an explicit one is sent as it is
    assert "traceparent" not in frames(gw, "health")[0]
    assert "traceparent" not in frames(gw, "status")[0]
    assert frames(gw, "echo")[0]["traceparent"] == UPSTREAM
    assert not [t for t in threading.enumerate() if t.name == "gwclient-otel"]


@pytest.mark.parametrize("bad", ["", "x" * 129, 42, "00-\n-01"])
def test_a_bad_explicit_traceparent_is_refused_before_sending(gw: DevGateway, bad: Any) -> None:
    conn = GatewayConnection.shared(config(gw))
    with pytest.raises(UsageError, match="traceparent"):
        conn.request("health", traceparent=bad)
    assert gw.requests_by_method.get("health", 0) == 0


@pytest.mark.parametrize("bad", ["x" * 129, 42])
def test_a_bad_explicit_traceparent_is_refused_with_tracing_on(gw: DevGateway, otel: Otel, bad: Any) -> None:
    conn = GatewayConnection.shared(config(gw))
    with pytest.raises(UsageError, match="traceparent"):
        conn.request("health", traceparent=bad)
    with pytest.raises(UsageError, match="traceparent"):
        conn.submit("health", traceparent=bad)
    assert gw.requests_by_method.get("health", 0) == 0
    assert otel.finished("health") == []


_CHILD = textwrap.dedent("""
    import importlib.abc, json, sys
    if sys.argv[1] == "blocked":  # as if opentelemetry were not installed
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "opentelemetry":
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
    from gwclient import GatewayConfig, GatewayConnection
    from gwclient.testing import DevGateway
    with DevGateway(token="t") as gw:
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token="t"))
        conn.request("health")
        conn.submit("status").result(10)
        with conn.chat("agent:main:x", "hi") as run:
            run.wait(10)
        conn.request("echo", traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        frames = gw.request_frames
        GatewayConnection.shutdown_all()
    print(json.dumps({"imported": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
                      "traced": [f["method"] for f in frames if "traceparent" in f]}))
""")


@pytest.mark.parametrize("how", ["blocked", "installed"])
def test_gwclient_imports_nothing_of_opentelemetry_unless_configured(how: str) -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD, how], capture_output=True, text=True, timeout=60,
                         check=True, cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"imported": [], "traced": ["echo"]}


# --------------------------------------------------------------------------- log


def test_verbose_logs_each_requests_duration(gw: DevGateway, caplog: pytest.LogCaptureFixture) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")  # not logged: the logger is not enabled for DEBUG
    with caplog.at_level(logging.DEBUG, logger="gwclient.requests"):
        conn.request("health")
        with pytest.raises(RequestError):
            conn.request("dev.nosuchmethod")
    lines = [r.getMessage() for r in caplog.records if r.name == "gwclient.requests"]
    assert len(lines) == 2
    assert lines[0].startswith("request health ok in ") and lines[0].endswith(" ms (connection 1)")
    assert lines[1].startswith("request dev.nosuchmethod failed (INVALID_REQUEST) in ")
