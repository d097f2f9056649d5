"""The gwclient exception tree.

Every error that crosses the public API is a :class:`GatewayError`; no pykka,
websocket-client, sshtunnel or cryptography exception escapes (they are chained
as ``__cause__``).  Subclasses are grouped by what the caller can do::

    GatewayError
     +-- ConfigError            the configuration is unusable; fix it
     |    +-- DeviceStoreError      (_device) the device-token file could not be written
     +-- ProtocolError          the peer sent something that is not protocol 4
     +-- ClientClosed           shutdown() was called; make a new connection
     +-- UsageError             the API was misused (e.g. a blocking call on a gwclient thread)
     +-- GatewayTimeout         no answer in time; retry or give up
     |    +-- RunTimedOut           (_runs) the run hit its time limit (also a RunFailed)
     +-- Disconnected           the socket dropped while the request was pending
     |    +-- TunnelError           (remote) the SSH tunnel could not be opened or was lost
     |    +-- EndpointNotReady      (remote) the remote endpoint is not ready yet
     +-- RequestError           the gateway answered ok:false (code, details)
     |    +-- GatewayUnavailable    temporary (UNAVAILABLE); retry after retry_after
     |    +-- MissingScope          FORBIDDEN for a missing operator scope (request_scopes())
     |    +-- UnsupportedMethod     the gateway does not know the method (an older release)
     +-- ConnectError           the handshake was refused
     |    +-- AuthRejected          wrong/missing credentials, rate limited...
     |    +-- PairingRequired       approve the device, then retry (request_id)
     |    +-- ProtocolMismatch      gateway does not speak protocol 4
     |    +-- ShareUnavailable      share="required" and the local share cannot be used
     +-- RunError               (_runs) an agent/chat run did not end with a reply
          +-- RunFailed             the run failed on the gateway (kind, message)
          |    +-- RunTimedOut          ... because it ran out of time
          +-- RunAborted            the run was aborted (chat.abort)
          +-- RunInterrupted        the connection was lost and the outcome is unknown

Messages never contain secrets (tokens, passwords, device keys or tokens).
"""

from __future__ import annotations

import os
import shlex
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "AuthRejected",
    "ClientClosed",
    "ConfigError",
    "ConnectError",
    "Disconnected",
    "EndpointNotReady",
    "GatewayError",
    "GatewayTimeout",
    "GatewayUnavailable",
    "MissingScope",
    "PairingRequired",
    "ProtocolError",
    "ProtocolMismatch",
    "RequestError",
    "RunAborted",
    "RunError",
    "RunFailed",
    "RunInterrupted",
    "RunTimedOut",
    "ShareUnavailable",
    "TunnelError",
    "UnsupportedMethod",
    "UsageError",
]


# The ``openclaw`` command line to print in pairing messages: one that works here.
# ``openclaw`` if it is on ``PATH``; otherwise, when gwclient runs from a checkout that has
# ``scripts/openclaw`` (the pinned openclaw with the pinned Node, installed into the cache
# on first use), that script's path; otherwise plain ``openclaw`` (the command to run on
# the gateway host).  Arguments from the gateway (request ids) are shell-quoted.

_CHECKOUT_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "openclaw"


def _program() -> str:
    if shutil.which("openclaw"):
        return "openclaw"
    if _CHECKOUT_SCRIPT.is_file() and os.access(_CHECKOUT_SCRIPT, os.X_OK):
        return shlex.quote(str(_CHECKOUT_SCRIPT))
    return "openclaw"


def openclaw_command(*args: str) -> str:
    """``openclaw <args>`` as a shell command line that runs on this machine."""
    return " ".join([_program(), *(shlex.quote(a) for a in args)])


class GatewayError(Exception):
    """Base class of every error raised by gwclient."""


class ConfigError(GatewayError):
    """The configuration cannot be used (bad URL, insecure transport, unreadable file)."""


class ProtocolError(GatewayError):
    """A frame was not valid protocol-4 JSON (not an object, unknown type, missing field)."""


class ClientClosed(GatewayError):
    """The connection was shut down; it cannot be used any more."""


class UsageError(GatewayError):
    """The API was misused: a blocking call from a gwclient thread (it would deadlock),
    conflicting arguments, or constructing a connection directly."""


class GatewayTimeout(GatewayError):
    """No answer arrived before the caller's deadline.

    ``request_sent`` says whether the request frame had been handed to the socket (True:
    the gateway may have run it; False: it never left this process, retrying is safe;
    None: not a request's timeout, e.g. ``connect()``)."""

    request_sent: bool | None = None


class Disconnected(GatewayError):
    """The gateway socket closed while a request was pending (the request may or may not
    have run on the gateway; it is never replayed).

    ``request_sent`` says whether the request frame had been handed to the socket before
    it closed (True: it may have run; False: it never left this process, so retrying is
    safe; None: unknown or not about one request)."""

    def __init__(self, message: str, *, code: int | None = None, reason: str = "",
                 request_sent: bool | None = None) -> None:
        super().__init__(message)
        self.close_code = code
        self.close_reason = reason
        self.request_sent = request_sent


class ChannelRetired(Disconnected):
    """Internal: a request reached a channel that a config change had just retired before
    anything was sent; the facade binds to the new channel and submits again."""


class TunnelError(Disconnected):
    """The SSH tunnel could not be opened or was lost: the SSH server is unreachable, the
    SSH handshake failed or the local port is taken.  Transient: the tunnel manager keeps
    retrying with backoff (up to its ``max_failures``)."""


class EndpointNotReady(Disconnected):
    """The endpoint store was asked for a config while the remote endpoint is connecting
    or unavailable (``state`` says which and why).  Retry after the endpoint is ready
    (:meth:`gwclient.remote.GatewayEndpointStore.wait_ready`)."""

    def __init__(self, message: str, *, state: object) -> None:
        super().__init__(message)
        #: The :data:`gwclient.remote.EndpointState` value (``EndpointConnecting`` or
        #: ``EndpointUnavailable``); typed loosely because this module imports nothing.
        self.state = state


class _CodedError(GatewayError):
    """An error shape sent by the gateway: ``{code, message, details?, retryable?, retryAfterMs?}``."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        details: Mapping[str, Any] | None = None,
        retryable: bool = False,
        retry_after_ms: int | None = None,
        method: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details: dict[str, Any] = dict(details or {})
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms
        self.method = method
        #: How many times the request was sent (more than 1 after busy retries).
        self.attempts = 1
        #: True when the error came after the gateway had accepted the request (the
        #: final answer of a two-stage request such as ``agent``): never retried.
        self.after_accept = False

    @property
    def detail_code(self) -> str:
        """``details.code`` (e.g. ``AUTH_TOKEN_MISMATCH``, ``MISSING_SCOPE``), or ``""``."""
        value = self.details.get("code")
        return value if isinstance(value, str) else ""

    @property
    def recommended_next_step(self) -> str:
        value = self.details.get("recommendedNextStep")
        return value if isinstance(value, str) else ""


class RequestError(_CodedError):
    """The gateway answered a request with ``ok:false``."""


class GatewayUnavailable(RequestError):
    """``UNAVAILABLE``: the gateway is starting, draining or busy; retry later.

    ``request()``, ``submit()`` and run starts retry it by themselves when the gateway
    says ``retryable: true`` and had not accepted the request yet (docs/errors.md), within
    the caller's timeout; ``attempts`` says how often it was sent.  Also raised at once
    by a call with ``wait_for_ready=False`` while the connection is not up."""


class MissingScope(RequestError):
    """``FORBIDDEN`` because the connection lacks an operator scope.

    ``missing_scope`` is the scope the gateway named (``details.missingScope``, else the
    legacy message ``missing scope: X``), ``required_scopes`` every scope the method
    needs (``details.requiredScopes``).  Never retried: ask for the scope with
    :meth:`GatewayConnection.request_scopes` (or ``gwclient pair --scopes``)."""

    def __init__(self, message: str, *, missing_scope: str = "",
                 required_scopes: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.missing_scope = missing_scope
        self.required_scopes = required_scopes or ((missing_scope,) if missing_scope else ())


class UnsupportedMethod(RequestError):
    """The gateway does not know the method (``unknown method: X``, or a method that the
    gateway's hello-ok feature list does not announce): it runs an older release."""


class ConnectError(_CodedError):
    """The gateway refused the ``connect`` handshake."""

    def __init__(self, message: str, *, pauses_reconnect: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: True when reconnecting cannot help until something changes (credentials,
        #: pairing approval, upgrade): reconnecting is paused.
        self.pauses_reconnect = pauses_reconnect


class ShareUnavailable(ConnectError):
    """``share="required"`` (``GWCLIENT_SHARE=required``) and the local share could not be
    attached to or started (the message says why); no direct socket was opened."""


class AuthRejected(ConnectError):
    """Credentials were missing, wrong or rate limited (``details.code`` says which)."""


#: The first openclaw release whose gateway speaks protocol 4 (older ones speak 3).
MINIMUM_OPENCLAW = "2026.5.12"


class ProtocolMismatch(ConnectError):
    """The gateway does not accept protocol 4.

    ``server_protocol`` is what the gateway speaks when it said so (``details.expectedProtocol``
    or ``hello-ok.protocol``), else ``None`` (a bare close 1002); ``client_protocol`` is what
    gwclient speaks (4); ``minimum_openclaw`` the first openclaw release that speaks it.
    The message names all three and says which side to upgrade."""

    #: The first openclaw release whose gateway speaks gwclient's protocol.
    minimum_openclaw: str = MINIMUM_OPENCLAW

    def __init__(
        self,
        message: str,
        *,
        server_protocol: int | None = None,
        client_protocol: int = 4,  # gwclient._core.frames.PROTOCOL_VERSION (a test keeps them equal)
        **kwargs: Any,
    ) -> None:
        self.server_protocol = server_protocol
        self.client_protocol = client_protocol
        ours = f"gwclient speaks protocol {client_protocol}"
        if server_protocol is None:
            hint = (
                f"the gateway does not accept protocol {client_protocol} ({ours}); "
                f"upgrade the gateway to openclaw >= {MINIMUM_OPENCLAW}"
            )
        elif server_protocol < client_protocol:
            hint = (
                f"the gateway speaks protocol {server_protocol}, {ours}; "
                f"upgrade the gateway to openclaw >= {MINIMUM_OPENCLAW}"
            )
        elif server_protocol > client_protocol:
            hint = (
                f"the gateway speaks protocol {server_protocol}, {ours}; "
                f"upgrade gwclient to a release that speaks protocol {server_protocol}"
            )
        else:
            hint = (
                f"the gateway says it speaks protocol {server_protocol} but refused it ({ours}); "
                f"check that the gateway runs openclaw >= {MINIMUM_OPENCLAW}"
            )
        if ours in message:
            # Already explained: a copy (copy.copy rebuilds an exception from its message;
            # a paused connection hands each caller a copy) must not say it twice.
            hint = ""
        super().__init__(f"{message}: {hint}" if message and hint else message or hint, **kwargs)


class PairingRequired(ConnectError):
    """This device must be approved on the gateway host before it may connect."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        device_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.request_id = request_id
        self.device_id = device_id
        if request_id:
            message = (
                f"{message}: approve it on the gateway host with "
                f"`{openclaw_command('devices', 'approve', request_id)}`"
            )
        elif device_id:
            message = f"{message} (device {device_id}): list requests with `{openclaw_command('devices', 'list')}`"
        super().__init__(message, **kwargs)

    @property
    def approve_command(self) -> str | None:
        """``openclaw devices approve <id>``, with the ``openclaw`` that runs on this machine
        (``scripts/openclaw`` of a checkout when no ``openclaw`` is on ``PATH``)."""
        return openclaw_command("devices", "approve", self.request_id) if self.request_id else None


class RunError(GatewayError):
    """An agent or chat run (:class:`~gwclient.Run`) ended without a reply.

    ``run_id`` and ``session_key`` name the run; ``partial_text`` is the reply text streamed
    before it ended (may be empty)."""

    def __init__(self, message: str, *, run_id: str = "", session_key: str = "",
                 partial_text: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.session_key = session_key
        self.partial_text = partial_text


class RunFailed(RunError):
    """The gateway reported the run as failed: ``kind`` is the gateway's error kind
    (``timeout``, ``refusal``, ``rate_limit``, ``context_length``, ``unknown``, or
    ``error`` when it gave none), ``reason`` its message, ``detail`` its ``errorDetail``
    (provider, model, failoverReason...)."""

    def __init__(self, message: str, *, kind: str = "error", reason: str = "",
                 detail: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind
        self.reason = reason or message
        self.detail: dict[str, Any] = dict(detail or {})


class RunTimedOut(RunFailed, GatewayTimeout):
    """The run hit its time limit (the gateway's, or the client's when the gateway never
    answered).  Both a :class:`RunFailed` (kind ``timeout``) and a :class:`GatewayTimeout`."""


class RunAborted(RunError):
    """The run was aborted (``chat.abort``, ``Run.abort()``); ``stop_reason`` is the
    gateway's (``rpc`` for an abort request)."""

    def __init__(self, message: str, *, stop_reason: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.stop_reason = stop_reason


class RunInterrupted(RunError):
    """The connection was lost during the run and, after reconnecting, the gateway could not
    say how it ended (it restarted and kept no reply), or no reconnect happened in time.
    The run may or may not have completed; check ``chat.history``."""


class RunReplyUnknown(RunInterrupted):
    """The run's message was queued behind another turn (the gateway answered it with a
    ``final`` that carries no reply) and the gateway gave no way to tell which later turn
    answers it: its transcript keeps no idempotency keys, or the session went idle without
    an answer for it.  The reply, if any, is in ``chat.history``."""


def check_caller(what: str) -> None:
    """Raise :class:`UsageError` when a blocking call is made from a gwclient thread (it
    would wait for the very thread it runs on: a deadlock)."""
    if threading.current_thread().name.startswith("gwclient-"):
        raise UsageError(f"{what} would block a gwclient thread and deadlock; call it from your own thread")
