"""A local OpenAI-compatible model server, so a real gateway can run agent turns offline.

The real gateway cannot reach a model provider from a test machine, and its npm build ships
no mock provider; it does accept a custom OpenAI-compatible provider whose ``baseUrl`` is a
local HTTP server.  :class:`ModelServer` is that server: stdlib ``http.server`` on
``127.0.0.1`` port 0, in one thread of its own, streaming SSE for
``POST /v1/chat/completions`` (``api: "openai-completions"``) and ``POST /v1/responses``
(``api: "openai-responses"``), and answering ``GET /v1/models``.

What the reply is depends on a :class:`Behaviour` a test chooses, for every request
(:attr:`ModelServer.default`) or for requests whose user message contains a marker
(:meth:`ModelServer.when`)::

    ECHO        stream "ECHO: <user message>" word by word
    slow(0.5)   the same, one word every 0.5 s
    fail(500)   answer HTTP 500 (fail(400): HTTP 400, a rejected request)
    HANG        send nothing until release() (then echo) or until the client goes away

The gateway prefixes the user's text with a timestamp (``[Sun 2026-11-29 16:28 UTC] ``),
appends a ``\n\nRuntime: agent=...`` line to the first turn of a session, and adds a
trailing user message holding ``<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>``; all three are
removed before echoing, so ``chat("hi")`` is answered ``ECHO: hi``.

Every connection is closed after its response (no keep-alive), so no handler thread or
socket outlives a request.  The gateway also opens connections *ahead* of its next request
and leaves them idle; :meth:`ModelServer.close_idle` closes those (a test calls it before
the leak checker looks), and an idle connection is dropped after ``idle_timeout`` anyway.

:meth:`ModelServer.gateway_config` is the ``openclaw.json`` snippet to pass as
``RealGateway(config=...)``; :meth:`ModelServer.write_agent_settings` writes the embedded
runtime's ``settings.json`` that turns provider retries off (a failing model then fails a
run in about a second instead of after 67-85 s of retries).

The file reads top-down: the behaviours and the user-text extraction, the HTTP request
handler that streams the replies (it reports to its :class:`ModelServer`), the server.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from gwclient.testing._openclaw_install import openclaw_version

__all__ = ["ECHO", "HANG", "UTILITY_MODEL_SINCE", "Behaviour", "ModelRequest", "ModelServer", "fail", "slow",
           "user_text"]

#: The oldest release known to accept ``agents.defaults.utilityModel`` (2026.5.12 refuses
#: it; 2026.7.1 and later accept it).
UTILITY_MODEL_SINCE = "2026.7.1"


def _release(version: str) -> tuple[int, ...]:
    """``"2026.7.1"`` -> ``(2026, 7, 1)`` (a pre-release suffix is ignored)."""
    return tuple(int(part) for part in version.split("-", 1)[0].split(".")[:3] if part.isdigit())

_INTERNAL_MARK = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
_TIMESTAMP = re.compile(r"^\[[^\]\n]{6,60}\]\s*")
# 2026.5.12 puts the sender before a chat.send message's timestamp:
# "Sender (untrusted metadata):\n```json\n{...}\n```\n\n[Tue 2026-12-01 20:09 UTC] hi".
_SENDER = re.compile(r"\ASender \(untrusted metadata\):\n```json\n.*?\n```\s*", re.S)
_WORD = re.compile(r"\s*\S+")
_RUNTIME = re.compile(r"\n\nRuntime: agent=.*\Z", re.S)


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one request.

    ``kind`` is ``"echo"``, ``"fail"`` or ``"hang"``; ``delay`` is the pause before each
    streamed word after the first (echo); ``status`` the HTTP status of a failure."""

    kind: str = "echo"
    delay: float = 0.0
    status: int = 500
    prefix: str = "ECHO: "

    def __post_init__(self) -> None:
        if self.kind not in ("echo", "fail", "hang"):
            raise ValueError(f"unknown behaviour {self.kind!r}")


ECHO = Behaviour("echo")
HANG = Behaviour("hang")


def slow(delay: float) -> Behaviour:
    """Echo word by word with ``delay`` seconds between words."""
    return Behaviour("echo", delay=delay)


def fail(status: int = 500) -> Behaviour:
    """Answer every request with HTTP ``status`` (500: a server error, 400: rejected)."""
    return Behaviour("fail", status=status)


@dataclass(frozen=True)
class ModelRequest:
    """One request the server received (``path``, the user text it extracted, the body)."""

    path: str
    text: str
    body: dict[str, Any]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def user_text(body: dict[str, Any]) -> str:
    """The last real user message of a chat-completions or responses request body."""
    items = body.get("messages")
    if not isinstance(items, list):
        items = body.get("input")
    if isinstance(items, str):
        return _TIMESTAMP.sub("", _SENDER.sub("", items, count=1), count=1).strip()
    texts: list[str] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("role") == "user":
            text = _content_text(item.get("content"))
            if _INTERNAL_MARK not in text:
                texts.append(text)
    if not texts:
        return ""
    return _RUNTIME.sub("", _TIMESTAMP.sub("", _SENDER.sub("", texts[-1], count=1), count=1)).strip()


def _words(text: str) -> list[str]:
    """``"ECHO: a b"`` -> ``["ECHO:", " a", " b"]`` (joined back, they are the text)."""
    return _WORD.findall(text) or [text]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.model.idle_timeout)  # waiting for the request
        self.server.model._idle_add(self.connection)

    def parse_request(self) -> bool:
        self.server.model._idle_discard(self.connection)
        self.connection.settimeout(None)  # streaming and hanging answers have no time limit
        return super().parse_request()

    def finish(self) -> None:
        self.server.model._idle_discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean

    # -- plumbing ------------------------------------------------------------------------

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _sse(self, obj: Any, event: str | None = None) -> None:
        head = f"event: {event}\n" if event else ""
        self.wfile.write(f"{head}data: {json.dumps(obj)}\n\n".encode())
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """True when the peer closed its end (a readable socket with nothing to read)."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            if not ready:
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (or until the server stops); False if the client went away."""
        deadline = time.monotonic() + seconds
        while True:
            if self._client_gone():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self.server.model.stopping.wait(min(remaining, 0.05)):
                return False

    # -- routes --------------------------------------------------------------------------

    def do_GET(self) -> None:
        model = self.server.model
        model._count(self.path, None)
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": model.model_id, "object": "model", "created": 0, "owned_by": "gwclient"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        model = self.server.model
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        text = user_text(body)
        path = self.path.split("?", 1)[0].rstrip("/")
        record = ModelRequest(path, text, body)
        behaviour = model.behaviour_for(text)
        model._count(path, record)
        try:
            if not (path.endswith("/chat/completions") or path.endswith("/responses")):
                self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                return
            if behaviour.kind == "fail":
                kind = "invalid_request_error" if behaviour.status < 500 else "server_error"
                self._send_json(behaviour.status, {"error": {
                    "message": f"fake model failure ({behaviour.status})", "type": kind, "code": None}})
                return
            if behaviour.kind == "hang" and not model._hang(self):
                return
            reply = behaviour.prefix + text
            if path.endswith("/responses"):
                self._stream_responses(reply, behaviour)
            else:
                self._stream_completions(reply, behaviour)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway gave up on this request (abort, timeout)
        finally:
            model._finished()

    def _stream_completions(self, reply: str, behaviour: Behaviour) -> None:
        model = self.server.model
        rid = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": model.model_id,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        self._start_sse()
        words = _words(reply)
        for i, word in enumerate(words):
            if i and behaviour.delay and not self._pause(behaviour.delay):
                return
            delta: dict[str, Any] = {"content": word}
            if i == 0:
                delta["role"] = "assistant"
            self._sse(chunk(delta))
            model._word()
        self._sse(chunk({}, "stop"))
        self._sse({"id": rid, "object": "chat.completion.chunk", "created": created,
                   "model": model.model_id, "choices": [],
                   "usage": {"prompt_tokens": 10, "completion_tokens": len(words),
                             "total_tokens": 10 + len(words)}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _stream_responses(self, reply: str, behaviour: Behaviour) -> None:
        model = self.server.model
        resp_id = f"resp_{uuid.uuid4().hex[:16]}"
        item_id = f"msg_{uuid.uuid4().hex[:16]}"
        base = {"id": resp_id, "object": "response", "created_at": int(time.time()),
                "model": model.model_id, "output": []}
        self._start_sse()
        self._sse({"type": "response.created", "response": {**base, "status": "in_progress"}},
                  "response.created")
        item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        self._sse({"type": "response.output_item.added", "output_index": 0, "item": item},
                  "response.output_item.added")
        self._sse({"type": "response.content_part.added", "item_id": item_id, "output_index": 0,
                   "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
                  "response.content_part.added")
        words = _words(reply)
        for i, word in enumerate(words):
            if i and behaviour.delay and not self._pause(behaviour.delay):
                return
            self._sse({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                       "content_index": 0, "delta": word}, "response.output_text.delta")
            self.server.model._word()
        part = {"type": "output_text", "text": reply, "annotations": []}
        self._sse({"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
                   "content_index": 0, "text": reply}, "response.output_text.done")
        self._sse({"type": "response.content_part.done", "item_id": item_id, "output_index": 0,
                   "content_index": 0, "part": part}, "response.content_part.done")
        done_item = {**item, "status": "completed", "content": [part]}
        self._sse({"type": "response.output_item.done", "output_index": 0, "item": done_item},
                  "response.output_item.done")
        usage = {"input_tokens": 10, "output_tokens": len(words), "total_tokens": 10 + len(words)}
        self._sse({"type": "response.completed", "response": {
            **base, "status": "completed", "output": [done_item], "usage": usage}}, "response.completed")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins the handler threads
    model: ModelServer


class ModelServer:
    """A fake OpenAI-compatible model on ``127.0.0.1`` (see the module docstring).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.  Thread-safe:
    the behaviour may be changed while requests are served.
    """

    def __init__(self, *, default: Behaviour = ECHO, model_id: str = "fake-model",
                 idle_timeout: float = 30.0) -> None:
        self.default = default
        self.model_id = model_id
        self.idle_timeout = idle_timeout
        self._idle: set[socket.socket] = set()
        self.stopping = threading.Event()
        self._rules: list[tuple[str, Behaviour]] = []
        self._lock = threading.Condition()
        self._counts: Counter[str] = Counter()
        self._requests: list[ModelRequest] = []
        self._active = 0
        self._hanging = 0
        self._words = 0
        self._release_gen = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> ModelServer:
        if self._server is not None:
            return self
        self.stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.model = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="modelserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: hanging and slow requests end, every handler thread is joined."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        with self._lock:
            self._lock.notify_all()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the model server is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the provider's ``baseUrl``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- behaviour -----------------------------------------------------------------------

    def when(self, marker: str, behaviour: Behaviour) -> None:
        """Answer requests whose user message contains ``marker`` with ``behaviour`` (the
        first matching rule wins; other requests get :attr:`default`)."""
        with self._lock:
            self._rules.append((marker, behaviour))

    def reset(self, default: Behaviour = ECHO) -> None:
        """Forget the rules and set the default behaviour (counters are kept)."""
        with self._lock:
            self._rules.clear()
            self.default = default

    def behaviour_for(self, text: str) -> Behaviour:
        with self._lock:
            for marker, behaviour in self._rules:
                if marker in text:
                    return behaviour
            return self.default

    def release(self) -> None:
        """Let every request hanging now go on (it then echoes)."""
        with self._lock:
            self._release_gen += 1
            self._lock.notify_all()

    def _hang(self, handler: _Handler) -> bool:
        """Block a HANG request until release(), stop() or the client leaving; True when
        released (go on and answer)."""
        with self._lock:
            gen = self._release_gen
            self._hanging += 1
            self._lock.notify_all()
            try:
                while True:
                    if self._release_gen != gen:
                        return True
                    if self.stopping.is_set():
                        return False
                    self._lock.wait(0.05)
                    if handler._client_gone():
                        return False
            finally:
                self._hanging -= 1
                self._lock.notify_all()

    # -- idle connections ----------------------------------------------------------------

    def _idle_add(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.add(sock)
            self._lock.notify_all()

    def _idle_discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.discard(sock)
            self._lock.notify_all()

    @property
    def idle(self) -> int:
        """Connections open with no request on them yet."""
        with self._lock:
            return len(self._idle)

    def close_idle(self) -> int:
        """Close the connections on which no request has arrived yet (their handler threads
        then end); returns how many.  Call it when no request is expected."""
        with self._lock:
            idle, self._idle = self._idle, set()
        for sock in idle:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(idle)

    # -- counters ------------------------------------------------------------------------

    def _count(self, path: str, record: ModelRequest | None) -> None:
        with self._lock:
            self._counts[path] += 1
            if record is not None:
                self._requests.append(record)
                self._active += 1
            self._lock.notify_all()

    def _word(self) -> None:
        with self._lock:
            self._words += 1
            self._lock.notify_all()

    @property
    def words(self) -> int:
        """Reply words streamed so far (every request, both APIs)."""
        with self._lock:
            return self._words

    def _finished(self) -> None:
        with self._lock:
            self._active -= 1
            self._lock.notify_all()

    @property
    def counts(self) -> dict[str, int]:
        """Requests received so far, by path (``/v1/chat/completions``...)."""
        with self._lock:
            return dict(self._counts)

    @property
    def requests(self) -> list[ModelRequest]:
        """Every model request (POST) received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def total(self) -> int:
        """How many model requests (POST) arrived so far."""
        with self._lock:
            return len(self._requests)

    @property
    def active(self) -> int:
        """Model requests being answered now."""
        with self._lock:
            return self._active

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        """Wait until ``predicate(self)`` holds (checked whenever a counter changes)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def wait_hanging(self, n: int = 1, timeout: float = 30.0) -> bool:
        """Wait until ``n`` requests are hanging."""
        return self.wait_for(lambda s: s._hanging >= n, timeout)

    def __iter__(self) -> Iterator[ModelRequest]:
        return iter(self.requests)

    # -- gateway config ------------------------------------------------------------------

    def gateway_config(self, *, provider: str = "fake", timeout_seconds: int = 30,
                       version: str | None = None) -> dict[str, Any]:
        """The ``openclaw.json`` snippet (pass it as ``RealGateway(config=...)``) that makes
        this server the gateway's only model: ``<provider>/<model_id>`` over chat
        completions, and ``<provider>resp/<model_id>`` over the Responses API (pick it per
        turn with the ``agent`` param ``model="<provider>resp/<model_id>"``).

        The snippet is one that openclaw ``version`` accepts (default: the release the
        real-gateway helper runs, ``$GWCLIENT_OPENCLAW_VERSION`` or the pinned one): the
        ``agents.defaults.utilityModel: ""`` that turns utility-model calls off is written
        only from :data:`UTILITY_MODEL_SINCE` on (2026.5.12 refuses the key, so its gateway
        would not start)."""

        def entry(api: str, name: str) -> dict[str, Any]:
            return {
                "baseUrl": self.base_url, "apiKey": "fake-local", "api": api,
                "timeoutSeconds": timeout_seconds,
                "models": [{"id": self.model_id, "name": name, "reasoning": False, "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000, "maxTokens": 4096}],
            }

        defaults: dict[str, Any] = {"model": {"primary": f"{provider}/{self.model_id}"}}
        if _release(version or openclaw_version()) >= _release(UTILITY_MODEL_SINCE):
            defaults["utilityModel"] = ""
        return {
            "agents": {"defaults": defaults},
            "models": {"mode": "replace", "providers": {
                provider: entry("openai-completions", "Fake Model"),
                f"{provider}resp": entry("openai-responses", "Fake Model (responses)"),
            }},
        }

    @staticmethod
    def write_agent_settings(state_dir: str | Path, *, max_retries: int = 0, agent_id: str = "main") -> Path:
        """Write ``<state_dir>/agents/<agent>/agent/settings.json`` with provider retries set
        to ``max_retries`` (the embedded runtime reads it per run; no restart needed).
        ``state_dir`` is the gateway's ``$HOME/.openclaw`` (``RealGateway.state_dir``)."""
        path = Path(state_dir) / "agents" / agent_id / "agent" / "settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"retry": {"provider": {"maxRetries": max_retries}}}) + "\n", encoding="utf-8")
        return path
