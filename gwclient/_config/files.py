"""Private state files, opened safely (POSIX): the state directory must be ours and not
writable by others (fixed to 0700 if it is ours, refused otherwise); files are read
without following symlinks (``O_NOFOLLOW``), checked to be regular, and written
atomically through a private temporary file.  Used by the device identity and the
device-token store (:mod:`gwclient._config.device`); the rules are in docs/configuration.md."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import sys
from pathlib import Path

from .._errors import ConfigError

__all__ = ["check_state_dir", "ensure_private_dir", "fsync_dir", "read_nofollow", "write_private_temp"]

log = logging.getLogger("gwclient.device")


def ensure_private_dir(path: Path, error: type[ConfigError] = ConfigError) -> None:
    """Create ``path`` (and parents) if needed; every directory we create, parents
    included (``~/.local``, ``~/.local/state``), gets mode 0700 whatever the umask (the XDG
    rule; ``os.makedirs`` would give the parents 0777 under umask 000).  An existing one
    must pass :func:`check_state_dir`."""
    if path.is_dir():
        check_state_dir(path, error)
        return
    try:
        missing = []
        parent = path
        while not os.path.lexists(parent) and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.mkdir(directory, 0o700)  # the umask can only remove bits from 0700
        if not missing:
            os.makedirs(path, mode=0o700, exist_ok=True)  # raises the right error
        os.chmod(path, 0o700)  # umask may have removed bits; never widen an existing dir
    except OSError as exc:
        raise error(
            f"cannot create gwclient state directory {path}: {exc.strerror or exc}"
        ) from None
    check_state_dir(path, error)


def check_state_dir(path: Path, error: type[ConfigError] = ConfigError) -> None:
    """Refuse a state dir that others could write into (they could plant a device.json
    or a token file); fix the mode of one that is ours.  A missing dir passes (it is
    created 0700 when first written).  The checks and the chmod use one descriptor, so
    the directory cannot be swapped in between."""
    if sys.platform == "win32":
        return
    _check_link(path, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(f"cannot open gwclient state directory {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid != os.geteuid():
            raise error(
                f"gwclient state directory {path} belongs to uid {st.st_uid}, not to you "
                f"(uid {os.geteuid()}); use a directory you own (state_dir / GWCLIENT_STATE_DIR)"
            )
        if mode & 0o022:
            if mode & stat.S_ISVTX:
                raise error(
                    f"gwclient state directory {path} is a shared directory (mode {mode:o}); "
                    "use a private directory (state_dir / GWCLIENT_STATE_DIR)"
                )
            log.warning(
                "gwclient state directory %s was writable by others (mode %o); restricting it to 0700",
                path,
                mode,
            )
            os.fchmod(fd, 0o700)
    except OSError as exc:
        raise error(f"cannot secure gwclient state directory {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _check_link(path: Path, error: type[ConfigError]) -> None:
    """A state dir that is a symbolic link is followed only if nobody but you (or root)
    could have planted it: the link is yours (or root's) and so is the directory holding
    it, which others cannot write to.  Under a world- or group-writable parent (``/tmp``,
    sticky or not) anyone could have made the link first: refused."""
    try:
        link = os.lstat(path)
    except OSError:
        return  # missing (created later, as a real directory) or unreadable: open() says
    if not stat.S_ISLNK(link.st_mode):
        return
    parent = path.parent
    try:
        holder = os.stat(parent)
    except OSError as exc:
        raise error(f"cannot check the directory {parent} of gwclient state directory {path}: "
                    f"{exc.strerror or exc}") from None
    mine = (os.geteuid(), 0)
    if link.st_uid not in mine or holder.st_uid not in mine or stat.S_IMODE(holder.st_mode) & 0o022:
        raise error(
            f"gwclient state directory {path} is a symbolic link in {parent}, a directory others "
            "can write to (or not yours); gwclient follows such a link only from a directory that "
            "only you can write to: use the real directory (state_dir / GWCLIENT_STATE_DIR)"
        )


def read_nofollow(path: Path, what: str, error: type[ConfigError] = ConfigError) -> bytes | None:
    """The bytes of the regular file ``path`` (``None`` if it does not exist), opened with
    ``O_NOFOLLOW``: a symlink raises ``error`` and its target is left untouched.  A file
    readable by others is restricted to 0600 through the open descriptor."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_NONBLOCK", 0)  # a FIFO planted there must not block the open
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise error(
                f"{what} {path} is a symbolic link; gwclient does not follow links there "
                "(replace the link with the file itself)"
            ) from None
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077 and sys.platform != "win32":
            log.warning("%s %s was readable by others (mode %o); restricting it to 0600", what, path, mode)
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    if sys.platform == "win32":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_private_temp(directory: Path, prefix: str, data: bytes) -> Path:
    """Write ``data`` to a new 0600 temp file in ``directory`` (fsynced); return its path.

    The file is opened with ``O_CREAT | O_EXCL | O_WRONLY`` and mode 0600, so it is never
    readable by others, not even briefly."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    for _attempt in range(100):
        path = directory / f"{prefix}{os.getpid()}-{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 random name collisions
        raise FileExistsError(f"cannot create a temporary file in {directory}")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path
