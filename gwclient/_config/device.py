"""Ed25519 device identity and the device-token store (PROTOCOL.md §2.3, §2.4, §3.4).

Files in the state directory (created 0700)::

    device.json         {"version":1, "deviceId", "publicKey", "privateKey", "createdAtMs"}
                        keys raw, unpadded base64url; the private key is the 32-byte seed
    device-tokens.json  device tokens issued in hello-ok, keyed by gateway/device/role
    .lock               flock()ed while device-tokens.json is rewritten (reads take no lock)

Both JSON files are 0600 and replaced atomically, so readers never see partial data.
Nothing here logs or formats a private key or a token.

File-system rules (POSIX; docs/configuration.md "State directory"):

* ``device.json``, ``device-tokens.json`` and ``.lock`` are opened with ``O_NOFOLLOW``: a
  symbolic link in their place is refused with a :class:`ConfigError` naming the path,
  and its target is never read, chmod-ed, created or written.
* The state directory itself must be owned by the effective user.  If it is ours and
  writable by group or others, it is fixed to 0700 (with a warning); if it also has the
  sticky bit (a shared directory such as ``/tmp``) or belongs to someone else, it is
  refused with a :class:`ConfigError`.  Its parents are not checked.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .._errors import ConfigError
from .files import check_state_dir, ensure_private_dir, fsync_dir, read_nofollow, write_private_temp

if sys.platform != "win32":
    import fcntl

__all__ = [
    "IDENTITY_FILENAME",
    "TOKENS_FILENAME",
    "DeviceIdentity",
    "DeviceStoreError",
    "DeviceTokenStore",
    "StoredDeviceToken",
    "b64url_decode",
    "b64url_encode",
]

log = logging.getLogger("gwclient.device")

IDENTITY_FILENAME = "device.json"
TOKENS_FILENAME = "device-tokens.json"
_LOCK_FILENAME = ".lock"
_FILE_VERSION = 1


class DeviceStoreError(ConfigError, OSError):
    """The device-token file or its lock could not be written (disk full, permissions...).

    Both a :class:`ConfigError` (a gwclient error) and an :class:`OSError`, so callers that
    treat token persistence as best effort can catch it as an I/O error."""


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (raises ``ValueError``)."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError("invalid base64url") from exc


# --------------------------------------------------------------------------- identity


class DeviceIdentity:
    """An Ed25519 key pair identifying this device to the gateway.

    ``device_id`` is the lowercase hex SHA-256 of the raw 32-byte public key.  Immutable;
    the private key is never part of ``repr`` and is not exposed as an attribute."""

    __slots__ = ("_created_at_ms", "_device_id", "_private_key", "_public_key")

    _private_key: Ed25519PrivateKey
    _public_key: bytes
    _device_id: str
    _created_at_ms: int

    def __init__(self, private_key: Ed25519PrivateKey, *, created_at_ms: int | None = None) -> None:
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_private_key", private_key)
        object.__setattr__(self, "_public_key", public)
        object.__setattr__(self, "_device_id", hashlib.sha256(public).hexdigest())
        object.__setattr__(
            self,
            "_created_at_ms",
            int(time.time() * 1000) if created_at_ms is None else created_at_ms,
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("DeviceIdentity is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("DeviceIdentity is immutable")

    # -- construction
    @classmethod
    def generate(cls) -> DeviceIdentity:
        """A fresh random identity (not stored anywhere)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes, *, created_at_ms: int | None = None) -> DeviceIdentity:
        """The identity for a raw 32-byte Ed25519 private key (seed)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed), created_at_ms=created_at_ms)

    @classmethod
    def load_or_create(cls, state_dir: Path | str) -> DeviceIdentity:
        """Load ``state_dir/device.json``, creating it (0600, dir 0700) on first use.

        Safe against concurrent first use by several threads or processes: the file is
        written completely to a private temp file and hard-linked into place, which
        fails if another creator won; the loser then reads the winner's identity.
        A corrupt file raises :class:`ConfigError` (an identity is never replaced
        silently: a new key means a new device that must be paired again)."""
        directory = Path(state_dir).expanduser()
        path = directory / IDENTITY_FILENAME
        check_state_dir(directory)
        existing = cls._read_file(path)
        if existing is not None:
            return existing
        ensure_private_dir(directory)
        identity = cls.generate()
        data = json.dumps(identity._to_json(), indent=2).encode("utf-8") + b"\n"
        try:
            tmp = write_private_temp(directory, ".device-", data)
        except OSError as exc:
            raise ConfigError(
                f"cannot write device identity in {directory}: {exc.strerror or exc}"
            ) from None
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another thread/process created it first: use theirs
        except OSError as exc:
            raise ConfigError(
                f"cannot create device identity file {path}: {exc.strerror or exc}"
            ) from None
        else:
            fsync_dir(directory)
            log.info("created device identity %s in %s", identity.device_id, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        winner = cls._read_file(path)
        if winner is None:  # removed between link and read: extremely unlikely
            raise ConfigError(f"device identity file {path} disappeared while being created")
        return winner

    @classmethod
    def _read_file(cls, path: Path) -> DeviceIdentity | None:
        raw = read_nofollow(path, "device identity file")
        if raw is None:
            return None
        try:
            return cls._from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError, TypeError, RecursionError) as exc:
            # json's decoder recurses per nesting level: a file nested ~1000 deep raises
            # RecursionError, which must not escape as a retried connection failure.
            reason = (str(exc) if isinstance(exc, _IdentityFileError)
                      else "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON")
            raise ConfigError(
                f"corrupt device identity file {path}: {reason}; move it away to create a "
                "new identity (the new device will have to be paired again)"
            ) from None

    def _to_json(self) -> dict[str, Any]:
        seed = self._private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {
            "version": _FILE_VERSION,
            "deviceId": self._device_id,
            "publicKey": b64url_encode(self._public_key),
            "privateKey": b64url_encode(seed),
            "createdAtMs": self._created_at_ms,
        }

    @classmethod
    def _from_json(cls, data: object) -> DeviceIdentity:
        if not isinstance(data, dict):
            raise _IdentityFileError("not a JSON object")
        if data.get("version") != _FILE_VERSION:
            raise _IdentityFileError("unsupported version")
        try:
            seed = b64url_decode(data["privateKey"])
            public = b64url_decode(data["publicKey"])
        except (KeyError, ValueError):
            raise _IdentityFileError("missing or malformed key") from None
        if len(seed) != 32 or len(public) != 32:
            raise _IdentityFileError("keys must be 32 bytes")
        created = data.get("createdAtMs")
        if isinstance(created, bool) or not isinstance(created, int):
            created = None
        identity = cls.from_seed(seed, created_at_ms=created)
        if identity.public_key != public:
            raise _IdentityFileError("public key does not match the private key")
        if data.get("deviceId") != identity.device_id:
            raise _IdentityFileError("deviceId does not match the public key")
        return identity

    # -- accessors
    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def public_key(self) -> bytes:
        """Raw 32-byte Ed25519 public key."""
        return self._public_key

    @property
    def public_key_b64url(self) -> str:
        """The public key as unpadded base64url (``connect.params.device.publicKey``)."""
        return b64url_encode(self._public_key)

    @property
    def created_at_ms(self) -> int:
        return self._created_at_ms

    def sign(self, payload: str) -> str:
        """Ed25519 signature of ``payload`` (UTF-8) as unpadded base64url."""
        return b64url_encode(self._private_key.sign(payload.encode("utf-8")))

    def __repr__(self) -> str:
        return f"DeviceIdentity(device_id={self._device_id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceIdentity):
            return NotImplemented
        return self._public_key == other._public_key

    def __hash__(self) -> int:
        return hash(self._public_key)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("DeviceIdentity cannot be pickled (it holds a private key)")


class _IdentityFileError(ValueError):
    """Why a device.json is unusable (message has no key material)."""


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class StoredDeviceToken:
    """A device token issued by a gateway (``hello-ok.auth.deviceToken``) and its scopes."""

    token: str = field(repr=False)
    role: str
    scopes: tuple[str, ...]
    issued_at_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", tuple(self.scopes))


#: (file, fault) pairs already warned about (a broken token file is read on every connect).
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


class DeviceTokenStore:
    """Device tokens in ``state_dir/device-tokens.json``, keyed by (gateway, device, role).

    Writes happen under a threading lock and an ``flock`` on ``state_dir/.lock`` (POSIX),
    read-modify-write, then an atomic ``os.replace`` of a 0600 temp file, so concurrent
    writers in threads or processes do not lose each other's updates.  A corrupt file
    (not JSON, nested too deeply, the wrong shape, unreadable) is treated as empty (with a
    warning) and overwritten by the next save; ``load(..., strict=True)`` (what a
    connection without a shared token uses: the stored token is its credential) raises
    :class:`DeviceStoreError` naming the file instead."""

    def __init__(self, state_dir: Path | str) -> None:
        self._dir = Path(state_dir).expanduser()
        self._path = self._dir / TOKENS_FILENAME
        self._lock_path = self._dir / _LOCK_FILENAME
        self._thread_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"DeviceTokenStore({str(self._path)!r})"

    # -- public API
    def load(self, gateway_key: str, device_id: str, role: str, *, strict: bool = False) -> StoredDeviceToken | None:
        with self._locked(shared=True):
            tokens = self._read(strict=strict)
        entry = tokens.get(gateway_key, {}).get(device_id, {}).get(role)
        return self._entry_to_token(entry, role)

    def save(  # noqa: PLR0917 - signature shared with the connection layer
        self,
        gateway_key: str,
        device_id: str,
        role: str,
        token: str,
        scopes: Iterable[str],
        issued_at_ms: int | None = None,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("device token must be a non-empty string")
        scope_list = [s for s in scopes if isinstance(s, str)]
        entry: dict[str, Any] = {
            "token": token,
            "role": role,
            "scopes": scope_list,
            "issuedAtMs": issued_at_ms,
            "updatedAtMs": int(time.time() * 1000),
        }
        with self._locked(shared=False):
            tokens = self._read()
            tokens.setdefault(gateway_key, {}).setdefault(device_id, {})[role] = entry
            self._write(tokens)

    def clear(self, gateway_key: str, device_id: str, role: str) -> bool:
        """Forget a stored token; True if there was one."""
        with self._locked(shared=False):
            tokens = self._read()
            devices = tokens.get(gateway_key, {})
            roles = devices.get(device_id, {})
            if role not in roles:
                return False
            del roles[role]
            if not roles:
                del devices[device_id]
            if not devices:
                del tokens[gateway_key]
            self._write(tokens)
        return True

    # -- internals
    @contextlib.contextmanager
    def _locked(self, *, shared: bool) -> Iterator[None]:
        with self._thread_lock:
            if sys.platform == "win32":
                yield
                return
            if shared and not self._path.exists():
                yield  # nothing to read; don't create the directory just to look
                return
            if shared:
                # A read takes no lock file: writers replace the file atomically, so a
                # reader sees the old or the new one whole.  It writes nothing either, so a
                # state dir on a read-only mount works with a stored device token.
                check_state_dir(self._dir, DeviceStoreError)
                yield
                return
            ensure_private_dir(self._dir, DeviceStoreError)
            try:
                # O_NOFOLLOW: a (dangling) symlink named .lock must not create or lock
                # a file at its target.
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                if os.path.islink(self._lock_path):
                    raise DeviceStoreError(
                        f"lock file {self._lock_path} is a symbolic link; gwclient does not "
                        "follow links there (remove it)"
                    ) from None
                raise DeviceStoreError(
                    f"cannot open lock file {self._lock_path}: {exc.strerror or exc}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _unusable(self, strict: bool, why: str) -> dict[str, dict[str, dict[str, Any]]]:
        if strict:
            raise DeviceStoreError(
                f"device token file {self._path} {why}; move it away (the device then connects "
                "without a stored token and must be paired again)"
            )
        key = (str(self._path), why)
        with _warned_lock:
            first = key not in _warned
            _warned.add(key)
        if first:  # once per file and fault: a shared token reconnects with it ignored
            log.warning("device token file %s %s; treating it as empty", self._path, why)
        return {}

    def _read(self, *, strict: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            raw = read_nofollow(self._path, "device token file", DeviceStoreError)
        except DeviceStoreError:
            if os.path.islink(self._path) or strict:
                raise  # a link is refused loudly, never read nor replaced
            log.warning("cannot read device token file %s; ignoring it", self._path)
            return {}
        if raw is None:
            return {}
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return self._unusable(strict, "is corrupt (not valid JSON)")
        except RecursionError:  # json's decoder recurses per nesting level
            return self._unusable(strict, "is corrupt (nested too deeply)")
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, dict) or data.get("version") != _FILE_VERSION:
            return self._unusable(strict, "has an unexpected shape")
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for gateway, devices in tokens.items():
            if not isinstance(devices, dict):
                continue
            for device, roles in devices.items():
                if isinstance(roles, dict):
                    result.setdefault(gateway, {})[device] = {
                        r: e for r, e in roles.items() if isinstance(e, dict)
                    }
        return result

    def _write(self, tokens: dict[str, dict[str, dict[str, Any]]]) -> None:
        data = json.dumps({"version": _FILE_VERSION, "tokens": tokens}, indent=2).encode()
        try:
            tmp = write_private_temp(self._dir, ".device-tokens-", data + b"\n")
            try:
                os.replace(tmp, self._path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise DeviceStoreError(
                f"cannot write device token file {self._path}: {exc.strerror or exc}"
            ) from None
        fsync_dir(self._dir)

    def _entry_to_token(self, entry: object, role: str) -> StoredDeviceToken | None:
        if entry is None:
            return None
        if not isinstance(entry, dict):
            return None
        token = entry.get("token")
        scopes = entry.get("scopes", [])
        issued = entry.get("issuedAtMs")
        if (
            not isinstance(token, str)
            or not token
            or not isinstance(scopes, list)
            or not all(isinstance(s, str) for s in scopes)
        ):
            log.warning("ignoring a malformed entry in device token file %s", self._path)
            return None
        if isinstance(issued, bool) or not isinstance(issued, int):
            issued = None
        stored_role = entry.get("role")
        return StoredDeviceToken(
            token=token,
            role=stored_role if isinstance(stored_role, str) else role,
            scopes=tuple(scopes),
            issued_at_ms=issued,
        )
