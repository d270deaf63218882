//! The DB-lock path: orders decided in a MySQL transaction with row locks — online orders and POS
//! sales —, their cancels, the operator's retry of a rejected order, and the commit step every
//! MySQL-first write ends with (operators' stock changes too, see [`crate::db_lock::stock_changes`]).
//!
//! Every such write locks its stock rows (always in (location, product) order, so two writers never
//! deadlock on each other's rows), changes MySQL, and, while it still holds the locks, applies the
//! same change to Redis through `adjust.lua`. The Redis figure already accounts for reservations
//! that MySQL has not seen yet, so a MySQL-first write never sells a unit an online order took, and
//! Redis learns of it as a change, never as an absolute value that would erase orders in flight.

pub(crate) mod commit;

pub(crate) mod group_cancel;
pub(crate) mod group_commit;
pub(crate) mod pos;
pub(crate) mod stock_changes;

pub use stock_changes::{StockChange, StockTarget};

use crate::access::{Actor, Attribution};
use crate::error::{Refusal, StorageError, StorageResult};
use crate::events::{order_changed, EventType};
use crate::infra::mysql::with_retry;
use crate::model::{Order, OrderPath, OrderStatus};
use crate::orders::build::{build_order, ready_by};
use crate::orders::idempotency::{claim_mysql, complete_mysql, Claim, IdempotencyRequest};
use crate::orders::ledger::{
    change_mysql_stock, insert_movements, insert_orders, safety_of, Move, Need, Reason,
};
use crate::Storage;
use sf_routing::{candidates_at, Destination, LocationId, OrderLines, ProductId};
use sqlx::MySqlConnection;
use tokio::time::Instant;

crate::handle!(
    /// The DB-lock path, as callers use it: taken with [`crate::Storage::db_lock`].
    DbLock
);

/// An order to decide in MySQL.
#[derive(Debug, Clone)]
pub struct DbLockOrder {
    pub lines: OrderLines,
    pub destination: Destination,
    pub path: OrderPath,
    pub idempotency: Option<IdempotencyRequest>,
    /// The sales channel placing it (`None` at the till, or with `SHOP_AUTH=off`).
    pub channel: Option<u64>,
    /// Who places it, when not the order's own channel ([`Actor::of_order`]): a till's store
    /// key for a POS sale.
    pub by: Option<Actor>,
}

/// A created order, or the first answer replayed for a repeated `Idempotency-Key`.
#[derive(Debug, Clone)]
pub enum Placed {
    New(Order),
    Replayed(Order),
}

impl Placed {
    pub fn order(&self) -> &Order {
        match self {
            Self::New(o) | Self::Replayed(o) => o,
        }
    }
}

/// The outcome of trying one candidate location.
// One per attempt, moved once: the size of the order it carries costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Attempt {
    Placed(Placed),
    Short { product: ProductId, have: i64 },
}

impl Storage {
    /// One order alone at one candidate location (a group's orders, once the group could not
    /// be decided together; see [`crate::db_lock::group_commit`]).
    pub(crate) async fn try_db_lock(
        &self,
        member: &crate::db_lock::group_commit::Member,
    ) -> StorageResult<Attempt> {
        let (req, candidate, deadline) = (&*member.req, member.candidate, member.deadline);
        let loc = candidate.location;
        let deltas: Vec<(ProductId, i64)> = req
            .lines
            .iter()
            .map(|(p, q)| (p, -i64::from(q.get())))
            .collect();
        let products: Vec<ProductId> = deltas.iter().map(|(p, _)| *p).collect();
        let statements = async {
            let mut tx = self.begin().await?;
            if let Some(idem) = &req.idempotency {
                if let Claim::Replay(order) =
                    claim_mysql(&mut tx, idem, self.config.idempotency_ttl_secs).await?
                {
                    tx.rollback().await?;
                    return Ok(Err(Attempt::Placed(Placed::Replayed(*order))));
                }
            }
            let mut order = build_order(
                Order::new_id(loc.get()),
                OrderStatus::Confirmed,
                req.path,
                &req.destination,
                candidate,
                &req.lines,
                &member.prices,
                req.channel,
            );
            order.fulfillment.ready_by = member.ready_by.as_deref().map(str::to_owned);
            let reason = match req.path {
                OrderPath::Pos => Reason::PosSale,
                _ => Reason::Order,
            };
            let by = req.by.unwrap_or_else(|| Actor::of_order(&order));
            insert_orders(&mut tx, &[(&order, by)], reason).await?;
            if let Some((product, have)) = change_mysql_stock(&mut tx, loc, &deltas, reason).await?
            {
                tx.rollback().await?;
                return Ok(Err(Attempt::Short { product, have }));
            }
            if let Some(idem) = &req.idempotency {
                complete_mysql(&mut tx, idem, &order).await?;
            }
            let floors = match reason.need() {
                Need::Sellable => safety_of(&mut tx, loc, &products).await?,
                _ => Vec::new(),
            };
            Ok(Ok((tx, order, floors)))
        };
        let (tx, order, floors) = match self.in_time(deadline, statements).await? {
            Ok(ready) => ready,
            Err(done) => return Ok(done),
        };
        if let Some((product, have)) = self
            .commit_order_with_redis(tx, loc, &deltas, &floors)
            .await?
        {
            return Ok(Attempt::Short { product, have });
        }
        Ok(Attempt::Placed(Placed::New(order)))
    }

    /// Cancels `order_id` from MySQL in its location's lane ([`crate::db_lock::group_commit`]),
    /// beside the other cancels and orders waiting there, and answers it as MySQL then holds it.
    /// `by`: who cancels, when not the order's own channel (a shop cancel).
    pub(crate) async fn try_cancel_db_lock(
        &self,
        order_id: &str,
        by: Option<Actor>,
        deadline: Instant,
    ) -> StorageResult<Order> {
        let unknown = || StorageError::from(Refusal::UnknownOrder(order_id.to_owned()));
        // Where an order is fulfilled never changes: its lane can be chosen before any lock.
        let order = self.order_from_mysql(order_id).await?.ok_or_else(unknown)?;
        let loc = LocationId::new_unchecked(order.fulfillment_location_id);
        self.cancel_in_group(
            loc,
            group_cancel::Cancelling {
                order_id: order_id.to_owned(),
                by,
                deadline,
            },
        )
        .await?;
        self.order_from_mysql(order_id).await?.ok_or_else(unknown)
    }

    async fn try_retry_rejected(
        &self,
        order_id: &str,
        by: Actor,
        deadline: Instant,
    ) -> StorageResult<Order> {
        let statements = async {
            let mut tx = self.begin().await?;
            let order = LockedOrder::lock(&mut tx, order_id).await?;
            if order.status != OrderStatus::Rejected {
                return Err(Refusal::Conflict(format!(
                    "order {order_id} is {}; only a REJECTED order can be retried",
                    order.status.as_str()
                ))
                .into());
            }
            let loc = order.location_id;
            let deltas = order_deltas(&mut tx, order_id, -1).await?;
            if let Some(short) = change_mysql_stock(&mut tx, loc, &deltas, Reason::Order).await? {
                tx.rollback().await?;
                return Ok((None, loc, deltas, Some(short)));
            }
            let by = Attribution::of(by);
            let moves: Vec<_> = Move::all(loc, &deltas, order_id, &by).collect();
            insert_movements(&mut tx, &moves, Reason::Order).await?;
            sqlx::query(
                "UPDATE orders SET status = 'CONFIRMED', reject_reason = NULL, rejected_at = NULL \
                 WHERE id = ?",
            )
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
            order_changed(&mut tx, EventType::OrderConfirmed, &[order_id]).await?;
            let products: Vec<ProductId> = deltas.iter().map(|(p, _)| *p).collect();
            let floors = safety_of(&mut tx, loc, &products).await?;
            Ok((Some((tx, floors)), loc, deltas, None))
        };
        let (tx, loc, deltas, short) = self.in_time(deadline, statements).await?;
        let short = match tx {
            // An online order again: Redis keeps its safety stock, as MySQL just did.
            Some((tx, floors)) => {
                self.commit_order_with_redis(tx, loc, &deltas, &floors)
                    .await?
            }
            None => short,
        };
        if let Some((product, have)) = short {
            let want = deltas
                .iter()
                .find(|(p, _)| *p == product)
                .map_or(0, |(_, d)| -d);
            return Err(Refusal::OutOfStock {
                detail: format!(
                    "order {order_id} still cannot be filled: product {product} needs {want}, {} free at location {loc}",
                    have.max(0)
                ),
                product: Some(product),
                alternatives: None,
            }.into());
        }
        self.order_from_mysql(order_id)
            .await?
            .ok_or_else(|| Refusal::UnknownOrder(order_id.to_owned()).into())
    }

    /// The 409 for an order no candidate could fill at `now`. For a pickup it lists the nearby
    /// stores that could, nearest first; for a same-day order that stores in the radius could
    /// fill outside their same-day window, it says when the window opens again instead.
    pub(crate) async fn no_location(
        &self,
        lines: OrderLines,
        destination: &Destination,
        shortest: Option<(LocationId, ProductId, i64)>,
        now: jiff::Timestamp,
    ) -> StorageError {
        if let Destination::SameDay { address, radius_km } = *destination {
            match self.same_day_closed(&lines, address, radius_km, now).await {
                Ok(Some(closed)) => return closed.into(),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not look at the stores outside their same-day window");
                }
            }
        }
        let detail = match (destination, shortest) {
            (_, Some((loc, product, have))) => {
                let want = lines
                    .iter()
                    .find(|(p, _)| *p == product)
                    .map(|(_, q)| q.get())
                    .unwrap_or(0);
                format!(
                    "not enough stock of product {product}: {want} requested, {} available at location {loc}{}",
                    have.max(0),
                    match destination {
                        Destination::Normal { .. } => " (and at no other warehouse either)",
                        Destination::SameDay { .. } => " (and at no other store in range either)",
                        _ => "",
                    }
                )
            }
            (Destination::Normal { .. }, None) => "there is no active warehouse".to_owned(),
            (Destination::SameDay { radius_km, .. }, None) => {
                format!("no active store within {radius_km} km of the delivery address")
            }
            (_, None) => "the store cannot fill this order".to_owned(),
        };
        let alternatives = match destination {
            Destination::Pickup { store, .. } => {
                match self.pickup_alternatives(&lines, *store, now).await {
                    Ok(a) => Some(a),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not list pickup alternatives");
                        Some(Vec::new())
                    }
                }
            }
            _ => None,
        };
        Refusal::OutOfStock {
            detail,
            product: shortest.map(|(_, p, _)| p),
            alternatives,
        }
        .into()
    }
}

impl DbLock<'_> {
    /// Places an order decided in MySQL (DB-lock path or POS sale), trying candidate locations
    /// nearest first. At each, the order is decided in a group with the orders that wait for
    /// the same location's rows ([`crate::db_lock::group_commit`]).
    #[tracing::instrument(level = "debug", skip(self, req), fields(path = req.path.as_str()))]
    pub async fn place(&self, req: &DbLockOrder) -> StorageResult<Placed> {
        match &req.idempotency {
            // A till's keys are the store's own; a channel's are shared with the Redis path.
            Some(idem) if req.path != OrderPath::Pos => {
                self.place_claimed(idem, self.place_in_mysql(req)).await
            }
            _ => self.place_in_mysql(req).await,
        }
    }

    async fn place_in_mysql(&self, req: &DbLockOrder) -> StorageResult<Placed> {
        let prices = self.prices(&req.lines).await?;
        let now = jiff::Timestamp::now();
        let locations = self.catalog().locations();
        let ranked = candidates_at(&locations.index, &req.destination, now)
            .map_err(|e| Refusal::NotFound(e.to_string()))?;
        let ready_by: Option<std::sync::Arc<str>> =
            ready_by(&locations.index, &req.destination, now).map(Into::into);
        let mut shortest = None;
        let deadline = self.db_deadline();
        let (req_shared, prices) = (
            std::sync::Arc::new(req.clone()),
            std::sync::Arc::new(prices),
        );
        for candidate in &ranked {
            let attempt = self
                .decide_in_group(crate::db_lock::group_commit::Member {
                    req: req_shared.clone(),
                    prices: prices.clone(),
                    candidate: *candidate,
                    deadline,
                    ready_by: ready_by.clone(),
                })
                .await?;
            match attempt {
                Attempt::Placed(p) => return Ok(p),
                Attempt::Short { product, have } => {
                    shortest.get_or_insert((candidate.location, product, have));
                }
            }
        }
        Err(self
            .no_location(req.lines.clone(), &req.destination, shortest, now)
            .await)
    }

    /// Cancels an order from MySQL: a DB-lock order, a POS sale, or a Redis-path order that
    /// Redis no longer holds (it was persisted). The stock comes back exactly once, however often
    /// this is called. A `REJECTED` order took no stock: cancelling it closes it with nothing to
    /// give back. `by`: who cancels, when not the order's own channel (`None`: a shop cancel).
    #[tracing::instrument(skip(self))]
    pub async fn cancel(&self, order_id: &str, by: Option<Actor>) -> StorageResult<Order> {
        // The lane retries what MySQL aborts (a deadlock, a lock wait timeout).
        self.try_cancel_db_lock(order_id, by, self.db_deadline())
            .await
    }

    /// An operator's retry of a `REJECTED` order (after a restock): if the location has the units
    /// now, the order is taken as sold exactly as the consumer would have (`CONFIRMED`, stock and
    /// ledger, its rows made by `by`), else the answer says what is missing and nothing changes.
    #[tracing::instrument(skip(self))]
    pub async fn retry_rejected(&self, order_id: &str, by: Actor) -> StorageResult<Order> {
        let deadline = self.db_deadline();
        with_retry("retry rejected order", || {
            self.try_retry_rejected(order_id, by, deadline)
        })
        .await
    }
}

/// What cancelling one order changed of its own rows, and what it gives back.
pub(crate) struct CancelChange {
    pub order_id: String,
    pub loc: LocationId,
    /// The units it gives back (none for a `REJECTED` order, which took none).
    pub deltas: Vec<(ProductId, i64)>,
    pub reason: Reason,
    pub by: Attribution,
}

/// Locks `order_id` and marks it `CANCELLED` if it is `CONFIRMED` or `REJECTED`; answers what that
/// gives back (the stock, the ledger and its event are the caller's to write), or `None` when
/// it is already past cancelling (cancelled before: nothing to do). Refuses an order handed
/// over, before it writes anything. `by`: who cancels, when not the order's own channel.
pub(crate) async fn cancel_order_in(
    tx: &mut MySqlConnection,
    order_id: &str,
    by: Option<Actor>,
) -> StorageResult<Option<CancelChange>> {
    let LockedOrder {
        status,
        path,
        location_id: loc,
        fulfillment,
        channel_id,
    } = LockedOrder::lock(&mut *tx, order_id).await?;
    if let Some(refused) = crate::fulfilment::decide::refuse_cancel(order_id, path, fulfillment) {
        return Err(refused.into());
    }
    let deltas = match status {
        OrderStatus::Confirmed => order_deltas(&mut *tx, order_id, 1).await?,
        OrderStatus::Rejected => Vec::new(),
        _ => return Ok(None),
    };
    sqlx::query("UPDATE orders SET status = 'CANCELLED', cancelled_at = NOW(3) WHERE id = ?")
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
    Ok(Some(CancelChange {
        order_id: order_id.to_owned(),
        loc,
        deltas,
        reason: if path == OrderPath::Pos {
            Reason::PosReturn
        } else {
            Reason::Cancel
        },
        by: Attribution::of(by.unwrap_or(Actor::of_channel(channel_id))),
    }))
}

/// What a cancel or a retry reads of the order it locks.
#[derive(sqlx::FromRow)]
struct LockedOrder {
    status: OrderStatus,
    path: OrderPath,
    location_id: LocationId,
    fulfillment: crate::model::FulfillmentStatus,
    channel_id: Option<u64>,
}

impl LockedOrder {
    /// Locks the row of `order_id` (`FOR UPDATE`) and reads it.
    async fn lock(conn: &mut MySqlConnection, order_id: &str) -> StorageResult<Self> {
        sqlx::query_as(
            "SELECT CAST(status AS CHAR) AS status, CAST(path AS CHAR) AS path, location_id, \
             CAST(fulfillment AS CHAR) AS fulfillment, channel_id FROM orders WHERE id = ? FOR UPDATE",
        )
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Refusal::UnknownOrder(order_id.to_owned()).into())
    }
}

/// A line of an order, as its stock change needs it.
#[derive(sqlx::FromRow)]
struct LineRow {
    product_id: ProductId,
    quantity: i32,
}

/// The lines of an order as signed stock deltas (`sign` 1 gives units back, -1 takes them), in
/// product order.
async fn order_deltas(
    conn: &mut MySqlConnection,
    order_id: &str,
    sign: i64,
) -> StorageResult<Vec<(ProductId, i64)>> {
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT product_id, quantity FROM order_lines WHERE order_id = ? ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(lines
        .into_iter()
        .map(|l| (l.product_id, sign * i64::from(l.quantity)))
        .collect())
}
