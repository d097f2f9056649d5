"""Config providers: what ``GatewayConnection.shared()`` follows when given no config."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from .config import GatewayConfig
from .locations import openclaw_config_path

__all__ = ["ConfigProvider", "EnvironmentConfigProvider"]

ConfigProvider = Callable[[], GatewayConfig]

_ENV_KEYS = (
    "OPENCLAW_GATEWAY_URL",
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_GATEWAY_PASSWORD",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_GATEWAY_PORT",
    "OPENCLAW_HOME",
    "OPENCLAW_ALLOW_INSECURE_PRIVATE_WS",
    "GWCLIENT_STATE_DIR",
    "XDG_STATE_HOME",
    "HOME",
)


class EnvironmentConfigProvider:
    """``GatewayConfig.from_environment()``, re-read only when an ``OPENCLAW_*`` variable or
    the config file (path, mtime, size) changed, so calling it per request is cheap.  When
    its answer changes, the connection closes the old socket and connects once with the new
    config."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._config: GatewayConfig | None = None

    def _fingerprint(self) -> tuple[object, ...]:
        env = tuple(os.environ.get(k) for k in _ENV_KEYS)
        path = openclaw_config_path()
        try:
            st = path.stat()
            file_key: tuple[object, ...] = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            file_key = (str(path), None, None)
        return (*env, *file_key)

    def __call__(self) -> GatewayConfig:
        key = self._fingerprint()
        with self._lock:
            if key != self._key or self._config is None:
                self._config = GatewayConfig.from_environment()
                self._key = key
            return self._config

    def __repr__(self) -> str:
        return "EnvironmentConfigProvider()"
