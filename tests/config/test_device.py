"""Tests for gwclient._config.device: Ed25519 device identity and the device-token store."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gwclient._config.device import (
    DeviceIdentity,
    DeviceStoreError,
    DeviceTokenStore,
    StoredDeviceToken,
    b64url_decode,
    b64url_encode,
)
from gwclient._errors import ConfigError

N_PROCS = 8


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _mp_context() -> Any:
    # Real separate processes without fork()ing a threaded pytest process.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


# --------------------------------------------------------------------------- identity


def test_generate_derives_id_and_public_key() -> None:
    ident = DeviceIdentity.generate()
    assert len(ident.public_key) == 32
    assert ident.device_id == hashlib.sha256(ident.public_key).hexdigest()
    assert len(ident.device_id) == 64 and ident.device_id == ident.device_id.lower()
    assert "=" not in ident.public_key_b64url
    assert "+" not in ident.public_key_b64url and "/" not in ident.public_key_b64url
    assert b64url_decode(ident.public_key_b64url) == ident.public_key
    assert DeviceIdentity.generate().device_id != ident.device_id


def test_signature_verifies_with_cryptography() -> None:
    ident = DeviceIdentity.generate()
    payload = (
        f"v3|{ident.device_id}|cli|cli|operator|operator.read,operator.write|1700000000000|"
        "tok|nonce-ü|linux|"
    )
    signature = ident.sign(payload)
    assert "=" not in signature
    raw = b64url_decode(signature)
    assert len(raw) == 64
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(ident.public_key_b64url))
    public.verify(raw, payload.encode("utf-8"))  # raises if invalid
    with pytest.raises(InvalidSignature):
        public.verify(raw, (payload + "x").encode("utf-8"))


def test_b64url_helpers() -> None:
    for data in (b"", b"\xff", b"\xfb\xff", bytes(range(40))):
        text = b64url_encode(data)
        assert "=" not in text
        assert b64url_decode(text) == data
    assert b64url_decode("-_8") == b"\xfb\xff"
    with pytest.raises(ValueError):
        b64url_decode("***")


def test_identity_repr_has_no_private_key(tmp_path: Path) -> None:
    ident = DeviceIdentity.load_or_create(tmp_path)
    private = json.loads((tmp_path / "device.json").read_text())["privateKey"]
    assert private not in repr(ident) and private not in str(ident)
    assert ident.device_id in repr(ident)
    assert not any("private" in name for name in dir(ident) if not name.startswith("_"))


def test_identity_is_immutable_and_not_picklable() -> None:
    ident = DeviceIdentity.generate()
    with pytest.raises(AttributeError):
        ident.device_id = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ident._device_id = "x"
    with pytest.raises(TypeError):
        pickle.dumps(ident)


def test_from_seed_round_trip() -> None:
    seed = bytes(range(32))
    a = DeviceIdentity.from_seed(seed)
    b = DeviceIdentity.from_seed(seed)
    assert a == b and hash(a) == hash(b)
    assert a.sign("x") == b.sign("x")  # Ed25519 is deterministic
    with pytest.raises(ValueError):
        DeviceIdentity.from_seed(b"short")


def test_load_or_create_file_format_and_modes(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    old_umask = os.umask(0)  # even with a permissive umask the files stay private
    try:
        ident = DeviceIdentity.load_or_create(state)
    finally:
        os.umask(old_umask)
    path = state / "device.json"
    assert mode_of(state) == 0o700
    assert mode_of(path) == 0o600
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert data["deviceId"] == ident.device_id
    assert data["publicKey"] == ident.public_key_b64url
    assert len(b64url_decode(data["privateKey"])) == 32
    assert isinstance(data["createdAtMs"], int) and data["createdAtMs"] == ident.created_at_ms
    assert sorted(p.name for p in state.iterdir()) == ["device.json"]  # no temp files left


def test_load_or_create_reuses_the_identity(tmp_path: Path) -> None:
    first = DeviceIdentity.load_or_create(tmp_path)
    before = (tmp_path / "device.json").read_bytes()
    second = DeviceIdentity.load_or_create(str(tmp_path))
    assert second == first
    assert second.device_id == first.device_id
    assert second.created_at_ms == first.created_at_ms
    assert second.sign("payload") == first.sign("payload")
    assert (tmp_path / "device.json").read_bytes() == before


def test_existing_directory_mode_is_not_changed(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    DeviceIdentity.load_or_create(tmp_path)
    assert mode_of(tmp_path) == 0o755
    assert mode_of(tmp_path / "device.json") == 0o600


def test_loose_identity_file_mode_is_tightened(tmp_path: Path) -> None:
    DeviceIdentity.load_or_create(tmp_path)
    (tmp_path / "device.json").chmod(0o644)
    DeviceIdentity.load_or_create(tmp_path)
    assert mode_of(tmp_path / "device.json") == 0o600


def _corrupt_variants(good: dict[str, Any]) -> list[tuple[str, bytes]]:
    other = DeviceIdentity.generate()
    return [
        ("not json", b"{not json"),
        ("empty", b""),
        ("list", b"[]"),
        ("bad version", json.dumps({**good, "version": 99}).encode()),
        (
            "no private key",
            json.dumps({k: v for k, v in good.items() if k != "privateKey"}).encode(),
        ),
        ("bad base64", json.dumps({**good, "privateKey": "***"}).encode()),
        ("wrong id", json.dumps({**good, "deviceId": "00" * 32}).encode()),
        ("foreign public key", json.dumps({**good, "publicKey": other.public_key_b64url}).encode()),
        ("short key", json.dumps({**good, "privateKey": b64url_encode(b"x" * 16)}).encode()),
    ]


def test_corrupt_identity_file_raises_and_is_kept(tmp_path: Path) -> None:
    DeviceIdentity.load_or_create(tmp_path)
    path = tmp_path / "device.json"
    good = json.loads(path.read_text())
    for label, content in _corrupt_variants(good):
        path.write_bytes(content)
        with pytest.raises(ConfigError) as info:
            DeviceIdentity.load_or_create(tmp_path)
        message = str(info.value)
        assert str(path) in message, label
        assert good["privateKey"] not in message, label
        assert path.read_bytes() == content, label  # never silently replaced


def _create_identity_worker(state_dir: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        results.put(DeviceIdentity.load_or_create(Path(state_dir)).device_id)
    except BaseException as exc:  # report instead of dying silently
        results.put(f"error: {exc!r}")


def test_concurrent_processes_converge_on_one_identity(tmp_path: Path) -> None:
    ctx = _mp_context()
    state = tmp_path / "shared-state"
    barrier = ctx.Barrier(N_PROCS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_create_identity_worker, args=(str(state), barrier, results))
        for _ in range(N_PROCS)
    ]
    for proc in procs:
        proc.start()
    ids = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert all(not i.startswith("error") for i in ids), ids
    assert len(set(ids)) == 1
    assert DeviceIdentity.load_or_create(state).device_id == ids[0]
    assert sorted(p.name for p in state.iterdir()) == ["device.json"]


def test_concurrent_threads_converge_on_one_identity(tmp_path: Path) -> None:
    barrier = threading.Barrier(16)
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(timeout=30)
        device_id = DeviceIdentity.load_or_create(tmp_path / "s").device_id
        with lock:
            ids.append(device_id)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(ids) == 16 and len(set(ids)) == 1


# --------------------------------------------------------------------------- token store

GW = "ws://127.0.0.1:18789"


def test_token_store_round_trip(tmp_path: Path) -> None:
    store = DeviceTokenStore(tmp_path / "state")
    assert store.load(GW, "dev1", "operator") is None
    assert not (tmp_path / "state").exists()  # reading creates nothing
    store.save(GW, "dev1", "operator", "tok-1", ["operator.read", "operator.write"], 1234)
    loaded = store.load(GW, "dev1", "operator")
    assert loaded == StoredDeviceToken(
        token="tok-1",
        role="operator",
        scopes=("operator.read", "operator.write"),
        issued_at_ms=1234,
    )
    # a second store instance (another process, later) sees the same data
    assert DeviceTokenStore(tmp_path / "state").load(GW, "dev1", "operator") == loaded
    # overwrite keeps only the newest token
    store.save(GW, "dev1", "operator", "tok-2", ("operator.read",))
    newest = store.load(GW, "dev1", "operator")
    assert newest is not None
    assert (newest.token, newest.scopes, newest.issued_at_ms) == ("tok-2", ("operator.read",), None)


def test_token_store_keys_are_independent(tmp_path: Path) -> None:
    store = DeviceTokenStore(tmp_path)
    store.save(GW, "dev1", "operator", "a", [])
    store.save(GW, "dev1", "node", "b", [])
    store.save(GW, "dev2", "operator", "c", [])
    store.save("wss://other.example:443", "dev1", "operator", "d", [])
    tokens = {
        key: store.load(*key)
        for key in [
            (GW, "dev1", "operator"),
            (GW, "dev1", "node"),
            (GW, "dev2", "operator"),
            ("wss://other.example:443", "dev1", "operator"),
        ]
    }
    assert [t.token if t else None for t in tokens.values()] == ["a", "b", "c", "d"]


def test_token_store_clear(tmp_path: Path) -> None:
    store = DeviceTokenStore(tmp_path)
    store.save(GW, "dev1", "operator", "a", ["operator.read"])
    store.save(GW, "dev1", "node", "b", [])
    assert store.clear(GW, "dev1", "operator") is True
    assert store.load(GW, "dev1", "operator") is None
    assert store.clear(GW, "dev1", "operator") is False
    assert store.clear("ws://nowhere:1", "x", "operator") is False
    node = store.load(GW, "dev1", "node")
    assert node is not None and node.token == "b"
    assert store.clear(GW, "dev1", "node") is True
    data = json.loads((tmp_path / "device-tokens.json").read_text())
    assert data == {"version": 1, "tokens": {}}


def test_token_store_file_modes(tmp_path: Path) -> None:
    state = tmp_path / "new-state"
    old_umask = os.umask(0)
    try:
        DeviceTokenStore(state).save(GW, "dev1", "operator", "secret-token", [])
    finally:
        os.umask(old_umask)
    assert mode_of(state) == 0o700
    assert mode_of(state / "device-tokens.json") == 0o600
    assert mode_of(state / ".lock") == 0o600
    assert sorted(p.name for p in state.iterdir()) == [".lock", "device-tokens.json"]


def test_stored_token_repr_hides_token(tmp_path: Path) -> None:
    stored = StoredDeviceToken(token="TOKEN-zyx-987", role="operator", scopes=["operator.read"])  # type: ignore[arg-type]
    assert stored.scopes == ("operator.read",)
    assert "TOKEN-zyx-987" not in repr(stored) and "TOKEN-zyx-987" not in str(stored)
    store = DeviceTokenStore(tmp_path)
    store.save(GW, "dev1", "operator", "TOKEN-zyx-987", [])
    assert "TOKEN-zyx-987" not in repr(store.load(GW, "dev1", "operator"))
    assert "TOKEN-zyx-987" not in repr(store)


def test_corrupt_token_file_is_treated_as_empty_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "device-tokens.json"
    path.write_text('{"version": 1, "tokens": {"ws://x": {"d": {"operator": {"token": "LEAK')
    store = DeviceTokenStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="gwclient.device"):
        assert store.load(GW, "dev1", "operator") is None
    records = [r for r in caplog.records if r.name == "gwclient.device"]
    assert records and any(str(path) in r.getMessage() for r in records)
    assert all("LEAK" not in r.getMessage() for r in records)
    store.save(GW, "dev1", "operator", "fresh", [])
    fresh = store.load(GW, "dev1", "operator")
    assert fresh is not None and fresh.token == "fresh"


def test_malformed_entries_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "device-tokens.json").write_text(
        json.dumps(
            {
                "version": 1,
                "tokens": {
                    GW: {
                        "dev1": {
                            "operator": {"token": 5, "scopes": []},
                            "node": {"token": "NODE-TOKEN-1", "scopes": "operator.read"},
                        },
                        "dev2": {
                            "operator": {
                                "token": "GOOD-TOKEN-2",
                                "scopes": ["a"],
                                "issuedAtMs": "x",
                            }
                        },
                    }
                },
            }
        )
    )
    store = DeviceTokenStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="gwclient.device"):
        assert store.load(GW, "dev1", "operator") is None
        assert store.load(GW, "dev1", "node") is None
    good = store.load(GW, "dev2", "operator")
    assert good == StoredDeviceToken(token="GOOD-TOKEN-2", role="operator", scopes=("a",))
    assert "malformed" in caplog.text
    assert "NODE-TOKEN-1" not in caplog.text and "GOOD-TOKEN-2" not in caplog.text


def test_store_write_failure_is_both_config_and_os_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    store = DeviceTokenStore(blocker / "state")
    with pytest.raises(DeviceStoreError) as info:
        store.save(GW, "dev1", "operator", "SECRET-TOKEN-5", [])
    assert isinstance(info.value, ConfigError) and isinstance(info.value, OSError)
    assert "SECRET-TOKEN-5" not in str(info.value)
    assert store.load(GW, "dev1", "operator") is None


def test_save_rejects_empty_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        DeviceTokenStore(tmp_path).save(GW, "dev1", "operator", "", [])


def _save_token_worker(state_dir: str, index: int, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        store = DeviceTokenStore(Path(state_dir))
        for round_ in range(5):
            store.save(GW, f"dev{index}", "operator", f"tok-{index}-{round_}", ["operator.read"])
        results.put("ok")
    except BaseException as exc:
        results.put(f"error: {exc!r}")


def test_concurrent_writers_in_processes_lose_no_update(tmp_path: Path) -> None:
    ctx = _mp_context()
    barrier = ctx.Barrier(N_PROCS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_save_token_worker, args=(str(tmp_path), i, barrier, results))
        for i in range(N_PROCS)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert outcomes == ["ok"] * N_PROCS
    store = DeviceTokenStore(tmp_path)
    for i in range(N_PROCS):
        stored = store.load(GW, f"dev{i}", "operator")
        assert stored is not None and stored.token == f"tok-{i}-4"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_concurrent_writers_in_threads_lose_no_update(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    stores = [DeviceTokenStore(tmp_path) for _ in range(2)]  # two instances, same dir

    def worker(i: int) -> None:
        barrier.wait(timeout=30)
        for round_ in range(5):
            stores[i % 2].save(GW, f"dev{i}", "operator", f"t{i}-{round_}", [])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(8):
        stored = stores[0].load(GW, f"dev{i}", "operator")
        assert stored is not None and stored.token == f"t{i}-4"


# --------------------------------------------------------------- links and the state dir


def _decoy(tmp_path: Path) -> tuple[Path, bytes]:
    """An unrelated 0644 file a link could point at."""
    target = tmp_path / "elsewhere" / "notes.txt"
    target.parent.mkdir()
    content = b"my unrelated notes\n"
    target.write_bytes(content)
    target.chmod(0o644)
    return target, content


def test_identity_file_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target, content = _decoy(tmp_path)
    (state / "device.json").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link") as info:
        DeviceIdentity.load_or_create(state)
    assert str(state / "device.json") in str(info.value)
    assert mode_of(target) == 0o644 and target.read_bytes() == content
    assert (state / "device.json").is_symlink()
    # The same for a link to a real identity file (it would be chmod-ed and used).
    real = tmp_path / "real"
    DeviceIdentity.load_or_create(real)
    (real / "device.json").chmod(0o644)
    (state / "device.json").unlink()
    (state / "device.json").symlink_to(real / "device.json")
    with pytest.raises(ConfigError, match="symbolic link"):
        DeviceIdentity.load_or_create(state)
    assert mode_of(real / "device.json") == 0o644


def test_dangling_identity_symlink_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "victim.json"
    (state / "device.json").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        DeviceIdentity.load_or_create(state)
    assert not target.exists()


@pytest.mark.parametrize("dangling", [False, True])
def test_token_file_symlink_is_refused_on_load_and_save(tmp_path: Path, dangling: bool) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target, content = _decoy(tmp_path)
    if dangling:
        target.unlink()
    (state / "device-tokens.json").symlink_to(target)
    store = DeviceTokenStore(state)
    with pytest.raises(DeviceStoreError, match="symbolic link"):
        store.load(GW, "dev1", "operator")
    with pytest.raises(DeviceStoreError, match="symbolic link"):
        store.save(GW, "dev1", "operator", "SECRET-TOKEN-9", [])
    with pytest.raises(DeviceStoreError, match="symbolic link") as info:
        store.clear(GW, "dev1", "operator")
    assert isinstance(info.value, ConfigError)
    assert (state / "device-tokens.json").is_symlink()
    if dangling:
        assert not target.exists()
    else:
        assert mode_of(target) == 0o644 and target.read_bytes() == content


def test_dangling_lock_symlink_creates_no_file_at_its_target(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "created-by-lock"
    (state / ".lock").symlink_to(target)
    store = DeviceTokenStore(state)
    with pytest.raises(DeviceStoreError, match=r"lock file .* symbolic link"):
        store.save(GW, "dev1", "operator", "SECRET-TOKEN-10", [])
    assert not target.exists() and not target.is_symlink()
    assert not (state / "device-tokens.json").exists()


def test_a_fifo_in_place_of_the_identity_file_is_refused_without_blocking(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.mkfifo(state / "device.json")
    with pytest.raises(ConfigError, match="not a regular file"):
        DeviceIdentity.load_or_create(state)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757])
def test_our_group_or_world_writable_state_dir_is_fixed_to_0700(
    tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="gwclient.device"):
        DeviceIdentity.load_or_create(state)
    assert mode_of(state) == 0o700
    assert any("writable by others" in r.getMessage() for r in caplog.records)
    # The token store checks it too (before it creates the lock file).
    state.chmod(mode)
    DeviceTokenStore(state).save(GW, "dev1", "operator", "SECRET-TOKEN-11", [])
    assert mode_of(state) == 0o700


def test_a_shared_sticky_state_dir_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "shared"
    state.mkdir()
    state.chmod(0o1777)
    with pytest.raises(ConfigError, match="shared directory"):
        DeviceIdentity.load_or_create(state)
    with pytest.raises(DeviceStoreError, match="shared directory"):
        DeviceTokenStore(state).save(GW, "dev1", "operator", "SECRET-TOKEN-12", [])
    assert mode_of(state) == 0o1777 and list(state.iterdir()) == []


def test_a_state_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root can hand a directory to another uid; the check compares owners only.
        state = tmp_path / "theirs"
        state.mkdir(mode=0o700)
        os.chown(state, 54321, 54321)
    else:
        state = Path("/")  # owned by root, never by a normal user
    with pytest.raises(ConfigError, match="belongs to uid"):
        DeviceIdentity.load_or_create(state)
    with pytest.raises(DeviceStoreError, match="belongs to uid"):
        DeviceTokenStore(state).save(GW, "dev1", "operator", "SECRET-TOKEN-13", [])
    assert not (state / "device.json").exists()

