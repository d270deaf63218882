"""The mixed scenario's load generator: orders, and at the same time cancels of some of them, the
fulfilment steps of others, and POS sales. A step needs the id (and a pickup's code) of an order
the service just answered, which no off-the-shelf load generator can feed from one answer into
the next request, so this one does it: one asyncio process (standard library only), a
keep-alive HTTP/1.1 connection per task.

Run as `python -m benchkit.mixed CONFIG` from ops/ (the driver does), CONFIG a JSON file:

  base            the service's URL (http://host:port)
  order_path      /api/orders or /api/redis/orders
  cancel_path     the path's cancel, with {id}: /api/orders/{id}/cancel or /api/redis/orders/{id}/cancel
  duration        seconds of order load; the cancels and steps of the last orders finish after it
  order_conns     tasks placing orders (closed loop)
  action_conns    tasks cancelling and stepping orders, fed from a queue the order tasks fill
  bodies          JSON lines: {"kind": "PICKUP"|"SAME_DAY"|"NORMAL", "body": {...}}
  pos             [[storeId, bodies file], ...]: POS sales, one task per store, the store's demo key
  store_key       the store key, with {store}: sfk_demo_{store}
  cancel_share    share of accepted orders cancelled
  fulfil_share    share of accepted orders taken through their steps (the rest stay open)
  retry_s         how long a step waits for an order the consumer has not persisted yet (409
                  "not yet persisted"), retrying every 50 ms
  seed            random seed
  ids_out         where the ids go (JSON): placed, cancelled, handed_over, pos

The operator's bearer token (for ship) comes from ADMIN_TOKEN, and the sales channel's key (sent
on the orders, their cancels and the order reads: the shop's routes) from SF_CHANNEL_KEY (default
sfc_demo_web, the demo channel's), never from the file.

Each accepted order is cancelled, stepped or left open, decided when it is answered. A pickup is
made ready, then collected with the code its answer carried; a same-day order is dispatched by
its store; a warehouse order is shipped by an operator. Prints one JSON object: the orders' and
the POS sales' figures in the shape of the other load generators' (counts per outcome,
percentiles, throughput), each step kind's figures, and the retries."""

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
from .loadgen import summarize_statuses


class Conn:
    """One keep-alive HTTP/1.1 connection, reopened when the server closes it or it breaks."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes | None = None,
                      bearer: str | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body) if body else 0}"]
        if body:
            head.append("Content-Type: application/json")
        if bearer:
            head.append(f"Authorization: Bearer {bearer}")
        try:
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("connection closed")
            status = int(status_line.split()[1])
            length, chunked, close = None, False, False
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    chunked = True
                elif name == "connection" and value == "close":
                    close = True
            if chunked:
                parts = []
                while True:
                    size = int((await self.reader.readline()).split(b";")[0], 16)
                    if size == 0:
                        await self.reader.readline()
                        break
                    parts.append(await self.reader.readexactly(size))
                    await self.reader.readexactly(2)
                data = b"".join(parts)
            elif length is not None:
                data = await self.reader.readexactly(length)
            else:
                data = await self.reader.read()
                close = True
        except BaseException:
            await self.close()
            raise
        if close:
            await self.close()
        return status, data


class Tally:
    """Answers of one kind of request: statuses, connection errors, latencies of the answers."""

    def __init__(self):
        self.statuses: Counter = Counter()
        self.conn_errors: Counter = Counter()
        self.latencies: list[float] = []
        self.first = self.last = None

    def answered(self, status: int, t0: float, t1: float):
        self.statuses[str(status)] += 1
        self.latencies.append(t1 - t0)
        self.first = t0 if self.first is None else min(self.first, t0)
        self.last = t1 if self.last is None else max(self.last, t1)

    def failed(self, e: BaseException):
        self.conn_errors[type(e).__name__] += 1

    def figures(self, wall: float | None = None) -> dict:
        res = summarize_statuses(dict(self.statuses), dict(self.conn_errors))
        lat = sorted(self.latencies)

        def pct(p):
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else None

        if wall is None:
            wall = (self.last - self.first) if self.first is not None else 0.0
        res.update({"wall_s": wall, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
                    "max_ms": lat[-1] * 1000 if lat else None, "bytes_per_answer": None,
                    "ok_per_s": res["ok"] / wall if wall else 0.0,
                    "req_per_s": res["requests"] / wall if wall else 0.0})
        return res


# What a request can fail with: the connection (refused, reset, closed mid-answer), or an answer
# that is no HTTP.
ERRORS = (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError)


async def timed(conn: Conn, tally: Tally, method: str, path: str, body: bytes | None = None,
                bearer: str | None = None) -> tuple[int | None, bytes]:
    t0 = time.perf_counter()
    try:
        status, data = await conn.request(method, path, body, bearer)
    except ERRORS as e:
        tally.failed(e)
        return None, b""
    tally.answered(status, t0, time.perf_counter())
    return status, data


async def run(cfg: dict) -> dict:
    u = urllib.parse.urlsplit(cfg["base"])
    host, port = u.hostname, u.port or 80
    rnd = random.Random(cfg.get("seed", 1))
    bodies = []
    with open(cfg["bodies"]) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                bodies.append((d["kind"], json.dumps(d["body"], separators=(",", ":")).encode()))
    pos_bodies = {}
    for store, path in cfg.get("pos", []):
        with open(path) as f:
            pos_bodies[int(store)] = [ln.strip().encode() for ln in f if ln.strip()]

    orders, pos = Tally(), Tally()
    steps = {k: Tally() for k in ("cancel", "ready", "collect", "dispatch", "ship")}
    retries: Counter = Counter()
    decided: Counter = Counter()
    ids = {"placed": [], "cancelled": [], "handed_over": [], "pos": [], "kept": [],
           "refused": []}
    queue: asyncio.Queue = asyncio.Queue()
    retry_s = float(cfg.get("retry_s", 30))
    admin = os.environ.get("ADMIN_TOKEN", "stockflow-dev-admin")
    channel = os.environ.get("SF_CHANNEL_KEY") or DEMO_CHANNEL_KEY
    start = time.perf_counter()
    deadline = start + float(cfg["duration"])

    async def order_task():
        conn = Conn(host, port)
        r = random.Random(rnd.random())
        while time.perf_counter() < deadline:
            kind, body = r.choice(bodies)
            status, data = await timed(conn, orders, "POST", cfg["order_path"], body, channel)
            if status not in (201, 202):
                continue
            o = json.loads(data)
            oid = o["orderId"]
            ids["placed"].append(oid)
            x = r.random()
            what = ("cancel" if x < cfg["cancel_share"] else
                    "fulfil" if x < cfg["cancel_share"] + cfg["fulfil_share"] else "keep")
            decided[what] += 1
            if what == "keep":
                ids["kept"].append(oid)
                continue
            queue.put_nowait((what, oid, o.get("deliveryType", kind), int(o["fulfillmentLocationId"]),
                              (o.get("fulfillment") or {}).get("pickupCode")))
        await conn.close()

    async def pos_task(store: int):
        conn = Conn(host, port)
        r = random.Random(rnd.random())
        key = cfg["store_key"].format(store=store)
        while time.perf_counter() < deadline:
            status, data = await timed(conn, pos, "POST", f"/api/stores/{store}/orders",
                                       r.choice(pos_bodies[store]), key)
            if status == 201:
                ids["pos"].append(json.loads(data)["orderId"])
        await conn.close()

    async def step(conn: Conn, kind: str, path: str, body: bytes | None, bearer: str | None) -> int | None:
        """One step; a Redis-path order the consumer has not persisted yet is asked again, and
        only the last answer counts (its status and its latency)."""
        until = time.perf_counter() + retry_s
        method = "PATCH" if kind == "cancel" else "POST"
        while True:
            t0 = time.perf_counter()
            try:
                status, data = await conn.request(method, path, body, bearer)
            except ERRORS as e:
                steps[kind].failed(e)
                return None
            if status == 409 and b"not yet persisted" in data and time.perf_counter() < until:
                retries[kind] += 1
                await asyncio.sleep(0.05)
                continue
            steps[kind].answered(status, t0, time.perf_counter())
            return status

    async def action_task():
        conn = Conn(host, port)
        while True:
            item = await queue.get()
            if item is None:
                break
            what, oid, dtype, loc, code = item
            if what == "cancel":
                st = await step(conn, "cancel", cfg["cancel_path"].format(id=oid), None, channel)
                (ids["cancelled"] if st == 200 else ids["refused"]).append(oid)
                continue
            key = cfg["store_key"].format(store=loc)
            base = f"/api/stores/{loc}/orders/{oid}"
            if dtype == "PICKUP":
                if code is None:
                    st, data = await timed(conn, Tally(), "GET", f"/api/orders/{oid}", None, channel)
                    code = (json.loads(data).get("fulfillment") or {}).get("pickupCode") if st == 200 else None
                st = await step(conn, "ready", f"{base}/ready", None, key)
                if st == 200:
                    body = json.dumps({"pickupCode": code or ""}).encode()
                    st = await step(conn, "collect", f"{base}/collect", body, key)
            elif dtype == "SAME_DAY":
                st = await step(conn, "dispatch", f"{base}/dispatch", None, key)
            else:
                st = await step(conn, "ship", f"/api/admin/orders/{oid}/ship", None, admin)
            (ids["handed_over"] if st == 200 else ids["refused"]).append(oid)
        await conn.close()

    actions = [asyncio.create_task(action_task()) for _ in range(cfg["action_conns"])]
    load = [asyncio.create_task(order_task()) for _ in range(cfg["order_conns"])]
    load += [asyncio.create_task(pos_task(s)) for s in pos_bodies]
    await asyncio.gather(*load)
    orders_end = time.perf_counter()
    for _ in actions:
        queue.put_nowait(None)
    await asyncio.gather(*actions)
    end = time.perf_counter()

    with open(cfg["ids_out"], "w") as f:
        json.dump(ids, f)
    return {
        "orders": orders.figures(orders_end - start),
        "pos": pos.figures(orders_end - start),
        "steps": {k: t.figures(end - start) for k, t in steps.items()},
        "retries_not_persisted": dict(retries),
        "decided": dict(decided),
        "orders_wall_s": orders_end - start,
        "wall_s": end - start,
        "actions_after_load_s": end - orders_end,
        "handed_over": len(ids["handed_over"]),
        "cancelled": len(ids["cancelled"]),
        "refused": len(ids["refused"]),
    }


def main() -> int:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    print(json.dumps(asyncio.run(run(cfg))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
