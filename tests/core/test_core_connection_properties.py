"""Property tests of the socket-free session core (hypothesis): whatever the gateway sends,
in whatever phase, the session returns effects, never raises, never settles a waiter twice
or with another request's answer, and reports exactly the sequence gaps there are."""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

from _coreutil import build, challenge, connected, res, sent
from hypothesis import given
from hypothesis import strategies as st

from gwclient import Event, SeqGap
from gwclient._core.connection import ConnectionCore
from gwclient._core.effects import Publish, SessionLimits, Settle

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

IDS = ["r0", "r1", "r2", "r3", "nobody"]

frames = st.one_of(
    st.text(max_size=40),  # not JSON, or JSON of the wrong shape
    json_values.map(json.dumps),
    st.builds(lambda rid, ok, payload: res(rid, payload) if ok else res(
        rid, ok=False, error={"code": "UNAVAILABLE", "message": "x"}), st.sampled_from(IDS), st.booleans(),
        json_values),
    st.builds(lambda seq, name: json.dumps({"type": "event", "event": name, "seq": seq}),
              st.one_of(st.none(), st.integers(-3, 40)), st.sampled_from(["tick", "presence", "connect.challenge"])),
    st.builds(lambda d: json.dumps({"type": "res", **d}), st.dictionaries(st.sampled_from(
        ["id", "ok", "payload", "error"]), json_values, max_size=4)),
    st.just("[" * 5000),
)


@given(st.lists(frames, max_size=30))
def test_a_connected_session_survives_any_frames_and_settles_each_waiter_once(texts: list[str]) -> None:
    s, _ = connected()
    waiters: dict[str, Future[Any]] = {}
    for rid in IDS[:4]:
        waiters[rid] = Future()
        s.submit(rid, "m", b"{}", waiters[rid])
    settled: dict[int, Any] = {}
    for text in texts:
        for effect in s.received(text, 1.0):
            if isinstance(effect, Settle):
                key = id(effect.waiter)
                assert key not in settled, "a waiter was settled twice"
                settled[key] = effect.outcome
    # Every settled waiter is one of ours, and its id got an answer in the input.
    answered = set()
    for text in texts:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and obj.get("type") == "res" and isinstance(obj.get("id"), str):
            answered.add(obj["id"])
    ours = {id(f): rid for rid, f in waiters.items()}
    assert set(settled) <= set(ours)
    assert all(ours[key] in answered for key in settled)


@given(st.lists(st.integers(1, 60), min_size=1, max_size=25))
def test_gaps_are_reported_exactly_when_events_were_skipped(seqs: list[int]) -> None:
    s, _ = connected()
    last: int | None = None
    for seq in seqs:
        pushes = [e.push for e in s.received(json.dumps({"type": "event", "event": "tick", "seq": seq}), 1.0)
                  if isinstance(e, Publish)]
        gaps = [p for p in pushes if isinstance(p, SeqGap)]
        expected = [SeqGap(last + 1, seq)] if last is not None and seq > last + 1 else []
        assert gaps == expected
        assert isinstance(pushes[-1], Event) and pushes[-1].seq == seq  # the event follows its gap
        if last is None or seq > last:
            last = seq


@given(st.lists(frames, max_size=15), st.sampled_from([0, 1, 2]))
def test_any_frames_during_the_handshake_end_in_an_attempt_result_or_wait(texts: list[str], phase: int) -> None:
    s = ConnectionCore(SessionLimits(connect_timeout=1.0))
    s.retry()
    if phase >= 1:
        s.opened(build, 0.0)
    if phase >= 2:
        sent(s.received(challenge(), 0.0))
    for text in texts:
        s.received(text, 0.5)  # never raises
    assert s.phase in ("opening", "challenge", "hello", "connected", "idle")
    # Whatever happened, the handshake timer or a close ends the attempt cleanly.
    s.timer("handshake", 5.0)
    s.closed(1006, "")
    assert s.phase == "idle"
