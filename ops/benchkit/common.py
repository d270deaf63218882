"""Constants, targets, number formatting and the error type every part of the bench shares."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

HOT_PRODUCT = 1
HOT_STOCK = 10_000_000
CITY_HALL = (37.5665, 126.9780)  # Seoul City Hall
CEILING_PREFIX = "bench-ceiling:"
FLOOR_PREFIX = "floor:"
# The product whose detail the conditional (If-None-Match) detail runs read: not the hot product,
# so no order of the bench changes it.
ETAG_PRODUCT = 2
# The demo sales channel's key, which both seed profiles give the channel `web`
# (persistence/src/catalog/seed.rs DEMO_CHANNEL_KEY): the shop's orders, cancels, order reads and
# holds need a channel key unless the service runs with SHOP_AUTH=off.
DEMO_CHANNEL_KEY = "sfc_demo_web"
# The repository's root (this file is ops/benchkit/common.py).
ROOT = Path(__file__).resolve().parent.parent.parent

# Durations (seconds) and rates of the two modes. The soak's rate and length can be changed with
# --soak-rate and --soak-seconds; soak_before/soak_after are the RSS samples around its load.
MODES = {
    "quick": {
        "hot": 5, "fixed": 5, "fixed_rate_redis": 2_000, "spread": 3, "store": 3, "mixed": 5, "reads": 2,
        "checkout": 5, "checkout_rate": 200, "ceiling": 2, "drain_limit": 60, "webhook_drain_limit": 300, "soak": 10, "soak_before": 5, "soak_after": 10,
    },
    "full": {
        "hot": 20, "fixed": 60, "fixed_rate_redis": 10_000, "spread": 20, "store": 20, "mixed": 20, "reads": 20,
        "checkout": 30, "checkout_rate": 1_000, "ceiling": 10, "drain_limit": 300, "webhook_drain_limit": 300, "soak": 600, "soak_before": 15, "soak_after": 30,
    },
}
SOAK_RATE = 5_000
# The mixed scenario: tasks placing online orders, tasks cancelling and stepping them, and of the
# accepted orders the share cancelled and the share taken through their steps (the rest stay open).
MIXED = {"order_conns": 32, "action_conns": 16, "cancel_share": 0.2, "fulfil_share": 0.5}
# The checkout scenario: connections at most, the share of checkouts converted and released (the
# rest expire), the ttl of the holds converted or released and of those left to expire (the least
# the service takes), and how long after the load the expired ones may take to end.
CHECKOUT = {"conns": 256, "convert_share": 0.9, "release_share": 0.05, "ttl_s": 300, "expire_ttl_s": 10,
            "end_limit_s": 30}
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


class FixedOnlyDone(Exception):
    """The one scenario of --fixed-only has run."""
