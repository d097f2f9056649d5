"""The autouse leak checker itself: a test that leaves a gwclient thread or a socket
behind must fail (run in a nested pytest session with this suite's conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()
UTIL = (Path(__file__).resolve().parents[1] / "_util.py").read_text()  # the conftest imports it


@pytest.mark.timeout(120)
def test_a_leaked_connection_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(_util=UTIL)
    pytester.makepyfile(test_inner='''
        import socket
        from gwclient import GatewayConfig, GatewayConnection
        from gwclient.testing import DevGateway

        GW = DevGateway(token="t").start()

        def test_forgets_shutdown():
            GatewayConnection.shared(GatewayConfig(url=GW.url, token="t")).request("health")

        def test_cleans_up():
            conn = GatewayConnection.shared(GatewayConfig(url=GW.url, token="t"))
            conn.request("health")
            conn.shutdown()

        def test_leaks_a_plain_socket():
            s = socket.create_connection(("127.0.0.1", GW.port))
            test_leaks_a_plain_socket.keep = s

        def teardown_module():
            test_leaks_a_plain_socket.keep.close()
            GW.stop()
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3, errors=2)  # the leaks fail in teardown
    out = result.stdout.str()
    assert "leaked threads" in out and "gwclient-" in out
    assert "sockets" in out
