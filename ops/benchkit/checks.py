"""The invariant checks after each write scenario: orders answered against orders MySQL gained,
units taken from stock against units ordered, the hot product's stock in MySQL and Redis, and a
reconciliation run that repairs no key and finds no ledger mismatch."""

from __future__ import annotations

import json
import re
import time

from .common import HOT_PRODUCT, BenchError


class Checks:
    """Mixed into Bench; uses its clients (sql, redis_cmd, http, backlog), out, hot_loc, prefix,
    cfg, results and failed."""

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

    def snapshot(self, states: bool = False) -> dict:
        """Order counts per path, order-line units, total and hot on-hand, all read in one
        consistent snapshot (one transaction), so a write committing meanwhile cannot split them.
        With `states` (the mixed and checkout scenarios) also the total committed and reserved, the
        units of cancelled, rejected and handed-over orders, the holds (all and ACTIVE), and the
        ledger's last movement id."""
        extra = ""
        if states:
            extra = (
                "SELECT 'states', SUM(committed), SUM(reserved) FROM stock; "
                "SELECT 'ended', o.status, COALESCE(SUM(l.quantity), 0) FROM orders o "
                "JOIN order_lines l ON l.order_id = o.id WHERE o.status IN ('CANCELLED', 'REJECTED') "
                "GROUP BY o.status; "
                # Every hand-over sets its step and handed_over_at together (a POS sale: COLLECTED
                # at once); the step has an index, handed_over_at none.
                "SELECT 'handed', COUNT(*), COALESCE(SUM(l.quantity), 0) FROM orders o "
                "JOIN order_lines l ON l.order_id = o.id "
                "WHERE o.fulfillment IN ('COLLECTED', 'DISPATCHED', 'SHIPPED'); "
                "SELECT 'holds', COUNT(*), COALESCE(SUM(status = 'ACTIVE'), 0) FROM holds; "
                "SELECT 'movements', COALESCE(MAX(id), 0), 0 FROM stock_movements; ")
        rows = self.sql(
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY; "
            "SELECT 'orders', path, COUNT(*) FROM orders GROUP BY path; "
            "SELECT 'lines', COUNT(*), COALESCE(SUM(quantity), 0) FROM order_lines; "
            "SELECT 'available', SUM(available), 0 FROM stock; "
            f"SELECT 'hot', available, 0 FROM stock WHERE location_id = {self.hot_loc} "
            f"AND product_id = {HOT_PRODUCT}; {extra}COMMIT;")
        snap = {"orders": {}, "lines": 0, "units_ordered": 0, "available": 0, "hot_on_hand": None}
        if states:
            snap.update({"committed": 0, "reserved": 0, "cancelled_units": 0, "rejected_units": 0,
                         "handed_units": 0, "holds": 0, "active_holds": 0, "last_movement": 0})
        for r in rows:
            if r[0] == "orders":
                snap["orders"][r[1]] = int(r[2])
            elif r[0] == "lines":
                snap["lines"], snap["units_ordered"] = int(r[1]), int(r[2])
            elif r[0] == "available":
                snap["available"] = int(r[1])
            elif r[0] == "hot":
                snap["hot_on_hand"] = int(r[1])
            elif r[0] == "states":
                snap["committed"], snap["reserved"] = int(r[1]), int(r[2])
            elif r[0] == "ended":
                snap[f"{r[1].lower()}_units"] = int(r[2])
            elif r[0] == "handed":
                snap["handed_units"] = int(r[2])
            elif r[0] == "holds":
                snap["holds"], snap["active_holds"] = int(r[1]), int(r[2])
            elif r[0] == "movements":
                snap["last_movement"] = int(r[1])
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

    def record_checks(self, scen: dict, results: list[dict], before: dict, after: dict, recon: dict | None,
                      *, drain: float | None, confirm_after: float | None, log_mark: int,
                      expect_paths: dict[str, list[str]], hot: bool, pair: dict | None,
                      own: str | None = None) -> list[dict]:
        """Checks a write run's invariants and records them, with the snapshots, in `scen`, which
        joins the results; the reconciliation's check goes to it and to the scenario it shares
        the reconciliation with (pair {"with": ...}). Answers the checks."""
        checks = self.invariant_checks(scen, results, before, after, drain=drain, confirm_after=confirm_after,
                                       log_mark=log_mark, expect_paths=expect_paths, hot=hot, own=own)
        scen["checks"] = checks
        scen["before"], scen["after"] = before, after
        self.results["scenarios"].append(scen)
        if recon is not None:
            covered = ([pair["with"]] if pair and pair.get("with") else []) + [scen]
            for sc in covered:
                self.add_reconciliation(sc, recon, [c["title"] for c in covered if c is not sc])
        scen["passed"] = all(c["ok"] for c in checks)
        if not scen["passed"] and scen["title"] not in self.failed:
            self.failed.append(scen["title"])
        return checks

    def invariant_checks(self, scen: dict, results: list[dict], before: dict, after: dict, *,
                         drain: float | None, confirm_after: float | None, log_mark: int,
                         expect_paths: dict[str, list[str]], hot: bool, own: str | None = None) -> list[dict]:
        """The checks of one write run, from the snapshots before and after it; sets
        scen["outcome_unknown"] (orders answered 503 order-outcome-unknown, and how many of them
        MySQL holds). A mixed run cancels and hands orders over, and a checkout run's holds move
        units to `reserved` and back, so "units taken == units ordered" is not their rule: they
        get mixed_checks and checkout_checks instead."""
        by_tag = {r["tag"]: r for r in results}
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
        if own:
            scen[own] = by_tag[scen["id"]][own]
            checks += (self.mixed_checks if own == "mixed" else self.checkout_checks)(scen, before, after)
            return checks
        units_taken = before["available"] - after["available"]
        units_ordered = after["units_ordered"] - before["units_ordered"]
        check("units taken from stock == units ordered", units_taken == units_ordered,
              f"available fell by {units_taken:,}; new order lines hold {units_ordered:,} units")
        if hot:
            taken = before["hot_on_hand"] - after["hot_on_hand"]
            answered = sum(r["ok"] for r in results)
            ok = taken == answered if not slack else answered <= taken <= answered + slack
            check(f"hot product: units taken at location {self.hot_loc} == orders accepted", ok,
                  f"available({self.hot_loc},{HOT_PRODUCT}) {before['hot_on_hand']:,} -> "
                  f"{after['hot_on_hand']:,} (−{taken:,}); accepted {answered:,}")
            key = f"{self.prefix}{{L{self.hot_loc}}}:s:{HOT_PRODUCT}"
            rv = self.redis_cmd("GET", key)
            if rv:
                check("hot product: Redis key == MySQL available", int(rv) == after["hot_on_hand"],
                      f"{key} = {int(rv):,}, MySQL {after['hot_on_hand']:,}")
        return checks

    def count_orders(self, ids: list[str], where: str) -> int:
        """How many of `ids` MySQL holds as orders matching `where` (SQL on `orders`)."""
        n = 0
        for i in range(0, len(ids), 500):
            chunk = ",".join(f"'{x}'" for x in ids[i:i + 500])
            n += int(self.sql(f"SELECT COUNT(*) FROM orders WHERE id IN ({chunk}) AND {where}")[0][0])
        return n

    def mixed_checks(self, scen: dict, before: dict, after: dict) -> list[dict]:
        """The mixed run's checks, beside the order counts: the stock arithmetic with cancels and
        hand-overs, every cancel and hand-over answered 200 held by MySQL (and no other), and the
        ledger identities of every (location, product) row the run touched."""
        checks = []

        def check(name, ok, detail):
            checks.append({"check": name, "ok": bool(ok), "detail": detail})

        ids = json.loads((self.raw / f"{scen['id']}.ids.json").read_text())
        placed = ids["placed"]
        m = scen["mixed"]
        d = {k: after[k] - before[k] for k in ("units_ordered", "cancelled_units", "rejected_units",
                                               "handed_units")}
        taken = before["available"] - after["available"]
        kept = d["units_ordered"] - d["cancelled_units"] - d["rejected_units"]
        check("units taken from available == units ordered − units cancelled − units rejected", taken == kept,
              f"available fell by {taken:,}; new order lines hold {d['units_ordered']:,} units, of orders "
              f"cancelled {d['cancelled_units']:,}, rejected {d['rejected_units']:,}")
        on_hand = lambda s: s["available"] + s["committed"] + s["reserved"]  # noqa: E731
        fell = on_hand(before) - on_hand(after)
        check("onHand fell by == units handed over (POS sales, collected, dispatched, shipped)",
              fell == d["handed_units"],
              f"onHand {on_hand(before):,} -> {on_hand(after):,} (−{fell:,}); handed over "
              f"{d['handed_units']:,} units; committed {before['committed']:,} -> {after['committed']:,}")
        cancelled = self.count_orders(ids["cancelled"], "status = 'CANCELLED'")
        all_cancelled = self.count_orders(placed, "status = 'CANCELLED'")
        check("cancels answered 200 == orders of the run CANCELLED in MySQL",
              cancelled == all_cancelled == len(ids["cancelled"]),
              f"answered 200 {len(ids['cancelled']):,}; MySQL holds {cancelled:,} of them CANCELLED, "
              f"{all_cancelled:,} of the {len(placed):,} orders placed")
        handed = self.count_orders(ids["handed_over"], "status = 'CONFIRMED' AND handed_over_at IS NOT NULL")
        all_handed = self.count_orders(placed, "handed_over_at IS NOT NULL")
        check("hand-overs answered 200 (collect, dispatch, ship) == orders of the run handed over in MySQL",
              handed == all_handed == len(ids["handed_over"]),
              f"answered 200 {len(ids['handed_over']):,}; MySQL holds {handed:,} of them handed over, "
              f"{all_handed:,} of the orders placed")
        refused = {k: v["requests"] - v["ok"] for k, v in m["steps"].items() if v["requests"] != v["ok"]}
        check("every cancel and step answered 200", not refused and not m["refused"],
              "all answered 200" if not refused else
              "not 200: " + ", ".join(f"{k} {v:,} ({m['steps'][k]['statuses']})" for k, v in refused.items()))
        checks.append(self.ledger_identities(before["last_movement"], scen["id"]))
        return checks

    def wait_holds_ended(self, limit_s: float) -> float | None:
        """Waits until MySQL holds no ACTIVE hold (the expiry job ends the expired ones, every
        second); answers the seconds waited, or None if some were still ACTIVE after limit_s."""
        t0 = time.monotonic()
        while True:
            if int(self.sql("SELECT COUNT(*) FROM holds WHERE status = 'ACTIVE'")[0][0]) == 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 > limit_s:
                return None
            time.sleep(0.25)

    def hold_states(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """MySQL's status and order id of each of `ids` it holds."""
        out = {}
        for i in range(0, len(ids), 500):
            chunk = ",".join(f"'{x}'" for x in ids[i:i + 500])
            for hid, status, oid in self.sql("SELECT id, status, COALESCE(order_id, '') FROM holds "
                                             f"WHERE id IN ({chunk})"):
                out[hid] = (status, oid)
        return out

    def checkout_checks(self, scen: dict, before: dict, after: dict) -> list[dict]:
        """The checkout run's checks, beside the order counts (conversions answered 201 == DB-lock
        orders gained): every hold answered 201 is in MySQL in the one state its checkout led
        to, and no other hold appeared; the converted holds' orders are CONFIRMED (in the answer
        and in MySQL); once every hold ended, the stock arithmetic (available fell by the units
        ordered, onHand did not move, reserved is 0 on every row the run touched) and the
        ledger identities."""
        checks = []

        def check(name, ok, detail):
            checks.append({"check": name, "ok": bool(ok), "detail": detail})

        ids = json.loads((self.raw / f"{scen['id']}.ids.json").read_text())
        c = scen["checkout"]
        want = {h: ("CONVERTED", o) for h, o in ids["converted"]}
        want.update({h: ("RELEASED", "") for h in ids["released"]})
        want.update({h: ("EXPIRED", "") for h in ids["expiring"]})
        refused = {r[0] for r in ids["refused"]}
        got = self.hold_states(list(want) + list(refused))
        wrong = [f"{h}: {got.get(h, ('missing', ''))[0]}, expected {w[0]}" for h, w in want.items()
                 if got.get(h) != w]
        wrong += [f"{h}: {got.get(h, ('missing', ''))[0]} after a refused step" for h in refused
                  if got.get(h, ("ACTIVE", ""))[0] == "ACTIVE"]
        answered = scen["ok"]
        gained = after["holds"] - before["holds"]
        check("every hold answered 201 is in MySQL in the one state its checkout led to "
              "(CONVERTED with its order, RELEASED, EXPIRED); no other hold appeared",
              not wrong and gained == answered == len(want) + len(refused) and after["active_holds"] == 0,
              f"holds answered 201 {answered:,}, MySQL gained {gained:,}; converted {len(ids['converted']):,}, "
              f"released {len(ids['released']):,}, expired {len(ids['expiring']):,}, refused a step "
              f"{len(refused):,}; ACTIVE after {after['active_holds']:,}; wrong {len(wrong):,}"
              + (": " + "; ".join(wrong[:3]) if wrong else ""))
        oids = [o for _, o in ids["converted"]]
        in_mysql = self.count_orders(oids, "status = 'CONFIRMED' AND path = 'DB_LOCK'")
        said = c.get("converted_status") or {}
        check("converted holds' orders CONFIRMED at once (in the answer and in MySQL)",
              in_mysql == len(oids) == said.get("CONFIRMED", 0),
              f"conversions answered 201 {len(oids):,}: answers said {said}; MySQL holds {in_mysql:,} "
              "of their orders CONFIRMED (DB_LOCK)")
        taken = before["available"] - after["available"]
        ordered = after["units_ordered"] - before["units_ordered"]
        on_hand = lambda s: s["available"] + s["committed"] + s["reserved"]  # noqa: E731
        touched_reserved = self.sql(
            "SELECT COUNT(*), COALESCE(SUM(s.reserved), 0) FROM stock s JOIN (SELECT DISTINCT location_id, "
            f"product_id FROM stock_movements WHERE id > {before['last_movement']}) t "
            "ON t.location_id = s.location_id AND t.product_id = s.product_id WHERE s.reserved <> 0")[0]
        check("once every hold ended: available fell by the units ordered, onHand did not move, "
              "reserved is 0 on every row the run touched",
              taken == ordered and on_hand(before) == on_hand(after) and int(touched_reserved[0]) == 0,
              f"available fell by {taken:,}; the converted orders hold {ordered:,} units; onHand "
              f"{on_hand(before):,} -> {on_hand(after):,}; reserved {before['reserved']:,} -> "
              f"{after['reserved']:,}, {int(touched_reserved[0]):,} touched rows with reserved ≠ 0")
        check("every conversion answered 201 and every release 200", not ids["refused"],
              "all did" if not ids["refused"] else
              f"{len(ids['refused']):,} did not; first: {ids['refused'][:3]}")
        checks.append(self.ledger_identities(before["last_movement"], scen["id"]))
        return checks

    def ledger_identities(self, since: int, sid: str) -> dict:
        """For every stock row with a ledger movement after id `since`: onHand (available +
        committed + reserved) == initial + Σ on_hand_delta, available == initial + Σ
        available_delta, committed == Σ committed_delta == the units of the location's orders
        that are persisted, CONFIRMED and not handed over (handed_over_at IS NULL), and reserved ==
        Σ reserved_delta == the units of its ACTIVE holds."""
        # A temporary table may be named once per statement, hence one per part. The load is
        # over and the consumer caught up, so nothing writes meanwhile.
        rows = self.sql(
            "CREATE TEMPORARY TABLE bench_touched (PRIMARY KEY (location_id, product_id)) AS "
            f"SELECT DISTINCT location_id, product_id FROM stock_movements WHERE id > {since}; "
            "CREATE TEMPORARY TABLE bench_ledger (PRIMARY KEY (location_id, product_id)) AS "
            "SELECT m.location_id, m.product_id, SUM(m.available_delta) a, SUM(m.committed_delta) c, "
            "SUM(m.on_hand_delta) h, SUM(m.reserved_delta) r FROM bench_touched t STRAIGHT_JOIN stock_movements m "
            "ON m.location_id = t.location_id AND m.product_id = t.product_id "
            "GROUP BY m.location_id, m.product_id; "
            "CREATE TEMPORARY TABLE bench_open (PRIMARY KEY (location_id, product_id)) AS "
            "SELECT o.location_id, l.product_id, SUM(l.quantity) u FROM orders o "
            "JOIN order_lines l ON l.order_id = o.id "
            "WHERE o.status = 'CONFIRMED' AND o.handed_over_at IS NULL "
            "GROUP BY o.location_id, l.product_id; "
            "CREATE TEMPORARY TABLE bench_held (PRIMARY KEY (location_id, product_id)) AS "
            "SELECT h.location_id, l.product_id, SUM(l.quantity) u FROM holds h "
            "JOIN hold_lines l ON l.hold_id = h.id WHERE h.status = 'ACTIVE' "
            "GROUP BY h.location_id, l.product_id; "
            "SELECT s.location_id, s.product_id, s.available + s.committed + s.reserved, "
            "s.initial_quantity + g.h, s.available, s.initial_quantity + g.a, s.committed, g.c, "
            "COALESCE(o.u, 0), s.reserved, g.r, COALESCE(k.u, 0) FROM bench_ledger g "
            "JOIN stock s ON s.location_id = g.location_id AND s.product_id = g.product_id "
            "LEFT JOIN bench_open o ON o.location_id = g.location_id AND o.product_id = g.product_id "
            "LEFT JOIN bench_held k ON k.location_id = g.location_id AND k.product_id = g.product_id;")
        bad = []
        for r in rows:
            loc, p, on_hand, on_hand_l, avail, avail_l, com, com_l, open_u, res, res_l, held = \
                r[:2] + [int(x) for x in r[2:]]
            if not (on_hand == on_hand_l and avail == avail_l and com == com_l == open_u
                    and res == res_l == held):
                bad.append(f"({loc},{p}): onHand {on_hand} vs initial + Σ on_hand_delta {on_hand_l}, "
                           f"available {avail} vs {avail_l}, committed {com} vs Σ committed_delta {com_l} "
                           f"vs open units {open_u}, reserved {res} vs Σ reserved_delta {res_l} "
                           f"vs units of active holds {held}")
        detail = f"{len(rows):,} touched rows, {len(bad):,} broken"
        if bad:
            (self.raw / f"{sid}.ledger-broken.txt").write_text("\n".join(bad) + "\n")
            detail += "; first: " + "; ".join(bad[:3]) + f" (all in raw/{sid}.ledger-broken.txt)"
        return {"check": "ledger identities of every touched (location, product): onHand == initial + "
                         "Σ on_hand_delta, available == initial + Σ available_delta, committed == "
                         "Σ committed_delta == units of open orders (CONFIRMED, handed_over_at IS NULL), "
                         "reserved == Σ reserved_delta == units of ACTIVE holds",
                "ok": bool(rows) and not bad, "detail": detail}

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
