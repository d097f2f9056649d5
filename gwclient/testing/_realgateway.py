"""Run a real OpenClaw gateway (``openclaw@2026.9.6`` on Node 24.21.0) for tests and local use.

Installing the pinned Node and openclaw (the cache layout, :func:`ensure_openclaw`,
version selection) is :mod:`gwclient.testing._openclaw_install`, re-exported here;
``scripts/install-openclaw`` runs that file directly.  openclaw 2026.5.12 and older also
listen on ``port + 2``, so an automatically chosen port is one whose ``port + 2`` is free
as well.  The command line (``python -m gwclient.testing._realgateway install|serve``,
``scripts/real-gateway``) is :func:`main`, at the end of this file.

:class:`RealGateway` runs ``openclaw gateway run --allow-unconfigured --auth token --port P
--bind loopback`` with ``HOME`` (and ``OPENCLAW_STATE_DIR=$HOME/.openclaw``) pointed at a
private folder, so nothing touches the caller's ``~/.openclaw``.  Details that matter:

* The shared token reaches the gateway through ``OPENCLAW_GATEWAY_TOKEN`` (the documented
  default of ``--token``), not ``argv``, so it is not visible in ``ps`` for the gateway's
  lifetime.  The ``devices`` CLI must get ``--token`` with ``--url`` (it refuses
  environment credentials for an explicit ``--url``), so the token is on its ``argv`` for
  the ~1.5 s the CLI runs.
* Every ``OPENCLAW_*`` variable of the caller is dropped (``OPENCLAW_GATEWAY_URL``/``TOKEN``
  exported for gwclient would otherwise leak in), ``NO_COLOR=1`` keeps ANSI codes out of
  the log, and ``FORCE_COLOR`` is dropped.
* The gateway's JSON file log defaults to ``/tmp/openclaw/openclaw-YYYY-MM-DD.log`` and no
  environment variable moves it; ``logging.file`` in ``openclaw.json`` does, so the config
  written here sets it to ``$HOME/.openclaw/logs/openclaw.log`` (unless the caller's config
  sets it).  Console output (stdout+stderr) goes to ``$HOME/gateway.log``.
* Readiness is the ``[gateway] ready`` console line.  :meth:`RealGateway.start` polls the
  console log file from the caller's thread: there is no reader thread, so nothing can
  block on a full pipe and no thread outlives :meth:`RealGateway.stop`.
* The gateway runs in its own session (``start_new_session``).  It also starts a "spawn
  broker" worker that calls ``setsid`` itself, so it is outside the process group;
  :meth:`RealGateway.stop` therefore tracks the gateway's descendants with psutil and
  ends any that outlive the gateway.
* A ``weakref.finalize`` hook kills a still-running gateway and removes the temporary home
  at interpreter exit if the object was never closed.

Nothing here logs or raises with the token in it: text taken from the gateway or the CLI is
passed through :meth:`RealGateway.redact` first.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from gwclient.testing._openclaw_install import (
    NODE_VERSION,
    OPENCLAW_VERSION,
    VERSION_ENV,
    OpenClawInstall,
    RealGatewayError,
    _cmd_install,
    _install_help,
    _install_options,
    _say,
    _tail,
    default_cache_dir,
    ensure_openclaw,
    find_openclaw,
    openclaw_version,
)
from gwclient.testing._realgw_openclaw_cli import OpenClawCli
from gwclient.testing._realgw_procs import (
    _PORT_SPAN,
    _deep_merge,
    _descendants,
    _emergency_cleanup,
    _end_processes,
    _free_loopback_port,
    _Runtime,
    port_problem,
)

__all__ = [
    "NODE_VERSION",
    "OPENCLAW_VERSION",
    "VERSION_ENV",
    "OpenClawInstall",
    "RealGateway",
    "RealGatewayError",
    "default_cache_dir",
    "ensure_openclaw",
    "find_openclaw",
    "main",
    "openclaw_version",
    "port_problem",
]

_READY_RE = re.compile(rb"\[gateway\] ready\b")
_PORT_IN_USE_RE = re.compile(r"EADDRINUSE|already in use|already listening")
_POLL_INTERVAL = 0.05
_PROGRESS_EVERY = 5.0

_LOG = logging.getLogger(__name__)


def _new_token() -> str:
    """A random gateway token that never starts with "-" (a command line would read
    ``--token -x...`` as a missing value)."""
    return "rg" + secrets.token_urlsafe(24)


class _PortInUse(RealGatewayError):
    """The gateway could not bind its port (only retried for an automatically chosen port)."""


class RealGateway:
    """One real ``openclaw gateway run`` on loopback with a private ``HOME``.

    >>> with RealGateway() as gw:              # doctest: +SKIP
    ...     ws = websocket.create_connection(gw.url, suppress_origin=True)

    Not thread-safe: drive one instance from one thread.  ``stop()`` keeps the home (state
    survives ``restart()``); ``close()`` (or leaving the ``with`` block) also removes a
    temporary home.  Measured on a 2026.9.6 gateway: ~10 s to ready, ~0.4 s to stop,
    ~1 GB RSS for the process tree.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        port: int | None = None,
        home: str | Path | None = None,
        config: Mapping[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        install: bool = True,
        startup_timeout: float = 90.0,
        version: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """
        :param token: the gateway's shared token; ``None`` generates a random one.
        :param port: loopback port; ``None`` picks a free one (never 18789), kept across
            restarts, and re-picked if the first start finds it taken.
        :param home: ``HOME`` of the gateway; ``None`` creates a temporary folder that
            ``close()`` removes.  A given folder is created if needed and never removed.
        :param config: written as JSON to ``$HOME/.openclaw/openclaw.json`` before the first
            start (merged over the ``logging.file`` default).  With ``None`` an existing
            file is left alone and a missing one gets only the default.
        :param cache_dir: install cache (default :func:`default_cache_dir`).
        :param install: install the pinned Node/openclaw when missing; if ``False`` a
            missing install is an error.
        :param startup_timeout: seconds to wait for ``[gateway] ready``.
        :param version: the openclaw release; ``None`` means :func:`openclaw_version`
            (the pinned one unless ``GWCLIENT_OPENCLAW_VERSION`` names another).
        :param progress: called with one line before a (slow) install starts.
        """
        if token is not None and not token:
            raise ValueError("token must be a non-empty string")
        if port is not None and not 0 < port <= 65535 - _PORT_SPAN:
            raise ValueError(f"invalid port {port} (1-{65535 - _PORT_SPAN}: the gateway also uses port+{_PORT_SPAN})")
        self._version = version or openclaw_version()
        self._progress = progress
        self._token = token if token is not None else _new_token()
        self._auto_port = port is None
        self._port = port if port is not None else _free_loopback_port()
        self._rt = _Runtime()
        if home is None:
            self._home = Path(tempfile.mkdtemp(prefix="realgw-")).resolve()
            self._rt.temp_home = self._home
        else:
            self._home = Path(home).expanduser().resolve()
        self._finalizer = weakref.finalize(self, _emergency_cleanup, self._rt)
        self._config = copy.deepcopy(dict(config)) if config is not None else None
        self._cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._install = install
        self._startup_timeout = startup_timeout
        self._inst: OpenClawInstall | None = None
        self._config_written = False
        self._started_once = False
        self._closed = False
        self.last_startup_seconds: float | None = None
        """Seconds from launch to ``[gateway] ready`` for the latest successful start."""
        self.last_stop_seconds: float | None = None
        """Seconds the latest :meth:`stop` took (SIGTERM to all processes gone)."""
        self.last_restart_seconds: float | None = None
        """Seconds the latest :meth:`restart` took (stop + start to ready)."""

    # -- properties --------------------------------------------------------------------

    @property
    def token(self) -> str:
        return self._token

    def set_token(self, token: str) -> None:
        """Change the shared token; it takes effect at the next :meth:`start` (a rotated
        token: ``stop()``, ``set_token()``, ``start()``; paired devices keep their pairing)."""
        if not token or token.startswith("-"):
            raise ValueError("token must be a non-empty string not starting with '-'")
        self._token = token

    @property
    def version(self) -> str:
        """The openclaw release this gateway runs."""
        return self._version

    @property
    def version_info(self) -> tuple[int, ...]:
        """:attr:`version` as numbers, for comparisons: ``(2026, 9, 6)``."""
        return tuple(int(part) for part in self._version.split("-")[0].split("."))

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}"

    @property
    def home(self) -> Path:
        return self._home

    @property
    def state_dir(self) -> Path:
        """``$HOME/.openclaw`` (``OPENCLAW_STATE_DIR``)."""
        return self._home / ".openclaw"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "openclaw.json"

    @property
    def log_path(self) -> Path:
        """The gateway's console output (stdout + stderr), appended across restarts."""
        return self._home / "gateway.log"

    @property
    def file_log_path(self) -> Path:
        """Where the default config points the gateway's JSON-lines file log."""
        return self.state_dir / "logs" / "openclaw.log"

    @property
    def pid(self) -> int | None:
        """The gateway process id while running, else ``None``."""
        proc = self._rt.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def install(self) -> OpenClawInstall | None:
        """The install in use (known after the first :meth:`start`)."""
        return self._inst

    def __repr__(self) -> str:
        state = "running" if self.running else ("closed" if self._closed else "stopped")
        return f"<RealGateway {self.url} home={str(self._home)!r} {state}>"

    # -- helpers -----------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """*text* with the token replaced by ``***``."""
        return text.replace(self._token, "***")

    def log_text(self) -> str:
        """The console log so far (all runs, redacted)."""
        try:
            raw = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return self.redact(raw.decode("utf-8", errors="replace"))

    def rss_bytes(self) -> int:
        """Resident memory of the gateway and all its descendants (0 when stopped)."""
        import psutil  # imported here: `install` needs only the standard library

        pid = self.pid
        if pid is None:
            return 0
        total = 0
        procs = [psutil.Process(pid), *_descendants(pid), *self._rt.descendants]
        for proc in {p.pid: p for p in procs}.values():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def env(self) -> dict[str, str]:
        """The environment the gateway and the CLI run with (without the token)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_") and k != "FORCE_COLOR"}
        inst = self._require_install()
        env["PATH"] = os.pathsep.join([str(inst.node_bin_dir), env.get("PATH", os.defpath)])
        env["HOME"] = str(self._home)
        env["OPENCLAW_STATE_DIR"] = str(self.state_dir)
        env["NO_COLOR"] = "1"
        return env

    # -- the openclaw CLI ----------------------------------------------------------------

    def _cli(self) -> OpenClawCli:
        return OpenClawCli(self._require_install(), self.url, self._token, self._home, self.env(), self.redact)

    def run_cli(self, *args: str, timeout: float = 60.0, gateway_auth: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``openclaw <args>`` with the gateway's environment.

        With *gateway_auth*, ``--url ws://127.0.0.1:P --token T`` are appended (needed by
        every command that talks to the gateway; without ``--url`` the CLI would target
        the default port 18789).  Raises :class:`RealGatewayError` (with the redacted
        output) on a non-zero exit or a timeout.
        """
        return self._cli().run(*args, timeout=timeout, gateway_auth=gateway_auth)

    def devices_list(self, *, timeout: float = 60.0) -> dict[str, Any]:
        """``openclaw devices list --json``: ``{"pending": [...], "paired": [...]}``."""
        return self._cli().devices_list(timeout=timeout)

    def devices_approve(self, request_id: str, *, timeout: float = 60.0) -> Any:
        """``openclaw devices approve <request_id> --json``; returns the parsed JSON."""
        return self._cli().devices_approve(request_id, timeout=timeout)

    def _require_install(self) -> OpenClawInstall:
        if self._inst is None:
            if self._install:
                self._inst = ensure_openclaw(self._cache_dir, version=self._version, progress=self._progress)
            else:
                self._inst = find_openclaw(self._cache_dir, version=self._version)
                if self._inst is None:
                    raise RealGatewayError(
                        f"openclaw {self._version} / Node {NODE_VERSION} not installed "
                        f"under {self._cache_dir}; run scripts/install-openclaw"
                    )
        return self._inst

    def _prepare_home(self) -> None:
        self._home.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        if self._config_written:
            return
        if self._config is not None or not self.config_path.exists():
            defaults: dict[str, Any] = {"logging": {"file": str(self.file_log_path)}}
            merged = _deep_merge(defaults, self._config or {})
            fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(merged, fh, indent=2)
                fh.write("\n")
        self._config_written = True

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Launch the gateway and block until ``[gateway] ready`` (no-op if running).

        Raises :class:`RealGatewayError` with the last 40 log lines if the gateway exits or
        is not ready within ``startup_timeout``; nothing is left running in that case.
        """
        if self._closed:
            raise RealGatewayError("RealGateway is closed")
        if self.running:
            return
        self._terminate(timeout=5)  # reap a gateway that exited on its own, and its helpers
        if not self._started_once:  # before any install: a taken port fails at once
            problem = port_problem(self._port)
            if problem is not None and not self._auto_port:
                raise RealGatewayError(f"cannot start the gateway: {problem}")
            if problem is not None:
                self._port = _free_loopback_port()
        inst = self._require_install()
        self._prepare_home()
        attempts = 3 if self._auto_port and not self._started_once else 1
        for attempt in range(1, attempts + 1):
            try:
                self._launch(inst)
                break
            except _PortInUse:
                if attempt == attempts:
                    raise
                old, self._port = self._port, _free_loopback_port()
                _LOG.warning("port %d was taken; retrying on port %d", old, self._port)
        self._started_once = True

    def _launch(self, inst: OpenClawInstall) -> None:
        # Checked first: a gateway whose port is taken retries for ~30 s before giving up.
        problem = port_problem(self._port)
        if problem is not None:
            raise _PortInUse(f"cannot start the gateway: {problem}")
        env = self.env()
        env["OPENCLAW_GATEWAY_TOKEN"] = self._token
        argv = [
            str(inst.node),
            str(inst.openclaw_entry),
            "gateway",
            "run",
            "--allow-unconfigured",
            "--auth",
            "token",
            "--port",
            str(self._port),
            "--bind",
            "loopback",
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"--- RealGateway: starting on port {self._port} ---\n".encode())
            log.flush()
            offset = log.tell()
            t0 = time.monotonic()
            proc = subprocess.Popen(
                argv,
                cwd=self._home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._rt.proc = proc
        self._rt.descendants = []
        _LOG.debug("gateway pid %d starting on %s", proc.pid, self.url)
        try:
            self._wait_ready(proc, offset, t0)
        except BaseException:
            self._terminate(timeout=5)
            raise
        self.last_startup_seconds = time.monotonic() - t0
        self._rt.descendants = _descendants(proc.pid)
        _LOG.debug("gateway %s ready in %.1f s", self.url, self.last_startup_seconds)

    def _wait_ready(self, proc: subprocess.Popen[bytes], offset: int, t0: float) -> None:
        deadline = t0 + self._startup_timeout
        next_note = t0 + _PROGRESS_EVERY
        carry = b""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            while True:
                data = carry + log.read()
                if _READY_RE.search(data):
                    return
                if self._progress is not None and time.monotonic() >= next_note:
                    next_note += _PROGRESS_EVERY
                    self._progress(f"still starting ({time.monotonic() - t0:.0f} s; usually 10-40 s) ...")
                carry = data[-128:]
                code = proc.poll()
                if code is not None:
                    problem = f"exited with code {code} before it was ready"
                    break
                if time.monotonic() >= deadline:
                    problem = f"was not ready within {self._startup_timeout:g} s"
                    break
                time.sleep(_POLL_INTERVAL)
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            tail = _tail(self.redact(log.read().decode("utf-8", errors="replace")))
        if _PORT_IN_USE_RE.search(tail):
            raise _PortInUse(f"openclaw gateway {problem}: port {self._port} is in use; last log lines:\n" + tail)
        raise RealGatewayError(f"openclaw gateway on port {self._port} {problem}; last log lines:\n{tail}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the gateway's process group, SIGKILL after *timeout*; idempotent.

        Returns once the gateway and every process it started are gone.
        """
        if self._rt.proc is None:
            return
        t0 = time.monotonic()
        self._terminate(timeout)
        self.last_stop_seconds = time.monotonic() - t0
        _LOG.debug("gateway %s stopped in %.2f s", self.url, self.last_stop_seconds)

    def _terminate(self, timeout: float) -> None:
        proc = self._rt.proc
        if proc is None:
            return
        # Snapshot before signalling: the spawn broker is in its own session, so only this
        # list reaches it.  The leader stays unreaped (pid reserved) until wait() returns,
        # so killpg() cannot hit a recycled process group.
        known = {p.pid: p for p in [*self._rt.descendants, *_descendants(proc.pid)]}
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _LOG.warning("gateway pid %d ignored SIGTERM for %g s; killing", proc.pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._rt.proc = None
        self._rt.descendants = []
        _end_processes(list(known.values()), timeout=5)

    def restart(self) -> None:
        """Stop, then start again on the same port and home (state is kept)."""
        t0 = time.monotonic()
        self.stop()
        self.start()
        self.last_restart_seconds = time.monotonic() - t0

    def close(self) -> None:
        """Stop and remove the temporary home (if this object created it); idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            self._finalizer()

    def __enter__(self) -> RealGateway:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- the command line ---------------------------------------------------------------------

_TOKEN_FILE = "realgw-token"
#: ``--require-pairing``: no silent pairing of local devices (openclaw >= 2026.9.6).
REQUIRE_PAIRING_CONFIG = {"gateway": {"nodes": {"pairing": {"autoApproveLocal": False}}}}


def _serve_token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The token to use and a note on how long it lives.

    With ``--home`` the token is kept in ``<home>/realgw-token`` (mode 0600), so a restart
    without ``--token`` keeps running clients working.
    """
    if args.home is None:
        note = "a new token on every run: pass --token (or --home) to keep it across restarts"
        return args.token, note
    path = Path(args.home).expanduser() / _TOKEN_FILE
    if args.token is None:
        with contextlib.suppress(OSError):
            kept = path.read_text(encoding="utf-8").strip()
            if kept:
                return kept, f"token kept from the previous run ({path})"
    token = args.token or _new_token()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, f"token kept in {path} for the next run"


def _cmd_serve(args: argparse.Namespace) -> int:
    token, token_note = _serve_token(args)
    gw = RealGateway(
        token=token,
        port=args.port,
        home=args.home,
        config=REQUIRE_PAIRING_CONFIG if args.require_pairing else None,
        cache_dir=args.cache_dir,
        version=args.openclaw_version,
        progress=_say,
    )
    # Ctrl-C and SIGTERM both end the wait and stop the gateway cleanly (SIGINT explicitly:
    # a shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(f"starting openclaw {gw.version} gateway on port {gw.port} in {gw.home} ...", flush=True)
        gw.start()
        print(
            f"ready in {gw.last_startup_seconds or 0:.1f} s (pid {gw.pid})\n"
            f"url:   {gw.url}\n"
            f"token: {gw.token}  ({token_note})\n"
            f"log:   {gw.log_path}\n\n"
            f"export OPENCLAW_GATEWAY_URL={gw.url} OPENCLAW_GATEWAY_TOKEN={gw.token}\n\n"
            + (_pairing_note(gw) if args.require_pairing else "")
            + "Ctrl-C stops it.",
            flush=True,
        )
        while gw.running:
            time.sleep(0.5)
        print("the gateway exited on its own; last log lines:\n" + _tail(gw.log_text()))
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not abandon the gateway half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        gw.close()
        print("stopped.", flush=True)


_CHECKOUT_OPENCLAW = Path(__file__).resolve().parents[2] / "scripts" / "openclaw"


def _openclaw_program() -> str:
    """``openclaw`` on PATH, else this checkout's ``scripts/openclaw``, else ``openclaw``."""
    if shutil.which("openclaw"):
        return "openclaw"
    if _CHECKOUT_OPENCLAW.is_file() and os.access(_CHECKOUT_OPENCLAW, os.X_OK):
        return shlex.quote(str(_CHECKOUT_OPENCLAW))
    return "openclaw"


def approve_command_line(gw: RealGateway, request_id: str) -> str:
    """The shell command that approves ``request_id`` on this gateway: the openclaw CLI of
    the gateway host (``scripts/openclaw`` when no ``openclaw`` is on PATH), run in the
    gateway's own home and state dir (where the host's CLI identity lives) with the URL and
    token (``--url`` makes the CLI ignore its config's credentials)."""
    return (f"HOME={shlex.quote(str(gw.home))} OPENCLAW_STATE_DIR={shlex.quote(str(gw.state_dir))} "
            f"{_openclaw_program()} devices approve {shlex.quote(request_id)} --json --url {shlex.quote(gw.url)} "
            f"--token {shlex.quote(gw.token)}")


def _pairing_note(gw: RealGateway) -> str:
    line = approve_command_line(gw, "<requestId>").replace("'<requestId>'", "<requestId>")
    return (
        "pairing: every new device needs approval (gateway.nodes.pairing.autoApproveLocal: false).\n"
        "  In a shell with the export line above, `gwclient pair` prints the request id; approve it\n"
        "  as this gateway's host would, in any shell:\n"
        f"  {line}\n\n"
    )


def _port_arg(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port <= 65535 - _PORT_SPAN:
        raise argparse.ArgumentTypeError(
            f"port {port} is out of range (1-{65535 - _PORT_SPAN}; the gateway also uses port+{_PORT_SPAN})"
        )
    return port


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``install`` (print the openclaw bin path) or ``serve`` (run until Ctrl-C)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m gwclient.testing._realgateway",
        description=f"Install or run a real OpenClaw gateway (pinned: {OPENCLAW_VERSION}).",
    )
    common = _install_options()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", parents=[common], help=_install_help())
    serve = sub.add_parser("serve", parents=[common], help="run a local gateway until Ctrl-C")
    serve.add_argument("--port", type=_port_arg, help="loopback port (default: a free one)")
    serve.add_argument("--token", help="shared token (default: random, or the one kept in --home)")
    serve.add_argument(
        "--home",
        help="HOME for the gateway (default: a temporary folder removed on exit); reuse a folder to keep state",
    )
    serve.add_argument(
        "--require-pairing", action="store_true",
        help="turn silent local pairing off (gateway.nodes.pairing.autoApproveLocal: false): every new "
             "device must be approved, e.g. with scripts/openclaw devices approve <id> (openclaw >= 2026.9.6)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.command == "install":
            return _cmd_install(args)
        return _cmd_serve(args)
    except RealGatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
