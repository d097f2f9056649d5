"""Test helpers: :class:`DevGateway`, a loopback protocol-4 gateway with fault controls, and
:class:`RealGateway`, a real OpenClaw gateway (pinned Node + openclaw) on a free loopback port."""

from __future__ import annotations

from gwclient.testing._devgateway import DevGateway
from gwclient.testing._devgw_proto import DevGatewayError
from gwclient.testing._realgateway import OpenClawInstall, RealGateway, RealGatewayError, ensure_openclaw
from gwclient.testing._relay import TcpRelay

__all__ = ["DevGateway", "DevGatewayError", "OpenClawInstall", "RealGateway", "RealGatewayError", "TcpRelay",
           "ensure_openclaw"]
