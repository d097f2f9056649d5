"""Agent and chat runs as blocking streams: :class:`Run` (started with :meth:`Run.chat` and
:meth:`Run.agent`, which the facade's ``chat()`` and ``agent()`` delegate to) and its typed
updates.

A run is built on the connection's two public primitives only: :meth:`request` (to start,
abort and, after a reconnect, ask how a run ended) and :meth:`subscribe` (the ``agent``
and ``chat`` events and the connection's state pushes).  The subscription is made
**before** the start request is sent, so no event of the run can be missed.

Nothing runs on a gwclient thread: a :class:`Run` is *pulled*.  Whichever user thread
waits on it (iterating, :meth:`Run.updates`, :meth:`Run.wait`) takes the next push from
the run's subscription and interprets it; other threads waiting on the same run sleep on a
condition until that thread has made progress.  Blocking requests made while doing so
(``agent.wait``, ``chat.history`` after a reconnect) therefore run on the caller's thread.

Protocol quirks handled here (``PROTOCOL.md`` § R3, all seen on a real gateway):

* the reply text comes from the ``chat`` ``delta`` events (``deltaText``); their ``seq``
  may skip numbers (fast deltas are merged), and their concatenation is the final text;
* the ``agent`` ``lifecycle/end`` event can arrive *before* the last ``chat`` delta and
  the ``chat`` final, so only the first terminal ``chat`` event (``final``, ``aborted``,
  ``error``) ends a run; everything after it is ignored (the second, ``seq:1`` ``chat``
  error of a failed ``chat.send`` run, the ``lifecycle/end`` + ``lifecycle/error`` pair
  after an abort);
* if a ``lifecycle`` ``end``/``error`` arrives and no terminal ``chat`` event follows
  within :data:`SETTLE_SECONDS`, ``agent.wait`` is asked for the outcome.

Across a reconnect (a :class:`StateChange` away from CONNECTED, then a fresh
:class:`Snapshot`) the run does not fail: it asks ``agent.wait`` how the run ended.  If the
gateway is the same process (same ``server.bootId``) and the run is still going, it keeps
streaming; if the gateway restarted, the run's reply is looked up with ``chat.history``
(messages carry ``__openclaw.runId``) and the run ends with it, or with
:class:`RunInterrupted`.  A run with a time limit never waits past it (plus
:data:`GRACE_SECONDS`).  A run resumed on the same gateway adopts ``chat.history``'s
``inFlightRun`` text, and every delta is taken from the cumulative text, so the deltas
always add up to the final text.

A ``chat.send`` queued behind a running turn gets a ``final`` without a message at once;
the run then follows the follow-up turn that answers it, tied through the transcript
(:mod:`gwclient._core.run_follow`, reading ``chat.history`` by cursor, :mod:`gwclient._core.history`),
or ends with :class:`RunReplyUnknown` where nothing ties them.  A message *steered* into
the running turn (its transcript entry names ``steerTargetRunId``) is answered by that
turn's next assistant message: the run streams that message's text (the ``agent``
``assistant`` stream, by ``itemId``) and ends with it, read from the transcript
(``RunResult.steered_into``, ``steered_with``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol

from ._core.attachments import check_attachments
from ._core.deadline import check_timeout
from ._core.history import HistoryCursor
from ._core.protocol import refuses_field
from ._core.pushes import ConnectionState, Event, Overflow, SeqGap, Snapshot, StateChange
from ._core.run_follow import (
    MINE,
    OTHER,
    UNKNOWN,
    SteeredReply,
    answer_in_history,
    booted_at,
    canonical_key,
    is_queued_final,
    is_turn_start,
    match_turn,
    queue_unknown,
    same_process,
    session_idle,
    steer_target,
    steered_reply,
)
from ._core.runs import (
    AgentUpdate,
    LifecycleUpdate,
    RunResult,
    RunUpdate,
    StatusUpdate,
    TextDelta,
    ToolUpdate,
    UsageUpdate,
    _dict,
    _int,
    _message_text,
    _str,
)
from ._engine import otel as _otel
from ._errors import (
    ClientClosed,
    GatewayError,
    GatewayTimeout,
    RequestError,
    RunAborted,
    RunError,
    RunFailed,
    RunInterrupted,
    RunReplyUnknown,
    RunTimedOut,
    UsageError,
    check_caller,
)


class _RunSubscription(Protocol):
    """What a run needs of its subscription (a :class:`~gwclient.Subscription`)."""

    def get(self, timeout: float | None = None) -> Any: ...
    def close(self) -> None: ...


class _RunOwner(Protocol):
    """What a run needs of its connection: the public primitives."""

    def request(self, method: str, params: Any = None, *, timeout: Any = ...,
                expect_final: bool | None = None) -> Any: ...

    def subscribe(self, events: Iterable[str] | str | None = None, *, maxsize: int | None = None,
                  max_bytes: Any = ..., include_state: bool = True) -> Any: ...

    def connect(self, *, timeout: Any = ...) -> Any: ...

__all__ = [
    "GRACE_SECONDS",
    "SETTLE_SECONDS",
    "AgentUpdate",
    "LifecycleUpdate",
    "Run",
    "RunResult",
    "RunUpdate",
    "StatusUpdate",
    "TextDelta",
    "ToolUpdate",
    "UsageUpdate",
]

log = logging.getLogger("gwclient.runs")

#: Seconds a run waits past its own time limit for the gateway's verdict.
GRACE_SECONDS = 10.0
#: Seconds to wait for the terminal ``chat`` event after ``lifecycle`` ``end``/``error``.
SETTLE_SECONDS = 3.0
#: A queued run on a gateway that does not report its queue (no ``pendingInputs``) gives
#: up after this many quiet settle periods with no turn in its session.
QUIET_CHECKS = 4
_POLL = 0.5  # longest single wait on the subscription, so settle timers are checked
#: ``chat.send``'s ``queueMode`` values (2026.9; docs/concepts/queue-steering.md).
QUEUE_MODES = ("steer", "followup", "collect", "interrupt")


# ---------------------------------------------------------------------------------- Run


class Run:
    """One agent or chat run, streamed.  Made by :meth:`Run.chat` and :meth:`Run.agent`
    (``conn.chat()``, ``conn.agent()``); thread-safe.

    * ``for text in run`` yields the reply's text deltas as they arrive, then raises the
      run's :class:`RunError` if it did not succeed;
    * :meth:`updates` yields every typed update (:data:`RunUpdate`), the same way;
    * :meth:`wait` returns the :class:`RunResult` or raises;
    * :meth:`abort` asks the gateway to stop it; leaving a ``with`` block aborts a run that
      is still going.

    Every consumer sees every update (each iterator keeps its own position).
    """

    def __init__(self, conn: _RunOwner, sub: _RunSubscription, *, kind: str, session_key: str,
                 run_id: str, limit: float | None) -> None:
        self._conn = conn
        self._sub = sub
        self.kind = kind
        """``"chat"`` (``chat.send``) or ``"agent"``."""
        self.session_key = session_key
        """The run's session; for an agent run started without one, learnt from its events."""
        self.run_id = run_id
        self._agent_id: str | None = None
        self.started_at = time.monotonic()
        self._deadline = None if limit is None else self.started_at + limit + GRACE_SECONDS
        self._limit = limit
        self._cond = threading.Condition()
        self._pumping = False
        self._updates: list[RunUpdate] = []
        self._text = ""
        self._usage: dict[str, Any] = {}
        self._last_delta_seq = 0
        self._outcome: RunResult | RunError | None = None
        self._boot_id: str | None = None
        self._boot_at: float | None = None  # wall clock minus the hello's uptimeMs
        self._connection: int | None = None
        self._disconnected = False
        self._recheck = False        # ask agent.wait on the next turn of the pump
        self._settle_at: float | None = None
        self._lost = False           # events may be missing (overflow, gap, reconnect)
        # A queued message (_run_follow): the follow-up turn that answers it.
        self._started_turn = False   # a lifecycle start or text of this run was seen
        self._queued = False         # the gateway queued it (a final without a message)
        self.reply_run_id: str | None = None
        """The runId of the follow-up turn answering a queued message, once known."""
        self._candidate: str | None = None
        self._candidate_events: list[tuple[str, dict[str, Any]]] = []
        self._history: HistoryCursor | None = None  # chat.history reads with cursors
        self._message: str | None = None  # the message sent (set by _start): ties it where no keys do
        self._quiet_since: float | None = None  # idle or queue unknown since (no turn started)
        self._lifecycle_error: str | None = None  # the last lifecycle error, until a new start
        # A steered message (_run_follow): the running turn it was steered into answers it.
        self.steered_into: str | None = None
        """The runId of the running turn this run's message was steered into, once known."""
        self._items: dict[str, list[str]] = {}  # runId -> assistant itemIds seen (our session)
        self._steer_skip: frozenset[str] = frozenset()  # the target's items before our message
        self._steer_texts: dict[str, str] = {}  # the target's items answering us: itemId -> text
        self._steer_ended: dict[str, Any] | None = None  # the target's terminal chat payload
        self._steer_looked = False  # looked at the transcript once more after the target ended
        # A run dropped without wait()/close() drops its subscription with it; the
        # subscription's own finalizer hands it back to the registry (no finalizer here
        # may call into gwclient: it can run on any thread, under any lock).

    # -- starting ----------------------------------------------------------------------

    @classmethod
    def chat(cls, conn: _RunOwner, session_key: str, message: str, *, timeout: float | None = None,
             idempotency_key: str | None = None, queue_mode: str | None = None, **params: Any) -> Run:
        """Start a chat turn (``chat.send``) in ``session_key`` on ``conn`` and return its
        run as soon as the gateway has started it (see ``GatewayConnection.chat``)."""
        check_caller("GatewayConnection.chat()")
        if not isinstance(session_key, str) or not session_key:
            raise UsageError("session_key must be a non-empty string")
        if queue_mode is not None:
            if queue_mode not in QUEUE_MODES:
                raise UsageError(f"queue_mode must be one of {', '.join(QUEUE_MODES)}, not {queue_mode!r}")
            params["queueMode"] = queue_mode
        if params.get("attachments"):
            check_attachments(conn.connect().policy.attachments, params["attachments"])
        timeout = check_timeout(timeout)
        key = idempotency_key or str(uuid.uuid4())
        body: dict[str, Any] = {"sessionKey": session_key, "message": message, "idempotencyKey": key, **params}
        if timeout is not None:
            body["timeoutMs"] = max(1, int(timeout * 1000))
        return cls._start(conn, "chat", "chat.send", body, session_key=session_key, timeout=timeout)

    @classmethod
    def agent(cls, conn: _RunOwner, message: str, *, session_key: str | None = None, agent_id: str | None = None,
              timeout: float | None = None, idempotency_key: str | None = None, **params: Any) -> Run:
        """Start an agent turn (``agent``) on ``conn`` and return its run as soon as the
        gateway has accepted it (see ``GatewayConnection.agent``)."""
        check_caller("GatewayConnection.agent()")
        timeout = check_timeout(timeout)
        key = idempotency_key or str(uuid.uuid4())
        body: dict[str, Any] = {"message": message, "idempotencyKey": key, **params}
        if session_key is not None:
            body["sessionKey"] = session_key
        if agent_id is not None:
            body["agentId"] = agent_id
        if timeout is not None:
            body["timeout"] = max(1, math.ceil(timeout))
        return cls._start(conn, "agent", "agent", body, session_key=session_key or "", timeout=timeout)

    @classmethod
    @_otel.traced("gwclient.run.start", lambda cls, conn, kind, *_, **__: {"gwclient.run.kind": kind},
                  lambda run: {"gwclient.run.id": run.run_id})
    def _start(cls, conn: _RunOwner, kind: str, method: str, body: dict[str, Any], *, session_key: str,
               timeout: float | None) -> Run:
        # Subscribe first: the run's first events can arrive before its start answer.
        sub = conn.subscribe(["agent", "chat"], include_state=True)
        try:
            # ``agent`` answers twice: the run starts at the first ("accepted") answer.
            try:
                answer = conn.request(method, body, expect_final=False)
            except RequestError as err:
                if "queueMode" not in body or not refuses_field(err, "queueMode"):
                    raise
                # A gateway older than 2026.9 takes no queueMode (closed params; refused
                # before anything ran): send it without, the gateway's own queue mode applies.
                log.warning("this gateway does not take a queue mode (openclaw 2026.9 does): %s sent without"
                            " queueMode=%r", method, body["queueMode"])
                body = {k: v for k, v in body.items() if k != "queueMode"}
                answer = conn.request(method, body, expect_final=False)
        except BaseException:
            sub.close()
            raise
        answer = answer if isinstance(answer, dict) else {}
        run_id = _str(answer.get("runId")) or body["idempotencyKey"]
        session_key = _str(answer.get("sessionKey")) or session_key
        run = cls(conn, sub, kind=kind, session_key=session_key, run_id=run_id, limit=timeout)
        run._agent_id = _str(answer.get("agentId")) or _str(body.get("agentId"))
        run._message = _str(body.get("message"))
        status = answer.get("status")
        if kind == "agent" and status not in (None, "accepted"):
            run._finish(run._agent_outcome(answer))
        elif kind == "chat" and status == "ok":
            run._recheck = True  # an earlier run with this key already finished
        return run

    # -- public ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once the run has ended (successfully or not)."""
        with self._cond:
            return self._outcome is not None

    @property
    def text(self) -> str:
        """The reply text streamed so far."""
        with self._cond:
            return self._text

    @property
    def result(self) -> RunResult | None:
        """The result if the run ended successfully, else ``None`` (never blocks)."""
        with self._cond:
            return self._outcome if isinstance(self._outcome, RunResult) else None

    @property
    def error(self) -> RunError | None:
        """The run's error if it ended without a reply, else ``None`` (never blocks)."""
        with self._cond:
            return self._outcome if isinstance(self._outcome, RunError) else None

    @_otel.traced("gwclient.run.wait", lambda self, *_, **__: {"gwclient.run.kind": self.kind,
                                                                "gwclient.run.id": self.run_id})
    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends and return its :class:`RunResult`.

        Raises :class:`RunFailed` (:class:`RunTimedOut` for a run out of time),
        :class:`RunAborted` or :class:`RunInterrupted` when the run ended without a reply,
        and :class:`GatewayTimeout` when ``timeout`` seconds passed first (the run goes on;
        wait again or :meth:`abort` it)."""
        check_caller("Run.wait()")
        seconds = check_timeout(timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        if not self._wait_until(lambda: self._outcome is not None, deadline):
            raise GatewayTimeout(f"run {self.run_id} still going after {seconds:g} s")
        return self._raise_or_result()

    def updates(self, *, timeout: float | None = None) -> Iterator[RunUpdate]:
        """Every update of the run in order, from its start, as they arrive.  The iterator
        ends when the run ends, raising the run's error if it ended without a reply, or
        :class:`GatewayTimeout` if it is still going after ``timeout`` seconds."""
        check_caller("Run.updates()")
        return self._updates_until(check_timeout(timeout))  # checked now, not at the first next()

    def _updates_until(self, seconds: float | None) -> Iterator[RunUpdate]:
        deadline = None if seconds is None else time.monotonic() + seconds
        index = 0
        while True:
            with self._cond:
                pending = self._updates[index:]
                finished = self._outcome is not None
            yield from pending
            index += len(pending)
            if finished and not pending:
                self._raise_or_result()
                return
            if not self._wait_until(lambda i=index: len(self._updates) > i or self._outcome is not None,  # type: ignore[misc]
                                    deadline):
                raise GatewayTimeout(f"run {self.run_id} still going after {seconds:g} s")

    def __iter__(self) -> Iterator[str]:
        for update in self.updates():
            if isinstance(update, TextDelta) and update.text:
                yield update.text

    def abort(self, timeout: float | None = None) -> bool:
        """Ask the gateway to stop the run (``chat.abort``).  Returns True if it stopped a
        running run; the run then ends with :class:`RunAborted` (``wait()`` raises it).
        False when the run had already ended.  Raises like ``request()`` if the gateway
        cannot be asked."""
        check_caller("Run.abort()")
        if self.done:
            return False
        if not self.session_key:
            # An agent run started without a session key, before any of its events came
            # (its accepted answer names none): the gateway's own key for it (2026.9.6).
            self.session_key = f"agent:{self._agent_id or 'main'}:explicit:{self.run_id}"
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        answer = self._conn.request("chat.abort", {"sessionKey": self.session_key, "runId": self.run_id},
                                    **kwargs)
        aborted = bool(isinstance(answer, dict) and answer.get("aborted"))
        if not aborted:
            # Nothing running on the gateway: the run is over (or was never known there).
            with self._cond:
                self._recheck = True
        return aborted

    def close(self) -> None:
        """Stop listening to the run (it is not aborted).  Idempotent."""
        self._sub.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if not self.done:
                try:
                    if self.abort(timeout=5.0):
                        self._wait_until(lambda: self._outcome is not None, time.monotonic() + 5.0)
                except GatewayError as err:
                    log.debug("could not abort run %s on exit: %s", self.run_id, err)
        finally:
            self.close()

    def __repr__(self) -> str:
        with self._cond:
            state = "running" if self._outcome is None else type(self._outcome).__name__
        return f"<Run {self.kind} {self.run_id} session={self.session_key} {state}>"

    # -- the pump ----------------------------------------------------------------------

    def _raise_or_result(self) -> RunResult:
        with self._cond:
            outcome = self._outcome
        if isinstance(outcome, RunError):
            raise outcome
        assert outcome is not None
        return outcome

    def _wait_until(self, ready: Callable[[], bool], deadline: float | None) -> bool:
        """Make progress until ``ready()`` (checked under the lock); False when ``deadline``
        passed first.  One thread at a time pulls pushes; the others wait for it."""
        with self._cond:
            while not ready():
                now = time.monotonic()
                if self._deadline is not None and now >= self._deadline and self._outcome is None:
                    self._expire()
                    continue
                if deadline is not None and now >= deadline:
                    return False
                limits = [t for t in (deadline, self._deadline) if t is not None]
                until = min(limits) if limits else None
                if self._pumping:
                    self._cond.wait(None if until is None else until - now)
                    continue
                self._pumping = True
                self._cond.release()
                try:
                    self._pump_once(until)
                finally:
                    self._cond.acquire()
                    self._pumping = False
                    self._cond.notify_all()
            return True

    def _pump_once(self, until: float | None) -> None:
        """Take one push (waiting at most until ``until``) and interpret it; also run the
        settle and recheck timers.  Runs on the calling user thread, without the lock."""
        now = time.monotonic()
        if self._recheck or (self._settle_at is not None and now >= self._settle_at):
            self._recheck = False
            self._settle_at = None
            self._recover(after_reconnect=False)
            return
        wait = _POLL if until is None else max(0.0, min(_POLL, until - now))
        if self._settle_at is not None:
            wait = max(0.0, min(wait, self._settle_at - now))
        try:
            push = self._sub.get(timeout=wait)
        except GatewayTimeout:
            return
        except ClientClosed:
            self._finish(RunInterrupted(f"run {self.run_id}: the connection was closed before it ended",
                                        **self._ids()))
            return
        self._on_push(push)

    def _on_push(self, push: Any) -> None:
        if isinstance(push, Event):
            payload = push.payload
            if not isinstance(payload, dict):
                return
            rid = payload.get("runId")
            if rid != self.run_id and isinstance(rid, str):
                if push.event == "agent" and payload.get("stream") == "assistant":
                    self._note_item(rid, payload)
                if self.steered_into is not None:
                    if rid == self.steered_into:
                        self._on_steer_event(push.event, payload)
                    elif push.event == "chat" and is_queued_final(payload, started=False, text=""):
                        self._on_later_drain(payload)
                    return
            if rid != self.run_id and (self.reply_run_id is None or rid != self.reply_run_id):
                if self._queued and self.reply_run_id is None:
                    self._follow(push.event, payload)
                return
            if not self.session_key and isinstance(payload.get("sessionKey"), str):
                self.session_key = payload["sessionKey"]  # an agent run started without one
            if push.event == "chat":
                self._on_chat(payload)
            elif push.event == "agent":
                self._on_agent(payload)
        elif isinstance(push, Snapshot):
            boot = push.hello.server.boot_id  # None before 2026.9 (no bootId in the hello)
            boot_at = booted_at(push.hello.snapshot.get("uptimeMs"), time.time())
            if self._connection is None:  # the connection the run started on
                self._connection, self._boot_id, self._boot_at = push.connection_number, boot, boot_at
                self._disconnected = False
                return
            if push.connection_number == self._connection and not self._disconnected:
                return
            restarted = same_process(self._boot_id, boot, self._boot_at, boot_at)
            restarted = None if restarted is None else not restarted
            self._connection, self._boot_id, self._boot_at = push.connection_number, boot, boot_at
            self._disconnected = False
            self._lost = True
            log.debug("run %s: reconnected (gateway %s); asking how it went", self.run_id,
                      {True: "restarted", False: "same", None: "unknown"}[restarted])
            self._recover(after_reconnect=True, restarted=restarted)
        elif isinstance(push, StateChange):
            if push.state == ConnectionState.CONNECTED:
                return
            if push.state == ConnectionState.CLOSED:
                self._finish(RunInterrupted(f"run {self.run_id}: the connection was shut down",
                                            **self._ids()))
            elif push.state == ConnectionState.PAUSED:
                self._finish(RunInterrupted(
                    f"run {self.run_id}: the connection was lost and reconnecting is paused"
                    f" ({push.detail})", **self._ids()))
            else:
                self._disconnected = True
        elif isinstance(push, (Overflow, SeqGap)):
            self._lost = True

    # -- event interpretation ------------------------------------------------------------

    def _ids(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "session_key": self.session_key, "partial_text": self._text}

    def _emit(self, update: RunUpdate) -> None:
        with self._cond:
            if self._outcome is None:
                self._updates.append(update)
                self._cond.notify_all()

    def _finish(self, outcome: RunResult | RunError) -> None:
        with self._cond:
            if self._outcome is not None:
                return
            self._outcome = outcome
            self._cond.notify_all()
        log.debug("run %s ended: %s", self.run_id, type(outcome).__name__)
        self._sub.close()

    def _complete(self, final: str | None) -> str:
        """Adopt the final reply text; if it extends what was streamed (deltas were missed),
        emit the rest as one more delta, so the deltas always add up to the result."""
        if final is None:
            return self._text
        with self._cond:
            rest = final[len(self._text):] if final.startswith(self._text) else ""
        if rest:
            self._emit(TextDelta(self.run_id, rest, final))
        with self._cond:
            self._text = final
        return final

    def _on_chat(self, p: dict[str, Any]) -> None:
        state = p.get("state")
        seq = _int(p.get("seq")) or 0
        if (not self._queued and p.get("runId") == self.run_id
                and is_queued_final(p, started=self._started_turn, text=self._text)):
            self._on_queued()
            return
        if state == "delta":
            self._started_turn = True
            if seq and seq <= self._last_delta_seq:
                return  # a repeated delta
            self._last_delta_seq = max(self._last_delta_seq, seq)
            delta = _str(p.get("deltaText")) or ""
            full = _message_text(p.get("message"))
            replace = bool(p.get("replace"))
            with self._cond:
                if replace and full is not None:
                    self._text = full
                elif full is not None and full.startswith(self._text):
                    # The cumulative text says what is new, also after a resync adopted
                    # text that this delta repeats.
                    delta, self._text = full[len(self._text):], full
                elif full is not None and self._text.startswith(full):
                    delta = ""  # already adopted (chat.history's inFlightRun)
                elif full is None and self._lost:
                    # Events were lost and nothing says where this delta goes: streaming it
                    # would break "the deltas add up"; the final text makes up the rest.
                    delta = ""
                else:
                    self._text += delta
                text_now = self._text
            if delta or replace:
                self._emit(TextDelta(self.run_id, delta, text_now, replace))
        elif state == "final":
            message = _dict(p.get("message"))
            final = _message_text(message)
            text = self._complete(final)
            usage = _dict(p.get("usage")) or self._usage
            self._finish(RunResult(self.run_id, self.session_key, text, "ok", _str(p.get("stopReason")),
                                   dict(usage), message))
        elif state == "aborted":
            partial = _message_text(p.get("message"))
            if partial is not None:
                with self._cond:
                    self._text = partial
            stop = _str(p.get("stopReason")) or ""
            self._finish(RunAborted(f"run {self.run_id} was aborted ({stop or 'no reason given'})",
                                    stop_reason=stop, **self._ids()))
        elif state == "error":
            reason = _str(p.get("errorMessage")) or "the run failed"
            kind = _str(p.get("errorKind")) or "error"
            cls = RunTimedOut if kind == "timeout" else RunFailed
            self._finish(cls(f"run {self.run_id} failed: {reason}", kind=kind, reason=reason,
                             detail=_dict(p.get("errorDetail")), **self._ids()))
        # "status" duplicates the agent run_status stream: reported from there

    def _on_agent(self, p: dict[str, Any]) -> None:
        stream = _str(p.get("stream")) or ""
        data = _dict(p.get("data"))
        rid = self.run_id
        if stream == "run_status":
            self._emit(StatusUpdate(rid, _str(data.get("phase")) or "", _int(data.get("retryAttempt")),
                                    _int(data.get("maxRetries")), _int(data.get("delayMs")),
                                    _str(data.get("message"))))
        elif stream == "lifecycle":
            phase = _str(data.get("phase")) or ""
            self._started_turn = self._started_turn or phase == "start"
            if phase == "start":  # a (re)try: an earlier error is not the outcome
                self._lifecycle_error, self._settle_at = None, None
            elif phase == "error":
                self._lifecycle_error = _str(data.get("error")) or "the run failed"
            error = data.get("error")
            self._emit(LifecycleUpdate(rid, phase, _str(data.get("provider")), _str(data.get("model")),
                                       _str(data.get("stopReason")), _str(error),
                                       data.get("aborted") if isinstance(data.get("aborted"), bool) else None))
            if phase in ("end", "error") and self._settle_at is None:
                # The chat final/aborted/error normally follows within milliseconds.
                self._settle_at = time.monotonic() + SETTLE_SECONDS
        elif stream == "usage":
            usage = {k: v for k, v in data.items() if isinstance(v, int)}
            self._usage.update(usage)
            self._emit(UsageUpdate(rid, _int(data.get("outputTokens")), _int(data.get("inputTokens")),
                                   _int(data.get("totalTokens"))))
        elif stream == "tool":
            self._emit(ToolUpdate(rid, _str(data.get("name")), _str(data.get("phase")),
                                  _str(data.get("toolCallId")), data))
        elif stream == "assistant":
            pass  # the same text as the chat deltas
        elif stream:
            self._emit(AgentUpdate(rid, stream, data))

    # -- recovery ------------------------------------------------------------------------

    def _agent_outcome(self, answer: dict[str, Any]) -> RunResult | RunError:
        """The outcome in an ``agent`` final answer (a re-sent key of a finished run)."""
        status = answer.get("status")
        ids = self._ids()
        if status == "ok":
            payloads = _dict(answer.get("result")).get("payloads")
            texts = [p.get("text") for p in payloads if isinstance(p, dict)] if isinstance(payloads, list) else []
            return RunResult(self.run_id, self.session_key, "".join(t for t in texts if isinstance(t, str)),
                             "ok", _str(answer.get("stopReason")), {}, {}, recovered=True)
        if answer.get("stopReason") == "rpc":
            return RunAborted(f"run {self.run_id} was aborted", stop_reason="rpc", **ids)
        summary = _str(answer.get("summary")) or "the run failed"
        if status == "timeout":
            return RunTimedOut(f"run {self.run_id} timed out", kind="timeout", reason=summary, **ids)
        return RunFailed(f"run {self.run_id} failed: {summary}", kind="error", reason=summary, **ids)

    def _expire(self) -> None:
        """The run's own time limit (plus grace) passed with no verdict (called locked)."""
        ids = self._ids()
        if self._disconnected:
            self._outcome = RunInterrupted(
                f"run {self.run_id}: the connection was lost and did not come back within its"
                f" {self._limit:g} s limit", **ids)
        else:
            self._outcome = RunTimedOut(
                f"run {self.run_id}: no outcome from the gateway within its {self._limit:g} s limit",
                kind="timeout", **ids)
        self._cond.notify_all()
        self._sub.close()

    # -- a queued message (_run_follow) ---------------------------------------------------

    def _read_history(self, *, tail: bool = False) -> Any:
        """The session's ``chat.history``: a tail read first, then deltas from its cursor
        (``tail=True`` for ``pendingInputs``/``inFlightRun``, which deltas do not carry)."""
        if self._history is None:
            self._history = HistoryCursor(self._conn.request, self.session_key)
        return self._history.read(tail=tail)

    def _on_queued(self) -> None:
        """The gateway queued the message behind a running turn: wait for the follow-up
        turn that answers it (unless the transcript already has the answer, or nothing is
        left in the session that could give one)."""
        self._queued = True
        history = self._read_history(tail=True)
        target = steer_target(history, self.run_id, self._message)
        if target is not None and target != self.run_id:
            self._on_steered(target)
            return
        log.debug("run %s: queued behind another turn in %s", self.run_id, self.session_key)
        self._emit(StatusUpdate(self.run_id, "queued"))
        self._check_queued_later(history)

    def _check_queued(self, history: Any) -> bool:
        """End a queued run whose answer is already in ``history``.  True when it ended."""
        found = answer_in_history(history, self.run_id, self._message)
        if found is not None:
            reply_id, text, failed = found
            self.reply_run_id = reply_id
            if failed:
                self._finish(RunFailed(f"run {self.run_id} failed: {text}", kind="error", reason=text,
                                       **self._ids()))
            else:
                text = self._complete(text)
                self._finish(RunResult(self.run_id, self.session_key, text, "ok", None, dict(self._usage), {},
                                       recovered=True))
            return True
        return False

    def _check_queued_later(self, history: Any) -> None:
        """:meth:`_check_queued`; when the session looks idle (nothing running, nothing
        pending) or the gateway does not report its queue, look again after
        :data:`SETTLE_SECONDS`, and give up (:class:`RunReplyUnknown`) when it has stayed
        so, with no turn starting, for 2 such periods (idle) or :data:`QUIET_CHECKS`
        (queue not reported), in real time.  A single idle look is not enough: between two turns the
        gateway has dequeued a message before its turn shows as active."""
        if self._check_queued(history) or self._candidate is not None:
            self._quiet_since = None
            return
        idle, unknown = session_idle(history), queue_unknown(history)
        if not idle and not unknown:
            self._quiet_since = None
            return
        # Real time, not looks: a run reading its backlog looks many times in a row.
        now = time.monotonic()
        if self._quiet_since is None:
            self._quiet_since = now
        if now - self._quiet_since >= (2 if idle else QUIET_CHECKS) * SETTLE_SECONDS:
            why = ("the session went idle without an answer the client could tie to it" if idle else
                   "no turn answering it came, and the gateway does not say whether it is still queued")
            self._finish(RunReplyUnknown(f"run {self.run_id}: its message was queued and {why}", **self._ids()))
            return
        self._settle_at = time.monotonic() + SETTLE_SECONDS

    def _follow(self, event: str, payload: dict[str, Any]) -> None:
        """An event of another run while queued: find the follow-up turn answering us."""
        if canonical_key(payload.get("sessionKey")) != canonical_key(self.session_key):
            return
        rid = _str(payload.get("runId"))
        if rid is None:
            return
        starts = event == "agent" and is_turn_start(payload)
        if starts:
            self._quiet_since = None
        if self._candidate is not None and rid != self._candidate and starts:
            self._decide(final=True)  # the previous candidate is over: settle it first
        if self._candidate is None:
            if starts:
                self._candidate, self._candidate_events = rid, [(event, payload)]
                self._decide(final=False)
            elif event == "chat" and payload.get("state") in ("final", "aborted", "error"):
                # another turn ended: the answer may be in the transcript now (a steered
                # message is answered by the running turn), or nothing is left to answer
                self._check_queued_later(self._read_history(tail=True))
            return
        if rid != self._candidate:
            return
        self._candidate_events.append((event, payload))
        terminal = event == "chat" and payload.get("state") in ("final", "aborted", "error")
        if terminal or (event == "chat" and payload.get("state") == "delta"):
            self._decide(final=terminal)

    def _decide(self, *, final: bool) -> None:
        """Is the candidate follow-up turn ours?  Adopt it (replaying what it sent so far),
        drop it, or keep its events until the transcript says."""
        candidate = self._candidate
        assert candidate is not None
        history = self._read_history()
        match = match_turn(history, self.run_id, candidate, self._message)
        if match == MINE:
            self.reply_run_id = candidate
            events, self._candidate, self._candidate_events = self._candidate_events, None, []
            log.debug("run %s: answered by follow-up turn %s", self.run_id, candidate)
            for name, payload in events:
                if self._outcome is not None:
                    break
                if name == "chat":
                    self._on_chat(payload)
                else:
                    self._on_agent(payload)
            return
        if match == UNKNOWN:
            self._finish(RunReplyUnknown(
                f"run {self.run_id}: its message was queued and the gateway's transcript keeps no"
                " idempotency keys to tell which turn answers it", **self._ids()))
            return
        if match == OTHER or final:
            self._candidate, self._candidate_events = None, []
            if not self._check_queued(history) and final:
                # the answer entry may be written just after the turn's final: look again
                self._settle_at = time.monotonic() + SETTLE_SECONDS

    # -- a steered message (_run_follow) ----------------------------------------------------

    def _note_item(self, rid: str, payload: dict[str, Any]) -> None:
        """Remember the assistant messages (``itemId``) of the other turns in our session:
        those of a turn before our message was steered into it are not our reply."""
        if canonical_key(payload.get("sessionKey")) != canonical_key(self.session_key):
            return
        item = _str(_dict(payload.get("data")).get("itemId"))
        if item is not None:
            items = self._items.setdefault(rid, [])
            if item not in items:
                items.append(item)

    def _on_steered(self, target: str) -> None:
        """Our message was steered into the running turn ``target``: its next assistant
        message (an ``itemId`` not seen before this point) answers it."""
        self.steered_into = target
        self._steer_skip = frozenset(self._items.get(target, ()))
        log.debug("run %s: steered into the running turn %s", self.run_id, target)
        self._emit(StatusUpdate(self.run_id, "steered"))

    def _on_steer_event(self, event: str, payload: dict[str, Any]) -> None:
        """An event of the turn our message was steered into."""
        if event == "agent":
            data = _dict(payload.get("data"))
            stream = payload.get("stream")
            if stream == "assistant":
                item, text = _str(data.get("itemId")), _str(data.get("text"))
                if item is None or text is None or item in self._steer_skip:
                    return
                self._steer_texts[item] = text
                self._stream_to("\n\n".join(t for t in self._steer_texts.values() if t))
            elif stream == "lifecycle" and data.get("phase") in ("end", "error") and self._settle_at is None:
                self._settle_at = time.monotonic() + SETTLE_SECONDS  # in case its chat final is lost
            return
        if event == "chat" and payload.get("state") in ("final", "aborted", "error"):
            self._steer_ended = payload
            self._check_steered()

    def _on_later_drain(self, payload: dict[str, Any]) -> None:
        """Another message's queued final while we follow a steered reply: if it was
        steered into our target after us, the transcript now ends our reply."""
        if not self._steer_texts or canonical_key(payload.get("sessionKey")) != canonical_key(self.session_key):
            return
        assert self.steered_into is not None
        reply = steered_reply(self._read_history(tail=True), self.run_id, self.steered_into, self._message)
        if reply is not None and reply.complete:
            self._end_steered(reply)

    def _stream_to(self, full: str) -> None:
        """Our reply so far is ``full``: emit what is new (a ``replace`` if it is not an
        extension of what was streamed)."""
        with self._cond:
            replace = not full.startswith(self._text)
            delta = full if replace else full[len(self._text):]
            self._text = full
        if delta or replace:
            self._emit(TextDelta(self.run_id, delta, full, replace))

    def _end_steered(self, reply: SteeredReply) -> None:
        target = self.steered_into
        if reply.failed:
            self._finish(RunFailed(f"run {self.run_id} failed: the turn {target} it was steered into failed"
                                   f" ({reply.text})", kind="error", reason=reply.text, **self._ids()))
            return
        self._stream_to(reply.text)
        others = tuple(r for r in reply.batch if r != self.run_id)
        usage = _dict(_dict(self._steer_ended).get("usage"))
        self._finish(RunResult(self.run_id, self.session_key, reply.text, "ok",
                               _str(_dict(self._steer_ended).get("stopReason")), dict(usage), {},
                               steered_into=target, steered_with=others))

    def _check_steered(self) -> None:
        """The target turn ended: our reply is in the transcript, or it ended without
        answering us (aborted, failed; or, ending normally, the gateway may still run our
        message as a follow-up turn: back to waiting like a queued message)."""
        target = self.steered_into
        assert target is not None
        history = self._read_history(tail=True)
        reply = steered_reply(history, self.run_id, target, self._message)
        if reply is not None:
            self._end_steered(reply)
            return
        ended = _dict(self._steer_ended)
        state = ended.get("state")
        if state == "aborted":
            self._finish(RunAborted(f"run {self.run_id}: the turn {target} it was steered into was aborted before"
                                    " it answered", stop_reason=_str(ended.get("stopReason")) or "", **self._ids()))
        elif state == "error":
            reason = _str(ended.get("errorMessage")) or "the run failed"
            self._finish(RunFailed(f"run {self.run_id}: the turn {target} it was steered into failed: {reason}",
                                   kind=_str(ended.get("errorKind")) or "error", reason=reason, **self._ids()))
        elif not self._steer_looked:
            self._steer_looked = True  # the entry may be written just after the final
            self._settle_at = time.monotonic() + SETTLE_SECONDS
        else:
            log.debug("run %s: the turn %s ended without answering it; waiting like a queued message",
                      self.run_id, target)
            self.steered_into = None
            self._check_queued_later(history)

    def _recover_steered(self, *, restarted: bool) -> None:
        """Settle timer or reconnect while following a steered reply: has the target ended?
        (After a restart it has: the gateway's runs die with its process.)"""
        target = self.steered_into
        assert target is not None
        if restarted and self._steer_ended is None:
            reply = steered_reply(self._read_history(tail=True), self.run_id, target, self._message)
            if reply is not None:
                self._end_steered(reply)
            else:
                self._finish(RunInterrupted(f"run {self.run_id}: the gateway restarted before the turn {target}"
                                            " it was steered into answered it", **self._ids()))
            return
        if self._steer_ended is None:
            try:
                answer = self._conn.request("agent.wait", {"runId": target, "timeoutMs": 0}, timeout=10.0)
            except GatewayError as err:
                log.debug("run %s: agent.wait failed: %s", self.run_id, err)
                return
            answer = _dict(answer)
            if answer.get("status") == "timeout" and answer.get("endedAt") is None:
                return  # still running: its events go on
            self._steer_ended = {"state": "final" if answer.get("status") == "ok" else "error",
                                 "errorMessage": _str(answer.get("error")),
                                 "stopReason": _str(answer.get("stopReason"))}
        self._check_steered()

    def _recover(self, *, after_reconnect: bool, restarted: bool | None = False) -> None:
        """Ask the gateway how the run ended (``agent.wait``, then ``chat.history``)."""
        if self.steered_into is not None:
            self._recover_steered(restarted=after_reconnect and restarted is True)
            return
        if self._queued and self.reply_run_id is None:
            self._check_queued_later(self._read_history(tail=True))  # still waiting for its turn
            return
        try:
            answer = self._conn.request("agent.wait", {"runId": self.reply_run_id or self.run_id, "timeoutMs": 0},
                                        timeout=10.0)
        except GatewayError as err:
            log.debug("run %s: agent.wait failed: %s", self.run_id, err)
            answer = None
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == "ok" and self._lifecycle_error is not None and isinstance(answer, dict) \
                and not _dict(answer.get("terminalReply")):
            # 2026.5.12 answers "ok" for a turn whose lifecycle ended in an error (no chat
            # error event, no terminal reply): the error is the outcome
            error = self._lifecycle_error
            self._finish(RunFailed(f"run {self.run_id} failed: {error}", kind="error", reason=error,
                                   **self._ids()))
            return
        if status == "ok":
            reply = _dict(answer.get("terminalReply")) if isinstance(answer, dict) else {}
            text = _str(reply.get("text"))
            if text is None:
                text = self._history_reply()[0] if self._lost else None
            text = self._complete(text)
            self._finish(RunResult(self.run_id, self.session_key, text,
                                   "ok", _str(answer.get("stopReason")) if isinstance(answer, dict) else None,
                                   dict(self._usage), {}, recovered=True))
            return
        if status == "error" and isinstance(answer, dict):
            error = _str(answer.get("error")) or "the run failed"
            if error == "aborted" or answer.get("stopReason") == "rpc":
                self._finish(RunAborted(f"run {self.run_id} was aborted", stop_reason=_str(answer.get("stopReason"))
                                        or "", **self._ids()))
            else:
                self._finish(RunFailed(f"run {self.run_id} failed: {error}", kind="error", reason=error,
                                       **self._ids()))
            return
        if status == "timeout" and isinstance(answer, dict) and answer.get("endedAt") is not None:
            self._finish(RunTimedOut(f"run {self.run_id} timed out", kind="timeout", **self._ids()))
            return
        # Still running, or unknown to this gateway.
        hedge = ""
        if after_reconnect and restarted is None:
            # No bootId (2026.7.1 and older): "still running" and "unknown to a restarted
            # gateway" look alike; the session says whether a turn is still going.
            history = self._read_history(tail=True)
            info = _dict(history.get("sessionInfo")) if isinstance(history, dict) else {}
            if info.get("hasActiveRun") is True:
                self._adopt_in_flight()
                return
            restarted, hedge = True, " (it gives no boot id: it may have restarted)"
        if after_reconnect and restarted:
            text, failed = self._history_reply()
            if text is not None and not failed:
                text = self._complete(text)
                self._finish(RunResult(self.run_id, self.session_key, text, "ok", None, dict(self._usage), {},
                                       recovered=True))
            elif text is not None:
                self._finish(RunFailed(f"run {self.run_id} failed: {text}", kind="error", reason=text,
                                       **self._ids()))
            else:
                self._finish(RunInterrupted(
                    f"run {self.run_id}: the gateway restarted during the run and kept no reply" if not hedge
                    else f"run {self.run_id}: the gateway no longer runs it and kept no reply{hedge}",
                    **self._ids()))
        elif after_reconnect:
            # The same gateway says it is still running: keep streaming, from the text it
            # buffered while the socket was down (chat.history's inFlightRun).
            self._adopt_in_flight()

    def _adopt_in_flight(self) -> None:
        """Resync after a reconnect: ``chat.history``'s ``inFlightRun`` (2026.9) holds the
        text streamed so far; what the run missed is emitted as one delta, and the deltas
        that follow continue from it, so all of them concatenate to the final text."""
        history = self._read_history(tail=True)
        flight = _dict(history.get("inFlightRun")) if isinstance(history, dict) else {}
        if flight.get("runId") not in (self.run_id, self.reply_run_id):
            return
        text = _str(flight.get("text"))
        with self._cond:
            rest = text[len(self._text):] if text is not None and text.startswith(self._text) else ""
            if rest:
                self._text = text or ""
            full = self._text
        if rest:
            log.debug("run %s: adopted %d characters streamed while disconnected", self.run_id, len(rest))
            self._emit(TextDelta(self.run_id, rest, full))

    def _history_reply(self) -> tuple[str | None, bool]:
        """The run's assistant reply from ``chat.history`` (text, failed) or (None, False)."""
        try:
            history = self._conn.request("chat.history", {"sessionKey": self.session_key, "limit": 20},
                                         timeout=10.0)
        except GatewayError as err:
            log.debug("run %s: chat.history failed: %s", self.run_id, err)
            return None, False
        messages = history.get("messages") if isinstance(history, dict) else None
        for message in reversed(messages if isinstance(messages, list) else []):
            if not isinstance(message, dict) or message.get("role") != "assistant":
                continue
            meta = _dict(message.get("__openclaw"))
            key = _str(message.get("idempotencyKey")) or ""
            if meta.get("runId") in (self.run_id, self.reply_run_id) or key.startswith(self.run_id + ":"):
                text = _message_text(message)
                return (text or ""), message.get("stopReason") == "error"
        # 2026.7.1 writes no runId on assistant entries: the entry after our user entry
        found = answer_in_history(history, self.run_id, self._message)
        if found is not None:
            return found[1], found[2]
        return None, False
