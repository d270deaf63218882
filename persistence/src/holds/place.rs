//! Placing a hold: routed like an order, its units taken from `available` into `reserved` at
//! the first candidate location that has them sellable online, MySQL-first.

use super::decide::Ttl;
use super::{rows, Hold, Holds, PlacedHold};
use crate::access::{Actor, Attribution};
use crate::error::{Refusal, StorageResult};
use crate::infra::mysql::with_retry;
use crate::model::Order;
use crate::orders::build::build_order;
use crate::orders::idempotency::{claim_row, IdempotencyRequest};
use crate::orders::ledger::{change_mysql_stock, insert_movements, safety_of, Move, Need, Reason};
use crate::Storage;
use sf_routing::{candidates_at, Candidate, Destination, OrderLines, ProductId};

/// A hold to place.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub lines: OrderLines,
    pub destination: Destination,
    pub ttl: Ttl,
    pub idempotency: Option<IdempotencyRequest>,
    /// The sales channel placing it.
    pub channel: Option<u64>,
}

/// What one candidate location made of a hold.
enum Attempt {
    Placed(PlacedHold),
    Short { product: ProductId, have: i64 },
}

impl Holds<'_> {
    /// Places a hold: routed like an order (`NORMAL`, `SAME_DAY` with the store calendar,
    /// `PICKUP`), each line needing `sellableOnline` exactly as an online order does, tried at
    /// the candidate locations nearest first. Committed before the answer.
    #[tracing::instrument(level = "debug", skip(self, req))]
    pub async fn place(&self, req: &HoldRequest) -> StorageResult<PlacedHold> {
        let prices = self.prices(&req.lines).await?;
        let now = jiff::Timestamp::now();
        let locations = self.catalog().locations();
        let ranked = candidates_at(&locations.index, &req.destination, now)
            .map_err(|e| Refusal::NotFound(e.to_string()))?;
        let mut shortest = None;
        // One id for the hold at whichever location it is tried.
        let uuid = uuid::Uuid::now_v7().simple().to_string();
        for candidate in &ranked {
            let deadline = self.db_deadline();
            let attempt = with_retry("place hold", || {
                self.try_hold(req, *candidate, &prices, &uuid, deadline)
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
}

impl Storage {
    /// One hold at one candidate location, MySQL-first.
    async fn try_hold(
        &self,
        req: &HoldRequest,
        candidate: Candidate,
        prices: &[i64],
        uuid: &str,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Attempt> {
        let loc = candidate.location;
        // The hold is shaped as the order it would become, so both read the same.
        let shape = build_order(
            Order::id_at(loc.get(), uuid),
            crate::model::OrderStatus::Confirmed,
            crate::model::OrderPath::DbLock,
            &req.destination,
            candidate,
            &req.lines,
            prices,
            req.channel,
        );
        let deltas = rows::deltas(&shape.items, -1);
        let products: Vec<ProductId> = deltas.iter().map(|(p, _)| *p).collect();
        let statements = async {
            let mut tx = self.begin().await?;
            if let Some(idem) = &req.idempotency {
                if let Some(held) =
                    claim_row(&mut tx, idem, self.config.idempotency_ttl_secs).await?
                {
                    let Some(hold_id) = held.order_id else {
                        return Err(Refusal::IdempotencyInFlight.into());
                    };
                    let hold = rows::read(&mut tx, &hold_id, false).await?;
                    tx.rollback().await?;
                    return Ok(Err(Attempt::Placed(PlacedHold::Replayed(hold))));
                }
            }
            sqlx::query(
                "INSERT INTO holds (id, delivery_type, status, location_id, distance_km, \
                 delivery_latitude, delivery_longitude, total_amount, expires_at, channel_id) \
                 VALUES (?, ?, 'ACTIVE', ?, ?, ?, ?, ?, NOW(3) + INTERVAL ? SECOND, ?)",
            )
            .bind(&shape.order_id)
            .bind(shape.delivery_type.as_str())
            .bind(loc)
            .bind(shape.distance_km)
            .bind(shape.delivery_address.map(|a| a.latitude))
            .bind(shape.delivery_address.map(|a| a.longitude))
            .bind(shape.total_amount)
            .bind(req.ttl.secs())
            .bind(req.channel)
            .execute(&mut *tx)
            .await?;
            let mut lines = sqlx::QueryBuilder::new(
                "INSERT INTO hold_lines (hold_id, product_id, quantity, unit_price) ",
            );
            lines.push_values(&shape.items, |mut row, i| {
                row.push_bind(&shape.order_id)
                    .push_bind(i.product_id)
                    .push_bind(i.quantity)
                    .push_bind(i.unit_price);
            });
            lines.build().execute(&mut *tx).await?;
            if let Some((product, have)) =
                change_mysql_stock(&mut tx, loc, &deltas, Reason::Hold).await?
            {
                tx.rollback().await?;
                return Ok(Err(Attempt::Short { product, have }));
            }
            // A hold is placed by its channel, as an order is.
            let by = Attribution::of(Actor::of_channel(req.channel));
            let moves: Vec<_> = Move::all(loc, &deltas, &shape.order_id, &by).collect();
            insert_movements(&mut tx, &moves, Reason::Hold).await?;
            if let Some(idem) = &req.idempotency {
                sqlx::query(
                    "UPDATE idempotency_keys SET order_id = ? WHERE scope = ? AND idem_key = ?",
                )
                .bind(&shape.order_id)
                .bind(&idem.scope)
                .bind(&idem.key)
                .execute(&mut *tx)
                .await?;
            }
            let floors = match Reason::Hold.need() {
                Need::Sellable => safety_of(&mut tx, loc, &products).await?,
                _ => Vec::new(),
            };
            let hold = rows::read(&mut tx, &shape.order_id, false).await?;
            Ok(Ok((tx, hold, floors)))
        };
        let (tx, hold, floors): (_, Hold, _) = match self.in_time(deadline, statements).await? {
            Ok(ready) => ready,
            Err(done) => return Ok(done),
        };
        if let Some((product, have)) = self
            .commit_order_with_redis(tx, loc, &deltas, &floors)
            .await?
        {
            return Ok(Attempt::Short { product, have });
        }
        Ok(Attempt::Placed(PlacedHold::New(hold)))
    }
}
