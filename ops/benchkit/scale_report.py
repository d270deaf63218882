"""The scale run's report: each figure judged against its goal (results["figures"]), report.md with
one section per figure, report.json, and the charts (growth.png: each cost against stock rows;
latency.png: the orders of the load figures)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .common import fmt_int, fmt_mib, fmt_ms
from .scale import GOALS, HEALTH_CHECK_MS, NEAR_RADIUS_KM, ORDER_DEADLINE_MS, SCALE_MODES, SIZES

if TYPE_CHECKING:
    from .scale import ScaleBench

MIB = 1024 * 1024


def verdict(ok) -> str:
    return "not available" if ok is None else ("met" if ok else "NOT met")


def both(*oks):
    """Not met when a part is not; else not available when a part could not be judged; else met."""
    if any(o is False for o in oks):
        return False
    return None if any(o is None for o in oks) else True


def conn_errors(load: dict) -> int:
    return sum(n for k, n in (load.get("error_detail") or {}).items() if not k.startswith("HTTP "))


def status_text(statuses: dict | None) -> str:
    return ", ".join(f"{k} × {v:,}" for k, v in (statuses or {}).items()) or "–"


def load_line(load: dict) -> str:
    return (f"{fmt_int(load.get('requests'))} requests ({status_text(load.get('statuses'))}"
            + (f"; connection errors {conn_errors(load):,}" if conn_errors(load) else "")
            + f"), p50 {fmt_ms(load.get('p50_ms'))} ms, p99 {fmt_ms(load.get('p99_ms'))} ms, "
            f"p99.9 {fmt_ms(load.get('p999_ms'))} ms, max {fmt_ms(load.get('max_ms'))} ms")


def evaluate(bench: ScaleBench):
    """results["figures"]: one entry per figure, {id, title, goal, met, lines}."""
    r = bench.results
    sizes = r.get("sizes", {})
    big = r.get("meta", {}).get("load_size")
    target = bench.target
    L = sizes.get(big) or {}
    # Without the target data set (its profile missing), the largest one stands in.
    t = sizes.get(target) or L
    tname = target if target in sizes else big
    figs = r["figures"]
    quick = bench.quick
    at = f" (at the {'quick' if quick else 'full'} size, `{target}`)" if quick else ""

    def add(fid, title, goal, met, lines):
        figs.append({"id": fid, "title": title, "goal": goal, "met": met, "result": verdict(met), "lines": lines})

    # Seeding.
    seeds = r.get("seeds", {})
    rec = seeds.get(target) or {}
    lines = []
    for n, s in seeds.items():
        if not s.get("available"):
            lines.append(f"`{n}`: not available — {s.get('error')}")
            continue
        how = (f"the figure of record from when it was seeded, {s.get('seeded_at')} at commit {s.get('commit')}; "
               "reused this run" if s.get("reused") else "seeded this run")
        lines.append(f"`{n}` (`--profile {s['profile']}{' ' + ' '.join(s['args']) if s['args'] else ''}`): "
                     f"{fmt_int(s.get('locations'))} locations, {fmt_int(s.get('products'))} products, "
                     f"{fmt_int(s.get('stock_rows'))} stock rows in **{s['seconds']:.1f} s** ({how})")
    add("seed", "Seeding the retail data set", f"`stock-flow seed --profile retail` ≤ {GOALS['seed_s'] // 60} min{at}",
        (rec["seconds"] <= GOALS["seed_s"]) if rec.get("available") else None, lines)

    # Warm-up.
    w = L.get("warmup") or {}
    o = w.get("orders") or {}
    lines = [f"data set `{big}`; the service's watcher checks every {HEALTH_CHECK_MS} ms (`HEALTH_CHECK_MS`)",
             (f"every location's epoch marker back {w.get('markers_s')} s after FLUSHALL (Redis then held "
              f"{fmt_int(w.get('keys_at_markers'))} keys); at least as many keys as stock rows "
              f"({fmt_int(w.get('keys_expected'))}) back **{w.get('seconds')} s** after it" if w.get("seconds") else
              f"every location's epoch marker back {w.get('markers_s')} s after FLUSHALL (Redis then held "
              f"{fmt_int(w.get('keys_at_markers'))} keys), but fewer keys than stock rows "
              f"{SCALE_MODES[bench.mode]['warmup_limit_s']} s after that")
             if w else "not measured"]
    ok_orders = None
    if o and not o.get("error"):
        lines.append(f"orders sent from the FLUSHALL on, at {o['rate']:,}/s for {o['window_s']} s over every location "
                     f"(Redis path): {load_line(o)}")
        ok_orders = conn_errors(o) == 0 and o.get("max_ms") is not None and o["max_ms"] <= ORDER_DEADLINE_MS
        lines.append(f"deadline: every order answered (no connection error) within {ORDER_DEADLINE_MS:,} ms "
                     "(`REDIS_COMMAND_TIMEOUT_MS` + `DB_COMMAND_TIMEOUT_MS`, their defaults)")
    elif o.get("error"):
        lines.append(f"orders: the load generator failed: {o['error']}")
    add("warmup", "Warm-up after Redis lost its data",
        f"all keys back in Redis ≤ {GOALS['warmup_s']} s after FLUSHALL while orders flow; those orders answered "
        "within their deadline",
        both(w.get("seconds") is not None and w["seconds"] <= GOALS["warmup_s"], ok_orders) if w else None, lines)

    # Reconciliation.
    rc, rl = L.get("reconcile") or {}, L.get("reconcile_load") or {}
    lines = [f"data set `{big}`: one pass, alone: **{rc.get('seconds')} s**, {fmt_int(rc.get('keysChecked'))} keys "
             f"checked, {rc.get('keysRepaired')} repaired, {rc.get('ledgerMismatches')} ledger mismatches"
             if rc else "not measured"]
    ratio_ok = None
    if rl:
        lines.append(f"{rl['rate']:,} orders/s over every location for {rl['seconds']} s without a pass: {load_line(rl['without'])}")
        lines.append(f"the same during a pass ({rl['pass'].get('seconds')} s, {fmt_int(rl['pass'].get('keysChecked'))} keys "
                     f"checked, {rl['pass'].get('keysRepaired')} repaired): {load_line(rl['during'])}")
        if rl.get("p99_ratio") is not None:
            lines.append(f"p99 during ÷ without: **{rl['p99_ratio']:.2f}**")
            ratio_ok = rl["p99_ratio"] <= GOALS["reconcile_p99_ratio"]
    add("reconcile", "One full reconciliation pass",
        f"≤ {GOALS['reconcile_s'] // 60} min; order p99 during the pass ≤ {GOALS['reconcile_p99_ratio']:g} × the same "
        "load without it",
        both(None if not rc else rc["seconds"] <= GOALS["reconcile_s"], ratio_ok), lines)

    # Idle.
    idle = L.get("idle") or {}
    after = L.get("idle_after") or {}
    lines = []
    idle_ok = gauge_ok = None
    if idle:
        lines.append(f"data set `{big}`, {idle['streams']:,} location streams: service CPU **{idle['service_cpu_pct']}%** "
                     f"of one core over {idle['seconds']} s with no traffic (after the start-up load; /proc/<pid>/stat)")
        idle_ok = idle["service_cpu_pct"] is not None and idle["service_cpu_pct"] <= GOALS["idle_cpu_pct"]
        lines.append(f"`stockflow_cluster_consumer_backlog_events` on /metrics {idle['gauge']}, sum of the streams' "
                     f"XLEN {idle['xlen_sum']} at rest")
        gauge_ok = idle["gauge"] is not None and idle["gauge"] == idle["xlen_sum"]
    gb = L.get("gauge_backlog") or {}
    if gb.get("readings"):
        lines.append(f"with orders left unpersisted (MariaDB paused with SIGSTOP while {gb['sent']} Redis-path orders "
                     f"were placed: {status_text(gb.get('statuses'))}): gauge {gb['gauge']}, XLEN sum "
                     f"**{gb['xlen_sum']}** (readings 2.5 s apart, gauge then XLEN: {gb['readings']})")
        if gb["xlen_sum"]:
            gauge_ok = gb["gauge"] is not None and gb["gauge"] == gb["xlen_sum"]
    elif gb.get("error"):
        lines.append(f"with orders left unpersisted: not measured ({gb['error']})")
    if after:
        lines.append(f"again after the load figures: {after['service_cpu_pct']}% over {after['seconds']} s; gauge "
                     f"{after['gauge']}, XLEN sum {after['xlen_sum']}")
        idle_ok = idle_ok and after["service_cpu_pct"] is not None and after["service_cpu_pct"] <= GOALS["idle_cpu_pct"]
    if quick and idle:
        lines.append(f"quick run: {idle['seconds']} s of idle instead of the goal's ≥ {GOALS['idle_s']} s")
    add("idle", "Consumer with every location stream, no traffic",
        f"service CPU ≤ {GOALS['idle_cpu_pct']:g}% of one core over ≥ {GOALS['idle_s']} s idle; the backlog gauge "
        "equals the streams' lengths", both(idle_ok, gauge_ok) if idle else None, lines)

    # Fixed rate.
    fx = L.get("fixed") or {}
    lines = []
    fixed_ok = None
    if fx:
        lines.append(f"data set `{big}`: {fx['rate']:,} orders/s for {fx['duration_s']} s, bodies spread over every "
                     f"location (PICKUP at a store, NORMAL near a warehouse), 256 connections, latency-corrected")
        lines.append(f"{fmt_int(fx['ok'])} ok, {fmt_int(fx['conflict'])} × 409, {fmt_int(fx['errors'])} errors; "
                     f"p50 {fmt_ms(fx['p50_ms'])} ms, **p99 {fmt_ms(fx['p99_ms'])} ms, p99.9 {fmt_ms(fx['p999_ms'])} ms**")
        ca = fx.get("confirm_after_s")
        lines.append("every order CONFIRMED " + ("never (backlog did not drain)" if ca is None else f"**{ca:.2f} s** after the load"))
        lines.append(f"invariant checks: {'PASS' if fx.get('passed') else 'FAILED'} — "
                     + "; ".join(f"{c['check']}: {'ok' if c['ok'] else 'FAILED ' + c['detail']}" for c in fx.get("checks", [])))
        fixed_ok = (fx["p99_ms"] is not None and fx["p99_ms"] <= GOALS["p99_ms"] and fx["p999_ms"] is not None
                    and fx["p999_ms"] <= GOALS["p999_ms"] and ca is not None and ca <= GOALS["confirm_s"])
        if fx["rate"] != GOALS["fixed_rate"]:
            lines.append(f"quick run: at {fx['rate']:,}/s, not the goal's {GOALS['fixed_rate']:,}/s")
    add("fixed", "Orders over every location at a fixed rate",
        f"{GOALS['fixed_rate']:,} orders/s (Redis path): p99 ≤ {GOALS['p99_ms']:g} ms, p99.9 ≤ {GOALS['p999_ms']:g} ms, "
        f"all CONFIRMED within {GOALS['confirm_s']:g} s", fixed_ok, lines)

    # Memory.
    mi, rd = t.get("mirror") or {}, t.get("redis") or {}
    lines = []
    mem_ok = None
    if mi:
        lines.append(f"data set `{tname}`: service RSS **{fmt_mib(mi.get('rss_mib'))} MiB** after reading the detail of "
                     f"all {fmt_int(mi['products'])} products once through `GET /api/redis/products/{{id}}` "
                     f"({status_text(mi['statuses'])}; {fmt_mib(mi.get('rss_before_mib'))} MiB before)")
        lines.append(f"Redis `used_memory` {rd['used_loaded'] / MIB:,.1f} MiB loaded, {rd['used_flushed'] / MIB:,.1f} MiB "
                     f"after FLUSHALL, over {fmt_int(t['stock_rows'])} stock keys: **{rd['bytes_per_stock_key']:.1f} bytes "
                     f"per stock key** (the locations' own keys included; DBSIZE was {rd['dbsize']:,})")
        mem_ok = (mi.get("rss_mib") is not None and mi["rss_mib"] <= GOALS["rss_mib"]
                  and rd["bytes_per_stock_key"] <= GOALS["redis_bytes_per_key"])
    add("memory", "Memory with the whole catalogue loaded",
        f"service RSS ≤ 1 GiB (stock mirror filled); Redis memory ≤ {GOALS['redis_bytes_per_key']} bytes per stock "
        f"key{at}",
        mem_ok, lines)

    # Product detail.
    d, dr = t.get("detail") or {}, L.get("detail_rate") or {}
    lines = []
    parts = []
    if d:
        lines.append(f"data set `{tname}`, product {d['product']}, {d['locations']:,} locations, "
                     f"{d['locations_in_radius']} of them within {NEAR_RADIUS_KM} km of the store used for `near`")
        for src in ("redis", "mysql"):
            x = d[src]
            u = x.get("unfiltered") or {}
            route = "/api/redis/products/{id}" if src == "redis" else "/api/products/{id}"
            lines.append(f"`GET {route}` unfiltered: {fmt_int(u.get('bytes'))} bytes, {u.get('entries')} entries")
            parts.append(u.get("entries") is not None and u["entries"] <= 100)
            if x.get("near_available"):
                n = x.get("near") or {}
                lines.append(f"`GET {route}?near=…&radiusKm={NEAR_RADIUS_KM}`: HTTP {n.get('status')}, "
                             f"{fmt_int(n.get('bytes'))} bytes, {n.get('entries')} entries")
                parts.append(n.get("status") == 200 and n.get("entries") is not None
                             and n["entries"] <= d["locations_in_radius"])
            else:
                lines.append(f"`near` on `{route}`: not available (not among its query parameters: "
                             f"{', '.join(x.get('params') or []) or 'none'})")
                parts.append(None)
    if dr:
        live = dr["live"]["ok_per_s"]
        lines.append(f"data set `{big}`, closed loop, 64 connections: `GET /health/live` {live:,.0f} req/s")
        for src in ("redis", "mysql"):
            x = dr[src]
            frac = x["ok_per_s"] / live if live else None
            lines.append(f"{src} detail {'near a random store' if x['near'] else '(unfiltered)'}, random product: "
                         f"{x['ok_per_s']:,.0f} req/s = **{frac:.2f} × /health/live**, {fmt_int(x['bytes_per_answer'])} "
                         f"bytes per answer, {x['errors']:,} errors")
            parts.append(frac is not None and frac >= GOALS["detail_over_live"] and x["near"] and x["errors"] == 0
                         if x["near"] else None)
    add("detail", "Product detail for the shop",
        f"`near=<lat>,<lon>&radiusKm=<r>` returns only nearby locations' stock, at ≥ {GOALS['detail_over_live']:g} × "
        "the rate of `GET /health/live` (closed loop, 64 connections); the unfiltered body bounded (never every "
        "location by default)", both(*parts) if parts else None, lines)

    # CPU per persisted order.
    p = L.get("persist") or {}
    lines = []
    if p:
        lines.append(f"data set `{big}`, from the catch-up after `{p['source']}` ({fmt_int(p['events'])} events left "
                     f"when the load ended, persisted in {p['seconds']} s): service (the consumer) **{p['service']} µs**, "
                     f"MariaDB {p['mariadb']} µs, Redis {p['redis']} µs per order; total {p['total']} µs")
    elif L:
        lines.append("no catch-up left enough events behind (the consumer kept up) to measure")
    add("persist", "CPU per persisted Redis-path order",
        f"the consumer's share (the service's CPU while only it works, per event) ≤ {GOALS['persist_service_us']:g} µs",
        None if not p or p.get("service") is None else p["service"] <= GOALS["persist_service_us"], lines)


GROWTH = [
    ("seed_s", "seed, s", lambda f: (f.get("seed") or {}).get("seconds")),
    ("startup_s", "start-up load into Redis, s", lambda f: f.get("startup_load_s")),
    ("warmup_s", "warm-up after FLUSHALL, s", lambda f: (f.get("warmup") or {}).get("seconds")),
    ("reconcile_s", "reconciliation pass, s", lambda f: (f.get("reconcile") or {}).get("seconds")),
    ("idle_cpu", "idle service CPU, % of a core", lambda f: (f.get("idle") or {}).get("service_cpu_pct")),
    ("rss_mib", "service RSS, MiB", lambda f: (f.get("mirror") or {}).get("rss_mib")),
    ("redis_mib", "Redis used_memory loaded, MiB",
     lambda f: (f.get("redis") or {}).get("used_loaded", 0) / MIB or None),
    ("detail_bytes", "unfiltered detail body, bytes",
     lambda f: (((f.get("detail") or {}).get("redis") or {}).get("unfiltered") or {}).get("bytes")),
    ("detail_entries", "unfiltered detail entries",
     lambda f: (((f.get("detail") or {}).get("redis") or {}).get("unfiltered") or {}).get("entries")),
]


def growth_chart(plt, bench: ScaleBench) -> tuple[str, str] | None:
    sizes = [(n, f) for n, f in bench.results.get("sizes", {}).items() if f.get("stock_rows")]
    if not sizes:
        return None
    sizes.sort(key=lambda x: x[1]["stock_rows"])
    fig, axes = plt.subplots(3, 3, figsize=(13, 10))
    for ax, (_, label, get) in zip(axes.flat, GROWTH):
        pts = [(f["stock_rows"], get(f), n) for n, f in sizes]
        pts = [(x, y, n) for x, y, n in pts if y is not None]
        ax.set_xscale("log")
        if pts:
            ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], marker="o", color="#2e75b6")
            for x, y, n in pts:
                ax.annotate(f"{n}\n{y:,.0f}" if y >= 100 else f"{n}\n{y:.3g}", (x, y), fontsize=7, ha="center", va="bottom")
            if all(y > 0 for _, y, _ in pts):
                ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * (3 if ax.get_yscale() == "log" else 1.2))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("stock rows (log scale)", fontsize=8)
        ax.grid(which="both", alpha=0.3)
    fig.suptitle(f"Stock Flow: costs against catalogue size ({bench.mode} run)")
    fig.tight_layout()
    fig.savefig(bench.out / "growth.png", dpi=100)
    plt.close(fig)
    return "growth.png", "Each cost against stock rows"


def latency_chart(plt, bench: ScaleBench) -> tuple[str, str] | None:
    L = bench.results.get("sizes", {}).get(bench.results.get("meta", {}).get("load_size")) or {}
    groups = []
    if (L.get("warmup") or {}).get("orders", {}).get("p99_ms") is not None:
        groups.append(("during the warm-up", L["warmup"]["orders"]))
    rl = L.get("reconcile_load") or {}
    if rl:
        groups += [("without a reconciliation pass", rl["without"]), ("during a pass", rl["during"])]
    if L.get("fixed"):
        groups.append((f"fixed {L['fixed']['rate']:,}/s", L["fixed"]))
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.5))
    w = 0.26
    for i, (key, lab, alpha) in enumerate((("p50_ms", "p50", 0.45), ("p99_ms", "p99", 0.7), ("p999_ms", "p99.9", 1.0))):
        ax.bar([j + (i - 1) * w for j in range(len(groups))], [max(g.get(key) or 0, 0.001) for _, g in groups], w,
               color="#2e75b6", alpha=alpha, label=lab, edgecolor="black", linewidth=0.3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=8)
    ax.axhline(GOALS["p99_ms"], color="#c0504d", linestyle="--", linewidth=1)
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title("Redis-path orders over every location (latency-corrected)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(bench.out / "latency.png", dpi=110)
    plt.close(fig)
    return "latency.png", "Order latency in the load figures (dashed: the 25 ms p99 goal)"


def write_scale_report(bench: ScaleBench):
    r = bench.results
    made = []
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        made = [c for c in (growth_chart(plt, bench), latency_chart(plt, bench)) if c]
    except ImportError as e:
        r["notes"].append(f"charts skipped: {e}")
    (bench.out / "report.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    m, meta = r["machine"], r["meta"]
    sc = SCALE_MODES[bench.mode]
    out = []
    w = out.append
    el = meta.get("elapsed_s") or 0
    w(f"# Stock Flow scale run: `ops/bench --scale {r['scale']}{' --quick' if bench.quick else ''}`")
    w("")
    w(f"{meta['started']} to {meta['finished']} ({el // 60} min {el % 60} s), commit {m['commit']}. "
      f"{m['cpu_model']}, {m['nproc']} cores, {m['memory_gib']} GiB; MariaDB {m['mariadb']}; {m['redis']}; "
      f"load generator {m['load_generator']}.")
    w("")
    met = sum(1 for f in r["figures"] if f["met"] is True)
    missed = sum(1 for f in r["figures"] if f["met"] is False)
    na = sum(1 for f in r["figures"] if f["met"] is None)
    w(f"**Goals: {met} met, {missed} not met, {na} not available.**"
      + (f" The run broke off: {meta['error']}." if meta.get("error") else ""))
    if bench.failed:
        w("")
        w("FAILED: " + "; ".join(bench.failed))
    w("")
    w("## How")
    w("")
    names = ", ".join(f"`{n}` ({' '.join(['--profile', SIZES[n]['profile']] + SIZES[n]['args'])}, database "
                      f"`{SIZES[n]['db']}`)" for n in r.get("seeds", {}))
    w(f"The data sets ({names}) live on a private MariaDB under `{bench.data_dir}`, seeded once and reused while "
      "their row counts match the seed record beside them (`seed-<database>.json`, which keeps the seed's time "
      "of record). Each gets a fresh service on an emptied Redis (appendfsync always) in turn, with "
      f"`HEALTH_CHECK_MS={HEALTH_CHECK_MS}` (how often its watcher checks the locations' epoch markers) and "
      "the scheduled reconciliation moved out of the way. On each: the time from the service's start until "
      "every location's epoch marker is in Redis; the product detail's body; every product's detail read "
      "once through the Redis route, then the service's RSS and Redis's `used_memory`; "
      f"{sc['idle_s']} s idle (service CPU, backlog gauge); FLUSHALL and the time until every epoch marker is "
      "back and Redis holds as many keys as there are stock rows; one reconciliation pass (`POST /api/admin/reconciliation/runs`, which answers when it is done). "
      f"On the largest data set (`{meta.get('load_size')}`) also: orders at {sc['warmup_rate']:,}/s during the "
      f"warm-up; {sc['recon_rate']:,} orders/s without and during a reconciliation pass; "
      f"{sc['fixed_rate']:,} orders/s for {sc['fixed_s']} s (the bench's write run: snapshot, load, catch-up, "
      "invariant checks); the detail's rate against `GET /health/live` for "
      f"{sc['reads_s']} s each; idle again. Orders go to a random one of every location: a PICKUP at a "
      "store, or a NORMAL order from ~1 km off a warehouse; one random product each.")
    w("")
    for f in r["figures"]:
        w(f"## {f['title']}")
        w("")
        w(f"Goal: {f['goal']}. **{f['result']}**.")
        w("")
        for line in f["lines"]:
            w(f"- {line}")
        w("")
    w("## Growth with the catalogue")
    w("")
    sizes = sorted(r.get("sizes", {}).items(), key=lambda x: x[1].get("stock_rows") or 0)
    if sizes:
        w("| cost | " + " | ".join(f"`{n}` ({fmt_int(f.get('stock_rows'))} rows)" for n, f in sizes) + " |")
        w("|---|" + "---:|" * len(sizes))
        for _, label, get in GROWTH:
            cells = []
            for _, f in sizes:
                v = get(f)
                cells.append("–" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}")
            w(f"| {label} | " + " | ".join(cells) + " |")
        w("")
    for name, title in made:
        w(f"![{title}]({name})")
        w("")
    if r["notes"]:
        w("## Notes")
        w("")
        for n in r["notes"]:
            w(f"- {n}")
        w("")
    w("Files: `report.json` (every figure), `growth.png`, `latency.png`, `raw/` (load generator outputs), "
      "`seed-*.log`, `service-*.log`.")
    (bench.out / "report.md").write_text("\n".join(out) + "\n")
