#!/usr/bin/env python3
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
import datetime as dt
import hashlib
import json
import math
import os
import platform
import random
import re
import resource
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HOT_PRODUCT = 1
HOT_STOCK = 10_000_000
CITY_HALL = (37.5665, 126.9780)  # Seoul City Hall
CEILING_PREFIX = "bench-ceiling:"
FLOOR_PREFIX = "floor:"
# The product whose detail the conditional (If-None-Match) detail runs read: not the hot product,
# so no order of the bench changes it.
ETAG_PRODUCT = 2
ROOT = Path(__file__).resolve().parent.parent

# Durations (seconds) and rates of the two modes. The soak's rate and length can be changed with
# --soak-rate and --soak-seconds; soak_before/soak_after are the RSS samples around its load.
MODES = {
    "quick": {
        "hot": 5, "fixed": 5, "fixed_rate_redis": 2_000, "spread": 3, "store": 3, "reads": 2,
        "ceiling": 2, "drain_limit": 60, "soak": 10, "soak_before": 5, "soak_after": 10,
    },
    "full": {
        "hot": 20, "fixed": 60, "fixed_rate_redis": 10_000, "spread": 20, "store": 20, "reads": 20,
        "ceiling": 10, "drain_limit": 300, "soak": 600, "soak_before": 15, "soak_after": 30,
    },
}
SOAK_RATE = 5_000
RSS_EVERY_S = 5.0
TARGETS = {
    "redis_hot_min": 20_000,
    "redis_hot_ceiling_fraction": 0.5,
    "redis_hot_floor_fraction": 0.5,
    "redis_fixed_rate": 10_000,
    "redis_fixed_p99_ms": 25.0,
    "redis_fixed_p999_ms": 100.0,
    "redis_fixed_confirm_s": 2.0,
    "db_hot_min": 4_000,
    "redis_list_min": 15_000,
    "mysql_list_min": 5_000,
    "detail_over_live": 0.5,
    # RSS rising faster than this over the last third of the soak's load reads as growth without
    # bound (a leak of a few bytes per order at 5,000 orders/s already exceeds it).
    "soak_rss_slope_mib_per_min": 1.0,
}


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_int(v) -> str:
    return "–" if v is None else f"{int(round(v)):,}"


def fmt_ms(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def fmt_mib(v) -> str:
    return "–" if v is None else f"{v:,.1f}"


def haversine_km(a, b) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


class BenchError(Exception):
    pass


# Load-generator processes running now, stopped when this program is told to stop.
RUNNING: list[subprocess.Popen] = []


def _stop(signum, _frame):
    for p in list(RUNNING):
        try:
            p.terminate()
        except OSError:
            pass
    print(f"ops/bench.py: stopped by signal {signum}", file=sys.stderr)
    os._exit(128 + signum)


# ---------------------------------------------------------------------------
# CPU accounting: where the machine's CPU time went during a run
# ---------------------------------------------------------------------------


def _proc_cpu_s(pid) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _machine_cpu() -> tuple[float, float]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    tck = os.sysconf("SC_CLK_TCK")
    return sum(vals[:8]) / tck, idle / tck


class CpuMeter:
    """CPU seconds of the machine, the service, MariaDB, Redis and the load generator."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = pids

    def __enter__(self):
        self.t0 = time.monotonic()
        self.m0 = _machine_cpu()
        self.p0 = {k: _proc_cpu_s(p) if p else None for k, p in self.pids.items()}
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.c0 = r.ru_utime + r.ru_stime
        return self

    def __exit__(self, *exc):
        wall = self.wall = max(time.monotonic() - self.t0, 1e-6)
        total1, idle1 = _machine_cpu()
        busy = (total1 - self.m0[0]) - (idle1 - self.m0[1])
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        loadgen = r.ru_utime + r.ru_stime - self.c0
        pct = {"machine": 100 * busy / wall, "loadgen": 100 * loadgen / wall}
        for k, p in self.pids.items():
            v1 = _proc_cpu_s(p) if p else None
            pct[k] = None if v1 is None or self.p0[k] is None else 100 * (v1 - self.p0[k]) / wall
        known = sum(v for k, v in pct.items() if k != "machine" and v is not None)
        pct["other"] = max(pct["machine"] - known, 0.0)
        self.result = {k: round(v, 1) if v is not None else None for k, v in pct.items()}
        return False


def cpu_per_order(run: dict) -> dict:
    """Each process's CPU µs per order answered in a run (its CPU % ÷ its orders per second)."""
    cpu = run.get("cpu_pct") or {}
    return {k: (None if not isinstance(cpu.get(k), (int, float)) or not run.get("ok_per_s")
                else 1e4 * cpu[k] / run["ok_per_s"])
            for k in ("service", "mariadb", "redis", "loadgen", "machine")}


def floor_split(floor: dict | None, hot: dict | None) -> dict | None:
    """CPU µs per order of the floor run and of the Redis hot-product run (64 connections), and what
    persisting an order cost after that run (its catch-up); None without the figures."""
    if not floor or not hot or not floor.get("ok_per_s") or not hot.get("ok_per_s"):
        return None
    persist = hot.get("persist_cost_us")
    if not persist or persist.get("total") is None:
        return None

    f, h = cpu_per_order(floor), cpu_per_order(hot)
    if f["machine"] is None:
        return None
    budget = 2 * f["machine"]
    return {"floor": f, "service": h, "events": persist["events"],
            "persist": {**{k: persist.get(k) for k in ("service", "mariadb", "redis", "total")},
                        "loadgen": None, "machine": None},
            "budget": budget, "persist_share": persist["total"] / f["machine"],
            "left": budget - persist["total"]}


def persist_note(split: dict | None) -> str:
    """The floor target's note: what persisting takes of the CPU that 50% of the floor allows."""
    if not split:
        return ""
    return (f"machine CPU per order: floor {split['floor']['machine']:.1f} µs, so 50% allows "
            f"{split['budget']:.1f} µs; persisting one order (after the load) took {split['persist']['total']:.1f} µs "
            f"(service {split['persist']['service']:.1f}, MariaDB {split['persist']['mariadb']:.1f}, "
            f"Redis {split['persist']['redis']:.1f})")


def fixed_capacity(floor: dict | None, persist: dict | None, fixed: dict, nproc) -> dict | None:
    """The least CPU the fixed-rate load needs: each order costs at least what the floor's order
    costs sf-floor and Redis, plus what persisting it costs (a catch-up's figure); with the load
    generator's own CPU per order in the fixed-rate run. None without the figures."""
    if not floor or not floor.get("ok_per_s") or not persist or persist.get("total") is None or not nproc:
        return None
    f = cpu_per_order(floor)
    if f["service"] is None or f["redis"] is None:
        return None
    take = f["service"] + f["redis"]
    load = cpu_per_order(fixed)["loadgen"]
    per_order = take + persist["total"] + (load or 0)
    return {"rate": fixed["rate"], "take_us": round(take, 1), "persist_us": persist["total"],
            "loadgen_us": None if load is None else round(load, 1),
            "cores_needed": round(per_order * fixed["rate"] / 1e6, 2), "cores": nproc}


def capacity_note(cap: dict | None) -> str:
    """The fixed-rate targets' note: the least CPU the rate needs against the machine's cores."""
    if not cap:
        return ""
    load = "" if cap["loadgen_us"] is None else f" and the load generator's {cap['loadgen_us']:.1f} µs"
    return (f"at {cap['rate']:,}/s, the floor's work per order ({cap['take_us']:.1f} µs of sf-floor and Redis), "
            f"persisting it ({cap['persist_us']:.1f} µs){load} need at least {cap['cores_needed']:.2f} "
            f"of the machine's {cap['cores']} cores")


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None for fewer than 4."""
    if len(points) < 4:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return 60 * sum((t - mt) * (v - mv) for t, v in points) / var


class RssSampler:
    """The service's resident set size (VmRSS in /proc/<pid>/status) every `every` seconds, on a
    thread of its own, with a progress line every minute of a long load. load_ended() and stop()
    take one sample more each: the figures *at the end* and *after*."""

    def __init__(self, pid: int | None, every: float, note, load_s: float):
        self.pid, self.every, self.note, self.load_s = pid, every, note, load_s
        self.samples: list[tuple[float, float]] = []  # (monotonic, MiB)
        self.marks: dict[str, tuple[float, float]] = {}
        self.t0 = time.monotonic()
        self.load_t0: float | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss_mib(self) -> float | None:
        if not self.pid:
            return None
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    def sample(self, mark: str | None = None) -> float | None:
        v, t = self.rss_mib(), time.monotonic()
        if v is not None:
            with self._lock:
                self.samples.append((t, v))
                if mark:
                    self.marks[mark] = (t, v)
        return v

    def start(self):
        self.t0 = time.monotonic()
        self._thread.start()

    def load_started(self):
        self.load_t0 = time.monotonic()

    def load_ended(self):
        self.sample("end")
        self.load_t0 = None

    def stop(self):
        if self._halt.is_set():
            return
        self._halt.set()
        self._thread.join()
        self.sample("after")

    def _run(self):
        k, next_note = 0, 60.0
        while True:
            v = self.sample()
            lt = self.load_t0
            if lt is not None and self.load_s >= 120 and v is not None and time.monotonic() - lt >= next_note:
                with self._lock:
                    peak = max(x for t, x in self.samples if t >= lt)
                self.note(f"soak: {next_note:.0f}/{self.load_s:g} s of load, service RSS {v:,.1f} MiB "
                          f"(peak so far {peak:,.1f})")
                next_note += 60
            k += 1
            if self._halt.wait(max(0.0, self.t0 + k * self.every - time.monotonic())):
                return

    def summary(self, window: tuple[float, float] | None, after_s: float) -> dict:
        with self._lock:
            s = list(self.samples)
            marks = dict(self.marks)
        t0 = self.t0
        out: dict = {"pid": self.pid, "every_s": self.every,
                     "samples": [[round(t - t0, 2), round(v, 2)] for t, v in s]}
        if not s or not window:
            return out
        start, end = window
        before = [v for t, v in s if t < start]
        during = [(t, v) for t, v in s if start <= t <= end]
        third = (end - start) / 3
        first = slope_per_min([(t, v) for t, v in during if t <= start + third])
        last = slope_per_min([(t, v) for t, v in during if t >= end - third])
        out.update({
            "load_start_s": round(start - t0, 2), "load_end_s": round(end - t0, 2),
            "before_mib": before[-1] if before else None,
            "peak_mib": max(v for _, v in during) if during else None,
            "end_mib": marks["end"][1] if "end" in marks else (during[-1][1] if during else None),
            "after_mib": marks["after"][1] if "after" in marks else None,
            "after_s": round(marks["after"][0] - end, 1) if "after" in marks else after_s,
            "first_third_slope_mib_per_min": first, "last_third_slope_mib_per_min": last,
            "grows": None if last is None else last > TARGETS["soak_rss_slope_mib_per_min"],
        })
        return out


# ---------------------------------------------------------------------------
# Load generators
# ---------------------------------------------------------------------------


def summarize_statuses(statuses: dict[str, int], conn_errors: dict[str, int],
                       also_ok: tuple[str, ...] = ()) -> dict:
    """Counts per outcome: 2xx (and the statuses in also_ok, e.g. 304 for conditional reads) are
    ok, 409 is out of stock, anything else and every connection error is an error."""
    def good(s: str) -> bool:
        return s.startswith("2") or s in also_ok

    ok = sum(n for s, n in statuses.items() if good(s))
    conflict = statuses.get("409", 0)
    other = {s: n for s, n in statuses.items() if not good(s) and s != "409"}
    errors = sum(other.values()) + sum(conn_errors.values())
    return {
        "ok": ok,
        "not_modified": statuses.get("304", 0),
        "conflict": conflict,
        "errors": errors,
        "statuses": dict(sorted(statuses.items())),
        "error_detail": {**{f"HTTP {s}": n for s, n in other.items()}, **conn_errors},
        "requests": ok + conflict + errors,
    }


class Oha:
    name = "oha"

    def __init__(self, binary: str):
        self.binary = binary
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()

    def command(self, job: dict) -> list[str]:
        cmd = [self.binary, "--no-tui", "--output-format", "json", "-c", str(job["conns"]),
               "-z", f"{job['duration']}s",
               # Wait for the requests still in flight at the deadline: an aborted request may
               # still have been decided by the service, and every decided order must be counted.
               "-w"]
        if job.get("rate"):
            cmd += ["-q", str(job["rate"]), "--latency-correction"]
        if job.get("threads"):
            cmd += ["--worker-threads", str(job["threads"])]
        if job.get("method", "GET") != "GET":
            cmd += ["-m", job["method"]]
        if job.get("body") is not None:
            cmd += ["-d", job["body"]]
        if job.get("body_lines"):
            cmd += ["-Z", str(job["body_lines"])]  # one random line of the file per request
        if job.get("body") is not None or job.get("body_lines"):
            cmd += ["-H", "content-type: application/json"]
        for h in job.get("headers", []):
            cmd += ["-H", h]
        if job.get("urls_file"):
            cmd += ["--urls-from-file", str(job["urls_file"])]  # a random line per request
        else:
            cmd.append(job["url"])
        return cmd

    def parse(self, stdout: str, job: dict) -> dict:
        data = json.loads(stdout)
        res = summarize_statuses(
            {str(k): int(v) for k, v in data.get("statusCodeDistribution", {}).items()},
            {str(k): int(v) for k, v in data.get("errorDistribution", {}).items()},
            tuple(job.get("also_ok", ())),
        )
        pct = data.get("latencyPercentiles", {})

        def ms(key):
            v = pct.get(key)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v * 1000

        wall = float(data["summary"]["total"])
        res.update({
            "wall_s": wall,
            "p50_ms": ms("p50"), "p99_ms": ms("p99"), "p999_ms": ms("p99.9"),
            "max_ms": (data["summary"].get("slowest") or 0) * 1000,
            "bytes_per_answer": data["summary"].get("sizePerRequest"),
            "ok_per_s": res["ok"] / wall if wall else 0.0,
            "req_per_s": res["requests"] / wall if wall else 0.0,
        })
        return res


WRK_LUA = r"""
-- ops/bench: random body or path per request from a file, counts per status, JSON summary.
local lines, method, hdr_name, hdr_value, mode = {}, "GET", nil, nil, "body"
counts = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  method, mode = args[1], args[2]
  if args[4] and args[4] ~= "" then hdr_name, hdr_value = args[4]:match("^([^:]+):%s*(.*)$") end
  for line in io.lines(args[3]) do
    if #line > 0 then table.insert(lines, line) end
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  counts = {}
end

function request()
  local pick = lines[math.random(#lines)]
  local headers = {}
  if hdr_name then headers[hdr_name] = hdr_value end
  if mode == "body" then
    headers["Content-Type"] = "application/json"
    return wrk.format(method, nil, headers, pick)
  end
  return wrk.format(method, pick, headers, nil)
end

function response(status, headers, body)
  local k = tostring(status)
  counts[k] = (counts[k] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"statuses":{%s},"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50":%d,"p99":%d,"p999":%d,"max":%d,"bytes":%d,"requests":%d}\n',
    summary.duration, table.concat(parts, ","), e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    summary.bytes, summary.requests))
end
"""


class Wrk:
    """Fallback when oha cannot be built: closed loop only (wrk has no fixed-rate mode). wrk drops
    the requests in flight when the duration ends, so the service may have decided up to one
    request per connection more than wrk counted; the invariant check allows for that."""

    name = "wrk"

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        out = subprocess.run([binary, "-v"], capture_output=True, text=True)
        text = (out.stdout + out.stderr).strip()
        self.version = text.splitlines()[0].split(" Copyright")[0].strip() if text else "wrk"
        self.script = workdir / "wrk-bench.lua"
        self.script.write_text(WRK_LUA)
        self.workdir = workdir

    def command(self, job: dict) -> list[str]:
        if job.get("rate"):
            raise BenchError("wrk has no fixed-rate (open-loop) mode")
        threads = max(1, min(2, job["conns"]))
        base = job.get("url") or ""
        if job.get("urls_file"):
            urls = [u for u in Path(job["urls_file"]).read_text().splitlines() if u]
            parsed = urllib.parse.urlsplit(urls[0])
            base = f"{parsed.scheme}://{parsed.netloc}/"
            lines_file = self.workdir / (Path(job["urls_file"]).stem + ".paths")
            lines_file.write_text("\n".join(urllib.parse.urlsplit(u).path + (
                "?" + urllib.parse.urlsplit(u).query if urllib.parse.urlsplit(u).query else "") for u in urls) + "\n")
            mode = "path"
        elif job.get("body_lines") or job.get("body") is not None:
            if job.get("body_lines"):
                lines_file = Path(job["body_lines"])
            else:
                lines_file = self.workdir / f"body-{abs(hash(job['body']))}.jsonl"
                lines_file.write_text(job["body"] + "\n")
            mode = "body"
        else:
            parsed = urllib.parse.urlsplit(base)
            lines_file = self.workdir / f"path-{abs(hash(base))}.paths"
            lines_file.write_text(parsed.path + ("?" + parsed.query if parsed.query else "") + "\n")
            mode = "path"
        header = job.get("headers", [""])[0] if job.get("headers") else ""
        return [self.binary, "-t", str(threads), "-c", str(job["conns"]), "-d", f"{job['duration']}s",
                "--timeout", "120s", "-s", str(self.script), base, "--",
                job.get("method", "GET"), mode, str(lines_file), header]

    def parse(self, stdout: str, job: dict) -> dict:
        line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if line is None:
            raise BenchError("wrk printed no summary")
        data = json.loads(line[len("BENCH_JSON "):])
        conn = {k: data[k] for k in ("connect", "read", "write", "timeout") if data[k]}
        res = summarize_statuses({str(k): int(v) for k, v in data["statuses"].items()}, conn,
                                 tuple(job.get("also_ok", ())))
        wall = data["duration_us"] / 1e6
        res.update({
            "wall_s": wall,
            "p50_ms": data["p50"] / 1000, "p99_ms": data["p99"] / 1000, "p999_ms": data["p999"] / 1000,
            "max_ms": data["max"] / 1000,
            "bytes_per_answer": (data["bytes"] // max(data["requests"], 1)) if data.get("requests") else None,
            "ok_per_s": res["ok"] / wall if wall else 0.0,
            "req_per_s": res["requests"] / wall if wall else 0.0,
            "in_flight_slack": job["conns"],
        })
        return res


# ---------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------


class Bench:
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

    # --- small clients ----------------------------------------------------

    def http(self, method: str, path: str, body=None, token: str | None = None, timeout=300):
        status, _, raw = self.http_full(method, path, body, token, timeout=timeout)
        return status, raw

    def http_full(self, method: str, path: str, body=None, token: str | None = None,
                  headers: dict[str, str] | None = None, timeout=300):
        """Status, headers (lower-case names) and body of one request; `path` may be a full URL."""
        data = json.dumps(body).encode() if body is not None else None
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def http_json(self, method, path, body=None, token=None, expect=(200,)):
        status, raw = self.http(method, path, body, token)
        if status not in expect:
            raise BenchError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def service_log_size(self) -> int:
        try:
            return (self.out / "service.log").stat().st_size
        except OSError:
            return 0

    def unknown_outcomes(self, since: int) -> list[str]:
        """Ids of the orders the service answered 503 order-outcome-unknown since byte `since` of
        its log (it logs each one: "redis did not answer the reservation of order <id> (...)")."""
        try:
            with open(self.out / "service.log", "rb") as f:
                f.seek(since)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return sorted(set(re.findall(r"reservation of order ([0-9]+-[0-9a-f]{32}) \(", text)))

    def placed(self, ids: list[str]) -> dict[str, int]:
        """How many of `ids` MySQL holds, by path."""
        found: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = self.sql("SELECT path, COUNT(*) FROM orders WHERE id IN ("
                            + ",".join(f"'{x}'" for x in chunk) + ") GROUP BY path")
            for p, n in rows:
                found[p] = found.get(p, 0) + int(n)
        return found

    def sql(self, query: str) -> list[list[str]]:
        env = dict(os.environ, MYSQL_PWD=self.db["password"])
        p = subprocess.run(
            [self.a.mariadb_client, "--no-defaults", "--protocol=tcp", "-h", self.db["host"],
             "-P", self.db["port"], "-u", self.db["user"], "--batch", "--skip-column-names",
             self.db["name"], "-e", query],
            capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise BenchError(f"SQL failed: {query}: {p.stderr.strip()}")
        return [ln.split("\t") for ln in p.stdout.splitlines()]

    def redis_cmd(self, *args: str, as_json: bool = False) -> str:
        cmd = [self.a.redis_cli, "--no-auth-warning", "-h", self.redis["host"], "-p", self.redis["port"],
               "-n", self.redis["db"]] + (["--json"] if as_json else [])
        if self.redis["password"]:
            cmd += ["-a", self.redis["password"]]
        p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise BenchError(f"redis-cli {args[0]} failed: {p.stderr.strip()}")
        return p.stdout.strip()

    def redis_forks(self) -> int | None:
        """Background saves/AOF rewrites Redis has forked so far (INFO stats total_forks)."""
        try:
            for line in self.redis_cmd("INFO", "stats").splitlines():
                if line.startswith("total_forks:"):
                    return int(line.split(":", 1)[1])
        except BenchError:
            pass
        return None

    def redis_stalls_start(self) -> None:
        """Starts Redis's own record of its stalls for one load: the latency monitor (events of
        5 ms or more: expiry cycles, fsyncs, forks, commands) and the slow log (commands of 2 ms or
        more), both emptied first."""
        try:
            self.redis_cmd("CONFIG", "SET", "latency-monitor-threshold", "5",
                           "slowlog-log-slower-than", "2000", "slowlog-max-len", "1024")
            self.redis_cmd("LATENCY", "RESET")
            self.redis_cmd("SLOWLOG", "RESET")
        except BenchError:
            pass

    def redis_stalls(self, raw: Path) -> dict | None:
        """What Redis recorded since redis_stalls_start: the longest stall of each latency-monitor
        event (ms), and the slow commands by name (a script by its file under persistence/lua),
        with how many there were and the longest (ms). Both replies are written to `raw`."""
        try:
            latest = json.loads(self.redis_cmd("LATENCY", "LATEST", as_json=True) or "[]")
            slow = json.loads(self.redis_cmd("SLOWLOG", "GET", "1024", as_json=True) or "[]")
        except (BenchError, ValueError):
            return None
        raw.write_text(json.dumps({"latency_latest": latest, "slowlog": slow}) + "\n")
        # LATENCY LATEST: [event, unix time, latest ms, max ms] per event.
        events = {e[0]: e[3] for e in latest if len(e) >= 4}
        scripts = {hashlib.sha1(f.read_bytes()).hexdigest(): f.name
                   for f in (ROOT / "persistence" / "lua").glob("*.lua")}
        commands: dict[str, dict] = {}
        # SLOWLOG GET: [id, unix time, microseconds, arguments, client, name] per command.
        for entry in slow:
            if len(entry) < 4 or not entry[3]:
                continue
            args = entry[3]
            name = str(args[0]).upper()
            if name in ("EVALSHA", "EVAL") and len(args) > 1:
                name = scripts.get(str(args[1]), name)
            c = commands.setdefault(name, {"count": 0, "max_ms": 0.0})
            c["count"] += 1
            c["max_ms"] = max(c["max_ms"], round(entry[2] / 1000, 1))
        return {"latency_max_ms": events, "slow_commands": commands}

    def metrics(self) -> dict[str, float]:
        status, raw = self.http("GET", "/metrics", timeout=30)
        if status != 200:
            raise BenchError(f"/metrics: HTTP {status}")
        out = {}
        for line in raw.decode().splitlines():
            if line.startswith("consumer_backlog"):
                name, _, val = line.partition(" ")
                out[name] = float(val)
        return out

    # Events accepted in Redis and not yet persisted: the streams' lengths (the consumer deletes
    # an event once MySQL holds it). Read from Redis itself, not from the service's
    # consumer_backlog_events gauge, which is refreshed every 2 s: a stale 0 read right after a
    # load would end the wait before the consumer did, and "confirmed after" would be 2 s coarse.
    BACKLOG_LUA = "local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('XLEN', k) end return n"

    def backlog(self) -> int:
        keys = [f"{self.prefix}{{L{loc}}}:ev" for loc, _, _ in self.warehouses + self.stores]
        try:
            return int(self.redis_cmd("EVAL", self.BACKLOG_LUA, str(len(keys)), *keys))
        except (BenchError, ValueError):
            return -1

    def wait_backlog(self, limit_s: float) -> float | None:
        """Seconds until no accepted event waits for MySQL (polled every 50 ms), None past limit_s."""
        t0 = time.monotonic()
        while True:
            if self.backlog() == 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 > limit_s:
                return None
            time.sleep(0.05)

    # Fewest events a catch-up must drain for its CPU per event to be reported.
    CATCH_UP_MIN_EVENTS = 5000

    def catch_up(self, limit_s: float) -> tuple[float | None, dict | None]:
        """Waits for the backlog like wait_backlog, and measures what persisting an order costs.

        Once the load is over, the consumer is the only one working: the CPU the service, MariaDB
        and Redis take until the backlog is empty, divided by the events it held when the load
        ended, is each process's cost of persisting one event (µs). None when fewer than
        CATCH_UP_MIN_EVENTS were left, or the backlog did not drain."""
        events = self.backlog()
        with CpuMeter(self.pids) as cpu:
            drain = self.wait_backlog(limit_s)
        if drain is None or events < self.CATCH_UP_MIN_EVENTS:
            return drain, None
        cost = {"events": events, "seconds": round(cpu.wall, 2)}
        for k in ("service", "mariadb", "redis"):
            pct = cpu.result.get(k)
            cost[k] = None if pct is None else round(pct / 100 * cpu.wall * 1e6 / events, 1)
        known = [cost[k] for k in ("service", "mariadb", "redis")]
        cost["total"] = round(sum(known), 1) if None not in known else None
        return drain, cost

    def progress(self, title: str, seconds: float | None = None):
        self.step += 1
        t = int(time.time() - self.bench_start)
        dur = f" ({seconds:g} s)" if seconds else ""
        print(f"==> [{self.step}/{self.total_steps}] {title}{dur}   [elapsed {t // 60:02d}:{t % 60:02d}]",
              file=sys.stderr, flush=True)

    def note(self, msg: str):
        print(f"    {msg}", file=sys.stderr, flush=True)

    # --- data the scenarios need ------------------------------------------

    def load_world(self):
        locs = self.http_json("GET", "/api/locations")
        locs = locs.get("locations", locs) if isinstance(locs, dict) else locs
        self.warehouses, self.stores = [], []
        for l in locs:
            kind = l.get("locationType") or l.get("kind")
            entry = (int(l.get("locationId", l.get("id"))), float(l["latitude"]), float(l["longitude"]))
            (self.warehouses if kind == "WAREHOUSE" else self.stores).append(entry)
        if not self.warehouses or not self.stores:
            raise BenchError(f"unexpected /api/locations answer: {str(locs)[:200]}")
        self.max_product = int(self.sql("SELECT MAX(id) FROM products")[0][0])
        # NORMAL orders go to the nearest warehouse that has stock: work out which one that is
        # for Seoul City Hall, so the hot product's stock is reset where the orders will go.
        ranked = sorted(self.warehouses, key=lambda w: haversine_km(CITY_HALL, (w[1], w[2])))
        self.hot_loc = ranked[0][0]
        self.results["world"] = {
            "warehouses": len(self.warehouses), "stores": len(self.stores), "products": self.max_product,
            "hot_location": self.hot_loc,
            "warehouse_distance_km": {w[0]: round(haversine_km(CITY_HALL, (w[1], w[2])), 2) for w in ranked},
        }
        rnd = random.Random(20_261_124)
        # Spread: a random product at a random warehouse (the address lies ~1 km from it, so that
        # warehouse is the nearest; every product has 200-1,000 units at every warehouse).
        with open(self.raw / "spread-bodies.jsonl", "w") as f:
            for _ in range(50_000):
                w = rnd.choice(self.warehouses)
                f.write(json.dumps({
                    "items": [{"productId": rnd.randint(1, self.max_product), "quantity": 1}],
                    "deliveryType": "NORMAL",
                    "deliveryAddress": {"latitude": round(w[1] + rnd.uniform(-0.01, 0.01), 5),
                                        "longitude": round(w[2] + rnd.uniform(-0.01, 0.01), 5)},
                }, separators=(",", ":")) + "\n")
        # Store level, online: half SAME_DAY from an address near a random store (within ~3 km),
        # half PICKUP at a random store; random product. Stores hold 0-40 units of each product,
        # so some orders are refused (409), as in real life.
        with open(self.raw / "store-bodies.jsonl", "w") as f:
            for i in range(50_000):
                s = rnd.choice(self.stores)
                item = [{"productId": rnd.randint(1, self.max_product), "quantity": 1}]
                if i % 2 == 0:
                    body = {"items": item, "deliveryType": "SAME_DAY",
                            "deliveryAddress": {"latitude": round(s[1] + rnd.uniform(-0.03, 0.03), 5),
                                                "longitude": round(s[2] + rnd.uniform(-0.03, 0.03), 5)}}
                else:
                    body = {"items": item, "deliveryType": "PICKUP", "storeId": s[0]}
                f.write(json.dumps(body, separators=(",", ":")) + "\n")
        # POS: one body file per terminal store, random product.
        n_pos = 8
        step = max(1, len(self.stores) // n_pos)
        self.pos_stores = [s[0] for s in self.stores[::step][:n_pos]]
        for sid in self.pos_stores:
            with open(self.raw / f"pos-{sid}-bodies.jsonl", "w") as f:
                for _ in range(5_000):
                    f.write(json.dumps({"items": [{"productId": rnd.randint(1, self.max_product),
                                                   "quantity": 1}]}, separators=(",", ":")) + "\n")
        for src in ("", "redis/"):
            with open(self.raw / f"detail-urls-{'redis' if src else 'mysql'}.txt", "w") as f:
                for p in range(1, self.max_product + 1):
                    f.write(f"{self.base}/api/{src}products/{p}\n")

    def snapshot(self) -> dict:
        """Order counts per path, order-line units, total and hot on-hand, all read in one
        consistent snapshot (one transaction), so a write committing meanwhile cannot split them."""
        rows = self.sql(
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY; "
            "SELECT 'orders', path, COUNT(*) FROM orders GROUP BY path; "
            "SELECT 'lines', COUNT(*), COALESCE(SUM(quantity), 0) FROM order_lines; "
            "SELECT 'on_hand', SUM(on_hand), 0 FROM stock; "
            f"SELECT 'hot', on_hand, 0 FROM stock WHERE location_id = {self.hot_loc} "
            f"AND product_id = {HOT_PRODUCT}; COMMIT;")
        snap = {"orders": {}, "lines": 0, "units_ordered": 0, "on_hand": 0, "hot_on_hand": None}
        for r in rows:
            if r[0] == "orders":
                snap["orders"][r[1]] = int(r[2])
            elif r[0] == "lines":
                snap["lines"], snap["units_ordered"] = int(r[1]), int(r[2])
            elif r[0] == "on_hand":
                snap["on_hand"] = int(r[1])
            elif r[0] == "hot":
                snap["hot_on_hand"] = int(r[1])
        return snap

    def quiesce(self, limit_s: float = 30.0):
        """Waits until MySQL stops changing (two equal snapshots 0.5 s apart): wrk drops the
        requests in flight at its deadline, which the service may still be deciding."""
        t0 = time.monotonic()
        last = self.snapshot()
        while time.monotonic() - t0 < limit_s:
            time.sleep(0.5)
            cur = self.snapshot()
            if cur == last:
                return
            last = cur

    def reset_hot_stock(self):
        body = self.http_json("PUT", f"/api/admin/locations/{self.hot_loc}/products/{HOT_PRODUCT}/stock",
                              {"quantity": HOT_STOCK, "reason": "RESTOCK"}, self.token)
        return body

    def reconcile(self) -> dict:
        for _ in range(60):
            status, raw = self.http("POST", "/api/admin/reconciliation/runs", token=self.token, timeout=600)
            if status == 200:
                return json.loads(raw)
            if status == 409:  # a scheduled run is going; wait for it
                time.sleep(1)
                continue
            raise BenchError(f"reconciliation run: HTTP {status}: {raw[:300]!r}")
        raise BenchError("reconciliation run: another run kept going for a minute")

    # --- running load -----------------------------------------------------

    def run_load(self, name: str, jobs: list[dict], pids: dict | None = None) -> tuple[list[dict], dict, float]:
        """Runs the jobs (load generator processes) side by side; returns their results, the CPU
        split over the run and the time the last one ended (monotonic). `pids` replaces the
        processes whose CPU is counted (the floor's run counts the floor as the service)."""
        procs = []
        forks0 = self.redis_forks()
        self.redis_stalls_start()
        started = time.monotonic()
        with CpuMeter(pids or self.pids) as cpu:
            for i, job in enumerate(jobs):
                cmd = self.lg.command(job)
                tag = name if len(jobs) == 1 else f"{name}-{job.get('tag', i)}"
                (self.raw / f"{tag}.cmd").write_text(" ".join(cmd) + "\n")
                out = open(self.raw / f"{tag}.{'json' if self.lg.name == 'oha' else 'txt'}", "w+")
                err = open(self.raw / f"{tag}.stderr", "w+")
                proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
                RUNNING.append(proc)
                procs.append((tag, job, proc, out, err))
            results = []
            for tag, job, p, out, err in procs:
                rc = p.wait()
                RUNNING.remove(p)
                out.seek(0)
                err.seek(0)
                stdout, stderr = out.read(), err.read()
                out.close()
                err.close()
                if rc != 0:
                    raise BenchError(f"{self.lg.name} ({tag}) exited {rc}: {stderr.strip()[:500]}")
                res = self.lg.parse(stdout, job)
                res["tag"] = tag
                results.append(res)
            ended = time.monotonic()
        self.last_load = (started, ended)
        forks1 = self.redis_forks()
        cpu.result["redis_forks"] = (forks1 - forks0) if forks0 is not None and forks1 is not None else None
        cpu.result["redis_stalls"] = self.redis_stalls(self.raw / f"{name}.redis-stalls.json")
        return results, cpu.result, ended

    # --- scenarios --------------------------------------------------------

    def write_scenario(self, sid: str, title: str, path: str, jobs: list[dict], *, hot: bool,
                       expect_paths: dict[str, list[str]], extra: dict | None = None,
                       pair: dict | None = None, announce: bool = True, after_load=None) -> dict:
        """One write run: snapshot, load, drain, snapshot, checks, reconciliation.

        pair (quick runs): {"first": True} leaves the reconciliation to the next scenario;
        {"with": scen} reconciles once for that scenario and this one, checked in both.
        announce=False: the caller printed the progress line. after_load: called once the
        backlog has drained (or the drain limit passed), before the checks."""
        duration = max(j["duration"] for j in jobs)
        if announce:
            self.progress(title, duration)
        if self.backlog() != 0:
            self.wait_backlog(self.cfg["drain_limit"])
        if hot:
            self.reset_hot_stock()
        t0 = time.monotonic()
        before = self.snapshot()
        t_snap = time.monotonic() - t0
        load_avg = os.getloadavg()
        log_mark = self.service_log_size()
        results, cpu, ended = self.run_load(sid, jobs)
        drain, persist_cost = self.catch_up(self.cfg["drain_limit"])
        if persist_cost:
            self.note(f"the consumer caught up with {persist_cost['events']:,} events in "
                      f"{persist_cost['seconds']:.1f} s: {persist_cost['total']:.1f} µs of CPU per event "
                      f"(service {persist_cost['service']}, MariaDB {persist_cost['mariadb']}, "
                      f"Redis {persist_cost['redis']})")
        confirm_after = (time.monotonic() - ended) if drain is not None else None
        if after_load:
            after_load()
        if self.lg.name != "oha" and drain is not None:
            self.quiesce()
            drain = self.wait_backlog(self.cfg["drain_limit"])
        t1 = time.monotonic()
        after = self.snapshot()
        t2 = time.monotonic()
        recon = None if pair and pair.get("first") else self.reconcile()
        t_recon = time.monotonic() - t2
        t_snap += t2 - t1
        by_tag = {r["tag"]: r for r in results}
        main = results[0]
        scen = {
            "id": sid, "title": title, "path": path, "kind": sid.split("-")[0],
            "duration_s": duration, "load_avg_1m": round(load_avg[0], 2), "cpu_pct": cpu,
            **{k: main[k] for k in ("ok", "conflict", "errors", "statuses", "error_detail", "requests",
                                    "wall_s", "p50_ms", "p99_ms", "p999_ms", "max_ms", "ok_per_s",
                                    "req_per_s")},
            "confirm_after_s": (0.0 if path == "db" else confirm_after),
            "drained": drain is not None,
            "persist_cost_us": persist_cost,
            "timings_s": {"snapshots": round(t_snap, 2), "drain": round(drain, 2) if drain is not None else None,
                          "reconciliation": round(t_recon, 2) if recon else None},
            "jobs": [{k: j.get(k) for k in ("tag", "conns", "rate", "duration", "url")} for j in jobs],
        }
        if len(results) > 1:
            scen["parts"] = {r["tag"]: {k: r[k] for k in ("ok", "conflict", "errors", "statuses",
                                                             "error_detail", "p50_ms", "p99_ms", "p999_ms",
                                                             "ok_per_s", "wall_s")} for r in results}
            wall = max(r["wall_s"] for r in results)
            scen["total_ok"] = sum(r["ok"] for r in results)
            scen["total_ok_per_s"] = scen["total_ok"] / wall
            scen["total_conflict"] = sum(r["conflict"] for r in results)
            scen["total_errors"] = sum(r["errors"] for r in results)
        if extra:
            scen.update(extra)

        # Checks.
        checks = []
        slack = max((r.get("in_flight_slack", 0) for r in results), default=0)

        def check(name, ok, detail):
            checks.append({"check": name, "ok": bool(ok), "detail": detail})

        check("consumer caught up", drain is not None,
              f"every event stream was empty (all persisted) {confirm_after:.2f} s after the load ended"
              if drain is not None else f"backlog still {self.backlog()} after {self.cfg['drain_limit']} s")
        # A Redis-path reservation sent without an answer is answered 503 order-outcome-unknown
        # with its id (the service logs each one): it may have been placed. Such an order counts
        # as answered when MySQL holds it; every other order MySQL gained must have had a 2xx.
        unknown = self.unknown_outcomes(log_mark)
        placed_unknown = self.placed(unknown)
        scen["outcome_unknown"] = {"answered": len(unknown),
                                   "placed": sum(placed_unknown.values())}
        gained_total = 0
        for mysql_path, tags in expect_paths.items():
            answered = sum(by_tag[t]["ok"] for t in tags)
            placed = placed_unknown.get(mysql_path, 0)
            gained = after["orders"].get(mysql_path, 0) - before["orders"].get(mysql_path, 0)
            gained_total += gained
            expected = answered + placed
            ok = gained == expected if not slack else expected <= gained <= expected + slack
            detail = f"answered {answered:,}, MySQL gained {gained:,}"
            if unknown:
                detail += (f" ({len(unknown):,} answered 503 order-outcome-unknown, {placed:,} of them "
                           f"placed on this path)")
            check(f"{mysql_path} orders answered 2xx (or outcome unknown and placed) == MySQL orders gained",
                  ok, detail)
        all_gained = sum(after["orders"].values()) - sum(before["orders"].values())
        check("no other orders appeared", all_gained == gained_total,
              f"MySQL gained {all_gained:,} orders in all, {gained_total:,} on the paths under test")
        units_taken = before["on_hand"] - after["on_hand"]
        units_ordered = after["units_ordered"] - before["units_ordered"]
        check("units taken from stock == units ordered", units_taken == units_ordered,
              f"on_hand fell by {units_taken:,}; new order lines hold {units_ordered:,} units")
        if hot:
            taken = before["hot_on_hand"] - after["hot_on_hand"]
            answered = sum(r["ok"] for r in results)
            ok = taken == answered if not slack else answered <= taken <= answered + slack
            check(f"hot product: units taken at location {self.hot_loc} == orders accepted", ok,
                  f"on_hand({self.hot_loc},{HOT_PRODUCT}) {before['hot_on_hand']:,} -> "
                  f"{after['hot_on_hand']:,} (−{taken:,}); accepted {answered:,}")
            key = f"{self.prefix}{{L{self.hot_loc}}}:s:{HOT_PRODUCT}"
            rv = self.redis_cmd("GET", key)
            if rv:
                check("hot product: Redis key == MySQL on_hand", int(rv) == after["hot_on_hand"],
                      f"{key} = {int(rv):,}, MySQL {after['hot_on_hand']:,}")
        scen["checks"] = checks
        scen["before"], scen["after"] = before, after
        self.results["scenarios"].append(scen)
        if recon is not None:
            covered = ([pair["with"]] if pair and pair.get("with") else []) + [scen]
            for sc in covered:
                self.add_reconciliation(sc, recon, [c["title"] for c in covered if c is not sc])
        scen["passed"] = all(c["ok"] for c in checks)
        if not scen["passed"] and title not in self.failed:
            self.failed.append(title)
        ok_s = scen.get("total_ok_per_s", scen["ok_per_s"])
        self.note(f"{ok_s:,.0f} ok/s, p50 {fmt_ms(scen['p50_ms'])} ms, p99 {fmt_ms(scen['p99_ms'])} ms, "
                  f"p99.9 {fmt_ms(scen['p999_ms'])} ms, 409 {scen.get('total_conflict', scen['conflict']):,}, "
                  f"errors {scen.get('total_errors', scen['errors']):,}; invariants "
                  f"{'PASS' if scen['passed'] else 'FAILED'}"
                  + (f"; confirmed {confirm_after:.2f} s after the load" if path == "redis" and drain is not None else ""))
        for c in checks:
            if not c["ok"]:
                self.note(f"FAILED: {c['check']}: {c['detail']}")
        return scen

    def add_reconciliation(self, scen: dict, recon: dict, shared_with: list[str]):
        ok = bool(recon.get("ok") and recon.get("keysRepaired") == 0 and recon.get("ledgerMismatches") == 0)
        detail = (f"keysChecked {recon.get('keysChecked'):,}, keysRepaired {recon.get('keysRepaired')}, "
                  f"ledgerMismatches {recon.get('ledgerMismatches')}, ok {recon.get('ok')}, "
                  f"{recon.get('durationMs', 0) / 1000:.1f} s")
        if shared_with:
            detail += f" (one run after this scenario and {', '.join(shared_with)})"
        scen["checks"].append({"check": "reconciliation: no Redis key repaired, no ledger mismatch",
                               "ok": ok, "detail": detail})
        scen["reconciliation"] = {k: recon.get(k) for k in ("keysChecked", "keysRepaired",
                                                              "ledgerMismatches", "ok", "durationMs")}
        if recon.get("keysRepaired") or recon.get("ledgerMismatches"):
            scen["reconciliation"]["details"] = recon.get("details")
        scen["passed"] = all(c["ok"] for c in scen["checks"])
        if not scen["passed"] and scen["title"] not in self.failed:
            self.failed.append(scen["title"])

    def order_url(self, path: str) -> str:
        return f"{self.base}/api/orders" if path == "db" else f"{self.base}/api/redis/orders"

    def mysql_path(self, path: str) -> str:
        return "DB_LOCK" if path == "db" else "REDIS"

    def hot_body(self) -> str:
        return json.dumps({"items": [{"productId": HOT_PRODUCT, "quantity": 1}], "deliveryType": "NORMAL",
                           "deliveryAddress": {"latitude": CITY_HALL[0], "longitude": CITY_HALL[1]}},
                          separators=(",", ":"))

    def scenario_hot(self, path: str, conns: int, pair: dict | None = None):
        sid = f"hot{conns}-{path}"
        job = {"url": self.order_url(path), "method": "POST", "body": self.hot_body(), "conns": conns,
               "duration": self.cfg["hot"]}
        return self.write_scenario(
            sid, f"hot product, {self.path_name(path)}, {conns} connections", path, [job], hot=True,
            expect_paths={self.mysql_path(path): [sid]}, extra={"connections": conns}, pair=pair)

    def scenario_fixed(self, path: str, rate: int, pair: dict | None = None):
        sid = f"fixed-{path}"
        job = {"url": self.order_url(path), "method": "POST", "body": self.hot_body(), "conns": 256,
               "duration": self.cfg["fixed"], "rate": rate}
        return self.write_scenario(
            sid, f"fixed rate, {self.path_name(path)}, {rate:,} orders/s", path, [job], hot=True,
            expect_paths={self.mysql_path(path): [sid]}, extra={"rate": rate, "connections": 256},
            pair=pair)

    def scenario_spread(self, path: str, pair: dict | None = None):
        sid = f"spread-{path}"
        job = {"url": self.order_url(path), "method": "POST", "body_lines": self.raw / "spread-bodies.jsonl",
               "conns": 64, "duration": self.cfg["spread"]}
        return self.write_scenario(
            sid, f"spread over {self.max_product:,} products x {len(self.warehouses)} warehouses, "
            f"{self.path_name(path)}, 64 connections", path, [job], hot=False,
            expect_paths={self.mysql_path(path): [sid]}, extra={"connections": 64}, pair=pair)

    def scenario_store(self, path: str, pair: dict | None = None):
        sid = f"store-{path}"
        jobs = [{"tag": "online", "url": self.order_url(path), "method": "POST",
                 "body_lines": self.raw / "store-bodies.jsonl", "conns": 48, "duration": self.cfg["store"]}]
        for s in self.pos_stores:
            jobs.append({"tag": f"pos{s}", "url": f"{self.base}/api/stores/{s}/orders", "method": "POST",
                         "body_lines": self.raw / f"pos-{s}-bodies.jsonl",
                         "headers": [f"authorization: Bearer sfk_demo_{s}"], "conns": 2, "threads": 1,
                         "duration": self.cfg["store"]})
        pos_tags = [f"{sid}-pos{s}" for s in self.pos_stores]
        return self.write_scenario(
            sid, f"store level (SAME_DAY + PICKUP over {len(self.stores)} stores, {self.path_name(path)}, "
            f"48 connections; POS sales at {len(self.pos_stores)} stores beside it, 2 connections each)",
            path, jobs, hot=False,
            expect_paths={self.mysql_path(path): [f"{sid}-online"], "POS": pos_tags},
            extra={"connections": 48 + 2 * len(self.pos_stores)}, pair=pair)

    def list_url(self, source: str) -> str:
        """The product-list URL of `source` the read runs use. The query is built from the
        operation's parameters in the served spec (a page size of 20 under whichever name it has,
        page 0 when pages exist), so the runs follow a change from page/size to a cursor; the
        answer's body is never read, only its status."""
        if source in self.list_urls:
            return self.list_urls[source]
        path = "/api/redis/products" if source == "redis" else "/api/products"
        names: list[str] = []
        status, _, raw = self.http_full("GET", "/api/openapi.json", timeout=60)
        if status == 200:
            try:
                op = json.loads(raw)["paths"][path]["get"]
                names = [q["name"] for q in op.get("parameters", []) if q.get("in") == "query"]
            except (ValueError, KeyError, TypeError):
                names = []
        query = []
        size = next((n for n in ("size", "limit", "pageSize", "perPage", "first") if n in names), None)
        if size:
            query.append(f"{size}=20")
        if "page" in names:
            query.append("page=0")
        candidates = ["?" + "&".join(query)] if query else []
        candidates += ["?page=0&size=20", ""]
        tried = []
        for q in candidates:
            status, _, _ = self.http_full("GET", path + q, timeout=60)
            tried.append(f"{path}{q} → {status}")
            if status == 200:
                self.list_urls[source] = f"{self.base}{path}{q}"
                return self.list_urls[source]
        raise BenchError(f"no product-list URL answers 200: {'; '.join(tried)}")

    def read_run(self, sid: str, title: str, kind: str, source: str | None, what: str, job: dict,
                 extra: dict | None = None) -> dict:
        """One closed-loop read run; only statuses are judged (2xx, and 304 where the job allows
        it, are ok; anything else is an error)."""
        self.progress(title, job["duration"])
        load_avg = os.getloadavg()
        results, cpu, _ = self.run_load(sid, [job])
        r = results[0]
        scen = {"id": sid, "title": title, "path": {"mysql": "db", "redis": "redis"}.get(source, "none"),
                "source": source, "kind": kind, "what": what, "duration_s": job["duration"],
                "connections": job["conns"], "load_avg_1m": round(load_avg[0], 2), "cpu_pct": cpu,
                "url": job.get("url") or str(job.get("urls_file")),
                **{k: r[k] for k in ("ok", "not_modified", "conflict", "errors", "statuses", "error_detail",
                                     "requests", "wall_s", "p50_ms", "p99_ms", "p999_ms", "max_ms", "ok_per_s",
                                     "req_per_s", "bytes_per_answer")},
                "passed": r["errors"] == 0 and r["conflict"] == 0, "checks": []}
        if extra:
            scen.update(extra)
        if not scen["passed"]:
            self.failed.append(title)
        self.results["scenarios"].append(scen)
        nm = f", 304 {r['not_modified']:,}" if job.get("also_ok") else ""
        self.note(f"{r['ok_per_s']:,.0f} req/s, p50 {fmt_ms(r['p50_ms'])} ms, p99 {fmt_ms(r['p99_ms'])} ms, "
                  f"p99.9 {fmt_ms(r['p999_ms'])} ms{nm}, errors {r['errors']:,}")
        return scen

    def scenario_reads(self, source: str, what: str):
        name = "Redis" if source == "redis" else "MySQL"
        job = {"conns": 64, "duration": self.cfg["reads"]}
        if what == "list":
            job["url"] = self.list_url(source)
        else:
            job["urls_file"] = self.raw / f"detail-urls-{source}.txt"
        return self.read_run(f"reads-{what}-{source}", f"reads, product {what} from {name}, 64 connections",
                             f"reads-{what}", source, what, job)

    def scenario_reads_conditional(self, source: str, what: str):
        """The same read with `If-None-Match` carrying the ETag the endpoint gave just before;
        skipped (with a note) when it gives none. Detail reads use one product (an ETag belongs to
        one answer), product ETAG_PRODUCT, which no order of the bench touches."""
        name = "Redis" if source == "redis" else "MySQL"
        prefix = "/api/redis" if source == "redis" else "/api"
        url = self.list_url(source) if what == "list" else f"{self.base}{prefix}/products/{ETAG_PRODUCT}"
        title = f"reads, product {what} from {name} with If-None-Match, 64 connections"
        status, headers, _ = self.http_full("GET", url, timeout=60)
        etag = headers.get("etag")
        if status != 200 or not etag:
            self.step += 1
            why = f"HTTP {status}" if status != 200 else "no ETag header"
            msg = f"{title}: skipped, GET {urllib.parse.urlsplit(url).path} answered {why}"
            self.note(msg)
            self.results.setdefault("skipped", []).append(msg)
            return None
        # A repeat with the tag must answer 304; say so if it does not (the run still counts).
        again, _, _ = self.http_full("GET", url, headers={"if-none-match": etag}, timeout=60)
        job = {"conns": 64, "duration": self.cfg["reads"], "url": url,
               "headers": [f"if-none-match: {etag}"], "also_ok": ("304",)}
        scen = self.read_run(f"reads-{what}-inm-{source}", title, f"reads-{what}-inm", source,
                             f"{what}, If-None-Match", job, extra={"etag": etag, "probe_status": again})
        if again != 304:
            self.results["notes"].append(f"{title}: a GET with `If-None-Match: {etag}` answered {again}, not 304.")
        return scen

    def scenario_live(self):
        job = {"conns": 64, "duration": self.cfg["reads"], "url": f"{self.base}/health/live"}
        return self.read_run("reads-live", "reads, GET /health/live (no I/O), 64 connections", "reads-live",
                             None, "/health/live", job)

    # --- the floor: the least an order on the Redis path can cost ----------

    def start_floor(self) -> tuple[subprocess.Popen, str]:
        """Starts sf-floor on a free port against the bench's Redis; answers it and its URL."""
        err = open(self.raw / "sf-floor.stderr", "w")
        cmd = [self.a.floor_bin, "--host", "127.0.0.1", "--port", "0", "--redis-url", self.a.redis_url,
               "--key-prefix", FLOOR_PREFIX, "--location", str(self.hot_loc), "--product", str(HOT_PRODUCT)]
        (self.raw / "sf-floor.cmd").write_text(" ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        RUNNING.append(proc)
        line = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                break
        if "listening on " not in line:
            self.stop_floor(proc)
            tail = (self.raw / "sf-floor.stderr").read_text()[-500:]
            raise BenchError(f"sf-floor did not start (exit {proc.poll()}): {tail.strip()}")
        url = line.split("listening on ", 1)[1].strip()
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{url}/health/live", timeout=2) as r:
                    if r.status == 200:
                        return proc, url
            except OSError:
                pass
            time.sleep(0.1)
        self.stop_floor(proc)
        raise BenchError(f"sf-floor at {url} does not answer /health/live")

    def stop_floor(self, proc: subprocess.Popen):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in RUNNING:
            RUNNING.remove(proc)
        if proc.stdout:
            proc.stdout.close()

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every key under `prefix` (SCAN 10,000 at a time, then UNLINK in batches through
        one redis-cli); answers how many."""
        keys: set[str] = set()
        cursor = "0"
        while True:
            out = self.redis_cmd("SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", "10000").split()
            if not out:
                raise BenchError(f"SCAN {prefix}*: empty answer")
            cursor = out[0]
            keys.update(out[1:])
            if cursor == "0":
                break
        ordered = sorted(keys)
        batches = ["UNLINK " + " ".join(ordered[i:i + 500]) for i in range(0, len(ordered), 500)]
        if batches:
            cmd = [self.a.redis_cli, "--no-auth-warning", "-h", self.redis["host"], "-p", self.redis["port"],
                   "-n", self.redis["db"]] + (["-a", self.redis["password"]] if self.redis["password"] else [])
            p = subprocess.run(cmd, input="\n".join(batches) + "\n", capture_output=True, text=True,
                               timeout=600)
            if p.returncode != 0:
                raise BenchError(f"redis-cli UNLINK {prefix}*: {p.stderr.strip()}")
        return len(ordered)

    def scenario_floor(self):
        """The same load as the Redis hot-product run at 64 connections, against sf-floor."""
        secs = self.cfg["hot"]
        title = "floor: sf-floor (bare poem handler, one EVALSHA of reserve.lua per order), 64 connections"
        if not self.a.floor_bin:
            self.step += 1
            self.results["notes"].append("floor skipped: ops/bench passed no sf-floor binary")
            return None
        self.progress(title, secs)
        proc, url = self.start_floor()
        try:
            job = {"url": f"{url}/orders", "method": "POST", "body": self.hot_body(), "conns": 64,
                   "duration": secs}
            load_avg = os.getloadavg()
            results, cpu, _ = self.run_load("floor", [job], pids=dict(self.pids, service=proc.pid))
        finally:
            self.stop_floor(proc)
            # Every order left a record and an event nothing consumes: remove them, so the
            # stream and the records do not weigh on later scenarios (memory, AOF rewrites).
            removed = self.delete_prefix(FLOOR_PREFIX)
        r = results[0]
        scen = {"id": "floor", "kind": "floor", "title": title, "connections": 64, "duration_s": secs,
                "url": job["url"], "load_avg_1m": round(load_avg[0], 2), "cpu_pct": cpu, "keys_removed": removed,
                **{k: r[k] for k in ("ok", "conflict", "errors", "statuses", "error_detail", "requests", "wall_s",
                                     "p50_ms", "p99_ms", "p999_ms", "max_ms", "ok_per_s", "req_per_s")},
                "passed": r["errors"] == 0 and r["conflict"] == 0}
        self.results["floor"] = scen
        if not scen["passed"]:
            self.failed.append(title)
        self.note(f"{r['ok_per_s']:,.0f} orders/s, p50 {fmt_ms(r['p50_ms'])} ms, p99 {fmt_ms(r['p99_ms'])} ms, "
                  f"errors {r['errors']:,}, 409 {r['conflict']:,}; {removed:,} floor keys removed")
        return scen

    # --- memory soak --------------------------------------------------------

    def scenario_soak(self):
        """The Redis path at a fixed rate for a long time, the service's RSS sampled every
        RSS_EVERY_S before, during and after the load."""
        rate, secs = self.soak_rate, self.soak_seconds
        before, after = self.cfg["soak_before"], self.cfg["soak_after"]
        title = (f"memory soak, Redis path, {rate:,} orders/s for {secs:g} s (spread bodies), RSS every "
                 f"{RSS_EVERY_S:g} s from {before} s before to {after} s after")
        self.progress(title, before + secs + after)
        if self.backlog() != 0:
            self.wait_backlog(self.cfg["drain_limit"])
        sampler = RssSampler(self.a.service_pid, RSS_EVERY_S, self.note, secs)
        sampler.start()
        time.sleep(before)
        sampler.load_started()
        job = {"url": self.order_url("redis"), "method": "POST", "body_lines": self.raw / "spread-bodies.jsonl",
               "conns": 256, "duration": secs, "rate": rate}

        def settle():
            sampler.load_ended()
            end = self.last_load[1] if self.last_load else time.monotonic()
            time.sleep(max(0.0, end + after - time.monotonic()))
            sampler.stop()

        try:
            scen = self.write_scenario(
                "soak-redis", title, "redis", [job], hot=False, expect_paths={"REDIS": ["soak-redis"]},
                extra={"rate": rate, "connections": 256}, announce=False, after_load=settle)
        finally:
            sampler.stop()
        scen["rss"] = sampler.summary(self.last_load, after)
        rss = scen["rss"]
        slope = rss.get("last_third_slope_mib_per_min")
        self.note(f"RSS before {fmt_mib(rss.get('before_mib'))}, peak during {fmt_mib(rss.get('peak_mib'))}, "
                  f"end {fmt_mib(rss.get('end_mib'))}, {after} s after {fmt_mib(rss.get('after_mib'))} MiB; "
                  f"last third's slope " + ("n/a (too few samples)" if slope is None else f"{slope:+.2f} MiB/min"))
        return scen

    def scenario_ceiling(self):
        secs = self.cfg["ceiling"]
        self.progress(f"ceiling: redis-benchmark EVALSHA reserve.lua, 50 clients, pipeline 1", secs)
        script = (ROOT / "persistence" / "lua" / "reserve.lua").read_text()
        sha = self.redis_cmd("SCRIPT", "LOAD", script)
        loc = self.hot_loc
        # A real order JSON from the hot-product runs, so ARGV[2] has the service's size.
        order_json = None
        ids = self.sql(f"SELECT id FROM orders WHERE path = 'REDIS' AND location_id = {loc} "
                       "ORDER BY accepted_at DESC LIMIT 1")
        if ids:
            order_json = self.redis_cmd("HGET", f"{self.prefix}{{L{loc}}}:o:{ids[0][0]}", "j") or None
        if not order_json:
            order_json = json.dumps({"orderId": "x" * 40, "status": "ACCEPTED", "path": "REDIS",
                                     "items": [{"productId": 1, "quantity": 1, "unitPrice": 56000}],
                                     "fulfillmentLocationId": loc, "deliveryType": "NORMAL"})
        p = CEILING_PREFIX
        stock_key = f"{p}{{L{loc}}}:s:{HOT_PRODUCT}"
        self.redis_cmd("SET", stock_key, str(10**15))
        cmd_args = ["EVALSHA", sha, "3", f"{p}{{L{loc}}}:o:__rand_int__", f"{p}{{L{loc}}}:ev", stock_key,
                    "__rand_int__", order_json, f"{HOT_PRODUCT}:1", "1"]

        def bench(n: int) -> dict:
            cmd = ["redis-benchmark", "-h", self.redis["host"], "-p", self.redis["port"],
                   "--dbnum", self.redis["db"], "-c", "50", "-P", "1", "-r", "1000000000", "-n", str(n),
                   "--csv"] + (["-a", self.redis["password"]] if self.redis["password"] else []) + cmd_args
            t0 = time.monotonic()
            pr = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            wall = time.monotonic() - t0
            if pr.returncode != 0:
                raise BenchError(f"redis-benchmark failed: {pr.stderr.strip()[:300]}")
            # --csv: "test","rps","avg_latency_ms",...; the test name is the command itself, JSON
            # quotes unescaped, so the figures are read from the right.
            lines = pr.stdout.splitlines()
            header = next((ln for ln in lines if ln.startswith('"test"')), None)
            names = [h.strip('"') for h in header.split('","')] if header else ["test", "rps"]
            row = [ln for ln in lines if ln.startswith('"') and ln is not header][-1]
            vals = [v.strip('"') for v in row.rsplit('","', len(names) - 1)]
            out = {"requests": n, "wall_s": wall, "cmd": cmd}
            for name, v in zip(names[1:], vals[1:]):
                try:
                    out[name] = float(v)
                except ValueError:
                    pass
            if "rps" not in out:
                raise BenchError(f"cannot read redis-benchmark output: {pr.stdout[-300:]!r}")
            return out

        probe = bench(5_000)
        n = max(5_000, int(probe["rps"] * secs))
        with CpuMeter(self.pids) as cpu:
            res = bench(n)
        dup_estimate = n * n / (2 * 1e9)
        self.redis_cmd("UNLINK", stock_key, f"{p}{{L{loc}}}:ev")
        scen = {"id": "ceiling", "kind": "ceiling", "title": "ceiling", "rps": res["rps"], "requests": n,
                "wall_s": res["wall_s"], "p50_ms": res.get("p50_latency_ms"), "p99_ms": res.get("p99_latency_ms"),
                "cpu_pct": cpu.result, "order_json_bytes": len(order_json), "duplicate_ids_estimate": dup_estimate,
                "command": " ".join(res["cmd"][:-5] + ["<order JSON>"] + res["cmd"][-4:]).replace(sha, "<sha>"),
                "passed": True, "load_avg_1m": round(os.getloadavg()[0], 2)}
        self.results["ceiling"] = scen
        self.note(f"{res['rps']:,.0f} EVALSHA/s over {n:,} calls")

    @staticmethod
    def path_name(path: str) -> str:
        return "DB-lock path" if path == "db" else "Redis path"

    # --- the run ----------------------------------------------------------

    def wait_redis_loaded(self, limit_s: float = 600.0):
        """Waits until the service has loaded every location's stock into Redis from MySQL (its
        start-up warm-up, in the background: 500,000 keys on the bench data set); each location
        it finished has its epoch marker. Measuring before that would measure the load too."""
        keys = [f"{self.prefix}{{L{loc}}}:epoch" for loc, _, _ in self.warehouses + self.stores]
        t0 = time.monotonic()
        said = -1
        while True:
            try:
                done = int(self.redis_cmd("EXISTS", *keys))
            except (BenchError, ValueError):
                done = 0
            if done >= len(keys):
                self.note(f"Redis holds the stock of all {len(keys)} locations "
                          f"(the service's warm-up; waited {time.monotonic() - t0:.1f} s)")
                return
            if time.monotonic() - t0 > limit_s:
                raise BenchError(f"the service loaded the stock of only {done} of {len(keys)} locations "
                                 f"into Redis within {limit_s:.0f} s (see service.log)")
            if done != said and time.monotonic() - t0 > 2:
                self.note(f"waiting for the service to load stock into Redis: {done} of {len(keys)} locations")
                said = done
            time.sleep(0.5)

    def warm_up(self):
        """A second of each order path before measuring, after the service's start-up load of
        Redis: connection pools filled, hot keys loaded."""
        self.wait_redis_loaded()
        self.reset_hot_stock()
        for path in ("db", "redis"):
            job = {"url": self.order_url(path), "method": "POST", "body": self.hot_body(), "conns": 16,
                   "duration": 1}
            self.run_load(f"warmup-{path}", [job])
        self.wait_backlog(self.cfg["drain_limit"])

    def run(self) -> int:
        started = now_utc()
        self.results["meta"] = {"mode": self.mode, "started": started, "load_generator": self.lg.version}
        self.results["machine"] = machine_info(self.a, self.lg.version)
        can_fixed = self.lg.name == "oha"
        # hot x4, floor, fixed x2, spread x2, store x2, reads x4, conditional reads x4,
        # /health/live, soak, ceiling.
        self.total_steps = 4 + 1 + (2 if can_fixed else 0) + 2 + 2 + 4 + 4 + 1 + (1 if can_fixed else 0) + 1
        error = None
        try:
            self.load_world()
            self.note(f"hot product {HOT_PRODUCT}: NORMAL orders from Seoul City Hall go to warehouse "
                      f"{self.hot_loc} (nearest); its stock is set to {HOT_STOCK:,} before each hot run")
            self.warm_up()
            if self.a.fixed_only:
                # One scenario, for comparing a setting (REDIS_AOF_REWRITE_MIN_SIZE, say) with
                # itself changed: the Redis path at the asked rate, for the mode's duration.
                if not can_fixed:
                    raise BenchError("--fixed-only needs oha (wrk has no open-loop mode)")
                self.total_steps = 1
                self.scenario_fixed("redis", self.a.fixed_only)
                raise _FixedOnlyDone()
            # Quick runs reconcile once per pair of scenarios (the second one's reconciliation
            # covers both) to stay short; full runs reconcile after every write scenario.
            first = {"first": True} if self.quick else None

            def then(scen):
                return {"with": scen} if self.quick else None

            for path in ("db", "redis"):
                s1 = self.scenario_hot(path, 64, pair=first)
                self.scenario_hot(path, 256, pair=then(s1))
            # Right after the Redis hot-product runs, so both meet the same machine.
            self.scenario_floor()
            if can_fixed:
                s1 = self.scenario_fixed("redis", self.cfg["fixed_rate_redis"], pair=first)
                db64 = self.find("hot64-db")
                db_rate = max(50, int(0.8 * db64["ok_per_s"])) if db64 else 500
                self.scenario_fixed("db", db_rate, pair=then(s1))
            else:
                self.results["notes"].append("fixed-rate runs skipped: wrk has no open-loop mode")
            s1 = self.scenario_spread("db", pair=first)
            self.scenario_spread("redis", pair=then(s1))
            s1 = self.scenario_store("db", pair=first)
            self.scenario_store("redis", pair=then(s1))
            for source in ("mysql", "redis"):
                for what in ("list", "detail"):
                    self.scenario_reads(source, what)
            for source in ("mysql", "redis"):
                for what in ("list", "detail"):
                    self.scenario_reads_conditional(source, what)
            self.scenario_live()
            if can_fixed:
                self.scenario_soak()
            else:
                self.results["notes"].append("memory soak skipped: wrk has no open-loop (fixed-rate) mode")
            self.scenario_ceiling()
        except _FixedOnlyDone:
            pass
        except Exception as e:  # the report is written whatever happened
            import traceback
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

    def observe(self):
        """Plain-language notes on what stands out in the figures."""
        notes = self.results["notes"]
        for s in self.results["scenarios"]:
            if s.get("rate") and (s["ok_per_s"] < 0.95 * s["rate"] or (s["p99_ms"] or 0) >= 1000):
                notes.append(f"{s['title']}: the service did not keep up with the asked rate all along — "
                             f"{s['ok_per_s']:,.0f} orders/s answered over the run, p50 {fmt_ms(s['p50_ms'])} ms, "
                             f"p99 {fmt_ms(s['p99_ms'])} ms (latency-corrected: counted from when each request "
                             "was due, so the queue that built up is in the figures).")
            errs = s.get("total_errors", s.get("errors", 0))
            if errs:
                notes.append(f"{s['title']}: {errs:,} errors (see its table).")
            ca = s.get("confirm_after_s")
            forks = (s.get("cpu_pct") or {}).get("redis_forks")
            if forks:
                notes.append(f"{s['title']}: Redis forked {forks} time{'s' if forks > 1 else ''} in the background during the load "
                             "(automatic AOF rewrite, once the file has doubled since the last one and is past "
                             "`auto-aof-rewrite-min-size`; the child "
                             "competes for the same cores and disk, a likely cause of latency spikes).")
            stalls = (s.get("cpu_pct") or {}).get("redis_stalls") or {}
            events = stalls.get("latency_max_ms") or {}
            slow = stalls.get("slow_commands") or {}
            if events or slow:
                said = ", ".join(f"`{e}` up to {ms} ms" for e, ms in sorted(events.items(), key=lambda x: -x[1]))
                cmds = ", ".join(f"`{c}` ×{v['count']:,} (up to {v['max_ms']} ms)"
                                 for c, v in sorted(slow.items(), key=lambda x: -x[1]["max_ms"]))
                notes.append(f"{s['title']}: Redis's own record of its stalls during the load — "
                             f"latency monitor (events of 5 ms or more): {said or 'none'}; "
                             f"slow log (commands of 2 ms or more): {cmds or 'none'}.")
            if s.get("path") == "redis" and ca is not None and ca > 1.0:
                notes.append(f"{s['title']}: the consumer needed {ca:.2f} s after the load to persist every "
                             "accepted order (it was behind by that much while the load ran).")
        lm, lr = self.find("reads-list-mysql"), self.find("reads-list-redis")
        if lm and lr and lm.get("bytes_per_answer") and lr.get("bytes_per_answer") and \
                lr["bytes_per_answer"] > 3 * lm["bytes_per_answer"]:
            notes.append(f"The Redis product list answer is {lr['bytes_per_answer']:,} bytes against "
                         f"{lm['bytes_per_answer']:,} for the MySQL list, so the two list figures do not "
                         "compare like for like (the bench reads only the status of list answers).")
        soak = self.find("soak-redis")
        rss = (soak or {}).get("rss") or {}
        if rss.get("grows"):
            notes.append(f"{soak['title']}: the service's RSS still rose by "
                         f"{rss['last_third_slope_mib_per_min']:+.2f} MiB/min over the last third of the load "
                         f"(first third {rss.get('first_third_slope_mib_per_min') or 0:+.2f} MiB/min): memory "
                         "that grows without bound, or a run too short to level off (see rss.png).")

    def find(self, sid: str) -> dict | None:
        return next((s for s in self.results["scenarios"] if s["id"] == sid), None)

    def evaluate_targets(self):
        t = TARGETS
        out = self.results["targets"]
        ceiling = self.results.get("ceiling", {}).get("rps")
        floor = self.results.get("floor")

        def add(name, figure, ok, note=""):
            out.append({"target": name, "figure": figure, "result": "n/a" if ok is None else ("PASS" if ok else "MISS"),
                        "note": note})

        r256 = self.find("hot256-redis")
        r64 = self.find("hot64-redis")
        if r256:
            add(f"Redis hot product (256 connections) ≥ {t['redis_hot_min']:,} orders/s",
                f"{r256['ok_per_s']:,.0f} orders/s", r256["ok_per_s"] >= t["redis_hot_min"])
            if ceiling:
                frac = r256["ok_per_s"] / ceiling
                self.results["ceiling"]["fraction_redis_hot256"] = frac
                add(f"Redis hot product ≥ {t['redis_hot_ceiling_fraction']:.0%} of the ceiling",
                    f"{frac:.1%} of {ceiling:,.0f}/s", frac >= t["redis_hot_ceiling_fraction"])
        if r64 and floor and floor.get("ok_per_s"):
            frac = r64["ok_per_s"] / floor["ok_per_s"]
            floor["fraction_redis_hot64"] = frac
            add(f"Redis hot product (64 connections) ≥ {t['redis_hot_floor_fraction']:.0%} of the floor "
                "(sf-floor, 64 connections)",
                f"{frac:.1%} ({r64['ok_per_s']:,.0f} of {floor['ok_per_s']:,.0f} orders/s)",
                frac >= t["redis_hot_floor_fraction"], persist_note(floor_split(floor, r64)))
        fr = self.find("fixed-redis")
        if fr:
            rate = fr["rate"]
            label = f"at {rate:,}/s" + (f" (the target is at {t['redis_fixed_rate']:,}/s)" if rate != t["redis_fixed_rate"] else "")
            cap = fixed_capacity(floor, fr.get("persist_cost_us") or (r64 or {}).get("persist_cost_us"), fr,
                                 self.results["machine"].get("nproc"))
            if cap:
                fr["capacity"] = cap
            add(f"Redis fixed rate p99 ≤ {t['redis_fixed_p99_ms']:g} ms {label}",
                f"p99 {fmt_ms(fr['p99_ms'])} ms (p50 {fmt_ms(fr['p50_ms'])} ms)",
                fr["p99_ms"] is not None and fr["p99_ms"] <= t["redis_fixed_p99_ms"], capacity_note(cap))
            add(f"Redis fixed rate p99.9 ≤ {t['redis_fixed_p999_ms']:g} ms {label}", f"p99.9 {fmt_ms(fr['p999_ms'])} ms",
                fr["p999_ms"] is not None and fr["p999_ms"] <= t["redis_fixed_p999_ms"])
            add(f"Redis fixed rate: no errors {label}", f"{fr['errors']:,} errors, {fr['conflict']:,} × 409",
                fr["errors"] == 0 and fr["conflict"] == 0)
            ca = fr["confirm_after_s"]
            add(f"Redis fixed rate: all CONFIRMED within {t['redis_fixed_confirm_s']:g} s of the load's end {label}",
                "never (backlog did not drain)" if ca is None else f"{ca:.2f} s",
                ca is not None and ca <= t["redis_fixed_confirm_s"])
        d64, d256 = self.find("hot64-db"), self.find("hot256-db")
        dbs = [s for s in (d64, d256) if s]
        if dbs:
            best = max(dbs, key=lambda s: s["ok_per_s"])
            errs = sum(s["errors"] for s in dbs)
            add(f"DB-lock hot product ≥ {t['db_hot_min']:,} orders/s, no errors but out-of-stock",
                f"{best['ok_per_s']:,.0f} orders/s ({best['connections']} connections); {errs:,} errors",
                best["ok_per_s"] >= t["db_hot_min"] and errs == 0)
        rs = [s for s in (r64, r256) if s]
        if rs and dbs:
            rb = max(s["ok_per_s"] for s in rs)
            db = max(s["ok_per_s"] for s in dbs)
            ratio = rb / db if db else float("inf")
            add("Redis over DB-lock (hot product, best of 64/256 connections each; a figure, not a target)",
                f"{ratio:.1f}× ({rb:,.0f} vs {db:,.0f} orders/s)", None)
        lr, lm = self.find("reads-list-redis"), self.find("reads-list-mysql")
        if lr:
            add(f"Redis product list ≥ {t['redis_list_min']:,} req/s", f"{lr['ok_per_s']:,.0f} req/s",
                lr["ok_per_s"] >= t["redis_list_min"])
        if lm:
            add(f"MySQL product list ≥ {t['mysql_list_min']:,} req/s", f"{lm['ok_per_s']:,.0f} req/s",
                lm["ok_per_s"] >= t["mysql_list_min"])
        live = self.find("reads-live")
        if live and live["ok_per_s"]:
            for source, name in (("redis", "Redis"), ("mysql", "MySQL")):
                d = self.find(f"reads-detail-{source}")
                if d:
                    frac = d["ok_per_s"] / live["ok_per_s"]
                    d["fraction_of_live"] = frac
                    add(f"{name} product detail ≥ {t['detail_over_live']:.0%} of `GET /health/live`",
                        f"{frac:.1%} ({d['ok_per_s']:,.0f} of {live['ok_per_s']:,.0f} req/s)",
                        frac >= t["detail_over_live"])
        soak = self.find("soak-redis")
        if soak and soak.get("rss"):
            rss = soak["rss"]
            sl = rss.get("last_third_slope_mib_per_min")
            add(f"Memory soak: service RSS levels off (last third's slope ≤ {t['soak_rss_slope_mib_per_min']:g} MiB/min)",
                "too few samples for a slope" if sl is None else
                f"{sl:+.2f} MiB/min; {fmt_mib(rss.get('before_mib'))} → peak {fmt_mib(rss.get('peak_mib'))} MiB",
                None if sl is None else not rss.get("grows"))


# ---------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------


class _FixedOnlyDone(Exception):
    """The one scenario of --fixed-only has run."""


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def first_line(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return ((p.stdout or p.stderr).strip().splitlines() or [""])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine_info(a, loadgen_version: str) -> dict:
    cpu_model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    nproc = first_line(["nproc"])
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "nproc": nproc, "cpu_model": cpu_model, "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "kernel": platform.release(), "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "mariadb": first_line([a.mariadbd, "--version"]).split("Ver", 1)[-1].strip(),
        "redis": first_line([a.redis_server, "--version"]),
        "redis_benchmark": first_line(["redis-benchmark", "--version"]),
        "load_generator": loadgen_version, "python": platform.python_version(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()], "uptime_start": uptime(),
    }


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

SCENARIO_ROWS = [
    ("hot64", "hot product, 64 conn.", "hot 64"), ("hot256", "hot product, 256 conn.", "hot 256"),
    ("fixed", "fixed rate", "fixed rate"), ("spread", "spread", "spread"),
    ("store", "store level (all)", "store online"), ("soak", "memory soak", "soak"),
    ("reads-list", "reads: list", "list"), ("reads-detail", "reads: detail", "detail"),
    ("reads-list-inm", "reads: list, If-None-Match", "list INM"),
    ("reads-detail-inm", "reads: detail, If-None-Match", "detail INM"),
]


def scen_key(s: dict) -> str:
    return s["id"].rsplit("-", 1)[0] if s["kind"] != "ceiling" else "ceiling"


def charts(bench: Bench) -> list[tuple[str, str]]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # the report is still written, without charts
        bench.results["notes"].append(f"charts skipped: {e}")
        return []
    made = []
    scen = {s["id"]: s for s in bench.results["scenarios"]}
    rows = [(k, label, short) for k, label, short in SCENARIO_ROWS
            if any(f"{k}-{p}" in scen for p in ("db", "redis", "mysql"))]
    colours = {"db": "#c0504d", "redis": "#2e75b6"}
    names = {"db": "DB-lock / MySQL", "redis": "Redis"}

    def get(k, path):
        if k.startswith("reads"):
            return scen.get(f"{k}-{'mysql' if path == 'db' else 'redis'}")
        return scen.get(f"{k}-{path}")

    # Throughput.
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.38
    for i, path in enumerate(("db", "redis")):
        xs, ys = [], []
        for j, (k, _, _) in enumerate(rows):
            s = get(k, path)
            if s:
                xs.append(j + (i - 0.5) * width)
                ys.append(s.get("total_ok_per_s", s["ok_per_s"]))
        bars = ax.bar(xs, ys, width, label=names[path], color=colours[path])
        for b, y in zip(bars, ys):
            ax.annotate(f"{y:,.0f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=8)
    ceiling = bench.results.get("ceiling", {}).get("rps")
    floor = bench.results.get("floor", {}).get("ok_per_s")
    live = (scen.get("reads-live") or {}).get("ok_per_s")
    ax.set_yscale("log")
    lines = [(ceiling, "--", "#555", f"ceiling: reserve.lua in redis-benchmark, {ceiling or 0:,.0f}/s"),
             (floor, "-.", "#2e7d32", f"floor: sf-floor, reserve.lua behind a bare poem handler, 64 conn., "
                                      f"{floor or 0:,.0f}/s"),
             (live, ":", "#8e6c00", f"GET /health/live, 64 conn., {live or 0:,.0f}/s")]
    top = 0
    for y, style, colour, label in lines:
        if y:
            ax.axhline(y, color=colour, linestyle=style, linewidth=1)
            ax.annotate(label, (-0.5, y), ha="left", va="bottom", fontsize=8, color=colour)
            top = max(top, y)
    if top:
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, max(hi, top * 3))
    ax.set_xticks(range(len(rows)), [label for _, label, _ in rows], rotation=15)
    ax.set_ylabel("successful requests per second (log scale)")
    ax.set_title(f"Stock Flow throughput per scenario and path ({bench.mode} run)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(bench.out / "throughput.png", dpi=110)
    plt.close(fig)
    made.append(("throughput.png", "Throughput per scenario and path"))

    # Latency percentiles.
    groups = []
    for k, _, short in rows:
        for path in ("db", "redis"):
            s = get(k, path)
            if s:
                who = "Redis" if path == "redis" else ("MySQL" if k.startswith("reads") else "DB-lock")
                groups.append((f"{short}\n{who}", s, path))
    fig, ax = plt.subplots(figsize=(max(11, len(groups) * 0.9), 6))
    pcts = [("p50_ms", "p50", 0.45), ("p99_ms", "p99", 0.7), ("p999_ms", "p99.9", 1.0)]
    w = 0.26
    for i, (key, lab, alpha) in enumerate(pcts):
        xs = [j + (i - 1) * w for j in range(len(groups))]
        ys = [max(g[1].get(key) or 0, 0.001) for g in groups]
        cs = [colours[g[2]] for g in groups]
        ax.bar(xs, ys, w, color=cs, alpha=alpha, label=lab, edgecolor="black", linewidth=0.3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title("Latency percentiles per scenario and path (red: DB-lock / MySQL, blue: Redis)")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(facecolor="grey", alpha=a, label=l) for _, l, a in pcts], loc="lower center",
              bbox_to_anchor=(0.5, 1.06), ncol=3, frameon=False)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 1.5)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(bench.out / "latency.png", dpi=110)
    plt.close(fig)
    made.append(("latency.png", "Latency percentiles per scenario and path"))

    # The service's memory during the soak.
    soak = scen.get("soak-redis")
    rss = (soak or {}).get("rss") or {}
    if rss.get("samples") and rss.get("load_start_s") is not None:
        fig, ax = plt.subplots(figsize=(11, 4.5))
        xs = [t for t, _ in rss["samples"]]
        ys = [v for _, v in rss["samples"]]
        ax.plot(xs, ys, color="#2e75b6", marker="o", markersize=2.5, linewidth=1.2, label="service RSS")
        ax.axvspan(rss["load_start_s"], rss["load_end_s"], color="#2e75b6", alpha=0.08,
                   label=f"load: {soak.get('rate', 0):,} orders/s on the Redis path")
        ax.set_xlabel("seconds since the first sample")
        ax.set_ylabel("VmRSS, MiB")
        sl = rss.get("last_third_slope_mib_per_min")
        ax.set_title("Service memory during the soak" +
                     (f" (last third of the load: {sl:+.2f} MiB/min)" if sl is not None else ""))
        lo, hi = ax.get_ylim()
        ax.set_ylim(0, hi * 1.1)
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(bench.out / "rss.png", dpi=110)
        plt.close(fig)
        made.append(("rss.png", "Service RSS during the memory soak"))
    return made


def confirm_cell(s: dict) -> str:
    if s["path"] == "db":
        return "0 (sync)"
    ca = s.get("confirm_after_s")
    return "never" if ca is None else f"{ca:.2f} s"


def cpu_cell(c: dict | None) -> str:
    if not c:
        return "–"

    def f(k):
        v = c.get(k)
        return "–" if v is None else f"{v:.0f}"

    return (f"{f('machine')} (svc {f('service')}, db {f('mariadb')}, redis {f('redis')}, "
            f"load {f('loadgen')}, other {f('other')})")


def write_report(bench: Bench):
    r = bench.results
    made = charts(bench)
    (bench.out / "report.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    m = r["machine"]
    scen = {s["id"]: s for s in r["scenarios"]}
    L = []
    w = L.append
    w(f"# Stock Flow benchmark ({bench.mode} run)")
    w("")
    el = r["meta"].get("elapsed_s") or 0
    w(f"Scenarios started {r['meta']['started']}, finished {r['meta']['finished']}; {el // 60} min {el % 60} s "
      f"since `ops/bench` started (build and set-up included). Commit {m['commit']}.")
    w("")
    writes = [s for s in r["scenarios"] if not s["kind"].startswith("reads")]
    if bench.failed:
        w(f"**Result: FAILED** — {len(bench.failed)} scenario(s) broke an invariant or the run broke off:")
        w("")
        for f in bench.failed:
            w(f"- {f}")
    else:
        w(f"**Result: every invariant check passed** ({len(writes)} write scenarios verified).")
    w("")
    tp = sum(1 for t in r["targets"] if t["result"] == "PASS")
    tm = sum(1 for t in r["targets"] if t["result"] == "MISS")
    w(f"Targets: {tp} PASS, {tm} MISS (see [Targets](#targets)).")
    if r["meta"].get("error"):
        w("")
        w(f"The run broke off: `{r['meta']['error']}`")
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {m['cpu_model']}, `nproc` = {m['nproc']} |")
    w(f"| Memory | {m['memory_gib']} GiB |")
    w(f"| OS, kernel | {m['os']}, {m['kernel']} |")
    w(f"| MariaDB | {m['mariadb']} (private, `innodb_flush_log_at_trx_commit=1`, 512 MB buffer pool) |")
    w(f"| Redis | {m['redis']} (private, `appendonly yes`, `appendfsync always`, "
      f"`auto-aof-rewrite-min-size {os.environ.get('REDIS_AOF_REWRITE_MIN_SIZE', '4gb')}`, "
      f"`hz {os.environ.get('REDIS_HZ', '100')}`) |")
    w(f"| Load generator | {m['load_generator']}; {m['redis_benchmark']} for the ceiling; sf-floor for the floor |")
    w(f"| Load at start (`uptime`) | {m['uptime_start']} |")
    w(f"| Load at end (`uptime`) | {m.get('uptime_end', '')} |")
    w("")
    w("Everything — service, MariaDB, Redis and the load generator — shares these cores, and other work "
      "on the machine (e.g. a compiler) competes with it: the *CPU %* columns below show, per run, how "
      f"busy the whole machine was (100% = one core, {m['nproc']} cores = {int(m['nproc']) * 100 if str(m['nproc']).isdigit() else '?'}%) and "
      "how that split between the service (svc), MariaDB (db), Redis, the load generator (load) and "
      "anything else (other). A large *other* share means the figures are lower than the machine can do.")
    w("")
    w("## Method")
    w("")
    world = r.get("world", {})
    w(f"- Fresh private MariaDB and Redis under `.data/bench/` (wiped at start), seeded with "
      f"`stock-flow seed --profile bench`: {world.get('warehouses')} warehouses, {world.get('stores')} stores, "
      f"{world.get('products', 0):,} products, 500,000 stock rows. The service runs from the release build "
      "with `RUST_LOG=warn` and its default pool sizes; its scheduled reconciliation is moved out of the "
      "way (the bench runs one itself after every write scenario).")
    w(f"- Load generator: **{bench.lg.name}**. " + (
        "oha was chosen because it does open-loop fixed-rate load (`-q`) with latency correction "
        "(`--latency-correction`: latency counted from when each request was due, so a stalled server "
        "cannot hide its queue — no coordinated omission), writes JSON with status-code counts "
        "(`--output-format json`), picks a random body line per request (`-Z FILE`) or a random URL "
        "(`--urls-from-file`), and installs from crates.io with `cargo install oha --locked`. Every run "
        "uses `--no-tui` and `-w` (wait for requests in flight at the deadline, so each order the "
        "service decided is counted)." if bench.lg.name == "oha" else
        "oha was not available (it could not be built, or `SF_BENCH_LOADGEN=wrk` asked for wrk), so Debian's wrk runs with a Lua script (random body per request, "
        "status counts). wrk has no fixed-rate mode, so the fixed-rate scenario is skipped, and wrk drops "
        "requests in flight at the end: the count checks allow up to one extra order per connection."))
    w(f"- Hot product: every order is 1 unit of product {HOT_PRODUCT}, `NORMAL` from Seoul City Hall "
      f"({CITY_HALL[0]}, {CITY_HALL[1]}). The service sends it to the nearest warehouse with stock: "
      f"location **{world.get('hot_location')}** (distances from City Hall in km: "
      f"{', '.join(f'{k}: {v}' for k, v in (world.get('warehouse_distance_km') or {}).items())}). Before every "
      f"hot and fixed-rate run its stock there is set to {HOT_STOCK:,} with the admin "
      "`PUT /api/admin/locations/{loc}/products/{p}/stock` (reason RESTOCK), so neither path runs out.")
    w(f"- Closed loop: each connection sends its next request when the previous answer arrives, for "
      f"{bench.cfg['hot']} s (hot product, floor), {bench.cfg['spread']} s (spread, store level), "
      f"{bench.cfg['reads']} s (reads). Fixed rate: open loop for {bench.cfg['fixed']} s, Redis at "
      f"{bench.cfg['fixed_rate_redis']:,} orders/s, DB-lock at 80% of its own 64-connection hot-product "
      "throughput (the rate it should sustain), 256 connections available to the load generator. The "
      "Redis run's p50, p99 and p99.9 are latency-corrected (counted from when each request was due), and "
      "*confirmed after* is the time from the load's end until every accepted order was CONFIRMED in MySQL; "
      f"targets at 10,000 orders/s: p99 ≤ {TARGETS['redis_fixed_p99_ms']:g} ms, p99.9 ≤ "
      f"{TARGETS['redis_fixed_p999_ms']:g} ms, confirmed within {TARGETS['redis_fixed_confirm_s']:g} s.")
    w(f"- Floor: `sf-floor` (`bench/floor`, built with the service, not shipped) is the least an order on the "
      "Redis path can cost: one bare poem handler, `POST /orders`, parses the same JSON body, draws a uuid-v7 "
      "order id and runs the service's own `reserve.lua` once (`EVALSHA`, keys and arguments built by the "
      "service's own `Reserve` wrapper) through a Redis pool built by the service's own `RedisSettings` "
      "(bb8, multiplexed self-healing connections, the command deadline), on one stock key holding 10^15 "
      f"units, under the key prefix `{FLOOR_PREFIX}` apart from the service's; it answers 202 with the "
      "order's JSON. It runs right after the Redis hot-product runs with the same load (hot-product body, "
      f"64 connections, {bench.cfg['hot']} s); its keys (an order record per order and an event stream "
      "nothing consumes) are deleted afterwards. The service's 64-connection Redis hot-product throughput "
      f"is given as a share of it (target ≥ {TARGETS['redis_hot_floor_fraction']:.0%}): what the service adds "
      "on top — routing, idempotency, the circuit, OpenAPI validation, metrics, the consumer writing every "
      "order to MySQL on the same cores — is the rest.")
    w(f"- Memory soak: the Redis path at {bench.soak_rate:,} orders/s (open loop, 256 connections, the spread "
      f"bodies) for {bench.soak_seconds:g} s; the service's RSS (`VmRSS` of `/proc/<pid>/status`) is sampled "
      f"every {RSS_EVERY_S:g} s from {bench.cfg['soak_before']} s before the load to {bench.cfg['soak_after']} s "
      "after it. The report gives RSS before, peak during, at the end and after, and the least-squares "
      "slope over the last third of the load: above "
      f"{TARGETS['soak_rss_slope_mib_per_min']:g} MiB/min it is flagged as growth without bound. The "
      "invariant checks run after it as after every write scenario.")
    w("- Spread: a random line of 50,000 prepared bodies per request: a random product of "
      f"{world.get('products', 0):,}, `NORMAL` from an address ~1 km from a random warehouse (so the "
      "orders spread over all 5 warehouses).")
    w("- Store level: online orders on the path under test (48 connections; a random line of 50,000 bodies: "
      "half `SAME_DAY` from an address within ~3 km of a random store, half `PICKUP` at a random store, "
      "random product — stores hold 0–40 units of each product, so some answers are 409) and, at the same "
      f"time, POS sales (`POST /api/stores/{{id}}/orders`, the store's demo key) at {len(getattr(bench, 'pos_stores', []))} "
      "stores spread over the list, one load-generator process per store (a key belongs to one store, so a "
      "process cannot vary the store), 2 connections each, random product. POS sales always take the "
      "MySQL-first path.")
    lu = urllib.parse.urlsplit(bench.list_urls.get("mysql", "/api/products?page=0&size=20"))
    w("- Reads (64 connections, only the status of each answer is judged): the product list "
      f"(`{lu.path}{'?' + lu.query if lu.query else ''}` and the same under `/api/redis/`; the query is built from the list operation's parameters in "
      "`/api/openapi.json`, a page of 20) and the product detail (`/api/products/{id}`, "
      "`/api/redis/products/{id}`, a random product id of 10,000 per request). Then the same four with "
      "`If-None-Match` carrying the ETag the endpoint answered just before (detail: product "
      f"{ETAG_PRODUCT}, which no order touches; an endpoint without an ETag is skipped with a note); a 304 "
      "counts as a success and is counted apart. Last `GET /health/live`, the endpoint that does no I/O, "
      "which the detail pages are compared with. Targets: Redis list ≥ "
      f"{TARGETS['redis_list_min']:,} req/s, MySQL list ≥ {TARGETS['mysql_list_min']:,} req/s, detail ≥ "
      f"{TARGETS['detail_over_live']:.0%} of `/health/live`.")
    w("- Errors: any answer other than 2xx and 409 (and 304 in the `If-None-Match` runs), and any connection "
      "error. 409 (out of stock) is counted apart. Throughput is successful (2xx, or 304 where asked for) "
      "answers per second of the run.")
    w("- After every write scenario the bench waits until every location's event stream in Redis is "
      "empty (the consumer deletes an event once MySQL holds it; the lengths are summed by one `EVAL` every "
      "50 ms, not read from the service's `consumer_backlog_events` gauge, which is refreshed every 2 s; "
      "the time from the load's end to that point is *confirmed after*: when the last "
      "Redis-path order became CONFIRMED — 0 by definition on the DB-lock path), then checks: orders "
      "answered 2xx == orders MySQL gained (per path, `orders` table; an order answered 503 "
      "`order-outcome-unknown` — a reservation Redis did not answer in time, which the service logs with its "
      "id — counts as answered when MySQL holds it); units taken from `stock.on_hand` == "
      "units in the new `order_lines`; for the hot product, units taken at its location == orders accepted "
      "and its Redis key == MySQL; and `POST /api/admin/reconciliation/runs` answers `keysRepaired == 0` "
      "and `ledgerMismatches == 0`" + (
          ". A reconciliation takes several seconds over 500,000 rows, so this quick run makes one per pair "
          "of scenarios (after the second; it covers both, and both are marked by it)." if bench.quick else
          " (one reconciliation after every write scenario)."))
    w("")

    w("## Targets")
    w("")
    w("| target | figure | result |")
    w("|---|---|---|")
    for t in r["targets"]:
        w(f"| {t['target']} | {t['figure']} | **{t['result']}** |")
    w("")
    for t in r["targets"]:
        if t.get("note"):
            w(f"- {t['target']}: {t['note']}.")
    if any(t.get("note") for t in r["targets"]):
        w("")

    def scen_table(title, ids, extra_cols=()):
        rows = [scen[i] for i in ids if i in scen]
        if not rows:
            return
        w(f"## {title}")
        w("")
        head = ["path", "conn.", "ok/s", "ok", "409", "errors", "p50 ms", "p99 ms", "p99.9 ms"]
        head += [c[0] for c in extra_cols] + ["CPU % (machine)", "invariants"]
        w("| " + " | ".join(head) + " |")
        w("|" + "---|" * len(head))
        for s in rows:
            name = {"db": "DB-lock" if not s["kind"].startswith("reads") else "MySQL", "redis": "Redis"}[s["path"]]
            cells = [name, str(s.get("connections", "")), fmt_int(s["ok_per_s"]), fmt_int(s["ok"]),
                     fmt_int(s["conflict"]), fmt_int(s["errors"]), fmt_ms(s["p50_ms"]), fmt_ms(s["p99_ms"]),
                     fmt_ms(s["p999_ms"])]
            cells += [c[1](s) for c in extra_cols]
            cells += [cpu_cell(s.get("cpu_pct")),
                      "–" if s["kind"].startswith("reads") else ("PASS" if s["passed"] else "**FAILED**")]
            w("| " + " | ".join(cells) + " |")
        w("")
        for s in rows:
            if s.get("error_detail"):
                w(f"- {s['title']}: errors " + ", ".join(f"`{k}` × {v:,}" for k, v in s["error_detail"].items()))
        if any(s.get("error_detail") for s in rows):
            w("")

    scen_table("Hot product", ["hot64-db", "hot256-db", "hot64-redis", "hot256-redis"],
               [("confirmed after", confirm_cell)])
    fl = r.get("floor")
    if fl:
        w("## Floor: the reservation behind a bare HTTP handler")
        w("")
        w(f"`sf-floor` under the Redis hot-product load ({fl['connections']} connections, {fl['duration_s']} s): "
          "parse the body, a uuid-v7 order id, one `EVALSHA` of `reserve.lua` through the service's own Redis "
          f"pool, 202. {fl.get('keys_removed', 0):,} floor keys were deleted after the run.")
        w("")
        w("| | conn. | ok/s | ok | 409 | errors | p50 ms | p99 ms | p99.9 ms | CPU % (machine; svc = sf-floor) |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        w(f"| floor | {fl['connections']} | {fmt_int(fl['ok_per_s'])} | {fmt_int(fl['ok'])} | {fmt_int(fl['conflict'])} | "
          f"{fmt_int(fl['errors'])} | {fmt_ms(fl['p50_ms'])} | {fmt_ms(fl['p99_ms'])} | {fmt_ms(fl['p999_ms'])} | "
          f"{cpu_cell(fl.get('cpu_pct'))} |")
        h64 = scen.get("hot64-redis")
        if h64:
            w(f"| Redis path, hot product | 64 | {fmt_int(h64['ok_per_s'])} | {fmt_int(h64['ok'])} | "
              f"{fmt_int(h64['conflict'])} | {fmt_int(h64['errors'])} | {fmt_ms(h64['p50_ms'])} | "
              f"{fmt_ms(h64['p99_ms'])} | {fmt_ms(h64['p999_ms'])} | {cpu_cell(h64.get('cpu_pct'))} |")
        w("")
        frac = fl.get("fraction_redis_hot64")
        if frac is not None:
            w(f"The service reaches **{frac:.1%}** of the floor (target ≥ "
              f"{TARGETS['redis_hot_floor_fraction']:.0%}: {'met' if frac >= TARGETS['redis_hot_floor_fraction'] else 'missed'}).")
            w("")
        split = floor_split(fl, h64)
        if split:
            w("**CPU per order** (each process's CPU time during the load ÷ orders answered; *persisting* "
              "is the CPU the service, MariaDB and Redis took after the load, while the consumer caught up, "
              f"÷ the {fmt_int(split['events'])} events it held when the load ended):")
            w("")
            w("| µs per order | service (or sf-floor) | MariaDB | Redis | load generator | machine |")
            w("|---|---|---|---|---|---|")
            for name, row in (("floor", split["floor"]), ("Redis path, hot product", split["service"]),
                              ("persisting one order (catch-up)", split["persist"])):
                w(f"| {name} | " + " | ".join("–" if row.get(k) is None else f"{row[k]:.1f}"
                                              for k in ("service", "mariadb", "redis", "loadgen", "machine")) + " |")
            w("")
            w(f"50% of the floor means at most {split['budget']:.1f} µs of the machine per order (twice the "
              f"floor's {split['floor']['machine']:.1f}). Persisting one order to MySQL, which the floor does not "
              f"do, took {split['persist']['total']:.1f} µs of it ({split['persist_share']:.0%} of the floor's "
              f"whole order). That leaves {split['left']:.1f} µs for taking the order, and the floor, which does "
              f"the least any order can, takes {split['floor']['machine']:.1f} µs.")
            w("")
        if fl.get("error_detail"):
            w("Floor errors: " + ", ".join(f"`{k}` × {v:,}" for k, v in fl["error_detail"].items()))
            w("")

    scen_table("Fixed rate (open loop, latency-corrected)", ["fixed-redis", "fixed-db"],
               [("rate asked", lambda s: fmt_int(s.get("rate"))),
                ("confirmed after", confirm_cell)])
    fr = scen.get("fixed-redis")
    if fr:
        def verdict(ok):
            return "met" if ok else "**missed**"
        ca = fr.get("confirm_after_s")
        w(f"Redis at {fr['rate']:,} orders/s" + (" (quick run; the targets are set at 10,000/s)"
                                                 if fr["rate"] != TARGETS["redis_fixed_rate"] else "") + ": "
          f"p50 {fmt_ms(fr['p50_ms'])} ms; p99 {fmt_ms(fr['p99_ms'])} ms (target ≤ {TARGETS['redis_fixed_p99_ms']:g} ms, "
          f"{verdict(fr['p99_ms'] is not None and fr['p99_ms'] <= TARGETS['redis_fixed_p99_ms'])}); "
          f"p99.9 {fmt_ms(fr['p999_ms'])} ms (target ≤ {TARGETS['redis_fixed_p999_ms']:g} ms, "
          f"{verdict(fr['p999_ms'] is not None and fr['p999_ms'] <= TARGETS['redis_fixed_p999_ms'])}); every order "
          f"CONFIRMED {'never (the backlog did not drain)' if ca is None else f'{ca:.2f} s'} after the load "
          f"(target ≤ {TARGETS['redis_fixed_confirm_s']:g} s, "
          f"{verdict(ca is not None and ca <= TARGETS['redis_fixed_confirm_s'])}).")
        w("")
        if fr.get("capacity"):
            w(f"The least this rate needs: {capacity_note(fr['capacity'])} (the floor's figure from the floor run, "
              "persisting's from the catch-up after this load).")
            w("")
    scen_table("Spread over products and warehouses", ["spread-db", "spread-redis"],
               [("confirmed after", confirm_cell)])
    rows = [scen[i] for i in ("store-db", "store-redis") if i in scen]
    if rows:
        w("## Store level (online SAME_DAY/PICKUP + POS sales)")
        w("")
        w("| path | part | conn. | ok/s | ok | 409 | errors | p50 ms | p99 ms | p99.9 ms | confirmed after | CPU % (machine) | invariants |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in rows:
            name = "DB-lock" if s["path"] == "db" else "Redis"
            pos = [v for k, v in s["parts"].items() if "-pos" in k]
            online = next(v for k, v in s["parts"].items() if k.endswith("-online"))
            w(f"| {name} | online | 48 | {fmt_int(online['ok_per_s'])} | {fmt_int(online['ok'])} | "
              f"{fmt_int(online['conflict'])} | {fmt_int(online['errors'])} | {fmt_ms(online['p50_ms'])} | "
              f"{fmt_ms(online['p99_ms'])} | {fmt_ms(online['p999_ms'])} | "
              f"{confirm_cell(s)} | "
              f"{cpu_cell(s.get('cpu_pct'))} | {'PASS' if s['passed'] else '**FAILED**'} |")
            if pos:
                wall = max(p["wall_s"] for p in pos)
                w(f"| {name} | POS ({len(pos)} stores, worst percentiles) | {2 * len(pos)} | "
                  f"{fmt_int(sum(p['ok'] for p in pos) / wall)} | {fmt_int(sum(p['ok'] for p in pos))} | "
                  f"{fmt_int(sum(p['conflict'] for p in pos))} | {fmt_int(sum(p['errors'] for p in pos))} | "
                  f"{fmt_ms(max(p['p50_ms'] or 0 for p in pos))} | {fmt_ms(max(p['p99_ms'] or 0 for p in pos))} | "
                  f"{fmt_ms(max(p['p999_ms'] or 0 for p in pos))} | 0 (sync) | | |")
            w(f"| {name} | all | {s['connections']} | {fmt_int(s['total_ok_per_s'])} | {fmt_int(s['total_ok'])} | "
              f"{fmt_int(s['total_conflict'])} | {fmt_int(s['total_errors'])} | | | | | | |")
        w("")
        for s in rows:
            for tag, part in s["parts"].items():
                if part.get("error_detail"):
                    w(f"- {s['title']}, {tag}: errors " +
                      ", ".join(f"`{k}` × {v:,}" for k, v in part["error_detail"].items()))
        w("")
    rows = [s for s in r["scenarios"] if s["kind"].startswith("reads")]
    if rows:
        w("## Reads (closed loop, 64 connections)")
        w("")
        w("| endpoint | from | ok/s | 2xx | 304 | errors | p50 ms | p99 ms | p99.9 ms | bytes/answer | CPU % (machine) | status |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in rows:
            src = {"mysql": "MySQL", "redis": "Redis"}.get(s.get("source"), "–")
            two = sum(n for k, n in s["statuses"].items() if k.startswith("2"))
            w(f"| {s.get('what', s['kind'])} | {src} | {fmt_int(s['ok_per_s'])} | {fmt_int(two)} | "
              f"{fmt_int(s.get('not_modified', 0))} | {fmt_int(s['errors'])} | {fmt_ms(s['p50_ms'])} | "
              f"{fmt_ms(s['p99_ms'])} | {fmt_ms(s['p999_ms'])} | {fmt_int(s.get('bytes_per_answer'))} | "
              f"{cpu_cell(s.get('cpu_pct'))} | {'ok' if s['passed'] else '**FAILED**'} |")
        w("")
        for s in rows:
            if s.get("error_detail"):
                w(f"- {s['title']}: errors " + ", ".join(f"`{k}` × {v:,}" for k, v in s["error_detail"].items()))
        for s in rows:
            if s.get("etag"):
                w(f"- {s['title']}: `If-None-Match: {s['etag']}` (a probe with it answered {s.get('probe_status')}).")
        for msg in r.get("skipped", []):
            w(f"- {msg}.")
        live = scen.get("reads-live")
        for source in ("redis", "mysql"):
            d = scen.get(f"reads-detail-{source}")
            if live and d and d.get("fraction_of_live") is not None:
                w(f"- {'Redis' if source == 'redis' else 'MySQL'} product detail: {d['fraction_of_live']:.1%} of "
                  f"`GET /health/live` (target ≥ {TARGETS['detail_over_live']:.0%}).")
        w("")

    soak = scen.get("soak-redis")
    if soak:
        rss = soak.get("rss") or {}
        w("## Memory soak")
        w("")
        w(f"The Redis path at {soak['rate']:,} orders/s (open loop, 256 connections, spread bodies) for "
          f"{soak['duration_s']:g} s; the service's RSS (`VmRSS`) every {rss.get('every_s', RSS_EVERY_S):g} s.")
        w("")
        w("| ok/s | ok | errors | p50 ms | p99 ms | p99.9 ms | confirmed after | RSS before | peak during | at the end | "
          f"{rss.get('after_s', '?')} s after | slope, first third | slope, last third | invariants |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

        def sl(v):
            return "–" if v is None else f"{v:+.2f} MiB/min"
        w(f"| {fmt_int(soak['ok_per_s'])} | {fmt_int(soak['ok'])} | {fmt_int(soak['errors'])} | "
          f"{fmt_ms(soak['p50_ms'])} | {fmt_ms(soak['p99_ms'])} | {fmt_ms(soak['p999_ms'])} | {confirm_cell(soak)} | "
          f"{fmt_mib(rss.get('before_mib'))} MiB | {fmt_mib(rss.get('peak_mib'))} MiB | {fmt_mib(rss.get('end_mib'))} MiB | "
          f"{fmt_mib(rss.get('after_mib'))} MiB | {sl(rss.get('first_third_slope_mib_per_min'))} | "
          f"{sl(rss.get('last_third_slope_mib_per_min'))} | {'PASS' if soak['passed'] else '**FAILED**'} |")
        w("")
        g = rss.get("grows")
        w("Growth without bound: " + (
            "cannot tell (too few samples in the last third of the load for a slope)." if g is None else
            f"**flagged** — RSS still rose faster than {TARGETS['soak_rss_slope_mib_per_min']:g} MiB/min over the "
            "last third of the load." if g else
            f"not seen — RSS rose no faster than {TARGETS['soak_rss_slope_mib_per_min']:g} MiB/min over the last "
            "third of the load."))
        w("")

    c = r.get("ceiling")
    if c:
        w("## Ceiling: the reservation script alone")
        w("")
        w("`redis-benchmark` against the same private Redis (`appendfsync always`), running the service's own "
          "`persistence/lua/reserve.lua` (`SCRIPT LOAD`, then `EVALSHA`) on one stock key holding 10^15 units, "
          "a fresh random order id per call (`__rand_int__`, `-r 1000000000`), an order JSON of "
          f"{c['order_json_bytes']} bytes taken from a real hot-product order, 50 clients, pipeline 1, "
          f"{c['requests']:,} calls ({c['wall_s']:.1f} s). Keys under `{CEILING_PREFIX}`, apart from the service's.")
        w("")
        w("| EVALSHA/s | p50 ms | p99 ms | Redis hot (256 conn.) | fraction | CPU % (machine) |")
        w("|---|---|---|---|---|---|")
        r256 = scen.get("hot256-redis")
        frac = c.get("fraction_redis_hot256")
        w(f"| {fmt_int(c['rps'])} | {fmt_ms(c['p50_ms'])} | {fmt_ms(c['p99_ms'])} | "
          f"{fmt_int(r256['ok_per_s']) if r256 else '–'} | {f'{frac:.1%}' if frac else '–'} | {cpu_cell(c.get('cpu_pct'))} |")
        w("")
        dup = c["duplicate_ids_estimate"]
        w(("Fewer than one call is" if dup < 1 else f"About {dup:.0f} calls are") + " expected to draw an order "
          "id already used (ids are random, not sequential); the script answers such a call as a duplicate, at "
          "about the same cost.")
        w("")

    w("## Invariant checks")
    w("")
    w("| scenario | check | result | detail |")
    w("|---|---|---|---|")
    for s in r["scenarios"]:
        for ch in s.get("checks", []):
            w(f"| {s['title']} | {ch['check']} | {'PASS' if ch['ok'] else '**FAILED**'} | {ch['detail']} |")
    w("")
    if made:
        w("## Charts")
        w("")
        for fname, title in made:
            w(f"![{title}]({fname})")
            w("")
    if r["notes"]:
        w("## Notes")
        w("")
        for n in r["notes"]:
            w(f"- {n}")
        w("")
    w("Files: `report.json` (every figure), `raw/` (load-generator commands and outputs, request bodies), "
      "`service.log`, `seed.log`.")
    (bench.out / "report.md").write_text("\n".join(L) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base-url", required=True)
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
    ap.add_argument("--floor-bin", help="sf-floor binary (the floor run is skipped without it)")
    ap.add_argument("--fixed-only", type=int, metavar="RATE",
                    help="run only the fixed-rate Redis-path scenario, at RATE orders/s")
    ap.add_argument("--soak-rate", type=int, help=f"orders/s of the memory soak (default {SOAK_RATE:,})")
    ap.add_argument("--soak-seconds", type=float,
                    help="length of the memory soak's load (default 600, 10 with --quick)")
    a = ap.parse_args()
    if a.fixed_only is not None and a.fixed_only <= 0:
        ap.error("--fixed-only must be positive")
    if (a.soak_rate is not None and a.soak_rate <= 0) or (a.soak_seconds is not None and a.soak_seconds <= 0):
        ap.error("--soak-rate and --soak-seconds must be positive")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        bench = Bench(a)
        return bench.run()
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
