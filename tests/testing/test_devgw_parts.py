"""The dev gateway's parts alone (each owns its state and is built from what it needs):
the websocket server with a protocol that is not OpenClaw's, the injected faults and the
request recorder, with plain asserts."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import websocket

from gwclient.testing._devgw_controls import Faults
from gwclient.testing._devgw_recorder import Recorder
from gwclient.testing._devgw_server import GatewayServer, _Conn

WAIT = 10.0


def test_the_server_runs_whatever_protocol_it_is_handed() -> None:
    cond = threading.Condition(threading.RLock())

    def serve(cs: _Conn) -> None:  # an echo protocol: every connection is "handshaken" at once
        with cond:
            cs.handshaken = True
            cond.notify_all()
        while True:
            server.send(cs, {"echo": json.loads(cs.ws.recv())})

    server = GatewayServer(serve=serve, cond=cond, host="127.0.0.1", port=0, tick_interval_ms=600_000,
                           ping_interval=None, close_timeout=1.0)
    server.start()
    try:
        client = websocket.create_connection(server.url, suppress_origin=True, timeout=WAIT)
        try:
            client.send(json.dumps({"n": 1}))
            assert json.loads(client.recv()) == {"echo": {"n": 1}}
            assert server.handshaken_connections == 1
            assert server.broadcast("hello", {"x": 1}) == 1
            assert json.loads(client.recv()) == {"type": "event", "event": "hello", "payload": {"x": 1}, "seq": 1}
            assert (server.sockets_accepted, server.lifetimes, server.running) == (1, 1, True)
        finally:
            client.close()
        with cond:
            assert cond.wait_for(lambda: server.open_sockets == 0, WAIT)
    finally:
        server.stop()
    assert not server.running
    assert not [t.name for t in threading.enumerate() if t.name.startswith("devgw-")]


def test_faults_are_asked_by_method_and_consumed_in_order() -> None:
    faults = Faults()
    assert faults.plan("status") == (True, 0.0) and faults.next_rejection() is None

    faults.set_method_delay("status", 0.5)
    faults.never_answer("health")
    faults.reject_next_unavailable(1, retry_after_ms=100)
    faults.reject_next_connects(1, code="AUTH", message="no", respond=False, close_code=4001)

    assert faults.plan("status") == (True, 0.5) and faults.plan("health") == (False, 0.0)
    first, second = faults.next_rejection(), faults.next_rejection()
    assert first is not None and first.close_code == 1013 and first.error is not None
    assert (first.error["code"], first.error["retryAfterMs"]) == ("UNAVAILABLE", 100)
    assert second is not None and (second.error, second.close_code) == (None, 4001)
    assert faults.next_rejection() is None

    faults.reject_next_like_protocol_3(1, respond=True)
    faults.clear()
    assert faults.plan("status") == (True, 0.0) and faults.plan("health") == (True, 0.0)
    assert faults.next_rejection() is None


def test_the_recorder_counts_copies_and_wakes_waiters() -> None:
    cond = threading.Condition(threading.RLock())
    recorder = Recorder(cond)
    started = threading.Event()

    def wait_for_handshake() -> bool:
        with cond:
            started.set()
            return cond.wait_for(lambda: recorder.handshakes_completed == 1, WAIT)

    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(wait_for_handshake)
        assert started.wait(WAIT)
        params = {"auth": {"token": "t"}}
        recorder.note_request("connect")
        recorder.note_connect(params)
        params["auth"]["token"] = "changed"
        recorder.note_request("status")
        recorder.note_request("status")
        recorder.note_invalid_frame()
        recorder.note_handshake()
        assert waiter.result(WAIT) is True

    assert recorder.requests_by_method == {"connect": 1, "status": 2}
    assert recorder.connect_attempts == 1 and recorder.invalid_frames == 1
    assert recorder.connect_requests == [{"auth": {"token": "t"}}]
    recorder.connect_requests[0]["auth"]["token"] = "x"  # a copy each time
    assert recorder.connect_requests == [{"auth": {"token": "t"}}]
