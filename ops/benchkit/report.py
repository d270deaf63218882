"""report.json (every figure) and report.md: the words come from report.md.tmpl, the tables and
lists between them from the figures here."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from .charts import charts
from .common import (CEILING_PREFIX, CHECKOUT, CITY_HALL, ETAG_PRODUCT, FLOOR_PREFIX, HOT_PRODUCT, HOT_STOCK, MIXED,
                     RSS_EVERY_S, TARGETS, fmt_int, fmt_mib, fmt_ms)
from .targets import capacity_note, floor_split

if TYPE_CHECKING:
    from .core import Bench

TEMPLATE = Path(__file__).with_name("report.md.tmpl")


def load_template(path: Path = TEMPLATE) -> dict[str, Template]:
    """The template's blocks by name (see the top of report.md.tmpl for its form)."""
    text = re.sub(r"\\\n[ \t]*", "", path.read_text(encoding="utf-8"))
    blocks: dict[str, list[str]] = {}
    name = None
    for line in text.split("\n"):
        if line.startswith("@@ "):
            name = line[3:].strip()
            blocks[name] = []
        elif name is not None:
            blocks[name].append(line)
    return {k: Template("\n".join(v).rstrip("\n")) for k, v in blocks.items()}


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


def errors_text(detail: dict) -> str:
    """A run's errors by kind: "`HTTP 500` × 3, `timeout` × 1"."""
    return ", ".join(f"`{k}` × {v:,}" for k, v in detail.items())


def webhook_base_cell(s: dict) -> str:
    w = s.get("webhook") or {}
    return f"{fmt_int(w.get('base_ok_per_s'))}, {fmt_ms(w.get('base_p99_ms'))}"


def webhook_cpu_cell(s: dict) -> str:
    w = s.get("webhook") or {}
    return f"{w.get('base_service_us', '–')} → {w.get('load_service_us', '–')}"


def webhook_after_cell(s: dict) -> str:
    w = s.get("webhook") or {}
    if not w.get("drained"):
        return "not within the drain limit"
    return (f"{fmt_int(w.get('events'))} events in {w.get('drain_s')} s; service "
            f"{w.get('after_service_us')} µs, MariaDB {w.get('after_mariadb_us')} µs per order")


def write_report(bench: Bench):
    r = bench.results
    made = charts(bench)
    (bench.out / "report.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    rep = Report(bench)
    rep.header()
    rep.machine()
    rep.method()
    rep.targets()
    rep.scen_table("Hot product", ["hot64-db", "hot256-db", "hot64-redis", "hot256-redis"],
                   [("confirmed after", confirm_cell)])
    rep.floor()
    rep.scen_table("Webhooks: the hot product with an endpoint receiving every event",
                   ["hot64-db-webhook", "hot64-redis-webhook"],
                   [("without: ok/s, p99 ms", webhook_base_cell), ("service CPU µs/order, without → with", webhook_cpu_cell),
                    ("delivered after the load", webhook_after_cell)])
    rep.scen_table("Fixed rate (open loop, latency-corrected)", ["fixed-redis", "fixed-db"],
                   [("rate asked", lambda s: fmt_int(s.get("rate"))),
                    ("confirmed after", confirm_cell)])
    rep.fixed()
    rep.scen_table("Spread over products and warehouses", ["spread-db", "spread-redis"],
                   [("confirmed after", confirm_cell)])
    rep.store()
    rep.mixed()
    rep.checkout()
    rep.reads()
    rep.soak()
    rep.ceiling()
    rep.checks()
    rep.charts(made)
    rep.notes()
    rep.w(rep.text("files"))
    (bench.out / "report.md").write_text("\n".join(rep.lines) + "\n")


class Report:
    """report.md, one section per method, line by line."""

    def __init__(self, bench: Bench, template: dict[str, Template] | None = None):
        self.bench = bench
        self.r = bench.results
        self.m = self.r["machine"]
        self.scen = {s["id"]: s for s in self.r["scenarios"]}
        self.t = template if template is not None else load_template()
        self.lines: list[str] = []

    def w(self, line: str):
        self.lines.append(line)

    def text(self, block: str, **figures) -> str:
        return self.t[block].substitute(figures)

    def header(self):
        r, m, bench, w = self.r, self.m, self.bench, self.w
        el = r["meta"].get("elapsed_s") or 0
        w(self.text("header", mode=bench.mode, started=r["meta"]["started"], finished=r["meta"]["finished"],
                    elapsed_min=el // 60, elapsed_sec=el % 60, commit=m["commit"]))
        w("")
        writes = [s for s in r["scenarios"] if not s["kind"].startswith("reads")]
        if bench.failed:
            w(self.text("result_failed", count=len(bench.failed)))
            w("")
            for f in bench.failed:
                w(f"- {f}")
        else:
            w(self.text("result_passed", writes=len(writes)))
        w("")
        tp = sum(1 for t in r["targets"] if t["result"] == "PASS")
        tm = sum(1 for t in r["targets"] if t["result"] == "MISS")
        w(self.text("targets_count", passed=tp, missed=tm))
        if r["meta"].get("error"):
            w("")
            w(self.text("broke_off", error=r["meta"]["error"]))
        w("")

    def machine(self):
        m = self.m
        self.w(self.text(
            "machine", cpu_model=m["cpu_model"], nproc=m["nproc"], memory_gib=m["memory_gib"], os=m["os"],
            kernel=m["kernel"], mariadb=m["mariadb"], redis=m["redis"],
            aof_rewrite_min_size=os.environ.get("REDIS_AOF_REWRITE_MIN_SIZE", "4gb"),
            hz=os.environ.get("REDIS_HZ", "100"), load_generator=m["load_generator"],
            redis_benchmark=m["redis_benchmark"], uptime_start=m["uptime_start"],
            uptime_end=m.get("uptime_end", ""),
            all_cores=int(m["nproc"]) * 100 if str(m["nproc"]).isdigit() else "?"))
        self.w("")

    def method(self):
        bench, cfg = self.bench, self.bench.cfg
        world = self.r.get("world", {})
        lu = urllib.parse.urlsplit(bench.list_urls.get("mysql", "/api/products?page=0&size=20"))
        self.w(self.text(
            "method", warehouses=world.get("warehouses"), stores=world.get("stores"),
            products=f"{world.get('products', 0):,}", loadgen=bench.lg.name,
            loadgen_why=self.text("loadgen_oha" if bench.lg.name == "oha" else "loadgen_wrk"),
            hot_product=HOT_PRODUCT, city_hall_lat=CITY_HALL[0], city_hall_lon=CITY_HALL[1],
            hot_location=world.get("hot_location"),
            distances=", ".join(f"{k}: {v}" for k, v in (world.get("warehouse_distance_km") or {}).items()),
            hot_stock=f"{HOT_STOCK:,}", hot_s=cfg["hot"], spread_s=cfg["spread"], reads_s=cfg["reads"],
            mixed_s=cfg["mixed"], mixed_orders=MIXED["order_conns"], mixed_actions=MIXED["action_conns"],
            mixed_cancel=f"{MIXED['cancel_share']:.0%}", mixed_fulfil=f"{MIXED['fulfil_share']:.0%}",
            checkout_s=cfg["checkout"], checkout_rate=f"{cfg['checkout_rate']:,}", checkout_conns=CHECKOUT["conns"],
            checkout_convert=f"{CHECKOUT['convert_share']:.0%}", checkout_release=f"{CHECKOUT['release_share']:.0%}",
            checkout_ttl=CHECKOUT["ttl_s"], checkout_expire_ttl=CHECKOUT["expire_ttl_s"],
            fixed_s=cfg["fixed"], fixed_rate=f"{cfg['fixed_rate_redis']:,}",
            p99_target=f"{TARGETS['redis_fixed_p99_ms']:g}", p999_target=f"{TARGETS['redis_fixed_p999_ms']:g}",
            confirm_target=f"{TARGETS['redis_fixed_confirm_s']:g}", floor_prefix=FLOOR_PREFIX,
            floor_target=f"{TARGETS['redis_hot_floor_fraction']:.0%}", soak_rate=f"{bench.soak_rate:,}",
            soak_s=f"{bench.soak_seconds:g}", rss_every_s=f"{RSS_EVERY_S:g}", soak_before=cfg["soak_before"],
            soak_after=cfg["soak_after"], slope_limit=f"{TARGETS['soak_rss_slope_mib_per_min']:g}",
            pos_stores=len(getattr(bench, "pos_stores", [])),
            list_path=f"{lu.path}{'?' + lu.query if lu.query else ''}", etag_product=ETAG_PRODUCT,
            redis_list_target=f"{TARGETS['redis_list_min']:,}", mysql_list_target=f"{TARGETS['mysql_list_min']:,}",
            detail_target=f"{TARGETS['detail_over_live']:.0%}",
            reconciliations=self.text("reconciliations_per_pair" if bench.quick else "reconciliations_each")))
        self.w("")

    def targets(self):
        w, targets = self.w, self.r["targets"]
        w(self.text("targets"))
        for t in targets:
            w(f"| {t['target']} | {t['figure']} | **{t['result']}** |")
        w("")
        for t in targets:
            if t.get("note"):
                w(f"- {t['target']}: {t['note']}.")
        if any(t.get("note") for t in targets):
            w("")

    def scen_table(self, title, ids, extra_cols=()):
        """A section of one table, a row per scenario of `ids` that ran, and their errors."""
        w = self.w
        rows = [self.scen[i] for i in ids if i in self.scen]
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
                w(f"- {s['title']}: errors " + errors_text(s["error_detail"]))
        if any(s.get("error_detail") for s in rows):
            w("")

    def floor(self):
        w = self.w
        fl = self.r.get("floor")
        if not fl:
            return
        w(self.text("floor", connections=fl["connections"], duration_s=fl["duration_s"],
                    keys_removed=f"{fl.get('keys_removed', 0):,}"))
        w(f"| floor | {fl['connections']} | {fmt_int(fl['ok_per_s'])} | {fmt_int(fl['ok'])} | {fmt_int(fl['conflict'])} | "
          f"{fmt_int(fl['errors'])} | {fmt_ms(fl['p50_ms'])} | {fmt_ms(fl['p99_ms'])} | {fmt_ms(fl['p999_ms'])} | "
          f"{cpu_cell(fl.get('cpu_pct'))} |")
        h64 = self.scen.get("hot64-redis")
        if h64:
            w(f"| Redis path, hot product | 64 | {fmt_int(h64['ok_per_s'])} | {fmt_int(h64['ok'])} | "
              f"{fmt_int(h64['conflict'])} | {fmt_int(h64['errors'])} | {fmt_ms(h64['p50_ms'])} | "
              f"{fmt_ms(h64['p99_ms'])} | {fmt_ms(h64['p999_ms'])} | {cpu_cell(h64.get('cpu_pct'))} |")
        w("")
        frac = fl.get("fraction_redis_hot64")
        if frac is not None:
            target = TARGETS["redis_hot_floor_fraction"]
            w(self.text("floor_fraction", fraction=f"{frac:.1%}", target=f"{target:.0%}",
                        verdict="met" if frac >= target else "missed"))
            w("")
        split = floor_split(fl, h64)
        if split:
            self.floor_cpu(split)
        if fl.get("error_detail"):
            w("Floor errors: " + errors_text(fl["error_detail"]))
            w("")

    def floor_cpu(self, split: dict):
        """The floor's, the service's and persisting's CPU per order, and what 50% of the floor
        leaves for taking an order."""
        w = self.w
        w(self.text("floor_cpu", events=fmt_int(split["events"])))
        for name, row in (("floor", split["floor"]), ("Redis path, hot product", split["service"]),
                          ("persisting one order (catch-up)", split["persist"])):
            w(f"| {name} | " + " | ".join("–" if row.get(k) is None else f"{row[k]:.1f}"
                                          for k in ("service", "mariadb", "redis", "loadgen", "machine")) + " |")
        w("")
        w(self.text("floor_budget", budget=f"{split['budget']:.1f}", floor_us=f"{split['floor']['machine']:.1f}",
                    persist_us=f"{split['persist']['total']:.1f}", persist_share=f"{split['persist_share']:.0%}",
                    left_us=f"{split['left']:.1f}"))
        w("")

    def fixed(self):
        fr = self.scen.get("fixed-redis")
        if not fr:
            return

        def verdict(ok):
            return "met" if ok else "**missed**"

        t = TARGETS
        ca = fr.get("confirm_after_s")
        quick_note = "" if fr["rate"] == t["redis_fixed_rate"] else " " + self.text("fixed_quick_note")
        self.w(self.text(
            "fixed_redis", rate=f"{fr['rate']:,}", quick_note=quick_note, p50=fmt_ms(fr["p50_ms"]),
            p99=fmt_ms(fr["p99_ms"]), p99_target=f"{t['redis_fixed_p99_ms']:g}",
            p99_verdict=verdict(fr["p99_ms"] is not None and fr["p99_ms"] <= t["redis_fixed_p99_ms"]),
            p999=fmt_ms(fr["p999_ms"]), p999_target=f"{t['redis_fixed_p999_ms']:g}",
            p999_verdict=verdict(fr["p999_ms"] is not None and fr["p999_ms"] <= t["redis_fixed_p999_ms"]),
            confirmed="never (the backlog did not drain)" if ca is None else f"{ca:.2f} s",
            confirm_target=f"{t['redis_fixed_confirm_s']:g}",
            confirm_verdict=verdict(ca is not None and ca <= t["redis_fixed_confirm_s"])))
        self.w("")
        if fr.get("capacity"):
            self.w(self.text("fixed_capacity", capacity=capacity_note(fr["capacity"])))
            self.w("")

    def store(self):
        w = self.w
        rows = [self.scen[i] for i in ("store-db", "store-redis") if i in self.scen]
        if not rows:
            return
        w(self.text("store"))
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
                    w(f"- {s['title']}, {tag}: errors " + errors_text(part["error_detail"]))
        w("")

    def mixed(self):
        """The mixed scenario: its orders and POS sales, then each kind of step."""
        w = self.w
        rows = [self.scen[i] for i in ("mixed-db", "mixed-redis") if i in self.scen]
        if not rows:
            return
        w(self.text("mixed"))
        for s in rows:
            name = "DB-lock" if s["path"] == "db" else "Redis"
            m = s.get("mixed") or {}
            online = s["parts"].get(s["id"], {})
            pos = s["parts"].get(f"{s['id']}-pos", {})
            verdict = "PASS" if s["passed"] else "**FAILED**"
            for part, r, extra in (("orders", online, f"{confirm_cell(s)} | {cpu_cell(s.get('cpu_pct'))} | "
                                                      f"{verdict}"),
                                   ("POS sales", pos, "0 (sync) | | ")):
                w(f"| {name} | {part} | {fmt_int(r.get('ok_per_s'))} | {fmt_int(r.get('ok'))} | "
                  f"{fmt_int(r.get('conflict'))} | {fmt_int(r.get('errors'))} | {fmt_ms(r.get('p50_ms'))} | "
                  f"{fmt_ms(r.get('p99_ms'))} | {fmt_ms(r.get('p999_ms'))} | – | {extra} |")
            for kind, r in (m.get("steps") or {}).items():
                w(f"| {name} | {kind} | {fmt_int(r['ok_per_s'])} | {fmt_int(r['ok'])} | {fmt_int(r['conflict'])} | "
                  f"{fmt_int(r['errors'])} | {fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | "
                  f"{fmt_ms(r['p999_ms'])} | {fmt_int((m.get('retries_not_persisted') or {}).get(kind, 0))} | | | |")
        w("")
        for s in rows:
            m = s.get("mixed") or {}
            d = m.get("decided") or {}
            w(self.text("mixed_after", title=s["title"], placed=fmt_int(sum(d.values())),
                        cancel=fmt_int(d.get("cancel", 0)), fulfil=fmt_int(d.get("fulfil", 0)),
                        keep=fmt_int(d.get("keep", 0)), orders_s=f"{m.get('orders_wall_s', 0):.1f}",
                        after_s=f"{m.get('actions_after_load_s', 0):.1f}",
                        cancelled=fmt_int(m.get("cancelled")), handed=fmt_int(m.get("handed_over"))))
            for tag, part in s["parts"].items():
                if part.get("error_detail"):
                    w(f"  - {tag}: errors " + errors_text(part["error_detail"]))
            for kind, r in (m.get("steps") or {}).items():
                if r.get("error_detail"):
                    w(f"  - {kind}: errors " + errors_text(r["error_detail"]))
        w("")

    def checkout(self):
        """The checkout scenario: its holds, conversions and releases, then what became of them."""
        s = self.scen.get("checkout-db")
        if not s:
            return
        w = self.w
        w(self.text("checkout", p99_target=f"{TARGETS['redis_fixed_p99_ms']:g}",
                    p999_target=f"{TARGETS['redis_fixed_p999_ms']:g}"))
        verdict = "PASS" if s["passed"] else "**FAILED**"
        for tag, name, extra in (("checkout-db", "holds", f"{cpu_cell(s.get('cpu_pct'))} | {verdict}"),
                                 ("checkout-db-convert", "conversions", " | "),
                                 ("checkout-db-release", "releases", " | ")):
            r = s["parts"].get(tag, {})
            w(f"| {name} | {fmt_int(r.get('ok_per_s'))} | {fmt_int(r.get('ok'))} | {fmt_int(r.get('conflict'))} | "
              f"{fmt_int(r.get('errors'))} | {fmt_ms(r.get('p50_ms'))} | {fmt_ms(r.get('p99_ms'))} | "
              f"{fmt_ms(r.get('p999_ms'))} | {fmt_ms(r.get('max_ms'))} | {extra} |")
        w("")
        c = s.get("checkout") or {}
        d = c.get("decided") or {}
        ended = s.get("holds_ended_after_s")
        w(self.text("checkout_after", title=s["title"], checkouts=fmt_int(c.get("checkouts")),
                    convert=fmt_int(d.get("convert", 0)), release=fmt_int(d.get("release", 0)),
                    expire=fmt_int(d.get("expire", 0)), converted=fmt_int(c.get("converted")),
                    statuses=", ".join(f"{k} {v:,}" for k, v in (c.get("converted_status") or {}).items()) or "none",
                    released=fmt_int(c.get("released")), expiring=fmt_int(c.get("expiring")),
                    refused=fmt_int(c.get("refused")), started_s=f"{c.get('started_wall_s', 0):.1f}",
                    late_ms=fmt_ms(c.get("late_p99_ms")), after_s=f"{c.get('after_load_s', 0):.1f}",
                    ended_s="–" if ended is None else f"{ended:.1f}"))
        for tag, part in s["parts"].items():
            if part.get("error_detail"):
                w(f"  - {tag}: errors " + errors_text(part["error_detail"]))
        w("")

    def reads(self):
        w = self.w
        rows = [s for s in self.r["scenarios"] if s["kind"].startswith("reads")]
        if not rows:
            return
        w(self.text("reads"))
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
                w(f"- {s['title']}: errors " + errors_text(s["error_detail"]))
        for s in rows:
            if s.get("etag"):
                w(self.text("reads_etag", title=s["title"], etag=s["etag"], probe_status=s.get("probe_status")))
        for msg in self.r.get("skipped", []):
            w(f"- {msg}.")
        live = self.scen.get("reads-live")
        for source in ("redis", "mysql"):
            d = self.scen.get(f"reads-detail-{source}")
            if live and d and d.get("fraction_of_live") is not None:
                w(self.text("reads_detail_of_live", source="Redis" if source == "redis" else "MySQL",
                            fraction=f"{d['fraction_of_live']:.1%}", target=f"{TARGETS['detail_over_live']:.0%}"))
        w("")

    def soak(self):
        w = self.w
        soak = self.scen.get("soak-redis")
        if not soak:
            return
        rss = soak.get("rss") or {}
        w(self.text("soak", rate=f"{soak['rate']:,}", duration_s=f"{soak['duration_s']:g}",
                    every_s=f"{rss.get('every_s', RSS_EVERY_S):g}", after_s=rss.get("after_s", "?")))

        def sl(v):
            return "–" if v is None else f"{v:+.2f} MiB/min"
        w(f"| {fmt_int(soak['ok_per_s'])} | {fmt_int(soak['ok'])} | {fmt_int(soak['errors'])} | "
          f"{fmt_ms(soak['p50_ms'])} | {fmt_ms(soak['p99_ms'])} | {fmt_ms(soak['p999_ms'])} | {confirm_cell(soak)} | "
          f"{fmt_mib(rss.get('before_mib'))} MiB | {fmt_mib(rss.get('peak_mib'))} MiB | {fmt_mib(rss.get('end_mib'))} MiB | "
          f"{fmt_mib(rss.get('after_mib'))} MiB | {sl(rss.get('first_third_slope_mib_per_min'))} | "
          f"{sl(rss.get('last_third_slope_mib_per_min'))} | {'PASS' if soak['passed'] else '**FAILED**'} |")
        w("")
        g = rss.get("grows")
        growth = "soak_growth_unknown" if g is None else "soak_growth_flagged" if g else "soak_growth_not_seen"
        w(self.text(growth, slope_limit=f"{TARGETS['soak_rss_slope_mib_per_min']:g}"))
        w("")

    def ceiling(self):
        w = self.w
        c = self.r.get("ceiling")
        if not c:
            return
        w(self.text("ceiling", order_json_bytes=c["order_json_bytes"], requests=f"{c['requests']:,}",
                    wall_s=f"{c['wall_s']:.1f}", prefix=CEILING_PREFIX))
        r256 = self.scen.get("hot256-redis")
        frac = c.get("fraction_redis_hot256")
        w(f"| {fmt_int(c['rps'])} | {fmt_ms(c['p50_ms'])} | {fmt_ms(c['p99_ms'])} | "
          f"{fmt_int(r256['ok_per_s']) if r256 else '–'} | {f'{frac:.1%}' if frac else '–'} | {cpu_cell(c.get('cpu_pct'))} |")
        w("")
        dup = c["duplicate_ids_estimate"]
        w(self.text("ceiling_duplicates_none") if dup < 1 else self.text("ceiling_duplicates", count=f"{dup:.0f}"))
        w("")

    def checks(self):
        w = self.w
        w(self.text("checks"))
        for s in self.r["scenarios"]:
            for ch in s.get("checks", []):
                w(f"| {s['title']} | {ch['check']} | {'PASS' if ch['ok'] else '**FAILED**'} | {ch['detail']} |")
        w("")

    def charts(self, made: list[tuple[str, str]]):
        if made:
            self.w(self.text("charts"))
            self.w("")
            for fname, title in made:
                self.w(f"![{title}]({fname})")
                self.w("")

    def notes(self):
        if self.r["notes"]:
            self.w(self.text("notes"))
            self.w("")
            for n in self.r["notes"]:
                self.w(f"- {n}")
            self.w("")
