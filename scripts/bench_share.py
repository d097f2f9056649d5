#!/usr/bin/env python3
"""The local share's benchmark (issue 17): ratios measured in one run on this machine.

    flock /tmp/gwclient-realgw.lock python scripts/bench_share.py [--runs 20] [--events 20000] [--attached 8]

Part 1, against a real gateway (``RealGateway``: openclaw 2026.9.6 on Node):

* ``gwclient call health`` per invocation (wall, median of ``--runs``): a direct socket
  (``GWCLIENT_SHARE=off``), through a running share (``auto``), and the official
  ``openclaw gateway call health``; ``python -c pass`` for scale;
* the gateway's CPU per invocation (utime+stime from ``/proc/<pid>/stat`` over each batch);
* in one process: the latency of ``request("health")`` through the share vs a direct socket.

Part 2, against ``scripts/fastgw.mjs`` (a Node server that sends bursts as fast as it can,
so the producer is not what is measured): a burst of ``--events`` events to ``--attached``
processes attached to the share vs one process with its own socket; each process's rate
is events / (its last event - the burst's start).

Every child runs in a private runtime/state dir; the share is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench import start_gateway  # noqa: E402  (scripts/bench.py: the fastgw.mjs launcher)

from gwclient import GatewayConfig, GatewayConnection  # noqa: E402
from gwclient import share as share_api  # noqa: E402
from gwclient.testing._realgateway import RealGateway  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

SUBSCRIBER = r'''
import json, sys, time
from gwclient import GatewayConfig, GatewayConnection, Snapshot, Event, SeqGap
n = int(sys.argv[1]); trigger = sys.argv[2] == "1"
conn = GatewayConnection.shared(GatewayConfig.from_environment(request_timeout=120))
sub = conn.subscribe(events=["bench.tick"], maxsize=10 * n, max_bytes=None, include_state=False)
while not isinstance(sub.get(60), Snapshot):
    pass
print("ready", flush=True)
sys.stdin.readline()
t0 = time.monotonic()
if trigger:
    conn.submit("bench.burst", {"count": n, "size": 0}, timeout=120)
seen = gaps = 0
while True:
    push = sub.get(120)
    if isinstance(push, SeqGap):
        gaps += push.missed
    elif isinstance(push, Event):
        seen += 1
        if push.payload.get("i") == n - 1:
            break
print(json.dumps({"t0": t0, "last": time.monotonic(), "seen": seen, "missed": gaps}), flush=True)
conn.shutdown()
'''


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _timed(argv: list[str], env: dict[str, str], runs: int, cwd: str | None = None) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[:4]} failed: {done.stderr[-500:]}")
    return times


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class _Target:
    """Where part 1 runs: the real gateway, or (``--fast-gateway``) scripts/fastgw.mjs."""

    def __init__(self, fast: bool, env: dict[str, str]) -> None:
        self.fast = fast
        self._real: RealGateway | None = None
        if fast:
            from gwclient.testing._realgateway import find_openclaw

            self._gw = start_gateway("bench-share-token")
            inst = find_openclaw()
            assert inst is not None, "openclaw not installed: scripts/install-openclaw"
            self.url, self.token, self.pid = self._gw.url, self._gw.token, self._gw.proc.pid
            self.kind = self._gw.kind
            home = Path(env["GWCLIENT_STATE_DIR"]).parent / "official-home"
            home.mkdir(exist_ok=True)
            self.official_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
            self.official_env.update(HOME=str(home), NO_COLOR="1",
                                     PATH=os.pathsep.join([str(inst.node_bin_dir), os.environ.get("PATH", "")]))
            self.official_cwd = str(home)
        else:
            self._real = gw = RealGateway()
            gw.start()
            assert gw.pid is not None and gw.install is not None
            inst = gw.install
            self.url, self.token, self.pid = gw.url, gw.token, gw.pid
            self.kind = f"real gateway, openclaw {gw.version}"
            self.official_env, self.official_cwd = gw.env(), str(gw.home)
        self.official = [str(inst.node), str(inst.openclaw_entry), "gateway", "call", "health",
                         "--url", self.url, "--token", self.token]

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
        else:
            self._gw.stop()


def part_cli(runs: int, env: dict[str, str], fast: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    target = _Target(fast, env)
    try:
        out["kind"] = target.kind
        genv = {**env, "OPENCLAW_GATEWAY_URL": target.url, "OPENCLAW_GATEWAY_TOKEN": target.token}
        call = [sys.executable, "-m", "gwclient", "call", "health"]
        direct_env = {**genv, "GWCLIENT_SHARE": "off"}
        share_env = {**genv, "GWCLIENT_SHARE": "auto"}
        _timed(call, direct_env, 2)  # pairs the device (silent local pairing), warms caches
        _timed(call, share_env, 2)  # starts the share
        _timed(target.official, target.official_env, 1, target.official_cwd)
        results = {}
        for name, argv, e, cwd in (("pass", [sys.executable, "-c", "pass"], direct_env, None),
                                   ("direct", call, direct_env, None),
                                   ("share", call, share_env, None),
                                   ("official", target.official, target.official_env, target.official_cwd)):
            cpu0 = _cpu(target.pid)
            times = _timed(argv, e, runs, cwd)
            results[name] = (statistics.median(times), (_cpu(target.pid) - cpu0) / runs)
        out["cli"] = results
        # In one process: the same request through the share and over a direct socket.
        lat = {}
        for name, mode in (("direct", "off"), ("share", "auto")):
            conn = GatewayConnection.shared(GatewayConfig(url=target.url, token=target.token, share=mode))
            conn.request("health")
            samples = []
            for _ in range(300):
                t0 = time.perf_counter()
                conn.request("health")
                samples.append(time.perf_counter() - t0)
            lat[name] = statistics.median(samples)
            conn.shutdown()
        out["latency"] = lat
        share_api.stop()
    finally:
        target.close()
    return out


def part_burst(events: int, attached: int, env: dict[str, str]) -> dict[str, Any]:
    gateway = start_gateway("bench-share-token")
    try:
        genv = {**env, "OPENCLAW_GATEWAY_URL": gateway.url, "OPENCLAW_GATEWAY_TOKEN": gateway.token}

        def run(count: int, mode: str) -> list[dict[str, Any]]:
            # The first process triggers the burst (through the share: its socket gets it and
            # the share fans it out; the same config, so the same gateway socket).
            e = {**genv, "GWCLIENT_SHARE": mode}
            procs = [subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(events), "1" if i == 0 else "0"],
                                      env=e, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                     for i in range(count)]
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            share_pid = share_api.status().get("pid") if mode != "off" else None
            share_cpu = _cpu(share_pid) if share_pid else 0.0
            for p in [*procs[1:], procs[0]]:
                assert p.stdin is not None
                if p is procs[0]:
                    t0 = time.monotonic()
                p.stdin.write("go\n")
                p.stdin.flush()
            reports = []
            for p in procs:
                assert p.stdout is not None
                report = json.loads(p.stdout.readline())
                report["rate"] = events / (report["last"] - t0)
                reports.append(report)
                p.wait(60)
            if share_pid:
                reports[0]["share_cpu"] = _cpu(share_pid) - share_cpu
            return reports

        direct = run(1, "off")
        shared = run(attached, "auto")
        share_api.stop()
        return {"gateway": gateway.kind, "direct": direct, "shared": shared}
    finally:
        gateway.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--attached", type=int, default=8)
    parser.add_argument("--skip-cli", action="store_true", help="only the event burst (no real gateway)")
    parser.add_argument("--fast-gateway", action="store_true",
                        help="part 1 against scripts/fastgw.mjs instead of the real gateway")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gwsb-", dir="/tmp"))
    (tmp / "run").mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp / "run"), "GWCLIENT_STATE_DIR": str(tmp / "state"),
           "GWCLIENT_SHARE_PERSIST": "600",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for name in ("XDG_RUNTIME_DIR", "GWCLIENT_STATE_DIR"):
        os.environ[name] = env[name]
    try:
        if not args.skip_cli:
            cli = part_cli(args.runs, env, args.fast_gateway)
            res = cli["cli"]
            print(f"\n`call health` per invocation (median of {args.runs}) and the gateway's CPU per invocation "
                  f"({cli['kind']})")
            print(f"  python -c pass          {_ms(res['pass'][0]):>10}")
            for name in ("direct", "share", "official"):
                wall, cpu = res[name]
                print(f"  {name:<22}  {_ms(wall):>10}   gateway CPU {_ms(cpu)}")
            d, s, o = res["direct"], res["share"], res["official"]
            print(f"  share / direct wall     {s[0] / d[0]:.3f}x   (target <= 0.25x)")
            print(f"  share / official wall   {s[0] / o[0]:.3f}x   (target <= 0.07x)")
            print(f"  share / direct gw CPU   {s[1] / d[1] if d[1] else float('nan'):.3f}x   (target <= 0.5x)")
            lat = cli["latency"]
            print(f"\nin-process request latency (median of 300): direct {_ms(lat['direct'])}, "
                  f"share {_ms(lat['share'])}: {lat['share'] / lat['direct']:.2f}x (target <= 1.3x)")
        burst = part_burst(args.events, args.attached, env)
        direct_rate = burst["direct"][0]["rate"]
        rates = [r["rate"] for r in burst["shared"]]
        print(f"\n{args.events}-event burst ({burst['gateway']}): one direct subscriber {direct_rate:,.0f} ev/s; "
              f"{args.attached} attached: min {min(rates):,.0f}, median {statistics.median(rates):,.0f} ev/s; "
              f"min/direct {min(rates) / direct_rate:.2f}x (target >= 0.5x); "
              f"missed (seq gaps) {[r['missed'] for r in burst['shared']]}; aggregate "
              f"{sum(rates) / direct_rate:.2f}x the direct rate; the share's CPU for the burst "
              f"{burst['shared'][0].get('share_cpu', 0.0):.2f} s "
              f"({1e6 * burst['shared'][0].get('share_cpu', 0.0) / (args.events * args.attached):.1f} us "
              "per event and process)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
