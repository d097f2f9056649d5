"""examples/chat_repl.py runs, in its own process, against a DevGateway: it streams each
reply, reports a failed run and goes on, and ends on an empty line with exit 0.

(test_examples.py runs the other examples; this file covers the REPL, which needs input.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gwclient.testing import DevGateway
from gwclient.testing._devgw_runs import RunScript

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "examples-chat-token"


@pytest.fixture
def gw() -> Iterator[DevGateway]:
    with DevGateway(token=TOKEN) as gateway:
        gateway.runs.when("FAIL", RunScript(fail="the model is down"))
        yield gateway


def test_chat_repl_streams_replies_and_reports_failures(gw: DevGateway, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OPENCLAW_GATEWAY_URL": gw.url,
        "OPENCLAW_GATEWAY_TOKEN": TOKEN,
        "GWCLIENT_STATE_DIR": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "chat_repl.py"), "agent:main:repl"],
                          input="hello there\nFAIL please\nsecond line\n\n", env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "bot> ECHO: hello there\n" in proc.stdout
    assert "(failed: " in proc.stdout and "the model is down" in proc.stdout
    assert "bot> ECHO: second line\n" in proc.stdout
    assert gw.runs.started() == 3
