"""Groups the service's perf samples (the text of `perf script`, with call stacks) by what the
stack was doing, for ops/profile.

Each sample counts once, in the first group (in the order below) that any frame of its stack
matches; what matches none is "other". So a group holds what happens inside it and below it: the
consumer's share includes its MySQL client and JSON work, the reservation's its Redis command.
"""

import sys
from collections import Counter

GROUPS = [
    ("the consumer: events to MySQL", ["sf_persistence::consumer::"]),
    ("scheduled jobs, metrics refresh", ["sf_persistence::jobs", "reconcile::", "Metrics::refresh"]),
    ("the reservation: reserve.lua call", ["Reserve::run", "Invocation::run", "redis_stock::invoke",
                                           "GuardedConn"]),
    ("Redis client: connection tasks (replies, writes)", ["redis::aio", "redis::parser", "combine::"]),
    ("routing: candidates, geodesic distance", ["sf_routing::", "geographiclib"]),
    ("order record: build, JSON for Redis", ["build_order", "formats::", "OrderRecord"]),
    ("order answer: JSON", ["Rendered", "Accepted::new", "Created::new", "serde_json::ser"]),
    ("request body: parse and validate (poem-openapi)", ["ParseFromJSON", "serde_json::de",
                                                         "serde_json::value::de", "ParsePayload"]),
    ("place_redis: the rest (claims, keys, deadlines)", ["place_redis", "decide_redis"]),
    ("metrics: observe", ["Metrics::observe", "prometheus::"]),
    ("the write's own task (spawn)", ["ApiState::write", "task::spawn"]),
    # Inclusive of what runs below the middleware that the groups above do not name (the
    # operation's own glue, allocations).
    ("poem, poem-openapi and the middleware (edge, metrics)", ["poem_openapi::", "poem::route",
                                                                "poem::endpoint", "metrics::Track",
                                                                "edge::Edge"]),
    ("hyper: HTTP/1 and socket I/O", ["hyper::"]),
    ("tokio: scheduler, timers, I/O driver", ["tokio::runtime"]),
]


def main(path: str) -> None:
    with open(path, encoding="utf-8", errors="replace") as f:
        samples = f.read().split("\n\n")
    counts: Counter = Counter()
    total = 0
    for sample in samples:
        stack = sample.split("\n")[1:]
        if not any(line.strip() for line in stack):
            continue
        total += 1
        text = "\n".join(stack)
        for name, patterns in GROUPS:
            if any(p in text for p in patterns):
                counts[name] += 1
                break
        else:
            counts["other: kernel, allocator, unresolved frames"] += 1
    if total == 0:
        sys.exit("no samples with stacks")
    print(f"{total} samples")
    for name, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
