"""``gwclient watch`` during an outage and into a closed pipe.

* One line per state, not one per retry: a stopped gateway is retried every 0.2 s, yet the
  output has one ``reconnecting`` line for ``connection refused`` and the ``reconnected``
  line carries the retries and the time down (``--json``: the same, with numbers).
* ``--json`` keeps the first connection's own state changes (connecting, connected).
* ``gwclient watch | head -1`` ends as soon as ``head`` exits, with no push to write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from _util import DEV_TOKEN, scaled
from test_cli import Background

from gwclient import ConnectionState, GatewayConfig, GatewayConnection, StateChange
from gwclient.cli._outage import StateFolding
from gwclient.cli._reader_gone import ReaderGone
from gwclient.testing import DevGateway

WAIT = scaled(30.0)

pytestmark = pytest.mark.usefixtures("shutdown_all_after")


def _state(state: ConnectionState, detail: str = "") -> StateChange:
    return StateChange(state, detail)


def test_folding_shows_one_record_per_state_with_counts() -> None:
    fold = StateFolding()
    R, C = ConnectionState.RECONNECTING, ConnectionState.CONNECTING
    shown = [fold.record(_state(C, "attempt 1"), 0.0),
             fold.record(_state(ConnectionState.CONNECTED, "connection 1"), 0.1)]
    assert [r["state"] for r in shown if r] == ["connecting", "connected"]  # the first connect: all shown
    shown = [fold.record(_state(R, "retry in 0.20 s: connection closed (1012)"), 10.0)]
    for n in range(40):  # 40 refused attempts, 0.2 s apart
        shown.append(fold.record(_state(C, f"attempt {n + 1}"), 10.0 + n * 0.2))
        shown.append(fold.record(_state(R, "retry in 0.19 s: connection refused"), 10.1 + n * 0.2))
    for n in range(5):  # then "starting" answers
        shown.append(fold.record(_state(C, f"attempt {n + 41}"), 18.0 + n * 0.5))
        shown.append(fold.record(_state(R, "retry in 0.50 s: gateway starting"), 18.1 + n * 0.5))
    shown.append(fold.record(_state(C, "attempt 46"), 20.6))
    shown.append(fold.record(_state(ConnectionState.CONNECTED, "connection 2"), 20.7))
    records = [r for r in shown if r is not None]
    assert [(r["state"], r.get("retryIn"), r["retries"], r["sinceDrop"]) for r in records] == [
        ("reconnecting", 0.2, 1, 0.0),
        ("reconnecting", 0.19, 2, 0.1),
        ("reconnecting", 0.5, 42, 8.1),
        ("connected", None, 46, 10.7),
    ]
    assert fold.outage is None and fold.ended is not None and fold.ended.retries == 46
    again = fold.record(_state(R, "retry in 0.20 s: connection refused"), 30.0)  # a new outage
    assert again is not None and again["retries"] == 1 and again["sinceDrop"] == 0.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_a_long_outage_is_one_line_per_state(gw: DevGateway, monkeypatch: pytest.MonkeyPatch, as_json: bool) -> None:
    argv = ["--url", gw.url, "--token", DEV_TOKEN, "watch", "--events", "custom.ping", "--count", "1",
            "--timeout", "100", *(["--json"] if as_json else [])]
    bg = Background(monkeypatch, argv)
    bg.out.wait_for(lambda line: "snapshot" in line or "connected (connection 1)" in line)
    # The CLI's connection (an equal config: the same shared object): count its retries.
    conn = GatewayConnection.shared(GatewayConfig.from_environment(url=gw.url, token=DEV_TOKEN))
    retries = threading.Semaphore(0)
    states = conn.subscribe()

    def count() -> None:
        for push in states:
            if isinstance(push, StateChange) and push.state == ConnectionState.RECONNECTING:
                retries.release()

    counter = threading.Thread(target=count, name="test-retry-counter")
    counter.start()
    gw.restart_begin(restart_expected_ms=50)  # down: every attempt is refused
    for _ in range(12):  # the drop and 11 refused attempts
        assert retries.acquire(timeout=WAIT)
    gw.restart_end()
    bg.out.wait_for(lambda line: "reconnected" in line or '"connected"' in line)
    assert gw.wait_for(lambda g: g.handshaken_connections == 1, timeout=WAIT)
    gw.broadcast("custom.ping", {"n": 1})
    assert bg.finish() == 0
    states.close()
    counter.join(WAIT)
    lines = bg.out.getvalue().splitlines()
    if as_json:
        records = [json.loads(line) for line in lines]
        state_records = [(r["state"], r.get("retries")) for r in records if r["type"] == "state"]
        assert state_records[:2] == [("connecting", None), ("connected", None)]  # the first connection's
        reconnecting = [r for r in records if r.get("state") == "reconnecting"]
        assert 1 <= len(reconnecting) <= 3, lines  # the drop's reason, "refused", perhaps "starting"
        assert [r["retries"] for r in reconnecting] == sorted(r["retries"] for r in reconnecting)
        assert all(isinstance(r["sinceDrop"], float) and isinstance(r["retryIn"], float) for r in reconnecting)
        end = [r for r in records if r.get("state") == "connected"][-1]
        assert end["retries"] >= 12 and end["sinceDrop"] >= 0
        assert not any(r.get("state") == "connecting" for r in records[3:])  # attempts are folded
        assert [r["type"] for r in records].count("snapshot") == 2
    else:
        state_lines = [line for line in lines if " state: " in line]
        assert 1 <= len(state_lines) <= 3, lines
        assert all(" state: reconnecting (retry in " in line and " s since the drop)" in line for line in state_lines)
        reconnected = [line for line in lines if " reconnected (connection 2): " in line]
        assert len(reconnected) == 1 and " s down, " in reconnected[0] and " retries)" in reconnected[0]
        retries_shown = int(reconnected[0].split(" s down, ", 1)[1].split()[0])
        assert retries_shown >= 12


def test_reader_gone_notices_a_closed_pipe_without_a_write() -> None:
    read_end, write_end = os.pipe()
    called = threading.Event()
    try:
        with ReaderGone(write_end, called.set) as watch:
            assert not watch.gone.is_set()
            os.close(read_end)
            read_end = -1
            assert called.wait(WAIT) and watch.gone.is_set()
    finally:
        os.close(write_end)
        if read_end >= 0:
            os.close(read_end)


def test_reader_gone_ignores_files_and_stops_at_once(tmp_path: os.PathLike[str]) -> None:
    with open(os.path.join(tmp_path, "out.txt"), "w", encoding="utf-8") as fh:
        watch = ReaderGone(fh.fileno(), lambda: None)
        assert watch._thread is None  # a file has no reader to lose
        watch.close()
    read_end, write_end = os.pipe()
    try:
        watch = ReaderGone(write_end, lambda: None)
        thread = watch._thread
        assert thread is not None and thread.is_alive()
        watch.close()  # the reader is still there: close() wakes the thread up
        assert not thread.is_alive() and not watch.gone.is_set()
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.devgateway(tick_interval_ms=600_000)
def test_watch_piped_into_head_exits_when_head_does(gw: DevGateway) -> None:
    gw.stop_ticking()  # nothing more will be written after the first lines
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": gw.url, "OPENCLAW_GATEWAY_TOKEN": DEV_TOKEN}
    watch = f"{sys.executable} -m gwclient watch --json --events none.such"
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {watch} | head -1"], env=env, capture_output=True,
                          text=True, timeout=WAIT, check=False)
    assert proc.returncode == 1  # watch's exit status for a closed stdout (README)
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["type"] == "state"
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=WAIT)
