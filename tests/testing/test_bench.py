"""The benchmark script runs (quick mode), prints every figure with its ratio and target,
and its gwclient half uses exactly one socket."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"

VERDICT = r"\|\s*x\d+\.\d\d\s*\|\s*{target}\s*\|\s*(meets|misses) target\s*\|"


@pytest.mark.timeout(120)
def test_bench_quick_reports_ratios_and_one_socket(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(BENCH))["main"]
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^gateway: (node fastgw\.mjs|dev gateway) ", out, re.MULTILINE)
    rows = {
        r"sequential p50": r"<= x1\.4",
        r"request\(\) from 16 threads": r">= x0\.3",
        r"submit\(\) x\d+ from 1 thread": r">= x0\.6",
        r"1 subscriber": r">= x0\.7",
        r"64 subscribers": r">= 100000/s",
    }
    for label, target in rows.items():
        assert re.search(label + r"[^\n]*" + VERDICT.format(target=target), out), label
    for threads in (1, 4, 64):
        assert re.search(rf"request\(\) from {threads} threads? \(req/s\)\s*\|\s*\|\s*\d+\s*\|\s*x\d+\.\d\d", out)
    assert re.search(r"pipelined, \d+ requests \(req/s\)\s*\|\s*\d+", out)
    assert re.search(r"burst of \d+ events[^|]*\|\s*\d+", out)
    assert re.search(r"idle connection: threads[^|]*\|\s*\d+\s*\|\s*\d+", out)
    assert re.search(r"secondary: socket per call", out)
    match = re.search(r"sockets accepted by the gateway: (\d+) \(raw (\d+) \+ gwclient (\d+)\)", out)
    assert match is not None and match.group(3) == "1", out
