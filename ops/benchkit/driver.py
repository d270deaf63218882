"""Driving load: running the load generators side by side with the CPU they and the servers take,
a write run from snapshot to checks, a read run, the sf-floor process, redis-benchmark for the
ceiling, and the warm-up before any of them."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.request

from .common import FLOOR_PREFIX, HOT_PRODUCT, HOT_STOCK, ROOT, BenchError, fmt_ms
from .measure import CpuMeter

# Load-generator processes running now, stopped when this program is told to stop.
RUNNING: list[subprocess.Popen] = []


def stop_on_signal(signum, _frame):
    for p in list(RUNNING):
        try:
            p.terminate()
        except OSError:
            pass
    print(f"ops/bench.py: stopped by signal {signum}", file=sys.stderr)
    os._exit(128 + signum)


def write_figures(sid: str, title: str, path: str, jobs: list[dict], results: list[dict], *, cpu: dict,
                  load_avg: tuple, drain: float | None, confirm_after: float | None,
                  persist_cost: dict | None, t_snap: float, t_recon: float, recon: dict | None) -> dict:
    """A write scenario's figures: the first job's, and each job's with the totals when it ran
    several side by side."""
    duration = max(j["duration"] for j in jobs)
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
                                                      "max_ms", "ok_per_s", "wall_s")} for r in results}
        wall = max(r["wall_s"] for r in results)
        scen["total_ok"] = sum(r["ok"] for r in results)
        scen["total_ok_per_s"] = scen["total_ok"] / wall
        scen["total_conflict"] = sum(r["conflict"] for r in results)
        scen["total_errors"] = sum(r["errors"] for r in results)
    return scen


def mixed_results(stdout: str, tag: str) -> list[dict]:
    """The mixed load generator's output as two results, the online orders (tag) and the POS
    sales (tag-pos), the steps' figures riding on the first under "mixed"."""
    data = json.loads(stdout)
    orders = dict(data["orders"], tag=tag)
    orders["mixed"] = {k: v for k, v in data.items() if k not in ("orders", "pos")}
    return [orders, dict(data["pos"], tag=f"{tag}-pos")]


def checkout_results(stdout: str, tag: str) -> list[dict]:
    """The checkout load generator's output as three results, the holds (tag), the conversions
    (tag-convert) and the releases (tag-release), the rest riding on the first under "checkout"."""
    data = json.loads(stdout)
    holds = dict(data["holds"], tag=tag)
    holds["checkout"] = {k: v for k, v in data.items() if k not in ("holds", "converts", "releases")}
    return [holds, dict(data["converts"], tag=f"{tag}-convert"), dict(data["releases"], tag=f"{tag}-release")]


# The load generators of our own (benchkit/<name>.py), by the job key that carries their
# configuration, with what turns their output into results.
OWN_DRIVERS = {"mixed": mixed_results, "checkout": checkout_results}


class Driver:
    """Mixed into Bench; uses its load generator (lg), clients, checks, cfg, pids, raw, results
    and failed."""

    def reset_hot_stock(self):
        body = self.http_json("PUT", f"/api/admin/locations/{self.hot_loc}/products/{HOT_PRODUCT}/stock",
                              {"quantity": HOT_STOCK, "reason": "RESTOCK"}, self.token)
        return body

    def own_command(self, tag: str, job: dict, own: str) -> list[str]:
        """The command line of our own load generator `own` (benchkit/mixed.py or
        benchkit/checkout.py); its configuration goes to raw/<tag>.config.json, the ids it saw to
        raw/<tag>.ids.json. The admin token and the channel key stay out of the file: the process
        inherits ADMIN_TOKEN, and gets the channel key as SF_CHANNEL_KEY (see run_load)."""
        cfg = dict(job[own], base=self.base, duration=job["duration"],
                   ids_out=str(self.raw / f"{tag}.ids.json"))
        path = self.raw / f"{tag}.config.json"
        path.write_text(json.dumps(cfg, indent=1) + "\n")
        return [sys.executable, "-m", f"benchkit.{own}", str(path)]

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
                tag = name if len(jobs) == 1 else f"{name}-{job.get('tag', i)}"
                own = next((k for k in OWN_DRIVERS if k in job), None)
                cmd = self.own_command(tag, job, own) if own else self.lg.command(job)
                (self.raw / f"{tag}.cmd").write_text(" ".join(cmd) + "\n")
                out = open(self.raw / f"{tag}.{'json' if own or self.lg.name == 'oha' else 'txt'}", "w+")
                err = open(self.raw / f"{tag}.stderr", "w+")
                proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True,
                                        cwd=ROOT / "ops" if own else None,
                                        env=dict(os.environ, SF_CHANNEL_KEY=self.channel_key) if own else None)
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
                own = next((k for k in OWN_DRIVERS if k in job), None)
                if rc != 0:
                    gen = f"benchkit.{own}" if own else self.lg.name
                    raise BenchError(f"{gen} ({tag}) exited {rc}: {stderr.strip()[-500:]}")
                if own:
                    results += OWN_DRIVERS[own](stdout, tag)
                    continue
                res = self.lg.parse(stdout, job)
                res["tag"] = tag
                results.append(res)
            ended = time.monotonic()
        self.last_load = (started, ended)
        forks1 = self.redis_forks()
        cpu.result["redis_forks"] = (forks1 - forks0) if forks0 is not None and forks1 is not None else None
        cpu.result["redis_stalls"] = self.redis_stalls(self.raw / f"{name}.redis-stalls.json")
        return results, cpu.result, ended

    def write_scenario(self, sid: str, title: str, path: str, jobs: list[dict], *, hot: bool,
                       expect_paths: dict[str, list[str]], extra: dict | None = None,
                       pair: dict | None = None, announce: bool = True, after_load=None,
                       own: str | None = None) -> dict:
        """One write run: snapshot, load, drain, snapshot, checks, reconciliation.

        pair (quick runs): {"first": True} leaves the reconciliation to the next scenario;
        {"with": scen} reconciles once for that scenario and this one, checked in both.
        announce=False: the caller printed the progress line. after_load: called once the
        backlog has drained (or the drain limit passed), before the checks. own: "mixed" (the
        run cancels and hands orders over) or "checkout" (it holds, converts, releases and lets
        holds expire): its snapshots carry the stock states and its checks are its own (see
        Checks.mixed_checks and Checks.checkout_checks)."""
        duration = max(j["duration"] for j in jobs)
        if announce:
            self.progress(title, duration)
        if self.backlog() != 0:
            self.wait_backlog(self.cfg["drain_limit"])
        if hot:
            self.reset_hot_stock()
        t0 = time.monotonic()
        before = self.snapshot(states=own is not None)
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
        after = self.snapshot(states=own is not None)
        t2 = time.monotonic()
        recon = None if pair and pair.get("first") else self.reconcile()
        t_recon = time.monotonic() - t2
        t_snap += t2 - t1
        scen = write_figures(sid, title, path, jobs, results, cpu=cpu, load_avg=load_avg, drain=drain,
                             confirm_after=confirm_after, persist_cost=persist_cost, t_snap=t_snap,
                             t_recon=t_recon, recon=recon)
        if extra:
            scen.update(extra)
        checks = self.record_checks(scen, results, before, after, recon, drain=drain,
                                    confirm_after=confirm_after, log_mark=log_mark,
                                    expect_paths=expect_paths, hot=hot, pair=pair, own=own)
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

    # --- the ceiling: the reservation script alone, in redis-benchmark ------

    def redis_benchmark(self, n: int, cmd_args: list[str]) -> dict:
        """n calls of cmd_args (50 clients, pipeline 1, a fresh __rand_int__ per call); answers
        the CSV's figures (rps, p50_latency_ms, ...), the wall time and the command."""
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

    # --- before the first scenario -------------------------------------------

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
                   "headers": self.shop_headers(), "duration": 1}
            self.run_load(f"warmup-{path}", [job])
        self.wait_backlog(self.cfg["drain_limit"])
