"""Stock Flow benchmark orchestrator, started by ops/bench.

ops/bench builds the service, starts the private MariaDB and Redis, seeds the bench profile and
starts the service; this program then runs every scenario against it, checks the invariants after
each write scenario, and writes report.md, report.json and the charts into the output directory.

Standard library only, plus matplotlib for the charts (from ops/bench-requirements.txt, in the
venv ops/bench prepares). Exit status: 0 when every invariant check passed, 1 when a scenario
FAILED (the report is written first), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .common import DEMO_CHANNEL_KEY, SOAK_RATE, BenchError
from .core import Bench
from .driver import stop_on_signal


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base-url", help="the service's URL (not with --scale, which starts its own)")
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--redis-prefix", default="sf:")
    ap.add_argument("--loadgen", choices=["oha", "wrk"], default="oha")
    ap.add_argument("--loadgen-bin", default="oha")
    ap.add_argument("--service-pid", type=int)
    ap.add_argument("--bench-start", type=float)
    ap.add_argument("--mariadb-client", default="mariadb")
    ap.add_argument("--mariadbd", default="mariadbd")
    ap.add_argument("--redis-server", default="redis-server")
    ap.add_argument("--redis-cli", default="redis-cli")
    ap.add_argument("--channel-key", default=os.environ.get("SF_CHANNEL_KEY") or DEMO_CHANNEL_KEY,
                    help="the sales channel's key, sent as `Authorization: Bearer` on every order, cancel, "
                    "order read and hold (default SF_CHANNEL_KEY, else the demo channel's "
                    f"{DEMO_CHANNEL_KEY})")
    ap.add_argument("--floor-bin", help="sf-floor binary (the floor run is skipped without it)")
    ap.add_argument("--fixed-only", type=int, metavar="RATE",
                    help="run only the fixed-rate Redis-path scenario, at RATE orders/s")
    ap.add_argument("--soak-rate", type=int, help=f"orders/s of the memory soak (default {SOAK_RATE:,})")
    ap.add_argument("--soak-seconds", type=float,
                    help="length of the memory soak's load (default 600, 10 with --quick)")
    ap.add_argument("--scale", choices=["retail"],
                    help="the scale run (benchkit/scale.py) instead of the scenarios: it seeds the data sets "
                    "and starts the service itself")
    ap.add_argument("--service-bin", help="the stock-flow binary (--scale)")
    ap.add_argument("--data-dir", help="where the scale run's MariaDB, Redis and seed records live (--scale)")
    a = ap.parse_args()
    if a.scale and not (a.service_bin and a.data_dir):
        ap.error("--scale needs --service-bin and --data-dir")
    if not a.scale and not a.base_url:
        ap.error("--base-url is required")
    if a.scale:
        a.base_url = "http://127.0.0.1:1"  # replaced once the first service is up
    if not a.channel_key:
        ap.error("--channel-key must not be empty")
    if a.fixed_only is not None and a.fixed_only <= 0:
        ap.error("--fixed-only must be positive")
    if (a.soak_rate is not None and a.soak_rate <= 0) or (a.soak_seconds is not None and a.soak_seconds <= 0):
        ap.error("--soak-rate and --soak-seconds must be positive")
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    try:
        if a.scale:
            from .scale import ScaleBench
            return ScaleBench(a).run()
        bench = Bench(a)
        return bench.run()
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
