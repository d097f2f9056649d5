"""The device-token retry, device-token handoff and trusted endpoints (pure policy).

As the official client does (``shouldRetryGatewayWithDeviceToken``):

* when the gateway refuses the configured shared token (``AUTH_TOKEN_MISMATCH``, or its
  advice ``retry_with_device_token``) and this device has a stored device token, the next
  connect is retried **once** with both (``auth: {token, deviceToken}``), but only to a
  trusted endpoint: loopback, ``wss://`` with a pinned certificate fingerprint, or the
  SSH tunnel (its local end is loopback).  A warning says, once per channel, that the
  configured token was refused.  The budget is restored by the next successful connect;
* ``hello-ok.auth.deviceTokens[]`` (more tokens handed over with a bootstrap connect) are
  stored only over such a transport.

:class:`DeviceTokenRetry` is used by the channel under its lock; no I/O here.
"""

from __future__ import annotations

import logging

from .._config.config import GatewayConfig
from .._core.handshake import StoredToken
from .._errors import ConnectError

__all__ = ["DeviceTokenRetry", "is_trusted_endpoint"]

log = logging.getLogger("gwclient.channel")

_RETRY_CODES = frozenset({"AUTH_TOKEN_MISMATCH"})


def is_trusted_endpoint(config: GatewayConfig) -> bool:
    """Loopback, ``wss://`` with a pinned fingerprint, or the SSH tunnel."""
    if config.ssh is not None or config.is_loopback:
        return True
    return config.is_secure and bool(config.tls_fingerprint)


class DeviceTokenRetry:
    """One channel's device-token retry state."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self._trusted = is_trusted_endpoint(config)
        #: The next connect sends the stored device token along with the shared token.
        self.pending = False
        self._used = False
        self._warned = False

    def should_retry(self, error: ConnectError, stored: StoredToken | None) -> bool:
        """Whether a refused connect is retried with the stored device token."""
        if self._used or self.pending or not self._config.token or stored is None or not self._trusted:
            return False
        details = error.details
        advised = (error.detail_code in _RETRY_CODES or details.get("canRetryWithDeviceToken") is True
                   or details.get("recommendedNextStep") == "retry_with_device_token")
        if not advised:
            return False
        self.pending = self._used = True
        if not self._warned:
            self._warned = True
            log.warning("the gateway at %s refused the configured shared token (%s); retrying once with "
                        "this device's stored device token (update the token to silence this)",
                        self._config.redacted_url, error.detail_code or error.code)
        return True

    def connected(self) -> None:
        """A connect succeeded: the next refusal may be retried again."""
        self.pending = False
        self._used = False

    def take(self) -> bool:
        """For the connect being built: send the device token too?  (Spends the retry.)"""
        pending, self.pending = self.pending, False
        return pending
