"""Test helpers: :class:`DevGateway`, a loopback protocol-4 gateway with fault controls,
:class:`RealGateway`, a real OpenClaw gateway (pinned Node + openclaw) on a free loopback port,
:class:`OpenSshServer`, a real OpenSSH ``sshd`` on a free loopback port (remote mode),
:class:`ModelServer`, a local OpenAI-compatible model for the real gateway's agent runs, and
:class:`TcpRelay`, a loopback relay that can freeze or trickle its connections."""

from __future__ import annotations

from gwclient.testing._devgateway import DevGateway
from gwclient.testing._devgw_proto import DevGatewayError
from gwclient.testing._modelserver import ECHO, HANG, Behaviour, ModelServer, fail, slow
from gwclient.testing._realgateway import OpenClawInstall, RealGateway, RealGatewayError, ensure_openclaw
from gwclient.testing._relay import TcpRelay
from gwclient.testing._sshd import OpenSshServer, SshdError

__all__ = [
    "ECHO",
    "HANG",
    "Behaviour",
    "DevGateway",
    "DevGatewayError",
    "ModelServer",
    "OpenClawInstall",
    "OpenSshServer",
    "RealGateway",
    "RealGatewayError",
    "SshdError",
    "TcpRelay",
    "ensure_openclaw",
    "fail",
    "slow",
]
