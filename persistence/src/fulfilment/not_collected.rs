//! The not-collected job: a pickup left `READY_FOR_PICKUP` longer than `PICKUP_EXPIRY` is
//! cancelled (`cancelReason: NOT_COLLECTED`): its units leave `committed` and are available again,
//! in MySQL and, through the commit step every MySQL-first write ends with, in Redis. Exactly once
//! across instances: the job runs under its lease, and each order is re-checked under its row
//! lock, so a second pass (or a collect racing it) finds it no longer ready.

use super::steps::order_units;
use super::Fulfilment;
use crate::access::{Attribution, SystemJob};
use crate::error::StorageResult;
use crate::events::{order_changed, EventType};
use crate::infra::mysql::with_retry;
use crate::model::{FulfillmentStatus, OrderStatus};
use crate::orders::ledger::{change_mysql_stock, insert_movements, Move, Reason};
use crate::Storage;
use sf_routing::LocationId;
use std::time::Duration;

/// Orders one pass looks at; the next pass takes the rest.
const PER_PASS: u32 = 1000;

/// Whether a pickup made ready at `ready_ms` has waited longer than `expiry` at `now_ms`.
pub(crate) fn expired(ready_ms: Option<i64>, now_ms: i64, expiry: Duration) -> bool {
    ready_ms.is_some_and(|r| now_ms.saturating_sub(r) > expiry.as_millis() as i64)
}

impl Fulfilment<'_> {
    /// Cancels the pickups ready for longer than `expiry`; answers how many it cancelled.
    #[tracing::instrument(skip(self))]
    pub async fn cancel_not_collected(&self, expiry: Duration) -> StorageResult<u64> {
        let ids: Vec<String> = self
            .in_time(self.db_deadline(), async {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM orders WHERE fulfillment = 'READY_FOR_PICKUP' \
                     AND status = 'CONFIRMED' AND ready_at < NOW(3) - INTERVAL ? MICROSECOND \
                     ORDER BY ready_at LIMIT ?",
                )
                .bind(expiry.as_micros() as u64)
                .bind(PER_PASS)
                .fetch_all(&self.db)
                .await?)
            })
            .await?;
        let mut cancelled = 0;
        for id in &ids {
            let deadline = self.db_deadline();
            if with_retry("not-collected cancel", || {
                self.try_expire(id, expiry, deadline)
            })
            .await?
            {
                tracing::info!(order_id = %id, "pickup {id} not collected in time: cancelled");
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }
}

/// What the job reads of an order's locked row.
#[derive(sqlx::FromRow)]
struct Ready {
    status: OrderStatus,
    fulfillment: FulfillmentStatus,
    location_id: LocationId,
    ready_ms: Option<i64>,
    now_ms: i64,
}

impl Storage {
    /// Cancels one pickup if, under its row lock, it is still ready and expired.
    async fn try_expire(
        &self,
        order_id: &str,
        expiry: Duration,
        deadline: tokio::time::Instant,
    ) -> StorageResult<bool> {
        let statements = async {
            let mut tx = self.begin().await?;
            let row: Option<Ready> = sqlx::query_as(
                "SELECT CAST(status AS CHAR) AS status, CAST(fulfillment AS CHAR) AS fulfillment, \
                 location_id, CAST(UNIX_TIMESTAMP(ready_at) * 1000 AS SIGNED) AS ready_ms, \
                 CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS now_ms \
                 FROM orders WHERE id = ? FOR UPDATE",
            )
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(r) = row.filter(|r| {
                r.status == OrderStatus::Confirmed
                    && r.fulfillment == FulfillmentStatus::ReadyForPickup
                    && expired(r.ready_ms, r.now_ms, expiry)
            }) else {
                return Ok(None);
            };
            sqlx::query(
                "UPDATE orders SET status = 'CANCELLED', cancelled_at = NOW(3), cancel_reason = ? \
                 WHERE id = ?",
            )
            .bind(super::NOT_COLLECTED)
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
            order_changed(&mut tx, EventType::OrderCancelled, &[order_id]).await?;
            let loc = r.location_id;
            let deltas = order_units(&mut tx, order_id).await?;
            change_mysql_stock(&mut tx, loc, &deltas, Reason::NotCollected).await?;
            let by = Attribution::system(SystemJob::NotCollected);
            let moves: Vec<_> = Move::all(loc, &deltas, order_id, &by).collect();
            insert_movements(&mut tx, &moves, Reason::NotCollected).await?;
            Ok(Some((tx, loc, deltas)))
        };
        match self.in_time(deadline, statements).await? {
            None => Ok(false),
            Some((tx, loc, deltas)) => {
                // Increments are never refused, so this never answers a short product.
                self.commit_with_redis(tx, loc, &deltas).await?;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pickup_expires_only_past_its_wait() {
        let day = Duration::from_secs(86_400);
        assert!(!expired(None, 10 * 86_400_000, day));
        assert!(!expired(Some(0), 86_400_000, day));
        assert!(expired(Some(0), 86_400_001, day));
    }
}
