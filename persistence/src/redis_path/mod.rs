//! The Redis path: an order is decided by `reserve.lua` in one atomic step (check every line,
//! decrement all or none, write the order record and its event) and answered at once; the
//! consumer persists it to MySQL afterwards.

mod cancel;
mod claim;
mod replication;
mod stock;

use crate::db_lock::Placed;
use crate::error::{Failure, FailureKind, Refusal, StorageError, StorageResult};
use crate::model::{Order, OrderPath, OrderStatus};
use crate::orders::build::{build_order, ready_by};
use crate::orders::idempotency::IdempotencyRequest;
use crate::scripts::reserve::{Decision, Reserve};
use crate::Storage;
use sf_routing::{candidates_at, Destination, LocationId, OrderLines, ProductId};
use std::time::Duration;

crate::handle!(
    /// The Redis path, as callers use it: taken with [`crate::Storage::redis_path`].
    RedisPath
);

/// An order for the Redis path.
#[derive(Debug, Clone)]
pub struct RedisOrder {
    pub lines: OrderLines,
    pub destination: Destination,
    pub idempotency: Option<IdempotencyRequest>,
    /// The sales channel placing it.
    pub channel: Option<u64>,
}

/// How long after a `WAIT` came back short the slot's orders skip it ([`Storage::replication_at`]).
pub(super) const REPLICA_RECHECK: Duration = Duration::from_secs(1);
/// How long a repeated `Idempotency-Key` waits for the first request's answer.
pub(super) const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(5);
/// How long a request may decide a claimed order before a retry may take the claim over.
pub(super) const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// The request that holds a claim tries no further candidate this close to its lease's end (more
/// than one Redis call may take), so a retry that takes over never races it.
pub(super) const CLAIM_MARGIN: Duration = Duration::from_secs(10);

/// What claiming an `Idempotency-Key` gave.
pub(super) enum Claimed {
    /// This request decides the order, under this uuid, holding the claim's lease.
    Owner { uuid: String, token: String },
    /// The order was placed before: its first answer (or, after a lost answer, the order itself).
    Replay(Box<Order>),
}

impl Storage {
    pub(super) async fn decide_redis(
        &self,
        req: &RedisOrder,
        uuid: &str,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Order> {
        let prices = self.prices(&req.lines).await?;
        let now = jiff::Timestamp::now();
        let locations = self.catalog().locations();
        let ranked = candidates_at(&locations.index, &req.destination, now)
            .map_err(|e| Refusal::NotFound(e.to_string()))?;
        let ready_by = ready_by(&locations.index, &req.destination, now);
        let mut shortest = None;
        for candidate in ranked {
            let loc = candidate.location;
            let mut order = build_order(
                Order::id_at(loc.get(), uuid),
                OrderStatus::Accepted,
                OrderPath::Redis,
                &req.destination,
                candidate,
                &req.lines,
                &prices,
                req.channel,
            );
            order.fulfillment.ready_by.clone_from(&ready_by);
            // The record carries the key, which the consumer keeps in MySQL with the order.
            let json = crate::formats::OrderRecord::encode_keyed(&order, req.idempotency.as_ref());
            let mut loads = 0;
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(StorageError::unavailable(
                        "the order could not be decided in time; retry with the same Idempotency-Key",
                    ));
                }
                let reserve = Reserve {
                    loc,
                    order_id: &order.order_id,
                    json: &json,
                    lines: &req.lines,
                };
                let slot_key = self.keys.stream(loc);
                let replication = self
                    .replication_for_order(&slot_key, &self.keys.replication_witness(loc))
                    .await?;
                let (decided, held) = {
                    // Checked again at the moment of deciding: the circuit may have opened since
                    // the order began, and while it recovers a key may still be stale. The
                    // recovery's barrier is held from the check through the decision, so a
                    // recovery re-syncs stale keys only after every decision that passed it.
                    let _deciding = self.circuit.write_in_flight().await;
                    self.redis_decides()?;
                    let mut redis = self.conn().await?;
                    let ran = match replication {
                        None => reserve.run(&self.keys, &mut redis).await.map(|d| (d, None)),
                        Some(r) => reserve
                            .run_replicated(&self.keys, &mut redis, r)
                            .await
                            .map(|(d, held)| (d, Some(held))),
                    };
                    ran.map_err(|e| sent_without_answer(&order.order_id, e))?
                };
                match decided {
                    Decision::Applied => return self.replicated(Ok(order), &slot_key, held),
                    // An earlier attempt under the same claim placed it here (its answer was lost).
                    Decision::Duplicate => {
                        return match self.redis_record(loc, &order.order_id).await? {
                            Some(r) => r.order(),
                            None => Ok(order),
                        }
                    }
                    Decision::Short { index, have } => {
                        let product = req.lines.iter().nth(index).map(|(p, _)| p);
                        if let Some(product) = product {
                            shortest.get_or_insert((loc, product, have));
                        }
                        break;
                    }
                    Decision::NotLoaded { index } if loads < 3 => {
                        loads += 1;
                        // Never past the attempt's deadline: the claim's lease outlives it.
                        let by = deadline.min(self.db_deadline());
                        self.order_key_load(loc, &req.lines, index, by).await?;
                    }
                    Decision::NotLoaded { index } => {
                        return Err(StorageError::unavailable(format!(
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
            .no_location(req.lines.clone(), &req.destination, shortest, now)
            .await)
    }

    /// Loads the keys of an order's products at `loc`, which it found missing, by `deadline`.
    ///
    /// After Redis lost its data nearly every order misses a key, and unbounded the orders' loads
    /// would take the connections (and the CPU) the warm-up needs, so that both crawl. So orders
    /// that miss the same keys share one load ([`ReadGroups`]: each still gets a load that began
    /// after it asked), loads run at most an eighth of the MySQL pool at a time, and at most four
    /// times as many wait for a turn: an order beyond those is refused at once, and one whose
    /// turn does not come by `deadline` then (503 with `Retry-After`, the keys still loading).
    async fn order_key_load(
        &self,
        loc: LocationId,
        lines: &OrderLines,
        index: usize,
        deadline: tokio::time::Instant,
    ) -> StorageResult<()> {
        let products: Vec<ProductId> = lines.products().collect();
        let refused = || {
            StorageError::unavailable(format!(
                "stock of product {} at location {loc} is not loaded into redis yet (it is being \
                 loaded); retry in a moment, or order through POST /api/orders",
                lines.iter().nth(index).map(|(p, _)| p.get()).unwrap_or(0)
            ))
        };
        let load = self.key_loads.read((loc, products.clone()), || async {
            let _turn = match self.order_loads.try_acquire() {
                Ok(turn) => turn,
                Err(_) => {
                    // A place in the line for a turn, or refused at once.
                    let _in_line = self.load_line.try_acquire().map_err(|_| refused())?;
                    match tokio::time::timeout_at(deadline, self.order_loads.acquire()).await {
                        Ok(Ok(turn)) => turn,
                        _ => return Err(refused()),
                    }
                }
            };
            self.load_keys(loc, &products, deadline).await
        });
        match tokio::time::timeout_at(deadline, load).await {
            Ok(loaded) => loaded.map(|_| ()),
            Err(_) => Err(refused()),
        }
    }

    /// Refuses at once (503) while Redis is not trusted to decide orders: its circuit is open,
    /// or it is recovering and its stale keys are not yet set from MySQL.
    pub(crate) fn redis_decides(&self) -> StorageResult<()> {
        if self.circuit.trusted() {
            return Ok(());
        }
        self.circuit
            .shed_orders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(self.redis_down_error())
    }

    pub(crate) fn redis_down_error(&self) -> StorageError {
        let detail = match self.circuit.state() {
            crate::CircuitState::Recovering => {
                "the stock cache is back and being re-synced from MySQL; retry in a moment, or order through POST /api/orders"
            }
            _ => "the stock cache cannot be reached; retry shortly, or order through POST /api/orders (it does not need the cache)",
        };
        Failure::stock_cache_down(detail, "redis circuit not closed").into()
    }
}

impl RedisPath<'_> {
    /// Decides an order in Redis, trying candidate locations nearest first.
    ///
    /// With an `Idempotency-Key`, the order's id is fixed by the key's claim before anything is
    /// decided (`<location>-<uuid>`), and the reservation script refuses an id it has seen. So a
    /// retry after a lost answer, or after the first request died between the reservation and
    /// storing the answer, finds the order the first attempt placed instead of placing another.
    #[tracing::instrument(level = "debug", skip(self, req), fields(lines = req.lines.len()))]
    pub async fn place(&self, req: &RedisOrder) -> StorageResult<Placed> {
        self.redis_decides()?;
        let started = tokio::time::Instant::now();
        let claim = match &req.idempotency {
            None => None,
            Some(idem) => match self.claim_redis(idem).await? {
                Claimed::Replay(order) => {
                    let claim_key = self.keys.idempotency(&idem.scope, &idem.key);
                    return Ok(Placed::Replayed(
                        self.confirm_replay(*order, &claim_key).await?,
                    ));
                }
                Claimed::Owner { uuid, token } => Some((idem, uuid, token)),
            },
        };
        let uuid = match &claim {
            Some((_, uuid, _)) => uuid.clone(),
            None => uuid::Uuid::now_v7().simple().to_string(),
        };
        let deadline = started + CLAIM_LEASE - CLAIM_MARGIN;
        let mut result = self.decide_redis(req, &uuid, deadline).await;
        if let Some((idem, uuid, token)) = claim {
            let claim_key = self.keys.idempotency(&idem.scope, &idem.key);
            match self.settle_claim(idem, &uuid, &token, &result).await {
                Ok(held @ Some(_)) => result = self.replicated(result, &claim_key, held),
                // Replication asked for, and no WAIT run: the claim's slot was short a moment ago.
                Ok(None) if result.is_ok() && self.replication().is_some() => {
                    result = self.replicated(result, &claim_key, None)
                }
                Ok(None) => {}
                // The claim stays open; its lease expires and a retry finds the order.
                Err(e) => {
                    tracing::warn!(error = %e, "could not store the answer of an idempotent order")
                }
            }
        }
        result.map(Placed::New)
    }
}

/// A reservation that may have been sent and got no answer (a timeout, a cut connection) may
/// have been placed: its error names the order. A refusal before sending (the circuit open, the
/// connection refused) or an error reply stays as it is.
pub(super) fn sent_without_answer(order_id: &str, e: StorageError) -> StorageError {
    let sent = e.redis_error().is_some_and(|re| {
        (re.is_timeout() || re.is_io_error() || re.is_connection_dropped())
            && !re.is_connection_refusal()
            && !crate::Circuit::is_open_error(re)
    });
    match e {
        StorageError::Failed(Failure { cause, .. }) if sent => Failure {
            kind: FailureKind::OutcomeUnknown {
                order_id: order_id.to_owned(),
            },
            cause,
        }
        .into(),
        other => other,
    }
}
