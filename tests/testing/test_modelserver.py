"""ModelServer on its own: the SSE it streams for both OpenAI APIs, the behaviours, the
counters and a clean stop.  (With the real gateway: test_runs_real.py.)"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from gwclient.testing import HANG, ModelServer, fail, slow
from gwclient.testing._modelserver import user_text


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


def post(model: ModelServer, path: str, body: dict[str, Any]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", model.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def sse_data(text: str) -> list[Any]:
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


CHAT = {"model": "fake-model", "stream": True, "messages": [
    {"role": "system", "content": "you are a test"},
    {"role": "user", "content": "[Sun 2026-11-29 17:41 UTC] hello model\n\nRuntime: agent=main | x=y"},
    {"role": "user", "content": [{"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\nstuff"}]}]}


def test_chat_completions_stream_the_echo_word_by_word(model: ModelServer) -> None:
    status, body = post(model, "/v1/chat/completions", CHAT)
    assert status == 200
    events = sse_data(body)
    assert events[-1] == "[DONE]"
    words = [e["choices"][0]["delta"].get("content") for e in events[:-1] if e["choices"]]
    words = [w for w in words if w]
    assert words == ["ECHO:", " hello", " model"]
    assert events[-2]["usage"]["completion_tokens"] == 3
    assert model.counts == {"/v1/chat/completions": 1} and model.requests[0].text == "hello model"


def test_responses_api_streams_deltas_and_completes(model: ModelServer) -> None:
    body = {"model": "fake-model", "stream": True,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "via responses"}]}]}
    status, text = post(model, "/v1/responses", body)
    events = sse_data(text)
    assert status == 200
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "ECHO: via responses"
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["status"] == "completed"


def test_models_list(model: ModelServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", model.port, timeout=10)
    conn.request("GET", "/v1/models")
    data = json.loads(conn.getresponse().read())
    conn.close()
    assert data["data"][0]["id"] == "fake-model"


def test_failures_by_marker(model: ModelServer) -> None:
    model.when("BAD", fail(400))
    model.when("DOWN", fail(500))
    assert post(model, "/v1/chat/completions", {"messages": [{"role": "user", "content": "BAD"}]})[0] == 400
    assert post(model, "/v1/chat/completions", {"messages": [{"role": "user", "content": "DOWN"}]})[0] == 500
    assert post(model, "/v1/chat/completions", {"messages": [{"role": "user", "content": "fine"}]})[0] == 200
    model.reset(fail(500))
    assert post(model, "/v1/chat/completions", {"messages": [{"role": "user", "content": "BAD"}]})[0] == 500


def test_hang_until_released(model: ModelServer) -> None:
    model.reset(HANG)
    got: Future[tuple[int, str]] = Future()
    threading.Thread(target=lambda: got.set_result(
        post(model, "/v1/chat/completions", {"messages": [{"role": "user", "content": "wait"}]}))).start()
    assert model.wait_hanging(1, timeout=10)
    assert not got.done() and model.active == 1
    model.release()
    status, body = got.result(10)
    assert status == 200 and "ECHO:" in body
    assert model.wait_for(lambda m: m.active == 0, timeout=10)


def test_a_hanging_request_ends_when_the_client_leaves(model: ModelServer) -> None:
    model.reset(HANG)
    sock = socket.create_connection(("127.0.0.1", model.port), timeout=10)
    payload = json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    assert model.wait_hanging(1, timeout=10)
    sock.close()
    assert model.wait_for(lambda m: m.active == 0, timeout=10)


def test_slow_streams_with_pauses(model: ModelServer) -> None:
    model.reset(slow(0.05))
    status, body = post(model, "/v1/chat/completions", {"messages": [{"role": "user", "content": "a b c"}]})
    assert status == 200 and len([e for e in sse_data(body) if e != "[DONE]" and e["choices"]]) >= 4


def test_idle_connections_are_closed_on_request(model: ModelServer) -> None:
    sock = socket.create_connection(("127.0.0.1", model.port), timeout=10)
    try:
        assert model.wait_for(lambda m: m.idle == 1, timeout=10)
        assert model.close_idle() == 1
        assert sock.recv(1) == b""  # the server closed it
    finally:
        sock.close()


def test_gateway_config_and_agent_settings(model: ModelServer, tmp_path: Any) -> None:
    cfg = model.gateway_config()
    assert cfg["agents"]["defaults"]["model"]["primary"] == "fake/fake-model"
    providers = cfg["models"]["providers"]
    assert providers["fake"]["baseUrl"] == model.base_url == f"http://127.0.0.1:{model.port}/v1"
    assert providers["fake"]["api"] == "openai-completions" and providers["fakeresp"]["api"] == "openai-responses"
    path = ModelServer.write_agent_settings(tmp_path)
    assert path == tmp_path / "agents" / "main" / "agent" / "settings.json"
    assert json.loads(path.read_text()) == {"retry": {"provider": {"maxRetries": 0}}}


def test_user_text_strips_what_the_gateway_adds() -> None:
    assert user_text(CHAT) == "hello model"
    assert user_text({"input": "[Mon 2026-11-30 09:00 UTC] plain"}) == "plain"
    assert user_text({}) == ""
