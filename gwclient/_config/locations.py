"""Where things are, resolved like the official OpenClaw tools: gwclient's state dir,
the OpenClaw home, state dir and config file, the client's version and platform name.
Pure functions of the environment (no I/O beyond looking the home directory up).

A blank ``HOME`` (``HOME=""``, or only spaces) means unset, as for the official tools: the
home is then the user's entry in the password database, never ``/``."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "client_version",
    "default_platform",
    "default_state_dir",
    "expand_user",
    "openclaw_config_path",
    "openclaw_state_dir",
]

_FALLBACK_VERSION = "0.1.0"


def client_version() -> str:
    # Imported lazily (gwclient/__init__ imports this module) and by name, so that type
    # checking this module does not pull in the whole package.
    try:
        package = importlib.import_module("gwclient")
    except ImportError:  # pragma: no cover - package being replaced
        return _FALLBACK_VERSION
    version = getattr(package, "__version__", None)
    return version if isinstance(version, str) and version else _FALLBACK_VERSION


def default_platform() -> str:
    """A stable, normalised platform name (``linux``, ``macos``, ``windows``, ``freebsd``...).

    The gateway pins ``client.platform`` when a device is paired; it must not change
    between runs, so it is derived from ``sys.platform`` only (no OS version)."""
    plat = sys.platform
    if plat.startswith("linux"):
        return "linux"
    if plat == "darwin":
        return "macos"
    if plat in ("win32", "cygwin", "msys"):
        return "windows"
    return plat.rstrip("0123456789") or plat


def _home(env: Mapping[str, str] | None) -> Path:
    source: Mapping[str, str] = os.environ if env is None else env
    home = source.get("HOME", "").strip()
    if home:
        return Path(home)
    if sys.platform != "win32":
        # Not Path.home(): with HOME="" it returns "/", so the state dir would be
        # /.local/state/gwclient.  Unset HOME: the password database, like expanduser().
        try:
            import pwd

            return Path(pwd.getpwuid(os.getuid()).pw_dir)
        except (ImportError, KeyError):  # pragma: no cover - no passwd entry
            pass
    return Path.home()  # Windows: USERPROFILE


def expand_user(value: str, env: Mapping[str, str] | None) -> Path:
    if value == "~" or value.startswith(("~/", "~" + os.sep)):
        return _home(env) / value[2:] if len(value) > 1 else _home(env)
    return Path(value).expanduser()


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where gwclient keeps its device identity and device tokens.

    ``$GWCLIENT_STATE_DIR``, else ``$XDG_STATE_HOME/gwclient`` (absolute paths only,
    as the XDG spec requires), else ``~/.local/state/gwclient``.  ``env`` defaults to
    ``os.environ``; ``HOME`` is taken from it when present."""
    source: Mapping[str, str] = os.environ if env is None else env
    explicit = source.get("GWCLIENT_STATE_DIR", "").strip()
    if explicit:
        return expand_user(explicit, source)
    xdg = source.get("XDG_STATE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "gwclient"
    return _home(source) / ".local" / "state" / "gwclient"


def _openclaw_home(env: Mapping[str, str]) -> Path:
    value = env.get("OPENCLAW_HOME", "").strip()
    if value:
        return expand_user(value, env)
    return _home(env)


_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.IGNORECASE)


def openclaw_profile(env: Mapping[str, str]) -> str | None:
    """``$OPENCLAW_PROFILE`` when it names a profile other than ``default`` (and is a
    valid profile name, as the official tools check), else ``None``."""
    value = env.get("OPENCLAW_PROFILE", "").strip()
    if not value or value.lower() == "default" or not _PROFILE_NAME.fullmatch(value):
        return None
    return value


def profile_port(env: Mapping[str, str]) -> int | None:
    """The official tools' gateway port of a named profile with no ``gateway.port``:
    20000 + FNV-1a(profile) % 40000."""
    profile = openclaw_profile(env)
    if profile is None:
        return None
    value = 2166136261
    for byte in profile.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return 20000 + value % 40000


def openclaw_state_dir(env: Mapping[str, str]) -> Path:
    """``$OPENCLAW_STATE_DIR``, else ``~/.openclaw-<profile>`` for ``$OPENCLAW_PROFILE``,
    else ``~/.openclaw`` (home: ``$OPENCLAW_HOME``, else ``$HOME``)."""
    value = env.get("OPENCLAW_STATE_DIR", "").strip()
    if value:
        return expand_user(value, {**env, "HOME": str(_openclaw_home(env))})
    profile = openclaw_profile(env)
    return _openclaw_home(env) / (".openclaw" if profile is None else f".openclaw-{profile}")


def openclaw_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The OpenClaw config file the official tools would read.

    ``$OPENCLAW_CONFIG_PATH``, else ``$OPENCLAW_STATE_DIR/openclaw.json``, else
    ``~/.openclaw-<profile>/openclaw.json`` with ``$OPENCLAW_PROFILE``, else
    ``~/.openclaw/openclaw.json`` (home: ``$OPENCLAW_HOME``, else ``$HOME``)."""
    source: Mapping[str, str] = os.environ if env is None else env
    explicit = source.get("OPENCLAW_CONFIG_PATH", "").strip()
    if explicit:
        return expand_user(explicit, {**source, "HOME": str(_openclaw_home(source))})
    return openclaw_state_dir(source) / "openclaw.json"
