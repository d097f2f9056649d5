"""Test helpers: :class:`DevGateway`, a loopback protocol-4 gateway with fault controls, and
:class:`RealGateway`, a real OpenClaw gateway (pinned Node + openclaw) on a free loopback port,
and :class:`ModelServer`, a local OpenAI-compatible model for the real gateway's agent runs."""

from __future__ import annotations

from gwclient.testing._devgateway import DevGateway
from gwclient.testing._devgw_proto import DevGatewayError
from gwclient.testing._modelserver import ECHO, HANG, Behaviour, ModelServer, fail, slow
from gwclient.testing._realgateway import OpenClawInstall, RealGateway, RealGatewayError, ensure_openclaw

__all__ = [
    "ECHO",
    "HANG",
    "Behaviour",
    "DevGateway",
    "DevGatewayError",
    "ModelServer",
    "OpenClawInstall",
    "RealGateway",
    "RealGatewayError",
    "ensure_openclaw",
    "fail",
    "slow",
]
