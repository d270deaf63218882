"""The scenarios: what each one loads (URLs, bodies, connections, rates, durations) and the order
they run in. Running the load and checking the invariants is the driver's and the checks' work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from .common import (CEILING_PREFIX, CHECKOUT, CITY_HALL, ETAG_PRODUCT, FLOOR_PREFIX, HOT_PRODUCT, MIXED, ROOT,
                     RSS_EVERY_S, BenchError, FixedOnlyDone, fmt_mib, fmt_ms)
from .driver import RUNNING
from .measure import CpuMeter, RssSampler

# Every event type a webhook endpoint may receive (docs/events.md).
EVENT_TYPES = ["order.accepted", "order.confirmed", "order.rejected", "order.cancelled", "order.lost",
               "order.fulfillment_changed", "hold.expired", "stock.low", "stock.out", "stock.back"]


class Scenarios:
    """Mixed into Bench; each scenario_* runs one scenario (or one per path) and records it."""

    @staticmethod
    def total_steps_for(can_fixed: bool) -> int:
        """The progress lines of a whole run: hot x4, floor, webhook x2, fixed x2, spread x2, store x2, mixed
        x2, checkout, reads x4, conditional reads x4, /health/live, soak, ceiling."""
        return 4 + 1 + 2 + (2 if can_fixed else 0) + 2 + 2 + 2 + 1 + 4 + 4 + 1 + (1 if can_fixed else 0) + 1

    def run_scenarios(self, can_fixed: bool):
        """Every scenario in order, or with --fixed-only the one fixed-rate run (ending with
        FixedOnlyDone)."""
        if self.a.fixed_only:
            # One scenario, for comparing a setting (REDIS_AOF_REWRITE_MIN_SIZE, say) with
            # itself changed: the Redis path at the asked rate, for the mode's duration.
            if not can_fixed:
                raise BenchError("--fixed-only needs oha (wrk has no open-loop mode)")
            self.total_steps = 1
            self.scenario_fixed("redis", self.a.fixed_only)
            raise FixedOnlyDone()
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
        # The 64-connection hot product again, with a webhook endpoint receiving every event.
        s1 = self.scenario_webhook("db", pair=first)
        self.scenario_webhook("redis", pair=then(s1))
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
        s1 = self.scenario_mixed("db", pair=first)
        self.scenario_mixed("redis", pair=then(s1))
        self.scenario_checkout()
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

    # --- what the write scenarios send --------------------------------------

    def order_url(self, path: str) -> str:
        return f"{self.base}/api/orders" if path == "db" else f"{self.base}/api/redis/orders"

    def shop_headers(self) -> list[str]:
        """The headers of a load generator job on the shop's routes: the channel key (one header,
        so the wrk fallback, which sends one, can carry it)."""
        return [f"authorization: Bearer {self.channel_key}"]

    def mysql_path(self, path: str) -> str:
        return "DB_LOCK" if path == "db" else "REDIS"

    def hot_body(self) -> str:
        return json.dumps({"items": [{"productId": HOT_PRODUCT, "quantity": 1}], "deliveryType": "NORMAL",
                           "deliveryAddress": {"latitude": CITY_HALL[0], "longitude": CITY_HALL[1]}},
                          separators=(",", ":"))

    @staticmethod
    def path_name(path: str) -> str:
        return "DB-lock path" if path == "db" else "Redis path"

    # --- write scenarios ----------------------------------------------------

    def scenario_hot(self, path: str, conns: int, pair: dict | None = None):
        sid = f"hot{conns}-{path}"
        job = {"url": self.order_url(path), "method": "POST", "body": self.hot_body(), "conns": conns,
               "headers": self.shop_headers(), "duration": self.cfg["hot"]}
        return self.write_scenario(
            sid, f"hot product, {self.path_name(path)}, {conns} connections", path, [job], hot=True,
            expect_paths={self.mysql_path(path): [sid]}, extra={"connections": conns}, pair=pair)

    def scenario_webhook(self, path: str, pair: dict | None = None):
        """hot64 with a webhook endpoint (benchkit/receiver.py, a process of its own answering
        204) subscribed to every event type. Its cost per order, beside hot64 without: the
        service's CPU per order during the load, and the CPU (service, MariaDB) until every event
        is delivered after it, per order. Checks that every event written was delivered."""
        base = self.find(f"hot64-{path}")
        proc, url = self.start_receiver()
        hook = None
        try:
            hook = self.http_json("POST", "/api/admin/webhooks",
                                  {"url": f"{url}/hook", "events": EVENT_TYPES,
                                   "description": "bench receiver"}, self.token, expect=(201,))
            hook_id = hook["webhook"]["webhookId"]
            sid = f"hot64-{path}-webhook"
            job = {"url": self.order_url(path), "method": "POST", "body": self.hot_body(), "conns": 64,
                   "headers": self.shop_headers(), "duration": self.cfg["hot"]}
            first_seq = int(self.sql("SELECT COALESCE(MAX(id), 0) FROM events")[0][0])
            scen = self.write_scenario(
                sid, f"hot product, {self.path_name(path)}, 64 connections, a webhook endpoint",
                path, [job], hot=True, expect_paths={self.mysql_path(path): [sid]},
                extra={"connections": 64, "webhook": True}, pair=pair)
            written = int(self.sql(f"SELECT COUNT(*) FROM events WHERE id > {first_seq}")[0][0])
            with CpuMeter(self.pids) as cpu:
                waited = self.wait_deliveries(hook_id, limit_s=self.cfg["webhook_drain_limit"])
            got = json.loads(urllib.request.urlopen(url, timeout=5).read())
            orders = max(scen["ok"], 1)
            per_order = lambda pct, wall: None if pct is None else round(pct / 100 * wall * 1e6 / orders, 1)
            cost = {
                "events": written, "delivered": got["events"], "drain_s": round(cpu.wall, 2),
                "drained": waited is not None,
                "load_service_us": per_order(scen["cpu_pct"].get("service"), scen["wall_s"]),
                "base_service_us": None if not base else round(
                    base["cpu_pct"]["service"] / 100 * base["wall_s"] * 1e6 / max(base["ok"], 1), 1),
                "after_service_us": per_order(cpu.result.get("service"), cpu.wall),
                "after_mariadb_us": per_order(cpu.result.get("mariadb"), cpu.wall),
                "base_ok_per_s": base["ok_per_s"] if base else None,
                "base_p99_ms": base["p99_ms"] if base else None,
            }
            scen["webhook"] = cost
            ok = waited is not None and got["events"] >= written
            scen["checks"].append({"check": "every event written was delivered", "ok": ok,
                                   "detail": f"{written:,} events written, {got['events']:,} delivered "
                                             f"({got['deliveries']:,} deliveries)"})
            scen["passed"] = scen["passed"] and ok
            if not ok and scen["title"] not in self.failed:
                self.failed.append(scen["title"])
            self.note(f"webhook, {self.path_name(path)}: {written:,} events delivered "
                      f"{cpu.wall:.1f} s after the load; service CPU per order "
                      f"{cost['load_service_us']} µs with the endpoint, {cost['base_service_us']} µs "
                      f"without; delivering after the load: service {cost['after_service_us']} µs, "
                      f"MariaDB {cost['after_mariadb_us']} µs per order")
            return scen
        finally:
            if hook:
                self.http("DELETE", f"/api/admin/webhooks/{hook['webhook']['webhookId']}", token=self.token)
            self.stop_floor(proc)

    def wait_deliveries(self, hook_id: int, limit_s: float) -> float | None:
        """Seconds until every event is placed, fanned out to the endpoint and delivered (None
        past limit_s)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            row = self.sql(
                "SELECT (SELECT COUNT(*) FROM events WHERE seq IS NULL), "
                f"(SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = {int(hook_id)} "
                "AND status = 'PENDING'), "
                f"(SELECT fanned_to_seq FROM webhook_endpoints WHERE id = {int(hook_id)}) "
                ">= (SELECT COALESCE(MAX(seq), 0) FROM events)")[0]
            if row == ["0", "0", "1"]:
                return time.monotonic() - t0
            time.sleep(0.2)
        return None

    def start_receiver(self) -> tuple[subprocess.Popen, str]:
        """Starts benchkit/receiver.py; answers it and its URL."""
        proc = subprocess.Popen([sys.executable, "-m", "benchkit.receiver"], cwd=ROOT / "ops",
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        RUNNING.append(proc)
        line = proc.stdout.readline()
        if "listening on " not in line:
            self.stop_floor(proc)
            raise BenchError("the webhook receiver did not start")
        return proc, line.split("listening on ", 1)[1].strip()

    def scenario_fixed(self, path: str, rate: int, pair: dict | None = None):
        sid = f"fixed-{path}"
        job = {"url": self.order_url(path), "method": "POST", "body": self.hot_body(), "conns": 256,
               "headers": self.shop_headers(), "duration": self.cfg["fixed"], "rate": rate}
        return self.write_scenario(
            sid, f"fixed rate, {self.path_name(path)}, {rate:,} orders/s", path, [job], hot=True,
            expect_paths={self.mysql_path(path): [sid]}, extra={"rate": rate, "connections": 256},
            pair=pair)

    def scenario_spread(self, path: str, pair: dict | None = None):
        sid = f"spread-{path}"
        job = {"url": self.order_url(path), "method": "POST", "body_lines": self.raw / "spread-bodies.jsonl",
               "headers": self.shop_headers(), "conns": 64, "duration": self.cfg["spread"]}
        return self.write_scenario(
            sid, f"spread over {self.max_product:,} products x {len(self.warehouses)} warehouses, "
            f"{self.path_name(path)}, 64 connections", path, [job], hot=False,
            expect_paths={self.mysql_path(path): [sid]}, extra={"connections": 64}, pair=pair)

    def scenario_store(self, path: str, pair: dict | None = None):
        sid = f"store-{path}"
        jobs = [{"tag": "online", "url": self.order_url(path), "method": "POST",
                 "body_lines": self.raw / "store-bodies.jsonl", "headers": self.shop_headers(), "conns": 48,
                 "duration": self.cfg["store"]}]
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

    def scenario_mixed(self, path: str, pair: dict | None = None):
        """Orders (PICKUP and SAME_DAY at stores, NORMAL at warehouses) with, at the same time,
        cancels of some, the fulfilment steps of others and POS sales, from benchkit/mixed.py (a
        step needs the id and code of an order just answered). Checked with the stock states'
        ledger identities instead of "units taken == units ordered"."""
        sid = f"mixed-{path}"
        m = MIXED
        cancel = "/api/orders/{id}/cancel" if path == "db" else "/api/redis/orders/{id}/cancel"
        job = {"duration": self.cfg["mixed"], "mixed": {
            "order_path": urllib.parse.urlsplit(self.order_url(path)).path, "cancel_path": cancel,
            "order_conns": m["order_conns"], "action_conns": m["action_conns"],
            "bodies": str(self.raw / "mixed-bodies.jsonl"),
            "pos": [[s, str(self.raw / f"pos-{s}-bodies.jsonl")] for s in self.pos_stores],
            "store_key": "sfk_demo_{store}", "cancel_share": m["cancel_share"],
            "fulfil_share": m["fulfil_share"], "retry_s": 30, "seed": 20_261_207 + (path == "redis")}}
        title = (f"mixed, {self.path_name(path)} (orders, {m['cancel_share']:.0%} cancelled, "
                 f"{m['fulfil_share']:.0%} stepped, POS sales at {len(self.pos_stores)} stores)")
        return self.write_scenario(
            sid, title, path, [job], hot=False,
            expect_paths={self.mysql_path(path): [sid], "POS": [f"{sid}-pos"]},
            extra={"connections": m["order_conns"] + m["action_conns"] + len(self.pos_stores)},
            pair=pair, own="mixed")

    def scenario_checkout(self):
        """Checkouts at a fixed rate, from benchkit/checkout.py: a hold, then its conversion into an
        order, its release, or nothing (it expires). Holds are MySQL-first and a converted hold's
        order is a DB-lock order, so there is one run, not one per path. After the load it waits
        until every hold has ended (the expired ones too), then checks (Checks.checkout_checks)."""
        sid = "checkout-db"
        c = CHECKOUT
        rate = self.cfg["checkout_rate"]
        job = {"duration": self.cfg["checkout"], "rate": rate, "checkout": {
            "rate": rate, "conns": c["conns"], "bodies": str(self.raw / "mixed-bodies.jsonl"),
            "convert_share": c["convert_share"], "release_share": c["release_share"], "ttl_s": c["ttl_s"],
            "expire_ttl_s": c["expire_ttl_s"], "seed": 20_261_207}}
        expire = 1 - c["convert_share"] - c["release_share"]
        title = (f"checkout at {rate:,}/s: holds, {c['convert_share']:.0%} converted, "
                 f"{c['release_share']:.0%} released, {expire:.0%} expired")
        # Filled once the load is over; joins the scenario's figures.
        ended = {"connections": c["conns"], "checkout_rate": rate}

        def wait_holds():
            ended["holds_ended_after_s"] = self.wait_holds_ended(c["expire_ttl_s"] + c["end_limit_s"])

        return self.write_scenario(
            sid, title, "db", [job], hot=False, expect_paths={"DB_LOCK": [f"{sid}-convert"]},
            extra=ended, after_load=wait_holds, own="checkout")

    # --- read scenarios -----------------------------------------------------

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
               "headers": self.shop_headers(), "conns": 256, "duration": secs, "rate": rate}

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
        self.progress("ceiling: redis-benchmark EVALSHA reserve.lua, 50 clients, pipeline 1", secs)
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
        safety_key = f"{p}{{L{loc}}}:safety"
        self.redis_cmd("SET", stock_key, str(10**15))
        # The location's safety stock, as the service's key loads set it (no buffer).
        self.redis_cmd("HSET", safety_key, "v", "1", "*", "0")
        cmd_args = ["EVALSHA", sha, "4", f"{p}{{L{loc}}}:o:__rand_int__", f"{p}{{L{loc}}}:ev", stock_key,
                    safety_key, "__rand_int__", order_json, f"{HOT_PRODUCT}:1", "1"]
        probe = self.redis_benchmark(5_000, cmd_args)
        n = max(5_000, int(probe["rps"] * secs))
        with CpuMeter(self.pids) as cpu:
            res = self.redis_benchmark(n, cmd_args)
        dup_estimate = n * n / (2 * 1e9)
        self.redis_cmd("UNLINK", stock_key, safety_key, f"{p}{{L{loc}}}:ev")
        scen = {"id": "ceiling", "kind": "ceiling", "title": "ceiling", "rps": res["rps"], "requests": n,
                "wall_s": res["wall_s"], "p50_ms": res.get("p50_latency_ms"), "p99_ms": res.get("p99_latency_ms"),
                "cpu_pct": cpu.result, "order_json_bytes": len(order_json), "duplicate_ids_estimate": dup_estimate,
                "command": " ".join(res["cmd"][:-5] + ["<order JSON>"] + res["cmd"][-4:]).replace(sha, "<sha>"),
                "passed": True, "load_avg_1m": round(os.getloadavg()[0], 2)}
        self.results["ceiling"] = scen
        self.note(f"{res['rps']:,.0f} EVALSHA/s over {n:,} calls")
