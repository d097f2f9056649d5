"""GWCLIENT_TEST_TIME_FACTOR scales every test's timeout (run in a nested pytest session
with this suite's conftest)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _util import scaled

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parents[1]  # tests/


@pytest.mark.timeout(120)
def test_the_time_factor_scales_test_timeouts(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest((HERE / "conftest.py").read_text())
    pytester.makepyfile(_util=(HERE / "_util.py").read_text())
    pytester.makeini("[pytest]\ntimeout = 60\ntimeout_method = thread\n")
    pytester.makepyfile(test_inner='''
        import threading
        import pytest

        @pytest.mark.timeout(200)
        def test_waits_for_what_never_comes():
            threading.Event().wait(100)
    ''')
    monkeypatch.setenv("GWCLIENT_TEST_TIME_FACTOR", "0.01")  # 200 s -> 2 s
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    elapsed = time.monotonic() - t0
    assert result.ret != 0
    assert "Timeout" in result.stdout.str() + result.stderr.str()
    assert elapsed < scaled(60)  # far below the unscaled 200 s


def test_a_bad_time_factor_is_refused(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(_util=(HERE / "_util.py").read_text())
    monkeypatch.setenv("GWCLIENT_TEST_TIME_FACTOR", "fast")
    result = pytester.runpython_c("import _util")
    assert result.ret != 0
    assert "GWCLIENT_TEST_TIME_FACTOR must be a positive number, got 'fast'" in result.stderr.str()
