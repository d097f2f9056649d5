"""Helpers of the share tests: an isolated share environment (runtime dir, state dir,
gateway), real child processes, and the clean-up that kills every share it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]


class ShareEnv:
    """Everything a share test needs; ``env`` is also applied to this process (the
    library's attach path reads ``os.environ``)."""

    def __init__(self, run_dir: Path, url: str, token: str | None, mp: pytest.MonkeyPatch) -> None:
        self.run_dir = run_dir
        self.socket = run_dir / "gwclient" / "share.sock"
        settings = {
            "XDG_RUNTIME_DIR": str(run_dir),
            "GWCLIENT_SHARE": "auto",
            "GWCLIENT_SHARE_PERSIST": "60",
            "OPENCLAW_GATEWAY_URL": url,
            "PYTHONPATH": str(ROOT),
        }
        if token is not None:
            settings["OPENCLAW_GATEWAY_TOKEN"] = token
        for name, value in settings.items():
            mp.setenv(name, value)
        self.children: list[subprocess.Popen[str]] = []

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gwclient", *args], env=env or self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def spawn_cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "gwclient", *args], env=env or self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.children.append(proc)
        return proc

    def python(self, code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env or self.env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.children.append(proc)
        return proc

    def share_processes(self) -> list[psutil.Process]:
        """Running share processes of this environment (found by their environment)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                cmd = proc.info["cmdline"] or []
                if "share" not in cmd or "run" not in cmd:
                    continue
                if proc.environ().get("XDG_RUNTIME_DIR") == str(self.run_dir) and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def log_text(self) -> str:
        path = Path(os.environ["GWCLIENT_STATE_DIR"]) / "share.log"
        return path.read_text() if path.exists() else ""

    def cleanup(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for share in self.share_processes():
            try:
                share.send_signal(signal.SIGKILL)
                share.wait(10)
            except psutil.NoSuchProcess:
                pass
        reap()


def reap() -> None:
    """Collect exited children of this process (shares started by the library in the
    test process itself)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@contextmanager
def share_env(url: str, token: str | None) -> Iterator[ShareEnv]:
    run_dir = Path(tempfile.mkdtemp(prefix="gws-", dir="/tmp"))  # short: a socket path has ~107 bytes
    os.chmod(run_dir, 0o700)
    mp = pytest.MonkeyPatch()
    env = ShareEnv(run_dir, url, token, mp)
    try:
        yield env
    finally:
        try:
            env.cleanup()
        finally:
            mp.undo()
            shutil.rmtree(run_dir, ignore_errors=True)


def read_json_line(stream: IO[str] | None) -> Any:
    assert stream is not None
    line = stream.readline()
    if not line:
        raise AssertionError("the child ended without answering")
    return json.loads(line)


#: A child that subscribes through the share and reports what it sees, one JSON per line.
#: Commands on stdin: "req METHOD [JSON]" (a request), "submit METHOD [JSON]" (says "sent",
#: then the answer), "event NAME" (the next such event), "burst NAME LAST" (count events
#: until payload i == LAST, with the gaps seen), "until N" (pushes until N more
#: snapshots), "exit".
CHILD = r'''
import json, sys, os
from gwclient import GatewayConfig, GatewayConnection, Snapshot, Event, SeqGap, StateChange, Overflow, GatewayError
conn = GatewayConnection.shared(GatewayConfig.from_environment(request_timeout=20))
sub = conn.subscribe(maxsize=1_000_000, max_bytes=None)
def out(**kw):
    print(json.dumps(kw), flush=True)
def describe(push):
    if isinstance(push, Snapshot):
        return {"kind": "snapshot", "number": push.connection_number}
    if isinstance(push, Event):
        return {"kind": "event", "event": push.event, "seq": push.seq, "payload": push.payload}
    if isinstance(push, SeqGap):
        return {"kind": "gap", "expected": push.expected, "received": push.received}
    if isinstance(push, StateChange):
        return {"kind": "state", "state": push.state.value}
    if isinstance(push, Overflow):
        return {"kind": "overflow", "dropped": push.dropped}
    return {"kind": type(push).__name__}
first = sub.get(30)
while isinstance(first, StateChange):  # connecting...: the Snapshot is what a consumer waits for
    first = sub.get(30)
out(ready=describe(first))
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd in ("req", "submit"):
        method, _, params = arg.partition(" ")
        try:
            if cmd == "submit":  # say when the frame has left, then wait for the answer
                fut = conn.submit(method, json.loads(params) if params else None, timeout=60)
                out(sent=True)
                answer = fut.result()
            else:
                answer = conn.request(method, json.loads(params) if params else None)
            out(answer=answer)
        except GatewayError as exc:
            out(error=type(exc).__name__, message=str(exc))
    elif cmd == "burst":
        name, _, last = arg.partition(" ")
        seen, gaps = 0, []
        while True:
            push = sub.get(60)
            if isinstance(push, SeqGap):
                gaps.append([push.expected, push.received])
            elif isinstance(push, Event) and push.event == name:
                seen += 1
                if push.payload.get("i") == int(last):
                    break
        out(seen=seen, gaps=gaps)
    elif cmd == "until":
        wanted, got = int(arg), []
        while sum(1 for g in got if g["kind"] == "snapshot") < wanted:
            got.append(describe(sub.get(60)))
        out(pushes=got)
    elif cmd == "event":
        while True:
            push = sub.get(30)
            if isinstance(push, Event) and push.event == arg:
                out(event=describe(push))
                break
    elif cmd == "exit":
        break
conn.shutdown()
'''
