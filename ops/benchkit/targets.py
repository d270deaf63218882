"""The targets a run is judged against, the figures they are built from (CPU per order, what the
floor and persisting cost, the least CPU the fixed rate needs), and the plain-language notes on
what stands out in a run's figures."""

from __future__ import annotations

from .common import TARGETS, fmt_mib, fmt_ms


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


class Targets:
    """Mixed into Bench; reads its results, adds results["targets"] and results["notes"]."""

    def find(self, sid: str) -> dict | None:
        return next((s for s in self.results["scenarios"] if s["id"] == sid), None)

    def evaluate_targets(self):
        out = self.results["targets"]

        def add(name, figure, ok, note=""):
            out.append({"target": name, "figure": figure, "result": "n/a" if ok is None else ("PASS" if ok else "MISS"),
                        "note": note})

        self._redis_hot_targets(add)
        self._fixed_targets(add)
        self._checkout_targets(add)
        self._db_hot_targets(add)
        self._read_targets(add)
        self._soak_target(add)

    def _redis_hot_targets(self, add):
        t = TARGETS
        ceiling = self.results.get("ceiling", {}).get("rps")
        floor = self.results.get("floor")
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

    def _fixed_targets(self, add):
        t = TARGETS
        floor = self.results.get("floor")
        r64 = self.find("hot64-redis")
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

    def _checkout_targets(self, add):
        """The orders' tail-latency targets, for holds and for conversions, and their
        confirmation target: a converted hold's order is CONFIRMED at once (holds are MySQL-first)."""
        t = TARGETS
        co = self.find("checkout-db")
        if not co:
            return
        label = f"at {co['checkout_rate']:,} checkouts/s"
        parts = co.get("parts") or {}
        for tag, name in (("checkout-db", "holds"), ("checkout-db-convert", "conversions")):
            r = parts.get(tag)
            if not r:
                continue
            add(f"Checkout {name} p99 ≤ {t['redis_fixed_p99_ms']:g} ms {label}",
                f"p99 {fmt_ms(r['p99_ms'])} ms (p50 {fmt_ms(r['p50_ms'])} ms)",
                r["p99_ms"] is not None and r["p99_ms"] <= t["redis_fixed_p99_ms"],
                "holds: latency-corrected, from when each checkout was due" if name == "holds" else "")
            add(f"Checkout {name} p99.9 ≤ {t['redis_fixed_p999_ms']:g} ms {label}",
                f"p99.9 {fmt_ms(r['p999_ms'])} ms", r["p999_ms"] is not None and r["p999_ms"] <= t["redis_fixed_p999_ms"])
        confirmed = next((ch for ch in co.get("checks", []) if ch["check"].startswith("converted holds")), None)
        if confirmed:
            add(f"Checkout: converted holds' orders CONFIRMED at once (within {t['redis_fixed_confirm_s']:g} s) {label}",
                "0 s: " + confirmed["detail"] if confirmed["ok"] else confirmed["detail"], confirmed["ok"])

    def _db_hot_targets(self, add):
        t = TARGETS
        r64, r256 = self.find("hot64-redis"), self.find("hot256-redis")
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

    def _read_targets(self, add):
        t = TARGETS
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

    def _soak_target(self, add):
        t = TARGETS
        soak = self.find("soak-redis")
        if soak and soak.get("rss"):
            rss = soak["rss"]
            sl = rss.get("last_third_slope_mib_per_min")
            add(f"Memory soak: service RSS levels off (last third's slope ≤ {t['soak_rss_slope_mib_per_min']:g} MiB/min)",
                "too few samples for a slope" if sl is None else
                f"{sl:+.2f} MiB/min; {fmt_mib(rss.get('before_mib'))} → peak {fmt_mib(rss.get('peak_mib'))} MiB",
                None if sl is None else not rss.get("grows"))

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
