"""The two ten-line daemons of docs/observability.md, run as they are written (the code
blocks are taken from the document): one exports to an OTLP collector (a fake one on
loopback that decodes what it receives), one serves Prometheus metrics that are scraped."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "observability.md"


def snippet(heading: str) -> str:
    """The first python code block after ``heading`` in docs/observability.md."""
    text = DOC.read_text(encoding="utf-8")
    after = text.split(f"\n{heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match is not None
    return match.group(1)


# A daemon's own work after the snippet: one request, one failed request, then flush.
_WORK = textwrap.dedent("""
    from gwclient import GatewayConfig, GatewayConnection, RequestError
    from gwclient.testing import DevGateway
    with DevGateway(token="t") as gw:
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token="t"))
        conn.request("health")
        try:
            conn.request("dev.nosuchmethod")
        except RequestError:
            pass
        AFTER
        GatewayConnection.shutdown_all()
""")


def run_child(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def collector() -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    """A fake OTLP/HTTP collector on loopback: path -> request bodies."""
    received: dict[str, list[bytes]] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                received.setdefault(self.path, []).append(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="test-otlp-collector")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_otlp_daemon_of_the_docs_exports_spans_and_metrics(
        collector: tuple[str, dict[str, list[bytes]]]) -> None:
    endpoint, received = collector
    # Flushed while the connection is up (a daemon's periodic export, every 60 s by default).
    code = snippet("### A daemon exporting to an OTLP collector") + _WORK.replace(
        "AFTER", "tracing.force_flush(); metrics.get_meter_provider().force_flush()")
    run_child(code, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    spans = []
    for body in received.get("/v1/traces", []):
        request = ExportTraceServiceRequest.FromString(body)
        spans += [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    by_name = {s.name: s for s in spans}
    assert {"health", "dev.nosuchmethod"} <= set(by_name)
    assert by_name["health"].kind == by_name["health"].SPAN_KIND_CLIENT
    names = set()
    for body in received.get("/v1/metrics", []):
        request = ExportMetricsServiceRequest.FromString(body)
        names |= {m.name for r in request.resource_metrics for sm in r.scope_metrics for m in sm.metrics}
    assert {"rpc.client.call.duration", "gwclient.reconnects", "gwclient.gaps", "gwclient.events.dropped",
            "gwclient.requests.pending"} <= names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_prometheus_daemon_of_the_docs_serves_the_metrics() -> None:
    port = _free_port()
    daemon = snippet("### A daemon exporting to Prometheus")
    assert "9464" in daemon
    scrape = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    text = run_child(daemon.replace("9464", str(port)) + _WORK.replace("AFTER", scrape))
    assert re.search(r'^rpc_client_call_duration_seconds_count\{[^}]*rpc_method="health"[^}]*\} 1\.0$', text, re.M)
    assert re.search(r'^rpc_client_call_duration_seconds_count\{[^}]*rpc_response_status_code="INVALID_REQUEST"',
                     text, re.M)
    for name in ("gwclient_reconnects_total", "gwclient_gaps_total", "gwclient_events_dropped_total",
                 "gwclient_requests_pending"):
        line = rf'^{name}\{{[^}}]*gwclient_gateway="ws://127\.0\.0\.1:\d+/?"[^}}]*\}} 0\.0$'
        assert re.search(line, text, re.M), (name, text)
