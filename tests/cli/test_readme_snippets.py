"""Every ```python block of README.md runs, as a script of its own, against a real gateway.

The blocks are found generically (any fenced block whose info string is ``python``), so a
new section is covered as soon as it is written.  Each runs in a fresh process with the
gateway in ``OPENCLAW_GATEWAY_URL`` / ``OPENCLAW_GATEWAY_TOKEN`` (as a user would run it),
a private ``HOME`` and state dir, and must exit 0 without a traceback.  The gateway's model
is the test :class:`ModelServer` (it echoes), so the chat examples get a reply.

There is deliberately no way to mark a block as "not runnable": a README example that
cannot run against the gateway it describes is a bug in the README.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _util import SHARED_SERVER_PORTS, scaled

from gwclient import GatewayConfig, GatewayConnection
from gwclient.testing import ModelServer, RealGateway

pytestmark = [pytest.mark.realgateway, pytest.mark.usefixtures("shutdown_all_after")]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def readme_blocks() -> list[tuple[str, str]]:
    """(id, code) of every python block: the id is the nearest heading above it and its line."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.M)
        title = re.sub(r"[^a-z0-9]+", "-", (headings[-1] if headings else "top").lower()).strip("-")
        blocks.append((f"{title}-line{line}", match.group(1)))
    return blocks


def test_the_readme_has_python_blocks_and_all_are_found() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(readme_blocks()) == text.count("```python") >= 3


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        SHARED_SERVER_PORTS.add(server.port)  # the gateway connects to it on its own schedule
        try:
            yield server
        finally:
            SHARED_SERVER_PORTS.discard(server.port)


@pytest.fixture(scope="module")
def gateway(model: ModelServer) -> Iterator[RealGateway]:
    gw = RealGateway(config=model.gateway_config())
    ModelServer.write_agent_settings(gw.state_dir, max_retries=0)
    with gw:
        # The first turn after a start bootstraps the workspace (~10 s): do it here once.
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=gw.token, request_timeout=30.0))
        try:
            # (a session key: 2026.5.12 streams no events for an agent run without one)
            assert conn.agent("warm up", session_key="agent:main:warm-up", timeout=60).wait(90).text == "ECHO: warm up"
        finally:
            conn.shutdown()
        yield gw


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("name", "code"), readme_blocks(), ids=[name for name, _ in readme_blocks()])
def test_readme_block_runs_against_a_real_gateway(gateway: RealGateway, model: ModelServer, tmp_path: Path,
                                                  name: str, code: str) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    env.update(OPENCLAW_GATEWAY_URL=gateway.url, OPENCLAW_GATEWAY_TOKEN=gateway.token, HOME=str(tmp_path),
               GWCLIENT_STATE_DIR=str(tmp_path / "state"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=scaled(200), check=False)
    assert proc.returncode == 0, f"README block {name}:\n{code}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip(), f"README block {name} printed nothing"
    model.release()
    assert model.wait_for(lambda m: m.active == 0, timeout=20)
