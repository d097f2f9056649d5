"""Test helpers: :class:`DevGateway`, a loopback protocol-4 gateway with fault controls,
:class:`RealGateway`, a real OpenClaw gateway (pinned Node + openclaw) on a free loopback port, and
:class:`OpenSshServer`, a real OpenSSH ``sshd`` on a free loopback port (remote mode)."""

from __future__ import annotations

from gwclient.testing._devgateway import DevGateway
from gwclient.testing._devgw_proto import DevGatewayError
from gwclient.testing._realgateway import OpenClawInstall, RealGateway, RealGatewayError, ensure_openclaw
from gwclient.testing._relay import TcpRelay
from gwclient.testing._sshd import OpenSshServer, SshdError

__all__ = ["DevGateway", "DevGatewayError", "OpenClawInstall", "OpenSshServer", "RealGateway", "RealGatewayError",
           "SshdError", "TcpRelay", "ensure_openclaw"]
