"""The report's charts (matplotlib, from the venv ops/bench prepares): throughput and latency per
scenario and path, and the service's RSS during the memory soak."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Bench

SCENARIO_ROWS = [
    ("hot64", "hot product, 64 conn.", "hot 64"), ("hot256", "hot product, 256 conn.", "hot 256"),
    ("fixed", "fixed rate", "fixed rate"), ("spread", "spread", "spread"),
    ("store", "store level (all)", "store online"), ("mixed", "mixed (orders + POS)", "mixed orders"),
    ("checkout", "checkout (holds)", "checkout holds"),
    ("soak", "memory soak", "soak"),
    ("reads-list", "reads: list", "list"), ("reads-detail", "reads: detail", "detail"),
    ("reads-list-inm", "reads: list, If-None-Match", "list INM"),
    ("reads-detail-inm", "reads: detail, If-None-Match", "detail INM"),
]

COLOURS = {"db": "#c0504d", "redis": "#2e75b6"}
NAMES = {"db": "DB-lock / MySQL", "redis": "Redis"}


def charts(bench: Bench) -> list[tuple[str, str]]:
    """Draws the charts into the output directory; answers (file name, title) of each one drawn.
    Without matplotlib, none, with a note saying so."""
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
    made.append(throughput_chart(plt, bench, scen, rows))
    made.append(latency_chart(plt, bench, scen, rows))
    rss = rss_chart(plt, bench, scen)
    if rss:
        made.append(rss)
    return made


def _get(scen: dict, k: str, path: str) -> dict | None:
    """The scenario of row `k` on `path` (a read row's "db" is its MySQL run)."""
    if k.startswith("reads"):
        return scen.get(f"{k}-{'mysql' if path == 'db' else 'redis'}")
    return scen.get(f"{k}-{path}")


def throughput_chart(plt, bench: Bench, scen: dict, rows: list) -> tuple[str, str]:
    """throughput.png: successful answers per second, per scenario and path, with the ceiling, the
    floor and /health/live as lines."""
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.38
    for i, path in enumerate(("db", "redis")):
        xs, ys = [], []
        for j, (k, _, _) in enumerate(rows):
            s = _get(scen, k, path)
            if s:
                xs.append(j + (i - 0.5) * width)
                ys.append(s.get("total_ok_per_s", s["ok_per_s"]))
        bars = ax.bar(xs, ys, width, label=NAMES[path], color=COLOURS[path])
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
    return ("throughput.png", "Throughput per scenario and path")


def latency_chart(plt, bench: Bench, scen: dict, rows: list) -> tuple[str, str]:
    """latency.png: p50, p99 and p99.9 per scenario and path."""
    groups = []
    for k, _, short in rows:
        for path in ("db", "redis"):
            s = _get(scen, k, path)
            if s:
                who = "Redis" if path == "redis" else ("MySQL" if k.startswith("reads") else "DB-lock")
                groups.append((f"{short}\n{who}", s, path))
    fig, ax = plt.subplots(figsize=(max(11, len(groups) * 0.9), 6))
    pcts = [("p50_ms", "p50", 0.45), ("p99_ms", "p99", 0.7), ("p999_ms", "p99.9", 1.0)]
    w = 0.26
    for i, (key, lab, alpha) in enumerate(pcts):
        xs = [j + (i - 1) * w for j in range(len(groups))]
        ys = [max(g[1].get(key) or 0, 0.001) for g in groups]
        cs = [COLOURS[g[2]] for g in groups]
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
    return ("latency.png", "Latency percentiles per scenario and path")


def rss_chart(plt, bench: Bench, scen: dict) -> tuple[str, str] | None:
    """rss.png: the service's RSS during the memory soak; None without its samples."""
    soak = scen.get("soak-redis")
    rss = (soak or {}).get("rss") or {}
    if not (rss.get("samples") and rss.get("load_start_s") is not None):
        return None
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
    return ("rss.png", "Service RSS during the memory soak")
