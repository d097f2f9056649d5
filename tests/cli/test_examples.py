"""Every script in examples/ runs, in its own process, against a DevGateway and ends on its
own with exit 0, printing what it is meant to print, over exactly one gateway socket."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _util import DEV_TOKEN, scaled

from gwclient.testing import DevGateway

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TOKEN = DEV_TOKEN  # the shared gw fixture's (conftest.py)
pytestmark = pytest.mark.devgateway(tick_interval_ms=200)

#: Lines (substrings) each example must print.  Every example must be listed here.
EXPECTED: dict[str, list[str]] = {
    "legacy_script.py": ["health: ok", "status: gateway version dev", "presence: 1 entry",
                         "\n5 more requests answered\n"],
    "queue_worker.py": ["worker: snapshot (connection 1)", "worker: event health seq=1",
                        "main: health #3: ok", "worker: handled"],
    "poller_and_watcher.py": ["poller: health #10 ok", "watcher: snapshot (connection 1)", "watcher: event tick",
                              "sockets from this process to the gateway: 1"],
}


#: Examples that need input, run by their own test file instead.
COVERED_ELSEWHERE = {"chat_repl.py": "tests/cli/test_example_chat.py"}


def example_files() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in COVERED_ELSEWHERE)


def test_every_example_is_covered() -> None:
    assert example_files() == sorted(EXPECTED)


@pytest.mark.parametrize("name", example_files())
def test_example_runs_against_a_dev_gateway(gw: DevGateway, tmp_path: Path, name: str) -> None:
    env = {
        **os.environ,
        "OPENCLAW_GATEWAY_URL": gw.url,
        "OPENCLAW_GATEWAY_TOKEN": TOKEN,
        "GWCLIENT_STATE_DIR": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=scaled(30), check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    for expected in EXPECTED[name]:
        assert expected in proc.stdout, f"{expected!r} missing from:\n{proc.stdout}"
    assert "Traceback" not in proc.stderr, proc.stderr
    # One socket for the whole script, however many requests and consumers it has.
    assert gw.sockets_accepted == 1 and gw.handshakes_completed == 1
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=scaled(10))


def test_examples_fail_clearly_without_a_gateway(tmp_path: Path) -> None:
    with DevGateway(token=TOKEN) as gone:
        url = gone.url
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": url, "OPENCLAW_GATEWAY_TOKEN": TOKEN,
           "GWCLIENT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path),
           "PYTHONPATH": str(ROOT)}
    for name in example_files():
        proc = subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=scaled(30), check=False)
        assert proc.returncode == 1, name
        assert "gateway error: cannot connect to the gateway" in proc.stderr, (name, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_readme_quickstart_runs(gw: DevGateway, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Quickstart\n\n```python\n(.*?)```", readme, re.S)
    assert match is not None, "README.md lost its quickstart"
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": gw.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN,
           "GWCLIENT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", match.group(1)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=scaled(30), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "Snapshot ", "Event tick"]
    assert gw.sockets_accepted == 1
