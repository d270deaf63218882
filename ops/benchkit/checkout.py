"""The checkout scenario's load generator: checkouts at a fixed rate (open loop), each a hold
(`POST /api/holds`) and then, on the same connection, its conversion into an order
(`POST /api/holds/{id}/order`), its release (`POST /api/holds/{id}/release`), or nothing: the hold
is left to expire. The next request needs the id the hold's answer carried, so this one drives it,
like benchkit/mixed.py, whose connection, tally and timing helpers it uses.

Run as `python -m benchkit.checkout CONFIG` from ops/ (the driver does), CONFIG a JSON file:

  base            the service's URL (http://host:port)
  duration        seconds of checkouts started; the conversions and releases of the last ones
                  finish after it
  rate            checkouts started per second (open loop: checkout i is due at start + i/rate)
  conns           connections at most; a checkout due while all are busy waits for one, and its
                  hold's latency counts from when it was due (latency-corrected)
  bodies          JSON lines: {"kind": ..., "body": {...}} (the mixed scenario's order bodies)
  convert_share   share of checkouts converted
  release_share   share released (the rest expire)
  ttl_s           ttlSeconds of the holds converted or released
  expire_ttl_s    ttlSeconds of the holds left to expire (the least the service takes, 10)
  seed            random seed
  ids_out         where the ids go (JSON): converted [[holdId, orderId], ...], released,
                  expiring, refused (holds whose conversion or release was not answered 2xx)

Every request sends the sales channel's key (holds are the shop's routes) from SF_CHANNEL_KEY
(default sfc_demo_web, the demo channel's), never from the file.

What each checkout does is decided before its hold is placed (the hold's ttl depends on it).
Prints one JSON object: the holds', conversions' and releases' figures in the shape of the other
load generators' (counts per outcome, percentiles, throughput), the conversions answered
CONFIRMED, and how late the last checkouts started."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import urllib.parse
from collections import Counter

from .common import DEMO_CHANNEL_KEY
from .mixed import ERRORS, Conn, Tally, timed


async def run(cfg: dict) -> dict:
    u = urllib.parse.urlsplit(cfg["base"])
    host, port = u.hostname, u.port or 80
    rnd = random.Random(cfg.get("seed", 1))
    bodies = []
    with open(cfg["bodies"]) as f:
        for line in f:
            if line.strip():
                bodies.append(json.loads(line)["body"])
    holds, converts, releases = Tally(), Tally(), Tally()
    decided: Counter = Counter()
    confirmed = Counter()
    ids = {"converted": [], "released": [], "expiring": [], "refused": []}
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(cfg["conns"]):
        pool.put_nowait(Conn(host, port))
    rate, n = float(cfg["rate"]), int(float(cfg["rate"]) * float(cfg["duration"]))
    lateness = []
    channel = os.environ.get("SF_CHANNEL_KEY") or DEMO_CHANNEL_KEY

    def body_of(ttl: int) -> bytes:
        return json.dumps(dict(rnd.choice(bodies), ttlSeconds=ttl), separators=(",", ":")).encode()

    async def checkout(due: float, what: str, body: bytes):
        conn = await pool.get()
        try:
            lateness.append(time.perf_counter() - due)
            # The hold's latency counts from when it was due, not from when a connection was free.
            try:
                status, data = await conn.request("POST", "/api/holds", body, channel)
            except ERRORS as e:
                holds.failed(e)
                return
            holds.answered(status, due, time.perf_counter())
            if status != 201:
                return
            hid = json.loads(data)["holdId"]
            if what == "expire":
                ids["expiring"].append(hid)
                return
            if what == "convert":
                st, data = await timed(conn, converts, "POST", f"/api/holds/{hid}/order", None, channel)
                if st == 201:
                    o = json.loads(data)
                    confirmed[o.get("status")] += 1
                    ids["converted"].append([hid, o["orderId"]])
                    return
            else:
                st, _ = await timed(conn, releases, "POST", f"/api/holds/{hid}/release", None, channel)
                if st == 200:
                    ids["released"].append(hid)
                    return
            ids["refused"].append([hid, what, st])
        finally:
            pool.put_nowait(conn)

    start = time.perf_counter()
    tasks = []
    for i in range(n):
        due = start + i / rate
        x = rnd.random()
        what = ("convert" if x < cfg["convert_share"] else
                "release" if x < cfg["convert_share"] + cfg["release_share"] else "expire")
        decided[what] += 1
        body = body_of(cfg["expire_ttl_s"] if what == "expire" else cfg["ttl_s"])
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(checkout(due, what, body)))
    started_all = time.perf_counter()
    await asyncio.gather(*tasks)
    end = time.perf_counter()
    while not pool.empty():
        await pool.get_nowait().close()

    with open(cfg["ids_out"], "w") as f:
        json.dump(ids, f)
    lateness.sort()
    return {
        "holds": holds.figures(started_all - start),
        "converts": converts.figures(end - start),
        "releases": releases.figures(end - start),
        "decided": dict(decided),
        "rate": rate,
        "checkouts": n,
        "converted_status": dict(confirmed),
        "started_wall_s": started_all - start,
        "wall_s": end - start,
        "after_load_s": end - started_all,
        "late_p99_ms": lateness[int(0.99 * (len(lateness) - 1))] * 1000 if lateness else None,
        "converted": len(ids["converted"]),
        "released": len(ids["released"]),
        "expiring": len(ids["expiring"]),
        "refused": len(ids["refused"]),
    }


def main() -> int:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    print(json.dumps(asyncio.run(run(cfg))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
