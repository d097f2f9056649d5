"""Agent and chat runs as blocking streams: the :class:`Run` that ``conn.chat()`` and
``conn.agent()`` return, its result and its typed updates (see docs/runs.md).  The run
errors (``RunFailed``, ``RunAborted``, ``RunInterrupted``, ``RunTimedOut``) are in
:mod:`gwclient` with the rest of the error tree."""

from __future__ import annotations

from ._runs import (
    AgentUpdate,
    LifecycleUpdate,
    Run,
    RunResult,
    RunUpdate,
    StatusUpdate,
    TextDelta,
    ToolUpdate,
    UsageUpdate,
)

__all__ = [
    "AgentUpdate",
    "LifecycleUpdate",
    "Run",
    "RunResult",
    "RunUpdate",
    "StatusUpdate",
    "TextDelta",
    "ToolUpdate",
    "UsageUpdate",
]
