"""Human-readable summaries of gateway answers (``--json`` prints the answers whole).

A summary shows what the gateway means, never the shape of its JSON: a ``tasks`` object is
its ``total``/``active``/``failures``, not the number of its keys.  Keys it does not know
are listed by name (the details are in ``--json``), so a newer gateway's additions are
visible without being misread.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gwclient import ProtocolError
from gwclient.payloads import HealthSnapshot

if TYPE_CHECKING:
    from ._netstat import ConnectionReport

__all__ = [
    "compact",
    "connection_lines",
    "duration",
    "health_lines",
    "pretty",
    "status_lines",
]


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _number(value: Any) -> int | float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def duration(ms: Any) -> str:
    value = _number(ms)
    if value is None:
        return "?"
    seconds = int(value // 1000)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


def _count(value: Any) -> str | None:
    """The number of entries of a list, or the ``count``/``total`` a gateway object states
    (never the number of an object's keys)."""
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict):
        for key in ("count", "total"):
            number = _number(value.get(key))
            if number is not None:
                return str(number)
    return None


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _mib(value: Any) -> str | None:
    number = _number(value)
    return None if number is None else f"{number / (1024 * 1024):.0f} MiB"


# ------------------------------------------------------------------------- health


def health_lines(payload: Any, gateway: str) -> list[str]:
    """``gateway`` is shown as given: pass a redacted URL."""
    if not isinstance(payload, dict):
        return [f"health: {compact(payload)}"]
    try:
        health = HealthSnapshot.from_payload(payload)
    except ProtocolError:  # an unexpected shape: still show it, do not fail the command
        return [f"health: {compact(payload)}"]
    ok = {True: "ok", False: "NOT OK", None: "unknown"}[health.ok]
    lines = [f"health: {ok}", f"gateway: {gateway}"]
    if health.default_agent_id:
        lines.append(f"default agent: {health.default_agent_id}")
    if health.agents is not None:
        lines.append(f"agents: {len(health.agents)}")
    if health.sessions is not None:
        lines.append(f"sessions: {_count(health.sessions) or '?'}")
    if health.channels is not None:
        raw_labels = payload.get("channelLabels")
        labels: dict[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
        names = [str(labels.get(name, name)) for name in health.channels]
        lines.append(f"channels: {', '.join(names) if names else 'none'}")
    if health.heartbeat_seconds:
        lines.append(f"heartbeat: every {health.heartbeat_seconds} s")
    if health.duration_ms is not None:
        lines.append(f"checked in: {health.duration_ms} ms")
    return lines


# ------------------------------------------------------------------------- status


def _version(value: Any) -> str | None:
    return _scalar(value)


def _heartbeat(value: Any) -> str | None:
    if not isinstance(value, dict):
        return _scalar(value)
    if "enabled" in value and "agents" not in value:
        return "on" if value.get("enabled") else "off"
    agents = value.get("agents")
    if isinstance(agents, list):
        parts = []
        for agent in agents:
            if not isinstance(agent, dict):
                continue
            name = agent.get("agentId", "?")
            if agent.get("enabled") is False:
                parts.append(f"{name} off")
            else:
                every = agent.get("every")
                parts.append(f"{name} every {every}" if every else f"{name} on")
        return ", ".join(parts) if parts else "no agents"
    return None


def _tasks(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    total, active, failures = (_number(value.get(k)) for k in ("total", "active", "failures"))
    if total is None:
        return None
    text = f"{total} total"
    if active is not None:
        text += f", {active} active"
    if failures is not None:
        text += f", {failures} failed"
    return text


def _task_audit(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    warnings, errors = _number(value.get("warnings")), _number(value.get("errors"))
    if warnings is None and errors is None:
        return None
    return f"{warnings if warnings is not None else '?'} warning(s), {errors if errors is not None else '?'} error(s)"


def _sessions(value: Any) -> str | None:
    count = _count(value)
    if count is None:
        return None
    defaults = value.get("defaults") if isinstance(value, dict) else None
    model = defaults.get("model") if isinstance(defaults, dict) else None
    return f"{count} (default model {model})" if isinstance(model, str) and model else count


def _event_loop(value: Any) -> str | None:
    if not isinstance(value, dict) or "degraded" not in value:
        return None
    text = "DEGRADED" if value.get("degraded") else "ok"
    details = []
    reasons = value.get("reasons")
    if isinstance(reasons, list) and reasons and value.get("degraded"):
        details.append(", ".join(str(r) for r in reasons))
    p99 = _number(value.get("delayP99Ms"))
    if p99 is not None:
        details.append(f"p99 delay {p99:.0f} ms")
    return f"{text} ({'; '.join(details)})" if details else text


def _degraded(value: Any) -> str | None:
    if isinstance(value, dict) and "degraded" in value:
        return "DEGRADED" if value.get("degraded") else "ok"
    return None


def _process_memory(value: Any) -> str | None:
    return _mib(value.get("rssBytes")) if isinstance(value, dict) else None


def _state(value: Any) -> str | None:
    if isinstance(value, dict):
        state = value.get("state")
        if isinstance(state, str):
            return state
        if "enabled" in value:
            return "on" if value.get("enabled") else "off"
    return None


def _listed(value: Any) -> str | None:
    """A list shown as its size; an empty one is "none"."""
    if not isinstance(value, list):
        return None
    return str(len(value)) if value else "none"


def _names(value: Any) -> str | None:
    """A list of problems: their names (or "none")."""
    if not isinstance(value, list):
        return None
    names = [str(v.get("id") or v.get("name") or v) if isinstance(v, dict) else str(v) for v in value]
    return ", ".join(names) if names else "none"


# key in the status answer -> (label, formatter); the order of the summary.
_STATUS_FIELDS: dict[str, tuple[str, Callable[[Any], str | None]]] = {
    "runtimeVersion": ("version", _version),
    "version": ("version", _version),
    "uptimeMs": ("uptime", lambda v: duration(v) if _number(v) is not None else None),
    "pid": ("pid", _scalar),
    "connections": ("connections", lambda v: _count(v) or _scalar(v)),
    "heartbeat": ("heartbeat", _heartbeat),
    "sessions": ("sessions", _sessions),
    "tasks": ("tasks", _tasks),
    "taskAudit": ("task audit", _task_audit),
    "queuedSystemEvents": ("queued system events", _listed),
    "channelSummary": ("channels", _listed),
    "eventLoop": ("event loop", _event_loop),
    "modelRuntime": ("model runtime", _degraded),
    "processMemory": ("memory (RSS)", _process_memory),
    "degradedPlugins": ("degraded plugins", _names),
    "degradedSecretOwners": ("degraded secret owners", _names),
    "hostDesktop": ("host desktop", _state),
}
# Internal bookkeeping a summary has no use for (in --json only).
_STATUS_QUIET = frozenset({"ok", "workerPools", "shutdownBudget"})


def status_lines(payload: Any, gateway: str) -> list[str]:
    """``gateway`` is shown as given: pass a redacted URL."""
    if not isinstance(payload, dict):
        return [f"status: {compact(payload)}"]
    lines = [f"gateway: {gateway}"]
    if "ok" in payload:
        lines.insert(0, f"status: {'ok' if payload.get('ok') else 'NOT OK'}")
    other: list[str] = []
    seen_labels: set[str] = set()
    for key, (label, fmt) in _STATUS_FIELDS.items():
        if key not in payload or label in seen_labels:
            continue
        text = fmt(payload[key])
        if text is None:
            other.append(key)  # a shape this summary does not know
            continue
        seen_labels.add(label)
        lines.append(f"{label}: {text}")
    for key, value in payload.items():
        if key in _STATUS_FIELDS or key in _STATUS_QUIET:
            continue
        text = _scalar(value)
        if text is not None:
            lines.append(f"{key}: {text}")
        else:
            other.append(key)
    if other:
        lines.append(f"also: {', '.join(other)}")
    lines.append("(the whole answer: gwclient status --json)")
    return lines


# -------------------------------------------------------------------- connections


def connection_lines(report: ConnectionReport) -> list[str]:
    if not report.processes:
        return [f"no established connections to port {report.port} on this machine"]
    lines = [f"established TCP connections to port {report.port} on this machine:"]
    for proc in report.processes:
        pid = str(proc.pid) if proc.pid is not None else "?"
        name = proc.info.name or ("(access denied)" if proc.info.access_denied else "?")
        flag = "  DUPLICATE" if proc.duplicate else ""
        plural = "s" if proc.count != 1 else ""
        lines.append(f"  pid {pid}  {name}  {proc.count} connection{plural}{flag}")
        if proc.info.cmdline:
            command = shlex.join(proc.info.cmdline)
            if len(command) > 160:
                command = command[:157] + "..."
            lines.append(f"      {command}")
        for local, remote in proc.sockets:
            lines.append(f"      {local} -> {remote}")
    dups = len(report.duplicates)
    lines.append(
        f"{len(report.processes)} process(es), {report.total} connection(s); "
        + (f"{dups} process(es) hold more than one (exit code 3)" if dups else "no duplicates")
    )
    return lines


