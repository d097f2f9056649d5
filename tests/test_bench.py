"""The benchmark script runs (quick mode) and its gwclient half uses exactly one socket."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


@pytest.mark.timeout(120)
def test_bench_quick_reports_ratios_and_one_socket(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(BENCH))["main"]
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"sequential throughput\s+x\d+\.\d", out)
    assert re.search(r"concurrent throughput\s+x\d+\.\d", out)
    match = re.search(r"sockets accepted by the gateway: (\d+) \(baseline (\d+) \+ gwclient (\d+)\)", out)
    assert match is not None and match.group(3) == "1"
