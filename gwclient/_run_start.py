"""Starting agent and chat runs: :class:`RunsMixin` gives :class:`~gwclient.GatewayConnection`
its ``chat()`` and ``agent()``, built only on the public ``request()`` and ``subscribe()``
(the :class:`~gwclient.Run` itself is in :mod:`gwclient._runs`)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._deadline import check_timeout
from ._errors import UsageError, check_caller
from ._run_updates import _str
from ._runs import Run

if TYPE_CHECKING:
    from ._subscription import Subscription

__all__ = ["RunsMixin"]


# -------------------------------------------------------------------------------- mixin


class RunsMixin:
    """``chat()`` and ``agent()`` for :class:`~gwclient.GatewayConnection`, built only on
    its public ``request()`` and ``subscribe()``."""

    if TYPE_CHECKING:
        def request(self, method: str, params: Any = None, *, timeout: float | None = ...,
                    expect_final: bool | None = None) -> Any: ...

        def subscribe(self, events: Iterable[str] | str | None = None, *, maxsize: int | None = None,
                      include_state: bool = True) -> Subscription: ...

    def chat(self, session_key: str, message: str, *, timeout: float | None = None,
             idempotency_key: str | None = None, **params: Any) -> Run:
        """Start a chat turn (``chat.send``) in ``session_key`` and return its :class:`Run`
        as soon as the gateway has started it.

        ``timeout`` (seconds) is the run's time limit, sent as ``timeoutMs``; the
        :class:`Run` never waits more than that plus :data:`GRACE_SECONDS`.
        ``idempotency_key`` defaults to a fresh UUID (it becomes the run id; re-sending the
        same key never starts a second run).  Other keyword arguments are passed to
        ``chat.send`` as they are (gateway names: ``thinking``, ``attachments``...).
        Raises like ``request()`` if the run could not be started."""
        check_caller("GatewayConnection.chat()")
        if not isinstance(session_key, str) or not session_key:
            raise UsageError("session_key must be a non-empty string")
        timeout = check_timeout(timeout)
        key = idempotency_key or str(uuid.uuid4())
        body: dict[str, Any] = {"sessionKey": session_key, "message": message, "idempotencyKey": key, **params}
        if timeout is not None:
            body["timeoutMs"] = max(1, int(timeout * 1000))
        return self._start_run("chat", "chat.send", body, session_key, timeout)

    def agent(self, message: str, *, session_key: str | None = None, agent_id: str | None = None,
              timeout: float | None = None, idempotency_key: str | None = None, **params: Any) -> Run:
        """Start an agent turn (``agent``) and return its :class:`Run` as soon as the gateway
        has accepted it (the first of its two answers).

        ``session_key`` defaults to the agent's own; ``timeout`` (seconds, rounded up) is
        the run's time limit; other keyword arguments go to ``agent`` as they are
        (``provider``, ``model``, ``thinking``...).  Raises like ``request()``."""
        check_caller("GatewayConnection.agent()")
        timeout = check_timeout(timeout)
        key = idempotency_key or str(uuid.uuid4())
        body: dict[str, Any] = {"message": message, "idempotencyKey": key, **params}
        if session_key is not None:
            body["sessionKey"] = session_key
        if agent_id is not None:
            body["agentId"] = agent_id
        if timeout is not None:
            body["timeout"] = max(1, math.ceil(timeout))
        return self._start_run("agent", "agent", body, session_key or "", timeout)

    def _start_run(self, kind: str, method: str, body: dict[str, Any], session_key: str,
                   timeout: float | None) -> Run:
        # Subscribe first: the run's first events can arrive before its start answer.
        sub = self.subscribe(["agent", "chat"], include_state=True)
        try:
            # ``agent`` answers twice: the run starts at the first ("accepted") answer.
            answer = self.request(method, body, expect_final=False)
        except BaseException:
            sub.close()
            raise
        answer = answer if isinstance(answer, dict) else {}
        run_id = _str(answer.get("runId")) or body["idempotencyKey"]
        session_key = _str(answer.get("sessionKey")) or session_key
        run = Run(self, sub, kind=kind, session_key=session_key, run_id=run_id, limit=timeout)
        run._agent_id = _str(answer.get("agentId")) or _str(body.get("agentId"))
        run._message = _str(body.get("message"))
        status = answer.get("status")
        if kind == "agent" and status not in (None, "accepted"):
            run._finish(run._agent_outcome(answer))
        elif kind == "chat" and status == "ok":
            run._recheck = True  # an earlier run with this key already finished
        return run
