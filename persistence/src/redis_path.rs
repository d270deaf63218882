//! The Redis path: an order is decided by `reserve.lua` in one atomic step (check every line,
//! decrement all or none, write the order record and its event) and answered at once; the
//! consumer persists it to MySQL afterwards.

use crate::error::{StoreError, StoreResult};
use crate::idempotency::IdempotencyRequest;
use crate::model::{Order, OrderPath, OrderStatus, StockLevel};
use crate::mysql_first::{build_order, Placed};
use crate::redis_stock::{decision, encode_lines, Decision};
use crate::Store;
use redis::AsyncCommands;
use sf_routing::{
    candidates, eligible, Destination, LocationId, LocationKind, OrderLines, ProductId,
};
use std::collections::HashMap;
use std::time::Duration;

/// An order for the Redis path.
#[derive(Debug, Clone)]
pub struct RedisOrder {
    pub lines: OrderLines,
    pub destination: Destination,
    pub idempotency: Option<IdempotencyRequest>,
}

/// How long a repeated `Idempotency-Key` waits for the first request's answer.
const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(5);

impl Store {
    /// Decides an order in Redis, trying candidate locations nearest first.
    #[tracing::instrument(skip(self, req), fields(lines = req.lines.len()))]
    pub async fn place_redis(&self, req: &RedisOrder) -> StoreResult<Placed> {
        if let Some(idem) = &req.idempotency {
            if let Some(order) = self.claim_redis(idem).await? {
                return Ok(Placed::Replayed(order));
            }
        }
        let result = self.decide_redis(req).await;
        if let Some(idem) = &req.idempotency {
            let key = self.keys.idempotency(&idem.scope, &idem.key);
            let mut redis = self.conn().await?;
            match &result {
                Ok(order) => {
                    let value = format!("{}|{}", idem.fingerprint, serde_json::to_string(order)?);
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg(value)
                        .arg("XX")
                        .arg("KEEPTTL")
                        .query_async(&mut redis)
                        .await?;
                }
                // A refused order leaves the key free for a retry.
                Err(_) => {
                    let _: () = redis.del(&key).await?;
                }
            }
        }
        result.map(Placed::New)
    }

    async fn decide_redis(&self, req: &RedisOrder) -> StoreResult<Order> {
        let prices = self.prices(&req.lines).await?;
        let ranked = candidates(&self.locations().index, &req.destination)
            .map_err(|e| StoreError::NotFound(e.to_string()))?;
        let encoded = encode_lines(&req.lines);
        let mut shortest = None;
        for candidate in ranked {
            let loc = candidate.location;
            let order = build_order(
                Order::new_id(loc.get()),
                OrderStatus::Accepted,
                OrderPath::Redis,
                &req.destination,
                candidate,
                &req.lines,
                &prices,
            );
            let json = serde_json::to_string(&order)?;
            let mut loads = 0;
            loop {
                let mut inv = self.scripts.reserve.prepare_invoke();
                inv.key(self.keys.order(loc, &order.order_id))
                    .key(self.keys.stream(loc))
                    .arg(&order.order_id)
                    .arg(&json)
                    .arg(&encoded);
                for (p, q) in req.lines.iter() {
                    inv.key(self.keys.stock(loc, p)).arg(q.get());
                }
                let reply: Vec<i64> = {
                    let mut redis = self.conn().await?;
                    crate::redis_stock::invoke(&inv, &mut redis).await?
                };
                match decision(&reply)? {
                    Decision::Applied => return Ok(order),
                    Decision::Duplicate => {
                        return Err(StoreError::Internal(format!(
                            "order id {} was generated twice",
                            order.order_id
                        )))
                    }
                    Decision::Short { index, have } => {
                        let product = req.lines.iter().nth(index).map(|(p, _)| p);
                        if let Some(product) = product {
                            shortest.get_or_insert((loc, product, have));
                        }
                        break;
                    }
                    Decision::NotLoaded { .. } if loads < 3 => {
                        loads += 1;
                        let products: Vec<ProductId> = req.lines.products().collect();
                        self.load_keys(loc, &products).await?;
                    }
                    Decision::NotLoaded { index } => {
                        return Err(StoreError::Unavailable(format!(
                            "stock of product {} at location {loc} is not loaded into redis yet",
                            req.lines
                                .iter()
                                .nth(index)
                                .map(|(p, _)| p.get())
                                .unwrap_or(0)
                        )))
                    }
                }
            }
        }
        Err(self
            .no_location(req.lines.clone(), &req.destination, shortest)
            .await)
    }

    /// Claims an idempotency key in Redis. `Some` is the first answer to replay; `None` means the
    /// key is ours now.
    async fn claim_redis(&self, idem: &IdempotencyRequest) -> StoreResult<Option<Order>> {
        let key = self.keys.idempotency(&idem.scope, &idem.key);
        let deadline = tokio::time::Instant::now() + IDEMPOTENCY_WAIT;
        loop {
            let mut redis = self.conn().await?;
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(format!("{}|", idem.fingerprint))
                .arg("NX")
                .arg("EX")
                .arg(self.config.idempotency_ttl_secs)
                .query_async(&mut redis)
                .await?;
            if claimed.is_some() {
                return Ok(None);
            }
            let current: Option<String> = redis.get(&key).await?;
            drop(redis);
            if let Some(current) = current {
                let (fingerprint, answer) = current.split_once('|').unwrap_or((&current, ""));
                if fingerprint != idem.fingerprint {
                    return Err(StoreError::IdempotencyMismatch);
                }
                if !answer.is_empty() {
                    return Ok(Some(serde_json::from_str(answer)?));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError::IdempotencyInFlight);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Cancels an order of any path; Redis-path orders go through `cancel.lua`, the others through
    /// a MySQL transaction. The stock comes back exactly once.
    #[tracing::instrument(skip(self))]
    pub async fn cancel_order(&self, order_id: &str) -> StoreResult<Order> {
        let loc = Order::location_of(order_id)
            .map(LocationId::new_unchecked)
            .ok_or_else(|| StoreError::UnknownOrder(order_id.to_owned()))?;
        let (_, json) = self.redis_record(loc, order_id).await?;
        let (order, fallback) = match json {
            Some(json) => (serde_json::from_str::<Order>(&json)?, String::new()),
            None => {
                let order = self
                    .order_from_mysql(order_id)
                    .await?
                    .ok_or_else(|| StoreError::UnknownOrder(order_id.to_owned()))?;
                if order.path != OrderPath::Redis {
                    return self.cancel_mysql_first(order_id).await;
                }
                if order.status == OrderStatus::Cancelled {
                    return Ok(order);
                }
                let json = serde_json::to_string(&order)?;
                (order, json)
            }
        };
        let mut inv = self.scripts.cancel.prepare_invoke();
        inv.key(self.keys.order(loc, order_id))
            .key(self.keys.stream(loc))
            .arg(order_id)
            .arg(
                order
                    .items
                    .iter()
                    .map(|i| format!("{}:{}", i.product_id, i.quantity))
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .arg(&fallback);
        for i in &order.items {
            inv.key(self.keys.stock(loc, ProductId::new_unchecked(i.product_id)))
                .arg(i.quantity);
        }
        let reply: Vec<i64> = {
            let mut redis = self.conn().await?;
            crate::redis_stock::invoke(&inv, &mut redis).await?
        };
        match reply.first() {
            Some(0 | 1) => Ok(Order {
                status: OrderStatus::Cancelled,
                ..order
            }),
            _ => Err(StoreError::UnknownOrder(order_id.to_owned())),
        }
    }

    /// The Redis record of an order: its state (`A`/`C`) and JSON, if Redis still has it.
    pub(crate) async fn redis_record(
        &self,
        loc: LocationId,
        order_id: &str,
    ) -> StoreResult<(Option<String>, Option<String>)> {
        let mut redis = self.conn().await?;
        let (st, j): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.order(loc, order_id))
            .arg("st")
            .arg("j")
            .query_async(&mut redis)
            .await?;
        Ok((st, j))
    }

    /// Sellable stock in Redis of `products` at every active location, loading keys that are
    /// missing.
    pub async fn redis_stock_levels(
        &self,
        products: &[ProductId],
    ) -> StoreResult<HashMap<ProductId, Vec<StockLevel>>> {
        let locations = self.locations();
        let sites: Vec<(LocationId, LocationKind)> =
            locations.index.sites().map(|s| (s.id, s.kind)).collect();
        let mut sites = sites;
        sites.sort_by_key(|(id, _)| *id);
        let values = self
            .read_stock(&sites.iter().map(|(l, _)| *l).collect::<Vec<_>>(), products)
            .await?;
        let mut out: HashMap<ProductId, Vec<StockLevel>> = HashMap::new();
        for (li, (loc, kind)) in sites.iter().enumerate() {
            for (pi, product) in products.iter().enumerate() {
                out.entry(*product).or_default().push(StockLevel {
                    location_id: loc.get(),
                    location_type: *kind,
                    quantity: values[li][pi],
                });
            }
        }
        Ok(out)
    }

    /// Redis stock of every (location, product), loading the locations where a key is missing.
    /// Indexed `[location][product]`.
    pub async fn read_stock(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StoreResult<Vec<Vec<i64>>> {
        if products.is_empty() || locations.is_empty() {
            return Ok(vec![Vec::new(); locations.len()]);
        }
        for _ in 0..3 {
            // One MGET per location: its keys share a hash tag, so this also works on a cluster.
            let mut pipe = redis::pipe();
            for loc in locations {
                let keys: Vec<String> =
                    products.iter().map(|p| self.keys.stock(*loc, *p)).collect();
                pipe.cmd("MGET").arg(keys);
            }
            let per_location: Vec<Vec<Option<i64>>> = {
                let mut redis = self.conn().await?;
                pipe.query_async(&mut redis).await?
            };
            let flat: Vec<Option<i64>> = per_location.into_iter().flatten().collect();
            let mut missing = Vec::new();
            for (li, loc) in locations.iter().enumerate() {
                let row = &flat[li * products.len()..(li + 1) * products.len()];
                if row.iter().any(Option::is_none) {
                    missing.push(*loc);
                }
            }
            if missing.is_empty() {
                return Ok(flat
                    .chunks(products.len().max(1))
                    .map(|c| c.iter().map(|v| v.unwrap_or(0)).collect())
                    .collect());
            }
            for loc in missing {
                self.load_keys(loc, products).await?;
            }
        }
        Err(StoreError::Unavailable(
            "stock could not be loaded into redis".into(),
        ))
    }

    /// Other active stores within `radius_km` of `store`, nearest first, each with its Redis
    /// stock of `products` (in that order).
    pub async fn nearby_stock(
        &self,
        store: LocationId,
        products: &[ProductId],
        radius_km: f64,
    ) -> StoreResult<Vec<(sf_routing::Candidate, String, Vec<i64>)>> {
        let locations = self.locations();
        let Some(site) = locations.index.get(store) else {
            return Ok(Vec::new());
        };
        let nearby: Vec<_> = locations
            .index
            .within(LocationKind::Store, site.coordinates, radius_km)
            .into_iter()
            .filter(|c| c.location != store)
            .collect();
        let locs: Vec<LocationId> = nearby.iter().map(|c| c.location).collect();
        let stock = self.read_stock(&locs, products).await?;
        Ok(nearby
            .into_iter()
            .zip(stock)
            .map(|(c, s)| {
                let name = locations
                    .index
                    .get(c.location)
                    .map(|x| x.name.clone())
                    .unwrap_or_default();
                (c, name, s)
            })
            .collect())
    }

    /// Nearby stores (within the same-day radius of `store`) that can fill every line, nearest
    /// first, by their Redis stock.
    pub async fn pickup_alternatives(
        &self,
        lines: &OrderLines,
        store: LocationId,
    ) -> StoreResult<Vec<crate::Alternative>> {
        let products: Vec<ProductId> = lines.products().collect();
        let nearby = self
            .nearby_stock(store, &products, self.config.same_day_radius_km)
            .await?;
        let candidates: Vec<_> = nearby.iter().map(|(c, _, _)| *c).collect();
        let good = eligible(&candidates, lines, |loc, p| {
            let (_, _, stock) = nearby.iter().find(|(c, _, _)| c.location == loc)?;
            Some(stock[products.iter().position(|x| *x == p)?])
        });
        Ok(good
            .into_iter()
            .map(|c| crate::Alternative {
                store_id: c.location.get(),
                name: nearby
                    .iter()
                    .find(|(x, _, _)| x.location == c.location)
                    .map(|(_, n, _)| n.clone())
                    .unwrap_or_default(),
                distance_km: c.distance_km.map(|d| (d * 1000.0).round() / 1000.0),
            })
            .collect())
    }
}
