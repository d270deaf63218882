"""The bench: one object holding the run's settings, clients and results, put together from the
parts (clients, world, driver, checks, scenarios, targets), and the run from start to report."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import urllib.parse
from pathlib import Path

from .checks import Checks
from .clients import Clients
from .common import HOT_PRODUCT, HOT_STOCK, MODES, ROOT, SOAK_RATE, BenchError, FixedOnlyDone, now_utc
from .driver import Driver
from .loadgen import Oha, Wrk
from .measure import machine_info, uptime
from .report import write_report
from .scenarios import Scenarios
from .targets import Targets
from .world import World


class Bench(Clients, World, Checks, Driver, Scenarios, Targets):
    """One run of the bench: its settings (from ops/bench's arguments), load generator, the pids
    whose CPU is counted, and the results the report is written from."""

    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.quick = bool(a.quick)
        self.mode = "quick" if a.quick else "full"
        self.cfg = MODES[self.mode]
        self.out = Path(a.out)
        self.raw = self.out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.base = a.base_url.rstrip("/")
        self.token = os.environ.get("ADMIN_TOKEN", "stockflow-dev-admin")
        # The sales channel's key: the load generators send it on the shop's routes (orders,
        # cancels, order reads, holds); our own ones (mixed, checkout) get it as SF_CHANNEL_KEY.
        self.channel_key = a.channel_key
        db = urllib.parse.urlsplit(a.database_url)
        self.db = {
            "host": db.hostname or "127.0.0.1", "port": str(db.port or 3306),
            "user": urllib.parse.unquote(db.username or "root"),
            "password": urllib.parse.unquote(db.password or ""), "name": db.path.lstrip("/"),
        }
        r = urllib.parse.urlsplit(a.redis_url)
        self.redis = {"host": r.hostname or "127.0.0.1", "port": str(r.port or 6379),
                      "db": (r.path.lstrip("/") or "0"),
                      "password": urllib.parse.unquote(r.password or "")}
        self.prefix = a.redis_prefix
        self.bench_start = a.bench_start or time.time()
        if a.loadgen == "oha":
            self.lg = Oha(a.loadgen_bin)
        else:
            self.lg = Wrk(a.loadgen_bin, self.raw)
        data_dir = Path(os.environ.get("SF_DATA_DIR", ROOT / ".data")) / "bench"
        self.pids = {
            "service": a.service_pid,
            "mariadb": self._pidfile(data_dir / "mariadb" / "mariadbd.pid"),
            "redis": self._pidfile(data_dir / "redis" / "redis.pid"),
        }
        self.results: dict = {"scenarios": [], "checks": [], "targets": [], "notes": []}
        self.step = 0
        self.failed: list[str] = []
        self.soak_rate = a.soak_rate or SOAK_RATE
        self.soak_seconds = a.soak_seconds or self.cfg["soak"]
        # (start, end) of the last load run_load ran, monotonic.
        self.last_load: tuple[float, float] | None = None
        # The product-list URL the read runs use, per source (see list_url).
        self.list_urls: dict[str, str] = {}

    @staticmethod
    def _pidfile(p: Path) -> int | None:
        try:
            return int(p.read_text().strip())
        except (OSError, ValueError):
            return None

    def progress(self, title: str, seconds: float | None = None):
        self.step += 1
        t = int(time.time() - self.bench_start)
        dur = f" ({seconds:g} s)" if seconds else ""
        print(f"==> [{self.step}/{self.total_steps}] {title}{dur}   [elapsed {t // 60:02d}:{t % 60:02d}]",
              file=sys.stderr, flush=True)

    def note(self, msg: str):
        print(f"    {msg}", file=sys.stderr, flush=True)

    def run(self) -> int:
        started = now_utc()
        self.results["meta"] = {"mode": self.mode, "started": started, "load_generator": self.lg.version}
        self.results["machine"] = machine_info(self.a, self.lg.version)
        can_fixed = self.lg.name == "oha"
        self.total_steps = self.total_steps_for(can_fixed)
        error = None
        try:
            self.load_world()
            self.note(f"hot product {HOT_PRODUCT}: NORMAL orders from Seoul City Hall go to warehouse "
                      f"{self.hot_loc} (nearest); its stock is set to {HOT_STOCK:,} before each hot run")
            self.warm_up()
            self.run_scenarios(can_fixed)
        except FixedOnlyDone:
            pass
        except Exception as e:  # the report is written whatever happened
            error = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
            self.failed.append(f"run broke off: {error}")
            (self.out / "error.txt").write_text(traceback.format_exc())
            print(f"error: {error} (traceback in {self.out / 'error.txt'})", file=sys.stderr)
        self.results["meta"]["finished"] = now_utc()
        self.results["meta"]["elapsed_s"] = round(time.time() - self.bench_start)
        self.results["meta"]["error"] = error
        self.results["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        self.results["machine"]["uptime_end"] = uptime()
        self.evaluate_targets()
        self.observe()
        self.results["failed"] = self.failed
        write_report(self)
        return 1 if self.failed else 0
