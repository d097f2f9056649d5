"""The ``gwclient`` command line, driven through ``main([...])`` against a DevGateway.

Commands that stream (``watch``, ``pair --wait``) run ``main`` in a thread with a stdout
that hands each complete line to the test as it is written, so the test reacts to real
output (a snapshot line, an approve command) instead of sleeping.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websocket
from _util import DEV_TOKEN, python_with_sigint, scaled

from gwclient import GatewayConnection
from gwclient._errors import openclaw_command
from gwclient.cli import main
from gwclient.cli._netstat import (
    ConnectionReport,
    Endpoint,
    ProcessInfo,
    RawConnection,
    gateway_connections,
    redact_cmdline,
)
from gwclient.cli._render import connection_lines, status_lines
from gwclient.device import DeviceIdentity, default_state_dir
from gwclient.testing import DevGateway, DevGatewayError

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

TOKEN = DEV_TOKEN  # the shared gw fixture's (conftest.py)
WAIT = scaled(15.0)  # seconds any single step may take before the test fails


def gateway_args(gw: DevGateway) -> list[str]:
    return ["--url", gw.url, "--token", TOKEN]


def gateway_sees_client(gw: DevGateway) -> None:
    """Wait until the gateway counts the client's socket as handshaken.  The client may
    print its snapshot line (it has hello-ok) a moment before the gateway marks the socket
    handshaken; a broadcast in between would not reach it."""
    assert gw.wait_for(lambda g: g.handshaken_connections == 1, timeout=WAIT)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    code = main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_one_error_line(result: Result, *, contains: str = "") -> str:
    """stderr is exactly one ``gwclient: error:`` line (no traceback)."""
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("gwclient: error: "), line
    assert "Traceback" not in result.err
    assert contains in line
    return line


class LiveOutput(io.StringIO):
    """A stream that hands every complete line to the test as soon as it is written."""

    def __init__(self, *, tty: bool = False) -> None:
        super().__init__()
        self._tty = tty
        self._partial = ""
        self.lines: queue.Queue[str] = queue.Queue()

    def isatty(self) -> bool:
        return self._tty

    def write(self, text: str) -> int:
        written = super().write(text)
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            self.lines.put(line)
        return written

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = WAIT) -> list[str]:
        """Lines read up to and including the first that satisfies ``predicate``."""
        seen: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no matching line within {timeout} s; saw {seen!r}") from None
            seen.append(line)
            if predicate(line):
                return seen


class Background:
    """``main(argv)`` on its own thread with live stdout/stderr."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, argv: list[str], *, tty_stderr: bool = False) -> None:
        self.out = LiveOutput()
        self.err = LiveOutput(tty=tty_stderr)
        monkeypatch.setattr(sys, "stdout", self.out)
        monkeypatch.setattr(sys, "stderr", self.err)
        self._result: Future[int] = Future()
        self._thread = threading.Thread(target=self._run, args=(argv,), name="cli-main")
        self._thread.start()

    def _run(self, argv: list[str]) -> None:
        try:
            self._result.set_result(main(argv))
        except BaseException as exc:  # surfaced by finish()
            self._result.set_exception(exc)

    def finish(self, timeout: float = WAIT) -> int:
        code = self._result.result(timeout=timeout)
        self._thread.join()
        return code


# ------------------------------------------------------------- call/health/status


def test_call_prints_indented_json_and_compact_json_with_json_flag(
    gw: DevGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    params = {"a": [1, 2], "text": "grüße"}
    pretty = run(capsys, *gateway_args(gw), "call", "echo", "--params", json.dumps(params))
    assert pretty.code == 0 and pretty.err == ""
    assert json.loads(pretty.out) == params
    assert pretty.out.count("\n") > 3 and '  "a": [' in pretty.out
    compact = run(capsys, *gateway_args(gw), "call", "echo", "--params", json.dumps(params), "--json")
    assert compact.code == 0
    assert compact.out.count("\n") == 1 and json.loads(compact.out) == params
    assert gw.sockets_accepted == 2  # one socket per run, each shut down at the end
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=WAIT)


def test_health_summary_and_json(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    human = run(capsys, *gateway_args(gw), "health")
    assert human.code == 0
    assert human.out.splitlines()[0] == "health: ok"
    assert f"gateway: {gw.url}" in human.out and "default agent: main" in human.out
    machine = run(capsys, *gateway_args(gw), "health", "--json")
    assert machine.code == 0 and machine.out.count("\n") == 1
    assert json.loads(machine.out)["ok"] is True


def test_unhealthy_gateway_exits_1(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gw.set_handler("health", lambda _params: {"ok": False, "ts": 1})
    result = run(capsys, *gateway_args(gw), "health")
    assert result.code == 1 and "health: NOT OK" in result.out


def test_status_summary_and_json(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    human = run(capsys, *gateway_args(gw), "status")
    assert human.code == 0
    lines = human.out.splitlines()
    assert lines[0] == "status: ok"
    assert f"pid: {os.getpid()}" in lines and "connections: 1" in lines and "heartbeat: off" in lines
    assert any(line.startswith("uptime: ") for line in lines)
    machine = run(capsys, *gateway_args(gw), "--json", "status")
    assert machine.code == 0 and machine.out.count("\n") == 1
    assert json.loads(machine.out)["pid"] == os.getpid()


def test_params_from_a_file_and_from_stdin(
    gw: DevGateway, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "params.json"
    path.write_text('{"from": "file", "n": [1, 2, 3]}\n', encoding="utf-8")
    result = run(capsys, *gateway_args(gw), "call", "echo", "--params", f"@{path}", "--json")
    assert result.code == 0 and json.loads(result.out) == {"from": "file", "n": [1, 2, 3]}
    monkeypatch.setattr(sys, "stdin", io.StringIO('["stdin"]'))
    result = run(capsys, *gateway_args(gw), "call", "echo", "--params", "@-", "--json")
    assert result.code == 0 and json.loads(result.out) == ["stdin"]


@pytest.mark.parametrize("source", ["inline", "file", "missing-file"])
def test_bad_params_exit_2_without_sending(
    gw: DevGateway, capsys: pytest.CaptureFixture[str], tmp_path: Path, source: str
) -> None:
    secret_ish = '{"password": "hunter2", oops}'
    if source == "inline":
        spec = secret_ish
    elif source == "file":
        (tmp_path / "bad.json").write_text(secret_ish, encoding="utf-8")
        spec = f"@{tmp_path / 'bad.json'}"
    else:
        spec = f"@{tmp_path / 'nope.json'}"
    result = run(capsys, *gateway_args(gw), "call", "echo", "--params", spec)
    assert result.code == 2 and result.out == ""
    line = assert_one_error_line(result, contains="--params")
    assert "hunter2" not in line  # the text itself is never echoed, only the position
    if source != "missing-file":
        assert "line 1, column" in line
    assert gw.sockets_accepted == 0


def test_request_error_exits_1_with_one_line(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(_params: Any) -> Any:
        raise DevGatewayError("FORBIDDEN", "missing scope: operator.admin", {"code": "MISSING_SCOPE"})

    gw.set_handler("danger", refuse)
    result = run(capsys, *gateway_args(gw), "call", "danger")
    assert result.code == 1 and result.out == ""
    line = assert_one_error_line(result)
    assert line == "gwclient: error: danger failed (FORBIDDEN/MISSING_SCOPE): missing scope: operator.admin"
    unknown = run(capsys, *gateway_args(gw), "call", "no.such.method")
    assert unknown.code == 1
    assert_one_error_line(unknown, contains="unknown method: no.such.method")


def test_request_timeout_exits_1(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gw.never_answer("status")
    result = run(capsys, *gateway_args(gw), "--timeout", "0.2", "status")
    assert result.code == 1
    assert_one_error_line(result, contains="status got no answer within 0.2 s")


def test_unreachable_gateway_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with DevGateway(token=TOKEN) as gone:
        url = gone.url
    for command in (["health"], ["call", "echo"], ["watch"], ["pair"]):
        result = run(capsys, "--url", url, "--token", TOKEN, *command)
        assert result.code == 1, command
        assert_one_error_line(result, contains="cannot connect to the gateway")


def test_wrong_token_exits_1_and_no_secret_is_ever_printed(
    gw: DevGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "wrong-token-9c2e1a"
    for verbose in ([], ["--verbose"]):
        result = run(capsys, "--url", gw.url, "--token", secret, *verbose, "health")
        assert result.code == 1
        assert "token mismatch" in result.err_lines[-1]
        assert secret not in result.out + result.err
    ok = run(capsys, "--verbose", *gateway_args(gw), "health")
    assert ok.code == 0 and TOKEN not in ok.out + ok.err


def test_secrets_in_the_url_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    with DevGateway(token=TOKEN) as gone:
        url = f"ws://127.0.0.1:{gone.port}/?token=url-secret-77"
    result = run(capsys, "--url", url, "-v", "health")
    assert result.code == 1
    assert "url-secret-77" not in result.out + result.err
    assert f"ws://127.0.0.1:{gone.port}/" in result.err_lines[-1]


def test_verbose_adds_a_traceback_and_debug_logs(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = run(capsys, *gateway_args(gw), "call", "nope")
    assert_one_error_line(quiet)
    loud = run(capsys, *gateway_args(gw), "call", "nope", "-v")
    assert loud.code == 1
    assert "Traceback (most recent call last)" in loud.err and "UnsupportedMethod" in loud.err  # a RequestError
    assert "DEBUG" in loud.err and "gwclient.channel" in loud.err
    assert loud.err_lines[-1] == quiet.err_lines[0]


def test_global_options_before_or_after_the_command(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    before = run(capsys, "--url", gw.url, "--token", TOKEN, "--json", "call", "echo", "--params", "1")
    after = run(capsys, "call", "echo", "--params", "1", "--url", gw.url, "--token", TOKEN, "--json")
    mixed = run(capsys, "--url", gw.url, "call", "--token", TOKEN, "echo", "--json", "--params", "1")
    assert before.code == after.code == mixed.code == 0
    assert before.out == after.out == mixed.out == "1\n"


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["health", "--no-such-option"], ["--timeout", "-1", "health"],
     ["--timeout", "soon", "health"], ["watch", "--count", "0"], ["connections", "--port", "70000"], ["call"]],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    result = run(capsys, *argv)
    assert result.code == 2
    assert "Traceback" not in result.err and "usage: gwclient" in result.err


def test_config_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run(capsys, "--url", "http://127.0.0.1:1", "health")
    assert result.code == 2
    assert_one_error_line(result, contains="gateway url must be ws://")
    broken = tmp_path / "openclaw.json"
    broken.write_text("{ gateway: { port: ", encoding="utf-8")
    result = run(capsys, "--config", str(broken), "health")
    assert result.code == 2
    assert_one_error_line(result, contains="invalid JSON5")


def test_config_file_and_environment_fallbacks(
    gw: DevGateway, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "openclaw.json"
    config_file.write_text(
        f'{{ gateway: {{ port: {gw.port}, auth: {{ token: "{TOKEN}" }} }} }}', encoding="utf-8"
    )
    from_file = run(capsys, "--config", str(config_file), "call", "echo", "--params", '"file"')
    assert from_file.code == 0 and json.loads(from_file.out) == "file"
    monkeypatch.setenv("OPENCLAW_GATEWAY_URL", gw.url)
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", TOKEN)
    from_env = run(capsys, "call", "echo", "--params", '"env"', "--json")
    assert from_env.code == 0 and from_env.out == '"env"\n'
    # A device without a stored device token (a paired one would be let in by the one
    # device-token retry after AUTH_TOKEN_MISMATCH, test_auth_retry.py).
    monkeypatch.setenv("GWCLIENT_STATE_DIR", str(tmp_path / "unpaired-device"))
    overridden = run(capsys, "--token", "not-the-token", "health")
    assert overridden.code == 1  # --token beats the environment


def test_version_and_python_dash_m(capsys: pytest.CaptureFixture[str]) -> None:
    from gwclient import __version__

    result = run(capsys, "--version")
    assert result.code == 0 and result.out.strip() == f"gwclient {__version__}"
    for module in ("gwclient", "gwclient.cli"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                              timeout=WAIT, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "exit codes:" in proc.stdout and "connections" in proc.stdout


# ----------------------------------------------------------------------------- watch


def test_watch_sees_the_events_sent_right_after_hello(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    """watch subscribes before the handshake completes: the gateway's post-hello health
    event is not lost."""
    result = run(capsys, *gateway_args(gw), "watch", "--json", "--events", "health", "--count", "1",
                 "--timeout", "10")
    assert result.code == 0
    events = [json.loads(line) for line in result.out.splitlines() if '"event"' in line]
    assert [e["event"] for e in events if e["type"] == "event"] == ["health"]


def test_watch_json_lines_with_count(gw: DevGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    bg = Background(monkeypatch, [*gateway_args(gw), "watch", "--json", "--events", "custom.a",
                                  "--count", "3", "--timeout", "30"])
    *states, first_line = bg.out.wait_for(lambda line: '"snapshot"' in line)
    assert [json.loads(line)["state"] for line in states] == ["connecting", "connected"]  # the first connection's
    first = json.loads(first_line)
    assert first["type"] == "snapshot" and first["connection"] == 1 and first["reconnected"] is False
    assert first["protocol"] == 4 and "health" in first["snapshot"]
    gateway_sees_client(gw)
    gw.broadcast("custom.other", {"ignored": True})
    gw.broadcast("custom.a", {"n": 1})
    gw.skip_seq(2)
    gw.broadcast("custom.a", {"n": 2})
    gw.broadcast("custom.a", {"n": 3})
    assert bg.finish() == 0
    records = [json.loads(line) for line in bg.out.getvalue().splitlines()]
    assert all(line.count("\n") == 0 for line in bg.out.getvalue().splitlines())
    events = [r for r in records if r["type"] == "event"]
    assert [e["payload"] for e in events] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert all(e["event"] == "custom.a" and isinstance(e["seq"], int) for e in events)
    gaps = [r for r in records if r["type"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["received"] - gaps[0]["expected"] == 2
    assert records.index(gaps[0]) == records.index(events[1]) - 1  # the gap comes first
    assert bg.err.getvalue() == ""
    assert gw.sockets_accepted == 1


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "human"])
def test_watch_survives_a_gateway_restart_and_says_so(
    gw: DevGateway, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    argv = [*gateway_args(gw), "watch", "--events", "custom.ping", "--count", "2", "--timeout", "30"]
    bg = Background(monkeypatch, [*argv, "--json"] if as_json else argv)
    bg.out.wait_for(lambda line: "snapshot" in line or "connected (connection 1)" in line)
    gw.restart(restart_expected_ms=50)
    seen = bg.out.wait_for(lambda line: "reconnected" in line and "connection" in line)
    gateway_sees_client(gw)
    gw.broadcast("custom.ping", {"n": 1})
    gw.broadcast("custom.ping", {"n": 2})
    assert bg.finish() == 0
    out = bg.out.getvalue()
    if as_json:
        records = [json.loads(line) for line in out.splitlines()]
        snapshots = [r for r in records if r["type"] == "snapshot"]
        assert [(s["connection"], s["reconnected"]) for s in snapshots] == [(1, False), (2, True)]
        states = [r["state"] for r in records if r["type"] == "state"]
        assert "reconnecting" in states and states[-1] == "connected"
        assert [r["payload"] for r in records if r["type"] == "event"] == [{"n": 1}, {"n": 2}]
        assert "reconnected (connection 2)" in bg.err.getvalue()
    else:
        assert "reconnected (connection 2): gateway dev" in seen[-1]
        # One line per retry: "state: reconnecting (retry in ...: why)", nothing else.
        state_lines = [line for line in out.splitlines() if " state: " in line]
        assert state_lines and all(" state: reconnecting (retry in " in line for line in state_lines), out
        assert out.count("event custom.ping") == 2
    assert gw.sockets_accepted == 2


def test_watch_timeout_is_a_normal_end(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, *gateway_args(gw), "watch", "--events", "none.such", "--timeout", "1")
    assert result.code == 0 and result.err == ""
    assert "connected (connection 1): gateway dev, protocol 4" in result.out


def test_watch_timeout_before_count_exits_1(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, *gateway_args(gw), "watch", "--events", "none.such", "--count", "2", "--timeout", "1")
    assert result.code == 1
    assert_one_error_line(result, contains="with 0 of 2 events")


def test_watch_stops_with_the_error_when_reconnecting_cannot_help(
    gw: DevGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    bg = Background(monkeypatch, [*gateway_args(gw), "watch", "--json", "--timeout", "30"])
    bg.out.wait_for(lambda line: '"snapshot"' in line)
    gw.invalidate_device_tokens()  # else the one retry with the device token gets back in
    gw.set_token("rotated", close_existing=True)
    assert bg.finish() == 1
    assert json.loads(bg.out.getvalue().splitlines()[-1])["state"] == "paused"
    assert bg.err.getvalue().splitlines() == [
        line for line in bg.err.getvalue().splitlines() if line.startswith("gwclient: error: ")
    ]
    assert "token mismatch" in bg.err.getvalue()


def test_watch_ctrl_c_ends_cleanly_with_exit_0(gw: DevGateway) -> None:
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": gw.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
    proc = subprocess.Popen(python_with_sigint("-m", "gwclient", "watch", "--json"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        while first["type"] == "state":  # the first connection's states, then its snapshot
            first = json.loads(proc.stdout.readline())
        assert first["type"] == "snapshot"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err.strip() == "gwclient: stopped"
    assert all(json.loads(line)["type"] for line in out.splitlines())  # stdout stays JSON lines
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=WAIT)


def test_watch_into_a_closed_pipe_stops_quietly(gw: DevGateway) -> None:
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": gw.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "gwclient", "watch", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert [json.loads(proc.stdout.readline())["type"] for _ in range(3)] == ["state", "state", "snapshot"]
        proc.stdout.close()  # like `gwclient watch | head -1`
        gateway_sees_client(gw)
        gw.broadcast("custom.after", {})  # the next write hits the closed pipe
        assert proc.wait(timeout=WAIT) == 1
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=WAIT)


def test_ctrl_c_during_a_request_exits_130(gw: DevGateway) -> None:
    gw.never_answer("dev.slow")
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": gw.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
    proc = subprocess.Popen(python_with_sigint("-m", "gwclient", "call", "dev.slow", "--timeout", "60"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert gw.wait_for(lambda g: g.requests_by_method.get("dev.slow", 0) == 1, timeout=WAIT)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert out == "" and err.strip() == "gwclient: interrupted"
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=WAIT)


# ------------------------------------------------------------------------------ pair


def test_pair_shows_device_state_dir_and_paired(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, *gateway_args(gw), "pair")
    assert result.code == 0, result.err
    identity = DeviceIdentity.load_or_create(default_state_dir())
    lines = result.out.splitlines()
    assert lines[0] == f"device:    {identity.device_id}"
    assert lines[1] == f"state dir: {default_state_dir()}"
    assert lines[-1].startswith("pairing:   paired (role operator; scopes operator.admin")
    machine = run(capsys, *gateway_args(gw), "pair", "--json")
    record = json.loads(machine.out)
    assert machine.code == 0 and record["paired"] is True and record["deviceId"] == identity.device_id
    assert record["stateDir"] == str(default_state_dir()) and "operator.read" in record["scopes"]


def test_pair_pairing_required_exits_4_with_the_approve_command(capsys: pytest.CaptureFixture[str]) -> None:
    with DevGateway(token=TOKEN, auto_approve=False) as gw:
        result = run(capsys, *gateway_args(gw), "pair")
        [pending] = gw.pending_pairing_requests()
        request_id = pending["requestId"]
        assert result.code == 4
        assert f"pairing:   pairing required (request {request_id})" in result.out
        assert f"approve:   {openclaw_command('devices', 'approve', request_id)}" in result.out
        assert pending["deviceId"] in result.out
        machine = run(capsys, *gateway_args(gw), "pair", "--json")
        record = json.loads(machine.out)
        assert machine.code == 4 and record["state"] == "pairing-required"
        assert record["approveCommand"] == openclaw_command("devices", "approve", request_id)
        # Any other command says the same thing on one line, with the same exit code.
        health = run(capsys, *gateway_args(gw), "health")
        assert health.code == 4
        assert_one_error_line(health, contains=f"`{openclaw_command('devices', 'approve', request_id)}`")
        GatewayConnection.shutdown_all()


@pytest.mark.parametrize("tty", [False, True], ids=["plain", "tty"])
def test_pair_wait_completes_when_approved(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    with DevGateway(token=TOKEN, auto_approve=False) as gw:
        bg = Background(monkeypatch, [*gateway_args(gw), "pair", "--wait", "--timeout", "60"], tty_stderr=tty)
        approve = bg.out.wait_for(lambda line: line.startswith("approve:"))[-1]
        request_id = approve.rsplit(" ", 1)[-1]
        assert approve == f"approve:   {openclaw_command('devices', 'approve', request_id)}"
        gw.approve(request_id)
        assert bg.finish(timeout=30) == 0
        assert bg.out.getvalue().splitlines()[-1].startswith("pairing:   paired (role operator")
        err = bg.err.getvalue()
        assert f"waiting for approval of request {request_id}" in err
        if tty:
            assert "\r" in err and "(Ctrl-C to stop)" in err and err.endswith("\r\033[K")
        else:
            assert "\r" not in err and "s elapsed)" in err
        assert [p["deviceId"] for p in gw.paired_devices()] == [DeviceIdentity.load_or_create(
            default_state_dir()).device_id]
        GatewayConnection.shutdown_all()


def test_pair_wait_times_out_with_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    with DevGateway(token=TOKEN, auto_approve=False) as gw:
        result = run(capsys, *gateway_args(gw), "pair", "--wait", "--timeout", "2")
        [pending] = gw.pending_pairing_requests()
        assert result.code == 4
        line = result.err_lines[-1]
        assert line.startswith("gwclient: error: device was not approved within 2 s")
        assert f"openclaw devices approve {pending['requestId']}" in line
        GatewayConnection.shutdown_all()


# ----------------------------------------------------------------------- connections


def _own_entry(report: dict[str, Any]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [p for p in report["processes"] if p["pid"] == os.getpid()]
    assert len(entries) == 1, report
    return entries[0]


def test_connections_shows_this_process_and_flags_a_duplicate(
    gw: DevGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    from gwclient import GatewayConfig

    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN))
    conn.request("health")
    result = run(capsys, "connections", "--port", str(gw.port), "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    entry = _own_entry(report)
    assert entry["connections"] == 1 and entry["duplicate"] is False
    assert entry["name"] and entry["cmdline"] and report["duplicates"] == 0
    raw = websocket.create_connection(gw.url, suppress_origin=True, timeout=WAIT)
    try:
        assert gw.wait_for(lambda g: g.open_sockets == 2, timeout=WAIT)
        dup = run(capsys, "connections", "--port", str(gw.port), "--json")
        assert dup.code == 3
        entry = _own_entry(json.loads(dup.out))
        assert entry["connections"] == 2 and entry["duplicate"] is True
        human = run(capsys, "connections", "--port", str(gw.port))
        assert human.code == 3
        assert f"pid {os.getpid()}" in human.out and "2 connections  DUPLICATE" in human.out
    finally:
        raw.close()
    conn.shutdown()


def test_connections_port_defaults_to_the_configured_gateway(
    gw: DevGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "--url", gw.url, "connections", "--json")
    assert result.code == 0 and json.loads(result.out)["port"] == gw.port
    empty = run(capsys, "--url", gw.url, "connections")
    assert empty.out == f"no established connections to port {gw.port} on this machine\n"


def _ep(text: str) -> Endpoint:
    host, port = text.rsplit(":", 1)
    return Endpoint(host, int(port))


def test_netstat_groups_filters_and_survives_access_denied() -> None:
    rows = [
        RawConnection(10, _ep("127.0.0.1:5001"), _ep("127.0.0.1:18789"), "ESTABLISHED"),
        RawConnection(10, _ep("127.0.0.1:5002"), _ep("127.0.0.1:18789"), "ESTABLISHED"),
        RawConnection(20, _ep("127.0.0.1:5003"), _ep("127.0.0.1:18789"), "ESTABLISHED"),
        RawConnection(20, _ep("127.0.0.1:5004"), _ep("127.0.0.1:18789"), "TIME_WAIT"),
        RawConnection(30, _ep("127.0.0.1:18789"), _ep("127.0.0.1:5001"), "ESTABLISHED"),  # the server end
        RawConnection(40, _ep("127.0.0.1:18789"), None, "LISTEN"),
        RawConnection(None, _ep("::1:5005"), _ep("::1:18789"), "ESTABLISHED"),
        RawConnection(50, _ep("127.0.0.1:5006"), _ep("127.0.0.1:9999"), "ESTABLISHED"),
    ]
    infos = {
        10: ProcessInfo(name="python3", cmdline=("python3", "app.py", "--token", "***")),
        20: ProcessInfo(name="node", access_denied=True),
    }
    report = gateway_connections(18789, table=lambda: (rows, True), describe=infos.__getitem__)
    assert [(p.pid, p.count, p.duplicate) for p in report.processes] == [(10, 2, True), (20, 1, False),
                                                                         (None, 1, False)]
    assert not report.complete and report.notes
    assert [p.pid for p in report.duplicates] == [10]
    as_json = report.to_json()
    assert as_json["total"] == 4 and as_json["duplicates"] == 1
    assert as_json["processes"][2]["sockets"] == [{"local": "[::1]:5005", "remote": "[::1]:18789"}]
    lines = connection_lines(report)
    assert "  pid 10  python3  2 connections  DUPLICATE" in lines
    assert "  pid 20  node  1 connection" in lines and "  pid ?  (access denied)  1 connection" in lines
    assert lines[-1] == "3 process(es), 4 connection(s); 1 process(es) hold more than one (exit code 3)"
    assert gateway_connections(18789, table=lambda: ([], True)) == ConnectionReport(18789)


def test_command_lines_are_shown_with_secrets_redacted() -> None:
    assert redact_cmdline(
        ["gwclient", "--token", "abc", "--password=pw", "OPENCLAW_GATEWAY_TOKEN=t0k", "--url",
         "ws://h:1/?token=q1&x=2", "--tokenizer", "bpe"]
    ) == ("gwclient", "--token", "***", "--password=***", "OPENCLAW_GATEWAY_TOKEN=***", "--url",
          "ws://h:1/?token=***&x=2", "--tokenizer", "bpe")


# ------------------------------------------------------------------------------ demo


def test_demo_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "demo")
    assert result.code == 0, result.err
    assert result.out.strip()


def test_demo_gets_only_an_explicit_gateway(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gwclient.cli._demo

    calls: list[dict[str, Any]] = []

    def fake_demo(*, out: Any, url: str | None = None, token: str | None = None) -> int:
        calls.append({"url": url, "token": token})
        print("fake demo report", file=out)
        return 7

    monkeypatch.setattr(gwclient.cli._demo, "run_demo", fake_demo)
    monkeypatch.setenv("OPENCLAW_GATEWAY_URL", "ws://127.0.0.1:9")
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "env-token")
    result = run(capsys, "demo")
    assert result.code == 7 and result.out == "fake demo report\n"
    run(capsys, "--url", "ws://127.0.0.1:8", "demo")
    run(capsys, "demo", "--url", "ws://127.0.0.1:8", "--token", "cli-token")
    assert calls == [
        {"url": None, "token": None},  # the environment's gateway is not the demo's: embedded
        {"url": "ws://127.0.0.1:8", "token": "env-token"},
        {"url": "ws://127.0.0.1:8", "token": "cli-token"},
    ]


def test_demo_rejects_options_it_cannot_use(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "--password", "pw", "demo")
    assert result.code == 2
    assert_one_error_line(result, contains="demo takes only --url and --token")


# ------------------------------------------------------------ first-hour problems


DATA = Path(__file__).resolve().parents[1] / "data"


def test_status_summary_of_a_real_gateways_answer() -> None:
    """The summary says what the gateway means (totals, versions), checked against the
    ``status`` answer of a real 2026.9.6 gateway (recorded; test_real_gateway runs the
    command against a live one)."""
    payload = json.loads((DATA / "status-2026.9.6.json").read_text(encoding="utf-8"))
    payload["tasks"].update(total=3, active=1, failures=1)  # the recorded gateway had none
    lines = status_lines(payload, "ws://127.0.0.1:1")
    assert "version: 2026.9.6" in lines and "pid: 12984" in lines
    assert "tasks: 3 total, 1 active, 1 failed" in lines
    assert "heartbeat: main every 30m" in lines
    assert "sessions: 0 (default model gpt-6-astra)" in lines
    assert "event loop: DEGRADED (event_loop_utilization; p99 delay 672 ms)" in lines
    assert "memory (RSS): 730 MiB" in lines
    assert not any("item(s)" in line for line in lines), lines  # never a count of JSON keys
    assert not any(line.startswith("also:") for line in lines)  # every key is understood
    unknown = status_lines({**payload, "newThing": {"a": 1}, "flag": True}, "ws://127.0.0.1:1")
    assert "flag: yes" in unknown and "also: newThing" in unknown


@pytest.mark.parametrize("argv", [["call", ""], ["call", "   "]], ids=["empty", "blank"])
def test_an_empty_method_is_a_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    result = run(capsys, *argv)
    assert result.code == 2
    assert "a method name is required" in result.err and "Traceback" not in result.err


def test_demo_json_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "demo", "--json")
    assert result.code == 2 and result.out == ""
    assert_one_error_line(result, contains="no --json output")


def test_a_config_file_that_does_not_exist_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "opnclaw.json"
    result = run(capsys, "--config", str(missing), "health")
    assert result.code == 2
    assert_one_error_line(result, contains=f"OpenClaw config file {missing} does not exist")


def test_the_embedded_demo_leaves_the_home_untouched(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GWCLIENT_STATE_DIR")  # the default state dir, under HOME
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    for _ in range(2):
        result = run(capsys, "demo")
        assert result.code == 0, result.out + result.err
    assert list(home.rglob("*")) == []  # no identity, no device token, nothing


_HEAVY = ("pykka", "websocket", "websockets", "paramiko", "sshtunnel", "psutil", "cryptography",
          "dataclasses_json", "json5", "gwclient._connection", "gwclient._config.config")


def test_help_and_usage_errors_load_no_client_module() -> None:
    """``--help`` (and any usage error) imports only the standard library and the CLI's
    parser: fast, and nothing heavy for a Ctrl-C to interrupt."""
    code = ("import sys, contextlib, io\n"
            "from gwclient.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    codes = [main(['--help']), main(['--version']), main(['frobnicate']), main(['call', ''])]\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {_HEAVY!r} or m in {_HEAVY!r})\n"
            "print(codes, heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 0, 2, 2] []"


_SLOW_IMPORT = """
import sys, threading
class SlowImport:
    # The client's modules take a while to import on a cold machine: make one take
    # long enough for the test to press Ctrl-C in the middle of it.
    def find_spec(self, name, path=None, target=None):
        if name == "gwclient.cli._invocation":
            print("importing", flush=True)
            threading.Event().wait(60)  # until the test's SIGINT interrupts the wait
        return None
sys.meta_path.insert(0, SlowImport())
from gwclient.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_the_client_is_imported_prints_one_line(gw: DevGateway) -> None:
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": gw.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
    proc = subprocess.Popen(python_with_sigint("-c", _SLOW_IMPORT, "call", "health"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "importing\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert out == "" and err == "gwclient: interrupted\n"
    assert gw.sockets_accepted == 0


@pytest.mark.parametrize(("argv", "missing", "extra"), [
    (["demo"], "websockets", "demo"),
    (["demo"], "psutil", "demo"),
    (["connections", "--port", "9"], "psutil", "cli"),
])
def test_a_missing_optional_dependency_names_its_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], missing: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    result = run(capsys, *argv)
    assert result.code == 2
    line = assert_one_error_line(result, contains=f"needs the {missing} package, which is not installed: ")
    assert f"pip install 'gwclient[{extra}]'" in line  # the package-index form (and the checkout's, first)
