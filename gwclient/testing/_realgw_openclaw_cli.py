"""The ``openclaw`` CLI part of :class:`gwclient.testing.RealGateway` (``run_cli``,
``devices_list``, ``devices_approve``), a mixin the class inherits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gwclient.testing._openclaw_install import OpenClawInstall, RealGatewayError, _tail

__all__: list[str] = []


class _OpenClawCliMixin:
    """``openclaw`` commands run against the gateway (:class:`RealGateway` provides the
    attributes and methods declared under ``TYPE_CHECKING``)."""

    if TYPE_CHECKING:  # provided by RealGateway
        _token: str
        _home: Path

        @property
        def url(self) -> str: ...
        def env(self) -> dict[str, str]: ...
        def redact(self, text: str) -> str: ...
        def _require_install(self) -> OpenClawInstall: ...

    def run_cli(self, *args: str, timeout: float = 60.0, gateway_auth: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``openclaw <args>`` with the gateway's environment.

        With *gateway_auth*, ``--url ws://127.0.0.1:P --token T`` are appended (needed by
        every command that talks to the gateway; without ``--url`` the CLI would target
        the default port 18789).  Raises :class:`RealGatewayError` (with the redacted
        output) on a non-zero exit or a timeout.
        """
        inst = self._require_install()
        argv = [str(inst.node), str(inst.openclaw_entry), *args]
        if gateway_auth:
            argv += ["--url", self.url, "--token", self._token]
        shown = " ".join(["openclaw", *args])
        try:
            out = subprocess.run(
                argv,
                cwd=self._home,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            # ``from None``: TimeoutExpired's message holds the argv, token included.
            raise RealGatewayError(f"`{shown}` timed out after {timeout:g} s") from None
        if out.returncode != 0:
            raise RealGatewayError(
                f"`{shown}` failed with exit code {out.returncode}:\n" + _tail(self.redact(out.stdout + out.stderr))
            )
        return out

    def _cli_json(self, *args: str, timeout: float) -> Any:
        out = self.run_cli(*args, "--json", timeout=timeout)
        text = out.stdout
        start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
        try:
            if start < 0:
                raise ValueError("no JSON in output")
            value, _end = json.JSONDecoder().raw_decode(text, start)
        except ValueError as exc:
            raise RealGatewayError(
                f"`openclaw {' '.join(args)} --json` printed no JSON:\n" + _tail(self.redact(text + out.stderr))
            ) from exc
        return value

    def devices_list(self, *, timeout: float = 60.0) -> dict[str, Any]:
        """``openclaw devices list --json``: ``{"pending": [...], "paired": [...]}``."""
        value = self._cli_json("devices", "list", timeout=timeout)
        if not isinstance(value, dict):
            raise RealGatewayError(f"`openclaw devices list --json` gave {type(value).__name__}")
        return value

    def devices_approve(self, request_id: str, *, timeout: float = 60.0) -> Any:
        """``openclaw devices approve <request_id> --json``; returns the parsed JSON."""
        if not request_id or request_id.startswith("-"):
            raise ValueError(f"invalid pairing request id {request_id!r}")
        return self._cli_json("devices", "approve", request_id, timeout=timeout)
