"""Request instrumentation: OpenTelemetry spans and metrics (``gwclient[otel]``) and the
per-request DEBUG duration log, all off unless asked for.

**Off means free.**  :func:`probe` runs once per request.  It imports nothing: while no
one has imported ``opentelemetry.trace`` / ``opentelemetry.metrics`` it is two
``sys.modules`` lookups and a cached ``isEnabledFor``; while they are imported but no
provider is set, it also asks the API for the global providers (the no-op/proxy defaults
mean off).  So a program that does not configure OpenTelemetry never makes gwclient
import it, and no ``traceparent`` is sent.

**On** (a real tracer provider and/or meter provider is set, or the ``gwclient.requests``
logger is enabled for DEBUG):

* a ``CLIENT`` span per request named after the method, with the RPC semantic conventions
  (``rpc.system`` ``openclaw``, ``rpc.method``; on failure the span status is ERROR and
  ``error.type`` / ``rpc.response.status_code`` hold the error code, see
  :func:`gwclient._core.stats.error_code`), and ``gwclient.connection`` the number of the
  socket; its context goes out as the request frame's ``traceparent``.  The parent is the
  caller's current span, or the ``traceparent`` the caller passed;
* ``gwclient.run.start`` and ``gwclient.run.wait`` spans around starting a run and
  :meth:`Run.wait`;
* metrics: the histogram ``rpc.client.call.duration`` (seconds, by ``rpc.method`` and
  ``rpc.response.status_code``), and observable instruments read from
  :meth:`GatewayConnection.stats_all` (the registry's) at collection time (nothing per event):
  ``gwclient.reconnects``, ``gwclient.gaps``, ``gwclient.events.dropped`` (counters) and
  ``gwclient.requests.pending`` (an up-down counter), by ``gwclient.gateway`` (the
  redacted URL).

Threads: spans start on the caller's thread.  A ``request()`` span ends there too; a
``submit()`` future is settled by the reader (or the timer), which only queues the end
time and outcome: a ``gwclient-otel`` thread ends the span and records the duration, so
span processors and exporters never run on the reader or timer thread.  That thread
starts when needed and exits when idle.
"""

from __future__ import annotations

import functools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

from .._core.stats import error_code
from .._errors import UsageError
from .._version import __version__
from .runtime import current_runtime

__all__ = ["Probe", "check_traceparent", "probe", "traced"]

#: ``request <method> ok in 1.2 ms (connection 3)`` at DEBUG, one line per request.
request_log = logging.getLogger("gwclient.requests")

_F = TypeVar("_F", bound=Callable[..., Any])
_IDLE_EXIT = 0.25  # seconds the gwclient-otel thread waits for work before it exits


def check_traceparent(value: object) -> str:
    """A caller's explicit ``traceparent``: a string of 1-128 printable ASCII characters
    (the gateway's frame limit; a malformed value is ignored by the gateway, a longer one
    would make the frame invalid)."""
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isascii() or not value.isprintable():
        raise UsageError("traceparent must be a W3C traceparent string of at most 128 printable ASCII characters")
    return value


# ----------------------------------------------------------------------- detection


class _Otel:
    """The OpenTelemetry objects in use for the providers configured now."""

    def __init__(self) -> None:
        self.tracer_provider: Any = None
        self.tracer: Any = None
        self.meter_provider: Any = None
        self.duration: Any = None  # the histogram
        self.lock = threading.Lock()

    def tracer_now(self) -> Any:
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:
            return None
        provider = trace.get_tracer_provider()
        if provider is self.tracer_provider:
            return self.tracer
        tracer = None
        if not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            tracer = provider.get_tracer("gwclient", __version__)
        with self.lock:
            self.tracer_provider, self.tracer = provider, tracer
        return tracer

    def histogram_now(self) -> Any:
        metrics = sys.modules.get("opentelemetry.metrics")
        if metrics is None:
            return None
        provider = metrics.get_meter_provider()
        if provider is self.meter_provider:
            return self.duration
        histogram = None
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.metrics import _internal as internal

        # The API's default before set_meter_provider() (a private class: looked up softly).
        proxy = getattr(internal, "_ProxyMeterProvider", NoOpMeterProvider)
        if not isinstance(provider, (NoOpMeterProvider, proxy)):
            histogram = _register_metrics(provider)
        with self.lock:
            self.meter_provider, self.duration = provider, histogram
        return histogram


_otel = _Otel()


def _register_metrics(provider: Any) -> Any:
    from opentelemetry.metrics import CallbackOptions, Observation

    meter = provider.get_meter("gwclient", __version__)

    def observe(field: str) -> Callable[[CallbackOptions], list[Observation]]:
        def callback(_options: CallbackOptions) -> list[Observation]:
            registry = current_runtime().registry
            everything = registry.stats_all() if registry is not None else {}
            return [Observation(getattr(stats, field), {"gwclient.gateway": url})
                    for url, stats in everything.items()]

        return callback

    meter.create_observable_counter("gwclient.reconnects", [observe("reconnects")], unit="{reconnect}",
                                    description="successful connects after the first, per gateway socket")
    meter.create_observable_counter("gwclient.gaps", [observe("gaps")], unit="{gap}",
                                    description="event sequence gaps seen")
    meter.create_observable_counter("gwclient.events.dropped", [observe("dropped")], unit="{event}",
                                    description="events dropped by full subscription queues")
    meter.create_observable_up_down_counter("gwclient.requests.pending", [observe("pending")], unit="{request}",
                                            description="requests sent and not answered yet")
    return meter.create_histogram("rpc.client.call.duration", unit="s",
                                  description="duration of gateway requests, by method and outcome")


# ----------------------------------------------------------------------- per request


class Probe:
    """What to do around one request (made only when something is on)."""

    __slots__ = ("histogram", "log", "tracer")

    def __init__(self, tracer: Any, histogram: Any, log: bool) -> None:
        self.tracer = tracer
        self.histogram = histogram
        self.log = log

    def request(self, conn: Any, method: str, traceparent: str | None,
                call: Callable[[str | None], Any]) -> Any:
        """Around a blocking ``request()``: ``call(traceparent)`` does the request."""
        span, traceparent = self._start(method, traceparent)
        started = time.monotonic()
        try:
            result = call(traceparent)
        except BaseException as exc:
            self._end(conn, span, method, (started, time.monotonic(), time.time_ns()), exc)
            raise
        self._end(conn, span, method, (started, time.monotonic(), time.time_ns()), None)
        return result

    def submit(self, conn: Any, method: str, traceparent: str | None,
               call: Callable[[str | None], Future[Any]]) -> Future[Any]:
        span, traceparent = self._start(method, traceparent)
        started = time.monotonic()
        try:
            fut = call(traceparent)
        except BaseException as exc:
            self._end(conn, span, method, (started, time.monotonic(), time.time_ns()), exc)
            raise

        def done(f: Future[Any]) -> None:
            # The reader or timer thread (or this one): no OpenTelemetry call here.
            timing = (started, time.monotonic(), time.time_ns())
            outcome = None if f.cancelled() else f.exception()
            _ender.put((self, conn, span, method, timing, outcome))

        fut.add_done_callback(done)
        return fut

    def _start(self, method: str, traceparent: str | None) -> tuple[Any, str | None]:
        if traceparent is not None:
            check_traceparent(traceparent)
        if self.tracer is None:
            return None, traceparent
        from opentelemetry.trace import SpanKind

        parent = None
        if traceparent is not None:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.CLIENT,
                                      attributes={"rpc.system": "openclaw", "rpc.method": method})
        ctx = span.get_span_context()
        if ctx.is_valid:
            traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
        return span, traceparent

    def _end(self, conn: Any, span: Any, method: str, timing: tuple[float, float, int],
             error: BaseException | None) -> None:
        """``timing``: the monotonic start and end, the end in ``time.time_ns()``."""
        started, ended, ended_ns = timing
        code = "OK" if error is None else error_code(error)
        connection = _connection_number(conn)
        if span is not None:
            span.set_attribute("gwclient.connection", connection)
            if error is not None:
                from opentelemetry.trace import Status, StatusCode

                span.set_attribute("error.type", code)
                span.set_attribute("rpc.response.status_code", code)
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=ended_ns)
        if self.histogram is not None:
            attributes = {"rpc.system": "openclaw", "rpc.method": method, "rpc.response.status_code": code}
            if error is not None:
                attributes["error.type"] = code
            self.histogram.record(ended - started, attributes)
        if self.log:
            request_log.debug("request %s %s in %.1f ms (connection %d)", method,
                              "ok" if error is None else f"failed ({code})", (ended - started) * 1000, connection)


def _connection_number(conn: Any) -> int:
    """The number of the connection's current socket (``stats().connection``, read without
    copying the stats: this runs once per instrumented request)."""
    return int(conn._socket_number())


def probe() -> Probe | None:
    """The instrumentation for a request now, or None when everything is off (the hot
    path: no import, no allocation)."""
    modules = sys.modules
    log = request_log.isEnabledFor(logging.DEBUG)
    if "opentelemetry.trace" not in modules and "opentelemetry.metrics" not in modules and not log:
        return None
    tracer = _otel.tracer_now()
    histogram = _otel.histogram_now()
    if tracer is None and histogram is None and not log:
        return None
    return Probe(tracer, histogram, log)


# ----------------------------------------------------------------------- other spans


def traced(name: str, attributes: Callable[..., dict[str, Any]] | None = None,
           result: Callable[[Any], dict[str, Any]] | None = None) -> Callable[[_F], _F]:
    """Decorate a method with an INTERNAL span ``name`` (the current span while it runs,
    so requests made inside are its children) when a tracer provider is set;
    ``attributes(*args, **kwargs)`` and ``result(returned)`` give its attributes."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            tracer = _otel.tracer_now() if "opentelemetry.trace" in sys.modules else None
            if tracer is None:
                return fn(*args, **kwargs)
            from opentelemetry.trace import Status, StatusCode

            attrs = attributes(*args, **kwargs) if attributes is not None else {}
            with tracer.start_as_current_span(name, attributes=attrs, record_exception=False,
                                              set_status_on_exception=False) as span:
                try:
                    returned = fn(*args, **kwargs)
                except BaseException as exc:
                    span.set_attribute("error.type", error_code(exc))
                    span.set_status(Status(StatusCode.ERROR))
                    raise
                if result is not None:
                    span.set_attributes(result(returned))
                return returned

        return cast(_F, inner)

    return wrap


# ----------------------------------------------------------------------- the ender thread


class _Ender:
    """Ends ``submit()`` spans off the reader/timer threads.  Started on demand, exits
    after :data:`_IDLE_EXIT` seconds without work."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, item: tuple[Any, ...]) -> None:
        self._queue.put(item)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gwclient-otel", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            probe_, conn, span, method, timing, outcome = item
            try:
                probe_._end(conn, span, method, timing, outcome)
            except Exception:  # an exporter's bug must not stop the others
                logging.getLogger("gwclient.connection").exception("ending a request span failed")


_ender = _Ender()
