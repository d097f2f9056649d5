"""Exit codes the README promises: the library's UsageError is a usage error (2), and
Ctrl-C ends a ``watch`` with 0 from the moment its command line is parsed."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from _util import DEV_TOKEN, python_with_sigint, scaled
from test_cli import _SLOW_IMPORT

from gwclient.cli import main
from gwclient.testing import DevGateway

WAIT = scaled(15.0)

pytestmark = pytest.mark.usefixtures("shutdown_all_after")


@pytest.mark.parametrize(("argv", "message"), [
    (["chat", "--session", "", "hi"], "session_key must be a non-empty string"),
    (["call", "has space"], "is not a valid gateway method name"),
    (["call", "health", "--params", '{"limit": NaN}'], "are not JSON"),
    (["call", "health", "--params", "[" * 5000 + "]" * 5000], "nested too deeply"),
], ids=["chat-empty-session", "method-with-space", "nan-params", "too-deep"])
def test_arguments_the_library_refuses_exit_2(gw: DevGateway, capsys: pytest.CaptureFixture[str],
                                              argv: list[str], message: str) -> None:
    code = main(["--url", gw.url, "--token", DEV_TOKEN, *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("gwclient: error: ") and err.count("\n") == 1 and message in err
    assert gw.requests_by_method.get("health", 0) == 0 and gw.requests_by_method.get("chat.send", 0) == 0


@pytest.mark.parametrize("command", [["watch"], ["watch", "--json"]])
def test_ctrl_c_while_a_watch_starts_up_exits_0(gw: DevGateway, command: list[str]) -> None:
    env = {**os.environ, "OPENCLAW_GATEWAY_URL": gw.url, "OPENCLAW_GATEWAY_TOKEN": DEV_TOKEN}
    proc = subprocess.Popen(python_with_sigint("-c", _SLOW_IMPORT, *command), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "importing\n"  # Ctrl-C in the middle of the client's import
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out, err) == (0, "", "gwclient: stopped\n")
    assert gw.sockets_accepted == 0


def test_ctrl_c_while_a_watch_reads_its_config_exits_0(gw: DevGateway, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from gwclient.cli import _invocation

    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_invocation.Invocation, "config", interrupted)
    assert main(["--url", gw.url, "--token", DEV_TOKEN, "watch"]) == 0
    assert capsys.readouterr().err == "gwclient: stopped\n"
    assert main(["--url", gw.url, "--token", DEV_TOKEN, "health"]) == 130  # other commands: 130
    assert capsys.readouterr().err == "gwclient: interrupted\n"
