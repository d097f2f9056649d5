"""``gwclient chat`` and ``gwclient agent``, driven through ``main([...])`` (and one
subprocess for Ctrl-C) against a DevGateway.  The real-gateway versions are in
test_runs_real.py."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gwclient import GatewayConfig, GatewayConnection, RetryPolicy
from gwclient.cli import main
from gwclient.cli._runs import run_command
from gwclient.testing import DevGateway
from gwclient.testing._devgw_runs import RunScript

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

TOKEN = "cli-runs-token-77"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gw() -> Iterator[DevGateway]:
    with DevGateway(token=TOKEN) as gateway:
        gateway.runs.when("FAIL", RunScript(fail="the model is down", fail_after=1))
        gateway.runs.when("PAUSE", RunScript(pause_after=2))
        gateway.runs.when("MERGE", RunScript(merge=True))
        yield gateway


def cli(capsys: pytest.CaptureFixture[str], gw: DevGateway, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--url", gw.url, "--token", TOKEN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_chat_prints_the_reply(capsys: pytest.CaptureFixture[str], gw: DevGateway) -> None:
    code, out, err = cli(capsys, gw, "chat", "--session", "agent:main:cli", "hello cli")
    assert (code, out, err) == (0, "ECHO: hello cli\n", "")
    assert gw.requests_by_method["chat.send"] == 1


def test_chat_queue_mode_followup_into_a_busy_session(capsys: pytest.CaptureFixture[str], gw: DevGateway) -> None:
    """``--queue-mode followup``: not steered into the running turn (the dev gateway steers
    by default here), a turn and a reply of its own."""
    gw.runs.steer = True
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, retry=RetryPolicy(initial=0.05)))
    first = conn.chat("agent:main:busy", "PAUSE the first turn")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    box: dict[str, int] = {}
    worker = threading.Thread(target=lambda: box.setdefault("code", main(
        ["chat", "--session", "agent:main:busy", "--queue-mode", "followup", "my own turn",
         "--url", gw.url, "--token", TOKEN])))
    worker.start()
    assert gw.wait_for(lambda g: g.runs.queued("agent:main:busy") == 1, timeout=10)
    gw.runs.release()
    worker.join(20)
    assert first.wait(10).text == "ECHO: PAUSE the first turn"
    assert box["code"] == 0
    assert capsys.readouterr().out == "ECHO: my own turn\n"
    assert len(gw.runs.followups) == 1


def test_agent_prints_the_reply(capsys: pytest.CaptureFixture[str], gw: DevGateway) -> None:
    code, out, _ = cli(capsys, gw, "agent", "MERGE one two three four")
    assert (code, out) == (0, "ECHO: MERGE one two three four\n")
    assert gw.requests_by_method["agent"] == 1


def test_failed_run_exits_1_with_the_gateways_reason(capsys: pytest.CaptureFixture[str], gw: DevGateway) -> None:
    code, out, err = cli(capsys, gw, "chat", "FAIL now")
    assert code == 1
    assert out == "ECHO:\n"  # what streamed before the failure, then a newline
    assert err.startswith("gwclient: error: ") and "the model is down" in err and err.count("\n") == 1


def test_json_prints_one_object_per_update(capsys: pytest.CaptureFixture[str], gw: DevGateway) -> None:
    code, out, _ = cli(capsys, gw, "chat", "--json", "--session", "agent:main:j", "json please")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["kind"] == "started" and lines[0]["sessionKey"] == "agent:main:j"
    kinds = [line["kind"] for line in lines]
    assert {"status", "lifecycle", "text", "usage"} <= set(kinds) and kinds[-1] == "result"
    assert "".join(line["text"] for line in lines if line["kind"] == "text") == "ECHO: json please"
    assert lines[-1]["text"] == "ECHO: json please" and lines[-1]["runId"] == lines[0]["runId"]


def test_json_failure_ends_with_an_error_object(capsys: pytest.CaptureFixture[str], gw: DevGateway) -> None:
    code, out, _ = cli(capsys, gw, "agent", "--json", "FAIL json")
    last = json.loads(out.splitlines()[-1])
    assert code == 1 and last["kind"] == "error" and last["error"] == "RunFailed"
    assert last["reason"] == "the model is down"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_spinner_on_a_terminal_until_the_first_text(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, retry=RetryPolicy(initial=0.05)))
    args = argparse.Namespace(command="chat", session="agent:main:spin", message="PAUSE spin me", json=False,
                              queue_mode=None, timeout=None)
    out, err = io.StringIO(), _Tty()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_command(args, conn, out, err)))
    thread.start()
    assert gw.wait_for(lambda g: g.runs.paused == 1, timeout=10)
    gw.runs.release()
    thread.join(10)
    assert result == [0] and out.getvalue() == "ECHO: PAUSE spin me\n"
    assert "waiting for the reply" in err.getvalue() and err.getvalue().endswith("\r\033[K")


def test_ctrl_c_aborts_the_run_and_exits_130(gw: DevGateway, tmp_path: Path) -> None:
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": gw.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN,
           "GWCLIENT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from gwclient.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "chat", "--session", "agent:main:int", "PAUSE a b c"],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.read(len("ECHO: PAUSE")) == "ECHO: PAUSE"
    assert gw.wait_for(lambda g: g.runs.paused == 1, timeout=10)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert out == "\n"  # the line that was streaming is ended
    assert proc.returncode == 130, err
    assert "interrupted (run aborted)" in err
    assert gw.requests_by_method.get("chat.abort") == 1
    assert [gw.runs.status(run_id) for run_id in gw.runs.ids()] == ["aborted"]
