"""The typed updates of a :class:`~gwclient.Run` and its :class:`RunResult`
(dataclasses-json), plus the tolerant field readers the run's event interpretation uses.
Pure data: no threads, no sockets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from dataclasses_json import DataClassJsonMixin, LetterCase, Undefined, dataclass_json

__all__ = [
    "AgentUpdate",
    "LifecycleUpdate",
    "RunResult",
    "RunUpdate",
    "StatusUpdate",
    "TextDelta",
    "ToolUpdate",
    "UsageUpdate",
]

_camel = dataclass_json(letter_case=LetterCase.CAMEL, undefined=Undefined.EXCLUDE)  # type: ignore[call-overload]

# ----------------------------------------------------------------------------- updates


@_camel
@dataclass(frozen=True)
class StatusUpdate(DataClassJsonMixin):
    """A ``run_status`` phase: ``preparing_workspace``, ``preparing_context``,
    ``starting_model``, or ``retrying`` (with ``retry_attempt``, ``max_retries``,
    ``delay_ms``, ``message``)."""

    run_id: str
    phase: str
    retry_attempt: int | None = None
    max_retries: int | None = None
    delay_ms: int | None = None
    message: str | None = None
    kind: str = "status"


@_camel
@dataclass(frozen=True)
class TextDelta(DataClassJsonMixin):
    """New reply text: ``text`` is the delta, ``full`` the reply so far.  With ``replace``
    the reply restarted and ``full`` is the whole new text."""

    run_id: str
    text: str
    full: str = ""
    replace: bool = False
    kind: str = "text"


@_camel
@dataclass(frozen=True)
class LifecycleUpdate(DataClassJsonMixin):
    """An ``agent`` ``lifecycle`` phase (``start``, ``model``, ``finishing``, ``end``,
    ``error``, ``fallback_step``) with its stop reason or error, if any."""

    run_id: str
    phase: str
    provider: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    aborted: bool | None = None
    kind: str = "lifecycle"


@_camel
@dataclass(frozen=True)
class ToolUpdate(DataClassJsonMixin):
    """An ``agent`` ``tool`` event (a tool call starting, updating or finishing)."""

    run_id: str
    name: str | None = None
    phase: str | None = None
    tool_call_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    kind: str = "tool"


@_camel
@dataclass(frozen=True)
class UsageUpdate(DataClassJsonMixin):
    """Token usage reported during the run."""

    run_id: str
    output_tokens: int | None = None
    input_tokens: int | None = None
    total_tokens: int | None = None
    kind: str = "usage"


@_camel
@dataclass(frozen=True)
class AgentUpdate(DataClassJsonMixin):
    """Any other ``agent`` stream (``compaction``, ``plan``, ``thinking``...), as sent."""

    run_id: str
    stream: str
    data: dict[str, Any] = field(default_factory=dict)
    kind: str = "agent"


RunUpdate = Union[StatusUpdate, TextDelta, LifecycleUpdate, ToolUpdate, UsageUpdate, AgentUpdate]  # noqa: UP007


@_camel
@dataclass(frozen=True)
class RunResult(DataClassJsonMixin):
    """How a run ended successfully: the reply ``text``, ``status`` (``ok``), the gateway's
    ``stop_reason``, token ``usage`` (as reported), and ``recovered`` when the outcome was
    learnt after a reconnect (``agent.wait``/``chat.history``) rather than streamed.

    A message the gateway **steered** into a turn that was running (queue mode ``steer``)
    is answered by that turn: ``steered_into`` is its runId, ``text`` the part of its reply
    that answers this message, and ``steered_with`` the runIds of the other messages
    steered in together with this one, which the same reply answers (docs/runs.md)."""

    run_id: str
    session_key: str
    text: str
    status: str = "ok"
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False
    steered_into: str | None = None
    steered_with: tuple[str, ...] = ()


# ------------------------------------------------------------------------------ helpers


def _message_text(message: Any) -> str | None:
    """The text of a chat message ``{role, content: str | [{type: "text", text}]}``."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str))
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


