"""What a new user meets in the first hour: the test command, messages, docs, packaging.

Each test pins one point of "a first hour that leaves the machine as it was, and says what
it does": the scripts install nothing on the machine and stop on a failed install, the
messages say things once and give commands that run here, the docs say what the code does,
the demo explains itself, and the packages carry what the README links to.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import re
import shlex
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from _util import DEV_TOKEN, scaled

from gwclient import GatewayConfig, GatewayConnection, PairingRequired, ProtocolMismatch
from gwclient._errors import openclaw_command
from gwclient._extras import install_hint
from gwclient.cli import main
from gwclient.cli._demo import run_demo
from gwclient.cli._install_hint import install_hint as cli_install_hint
from gwclient.cli._parser import build_parser
from gwclient.testing import DevGateway

REPO = Path(__file__).resolve().parents[2]
WAIT = scaled(30.0)

pytestmark = pytest.mark.usefixtures("shutdown_all_after")


# ============================================================ 1, 2, 10: the test command


def _script_files() -> list[Path]:
    return sorted(p for d in ("scripts", ".ci") for p in (REPO / d).rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts)


@pytest.mark.parametrize("pattern", [r"apt-get\b[^\n]*\binstall\b", r"pip3? install --user", r"\bsudo "])
def test_no_script_installs_on_the_machine(pattern: str) -> None:
    offenders = [str(p.relative_to(REPO)) for p in [*_script_files(), REPO / "gwclient/testing/_sshd_install.py"]
                 if re.search(pattern, p.read_text(encoding="utf-8", errors="replace"))]
    assert offenders == []


def test_the_test_command_runs_in_its_own_venvs_and_stops_on_a_failed_install() -> None:
    text = (REPO / "scripts" / "test").read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "set -euo pipefail" in code and "inherit_errexit" in code
    assert not re.search(r"echo[^\n]*\$\(", code)  # a failing $(...) inside echo would be ignored
    assert '-m venv "$venv"' in code and 'venv="$GWCLIENT_CACHE/venv-$version"' in code
    pip_lines = [line for line in code.splitlines() if "pip install" in line]
    assert pip_lines and all('"$venv/bin/python" -m pip install' in line for line in pip_lines)
    assert '-m "not realgateway"' in code  # the other Pythons: the core tests
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "exec scripts/test\n" in ci
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "| `scripts/test` |" in readme


def test_a_failed_install_stops_the_test_command_with_the_installers_error(tmp_path: Path) -> None:
    # A python3 whose openclaw install fails the way npm would; the cache is empty.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$1" in *_openclaw_install.py) echo "npm ERR! simulated failure" >&2; exit 7;; esac\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": str(wrapper),
           "GWCLIENT_CACHE": str(tmp_path / "cache"), "GWCLIENT_TEST_OTHER_PYTHONS": "no"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "test"), "-k", "nothing_matches_this"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "npm ERR! simulated failure" in proc.stderr
    assert "==> ruff" not in proc.stderr and "==> pytest" not in proc.stderr  # stopped at once
    assert "openclaw: " not in proc.stdout
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("venv-*"))


# ============================================================ 3: approve commands that run


def test_the_approve_command_is_the_checkout_script_when_no_openclaw_is_on_path(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no openclaw here
    script = REPO / "scripts" / "openclaw"
    assert script.is_file() and os.stat(script).st_mode & stat.S_IXUSR
    err = PairingRequired("pairing required", request_id="req-1")
    assert err.approve_command == f"{script} devices approve req-1"
    assert f"`{script} devices approve req-1`" in str(err)
    (tmp_path / "openclaw").write_text("#!/bin/sh\n", encoding="utf-8")
    (tmp_path / "openclaw").chmod(0o755)
    assert PairingRequired("x", request_id="req-1").approve_command == "openclaw devices approve req-1"
    # A request id from the gateway is quoted: the printed command is safe to paste.
    assert openclaw_command("devices", "approve", "a b;rm -rf /") == "openclaw devices approve 'a b;rm -rf /'"


def test_scripts_openclaw_runs_the_pinned_openclaw_with_the_pinned_node() -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # the system Node (if any) would be too old
    proc = subprocess.run([str(REPO / "scripts" / "openclaw"), "--version"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    from gwclient.testing._openclaw_install import openclaw_version

    assert proc.stdout.startswith(f"OpenClaw {openclaw_version()}")


def test_real_gateway_has_a_require_pairing_option() -> None:
    from gwclient.testing._realgateway import REQUIRE_PAIRING_CONFIG

    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "real-gateway"), "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "--require-pairing" in proc.stdout
    assert REQUIRE_PAIRING_CONFIG == {"gateway": {"nodes": {"pairing": {"autoApproveLocal": False}}}}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "scripts/real-gateway --require-pairing" in readme and "autoApproveLocal: false" in readme


# ============================================================ 7: messages


def test_protocol_mismatch_says_it_once(gw: DevGateway) -> None:
    for err in (ProtocolMismatch("protocol mismatch", server_protocol=3), ProtocolMismatch("closed 1002")):
        assert str(copy.copy(err)) == str(err)  # a paused connection hands out copies
        assert str(err).count("gwclient speaks protocol 4") == 1
    gw.reject_next_like_protocol_3(1, respond=False)
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=DEV_TOKEN))
    for _ in range(2):  # the connect, then a request refused by the paused connection
        with pytest.raises(ProtocolMismatch) as info:
            conn.request("health", timeout=WAIT)
        text = str(info.value)
        assert text.count("upgrade the gateway") == 1 and text.count("does not accept protocol 4") == 1, text


class _Terminal(io.StringIO):
    """stdout and stderr on one terminal: what a user sees, in order."""

    def isatty(self) -> bool:
        return True


def test_pair_wait_clears_its_spinner_before_printing(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    with DevGateway(token=DEV_TOKEN, auto_approve=False) as gw:
        result: list[int] = []
        worker = threading.Thread(target=lambda: result.append(
            main(["--url", gw.url, "--token", DEV_TOKEN, "pair", "--wait", "--timeout", "60"])), name="cli-main")
        worker.start()
        assert gw.wait_for(lambda g: len(g.pending_pairing_requests()) == 1, timeout=WAIT)
        [pending] = gw.pending_pairing_requests()
        assert gw.wait_for(lambda g: "approve:" in terminal.getvalue(), timeout=WAIT)
        gw.approve(pending["requestId"])
        worker.join(WAIT)
    assert result == [0]
    shown = terminal.getvalue()
    assert "(Ctrl-C to stop)" in shown  # the spinner ran
    for line in ("pairing:   pairing required", "approve:   ", "pairing:   paired"):
        at = shown.index(line)
        before = shown[:at]
        # At the start of a line, or right after the spinner erased its own line.
        assert before.endswith("\n") or before.endswith("\r\033[K"), repr(shown[max(0, at - 80):at + 40])
    assert not re.search(r"to stop\)[^\r\n]", shown)


@pytest.mark.parametrize(("argv", "missing", "extra"), [
    (["demo"], ["psutil", "websockets"], "demo"),
    (["connections", "--port", "9"], ["psutil"], "cli"),
])
def test_a_missing_extra_names_everything_and_a_command_that_works(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], missing: list[str],
        extra: str) -> None:
    for module in missing:
        monkeypatch.setitem(sys.modules, module, None)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert " and ".join(missing) in err
    hint = install_hint(extra)
    assert hint == cli_install_hint(extra)  # the CLI's copy says the same
    assert hint in err and f"pip install 'gwclient[{extra}]'" in hint  # the index form, named as such
    command = shlex.split(hint.split(" (this checkout")[0])
    assert command == [sys.executable, "-m", "pip", "install", "-e", f"{REPO}[{extra}]"]
    # The checkout form works: pip resolves it (a dry run installs nothing).
    dry = subprocess.run([*command[:4], "--dry-run", "--no-deps", "--quiet", *command[4:]],
                         capture_output=True, text=True, timeout=300, check=False)
    assert dry.returncode == 0, dry.stderr


def test_the_poller_example_says_it_needs_psutil(tmp_path: Path) -> None:
    example = REPO / "examples" / "poller_and_watcher.py"
    assert "Needs psutil" in example.read_text(encoding="utf-8")
    code = "import runpy, sys; sys.modules['psutil'] = None; runpy.run_path(sys.argv[1], run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code, str(example)], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    assert proc.returncode == 1 and "needs psutil" in proc.stderr and "Traceback" not in proc.stderr


# ============================================================ 8: docs that are true


def test_shared_objects_are_what_the_readme_says(gw: DevGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_GATEWAY_URL", gw.url)
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", DEV_TOKEN)
    config = GatewayConfig.from_environment()
    follows = GatewayConnection.shared()
    fixed = GatewayConnection.shared(config)
    assert GatewayConnection.shared() is follows
    assert GatewayConnection.shared(GatewayConfig.from_environment()) is fixed  # an equal config
    assert follows is not fixed  # two objects...
    follows.request("health")
    fixed.request("health")
    assert gw.sockets_accepted == 1  # ...one socket
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "two objects that share one socket" in " ".join(readme.split())


def test_a_mistyped_openclaw_config_path_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from gwclient import ConfigError

    missing = tmp_path / "opencalw.json"
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(missing))
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        GatewayConfig.from_environment()
    assert main(["health"]) == 2
    assert str(missing) in capsys.readouterr().err
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", "")  # empty: not set
    GatewayConfig.from_environment()


def test_every_global_option_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("Global options, accepted", 1)[1].split("\n\n", 2)[1]
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    call = sub.choices["call"]
    globals_ = {s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
    globals_ &= {s for a in call._actions for s in a.option_strings}
    assert globals_ and {"--allow-insecure", "--timeout"} <= globals_
    assert [o for o in sorted(globals_) if f"`{o}" not in table] == []
    timeout_help = next(a.help for a in call._actions if "--timeout" in a.option_strings)
    assert timeout_help is not None and "chat/agent" in timeout_help


# ============================================================ 9: the demo explains itself


def test_the_demo_report_explains_what_happened_and_what_it_shows() -> None:
    out = io.StringIO()
    assert run_demo(out=out, phase_seconds=0.5) == 0, out.getvalue()
    report = out.getvalue()
    assert "An OpenClaw gateway is a server" in report
    for consumer in ("poller health", "rpc status", "watcher"):
        line = next(line for line in report.splitlines() if line.strip().startswith(consumer))
        assert " -- " in line, line  # what it did, in words
    assert "What the result shows:" in report
    for term, meaning in (("lifetimes", "ran 2 time(s)"), ("snapshots", "a fresh copy of the gateway's state"),
                          ("seq gaps", "a gap would have said some were lost")):
        assert term in report and meaning in report
    assert report.rstrip().endswith("OK: one gateway socket per process per lifetime")


# ============================================================ 10: packaging


def test_the_packages_carry_the_licence_and_everything_the_readme_links_to(tmp_path: Path) -> None:
    setup_cfg = (REPO / "setup.cfg").read_text(encoding="utf-8")
    for classifier in ("License :: OSI Approved :: MIT License", "Programming Language :: Python :: 3.11",
                       "Programming Language :: Python :: 3.12", "Programming Language :: Python :: 3.13",
                       "Operating System :: POSIX :: Linux", "Operating System :: MacOS"):
        assert classifier in setup_cfg
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 gwclient authors")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = sorted({m for m in re.findall(r"\]\(([^)#:]+)\)", readme)})
    targets = sorted({str(p.relative_to(REPO)) for link in links for p in
                      ([REPO / link] if (REPO / link).is_file() else sorted((REPO / link).glob("*.py")))})
    assert "docs/remote.md" in targets and "examples/legacy_script.py" in targets
    out = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    in_wheel = {n.split("/share/doc/gwclient/", 1)[1] for n in names if "/share/doc/gwclient/" in n}
    assert [t for t in targets if t not in in_wheel] == []
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    with tarfile.open(sdist) as tf:
        in_sdist = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert [t for t in [*targets, "LICENSE"] if t not in in_sdist] == []
