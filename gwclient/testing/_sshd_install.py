"""Fetch Debian's OpenSSH server into the cache for the real-sshd tests (standard library only).

Nothing is installed on the machine: no package is configured, no service enabled, no
user created, no root needed.  ``apt-get download`` fetches the ``.deb`` files and
``dpkg-deb -x`` unpacks them under ``${GWCLIENT_CACHE:-~/.cache/gwclient}/sshd``::

    sshd/root/usr/sbin/sshd                      the OpenSSH server binary
    sshd/root/usr/lib/x86_64-linux-gnu/...       shared libraries sshd needs that the machine
                                                 lacks (e.g. libwrap0), and libnss_wrapper
    sshd/root/gwclient-sshd.json                 what was unpacked (written last: "complete")
    sshd/apt/                                    apt's package cache (and, only if the
                                                 machine has no usable package lists, the
                                                 lists it downloaded): /var is never written

The libraries: every ``lib*`` package in openssh-server's ``Depends`` that dpkg does not
report as installed, then (recursively) theirs; afterwards ``ldd`` must find every library
sshd links against, with ``LD_LIBRARY_PATH`` pointing at the unpacked folders.

``libnss_wrapper`` (Debian's ``libnss-wrapper``, 30 kB) lets a root sshd run on a machine
without the ``sshd`` privilege-separation account that the package's install script would
have created: :class:`gwclient.testing.OpenSshServer` then gives sshd a private passwd file
(the machine's accounts plus ``sshd``) through ``NSS_WRAPPER_PASSWD`` instead of touching
``/etc/passwd``.

On a machine without ``apt-get``/``dpkg-deb`` (not Debian or Ubuntu) an existing
``/usr/sbin/sshd`` is used as it is; with neither, the install fails with a message.

``scripts/install-sshd`` runs this file directly (before gwclient's dependencies may be
importable): keep it standard-library only, with no imports from gwclient.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SYSTEM_SSHD", "SshdInstall", "SshdInstallError", "ensure_sshd", "find_sshd", "sshd_cache_dir"]

SYSTEM_SSHD = "/usr/sbin/sshd"
_PACKAGE = "openssh-server"
_NSS_WRAPPER_PACKAGE = "libnss-wrapper"
_MANIFEST = "gwclient-sshd.json"
_TIMEOUT = 600.0
_TAIL = 30
_SHARED_LIBRARY = re.compile(r"\.so(\.\d+)*$")


class SshdInstallError(RuntimeError):
    """Fetching or unpacking OpenSSH failed (the message carries the tool's output)."""


@dataclass(frozen=True)
class SshdInstall:
    """An sshd binary and what it needs to run: library folders and the optional NSS wrapper."""

    sshd: str
    lib_dirs: tuple[str, ...] = ()
    nss_wrapper: str | None = None
    packages: tuple[str, ...] = field(default=())

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """*base* (default: ``os.environ``) with the library folders first on ``LD_LIBRARY_PATH``."""
        env = dict(os.environ if base is None else base)
        if self.lib_dirs:
            old = env.get("LD_LIBRARY_PATH", "")
            env["LD_LIBRARY_PATH"] = os.pathsep.join([*self.lib_dirs, *([old] if old else [])])
        return env


def _cache_root() -> Path:
    env = os.environ.get("GWCLIENT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gwclient"


def sshd_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``<cache>/sshd``: where :func:`ensure_sshd` unpacks OpenSSH."""
    return (Path(cache_dir).expanduser() if cache_dir else _cache_root()) / "sshd"


def _read_manifest(root: Path) -> SshdInstall | None:
    try:
        data = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sshd = root / data.get("sshd", "")
    if not (sshd.is_file() and os.access(sshd, os.X_OK)):
        return None
    nss = data.get("nss_wrapper")
    return SshdInstall(sshd=str(sshd), lib_dirs=tuple(str(root / d) for d in data.get("lib_dirs", [])),
                       nss_wrapper=str(root / nss) if nss else None,
                       packages=tuple(data.get("packages", [])))


def find_sshd(cache_dir: str | Path | None = None) -> SshdInstall | None:
    """The unpacked sshd in the cache if complete, else the system's ``/usr/sbin/sshd`` if
    present, else ``None``.  ``GWCLIENT_SSHD`` names another binary (used as it is)."""
    named = os.environ.get("GWCLIENT_SSHD")
    if named:
        return SshdInstall(sshd=named)
    found = _read_manifest(sshd_cache_dir(cache_dir) / "root")
    if found is not None:
        return found
    if os.path.isfile(SYSTEM_SSHD) and os.access(SYSTEM_SSHD, os.X_OK):
        return SshdInstall(sshd=SYSTEM_SSHD)
    return None


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_TAIL:])


def _run(cmd: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    try:
        out = subprocess.run(list(cmd), cwd=cwd, env=None if env is None else dict(env), capture_output=True,
                             text=True, timeout=_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SshdInstallError(f"{' '.join(cmd)}: {exc}") from exc
    if out.returncode != 0:
        raise SshdInstallError(f"{' '.join(cmd)} failed (exit {out.returncode}):\n{_tail(out.stderr + out.stdout)}")
    return out.stdout


class _Apt:
    """``apt-get download`` with apt's caches inside *state*; the machine's package lists
    are used read-only, or, if they lack the packages, lists downloaded into *state*."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.own_lists = False
        (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)

    def _options(self) -> list[str]:
        opts = ["-o", f"Dir::Cache={self.state / 'cache'}", "-o", "Debug::NoLocking=1"]
        if self.own_lists:
            opts += ["-o", f"Dir::State::Lists={self.state / 'lists'}"]
        return opts

    def use_own_lists(self, progress: Callable[[str], None]) -> None:
        if self.own_lists:
            return
        self.own_lists = True
        (self.state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        progress(f"apt: downloading package lists into {self.state / 'lists'} (the machine's are not used) ...")
        _run(["apt-get", "-q", *self._options(), "update"])

    def download(self, packages: Sequence[str], into: Path, progress: Callable[[str], None]) -> None:
        try:
            _run(["apt-get", "-q", *self._options(), "download", *packages], cwd=into)
        except SshdInstallError:
            if self.own_lists:
                raise
            self.use_own_lists(progress)  # missing or stale machine lists
            _run(["apt-get", "-q", *self._options(), "download", *packages], cwd=into)


def _installed(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True,
                         text=True, check=False)
    return out.returncode == 0 and out.stdout.strip() == "installed"


def _lib_depends(deb: Path) -> list[str]:
    """The first alternative of every ``lib*`` dependency of *deb*."""
    depends = _run(["dpkg-deb", "-f", str(deb), "Depends"])
    names = []
    for clause in depends.split(","):
        first = clause.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, maxsplit=1)[0]
        if name.startswith("lib"):
            names.append(name)
    return names


def _lib_dirs(root: Path) -> list[str]:
    return sorted({str(p.parent.relative_to(root)) for p in root.rglob("*.so*")
                   if p.is_file() and _SHARED_LIBRARY.search(p.name)})


def _missing_libraries(sshd: Path, env: Mapping[str, str]) -> list[str]:
    out = _run(["ldd", str(sshd)], env=env)
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".install.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_sshd(cache_dir: str | Path | None = None, *,
                progress: Callable[[str], None] = lambda _line: None) -> SshdInstall:
    """The sshd for the tests: unpacked into the cache the first time (see the module
    docstring), reused afterwards.  Raises :class:`SshdInstallError` with the tool's output."""
    base = sshd_cache_dir(cache_dir)
    found = _read_manifest(base / "root")
    if found is not None:
        return found
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        if os.path.isfile(SYSTEM_SSHD) and os.access(SYSTEM_SSHD, os.X_OK):
            return SshdInstall(sshd=SYSTEM_SSHD)
        raise SshdInstallError(f"no {SYSTEM_SSHD} and no apt-get/dpkg-deb to fetch Debian's {_PACKAGE}: "
                               "install an OpenSSH server yourself, or set GWCLIENT_SSHD=/path/to/sshd")
    with _lock(base):
        found = _read_manifest(base / "root")
        if found is not None:
            return found
        progress(f"fetching Debian's {_PACKAGE} into {base} (once; about 2 MB; nothing is installed) ...")
        staging = Path(tempfile.mkdtemp(prefix="root.", dir=base))
        debs = Path(tempfile.mkdtemp(prefix="debs.", dir=base))
        try:
            apt = _Apt(base / "apt")
            wanted = [_PACKAGE, _NSS_WRAPPER_PACKAGE]
            fetched: list[str] = []
            while wanted:
                apt.download(wanted, debs, progress)
                fetched += wanted
                new = []
                for deb in sorted(debs.glob("*.deb")):
                    if deb.name.endswith(".done"):
                        continue
                    _run(["dpkg-deb", "-x", str(deb), str(staging)])
                    new += [d for d in _lib_depends(deb) if d not in fetched and d not in new and not _installed(d)]
                    deb.rename(deb.with_name(deb.name + ".done"))
                wanted = new
            sshd = staging / "usr" / "sbin" / "sshd"
            if not sshd.is_file():
                raise SshdInstallError(f"{_PACKAGE} has no usr/sbin/sshd")
            lib_dirs = _lib_dirs(staging)
            nss = next((str(p.relative_to(staging)) for p in staging.rglob("libnss_wrapper.so*")), None)
            inst = SshdInstall(sshd=str(sshd), lib_dirs=tuple(str(staging / d) for d in lib_dirs))
            missing = _missing_libraries(sshd, inst.env())
            if missing:
                raise SshdInstallError(f"sshd still lacks shared libraries after unpacking {fetched}: {missing}")
            version = subprocess.run([str(sshd), "-V"], env=inst.env(), capture_output=True, text=True,
                                     timeout=60, check=False)
            if "OpenSSH_" not in version.stderr + version.stdout:
                raise SshdInstallError(f"the unpacked sshd does not run:\n{_tail(version.stderr + version.stdout)}")
            manifest = {"sshd": "usr/sbin/sshd", "lib_dirs": lib_dirs, "nss_wrapper": nss, "packages": fetched}
            (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            shutil.rmtree(base / "root", ignore_errors=True)
            staging.rename(base / "root")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(debs, ignore_errors=True)
            shutil.rmtree(base / "apt", ignore_errors=True)  # apt's caches and lists: only needed once
    result = _read_manifest(base / "root")
    if result is None:
        raise SshdInstallError(f"the unpacked sshd under {base / 'root'} is incomplete")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install-sshd", description=(
        "Fetch Debian's OpenSSH server into the cache (no root, nothing installed on the machine) "
        "and print the sshd path."))
    parser.add_argument("--cache-dir", help="cache (default: $GWCLIENT_CACHE or ~/.cache/gwclient)")
    args = parser.parse_args(argv)
    try:
        inst = ensure_sshd(args.cache_dir, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (SshdInstallError, OSError) as exc:
        print(f"install-sshd: error: {exc}", file=sys.stderr)
        return 1
    print(inst.sshd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
