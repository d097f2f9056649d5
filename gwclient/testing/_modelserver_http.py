"""The HTTP side of :class:`gwclient.testing.ModelServer`: the behaviours (:data:`ECHO`,
:func:`slow`, :func:`fail`, :data:`HANG`), the user-text extraction and the request
handler that streams the replies (see :mod:`gwclient.testing._modelserver`)."""

from __future__ import annotations

import json
import re
import select
import socket
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gwclient.testing._modelserver import ModelServer

__all__ = ["ECHO", "HANG", "Behaviour", "ModelRequest", "fail", "slow", "user_text"]

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
