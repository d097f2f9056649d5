"""Agent and chat runs for the dev gateway: ``agent``, ``chat.send``, ``chat.abort``,
``agent.wait`` and ``chat.history``, with the real gateway's quirks on demand.

There is no model: a run's reply is scripted (:class:`RunScript`; by default
``ECHO: <message>`` word by word).  The events follow the order a real 2026.9.6 gateway
sends (``PROTOCOL.md`` § R3): ``run_status``/``status`` phases (``chat.send`` runs only),
``lifecycle`` start and model, ``assistant`` + ``chat`` deltas, ``usage``, ``lifecycle``
finishing and **end before the last chat delta** and the chat ``final``.  A script can also
merge deltas (the payload ``seq`` then skips numbers), fail (a ``chat`` error, plus the
second ``seq:1`` error a failed ``chat.send`` run gets), hang, or pause mid-stream until
:meth:`DevRuns.release`; ``chat.abort`` gives ``chat`` aborted, then ``lifecycle/end``
(cancelled) and ``lifecycle/error``.

With :attr:`DevRuns.queue` on, a ``chat.send`` into a session whose run is still going is
*queued* the way 2026.9.6 queues it (PROTOCOL.md R7): ``{runId, status: "started"}``, at
once a ``chat`` ``final`` for that runId without a ``message``, and after the running turn
ends a follow-up turn under a **new** runId (``lifecycle`` events with
``completionSource: "reply-dispatch"``) whose final carries the reply; the user entry in
``chat.history`` is written when the follow-up starts, with ``idempotencyKey:
"<queued runId>:user"`` (:attr:`DevRuns.history_keys` off drops the keys, like a gateway
that cannot tie them).  ``chat.history`` also reports ``sessionInfo.hasActiveRun`` and
``pendingInputs``.

With :attr:`DevRuns.steer` on, a ``chat.send`` into a session whose chat run is streaming is
*steered* into that run the way 2026.9.6 steers (queue mode ``steer``, drain mode ``all``):
``{runId, status: "started"}`` at once; at the running turn's next model boundary (the end
of its current assistant message) every waiting message is drained together: the finished
assistant entry is written, then a user entry per message with
``__openclaw.steerTargetRunId``, then a ``chat`` ``final`` without a ``message`` for each,
and the running turn streams one more assistant message (a new ``itemId``; ``ECHO: <the
last drained message>``) answering them, its ``chat`` text the turn's messages joined by
a blank line.  ``queueMode: "followup"`` queues instead (with :attr:`DevRuns.release_2026_7`,
``queueMode`` is refused like 2026.7.1's closed params).

A gateway restart forgets running runs (like the real one, whose runs die with the
process): their threads end without a reply, ``agent.wait`` no longer knows them, and
only what was finished is kept in ``chat.history`` (which survives restarts).

Run threads are the dev gateway's (``devgw-run-*``), joined by its ``stop()``/restart.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gwclient.testing._devgw_proto import error_shape
from gwclient.testing._devgw_server import GatewayServer, _Conn

__all__ = ["RUN_EVENTS", "RUN_METHODS", "DevRuns", "RunScript"]

RUN_METHODS = ("agent", "chat.send", "chat.abort", "agent.wait", "chat.history")
RUN_EVENTS = ("agent", "chat")
_TICK = 0.02  # how often a waiting run thread checks for abort/restart/release


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class RunScript:
    """What a dev run does.

    * ``reply``: the reply text (default ``"ECHO: " + message``), streamed word by word
      with ``delay`` seconds before each word after the first;
    * ``merge``: send one ``chat`` delta per two words (the payload ``seq`` skips);
    * ``early_end``: ``lifecycle/end`` before the last ``chat`` delta (the real order);
    * ``fail``: fail with this message after ``fail_after`` words (``error_kind`` e.g.
      ``"timeout"``; ``duplicate_error`` adds the second ``seq:1`` error of ``chat.send``);
    * ``hang``: no words until aborted, timed out or released;
    * ``pause_after``: stop after that many words until :meth:`DevRuns.release`;
      ``pauses``: more such points (each needs its own release);
    * ``cumulative=False``: ``chat`` deltas carry only ``deltaText``, not the cumulative
      ``message`` (the protocol makes it optional).
    """

    reply: str | None = None
    delay: float = 0.0
    merge: bool = False
    early_end: bool = True
    fail: str | None = None
    fail_after: int = 0
    error_kind: str | None = None
    duplicate_error: bool = True
    hang: bool = False
    pause_after: int | None = None
    pauses: tuple[int, ...] = ()
    cumulative: bool = True


@dataclass(eq=False)
class _DevRun:
    run_id: str
    kind: str  # "chat" | "agent"
    session_key: str
    message: str
    script: RunScript
    lifetime: int
    limit_s: float | None
    started_ms: int = field(default_factory=_now_ms)
    ended_ms: int | None = None
    status: str = "running"  # running | ok | error | aborted | timeout | lost
    text: str = ""
    error: str | None = None
    abort: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    seq: int = 0
    # agent method: where to send the final answer
    answer_to: tuple[_Conn, str] | None = None
    # a follow-up turn answering a queued chat.send: that send's runId
    queued_for: str | None = None


class DevRuns:
    """The run part of a :class:`DevGateway` (``gw.runs``).  Thread-safe.

    ``server`` sends the answers and events and runs the run threads; ``cond`` is the
    gateway's monitor, notified when a run pauses or ends (``DevGateway.wait_for``)."""

    def __init__(self, server: GatewayServer, cond: threading.Condition) -> None:
        self._server = server
        self._cond = cond
        self._lock = threading.Lock()
        self._rules: list[tuple[str, RunScript]] = []
        self.default = RunScript()
        self._runs: dict[str, _DevRun] = {}
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._release_gen = 0
        self._paused = 0
        self.queue = False
        """Queue a ``chat.send`` into a busy session (the real gateway's follow-up turns)."""
        self.history_keys = True
        """Write ``idempotencyKey`` on the user entries of ``chat.history``."""
        self.cursors = True
        """Answer ``chat.history`` cursors (``deltaCursor``; ``cursor`` gives ``kind:
        "delta"`` or ``"reset"``); off: refuse ``cursor`` like 2026.7.1 (closed params)."""
        self.history_reads = {"tail": 0, "delta": 0, "reset": 0}
        self.release_2026_7 = False
        """Queue like 2026.7.1: follow-up turns without ``completionSource``, assistant
        entries of ``chat.history`` without ``__openclaw.runId``, no ``pendingInputs``, and a
        hello without ``bootId`` (nor ``uptimeMs``)."""
        self.release_2026_5 = False
        """Fail like 2026.5.12: a failing turn sends ``lifecycle`` ``error`` but no ``chat``
        error, and ``agent.wait`` then answers ``ok`` without a ``terminalReply``."""
        self.steer = False
        """Steer a ``chat.send`` into the session's streaming chat run (2026.9.6's default)."""
        self._steers: dict[str, list[tuple[str, str]]] = {}  # session -> [(runId, message)] to drain
        self.drop_queued = False
        """Queued messages are never run (a gateway that loses them)."""
        self._queued: dict[str, list[tuple[str, str]]] = {}  # session -> [(queued runId, message)]
        self.followups: list[tuple[str, str]] = []
        """``(queued runId, follow-up runId)`` of every follow-up turn started, in order."""

    # -- test controls -----------------------------------------------------------------

    def when(self, marker: str, script: RunScript) -> None:
        """Runs whose message contains ``marker`` follow ``script`` (first match wins)."""
        with self._lock:
            self._rules.append((marker, script))

    def release(self) -> None:
        """Let every paused or hanging run go on."""
        with self._lock:
            self._release_gen += 1

    @property
    def paused(self) -> int:
        """Runs waiting in a pause or a hang now."""
        with self._lock:
            return self._paused

    def queued(self, session_key: str | None = None) -> int:
        """Messages queued (in ``session_key``, or in all sessions) and not yet started."""
        with self._lock:
            if session_key is not None:
                return len(self._queued.get(session_key, []))
            return sum(len(q) for q in self._queued.values())

    def steering(self, session_key: str) -> int:
        """Messages waiting to be steered into ``session_key``'s running turn."""
        with self._lock:
            return len(self._steers.get(session_key, []))

    def started(self) -> int:
        with self._lock:
            return len(self._runs)

    def ids(self) -> list[str]:
        """The run ids, oldest first."""
        with self._lock:
            return list(self._runs)

    def text(self, run_id: str) -> str:
        """The reply text a run has streamed so far ("" for an unknown run)."""
        with self._lock:
            run = self._runs.get(run_id)
            return run.text if run is not None else ""

    def status(self, run_id: str) -> str | None:
        with self._lock:
            run = self._runs.get(run_id)
            return run.status if run is not None else None

    def _script_for(self, message: str) -> RunScript:
        with self._lock:
            for marker, script in self._rules:
                if marker in message:
                    return script
            return self.default

    def _notify(self) -> None:
        with self._cond:  # wakes DevGateway.wait_for() predicates
            self._cond.notify_all()

    def _lifetime(self) -> int:
        return self._server.lifetimes

    def _alive(self, run: _DevRun) -> bool:
        return self._server.running and self._server.lifetimes == run.lifetime and not self._server.closing

    # -- dispatch (called on the connection's thread; never blocks it) ------------------

    def handle(self, cs: _Conn, req_id: str, method: str, params: Any) -> None:
        p = params if isinstance(params, dict) else {}
        if method == "chat.send":
            self._chat_send(cs, req_id, p)
        elif method == "agent":
            self._agent(cs, req_id, p)
        elif method == "chat.abort":
            self._server.spawn("abort", self._abort, cs, req_id, p)
        elif method == "agent.wait":
            self._server.spawn("wait", self._wait, cs, req_id, p)
        elif method == "chat.history":
            self._chat_history(cs, req_id, p)

    def _invalid(self, cs: _Conn, req_id: str, message: str) -> None:
        self._server.send_res(cs, req_id, False, error_shape("INVALID_REQUEST", message))

    def _new_run(self, kind: str, key: str, session_key: str, message: str, limit_s: float | None,
                 *, queued_for: str | None = None) -> _DevRun:
        run = _DevRun(key, kind, session_key, message, self._script_for(message), self._lifetime(), limit_s,
                      queued_for=queued_for)
        with self._lock:
            self._runs[key] = run
        entry: dict[str, Any] = {"role": "user", "content": message, "timestamp": _now_ms(),
                                 "__openclaw": {"id": str(uuid.uuid4())}}
        if self.history_keys:
            entry["idempotencyKey"] = f"{queued_for or key}:user"
        self._record(session_key, entry)
        return run

    def _busy(self, session_key: str) -> bool:
        with self._lock:
            runs = [r for r in self._runs.values() if r.session_key == session_key and r.status == "running"]
            queued = bool(self._queued.get(session_key))
        return queued or any(self._alive(r) for r in runs)

    def _streaming_chat(self, session_key: str) -> bool:
        with self._lock:
            runs = [r for r in self._runs.values()
                    if r.session_key == session_key and r.kind == "chat" and r.status == "running"]
        return any(self._alive(r) for r in runs)

    def _take_steers(self, run: _DevRun) -> list[tuple[str, str]]:
        with self._lock:
            return self._steers.pop(run.session_key, [])

    def _enqueue(self, cs: _Conn, req_id: str, key: str, session_key: str, message: str) -> None:
        """A chat.send into a busy session: started, a final without a message, queued."""
        with self._lock:
            if not self.drop_queued:
                self._queued.setdefault(session_key, []).append((key, message))
        self._server.send_res(cs, req_id, True, {"runId": key, "status": "started"})
        self._server.broadcast("chat", {"runId": key, "sessionKey": session_key, "seq": 1, "state": "final"})

    def _next_followup(self, session_key: str) -> None:
        """Start the follow-up turn of the oldest queued message of ``session_key``."""
        with self._lock:
            queue = self._queued.get(session_key)
            if not queue:
                return
            queued_for, message = queue.pop(0)
            run_id = str(uuid.uuid4())
            self.followups.append((queued_for, run_id))
        run = self._new_run("chat", run_id, session_key, message, None, queued_for=queued_for)
        self._server.spawn("run", self._run, run)

    def _chat_send(self, cs: _Conn, req_id: str, p: dict[str, Any]) -> None:
        key, session_key, message = p.get("idempotencyKey"), p.get("sessionKey"), p.get("message")
        if not isinstance(session_key, str) or not session_key:
            self._invalid(cs, req_id, "SESSION_MUTATION_TARGET_REQUIRED")
            return
        if not isinstance(key, str) or not key or not isinstance(message, str):
            self._invalid(cs, req_id, "invalid chat.send params: idempotencyKey and message are required")
            return
        with self._lock:
            old = self._runs.get(key)
        if old is not None:
            status = "in_flight" if old.status == "running" and self._alive(old) else "ok"
            self._server.send_res(cs, req_id, True, {"runId": key, "status": status})
            return
        timeout_ms = p.get("timeoutMs")
        limit = timeout_ms / 1000 if isinstance(timeout_ms, (int, float)) and timeout_ms > 0 else None
        mode = p.get("queueMode")
        if mode is not None and self.release_2026_7:
            self._invalid(cs, req_id, "invalid chat.send params: at root: unexpected property 'queueMode'")
            return
        canonical = self._canonical(session_key)
        if self.steer and mode in (None, "steer") and self._streaming_chat(canonical):
            with self._lock:
                self._steers.setdefault(canonical, []).append((key, message))
            self._server.send_res(cs, req_id, True, {"runId": key, "status": "started"})
            return
        if (self.queue or self.steer) and self._busy(canonical):
            self._enqueue(cs, req_id, key, canonical, message)
            return
        run = self._new_run("chat", key, self._canonical(session_key), message, limit)
        self._server.send_res(cs, req_id, True, {"runId": key, "status": "started"})
        self._server.spawn("run", self._run, run)

    def _agent(self, cs: _Conn, req_id: str, p: dict[str, Any]) -> None:
        key, message = p.get("idempotencyKey"), p.get("message")
        if not isinstance(key, str) or not key or not isinstance(message, str):
            self._invalid(cs, req_id, "invalid agent params: idempotencyKey and message are required")
            return
        with self._lock:
            old = self._runs.get(key)
        if old is not None and old.ended.is_set():
            self._send_agent_final(cs, req_id, old)  # the cached final, no accepted frame
            return
        given = p.get("sessionKey")
        session_key = self._canonical(given) if isinstance(given, str) and given else f"agent:main:explicit:{key}"
        timeout = p.get("timeout")
        limit = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None
        run = self._new_run("agent", key, session_key, message, limit)
        run.answer_to = (cs, req_id)
        accepted = {"runId": key, "agentId": "main", "status": "accepted", "acceptedAt": _now_ms()}
        if isinstance(given, str) and given:
            accepted["sessionKey"] = session_key  # like the real gateway: only when one was given
        self._server.send_res(cs, req_id, True, accepted)
        self._server.spawn("run", self._run, run)

    @staticmethod
    def _canonical(session_key: str) -> str:
        return "agent:main:main" if session_key == "main" else session_key

    def _send_agent_final(self, cs: _Conn, req_id: str, run: _DevRun) -> None:
        if run.status == "ok":
            meta = {"durationMs": (run.ended_ms or 0) - run.started_ms}
            self._server.send_res(cs, req_id, True, {"runId": run.run_id, "status": "ok", "summary": "completed",
                                                  "result": {"payloads": [{"text": run.text}], "meta": meta}})
        elif run.status in ("aborted", "timeout"):
            body: dict[str, Any] = {"runId": run.run_id, "status": "timeout", "summary": "aborted"}
            if run.status == "aborted":
                body["stopReason"] = "rpc"
            self._server.send_res(cs, req_id, True, body)
        else:
            self._server.send(cs, {"type": "res", "id": req_id, "ok": False,
                                "payload": {"runId": run.run_id, "status": "error", "summary": run.error},
                                "error": error_shape("UNAVAILABLE", run.error or "failed")})

    def _abort(self, cs: _Conn, req_id: str, p: dict[str, Any]) -> None:
        session_key = p.get("sessionKey")
        if not isinstance(session_key, str) or not session_key:
            self._invalid(cs, req_id, "invalid chat.abort params: sessionKey is required")
            return
        wanted = p.get("runId")
        with self._lock:
            runs = [r for r in self._runs.values()
                    if r.session_key == self._canonical(session_key) and r.status == "running"
                    and (wanted is None or r.run_id == wanted)]
        runs = [r for r in runs if self._alive(r)]
        for run in runs:
            run.abort.set()
        for run in runs:
            run.ended.wait(2.0)  # the aborted event goes out before this answer
        self._server.send_res(cs, req_id, True, {"ok": True, "aborted": bool(runs), "runIds": [r.run_id for r in runs]})

    def _wait(self, cs: _Conn, req_id: str, p: dict[str, Any]) -> None:
        run_id = p.get("runId")
        if not isinstance(run_id, str) or not run_id:
            self._invalid(cs, req_id, "invalid agent.wait params: runId is required")
            return
        timeout_ms = p.get("timeoutMs")
        wait_s = timeout_ms / 1000 if isinstance(timeout_ms, (int, float)) and timeout_ms >= 0 else 30.0
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None and run.lifetime != self._lifetime():
            run = None  # a run of an earlier gateway process: unknown now
        deadline = time.monotonic() + wait_s
        while run is not None and not run.ended.is_set() and time.monotonic() < deadline:
            if cs.closed.wait(min(_TICK, max(0.0, deadline - time.monotonic()))):
                return
        if run is None or not run.ended.is_set():
            self._server.send_res(cs, req_id, True, {"runId": run_id, "status": "timeout"})
            return
        body: dict[str, Any] = {"runId": run_id, "startedAt": run.started_ms, "endedAt": run.ended_ms}
        if run.status == "ok":
            body.update(status="ok", stopReason="stop", terminalReply={"disposition": "visible", "text": run.text})
        elif run.status == "aborted":
            body.update(status="error", error="aborted", stopReason="rpc")
        elif run.status == "timeout":
            body.update(status="timeout")
        elif self.release_2026_5:
            body.update(status="ok")  # 2026.5.12: "ok", and no terminalReply
        else:
            body.update(status="error", error=run.error)
        self._server.send_res(cs, req_id, True, body)

    def _chat_history(self, cs: _Conn, req_id: str, p: dict[str, Any]) -> None:
        session_key = p.get("sessionKey")
        if not isinstance(session_key, str) or not session_key:
            self._invalid(cs, req_id, "invalid chat.history params: sessionKey is required")
            return
        limit = p.get("limit")
        canonical = self._canonical(session_key)
        cursor = p.get("cursor")
        if cursor is not None and not self.cursors:
            self._invalid(cs, req_id, "invalid chat.history params: at root: unexpected property 'cursor'")
            return
        if cursor is not None:
            self._history_delta(cs, req_id, canonical, cursor)
            return
        with self._lock:
            self.history_reads["tail"] += 1
            messages = list(self._history.get(canonical, []))
            queued = list(self._queued.get(canonical, [])) + list(self._steers.get(canonical, []))
            active = any(r.session_key == canonical and r.status == "running" and self._alive(r)
                         for r in self._runs.values())
        if isinstance(limit, int) and limit > 0:
            messages = messages[-limit:]
        pending = [{"id": f"pending:{rid}", "state": "queued", "message": {"role": "user", "content": text}}
                   for rid, text in queued]
        body: dict[str, Any] = {"sessionKey": canonical, "messages": messages, "hasMore": False,
                                "totalMessages": len(messages), "sessionInfo": {"hasActiveRun": active},
                                "pendingInputs": {"items": pending, "total": len(pending)}}
        if self.release_2026_7:
            del body["pendingInputs"]
        if self.cursors:
            body["deltaCursor"] = f"{canonical}#{self._total(canonical)}"
        with self._lock:
            flying = [r for r in self._runs.values()
                      if r.session_key == canonical and r.status == "running" and self._alive(r)]
        if flying:  # the text streamed so far (2026.9's resync after a reconnect)
            body["inFlightRun"] = {"runId": flying[0].run_id, "text": flying[0].text,
                                   "startedAt": flying[0].started_ms}
        self._server.send_res(cs, req_id, True, body)

    def _total(self, session_key: str) -> int:
        with self._lock:
            return len(self._history.get(session_key, []))

    def _history_delta(self, cs: _Conn, req_id: str, canonical: str, cursor: Any) -> None:
        """A cursor read: the messages after the cursor, or ``reset`` for a stale one."""
        session, _, count = cursor.rpartition("#") if isinstance(cursor, str) else ("", "", "")
        with self._lock:
            history = self._history.get(canonical, [])
            ok = session == canonical and count.isdigit() and int(count) <= len(history)
            new = list(history[int(count):]) if ok else []
            active = any(r.session_key == canonical and r.status == "running" and self._alive(r)
                         for r in self._runs.values())
            self.history_reads["delta" if ok else "reset"] += 1
            total = len(history)
        if not ok:
            self._server.send_res(cs, req_id, True, {"kind": "reset"})
            return
        self._server.send_res(cs, req_id, True, {"kind": "delta", "messages": new,
                                                 "deltaCursor": f"{canonical}#{total}",
                                              "sessionInfo": {"hasActiveRun": active}})

    def _record(self, session_key: str, message: dict[str, Any]) -> None:
        with self._lock:
            self._history.setdefault(session_key, []).append(message)

    # -- the run thread --------------------------------------------------------------------

    def _run(self, run: _DevRun) -> None:
        try:
            outcome = self._stream(run)
        except _Gone:
            outcome = "lost"
        self._end(run, outcome)

    def _agent_ev(self, run: _DevRun, stream: str, data: dict[str, Any]) -> None:
        run.seq += 1
        if stream == "lifecycle" and run.queued_for is not None and not self.release_2026_7:
            data = {**data, "completionSource": "reply-dispatch"}
        self._server.broadcast("agent", {"runId": run.run_id, "stream": stream, "data": data,
                                     "sessionKey": run.session_key, "agentId": "main", "seq": run.seq,
                                     "ts": _now_ms(), "isHeartbeat": False})

    def _chat_ev(self, run: _DevRun, state: str, **fields: Any) -> None:
        payload = {"runId": run.run_id, "sessionKey": run.session_key, "agentId": "main", "seq": run.seq,
                   "state": state, **fields}
        self._server.broadcast("chat", payload)

    def _message(self, text: str) -> dict[str, Any]:
        return {"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": _now_ms()}

    def _pause(self, run: _DevRun, seconds: float | None, deadline: float | None) -> str | None:
        """Wait ``seconds`` (None: until released); returns why it stopped early
        (``aborted``, ``timeout``) or None.  Raises _Gone when the gateway went away."""
        with self._lock:
            gen = self._release_gen
            if seconds is None:
                self._paused += 1
        self._notify()
        try:
            end = None if seconds is None else time.monotonic() + seconds
            while True:
                if not self._alive(run):
                    raise _Gone
                if run.abort.is_set():
                    return "aborted"
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return "timeout"
                if end is not None and now >= end:
                    return None
                with self._lock:
                    if seconds is None and self._release_gen != gen:
                        return None
                run.abort.wait(_TICK)
        finally:
            if seconds is None:
                with self._lock:
                    self._paused -= 1
                self._notify()

    def _stream(self, run: _DevRun) -> str:
        script = run.script
        deadline = None if run.limit_s is None else time.monotonic() + run.limit_s
        if run.kind == "chat":
            for phase in ("preparing_workspace", "preparing_context"):
                self._agent_ev(run, "run_status", {"phase": phase})
                self._chat_ev(run, "status", phase=phase)
        self._agent_ev(run, "lifecycle", {"phase": "start", "startedAt": run.started_ms})
        if run.kind == "chat":
            self._agent_ev(run, "run_status", {"phase": "starting_model"})
            self._chat_ev(run, "status", phase="starting_model")
        self._agent_ev(run, "lifecycle", {"phase": "model", "provider": "dev", "model": "dev-model"})
        reply = script.reply if script.reply is not None else f"ECHO: {run.message}"
        words = _words(reply)
        if script.hang:
            why = self._pause(run, None, deadline)
            if why is not None:
                return self._stop(run, why)
        items: list[str] = []  # the turn's assistant messages (more than one when steered)
        while True:
            pending, why = self._stream_item(run, words, script, deadline, items)
            if why is not None:
                return self._stop(run, why)
            steers = self._take_steers(run)
            if not steers:
                break
            # A model boundary: the steered messages are drained, all together.
            if pending:
                self._chat_ev(run, "delta", deltaText=pending,
                              **({"message": self._message(run.text)} if script.cumulative else {}))
            self._record(run.session_key, {**self._message(items[-1]), "stopReason": "stop",
                                           "__openclaw": {"runId": run.run_id, "id": str(uuid.uuid4())}})
            for steered, message in steers:
                self._record(run.session_key, {
                    "role": "user", "content": message, "timestamp": _now_ms(),
                    "idempotencyKey": f"{steered}:user",
                    "__openclaw": {"id": str(uuid.uuid4()), "steerTargetRunId": run.run_id}})
                self._server.broadcast("chat", {"runId": steered, "sessionKey": run.session_key, "seq": 1,
                                                "state": "final"})
            self._agent_ev(run, "lifecycle", {"phase": "model", "provider": "dev", "model": "dev-model"})
            last_message = steers[-1][1]
            script = self._script_for(last_message)
            words = _words(script.reply if script.reply is not None else f"ECHO: {last_message}")
        self._agent_ev(run, "usage", {"outputTokens": len(words)})
        self._agent_ev(run, "lifecycle", {"phase": "finishing", "stopReason": "stop", "aborted": False})
        self._agent_ev(run, "lifecycle", {"phase": "end", "stopReason": "stop", "aborted": False,
                                          "startedAt": run.started_ms, "endedAt": _now_ms()})
        run.seq += 1
        if pending:
            self._chat_ev(run, "delta", deltaText=pending,
                          **({"message": self._message(run.text)} if script.cumulative else {}))
        run.status = "ok"
        meta = {"id": str(uuid.uuid4())} if self.release_2026_7 else {"runId": run.run_id, "id": str(uuid.uuid4())}
        self._record(run.session_key, {**self._message(items[-1]), "stopReason": "stop", "__openclaw": meta})
        self._chat_ev(run, "final", stopReason="stop", message=self._message(run.text))
        return "ok"

    def _stream_item(self, run: _DevRun, words: list[str], script: RunScript, deadline: float | None,
                     items: list[str]) -> tuple[str, str | None]:
        """Stream one assistant message of ``run`` (appended to ``items``) word by word:
        ``(chat delta text not sent yet, why it stopped early or None)``."""
        items.append("")
        number = len(items)
        pending = "\n\n" if number > 1 else ""  # the turn's chat text joins its messages
        for i, word in enumerate(words):
            if script.fail is not None and i >= script.fail_after:
                return "", "error"
            if (script.pause_after is not None and i == script.pause_after) or i in script.pauses:
                why = self._pause(run, None, deadline)
                if why is not None:
                    return "", why
            if i and script.delay:
                why = self._pause(run, script.delay, deadline)
                if why is not None:
                    return "", why
            elif run.abort.is_set():
                return "", "aborted"
            items[-1] += word
            run.text = "\n\n".join(items)
            self._agent_ev(run, "assistant", {"text": items[-1], "delta": word, "itemId": f"{run.run_id}:{number}"})
            pending += word
            last = i == len(words) - 1
            if last and script.early_end:
                break  # the last chat delta follows lifecycle/end (or the model boundary)
            if script.merge and not last and i % 2 == 0:
                continue  # merged into the next delta: the payload seq skips one
            self._chat_ev(run, "delta", deltaText=pending,
                          **({"message": self._message(run.text)} if script.cumulative else {}))
            pending = ""
        if script.fail is not None:
            return "", "error"
        return pending, None

    def _stop(self, run: _DevRun, why: str) -> str:
        """End a run early: ``aborted``, ``timeout`` or ``error`` (the script's failure)."""
        if why == "aborted":
            run.status = "aborted"
            run.seq += 1
            self._chat_ev(run, "aborted", stopReason="rpc", message=self._message(run.text))
            self._agent_ev(run, "lifecycle", {"phase": "end", "status": "cancelled", "aborted": True,
                                              "stopReason": "rpc"})
            self._agent_ev(run, "lifecycle", {"phase": "error", "error": "This operation was aborted",
                                              "aborted": True, "stopReason": "aborted"})
            return "aborted"
        kind: str | None
        if why == "timeout":
            message, kind = "Request timed out before a response was generated.", "timeout"
            run.status = "timeout"
        else:
            message, kind = run.script.fail or "failed", run.script.error_kind
            run.status = "error"
        run.error = message
        self._agent_ev(run, "lifecycle", {"phase": "error", "error": message, "aborted": False})
        fields: dict[str, Any] = {"errorMessage": message}
        if kind:
            fields["errorKind"] = kind
        if not self.release_2026_5:
            self._chat_ev(run, "error", **fields)
        if run.kind == "chat" and run.script.duplicate_error and not self.release_2026_5:
            self._server.broadcast("chat", {"runId": run.run_id, "sessionKey": run.session_key, "seq": 1,
                                        "state": "error", "errorMessage": f"⚠️ Agent failed before reply: {message}"})
        self._record(run.session_key, {**self._message("The agent run failed before producing a reply."),
                                       "stopReason": "error",
                                       "__openclaw": {"runId": run.run_id, "id": str(uuid.uuid4())}})
        return run.status

    def _end(self, run: _DevRun, outcome: str) -> None:
        run.ended_ms = _now_ms()
        if outcome == "lost":
            run.status = "lost"
        run.ended.set()
        self._notify()
        with self._lock:
            orphans = self._steers.pop(run.session_key, []) if run.kind == "chat" else []
            if outcome == "lost":
                orphans = []  # they die with the gateway process, like the run
            elif not self.drop_queued:
                self._queued.setdefault(run.session_key, []).extend(orphans)
        for steered, _message in orphans:  # not drained in time: they wait for a turn of their own
            self._server.broadcast("chat", {"runId": steered, "sessionKey": run.session_key, "seq": 1,
                                            "state": "final"})
        if outcome != "lost":
            self._next_followup(run.session_key)
        target = run.answer_to
        if target is not None and outcome != "lost":
            cs, req_id = target
            if not cs.closed.is_set():
                self._send_agent_final(cs, req_id, run)


class _Gone(Exception):
    """The gateway stopped or restarted under a run."""


def _words(text: str) -> list[str]:
    """``"ECHO: a b"`` -> ``["ECHO:", " a", " b"]``."""
    out: list[str] = []
    for i, part in enumerate(text.split(" ")):
        out.append(part if i == 0 else " " + part)
    return [w for w in out if w] or [text]

