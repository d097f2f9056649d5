"""Agent and chat runs as blocking streams: :meth:`RunsMixin.chat`, :meth:`RunsMixin.agent`,
:class:`Run` and its typed updates.

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
:data:`GRACE_SECONDS`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ._deadline import check_timeout
from ._errors import (
    ClientClosed,
    GatewayError,
    GatewayTimeout,
    RunAborted,
    RunError,
    RunFailed,
    RunInterrupted,
    RunTimedOut,
    check_caller,
)
from ._pushes import ConnectionState, Event, Overflow, SeqGap, Snapshot, StateChange
from ._run_updates import (
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

if TYPE_CHECKING:
    from ._subscription import Subscription


class _RunOwner(Protocol):
    """What a run needs of its connection: the public primitives."""

    def request(self, method: str, params: Any = None, *, timeout: Any = ...,
                expect_final: bool | None = None) -> Any: ...

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
_POLL = 0.5  # longest single wait on the subscription, so settle timers are checked


# ---------------------------------------------------------------------------------- Run


class Run:
    """One agent or chat run, streamed.  Made by :meth:`RunsMixin.chat` and
    :meth:`RunsMixin.agent`; thread-safe.

    * ``for text in run`` yields the reply's text deltas as they arrive, then raises the
      run's :class:`RunError` if it did not succeed;
    * :meth:`updates` yields every typed update (:data:`RunUpdate`), the same way;
    * :meth:`wait` returns the :class:`RunResult` or raises;
    * :meth:`abort` asks the gateway to stop it; leaving a ``with`` block aborts a run that
      is still going.

    Every consumer sees every update (each iterator keeps its own position).
    """

    def __init__(self, conn: _RunOwner, sub: Subscription, *, kind: str, session_key: str,
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
        self._connection: int | None = None
        self._disconnected = False
        self._recheck = False        # ask agent.wait on the next turn of the pump
        self._settle_at: float | None = None
        self._lost = False           # events may be missing (overflow, gap, reconnect)
        # A run dropped without wait()/close() must not leave its subscription on the bus;
        # its finalizer only hands close() to the bus (gwclient/_handover.py).
        sub._close_with(self)

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
            if not isinstance(payload, dict) or payload.get("runId") != self.run_id:
                return
            if not self.session_key and isinstance(payload.get("sessionKey"), str):
                self.session_key = payload["sessionKey"]  # an agent run started without one
            if push.event == "chat":
                self._on_chat(payload)
            elif push.event == "agent":
                self._on_agent(payload)
        elif isinstance(push, Snapshot):
            boot = push.hello.server.boot_id or push.hello.server.conn_id
            if self._connection is None:  # the connection the run started on
                self._connection, self._boot_id = push.connection_number, boot
                self._disconnected = False
                return
            if push.connection_number == self._connection and not self._disconnected:
                return
            restarted = boot != self._boot_id
            self._connection, self._boot_id = push.connection_number, boot
            self._disconnected = False
            self._lost = True
            log.debug("run %s: reconnected (gateway %s); asking how it went", self.run_id,
                      "restarted" if restarted else "same")
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
        if state == "delta":
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
                    # The cumulative text places the delta: whatever was missed before it
                    # (an overflow can drop the start of a reply) is streamed with it.
                    delta, self._text = full[len(self._text):], full
                elif self._lost:
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

    def _recover(self, *, after_reconnect: bool, restarted: bool = False) -> None:
        """Ask the gateway how the run ended (``agent.wait``, then ``chat.history``)."""
        try:
            answer = self._conn.request("agent.wait", {"runId": self.run_id, "timeoutMs": 0}, timeout=10.0)
        except GatewayError as err:
            log.debug("run %s: agent.wait failed: %s", self.run_id, err)
            answer = None
        status = answer.get("status") if isinstance(answer, dict) else None
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
                    f"run {self.run_id}: the gateway restarted during the run and kept no reply",
                    **self._ids()))
        # else: the same gateway says it is still running: keep streaming.

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
            if meta.get("runId") == self.run_id or key.startswith(self.run_id + ":"):
                text = _message_text(message)
                return (text or ""), message.get("stopReason") == "error"
        return None, False
