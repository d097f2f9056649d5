"""Interpreter exit with ordinary (non-daemon) user threads blocked in gwclient: Python
joins non-daemon threads before ``atexit`` handlers run, so gwclient shuts down from the
hook that runs before that join (issue 16 point 2).  Real child interpreters; the test
waits on each with a timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from _util import DEV_TOKEN

from gwclient.testing import DevGateway

CHILD = """
import sys, threading, logging
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(message)s")
from gwclient import ClientClosed, GatewayConfig, GatewayConnection

conn = GatewayConnection.shared(GatewayConfig(url={url!r}, token={token!r}))
assert conn.request("echo", "up") == "up"
sub = conn.subscribe()

def say(line):  # one write per line: print() from two threads can interleave
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()

def consume():
    try:
        while True:
            sub.get()  # timeout=None: forever
    except ClientClosed:
        say("get: ClientClosed")

def ask():
    try:
        conn.request("hang", timeout=None)
    except ClientClosed:
        say("request: ClientClosed")

threading.Thread(target=consume, name="consumer").start()   # non-daemon
threading.Thread(target=ask, name="asker").start()          # non-daemon
print("ready", flush=True)
sys.stdin.readline()  # the parent saw the request arrive
{end}
"""


@pytest.mark.parametrize("end", ["", "raise SystemExit(3)"], ids=["main-returns", "main-raises-systemexit"])
def test_exit_with_non_daemon_threads_blocked_in_gwclient_does_not_hang(gw: DevGateway, end: str) -> None:
    gw.never_answer("hang")
    script = textwrap.dedent(CHILD.format(url=gw.url, token=DEV_TOKEN, end=end))
    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "ready\n"
            assert gw.wait_for(lambda g: g.requests_by_method.get("hang", 0) == 1, timeout=10)
            child.stdin.write("go\n")
            child.stdin.flush()
            out, err = child.communicate(timeout=20)  # a hang fails here
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    assert child.returncode == (3 if end else 0), err
    assert sorted(out.splitlines()) == ["get: ClientClosed", "request: ClientClosed"], err
    # gwclient shut the connection down itself (close frame, then the socket) before the
    # join: not the interpreter tearing a live socket down at exit.
    assert "-> closed the gateway connection was shut down" in err, err
    assert gw.wait_for(lambda g: g.open_sockets == 0 and len(g.client_close_codes) == 1, timeout=5)
