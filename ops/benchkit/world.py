"""The data the scenarios need: the locations, the warehouse the hot product's orders go to, the
request bodies and URL files the load generators pick from, and the product-list URL."""

from __future__ import annotations

import json
import random

from .common import CITY_HALL, BenchError, haversine_km


class World:
    """Mixed into Bench; sets its warehouses, stores, max_product, hot_loc and pos_stores, and
    results["world"]; writes the request bodies into raw/."""

    def load_world(self):
        locs = self.http_json("GET", "/api/locations")
        locs = locs.get("locations", locs) if isinstance(locs, dict) else locs
        self.warehouses, self.stores = [], []
        for l in locs:
            kind = l.get("locationType") or l.get("kind")
            entry = (int(l.get("locationId", l.get("id"))), float(l["latitude"]), float(l["longitude"]))
            (self.warehouses if kind == "WAREHOUSE" else self.stores).append(entry)
        if not self.warehouses or not self.stores:
            raise BenchError(f"unexpected /api/locations answer: {str(locs)[:200]}")
        self.max_product = int(self.sql("SELECT MAX(id) FROM products")[0][0])
        # NORMAL orders go to the nearest warehouse that has stock: work out which one that is
        # for Seoul City Hall, so the hot product's stock is reset where the orders will go.
        ranked = sorted(self.warehouses, key=lambda w: haversine_km(CITY_HALL, (w[1], w[2])))
        self.hot_loc = ranked[0][0]
        self.results["world"] = {
            "warehouses": len(self.warehouses), "stores": len(self.stores), "products": self.max_product,
            "hot_location": self.hot_loc,
            "warehouse_distance_km": {w[0]: round(haversine_km(CITY_HALL, (w[1], w[2])), 2) for w in ranked},
        }
        rnd = random.Random(20_261_124)
        # Spread: a random product at a random warehouse (the address lies ~1 km from it, so that
        # warehouse is the nearest; every product has 200-1,000 units at every warehouse).
        with open(self.raw / "spread-bodies.jsonl", "w") as f:
            for _ in range(50_000):
                w = rnd.choice(self.warehouses)
                f.write(json.dumps({
                    "items": [{"productId": rnd.randint(1, self.max_product), "quantity": 1}],
                    "deliveryType": "NORMAL",
                    "deliveryAddress": {"latitude": round(w[1] + rnd.uniform(-0.01, 0.01), 5),
                                        "longitude": round(w[2] + rnd.uniform(-0.01, 0.01), 5)},
                }, separators=(",", ":")) + "\n")
        # Store level, online: half SAME_DAY from an address near a random store (within ~3 km),
        # half PICKUP at a random store; random product. Stores hold 0-40 units of each product,
        # so some orders are refused (409), as in real life.
        with open(self.raw / "store-bodies.jsonl", "w") as f:
            for i in range(50_000):
                s = rnd.choice(self.stores)
                item = [{"productId": rnd.randint(1, self.max_product), "quantity": 1}]
                if i % 2 == 0:
                    body = {"items": item, "deliveryType": "SAME_DAY",
                            "deliveryAddress": {"latitude": round(s[1] + rnd.uniform(-0.03, 0.03), 5),
                                                "longitude": round(s[2] + rnd.uniform(-0.03, 0.03), 5)}}
                else:
                    body = {"items": item, "deliveryType": "PICKUP", "storeId": s[0]}
                f.write(json.dumps(body, separators=(",", ":")) + "\n")
        # Mixed: a third each PICKUP at a random store, SAME_DAY from near a random store and
        # NORMAL from near a random warehouse; random product. The kind rides along, so the
        # mixed load generator knows which steps an accepted order takes.
        with open(self.raw / "mixed-bodies.jsonl", "w") as f:
            for i in range(30_000):
                item = [{"productId": rnd.randint(1, self.max_product), "quantity": 1}]
                if i % 3 == 0:
                    s = rnd.choice(self.stores)
                    kind, body = "PICKUP", {"items": item, "deliveryType": "PICKUP", "storeId": s[0]}
                elif i % 3 == 1:
                    s = rnd.choice(self.stores)
                    kind, body = "SAME_DAY", {
                        "items": item, "deliveryType": "SAME_DAY",
                        "deliveryAddress": {"latitude": round(s[1] + rnd.uniform(-0.03, 0.03), 5),
                                            "longitude": round(s[2] + rnd.uniform(-0.03, 0.03), 5)}}
                else:
                    w = rnd.choice(self.warehouses)
                    kind, body = "NORMAL", {
                        "items": item, "deliveryType": "NORMAL",
                        "deliveryAddress": {"latitude": round(w[1] + rnd.uniform(-0.01, 0.01), 5),
                                            "longitude": round(w[2] + rnd.uniform(-0.01, 0.01), 5)}}
                f.write(json.dumps({"kind": kind, "body": body}, separators=(",", ":")) + "\n")
        # POS: one body file per terminal store, random product.
        n_pos = 8
        step = max(1, len(self.stores) // n_pos)
        self.pos_stores = [s[0] for s in self.stores[::step][:n_pos]]
        for sid in self.pos_stores:
            with open(self.raw / f"pos-{sid}-bodies.jsonl", "w") as f:
                for _ in range(5_000):
                    f.write(json.dumps({"items": [{"productId": rnd.randint(1, self.max_product),
                                                   "quantity": 1}]}, separators=(",", ":")) + "\n")
        for src in ("", "redis/"):
            with open(self.raw / f"detail-urls-{'redis' if src else 'mysql'}.txt", "w") as f:
                for p in range(1, self.max_product + 1):
                    f.write(f"{self.base}/api/{src}products/{p}\n")

    def list_url(self, source: str) -> str:
        """The product-list URL of `source` the read runs use. The query is built from the
        operation's parameters in the served spec (a page size of 20 under whichever name it has,
        page 0 when pages exist), so the runs follow a change from page/size to a cursor; the
        answer's body is never read, only its status."""
        if source in self.list_urls:
            return self.list_urls[source]
        path = "/api/redis/products" if source == "redis" else "/api/products"
        names: list[str] = []
        status, _, raw = self.http_full("GET", "/api/openapi.json", timeout=60)
        if status == 200:
            try:
                op = json.loads(raw)["paths"][path]["get"]
                names = [q["name"] for q in op.get("parameters", []) if q.get("in") == "query"]
            except (ValueError, KeyError, TypeError):
                names = []
        query = []
        size = next((n for n in ("size", "limit", "pageSize", "perPage", "first") if n in names), None)
        if size:
            query.append(f"{size}=20")
        if "page" in names:
            query.append("page=0")
        candidates = ["?" + "&".join(query)] if query else []
        candidates += ["?page=0&size=20", ""]
        tried = []
        for q in candidates:
            status, _, _ = self.http_full("GET", path + q, timeout=60)
            tried.append(f"{path}{q} → {status}")
            if status == 200:
                self.list_urls[source] = f"{self.base}{path}{q}"
                return self.list_urls[source]
        raise BenchError(f"no product-list URL answers 200: {'; '.join(tried)}")
