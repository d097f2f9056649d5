"""The ``openclaw`` CLI run against a :class:`gwclient.testing.RealGateway`
(:class:`OpenClawCli`: ``run``, ``devices_list``, ``devices_approve``).  The gateway builds
one with what a command needs (the install, its URL, token, home, environment and
redaction) and delegates ``run_cli``/``devices_list``/``devices_approve`` to it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gwclient.testing._openclaw_install import OpenClawInstall, RealGatewayError, _tail

__all__ = ["OpenClawCli"]


@dataclass(frozen=True)
class OpenClawCli:
    """``openclaw`` commands for one gateway.

    ``env`` is the environment without the token; ``redact`` removes the token from the
    output quoted in errors.  The token is kept out of the repr.
    """

    install: OpenClawInstall
    url: str
    token: str = field(repr=False)
    home: Path
    env: Mapping[str, str] = field(repr=False)
    redact: Callable[[str], str] = field(repr=False)

    def run(self, *args: str, timeout: float = 60.0, gateway_auth: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``openclaw <args>`` (see ``RealGateway.run_cli``)."""
        argv = [str(self.install.node), str(self.install.openclaw_entry), *args]
        if gateway_auth:
            argv += ["--url", self.url, "--token", self.token]
        shown = " ".join(["openclaw", *args])
        try:
            out = subprocess.run(
                argv,
                cwd=self.home,
                env=dict(self.env),
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

    def json(self, *args: str, timeout: float) -> Any:
        """Run ``openclaw <args> --json`` and parse the first JSON value it prints."""
        out = self.run(*args, "--json", timeout=timeout)
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
        value = self.json("devices", "list", timeout=timeout)
        if not isinstance(value, dict):
            raise RealGatewayError(f"`openclaw devices list --json` gave {type(value).__name__}")
        return value

    def devices_approve(self, request_id: str, *, timeout: float = 60.0) -> Any:
        """``openclaw devices approve <request_id> --json``; returns the parsed JSON."""
        if not request_id or request_id.startswith("-"):
            raise ValueError(f"invalid pairing request id {request_id!r}")
        return self.json("devices", "approve", request_id, timeout=timeout)
