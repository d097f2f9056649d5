"""The share: one process per user that holds the gateway sockets and relays protocol-4
frames to short-lived processes attached over a Unix socket.

Threads (none named ``gwclient-``: they call the blocking facade):

* the main thread (``share run``): the accept loop; checks each peer's uid before reading
  a byte, ends the share after ``persist`` idle seconds or on ``stop``/SIGTERM;
* ``share-in-<n>`` per attached process: reads its frames; answers the handshake with the
  share's gateway connection's hello-ok (or the gateway's refusal), relays requests with
  fresh ids (submitted straight to the channel, never waited for on this thread);
* ``share-out-<n>`` per attached process: the only writer of its stream; drains its
  :class:`Outbox` (answers, then events renumbered per stream) in batches.

Inside, the gateway sockets are the ordinary engine's (``GatewayConnection.shared``, one
per effective config, ``share="off"``), so the in-process invariants hold here.  Nothing
on the share's gateway reader thread blocks on an attached process: answers and events go
into per-process outboxes, bounded for events (a full outbox drops the newest events and
the process sees a ``SeqGap`` in their place, with a log line naming it).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import json
import logging
import math
import os
import secrets
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._config.config import GatewayConfig, SshTunnelConfig
from .._connection import GatewayConnection
from .._core.encode import encode_request
from .._core.protocol import TWO_STAGE_METHODS, new_request_id
from .._core.pushes import ConnectionState, Event, Push, SeqGap, Snapshot, StateChange
from .._core.retry import RetryPolicy
from .._core.sessions import Sticky, session_messages
from .._engine.runtime import current_runtime
from .._errors import ClientClosed, ConfigError, ConnectError, Disconnected, GatewayError, UsageError
from .._version import __version__
from ._wire import (
    KIND_CONTROL,
    WIRE_VERSION,
    FrameReader,
    control,
    frame,
    peer_pid,
    peer_uid,
    secure_dir,
    share_dir,
    socket_path,
)

__all__ = ["DEFAULT_PERSIST", "Outbox", "ShareServer", "config_from_wire"]

log = logging.getLogger("gwclient.share")

#: Seconds the share lingers after the last process detached (GWCLIENT_SHARE_PERSIST).
DEFAULT_PERSIST = 300.0
#: Seconds a new share waits for its first process, whatever the persist time.
START_GRACE = 10.0
#: Bound of one attached process's outbox: events and bytes of event frames.
MAX_EVENTS = 8192
MAX_EVENT_BYTES = 32 * 1024 * 1024

_STICKY_SUBSCRIBE = frozenset({"sessions.messages.subscribe", "sessions.subscribe"})
_STICKY_UNSUBSCRIBE = {"sessions.messages.unsubscribe": "sessions.messages.subscribe"}


def persist_from_env() -> float:
    raw = os.environ.get("GWCLIENT_SHARE_PERSIST", "").strip()
    if not raw:
        return DEFAULT_PERSIST
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"GWCLIENT_SHARE_PERSIST must be a number of seconds, got {raw!r}") from None
    if not value >= 0:
        raise ConfigError("GWCLIENT_SHARE_PERSIST must be >= 0")
    return value


def _max_events() -> int:
    raw = os.environ.get("GWCLIENT_SHARE_MAX_EVENTS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else MAX_EVENTS


def config_from_wire(raw: Any) -> GatewayConfig:
    """The attach message's config; always ``share="off"`` inside the share."""
    if not isinstance(raw, dict):
        raise ConfigError("the attach message carries no config")
    values = dict(raw)
    values.pop("share", None)
    if values.get("ssh") is not None:
        values["ssh"] = SshTunnelConfig(**values["ssh"])
    if values.get("retry") is not None:
        values["retry"] = RetryPolicy(**values["retry"])
    for name in ("scopes", "caps"):
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    try:
        return GatewayConfig(share="off", **values)
    except TypeError as exc:
        raise ConfigError(f"the attach message's config is not understood: {exc}") from None


# ------------------------------------------------------------------------------ outbox


@dataclass
class _Gap:
    missed: int


class _EventCache:
    """The same Event object is offered to every outbox in turn (under the bus lock): its
    JSON is encoded once, by the first."""

    def __init__(self) -> None:
        self.event: Event | None = None
        self.parts: tuple[bytes, bytes] = (b"", b"")

    def parts_of(self, event: Event) -> tuple[bytes, bytes]:
        if event is not self.event:
            head = _dumps({"type": "event", "event": event.event, "payload": event.payload})[:-1]
            tail = b"}"
            if event.state_version is not None:
                sv = event.state_version
                tail = f',"stateVersion":{{"presence":{sv.presence:d},"health":{sv.health:d}}}}}'.encode()
            self.event, self.parts = event, (head, tail)
        return self.parts


_cache = _EventCache()


class Outbox:
    """One attached process's stream from the share: the bus offers pushes to it like to a
    subscription (never blocking), answers are put by whoever settles them, and its writer
    thread takes everything in order.  Answers are never dropped; beyond the bound the
    oldest queued events are (drop-oldest, as a subscription does), and each leaves a gap
    in the stream's seq where it was."""

    def __init__(self, events: bool, on_close: Callable[[str], None], *, max_events: int = MAX_EVENTS,
                 max_bytes: int = MAX_EVENT_BYTES) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: collections.deque[Any] = collections.deque()
        self._events_wanted = events
        self._n_events = 0
        self._n_bytes = 0
        self._max_events = max_events
        self._max_bytes = max_bytes
        self.live = False
        self.number: int | None = None
        self.state = ConnectionState.IDLE
        self.closed: str | None = None
        self.dropped_total = 0
        self._on_close = on_close
        #: The stream, for answers written at once when nothing is queued (one thread hop
        #: fewer per request); ``write_lock`` orders those writes with the writer's.
        self.sock: socket.socket | None = None
        self.write_lock = threading.Lock()

    # -- the bus (share's gateway reader / actor / timer threads): never blocks ----------

    def _offer(self, push: Push, size: int = 0, notify: bool = True) -> bool:
        close_reason: str | None = None
        with self._cond:
            if self.closed is not None:
                return False
            if isinstance(push, Event):
                if not (self.live and self._events_wanted):
                    return False
                parts = None if push.seq is None else _cache.parts_of(push)
                while self._n_events and (self._n_events >= self._max_events
                                          or self._n_bytes + size > self._max_bytes):
                    self._drop_oldest()
                self._items.append((push, parts, size))
                self._n_events += 1
                self._n_bytes += size
            elif isinstance(push, SeqGap):
                if not self.live:
                    return False
                self._items.append(_Gap(push.missed))
            elif isinstance(push, Snapshot):
                if self.number is None:
                    self.number = push.connection_number
                elif push.connection_number != self.number:
                    close_reason = "the share's gateway socket was replaced (reconnect)"
                self.state = ConnectionState.CONNECTED
                self._cond.notify_all()
                if close_reason is None:
                    return False
            elif isinstance(push, StateChange):
                self.state = push.state
                self._cond.notify_all()
                if push.state != ConnectionState.CONNECTED and self.live:
                    close_reason = f"the share's gateway connection is {push.state.value}"
                else:
                    return False
            else:
                return False
            if close_reason is None:
                if notify:
                    self._cond.notify_all()
                return True
        self.close(close_reason)
        return False

    def _drop_oldest(self) -> None:
        """Drop the oldest queued event (answers stay); a numbered one leaves a gap in its
        place, so the process's core reports ``SeqGap`` before the next event."""
        items = self._items
        index = next((i for i, item in enumerate(items) if isinstance(item, tuple)), -1)
        if index < 0:  # pragma: no cover - only called with events queued
            return
        _, parts, size = items[index]
        del items[index]
        self._n_events -= 1
        self._n_bytes -= size
        self.dropped_total += 1
        if parts is None:
            return
        if index < len(items) and isinstance(items[index], _Gap):
            items[index].missed += 1
        elif index > 0 and isinstance(items[index - 1], _Gap):
            items[index - 1].missed += 1
        else:
            items.insert(index, _Gap(1))

    def _flush(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _end(self) -> None:
        self.close("the share is shutting down")

    # -- what the registry asks of a producer (an Inlet's interface) ------------------------

    #: No session subscription is counted on this producer (the share counts them itself).
    sticky = None
    holder: object | None = None

    def offer(self, push: Push, size: int = 0, notify: bool = True) -> bool:
        return self._offer(push, size, notify)

    def flush(self) -> None:
        self._flush()

    def end(self, error: Any = None) -> None:
        self._end()

    @property
    def queue(self) -> Outbox:
        """Itself: the registry reads ``queue.dropped_total`` for the stats."""
        return self

    # -- attached side ---------------------------------------------------------------------

    def put(self, data: bytes) -> None:
        """An answer (already framed); never dropped.  With nothing queued and the writer
        idle it is written right here if the socket takes it without blocking; else (or
        the rest of it) it goes to the writer, in order."""
        with self._cond:
            if self.closed is not None:
                return
            sock = self.sock
            if sock is not None and not self._items and self.write_lock.acquire(blocking=False):
                try:
                    sent = sock.send(data, socket.MSG_DONTWAIT)
                except OSError:  # full (BlockingIOError) or broken: the writer deals with it
                    sent = 0
                finally:
                    self.write_lock.release()
                if sent == len(data):
                    return
                data = data[sent:]
            self._items.append(data)
            self._cond.notify_all()

    def go_live(self, data: bytes) -> None:
        """The hello-ok answer: events flow from here on."""
        with self._cond:
            if self.closed is None:
                self._items.append(data)
                self.live = True
                self._cond.notify_all()

    def close(self, reason: str) -> None:
        with self._cond:
            if self.closed is not None:
                return
            self.closed = reason
            self._cond.notify_all()
        self._on_close(reason)

    def wait_state(self, predicate: Callable[[ConnectionState], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.state) or self.closed is not None, timeout)

    def take(self) -> list[Any] | None:
        """Everything queued (waits for something), with ``write_lock`` held (the caller
        releases it once written); ``None`` once closed (answers queued before the close
        are still returned first)."""
        with self._cond:
            while not self._items and self.closed is None:
                self._cond.wait()
            if not self._items:
                return None
            self.write_lock.acquire()  # free: put() holds it only under _cond
            items = list(self._items)
            self._items.clear()
            self._n_events = 0
            self._n_bytes = 0
            return items


# ----------------------------------------------------------------------------- relaying


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; lone surrogates (from ``\\udXXX`` escapes) stay escapes."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), default=str).encode("ascii")


def _res(rid: str, ok: bool, payload: Any = None, error: Any = None) -> bytes:
    body: dict[str, Any] = {"type": "res", "id": rid, "ok": ok}
    if ok:
        body["payload"] = payload
    else:
        body["error"] = error
    return frame(_dumps(body))


def error_shape(exc: BaseException) -> dict[str, Any]:
    """The gateway's error shape back from the exception it became (the hint the
    exception adds to its message is left to the attached process's own exception)."""
    message = getattr(exc, "wire_message", None)
    if not isinstance(message, str):
        message = str(exc)
    shape: dict[str, Any] = {"code": getattr(exc, "code", "") or "UNAVAILABLE", "message": message}
    details = getattr(exc, "details", None)
    if details:
        shape["details"] = details
    if getattr(exc, "retryable", False):
        shape["retryable"] = True
    retry_after = getattr(exc, "retry_after_ms", None)
    if isinstance(retry_after, int):
        shape["retryAfterMs"] = retry_after
    return shape


def hello_payload(hello: Any) -> dict[str, Any]:
    """The hello-ok as the gateway sent it, minus the share's device token (the attached
    process never needs it)."""
    out: dict[str, Any] = {
        "type": "hello-ok",
        "protocol": hello.protocol,
        "server": {"version": hello.server.version, "connId": hello.server.conn_id},
        "features": {"methods": list(hello.features.methods), "events": list(hello.features.events),
                     "capabilities": list(hello.features.capabilities)},
        "snapshot": hello.snapshot,
        "policy": {"maxPayload": hello.policy.max_payload, "maxBufferedBytes": hello.policy.max_buffered_bytes,
                   "tickIntervalMs": hello.policy.tick_interval_ms},
    }
    for key, value in (("buildId", hello.server.build_id), ("bootId", hello.server.boot_id)):
        if value is not None:
            out["server"][key] = value
    if hello.auth is not None:
        auth: dict[str, Any] = {"role": hello.auth.role, "scopes": list(hello.auth.scopes)}
        if hello.auth.method is not None:
            auth["method"] = hello.auth.method
        if hello.auth.issued_at_ms is not None:
            auth["issuedAtMs"] = hello.auth.issued_at_ms
        out["auth"] = auth
    return out


class _Interim:
    """The first answer of a two-stage request (the session core settles it)."""

    def __init__(self, relay: _Relay) -> None:
        self._relay = relay
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, payload: Any) -> None:
        self._done = True
        self._relay.outbox.put(_res(self._relay.rid, True, payload))

    def set_exception(self, exc: BaseException) -> None:  # pragma: no cover - never settled so
        self._done = True


class _Relay:
    """Waiter of one relayed request, settled on the share's gateway reader thread: it only
    puts the answer into the outbox (never blocks)."""

    def __init__(self, attached: _Attached, rid: str, gid: str, two_stage: bool) -> None:
        self.attached = attached
        self.outbox = attached.outbox
        self.rid = rid
        self.gid = gid
        self._done = False
        if two_stage:
            self.interim = _Interim(self)

    def done(self) -> bool:
        return self._done

    def set_result(self, payload: Any) -> None:
        self._done = True
        self.attached.finished(self.gid)
        self.outbox.put(_res(self.rid, True, payload))

    def set_exception(self, exc: BaseException) -> None:
        self._done = True
        self.attached.finished(self.gid)
        if isinstance(exc, (Disconnected, ClientClosed)):
            # As with a direct socket: the stream ends and the process fails the request
            # with Disconnected itself, then reconnects (to the share) and gets a Snapshot.
            self.outbox.close(f"the share's gateway connection closed ({exc})")
        else:
            self.outbox.put(_res(self.rid, False, error=error_shape(exc)))


# -------------------------------------------------------------------------- per config


@dataclass
class _Gateway:
    config: GatewayConfig
    conn: GatewayConnection
    requests: int = 0
    numbers_seen: set[int] = field(default_factory=set)
    users: int = 0
    idle_since: float = field(default_factory=time.monotonic)

    def status(self) -> dict[str, Any]:
        snapshot = self.conn.last_snapshot
        return {"url": self.config.redacted_url, "state": self.conn.state.value,
                "connection": snapshot.connection_number if snapshot is not None else None,
                "requests_relayed": self.requests,
                "reconnects": max(0, len(self.numbers_seen) - 1)}


_numbers = itertools.count(1)


class _Attached:
    """One attached process (its stream, its two threads, its relayed requests)."""

    def __init__(self, server: ShareServer, sock: socket.socket, reader: FrameReader, pid: int | None) -> None:
        self.server = server
        self.sock = sock
        self.reader = reader
        self.pid = pid
        self.n = next(_numbers)
        self.since = time.time()
        self.gateway: _Gateway | None = None
        self.outbox = Outbox(True, self._closed, max_events=server.max_events)
        self.stickies: list[Sticky] = []
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self.writer: threading.Thread | None = None
        self.thread: threading.Thread | None = None
        self._seq = 0
        self._logged = 0
        self._logged_at = -1e9

    def _closed(self, reason: str) -> None:
        log.debug("closing the stream of pid %s: %s", self.pid, reason)

    def finished(self, gid: str) -> None:
        with self._lock:
            self._pending.discard(gid)

    # -- share-in-<n> ------------------------------------------------------------------

    def run(self, attach: dict[str, Any]) -> None:
        try:
            config = config_from_wire(attach.get("config"))
        except (ConfigError, TypeError, ValueError) as exc:
            self.sock.sendall(control({"op": "close", "reason": f"config refused: {exc}"}))
            return
        self.outbox._events_wanted = attach.get("events", True) is not False
        gateway = self.server.gateway(config)
        try:
            self._serve(gateway, config)
        finally:
            self.server.release(gateway)

    def _serve(self, gateway: _Gateway, config: GatewayConfig) -> None:
        self.gateway = gateway
        conn = gateway.conn
        channel = conn._channel(config)
        _, registry = current_runtime().connection_actor()
        registry.attach(conn._slot, self.outbox)  # type: ignore[arg-type]  # an inlet's interface
        self.writer = threading.Thread(target=self._write, name=f"share-out-{self.n}", daemon=True)
        self.writer.start()
        try:
            nonce = secrets.token_hex(16)
            challenge = {"type": "event", "event": "connect.challenge",
                         "payload": {"nonce": nonce, "ts": int(time.time() * 1000)}}
            self.outbox.put(frame(json.dumps(challenge).encode()))
            while self.outbox.closed is None:
                kind, data = self.reader.read()
                if kind == KIND_CONTROL:
                    message = json.loads(data)
                    if message.get("op") == "ping":
                        self.outbox.put(control({"op": "pong"}))
                    continue
                self._on_frame(conn, channel, config, data)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            registry.unsubscribe(self.outbox)  # type: ignore[arg-type]
            self.outbox.close("detached")
            self._release(channel)
            if self.writer is not None:
                self.writer.join(5.0)

    def _on_frame(self, conn: GatewayConnection, link: Any, config: GatewayConfig, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("type") != "req":
            return
        rid, method, params = message.get("id"), message.get("method"), message.get("params")
        if not isinstance(rid, str) or not isinstance(method, str):
            return
        if method == "connect":
            self._connect(conn, config, rid)
            return
        if not self.outbox.live:
            return  # a request before hello-ok: a direct gateway would not answer it either
        assert self.gateway is not None
        self.gateway.requests += 1
        if method in _STICKY_SUBSCRIBE or method in _STICKY_UNSUBSCRIBE:
            self._sticky(link, rid, method, params)
            return
        gid = new_request_id()
        try:
            out = encode_request(gid, method, params)  # the process's own encoding rules
        except GatewayError as exc:
            self.outbox.put(_res(rid, False, error={"code": "INVALID_REQUEST", "message": str(exc)}))
            return
        relay = _Relay(self, rid, gid, method in TWO_STAGE_METHODS)
        with self._lock:
            self._pending.add(gid)
        link.submit(gid, method, out, relay, method in TWO_STAGE_METHODS)

    def _connect(self, conn: GatewayConnection, config: GatewayConfig, rid: str) -> None:
        if self.outbox.live:
            return
        if conn.state == ConnectionState.PAUSED:
            # A new attempt of the process is a new attempt at the gateway (as it would
            # be with its own socket): leave the pause, wait for the attempt to start.
            conn.reconnect()
            self.outbox.wait_state(lambda s: s != ConnectionState.PAUSED, 2.0)
        try:
            hello = conn.connect(timeout=config.connect_timeout)
        except ConnectError as exc:  # the gateway's refusal, relayed in its shape
            self.outbox.put(_res(rid, False, error=error_shape(exc)))
            return
        except GatewayError as exc:
            self.outbox.close(f"the share cannot reach the gateway: {exc}")
            return
        assert self.gateway is not None
        snapshot = conn.last_snapshot
        if snapshot is not None:
            self.gateway.numbers_seen.add(snapshot.connection_number)
        self.outbox.go_live(_res(rid, True, hello_payload(hello)))

    def _sticky(self, link: Any, rid: str, method: str, params: Any) -> None:
        """Session subscriptions are per gateway socket: counted here across processes,
        sent when the first one subscribes, released when the last one leaves (the
        process's own core ignores these answers, as it does on a direct socket)."""
        with self.server.sticky_lock:
            if method in _STICKY_SUBSCRIBE:
                spec = _sticky_spec(method, params)
                link.add_sticky(spec)()
                # One observer per session and process: a second subscribe of the same
                # session is the process's core upgrading or downgrading its approvals.
                for old in [s for s in self.stickies if _same_observer(s, spec)]:
                    self.stickies.remove(old)
                    link.remove_sticky(old)()
                self.stickies.append(spec)
                self.outbox.put(_res(rid, True, {"subscribed": True}))
                return
            gone = _sticky_spec(_STICKY_UNSUBSCRIBE[method], params)
            for old in [s for s in self.stickies if _same_observer(s, gone)]:
                self.stickies.remove(old)
                link.remove_sticky(old)()
            self.outbox.put(_res(rid, True, {"unsubscribed": True}))

    def _release(self, link: Any) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
        for gid in pending:
            link.cancel(gid)
        with self.server.sticky_lock:
            for spec in self.stickies:
                link.remove_sticky(spec)()
            self.stickies = []

    # -- share-out-<n> -------------------------------------------------------------------

    def _write(self) -> None:
        sock = self.sock
        self.outbox.sock = sock  # answers may now be written at once by whoever settles them
        try:
            while True:
                items = self.outbox.take()
                if items is None:
                    break
                try:
                    sock.sendall(self._encode(items))
                finally:
                    self.outbox.write_lock.release()
            with self.outbox.write_lock:
                sock.sendall(control({"op": "close", "reason": self.outbox.closed or "closed"}))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _encode(self, items: list[Any]) -> bytearray:
        """Frame a batch: answers as they are, events numbered per stream (a gap marker
        moves the number on, so the process sees a ``SeqGap``)."""
        buf = bytearray()
        for item in items:
            if isinstance(item, bytes):
                buf += item
            elif isinstance(item, _Gap):
                self._seq += item.missed
                dropped = self.outbox.dropped_total
                if dropped > self._logged and time.monotonic() - self._logged_at >= 5.0:
                    log.warning("pid %s reads too slowly: %d events dropped for it so far (its outbox "
                                "holds %d; it sees a seq gap)", self.pid, dropped, self.outbox._max_events)
                    self._logged, self._logged_at = dropped, time.monotonic()
            else:
                event, parts, _ = item
                if parts is None:
                    data = _dumps({"type": "event", "event": event.event, "payload": event.payload})
                else:
                    self._seq += 1
                    data = parts[0] + b',"seq":%d' % self._seq + parts[1]
                buf += frame(data)
        return buf


def _count_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the listing's own
    except OSError:  # pragma: no cover - not Linux
        return None


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return None


def _sticky_spec(method: str, params: Any) -> Sticky:
    """A process's session subscription as the share's channel counts it.  A session
    observer is the spec a direct subscriber makes (:func:`session_messages`): the share's
    core then keeps one gateway observer per canonical session across processes, with
    approvals while any process wants them.  Anything else is keyed by what was asked."""
    if method == "sessions.messages.subscribe" and isinstance(params, dict) and isinstance(params.get("key"), str):
        agent = params.get("agentId")
        try:
            return session_messages(params["key"], agent_id=agent if isinstance(agent, str) and agent else None,
                                    include_approvals=params.get("includeApprovals") is True).sticky
        except UsageError:
            pass  # not a session key: the gateway will say so
    return Sticky(("share", method, json.dumps(params, sort_keys=True, default=str)), method, params, None)


def _same_observer(a: Sticky, b: Sticky) -> bool:
    """Two session-observer specs of one canonical session (approvals or not)."""
    return a.key[0] == "sessions.messages" and a.group == b.group


# ------------------------------------------------------------------------------- server


class ShareServer:
    """``gwclient share run``: listen, attach, relay; exit after ``persist`` idle seconds."""

    def __init__(self, *, persist: float | None = None, ready_fd: int | None = None) -> None:
        self.persist = persist_from_env() if persist is None else persist
        self.path = socket_path()
        self.started = time.time()
        self._ready_fd = ready_fd
        self._lock = threading.Lock()
        self.sticky_lock = threading.Lock()
        self._gateways: dict[GatewayConfig, _Gateway] = {}
        self._attached: dict[int, _Attached] = {}
        self._threads: set[threading.Thread] = set()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._idle_since = time.monotonic()
        self.attaches = 0
        self.max_events = _max_events()

    # -- gateways ----------------------------------------------------------------------

    def gateway(self, config: GatewayConfig) -> _Gateway:
        """The entry for ``config``, counted as used until :meth:`release`."""
        with self._lock:
            entry = self._gateways.get(config)
            if entry is None:
                entry = _Gateway(config, GatewayConnection.shared(config))
                self._gateways[config] = entry
            entry.users += 1
            return entry

    def release(self, entry: _Gateway) -> None:
        with self._lock:
            entry.users -= 1
            if not entry.users:
                entry.idle_since = time.monotonic()

    def _retire_idle_gateways(self) -> float | None:
        """Close the gateway sockets of configs nobody attached with for ``persist``
        seconds (an old token, another gateway) while others stay in use; the seconds
        until the next one is due, if any."""
        now = time.monotonic()
        due: float | None = None
        with self._lock:  # held while closing: an attach never gets a facade being shut down
            for config, entry in list(self._gateways.items()):
                if entry.users:
                    continue
                left = self.persist - (now - entry.idle_since)
                if left <= 0:
                    del self._gateways[config]
                    log.info("no process used %s for %g s: closing its socket", config.redacted_url, self.persist)
                    entry.conn.shutdown(timeout=2.0)
                elif math.isfinite(left):
                    due = left if due is None else min(due, left)
        return due

    def status(self) -> dict[str, Any]:
        me = threading.current_thread()
        with self._lock:
            busy = {a.thread for a in self._attached.values()}
            ending = [t for t in self._threads if t is not me and t not in busy]
        for thread in ending:  # detached streams winding down: count what stays
            thread.join(10.0)
        with self._lock:
            attached = [{"pid": a.pid, "since": a.since,
                         "gateway": a.gateway.config.redacted_url if a.gateway else None}
                        for a in self._attached.values() if a.gateway is not None]
            gateways = [g.status() for g in self._gateways.values()]
        return {"pid": os.getpid(), "version": __version__, "wire": WIRE_VERSION, "socket": str(self.path),
                "started": self.started, "uptime": time.time() - self.started, "persist": self.persist,
                "attached": attached, "attaches": self.attaches, "gateways": gateways,
                "threads": threading.active_count(), "fds": _count_fds(), "rss": _rss()}

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _bind(self) -> socket.socket | None:
        directory = share_dir()
        secure_dir(directory, create=True)
        fd = os.open(directory / "share.bind.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(2.0)
                probe.connect(str(self.path))
                log.error("a share already listens on %s; not starting another", self.path)
                return None
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            finally:
                probe.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # a stale socket of a share that was killed
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
            sock.listen(128)
            self._inode = os.stat(self.path).st_ino
            return sock
        finally:
            os.close(fd)

    def run(self) -> int:
        """Serve until idle for ``persist`` seconds, ``stop()`` or SIGTERM/SIGINT; 0 on a
        clean exit, 1 if another share already listens."""
        try:
            listener = self._bind()
        except OSError as exc:
            log.error("cannot listen on %s: %s", self.path, exc)
            return 1
        if listener is None:
            return 1
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, lambda *_: self.stop())
        log.info("share %s (gwclient %s) listening on %s; lingers %g s after the last process",
                 os.getpid(), __version__, self.path, self.persist)
        if self._ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._ready_fd, b"%d\n" % os.getpid())
                os.close(self._ready_fd)
        try:
            self._serve(listener)
        finally:
            listener.close()
            self._cleanup()
        return 0

    def _serve(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            with self._lock:
                idle = not self._attached
            timeout = None
            if idle:
                # Before the first process (the starter attaches right after the start),
                # linger at least START_GRACE even with persist 0.
                linger = self.persist if self.attaches else max(self.persist, START_GRACE)
                left = linger - (time.monotonic() - self._idle_since)
                if left <= 0:
                    log.info("no process attached for %g s: exiting", linger)
                    return
                timeout = left if math.isfinite(left) else None  # persist=inf: never idle out
            else:
                timeout = self._retire_idle_gateways()
            waitables: list[Any] = [listener, self._wake_r]
            readable, _, _ = select.select(waitables, [], [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 64)
            if listener in readable:
                try:
                    sock, _ = listener.accept()
                except OSError:
                    continue
                self._accept(sock)

    def _accept(self, sock: socket.socket) -> None:
        try:
            uid = peer_uid(sock)
            pid = peer_pid(sock)
        except OSError:
            sock.close()
            return
        if uid != os.geteuid():
            # Before reading a byte of theirs: another user never reaches the gateway here.
            log.warning("refused a connection from uid %s (pid %s): not this share's user", uid, pid)
            sock.close()
            return
        thread = threading.Thread(target=self._client, args=(sock, pid), name="share-in", daemon=True)
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()

    def _client(self, sock: socket.socket, pid: int | None) -> None:
        attached: _Attached | None = None
        try:
            sock.sendall(control({"op": "hello", "version": __version__, "wire": WIRE_VERSION, "pid": os.getpid()}))
            sock.settimeout(10.0)
            reader = FrameReader(sock)
            message = reader.read_control()
            op = message.get("op")
            if op == "status":
                sock.sendall(control({"op": "status", **self.status()}))
                return
            if op == "stop":
                sock.sendall(control({"op": "stopping", "pid": os.getpid()}))
                self.stop()
                return
            if op != "attach":
                return
            sock.settimeout(None)
            attached = _Attached(self, sock, reader, pid)
            attached.thread = threading.current_thread()
            threading.current_thread().name = f"share-in-{attached.n}"
            with self._lock:
                self._attached[attached.n] = attached
                self.attaches += 1
            log.info("pid %s attached (stream %d)", pid, attached.n)
            attached.run(message)
        except (OSError, EOFError, ValueError):
            pass
        except Exception:  # a bug: this process's stream ends, the share goes on
            log.exception("the stream of pid %s failed", pid)
        finally:
            if attached is not None:
                with self._lock:
                    self._attached.pop(attached.n, None)
                    if not self._attached:
                        self._idle_since = time.monotonic()
                log.info("pid %s detached (stream %d)", pid, attached.n)
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")
            with contextlib.suppress(OSError):
                sock.close()

    def _cleanup(self) -> None:
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)  # ours still (not a successor's)
        with self._lock:
            attached = list(self._attached.values())
        for a in attached:
            a.outbox.close("the share is stopping")
        GatewayConnection.shutdown_all(timeout=3.0)
        for thread in list(self._threads):
            thread.join(3.0)
        log.info("share %s stopped", os.getpid())
