"""Tests for gwclient._config.config: GatewayConfig validation and from_environment precedence."""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path

import pytest

from gwclient._config.config import (
    DEFAULT_SCOPES,
    DEFAULT_URL,
    GatewayConfig,
    SshTunnelConfig,
    normalize_tls_fingerprint,
)
from gwclient._config.locations import default_platform, default_state_dir, openclaw_config_path
from gwclient._errors import ConfigError

FP_HEX = "ab" * 32
FP_COLONS = ":".join(["AB"] * 32)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "openclaw.json"
    path.write_text(text, encoding="utf-8")
    return path


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An isolated environment: HOME in tmp_path and nothing else unless given."""
    env = {"HOME": str(tmp_path / "home")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------- basics


def test_defaults() -> None:
    import gwclient

    cfg = GatewayConfig()
    assert cfg.url == DEFAULT_URL == "ws://127.0.0.1:18789"
    assert cfg.host == "127.0.0.1"
    assert cfg.port == 18789
    assert cfg.is_loopback
    assert cfg.gateway_key == "ws://127.0.0.1:18789"
    assert cfg.scopes == DEFAULT_SCOPES
    assert cfg.client_id == "cli" and cfg.client_mode == "cli" and cfg.role == "operator"
    assert cfg.client_version == gwclient.__version__
    assert cfg.platform == default_platform()
    assert cfg.platform in {"linux", "macos", "windows"} or cfg.platform.isalpha()
    assert cfg.token is None and cfg.password is None
    assert cfg.device_identity is True
    assert cfg.max_queue == 1000


def test_scopes_and_caps_accept_iterables_and_store_tuples() -> None:
    # the fields are typed tuple[str, ...]; other iterables are accepted at runtime
    cfg = GatewayConfig(
        scopes=["operator.read"],  # type: ignore[arg-type]
        caps=(c for c in ["tool-events"]),  # type: ignore[arg-type]
    )
    assert cfg.scopes == ("operator.read",)
    assert cfg.caps == ("tool-events",)
    assert cfg == GatewayConfig(scopes=("operator.read",), caps=("tool-events",))
    with pytest.raises(ConfigError):
        GatewayConfig(scopes="operator.read")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        GatewayConfig(scopes=("operator.read", ""))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18789",
        "ws://",
        "ws:///path",
        "127.0.0.1:18789",
        "ws://127.0.0.1:99999",
        "ws://127.0.0.1:0",
        "ws://127.0.0.1:abc",
    ],
)
def test_invalid_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        GatewayConfig(url=url)


def test_invalid_url_message_hides_userinfo_and_query() -> None:
    with pytest.raises(ConfigError) as info:
        GatewayConfig(url="http://alice:PW-s3cret@127.0.0.1:1/x?token=TOK-s3cret#frag")
    message = str(info.value)
    assert "127.0.0.1:1/x" in message
    assert "PW-s3cret" not in message and "TOK-s3cret" not in message and "alice" not in message


def test_scheme_is_normalised_case_insensitively() -> None:
    cfg = GatewayConfig(url="WSS://Example.COM:8443")
    assert cfg.url.startswith("wss://")
    assert cfg.host == "example.com"
    assert cfg.gateway_key == "wss://example.com:8443"


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:1",
        "ws://127.8.9.10:1",
        "ws://localhost:1",
        "ws://LOCALHOST:1",
        "ws://[::1]:1",
        "ws://[::ffff:127.0.0.1]:1",
    ],
)
def test_loopback_plaintext_is_allowed(url: str) -> None:
    cfg = GatewayConfig(url=url)
    assert cfg.is_loopback


@pytest.mark.parametrize(
    "url", ["ws://203.0.113.7:18789", "ws://gateway.example", "ws://[2a00:1450::1]:1"]
)
def test_insecure_remote_refused_unless_allowed(url: str) -> None:
    # Public addresses and names (tests/test_plaintext.py has the whole official table).
    with pytest.raises(ConfigError) as info:
        GatewayConfig(url=url)
    assert "wss://" in str(info.value)
    assert "--allow-insecure (gwclient CLI)" in str(info.value)  # not only the Python argument
    cfg = GatewayConfig(url=url, allow_insecure_remote=True)
    assert not cfg.is_loopback


def test_wss_remote_is_fine() -> None:
    cfg = GatewayConfig(url="wss://gateway.example")
    assert not cfg.is_loopback
    assert cfg.is_secure


def test_port_defaults_follow_the_websocket_scheme() -> None:
    assert GatewayConfig(url="wss://gateway.example").port == 443
    assert GatewayConfig(url="ws://localhost").port == 80
    assert GatewayConfig(url="wss://gateway.example:9443/base").port == 9443


def test_gateway_key_normalises_host_and_port() -> None:
    assert GatewayConfig(url="wss://GW.Example").gateway_key == "wss://gw.example:443"
    assert GatewayConfig(url="ws://[::1]:18789/x?y=1").gateway_key == "ws://[::1]:18789"


def test_gateway_key_in_ssh_mode_names_the_remote_gateway() -> None:
    a = GatewayConfig(ssh=SshTunnelConfig(host="Host-A", remote_port=29443))
    b = GatewayConfig(ssh=SshTunnelConfig(host="host-b"))
    assert a.gateway_key == "ws://host-a:29443"
    assert b.gateway_key == "ws://host-b:18789"
    assert a.url == b.url  # same local tunnel end, different gateways


def test_ssh_mode_needs_a_loopback_url() -> None:
    with pytest.raises(ConfigError):
        GatewayConfig(url="wss://gateway.example", ssh=SshTunnelConfig(host="gateway.example"))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"client_id": "operator"}, "client_id"),
        ({"client_mode": "operator"}, "client_mode"),
        ({"role": "admin"}, "role"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"request_timeout": -1.0}, "request_timeout"),
        ({"request_timeout": float("nan")}, "request_timeout"),
        ({"connect_timeout": True}, "connect_timeout"),
        ({"platform": ""}, "platform"),
        ({"instance_id": " "}, "instance_id"),
    ],
)
def test_field_validation(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        GatewayConfig(**kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_all_protocol_client_ids_and_modes_are_accepted() -> None:
    for client_id in ("cli", "gateway-client", "openclaw-linux", "node-host", "test"):
        assert GatewayConfig(client_id=client_id).client_id == client_id
    for mode in ("webchat", "cli", "ui", "backend", "node", "worker", "probe", "test"):
        assert GatewayConfig(client_mode=mode).client_mode == mode
    assert GatewayConfig(role="node").role == "node"


@pytest.mark.parametrize(
    "value",
    [FP_HEX, FP_HEX.upper(), FP_COLONS, FP_COLONS.lower(), f"sha256:{FP_COLONS}", f" {FP_HEX} "],
)
def test_tls_fingerprint_is_normalised(value: str) -> None:
    cfg = GatewayConfig(url="wss://gateway.example", tls_fingerprint=value)
    assert cfg.tls_fingerprint == FP_HEX
    assert normalize_tls_fingerprint(value) == FP_HEX


def test_tls_fingerprint_validation() -> None:
    with pytest.raises(ConfigError):
        GatewayConfig(url="wss://gateway.example", tls_fingerprint="abcd")
    with pytest.raises(ConfigError):
        GatewayConfig(url="wss://gateway.example", tls_fingerprint="zz" * 32)
    with pytest.raises(ConfigError) as info:
        GatewayConfig(url="ws://127.0.0.1:18789", tls_fingerprint=FP_HEX)
    assert "wss" in str(info.value)


def test_repr_and_str_never_show_secrets() -> None:
    cfg = GatewayConfig(
        url="ws://user:URLPW-123@127.0.0.1:18789/?token=URLTOKEN-456",
        token="TOKEN-abc-123",
        password="PASSWORD-xyz-789",
    )
    for text in (repr(cfg), str(cfg), f"{cfg}", f"{cfg!r}"):
        assert "TOKEN-abc-123" not in text
        assert "PASSWORD-xyz-789" not in text
        assert "URLPW-123" not in text and "URLTOKEN-456" not in text
        assert "token=<set>" in text and "password=<set>" in text
        assert "127.0.0.1:18789" in text
        assert "operator.read" in text
        assert "cli/cli" in text
    assert "token=<unset>" in repr(GatewayConfig())
    assert "password=<unset>" in repr(GatewayConfig())


def test_ssh_config_repr_has_no_secret_fields() -> None:
    ssh = SshTunnelConfig(host="h", user="me", identity_file="/k/id_ed25519")
    assert "password" not in repr(ssh)
    assert ssh.target == "me@h"


def test_equal_configs_are_equal_and_hash_equal() -> None:
    a = GatewayConfig(token="t", scopes=["operator.read"], tls_fingerprint=None)  # type: ignore[arg-type]
    b = GatewayConfig(token="t", scopes=("operator.read",))
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != b.with_changes(token="other")
    assert a != b.with_changes(password="p")
    fp_a = GatewayConfig(url="wss://g.example", tls_fingerprint=FP_COLONS)
    fp_b = GatewayConfig(url="wss://g.example", tls_fingerprint=FP_HEX.upper())
    assert fp_a == fp_b and hash(fp_a) == hash(fp_b)


def test_with_changes_validates() -> None:
    cfg = GatewayConfig()
    changed = cfg.with_changes(token="x", request_timeout=5)
    assert changed.token == "x" and changed.request_timeout == 5
    assert cfg.token is None
    with pytest.raises(ConfigError):
        cfg.with_changes(url="ws://gateway.example")
    with pytest.raises(ConfigError):
        cfg.with_changes(no_such_field=1)


def test_retry_policy_field() -> None:
    from gwclient._core.retry import RetryPolicy

    a = GatewayConfig(retry=RetryPolicy(initial=1.0))
    assert a == GatewayConfig(retry=RetryPolicy(initial=1.0))
    assert hash(a) == hash(GatewayConfig(retry=RetryPolicy(initial=1.0)))
    assert a != GatewayConfig()
    with pytest.raises(ConfigError):
        GatewayConfig(retry=5)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    cfg = GatewayConfig()
    with pytest.raises(AttributeError):
        cfg.token = "x"  # type: ignore[misc]


def test_blank_secrets_are_unset() -> None:
    assert GatewayConfig(token="  ", password="").has_credentials is False


def test_effective_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewayConfig(state_dir=str(tmp_path)).effective_state_dir == tmp_path
    monkeypatch.setenv("GWCLIENT_STATE_DIR", str(tmp_path / "gw"))
    assert GatewayConfig().effective_state_dir == tmp_path / "gw"


def test_default_state_dir_precedence(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_state_dir({"HOME": str(home)}) == home / ".local" / "state" / "gwclient"
    assert default_state_dir({"HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "xdg")}) == (
        tmp_path / "xdg" / "gwclient"
    )
    # relative XDG paths are invalid per the spec and ignored
    assert default_state_dir({"HOME": str(home), "XDG_STATE_HOME": "rel"}) == (
        home / ".local" / "state" / "gwclient"
    )
    env = {
        "HOME": str(home),
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "GWCLIENT_STATE_DIR": str(tmp_path / "explicit"),
    }
    assert default_state_dir(env) == tmp_path / "explicit"
    assert default_state_dir({"HOME": str(home), "GWCLIENT_STATE_DIR": "~/st"}) == home / "st"


@pytest.mark.parametrize(
    ("target", "user", "host", "port"),
    [
        ("gw.example", None, "gw.example", 22),
        ("me@gw.example", "me", "gw.example", 22),
        ("me@gw.example:2222", "me", "gw.example", 2222),
        ("me@[2001:db8::1]:2200", "me", "2001:db8::1", 2200),
    ],
)
def test_ssh_target_parsing(target: str, user: str | None, host: str, port: int) -> None:
    ssh = SshTunnelConfig.parse_target(target)
    assert (ssh.user, ssh.host, ssh.port) == (user, host, port)


def test_ssh_config_validation() -> None:
    with pytest.raises(ConfigError):
        SshTunnelConfig(host="h", port=0)
    with pytest.raises(ConfigError):
        SshTunnelConfig(host="h", host_key_policy="yolo")
    with pytest.raises(ConfigError):
        SshTunnelConfig.parse_target("me@h:xx")


# --------------------------------------------------------------------------- from_environment


def test_from_environment_without_file_gives_defaults(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cfg = GatewayConfig.from_environment(env)
    assert cfg.url == DEFAULT_URL
    assert cfg.token is None and cfg.password is None and cfg.ssh is None
    # with an explicit env mapping the state dir derives from it too
    assert cfg.state_dir == str(tmp_path / "home" / ".local" / "state" / "gwclient")
    assert cfg == GatewayConfig.from_environment(env)
    assert hash(cfg) == hash(GatewayConfig.from_environment(env))


def test_from_environment_with_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENCLAW_", "GWCLIENT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "env-token")
    cfg = GatewayConfig.from_environment()
    assert cfg.token == "env-token"
    assert cfg.state_dir is None  # resolved lazily from os.environ
    assert cfg == GatewayConfig(token="env-token")


def test_config_path_resolution(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert openclaw_config_path({"HOME": str(home)}) == home / ".openclaw" / "openclaw.json"
    assert openclaw_config_path({"HOME": str(home), "OPENCLAW_HOME": str(tmp_path / "oh")}) == (
        tmp_path / "oh" / ".openclaw" / "openclaw.json"
    )
    assert openclaw_config_path({"HOME": str(home), "OPENCLAW_STATE_DIR": str(tmp_path / "s")}) == (
        tmp_path / "s" / "openclaw.json"
    )
    env = {
        "HOME": str(home),
        "OPENCLAW_STATE_DIR": str(tmp_path / "s"),
        "OPENCLAW_CONFIG_PATH": str(tmp_path / "c.json"),
    }
    assert openclaw_config_path(env) == tmp_path / "c.json"
    assert openclaw_config_path({"HOME": str(home), "OPENCLAW_CONFIG_PATH": "~/x.json"}) == (
        home / "x.json"
    )


def test_config_file_locations_are_used_in_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".openclaw").mkdir(parents=True)
    (home / ".openclaw" / "openclaw.json").write_text("{gateway: {port: 1001}}")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "openclaw.json").write_text("{gateway: {port: 1002}}")
    (tmp_path / "explicit.json").write_text("{gateway: {port: 1003}}")
    (tmp_path / "arg.json").write_text("{gateway: {port: 1004}}")

    env = {"HOME": str(home)}
    assert GatewayConfig.from_environment(env).port == 1001
    env["OPENCLAW_STATE_DIR"] = str(tmp_path / "state")
    assert GatewayConfig.from_environment(env).port == 1002
    env["OPENCLAW_CONFIG_PATH"] = str(tmp_path / "explicit.json")
    assert GatewayConfig.from_environment(env).port == 1003
    cfg = GatewayConfig.from_environment(env, config_path=tmp_path / "arg.json")
    assert cfg.port == 1004


def test_json5_comments_trailing_commas_unquoted_keys(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        // OpenClaw config
        {
          /* block comment */
          gateway: {
            port: 19001,        // trailing comment
            'bind': "loopback",
            auth: { mode: "token", token: 'file-token', },
          },
        }
        """,
    )
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.url == "ws://127.0.0.1:19001"
    assert cfg.token == "file-token"


def test_missing_default_and_empty_files_mean_defaults(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    assert not openclaw_config_path(env).exists()
    assert GatewayConfig.from_environment(env).url == DEFAULT_URL  # the default location
    empty = write_config(tmp_path, "  \n")
    assert GatewayConfig.from_environment(env, config_path=empty).url == DEFAULT_URL


def test_an_explicit_config_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "opnclaw.json"  # a typo must not silently mean "no settings"
    with pytest.raises(ConfigError, match=f"OpenClaw config file {missing} does not exist"):
        GatewayConfig.from_environment(base_env(tmp_path), config_path=missing)


def test_invalid_file_names_path_and_position_without_secrets(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '{\n  gateway: {\n    auth: { token: "SUPERSECRET-1" X },\n  },\n}\n',
    )
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message and "column" in message
    assert "SUPERSECRET" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = write_config(tmp_path, '{gateway: {auth: {token: "SUPERSECRET-2"')
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert str(path) in str(info.value)
    assert "SUPERSECRET" not in str(info.value)


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.mkdir()  # a directory cannot be read as a file (works as root too)
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[1, 2]", "top level"),
        ("{gateway: 5}", "gateway"),
        ("{gateway: {port: 'x'}}", "gateway.port"),
        ("{gateway: {port: 70000}}", "gateway.port"),
        ("{gateway: {mode: 'cloud'}}", "gateway.mode"),
        ("{gateway: {bind: 'everywhere'}}", "gateway.bind"),
        ("{gateway: {tls: {enabled: 'yes'}}}", "gateway.tls.enabled"),
        ("{gateway: {auth: {token: 42}}}", "gateway.auth.token"),
        ("{gateway: {mode: 'remote', remote: {transport: 'carrier-pigeon'}}}", "transport"),
        (
            "{gateway: {mode: 'remote', remote: {url: 'wss://g.example', tlsFingerprint: 'x'}}}",
            "tlsFingerprint",
        ),
    ],
)
def test_invalid_values_name_key_and_path(tmp_path: Path, text: str, needle: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


# --- local mode endpoint


@pytest.mark.parametrize("bind", ["loopback", "lan", "tailnet", "auto"])
def test_local_bind_modes_connect_to_loopback(tmp_path: Path, bind: str) -> None:
    path = write_config(tmp_path, f"{{gateway: {{bind: '{bind}', port: 18800}}}}")
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.url == "ws://127.0.0.1:18800"


def test_local_custom_bind(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    plain = write_config(tmp_path, "{gateway: {bind: 'custom', customBindHost: '10.1.2.3'}}")
    # plaintext stays on the gateway's same-host loopback listener
    assert GatewayConfig.from_environment(env, config_path=plain).url == "ws://127.0.0.1:18789"
    loop = write_config(tmp_path, "{gateway: {bind: 'custom', customBindHost: '127.0.0.2'}}")
    assert GatewayConfig.from_environment(env, config_path=loop).url == "ws://127.0.0.2:18789"
    tls = write_config(
        tmp_path,
        "{gateway: {bind: 'custom', customBindHost: '10.1.2.3', tls: {enabled: true}}}",
    )
    assert GatewayConfig.from_environment(env, config_path=tls).url == "wss://10.1.2.3:18789"
    wildcard = write_config(
        tmp_path, "{gateway: {bind: 'custom', customBindHost: '0.0.0.0', tls: {enabled: true}}}"
    )
    assert GatewayConfig.from_environment(env, config_path=wildcard).url == (
        "wss://127.0.0.1:18789"
    )


def test_local_tls_means_wss(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{gateway: {port: 18443, tls: {enabled: true}}}")
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.url == "wss://127.0.0.1:18443"
    assert cfg.tls_fingerprint is None  # no certificate file to pin


def _self_signed_pem() -> tuple[bytes, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openclaw-gateway")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM), hashlib.sha256(
        cert.public_bytes(Encoding.DER)
    ).hexdigest()


def test_local_tls_pins_the_gateway_certificate(tmp_path: Path) -> None:
    pem, fingerprint = _self_signed_pem()
    state = tmp_path / "ocstate"
    (state / "gateway" / "tls").mkdir(parents=True)
    (state / "gateway" / "tls" / "gateway-cert.pem").write_bytes(pem)
    (state / "openclaw.json").write_text("{gateway: {tls: {enabled: true}}}")
    cfg = GatewayConfig.from_environment(base_env(tmp_path, OPENCLAW_STATE_DIR=str(state)))
    assert cfg.url == "wss://127.0.0.1:18789"
    assert cfg.tls_fingerprint == fingerprint

    (tmp_path / "custom.pem").write_bytes(pem)
    path = write_config(
        tmp_path, f"{{gateway: {{tls: {{enabled: true, certPath: '{tmp_path / 'custom.pem'}'}}}}}}"
    )
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.tls_fingerprint == fingerprint


def test_env_port_overrides_file_port_for_the_local_url(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{gateway: {port: 18800}}")
    env = base_env(tmp_path, OPENCLAW_GATEWAY_PORT="19999")
    assert GatewayConfig.from_environment(env, config_path=path).url == "ws://127.0.0.1:19999"
    env = base_env(tmp_path, OPENCLAW_GATEWAY_PORT="not-a-port")
    assert GatewayConfig.from_environment(env, config_path=path).url == "ws://127.0.0.1:18800"


# --- credentials


def test_local_mode_reads_auth_section(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """{gateway: {
             auth: {token: 'auth-token', password: 'auth-pw'},
             remote: {url: 'wss://remote.example', token: 'remote-token', password: 'remote-pw'},
        }}""",
    )
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.url == DEFAULT_URL  # remote.url ignored in local mode
    assert (cfg.token, cfg.password) == ("auth-token", "auth-pw")


def test_local_mode_falls_back_to_remote_credentials(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{gateway: {remote: {token: 'remote-token'}}}")
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.token == "remote-token"


def test_remote_mode_reads_remote_section(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """{gateway: {
             mode: 'remote',
             auth: {token: 'auth-token', password: 'auth-pw'},
             remote: {transport: 'direct', url: 'wss://remote.example:8443',
                      token: 'remote-token', password: 'remote-pw'},
        }}""",
    )
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.url == "wss://remote.example:8443"
    assert (cfg.token, cfg.password) == ("remote-token", "remote-pw")
    assert cfg.ssh is None


def test_remote_mode_falls_back_to_auth_credentials_and_local_url(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{gateway: {mode: 'remote', auth: {token: 'auth-token'}}}")
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.url == DEFAULT_URL
    assert cfg.token == "auth-token"


def test_precedence_env_over_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, "{gateway: {port: 18800, auth: {token: 'file-token', password: 'file-pw'}}}"
    )
    env = base_env(tmp_path, OPENCLAW_GATEWAY_TOKEN="env-token", OPENCLAW_GATEWAY_PASSWORD="env-pw")
    cfg = GatewayConfig.from_environment(env, config_path=path)
    assert (cfg.token, cfg.password) == ("env-token", "env-pw")
    assert cfg.url == "ws://127.0.0.1:18800"
    # each secret is resolved on its own
    env = base_env(tmp_path, OPENCLAW_GATEWAY_PASSWORD="env-pw")
    cfg = GatewayConfig.from_environment(env, config_path=path)
    assert (cfg.token, cfg.password) == ("file-token", "env-pw")
    # blank env values are ignored
    env = base_env(tmp_path, OPENCLAW_GATEWAY_TOKEN="  ")
    assert GatewayConfig.from_environment(env, config_path=path).token == "file-token"


def test_precedence_env_over_file_in_remote_mode(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "{gateway: {mode: 'remote', remote: {url: 'wss://r.example', token: 'remote-token'}}}",
    )
    env = base_env(tmp_path, OPENCLAW_GATEWAY_TOKEN="env-token")
    cfg = GatewayConfig.from_environment(env, config_path=path)
    assert cfg.url == "wss://r.example"
    assert cfg.token == "env-token"


def test_precedence_overrides_over_env_and_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{gateway: {auth: {token: 'file-token'}}}")
    env = base_env(
        tmp_path,
        OPENCLAW_GATEWAY_TOKEN="env-token",
        OPENCLAW_GATEWAY_URL="ws://127.0.0.1:1111",
    )
    cfg = GatewayConfig.from_environment(
        env, config_path=path, token="kw-token", url="ws://127.0.0.1:2222", scopes=["operator.read"]
    )
    assert cfg.token == "kw-token"
    assert cfg.url == "ws://127.0.0.1:2222"
    assert cfg.scopes == ("operator.read",)
    # an explicit None override means "no token", whatever env and file say
    assert GatewayConfig.from_environment(env, config_path=path, token=None).token is None
    # overrides may set any field
    cfg = GatewayConfig.from_environment(env, config_path=path, state_dir=str(tmp_path / "s"))
    assert cfg.state_dir == str(tmp_path / "s")


def test_unknown_override_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        GatewayConfig.from_environment(base_env(tmp_path), tokn="x")


def test_env_url_over_file_url_and_file_credentials_not_reused(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "{gateway: {mode: 'remote', remote: {url: 'wss://r.example', token: 'file-token'}}}",
    )
    env = base_env(tmp_path, OPENCLAW_GATEWAY_URL="ws://127.0.0.1:3333")
    cfg = GatewayConfig.from_environment(env, config_path=path)
    assert cfg.url == "ws://127.0.0.1:3333"
    assert cfg.token is None  # file credentials are bound to the file's endpoint
    env["OPENCLAW_GATEWAY_TOKEN"] = "env-token"
    assert GatewayConfig.from_environment(env, config_path=path).token == "env-token"


def test_override_url_skips_file_credentials_but_keeps_env_ones(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{gateway: {auth: {token: 'file-token'}}}")
    env = base_env(tmp_path)
    cfg = GatewayConfig.from_environment(env, config_path=path, url="ws://127.0.0.1:4444")
    assert cfg.token is None
    env["OPENCLAW_GATEWAY_TOKEN"] = "env-token"
    cfg = GatewayConfig.from_environment(env, config_path=path, url="ws://127.0.0.1:4444")
    assert cfg.token == "env-token"


def test_env_url_is_validated(tmp_path: Path) -> None:
    env = base_env(tmp_path, OPENCLAW_GATEWAY_URL="ws://gateway.example:18789")
    with pytest.raises(ConfigError):
        GatewayConfig.from_environment(env)


# --- secret refs


def test_env_secret_ref(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """{gateway: {auth: {
             token: {source: 'env', provider: 'default', id: 'MY_GW_TOKEN'},
             password: {source: 'env', id: 'MY_GW_PW'},
        }}}""",
    )
    env = base_env(tmp_path, MY_GW_TOKEN="ref-token", MY_GW_PW="ref-pw")
    cfg = GatewayConfig.from_environment(env, config_path=path)
    assert (cfg.token, cfg.password) == ("ref-token", "ref-pw")


@pytest.mark.parametrize("shorthand", ["${MY_GW_TOKEN}", "$MY_GW_TOKEN"])
def test_env_secret_ref_shorthand(tmp_path: Path, shorthand: str) -> None:
    path = write_config(tmp_path, f"{{gateway: {{auth: {{token: '{shorthand}'}}}}}}")
    env = base_env(tmp_path, MY_GW_TOKEN="ref-token")
    assert GatewayConfig.from_environment(env, config_path=path).token == "ref-token"


def test_unresolved_env_secret_ref_fails_closed(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "{gateway: {auth: {token: {source: 'env', id: 'MISSING_VAR'}},"
        " remote: {token: 'remote-token'}}}",
    )
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert "MISSING_VAR" in str(info.value)
    assert "gateway.auth.token" in str(info.value)
    assert str(path) in str(info.value)


def test_env_secret_ref_allowlist(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """{secrets: {providers: {default: {source: 'env', allowlist: ['OK_VAR']}}},
            gateway: {auth: {token: {source: 'env', id: 'OTHER_VAR'}}}}""",
    )
    env = base_env(tmp_path, OTHER_VAR="x")
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_environment(env, config_path=path)
    assert "allowlist" in str(info.value)


@pytest.mark.parametrize("source", ["file", "exec", "store"])
def test_other_secret_ref_sources_are_unsupported(tmp_path: Path, source: str) -> None:
    path = write_config(
        tmp_path,
        f"{{gateway: {{auth: {{token: {{source: '{source}', provider: 'p', id: 'x'}}}}}}}}",
    )
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert repr(source) in str(info.value)
    assert "supports only source 'env'" in str(info.value)


def test_secret_refs_are_resolved_only_when_needed(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, "{gateway: {auth: {token: {source: 'exec', provider: 'vault', id: 'x'}}}}"
    )
    env = base_env(tmp_path, OPENCLAW_GATEWAY_TOKEN="env-token")
    assert GatewayConfig.from_environment(env, config_path=path).token == "env-token"
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path, token="kw")
    assert cfg.token == "kw"


# --- remote TLS pin and SSH


def test_remote_tls_fingerprint(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f"""{{gateway: {{mode: 'remote', remote: {{transport: 'direct',
             url: 'wss://r.example', tlsFingerprint: 'sha256:{FP_COLONS}'}}}}}}""",
    )
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.tls_fingerprint == FP_HEX
    # the pin also applies to an env URL (as in the official tools)...
    env = base_env(tmp_path, OPENCLAW_GATEWAY_URL="wss://other.example")
    assert GatewayConfig.from_environment(env, config_path=path).tls_fingerprint == FP_HEX
    # ...but not to a ws:// one, nor to an explicit url override
    env = base_env(tmp_path, OPENCLAW_GATEWAY_URL="ws://127.0.0.1:1")
    assert GatewayConfig.from_environment(env, config_path=path).tls_fingerprint is None
    cfg = GatewayConfig.from_environment(
        base_env(tmp_path), config_path=path, url="wss://third.example"
    )
    assert cfg.tls_fingerprint is None
    # an explicit override wins
    cfg = GatewayConfig.from_environment(
        base_env(tmp_path), config_path=path, tls_fingerprint="cd" * 32
    )
    assert cfg.tls_fingerprint == "cd" * 32


def test_remote_tls_fingerprint_ignored_in_local_mode(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, f"{{gateway: {{tls: {{enabled: true}}, remote: {{tlsFingerprint: '{FP_HEX}'}}}}}}"
    )
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.tls_fingerprint is None


def test_remote_ssh_transport(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """{gateway: {mode: 'remote', remote: {
             url: 'ws://127.0.0.1:18789', token: 'remote-token',
             sshTarget: 'me@gw.example:2222', sshIdentity: '~/.ssh/id_ed25519',
             remotePort: 29443, sshHostKeyPolicy: 'openssh',
        }}}""",
    )
    env = base_env(tmp_path)
    cfg = GatewayConfig.from_environment(env, config_path=path)
    assert cfg.url == "ws://127.0.0.1:18789"
    assert cfg.token == "remote-token"
    assert cfg.ssh == SshTunnelConfig(
        host="gw.example",
        user="me",
        port=2222,
        identity_file=str(tmp_path / "home" / ".ssh" / "id_ed25519"),
        remote_port=29443,
        host_key_policy="openssh",
    )
    assert cfg.gateway_key == "ws://gw.example:29443"


def test_remote_ssh_remote_port_defaults_to_url_port(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "{gateway: {mode: 'remote', remote: {transport: 'ssh', url: 'ws://127.0.0.1:19000',"
        " sshTarget: 'gw.example'}}}",
    )
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.ssh is not None
    assert (cfg.ssh.host, cfg.ssh.user, cfg.ssh.port, cfg.ssh.remote_port) == (
        "gw.example",
        None,
        22,
        19000,
    )


def test_direct_transport_or_no_target_means_no_tunnel(tmp_path: Path) -> None:
    direct = write_config(
        tmp_path,
        "{gateway: {mode: 'remote', remote: {transport: 'direct', url: 'wss://r.example',"
        " sshTarget: 'gw.example'}}}",
    )
    assert GatewayConfig.from_environment(base_env(tmp_path), config_path=direct).ssh is None
    no_target = write_config(tmp_path, "{gateway: {mode: 'remote', remote: {transport: 'ssh'}}}")
    assert GatewayConfig.from_environment(base_env(tmp_path), config_path=no_target).ssh is None


def test_ssh_tunnel_not_used_with_env_url(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{gateway: {mode: 'remote', remote: {sshTarget: 'gw.example'}}}")
    env = base_env(tmp_path, OPENCLAW_GATEWAY_URL="ws://127.0.0.1:5555")
    assert GatewayConfig.from_environment(env, config_path=path).ssh is None
    assert GatewayConfig.from_environment(base_env(tmp_path), config_path=path).ssh is not None


# --- insecure transport


def test_remote_plaintext_url_in_file_is_refused(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "{gateway: {mode: 'remote', remote: {transport: 'direct', url: 'ws://203.0.113.7:18789',"
        " token: 'SECRET-in-file'}}}",
    )
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert "SECRET-in-file" not in str(info.value)
    cfg = GatewayConfig.from_environment(
        base_env(tmp_path), config_path=path, allow_insecure_remote=True
    )
    assert cfg.url == "ws://203.0.113.7:18789"


def test_private_plaintext_needs_no_switch_and_break_glass_allows_names_only(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "{gateway: {mode: 'remote', remote: {transport: 'direct', url: 'ws://192.168.0.202:18789'}}}",
    )
    cfg = GatewayConfig.from_environment(base_env(tmp_path), config_path=path)
    assert cfg.url == "ws://192.168.0.202:18789" and not cfg.allow_insecure_remote  # RFC 1918: official rule
    env = base_env(tmp_path, OPENCLAW_GATEWAY_URL="ws://gateway.example:18789")
    with pytest.raises(ConfigError):
        GatewayConfig.from_environment(env, config_path=path)
    env["OPENCLAW_ALLOW_INSECURE_PRIVATE_WS"] = "true"  # only "1" counts, as in the official tools
    with pytest.raises(ConfigError):
        GatewayConfig.from_environment(env, config_path=path)
    env["OPENCLAW_ALLOW_INSECURE_PRIVATE_WS"] = "1"  # break-glass: private DNS names
    assert GatewayConfig.from_environment(env, config_path=path).allow_insecure_remote
    env["OPENCLAW_GATEWAY_URL"] = "ws://203.0.113.7:18789"  # a public IP literal stays refused
    with pytest.raises(ConfigError):
        GatewayConfig.from_environment(env, config_path=path)
