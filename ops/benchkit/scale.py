"""The scale run (ops/bench --scale retail): how the service's costs grow with the catalogue.

It seeds the data sets it measures (demo, bench and retail, each in a database of its own on the
private MariaDB under .data/bench-retail/, reused while complete), starts a fresh service on each
one after another and measures the sizing figures (start-up load, warm-up after Redis lost its
data, a reconciliation pass, idle CPU, RSS, Redis memory per stock key, the product detail's
body); on the largest one it also runs the load figures (orders during the warm-up and during a
reconciliation pass, a fixed rate over every location, the detail's rate, the consumer's CPU per
persisted order). Every figure is judged against the goal in GOALS; scale_report writes it up.

The load generator, the write run (snapshot, load, catch-up, invariant checks), the read run, the
CPU readings and the Redis and SQL clients are the bench's own (driver, checks, clients, measure).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .common import ETAG_PRODUCT, MODES, BenchError, fmt_ms, haversine_km, now_utc
from .core import Bench
from .driver import RUNNING
from .measure import CpuMeter, machine_info, uptime

# The data sets, smallest first. `retail` is the size the goals are about; with --quick its
# stand-in `retail-quick` (200 stores, 500 products) takes its place.
SIZES = {
    "demo": {"profile": "demo", "args": [], "db": "stock_flow_scale_demo"},
    "bench": {"profile": "bench", "args": [], "db": "stock_flow_scale_bench"},
    "retail": {"profile": "retail", "args": [], "db": "stock_flow_scale_retail"},
    "retail-quick": {"profile": "retail", "args": ["--stores", "200", "--products", "500"],
                     "db": "stock_flow_scale_retail_quick"},
}

# The goals, on a 2-core machine.
GOALS = {
    "seed_s": 600, "warmup_s": 60, "reconcile_s": 300, "reconcile_p99_ratio": 2.0, "idle_cpu_pct": 5.0,
    "idle_s": 30, "fixed_rate": 5_000, "p99_ms": 25.0, "p999_ms": 100.0, "confirm_s": 2.0,
    "rss_mib": 1024, "redis_bytes_per_key": 100, "detail_over_live": 0.5, "persist_service_us": 25.0,
}

# Durations (s) and rates of the load figures, per mode.
SCALE_MODES = {
    "full": {"idle_s": 30, "warmup_rate": 500, "warmup_window_s": 60, "recon_rate": 500,
             "recon_load_s": (10, 120), "fixed_rate": 5_000, "fixed_s": 60, "burst_s": 10, "reads_s": 20,
             "warmup_limit_s": 900},
    "quick": {"idle_s": 10, "warmup_rate": 200, "warmup_window_s": 15, "recon_rate": 200,
              "recon_load_s": (5, 15), "fixed_rate": 2_000, "fixed_s": 5, "burst_s": 5, "reads_s": 3,
              "warmup_limit_s": 120},
}

# How often the service checks that Redis still holds its data (its watcher; HEALTH_CHECK_MS).
HEALTH_CHECK_MS = 1000
# An order's own deadline during the warm-up: the Redis command's and the MySQL key load's
# (REDIS_COMMAND_TIMEOUT_MS and DB_COMMAND_TIMEOUT_MS, their defaults).
ORDER_DEADLINE_MS = 1000 + 3000
# The near filter the detail figures use: every location within this many km of a store.
NEAR_RADIUS_KM = 10
BACKLOG_METRIC = "stockflow_cluster_consumer_backlog_events"
SEED_LINE = re.compile(r"seeded ([\d,]+) locations, ([\d,]+) products, ([\d,]+) stock rows in ([\d.]+) ?s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int | None) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError, TypeError):
        pass
    return None


def used_memory(info: str) -> list[int]:
    """Every `used_memory:` figure in INFO output, in order."""
    return [int(m) for m in re.findall(r"^used_memory:(\d+)", info, re.M)]


class ScaleBench(Bench):
    """The scale run, on the bench's parts; results go to results["sizes"] and results["figures"]."""

    def __init__(self, a):
        super().__init__(a)
        self.sc = SCALE_MODES[self.mode]
        self.cfg = dict(MODES[self.mode])
        self.data_dir = Path(a.data_dir)
        self.pids = {"service": None,
                     "mariadb": self._pidfile(self.data_dir / "mariadb" / "mariadbd.pid"),
                     "redis": self._pidfile(self.data_dir / "redis" / "redis.pid")}
        self.server_url = a.database_url.rsplit("/", 1)[0]
        self.svc: subprocess.Popen | None = None
        self.svc_name = ""
        self.results.update({"scale": a.scale, "sizes": {}, "figures": []})
        # Seeding, three data sets, and on the largest: reconciliation under load, fixed rate,
        # perhaps a burst, three read runs.
        self.total_steps = 10
        self.target = "retail-quick" if self.quick else "retail"

    # --- MariaDB without a database, and the seeding ---------------------------

    def sql_server(self, query: str, db: str | None = None) -> list[list[str]]:
        env = dict(os.environ, MYSQL_PWD=self.db["password"])
        p = subprocess.run(
            [self.a.mariadb_client, "--no-defaults", "--protocol=tcp", "-h", self.db["host"], "-P", self.db["port"],
             "-u", self.db["user"], "--batch", "--skip-column-names"] + ([db] if db else []) + ["-e", query],
            capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise BenchError(f"SQL failed: {query}: {p.stderr.strip()}")
        return [ln.split("\t") for ln in p.stdout.splitlines()]

    def counts(self, db: str) -> dict | None:
        try:
            row = self.sql_server("SELECT (SELECT COUNT(*) FROM locations), (SELECT COUNT(*) FROM products), "
                                  "(SELECT COUNT(*) FROM stock)", db)[0]
        except (BenchError, IndexError):
            return None
        return {"locations": int(row[0]), "products": int(row[1]), "stock_rows": int(row[2])}

    def ensure_seeded(self, name: str) -> dict:
        """The seed record of data set `name`: reused when its database still has the row counts
        the record was written with (the seed's own figure of record, from when it seeded), else
        seeded now, timed. {"available": False, ...} when the service has no such profile."""
        size = SIZES[name]
        path = self.data_dir / f"seed-{size['db']}.json"
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            rec = None
        counts = self.counts(size["db"])
        if rec and counts and rec.get("args") == size["args"] and \
                all(rec.get(k) == counts[k] for k in ("locations", "products", "stock_rows")):
            self.note(f"{name}: reusing {size['db']} ({counts['stock_rows']:,} stock rows, seeded "
                      f"{rec['seeded_at']} in {rec['seconds']:.1f} s)")
            return dict(rec, reused=True, available=True)
        self.note(f"{name}: seeding {size['db']} ({' '.join(['--profile', size['profile']] + size['args'])})")
        self.sql_server(f"DROP DATABASE IF EXISTS {size['db']}; CREATE DATABASE {size['db']} "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        env = dict(os.environ, DATABASE_URL=f"{self.server_url}/{size['db']}", REDIS_URL=self.a.redis_url,
                   REDIS_KEY_PREFIX=self.prefix)
        log = self.out / f"seed-{name}.log"
        t0 = time.monotonic()
        with open(log, "w") as f:
            p = subprocess.Popen([self.a.service_bin, "seed", "--profile", size["profile"], *size["args"]],
                                 stdout=f, stderr=subprocess.STDOUT, env=env)
            RUNNING.append(p)
            rc = p.wait()
            RUNNING.remove(p)
        wall = time.monotonic() - t0
        text = log.read_text(errors="replace")
        if rc != 0:
            tail = " ".join(text.strip().splitlines()[-3:])[-300:]
            self.note(f"{name}: not available: the seed exited {rc}: {tail}")
            return {"available": False, "error": f"`stock-flow seed --profile {size['profile']}` exited {rc}: {tail}"}
        m = SEED_LINE.search(text)
        counts = self.counts(size["db"]) or {}
        rec = {"profile": size["profile"], "args": size["args"], "database": size["db"],
               "seconds": float(m.group(4)) if m else round(wall, 1), "wall_s": round(wall, 1),
               "seeded_at": now_utc(), "commit": self.results["machine"]["commit"], **counts}
        path.write_text(json.dumps(rec, indent=1) + "\n")
        self.note(f"{name}: seeded {counts.get('stock_rows', 0):,} stock rows in {rec['seconds']:.1f} s")
        return dict(rec, reused=False, available=True)

    # --- the service, one per data set --------------------------------------------

    def start_service(self, name: str):
        db = SIZES[name]["db"]
        self.db["name"] = db
        port = free_port()
        env = dict(os.environ, DATABASE_URL=f"{self.server_url}/{db}", REDIS_URL=self.a.redis_url,
                   REDIS_KEY_PREFIX=self.prefix, HOST="127.0.0.1", PORT=str(port), RUST_LOG="warn",
                   LOG_FORMAT="text", ADMIN_TOKEN=self.token, HEALTH_CHECK_MS=str(HEALTH_CHECK_MS),
                   # The run starts its reconciliation passes itself.
                   RECONCILE_SCHEDULE="0 0 3 1 1 *")
        log = open(self.out / "service.log", "w")
        self.svc = subprocess.Popen([self.a.service_bin, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        RUNNING.append(self.svc)
        self.svc_name = name
        self.base = f"http://127.0.0.1:{port}"
        self.pids["service"] = self.svc.pid
        self.a.service_pid = self.svc.pid
        self.list_urls = {}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.svc.poll() is not None:
                raise BenchError(f"the service exited {self.svc.returncode} during start-up (see service-{name}.log)")
            try:
                if self.http("GET", "/health/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError("the service was not ready within 300 s")

    def stop_service(self):
        if not self.svc:
            return
        if self.svc.poll() is None:
            self.svc.terminate()
            try:
                self.svc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.svc.kill()
                self.svc.wait()
        if self.svc in RUNNING:
            RUNNING.remove(self.svc)
        try:
            (self.out / "service.log").rename(self.out / f"service-{self.svc_name}.log")
        except OSError:
            pass
        self.svc = None

    # --- the sizing figures -----------------------------------------------------------

    def epoch_keys(self) -> list[str]:
        return [f"{self.prefix}{{L{loc}}}:epoch" for loc, _, _ in self.warehouses + self.stores]

    def wait_epochs(self, limit_s: float) -> float | None:
        """Seconds until every location's epoch marker is in Redis (its stock loaded), None past limit_s."""
        keys = self.epoch_keys()
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            try:
                if int(self.redis_cmd("EXISTS", *keys)) >= len(keys):
                    return time.monotonic() - t0
            except (BenchError, ValueError):
                pass
            time.sleep(0.2)
        return None

    def wait_keys(self, n: int, limit_s: float) -> float | None:
        """Seconds until Redis holds at least n keys (DBSIZE), None past limit_s; the DBSIZE when
        called goes to markers_dbsize."""
        t0 = time.monotonic()
        self.markers_dbsize = None
        while time.monotonic() - t0 < limit_s:
            try:
                size = int(self.redis_cmd("DBSIZE"))
            except (BenchError, ValueError):
                size = -1
            if self.markers_dbsize is None:
                self.markers_dbsize = size
            if size >= n:
                return time.monotonic() - t0
            time.sleep(0.5)
        return None

    def spec_params(self, path: str) -> list[str]:
        status, _, raw = self.http_full("GET", "/api/openapi.json", timeout=60)
        try:
            op = json.loads(raw)["paths"][path]["get"]
            return [q["name"] for q in op.get("parameters", []) if q.get("in") == "query"]
        except (ValueError, KeyError, TypeError):
            return []

    def near_query(self, lat: float, lon: float) -> str:
        return f"near={lat:.5f},{lon:.5f}&radiusKm={NEAR_RADIUS_KM}"

    def detail_bodies(self) -> dict:
        """The product detail's body, unfiltered and near a store, on both routes: its bytes and
        stock entries, and how many locations lie within the radius."""
        locs = self.warehouses + self.stores
        s = self.stores[len(self.stores) // 2]
        nearby = sum(1 for _, la, lo in locs if haversine_km((s[1], s[2]), (la, lo)) <= NEAR_RADIUS_KM)
        out = {"product": ETAG_PRODUCT, "locations": len(locs), "near": [s[1], s[2]], "radius_km": NEAR_RADIUS_KM,
               "locations_in_radius": nearby}
        for route, prefix in (("redis", "/api/redis/products"), ("mysql", "/api/products")):
            params = self.spec_params(prefix + "/{productId}")
            r = {"near_available": "near" in params, "params": params}
            for kind, q in (("unfiltered", ""), ("near", "?" + self.near_query(s[1], s[2]))):
                if kind == "near" and not r["near_available"]:
                    continue
                status, _, raw = self.http_full("GET", f"{prefix}/{ETAG_PRODUCT}{q}", timeout=60)
                try:
                    entries = len(json.loads(raw).get("stock", []))
                except (ValueError, AttributeError):
                    entries = None
                r[kind] = {"status": status, "bytes": len(raw), "entries": entries}
            out[route] = r
        return out

    def fill_mirror(self) -> dict:
        """Reads every product's detail once through the Redis read route (8 at a time), which
        fills the service's stock mirror; the service's RSS before and after."""
        before = rss_mib(self.pids["service"])
        statuses: dict[str, int] = {}
        t0 = time.monotonic()

        def get(p):
            try:
                return str(self.http("GET", f"/api/redis/products/{p}", timeout=60)[0])
            except OSError as e:
                return type(e).__name__

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for st in pool.map(get, range(1, self.max_product + 1)):
                statuses[st] = statuses.get(st, 0) + 1
        return {"products": self.max_product, "statuses": statuses, "seconds": round(time.monotonic() - t0, 1),
                "rss_before_mib": before, "rss_mib": rss_mib(self.pids["service"])}

    def idle(self, secs: float) -> dict:
        """The service's CPU over `secs` with no traffic (after the backlog is empty), and the
        backlog gauge on /metrics against the sum of the location streams' XLEN."""
        self.wait_backlog(self.cfg["drain_limit"])
        time.sleep(3)  # the gauge is refreshed every 2 s
        with CpuMeter({"service": self.pids["service"]}) as cpu:
            time.sleep(secs)
        try:
            gauge = self.metrics().get(BACKLOG_METRIC)
        except BenchError:
            gauge = None
        streams = self.backlog()
        return {"seconds": round(cpu.wall, 1), "service_cpu_pct": cpu.result.get("service"),
                "machine_cpu_pct": cpu.result.get("machine"), "streams": len(self.warehouses + self.stores),
                "gauge": gauge, "xlen_sum": streams}

    def flush(self) -> dict:
        """DBSIZE and used_memory, FLUSHALL, used_memory again, on one connection back to back
        (before the service's watcher notices and starts reloading)."""
        cmd = [self.a.redis_cli, "--no-auth-warning", "-h", self.redis["host"], "-p", self.redis["port"],
               "-n", self.redis["db"]] + (["-a", self.redis["password"]] if self.redis["password"] else [])
        p = subprocess.run(cmd, input="DBSIZE\nINFO memory\nFLUSHALL\nINFO memory\n", capture_output=True,
                           text=True, timeout=600)
        t = time.monotonic()
        if p.returncode != 0:
            raise BenchError(f"redis-cli FLUSHALL: {p.stderr.strip()}")
        mem = used_memory(p.stdout)
        if len(mem) < 2:
            raise BenchError(f"cannot read used_memory around FLUSHALL: {p.stdout[:300]!r}")
        return {"dbsize": int(p.stdout.split()[0]), "used_loaded": mem[0], "used_flushed": mem[1], "at": t}

    def reconcile_timed(self) -> dict:
        self.wait_backlog(self.cfg["drain_limit"])
        t0 = time.monotonic()
        r = self.reconcile()
        return {"seconds": round(time.monotonic() - t0, 2),
                **{k: r.get(k) for k in ("keysChecked", "keysRepaired", "ledgerMismatches", "ok", "durationMs")}}

    def sizing(self, name: str, rec: dict, load) -> dict:
        """One data set's sizing figures, with a fresh service on it; `load` (the largest data
        set) runs its load figures before the service stops."""
        self.progress(f"{name}: sizing figures ({rec.get('stock_rows', 0):,} stock rows)")
        fig: dict = {"seed": rec, "stock_rows": rec.get("stock_rows"), "locations": rec.get("locations"),
                     "products": rec.get("products")}
        self.stock_rows = rec.get("stock_rows") or 0
        self.results["sizes"][name] = fig
        self.redis_cmd("FLUSHALL")
        t0 = time.monotonic()
        self.start_service(name)
        try:
            self.load_world()
            self.write_all_bodies()
            done = self.wait_epochs(1800)
            if done is None:
                raise BenchError(f"{name}: the service did not load every location into Redis within 1,800 s")
            fig["startup_load_s"] = round(time.monotonic() - t0, 1)
            self.note(f"{name}: service up and every location in Redis {fig['startup_load_s']} s after its start")
            fig["detail"] = self.detail_bodies()
            fig["mirror"] = self.fill_mirror()
            self.note(f"{name}: read {self.max_product:,} product details in {fig['mirror']['seconds']} s; "
                      f"RSS {fig['mirror']['rss_mib'] or 0:,.1f} MiB")
            fig["idle"] = self.idle(self.sc["idle_s"])
            self.note(f"{name}: idle service CPU {fig['idle']['service_cpu_pct']}% over {fig['idle']['seconds']} s; "
                      f"backlog gauge {fig['idle']['gauge']}, streams {fig['idle']['xlen_sum']}")
            fig["warmup"] = self.warmup(with_orders=load is not None)
            fl = fig["warmup"]["flush"]
            fig["redis"] = {"dbsize": fl["dbsize"], "used_loaded": fl["used_loaded"],
                            "used_flushed": fl["used_flushed"],
                            "bytes_per_stock_key": (fl["used_loaded"] - fl["used_flushed"]) / fig["stock_rows"]
                            if fig["stock_rows"] else None}
            fig["reconcile"] = self.reconcile_timed()
            self.note(f"{name}: reconciliation pass {fig['reconcile']['seconds']} s, "
                      f"{fig['reconcile']['keysChecked'] or 0:,} keys checked")
            if load:
                load(fig)
        finally:
            self.stop_service()
        return fig

    # --- orders spread over every location -----------------------------------------

    def write_all_bodies(self):
        """raw/all-bodies.jsonl: orders at a random one of every location, one product each: a
        PICKUP at the store, or a NORMAL order from ~1 km off the warehouse (its nearest)."""
        rnd = random.Random(20_261_207)
        locs = [("W", w) for w in self.warehouses] + [("S", s) for s in self.stores]
        with open(self.raw / "all-bodies.jsonl", "w") as f:
            for _ in range(50_000):
                kind, (lid, la, lo) = rnd.choice(locs)
                item = [{"productId": rnd.randint(1, self.max_product), "quantity": 1}]
                body = ({"items": item, "deliveryType": "PICKUP", "storeId": lid} if kind == "S" else
                        {"items": item, "deliveryType": "NORMAL",
                         "deliveryAddress": {"latitude": round(la + rnd.uniform(-0.01, 0.01), 5),
                                             "longitude": round(lo + rnd.uniform(-0.01, 0.01), 5)}})
                f.write(json.dumps(body, separators=(",", ":")) + "\n")
        # Detail reads near a random store, random product (only their statuses are judged).
        with open(self.raw / "near-urls-redis.txt", "w") as fr, open(self.raw / "near-urls-mysql.txt", "w") as fm:
            for _ in range(20_000):
                _, la, lo = rnd.choice(self.stores)
                p, q = rnd.randint(1, self.max_product), self.near_query(la, lo)
                fr.write(f"{self.base}/api/redis/products/{p}?{q}\n")
                fm.write(f"{self.base}/api/products/{p}?{q}\n")

    def all_job(self, rate: int | None, secs: float, conns: int = 256) -> dict:
        job = {"url": self.order_url("redis"), "method": "POST", "body_lines": self.raw / "all-bodies.jsonl",
               "headers": self.shop_headers(), "conns": conns, "duration": secs}
        if rate:
            job["rate"] = rate
        return job

    @staticmethod
    def load_figures(r: dict) -> dict:
        return {k: r.get(k) for k in ("requests", "ok", "conflict", "errors", "statuses", "error_detail", "wall_s",
                                      "p50_ms", "p99_ms", "p999_ms", "max_ms", "ok_per_s")}

    def warmup(self, with_orders: bool) -> dict:
        """FLUSHALL on the service's Redis, then the time until every epoch marker and stock key is back; with
        orders flowing meanwhile (the largest data set), their statuses and latencies."""
        rate, window = self.sc["warmup_rate"], self.sc["warmup_window_s"]
        load: dict = {}
        thread = None
        if with_orders:
            def run():
                try:
                    res, cpu, _ = self.run_load("warmup-orders", [self.all_job(rate, window)])
                    load.update(self.load_figures(res[0]), cpu=cpu)
                except BenchError as e:
                    load["error"] = str(e)
        flush = self.flush()
        if with_orders:
            thread = threading.Thread(target=run, name="warmup-orders")
            thread.start()
        done = self.wait_epochs(1800)
        markers = None if done is None else round(time.monotonic() - flush["at"], 2)
        # A marker says its location was loaded, but an order's own key load may set it too: all
        # keys back is also Redis holding at least as many keys as there are stock rows.
        keys = self.wait_keys(self.stock_rows, self.sc["warmup_limit_s"]) if done is not None else None
        took = None if keys is None else round(time.monotonic() - flush["at"], 2)
        if thread:
            thread.join()
        out = {"seconds": took, "markers_s": markers, "keys_expected": self.stock_rows,
               "keys_at_markers": self.markers_dbsize, "health_check_ms": HEALTH_CHECK_MS, "flush": flush}
        if with_orders:
            out["orders"] = dict(load, rate=rate, window_s=window)
        self.note(f"warm-up after FLUSHALL: markers back {markers} s, keys back {took} s" + (
            f"; orders during it: {load.get('statuses')}, p99 {fmt_ms(load.get('p99_ms'))} ms, "
            f"max {fmt_ms(load.get('max_ms'))} ms" if with_orders else ""))
        self.wait_backlog(self.cfg["drain_limit"])
        return out

    # --- the load figures (the largest data set) -------------------------------------

    def gauge_with_backlog(self, orders: int = 20) -> dict:
        """The backlog gauge against the streams' lengths with orders left unpersisted: the
        private MariaDB is paused (SIGSTOP) while a few Redis-path orders are placed (the Redis
        path goes on without MySQL; the consumer cannot persist them), then resumed."""
        pid = self.pids.get("mariadb")
        if not pid:
            return {"error": "no MariaDB pid"}
        lines = (self.raw / "all-bodies.jsonl").read_text().splitlines()[:orders]
        out: dict = {"sent": len(lines)}
        os.kill(pid, signal.SIGSTOP)
        try:
            statuses: dict[str, int] = {}
            for ln in lines:
                try:
                    st, _ = self.http("POST", "/api/redis/orders", json.loads(ln), self.channel_key, timeout=5)
                except OSError:
                    st = "timeout"
                statuses[str(st)] = statuses.get(str(st), 0) + 1
                if statuses.get("timeout", 0) >= 2:  # the Redis path waits for MySQL after all
                    break
            out["statuses"] = statuses
            pairs = []
            for _ in range(3):
                time.sleep(2.5)  # the gauge is refreshed every 2 s
                try:
                    gauge = self.metrics().get(BACKLOG_METRIC)
                except BenchError:
                    gauge = None
                streams = self.backlog()
                pairs.append([gauge, streams])
                if gauge == streams:
                    break
            out["readings"] = pairs
            out["gauge"], out["xlen_sum"] = pairs[-1]
        finally:
            os.kill(pid, signal.SIGCONT)
        self.wait_backlog(self.cfg["drain_limit"])
        self.note(f"backlog gauge with MariaDB paused: {out.get('statuses')}; gauge {out.get('gauge')}, "
                  f"XLEN sum {out.get('xlen_sum')}")
        return out

    def load_figures_run(self, fig: dict):
        # The read rates first: after the write loads MariaDB spends minutes placing their
        # events, and a read figure taken then measures that work as much as the route.
        fig["detail_rate"] = self.detail_rate(fig["detail"])
        fig["gauge_backlog"] = self.gauge_with_backlog()
        fig["reconcile_load"] = self.reconcile_under_load(fig["reconcile"]["seconds"])
        fig["fixed"] = self.fixed_all()
        fig["persist"] = self.persist_cost(fig["fixed"])
        fig["idle_after"] = self.idle(self.sc["idle_s"])

    def reconcile_under_load(self, pass_s: float) -> dict:
        """The same fixed-rate load over every location, once alone and once beside a
        reconciliation pass (started with it; the load lasts about as long as a pass took)."""
        lo, hi = self.sc["recon_load_s"]
        secs = int(min(max(pass_s, lo), hi))
        rate = self.sc["recon_rate"]
        self.progress(f"reconciliation under load: {rate:,} orders/s, without and during a pass", 2 * secs)
        base, _, _ = self.run_load("recon-base", [self.all_job(rate, secs)])
        self.wait_backlog(self.cfg["drain_limit"])
        recon: dict = {}

        def run():
            t0 = time.monotonic()
            try:
                r = self.reconcile()
                recon.update({k: r.get(k) for k in ("keysChecked", "keysRepaired", "ledgerMismatches", "ok",
                                                     "durationMs")})
            except BenchError as e:
                recon["error"] = str(e)
            recon["seconds"] = round(time.monotonic() - t0, 2)

        th = threading.Thread(target=run, name="reconcile")
        th.start()
        during, _, _ = self.run_load("recon-during", [self.all_job(rate, secs)])
        th.join()
        self.wait_backlog(self.cfg["drain_limit"])
        b, d = self.load_figures(base[0]), self.load_figures(during[0])
        ratio = d["p99_ms"] / b["p99_ms"] if b.get("p99_ms") and d.get("p99_ms") is not None else None
        self.note(f"p99 without a pass {fmt_ms(b['p99_ms'])} ms, during one {fmt_ms(d['p99_ms'])} ms "
                  f"(pass {recon.get('seconds')} s)")
        return {"rate": rate, "seconds": secs, "without": b, "during": d, "pass": recon, "p99_ratio": ratio}

    def fixed_all(self) -> dict:
        """The fixed-rate scenario's run (write_scenario: snapshot, load, catch-up, checks), the
        orders spread over every location."""
        rate, secs = self.sc["fixed_rate"], self.sc["fixed_s"]
        sid = "fixed-all-redis"
        n = len(self.warehouses) + len(self.stores)
        return self.write_scenario(
            sid, f"fixed rate over all {n:,} locations, Redis path, {rate:,} orders/s", "redis",
            [self.all_job(rate, secs)], hot=False, expect_paths={"REDIS": [sid]},
            extra={"rate": rate, "connections": 256}, pair={"first": True})

    def persist_cost(self, fixed: dict) -> dict | None:
        """CPU per persisted order (the catch-up after a load, Driver.catch_up): from the fixed-rate
        run when its consumer was left at least CATCH_UP_MIN_EVENTS behind, else from a short
        closed-loop burst over every location that leaves it behind."""
        if fixed.get("persist_cost_us"):
            return dict(fixed["persist_cost_us"], source=fixed["id"])
        sid = "burst-all-redis"
        scen = self.write_scenario(
            sid, "burst over all locations, Redis path, 256 connections (for the catch-up)", "redis",
            [self.all_job(None, self.sc["burst_s"])], hot=False, expect_paths={"REDIS": [sid]},
            extra={"connections": 256}, pair={"first": True})
        return dict(scen["persist_cost_us"], source=sid) if scen.get("persist_cost_us") else None

    def detail_rate(self, detail: dict) -> dict:
        """Closed loop, 64 connections: the near-filtered detail on both routes (unfiltered where
        the route has no `near`), and GET /health/live."""
        out = {}
        for source in ("redis", "mysql"):
            near = detail[source]["near_available"]
            job = {"conns": 64, "duration": self.sc["reads_s"],
                   "urls_file": self.raw / (f"near-urls-{source}.txt" if near else f"detail-urls-{source}.txt")}
            s = self.read_run(f"reads-detail-{source}", f"product detail from {source}"
                              f"{' near a store' if near else ' (unfiltered: no near parameter)'}, 64 connections",
                              "reads-detail", source, "detail", job)
            out[source] = {**{k: s.get(k) for k in ("ok_per_s", "p50_ms", "p99_ms", "errors", "bytes_per_answer")},
                           "near": near}
        live = self.read_run("reads-live", "GET /health/live, 64 connections", "reads-live", None, "/health/live",
                             {"conns": 64, "duration": self.sc["reads_s"], "url": f"{self.base}/health/live"})
        out["live"] = {k: live.get(k) for k in ("ok_per_s", "p50_ms", "p99_ms", "errors")}
        return out

    # --- the run --------------------------------------------------------------------

    def run(self) -> int:
        from .scale_report import evaluate, write_scale_report

        self.results["meta"] = {"mode": self.mode, "started": now_utc(), "load_generator": self.lg.version,
                                "scale": self.a.scale, "health_check_ms": HEALTH_CHECK_MS}
        self.results["machine"] = machine_info(self.a, self.lg.version)
        error = None
        try:
            self.progress("seeding the data sets (or reusing them)")
            names = ["demo", "bench", self.target]
            recs = {n: self.ensure_seeded(n) for n in names}
            self.results["seeds"] = recs
            big = self.target if recs[self.target]["available"] else "bench"
            if big != self.target:
                self.results["notes"].append(
                    f"`{self.target}` is not available ({recs[self.target]['error']}); the load figures ran on "
                    "the bench data set instead, and the retail figures are missing.")
            self.results["meta"]["load_size"] = big
            for n in names:
                if recs[n]["available"]:
                    self.sizing(n, recs[n], self.load_figures_run if n == big else None)
        except Exception as e:  # the report is written whatever happened
            import traceback
            error = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
            self.failed.append(f"run broke off: {error}")
            (self.out / "error.txt").write_text(traceback.format_exc())
            print(f"error: {error} (traceback in {self.out / 'error.txt'})", flush=True)
            self.stop_service()
        self.results["meta"].update(finished=now_utc(), elapsed_s=round(time.time() - self.bench_start), error=error)
        self.results["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        self.results["machine"]["uptime_end"] = uptime()
        evaluate(self)
        write_scale_report(self)
        return 1 if self.failed else 0
