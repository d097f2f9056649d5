"""Following a queued message to the turn that answers it (pure: no threads, no sockets).

A ``chat.send`` into a session whose run is still going is *queued* (2026.9.6, queue mode
``steer``/``followup``; PROTOCOL.md R7): the gateway answers ``{runId, status: "started"}``,
emits at once a ``chat`` ``final`` for that runId **without** a ``message``, and later runs
the message as a follow-up turn under a **new** runId, whose ``agent`` ``lifecycle`` events
carry ``data.completionSource: "reply-dispatch"`` and whose ``chat`` ``final`` carries the
reply.  No event names the queued runId again.

What ties them is the session transcript (``chat.history``): the gateway stores the queued
message as a user entry with ``idempotencyKey: "<queued runId>:user"`` when its follow-up
turn starts, and the turn's reply as the next assistant entry, with
``__openclaw.runId: <follow-up runId>``.  :func:`match_turn` reads that: given the history
and a follow-up turn that just started (or ended), is it the one answering our message?

* ``MINE``: the first assistant entry after our user entry is the candidate's, or our user
  entry is the newest user entry, nothing answers it yet and the candidate has answered
  nothing else (its turn is the one starting; this needs a transcript whose assistant
  entries carry ``__openclaw.runId``, 2026.9);
* ``OTHER``: the newest user entry is another message's, still unanswered (the candidate
  answers that one), or something else answers ours (see :func:`answer_in_history`);
* ``PENDING``: neither entry is there yet (the gateway writes the user entry a few
  milliseconds after the turn's ``lifecycle`` start): ask again later;
* ``UNKNOWN``: the transcript keeps no idempotency keys at all: nothing can tell which turn
  is ours (the run then ends with :class:`~gwclient.RunReplyUnknown`).

A message sent while a turn *streams* may instead be **steered** into that turn (queue mode
``steer``, the default; ``docs/concepts/queue-steering.md``): its ``final`` without a message
comes when the running turn drains it at a model boundary, its user entry is written just
before that final with ``__openclaw.steerTargetRunId: <the running turn's runId>``, and the
running turn's next assistant message answers it, under the running turn's runId.  The
gateway's chat handler drains every waiting steer at once (``steeringMode: "all"``), so
messages steered together are consecutive user entries with the same target, and the one
reply after them answers all of them.  :func:`steer_target` tells whether our message was
steered and into which turn; :func:`steered_reply` reads its reply from the transcript.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .runs import _message_text
from .sessions import canonical_session_key

__all__ = [
    "BOOT_TOLERANCE",
    "MINE",
    "OTHER",
    "PENDING",
    "UNKNOWN",
    "Match",
    "SteeredReply",
    "answer_in_history",
    "booted_at",
    "canonical_key",
    "is_queued_final",
    "is_reply_turn_start",
    "is_turn_start",
    "match_turn",
    "queue_unknown",
    "same_process",
    "session_idle",
    "steer_target",
    "steered_reply",
]

Match = Literal["mine", "other", "pending", "unknown"]
MINE: Match = "mine"
OTHER: Match = "other"
PENDING: Match = "pending"
UNKNOWN: Match = "unknown"


def canonical_key(key: Any) -> str | None:
    """A session key in the gateway's canonical form (:func:`canonical_session_key`); None
    for a non-string or a blank one."""
    return canonical_session_key(key) if isinstance(key, str) and key.strip() else None


def booted_at(uptime_ms: Any, now: float) -> float | None:
    """When the gateway process started (wall clock, seconds), from a hello's
    ``snapshot.uptimeMs``; None without one."""
    if not isinstance(uptime_ms, (int, float)) or isinstance(uptime_ms, bool) or uptime_ms < 0:
        return None
    return now - uptime_ms / 1000.0


#: Two hellos whose start instants (:func:`booted_at`) differ by less are one process.
BOOT_TOLERANCE = 5.0


def same_process(old_boot: str | None, new_boot: str | None, old_at: float | None,
                 new_at: float | None) -> bool | None:
    """Did two hellos come from one gateway process?  By ``server.bootId`` (2026.9), else
    by the start instant from ``uptimeMs`` (2026.7.1 and older have no bootId; a restart
    starts later by at least the old uptime); None when neither tells."""
    if old_boot and new_boot:
        return old_boot == new_boot
    if old_at is not None and new_at is not None:
        return abs(new_at - old_at) < BOOT_TOLERANCE
    return None


def is_queued_final(payload: dict[str, Any], *, started: bool, text: str) -> bool:
    """A ``chat`` ``final`` that only says "queued": no ``message``, for a run that never
    started a turn of its own (no ``lifecycle`` start, no text)."""
    return payload.get("state") == "final" and payload.get("message") is None and not started and not text


def is_turn_start(payload: dict[str, Any]) -> bool:
    """An ``agent`` ``lifecycle`` ``start``: a candidate for the turn answering a queued
    message.  2026.9 marks follow-up turns ``completionSource: "reply-dispatch"``
    (:func:`is_reply_turn_start`); 2026.7.1 does not, so every turn start is looked at and
    the transcript decides."""
    data = payload.get("data")
    return payload.get("stream") == "lifecycle" and isinstance(data, dict) and data.get("phase") == "start"


def is_reply_turn_start(payload: dict[str, Any]) -> bool:
    """An ``agent`` ``lifecycle`` ``start`` of a follow-up turn (``reply-dispatch``)."""
    data = payload.get("data")
    return (payload.get("stream") == "lifecycle" and isinstance(data, dict) and data.get("phase") == "start"
            and data.get("completionSource") == "reply-dispatch")


def _key(message: dict[str, Any]) -> str | None:
    key = message.get("idempotencyKey")
    if not isinstance(key, str):
        meta = message.get("__openclaw")
        key = meta.get("idempotencyKey") if isinstance(meta, dict) else None
    return key if isinstance(key, str) else None


def _run_id(message: dict[str, Any]) -> str | None:
    meta = message.get("__openclaw")
    rid = meta.get("runId") if isinstance(meta, dict) else None
    return rid if isinstance(rid, str) else None


def _messages(history: Any) -> list[dict[str, Any]]:
    messages = history.get("messages") if isinstance(history, dict) else None
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _text(message: dict[str, Any]) -> str:
    return _message_text(message) or ""


def _keyless(messages: list[dict[str, Any]]) -> bool:
    users = [m for m in messages if m.get("role") == "user"]
    return bool(users) and all(_key(m) is None for m in users)


def _own_index(messages: list[dict[str, Any]], run_id: str, text: str | None = None) -> int | None:
    """Our user entry: by ``"<runId>:user"``; in a transcript without keys (2026.5.12) by
    the message ``text``, when exactly one user entry has it (else None: cannot tell)."""
    if _keyless(messages):
        if text is None:
            return None
        found = [i for i, m in enumerate(messages) if m.get("role") == "user" and _text(m).strip() == text.strip()]
        return found[0] if len(found) == 1 else None
    wanted = f"{run_id}:user"
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user" and _key(messages[i]) == wanted:
            return i
    if text is None or not text.strip():
        return None
    # A message steered into a running turn may be stored without its key: the one
    # keyless user entry with our text, if exactly one.
    found = [i for i, m in enumerate(messages)
             if m.get("role") == "user" and _key(m) is None and _text(m).strip().endswith(text.strip())]
    return found[0] if len(found) == 1 else None


def _answer_after(messages: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    """The first assistant entry after ``index`` and before the next user entry."""
    for message in messages[index + 1:]:
        role = message.get("role")
        if role == "user":
            return None
        if role == "assistant":
            return message
    return None


def match_turn(history: Any, run_id: str, candidate: str, text: str | None = None) -> Match:
    """Is follow-up turn ``candidate`` the one answering the queued message ``run_id``
    (whose text is ``text``)?"""
    messages = _messages(history)
    if _keyless(messages) and (text is None or sum(
            1 for m in messages if m.get("role") == "user" and _text(m).strip() == text.strip()) > 1):
        return UNKNOWN  # no keys, and the text does not single our entry out
    index = _own_index(messages, run_id, text)
    if index is None:
        if any(_run_id(m) == candidate for m in messages if m.get("role") == "assistant"):
            return OTHER  # the candidate's reply is there, after someone else's message
        newest = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
        if newest is not None and _answer_after(messages, newest) is None:
            return OTHER  # the candidate is answering that newest message
        return PENDING
    answer = _answer_after(messages, index)
    if answer is not None:
        return MINE if _run_id(answer) == candidate else OTHER
    if any(m.get("role") == "user" for m in messages[index + 1:]):
        return OTHER  # a newer message is waiting: the candidate answers an earlier one
    assistants = [m for m in messages if m.get("role") == "assistant"]
    if any(_run_id(m) == candidate for m in assistants):
        return OTHER  # the candidate already answered another message (an event seen late)
    if not any(_run_id(m) for m in assistants):
        # a transcript without runIds (2026.7.1): a turn seen late cannot be told from the
        # one starting now; wait until an answer follows our entry (answer_in_history)
        return PENDING
    return MINE


def answer_in_history(history: Any, run_id: str, text: str | None = None) -> tuple[str | None, str, bool] | None:
    """The reply to queued message ``run_id`` (whose text is ``text``) if the transcript
    already has it: ``(reply runId, text, failed)``; None when it has none (yet)."""
    messages = _messages(history)
    index = _own_index(messages, run_id, text)
    if index is None:
        return None
    answer = _answer_after(messages, index)
    if answer is None:
        return None
    return _run_id(answer), _text(answer), answer.get("stopReason") == "error"


def session_idle(history: Any) -> bool:
    """The session has nothing running and nothing queued (``sessionInfo.hasActiveRun``
    false, ``pendingInputs.items`` empty).  False when unsure (an older gateway says
    neither)."""
    if not isinstance(history, dict):
        return False
    info = history.get("sessionInfo")
    pending = history.get("pendingInputs")
    items = pending.get("items") if isinstance(pending, dict) else None
    active = info.get("hasActiveRun") if isinstance(info, dict) else None
    return active is False and isinstance(items, list) and not items


def queue_unknown(history: Any) -> bool:
    """The gateway does not say what is still queued (no ``pendingInputs``: 2026.7.1 and
    older) and reports no active run: only waiting tells whether another turn comes."""
    if not isinstance(history, dict) or isinstance(history.get("pendingInputs"), dict):
        return False
    info = history.get("sessionInfo")
    return not (isinstance(info, dict) and info.get("hasActiveRun") is True)


# ------------------------------------------------------------------ steered messages


def _steer_of(message: dict[str, Any]) -> str | None:
    meta = message.get("__openclaw")
    target = meta.get("steerTargetRunId") if isinstance(meta, dict) else None
    return target if isinstance(target, str) and target else None


def _key_run(message: dict[str, Any]) -> str | None:
    """The runId in a user entry's ``"<runId>:user"`` key."""
    key = _key(message)
    return key[:-len(":user")] if key is not None and key.endswith(":user") else None


def steer_target(history: Any, run_id: str, text: str | None = None) -> str | None:
    """The runId of the running turn our message (``run_id``, text ``text``) was steered
    into, from its user entry's ``steerTargetRunId``; None if it was not steered (or its
    entry is not in the transcript yet)."""
    messages = _messages(history)
    index = _own_index(messages, run_id, text)
    return None if index is None else _steer_of(messages[index])


@dataclass(frozen=True)
class SteeredReply:
    """The reply to a steered message, read from the transcript."""

    text: str
    """The texts of the target turn's assistant entries after our batch, joined like the
    gateway joins a turn's messages (``"\\n\\n"``)."""
    failed: bool
    """An assistant entry says the turn failed (``stopReason: "error"``)."""
    batch: tuple[str, ...]
    """The runIds of the messages steered in together with ours (ours included), in order:
    the one reply answers all of them."""
    complete: bool
    """A later user entry follows the reply: it cannot grow any more."""


def steered_reply(history: Any, run_id: str, target: str, text: str | None = None) -> SteeredReply | None:
    """The reply of turn ``target`` to our steered message, if the transcript has one: the
    assistant entries of ``target`` after the consecutive user entries steered into it
    together with ours, up to the next user entry.  None when there is none (yet)."""
    messages = _messages(history)
    index = _own_index(messages, run_id, text)
    if index is None or _steer_of(messages[index]) != target:
        return None

    def steered(i: int) -> bool:
        return messages[i].get("role") == "user" and _steer_of(messages[i]) == target

    start, end = index, index
    while start > 0 and steered(start - 1):
        start -= 1
    while end + 1 < len(messages) and steered(end + 1):
        end += 1
    batch = tuple(rid for m in messages[start:end + 1] if (rid := _key_run(m)) is not None)
    texts: list[str] = []
    failed = complete = answered = False
    for message in messages[end + 1:]:
        role = message.get("role")
        if role == "user":
            complete = True
            break
        if role != "assistant" or _run_id(message) not in (target, None):
            continue  # tool results; another turn's entry
        answered = True
        failed = failed or message.get("stopReason") == "error"
        if piece := _text(message):
            texts.append(piece)
    if not answered:
        return None
    return SteeredReply("\n\n".join(texts), failed, batch or (run_id,), complete)
