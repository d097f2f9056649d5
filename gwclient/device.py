"""This client's device identity (Ed25519 key pair) and the device tokens the gateway issues.

Both live in the state dir: ``GatewayConfig.state_dir`` if set, else
:func:`default_state_dir` (``$GWCLIENT_STATE_DIR``, ``$XDG_STATE_HOME/gwclient``, or
``~/.local/state/gwclient``).  gwclient creates and uses
them by itself; these names are for tools that show or manage them (``gwclient pair``).
"""

from __future__ import annotations

from ._config.device import DeviceIdentity, DeviceStoreError, DeviceTokenStore, StoredDeviceToken
from ._config.locations import default_state_dir

__all__ = ["DeviceIdentity", "DeviceStoreError", "DeviceTokenStore", "StoredDeviceToken", "default_state_dir"]
