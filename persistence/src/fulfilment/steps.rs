//! A fulfilment step in one MySQL transaction: the order's row locked (`FOR UPDATE`), the step
//! decided ([`super::decide`]), then, for a hand-over, the order's stock rows locked and changed
//! in product order with their `FULFILLED` ledger rows. Fifty copies of one step queue on the
//! order's row lock; the first applies it, the others find it done and answer the current state.

use super::decide::{decide, Current, Decision, Step};
use super::Fulfilment;
use crate::access::{Actor, Attribution};
use crate::error::{Refusal, StorageError, StorageResult};
use crate::events::{order_changed, EventType};
use crate::infra::mysql::with_retry;
use crate::model::{FulfillmentStatus, Order};
use crate::orders::ledger::{insert_handovers, Move};
use crate::Storage;
use sf_routing::{LocationId, ProductId};
use sqlx::MySqlConnection;

impl Fulfilment<'_> {
    /// Takes `step` on order `order_id` for `store` (`None`: an operator), as `by` (whom the
    /// ledger rows of a hand-over name). Answers the order as it is after the step, also when the
    /// step had been taken before.
    #[tracing::instrument(skip(self), fields(order_id = %order_id, actor = %by))]
    pub async fn step(
        &self,
        order_id: &str,
        store: Option<LocationId>,
        step: Step,
        by: Actor,
    ) -> StorageResult<Order> {
        // An order id names its location: another store's order is unknown to this one, whatever
        // path it took.
        if let (Some(store), Some(loc)) = (store, Order::location_of(order_id)) {
            if store != loc {
                return Err(Refusal::UnknownOrder(order_id.to_owned()).into());
            }
        }
        let deadline = self.db_deadline();
        let outcome = with_retry("fulfilment step", || {
            self.try_step(order_id, store, &step, by, deadline)
        })
        .await?;
        match outcome {
            Outcome::Done => self
                .order_from_mysql(order_id)
                .await?
                .ok_or_else(|| Refusal::UnknownOrder(order_id.to_owned()).into()),
            Outcome::WrongCode { left } => Err(Refusal::WrongPickupCode(if left > 0 {
                format!("wrong pickup code for order {order_id}; {left} more tries before an operator must collect it")
            } else {
                format!("wrong pickup code for order {order_id}; an operator must collect it now (POST /api/admin/orders/{order_id}/collect)")
            })
            .into()),
            Outcome::NotInMysql => match self.orders().get(order_id).await {
                // Accepted in Redis, not yet persisted by the consumer.
                Ok(_) => Err(Refusal::Conflict(format!(
                    "order {order_id} is not yet persisted; retry in a moment"
                ))
                .into()),
                Err(e) => Err(e),
            },
        }
    }
}

enum Outcome {
    /// Applied now or before: the answer is the order as MySQL holds it.
    Done,
    WrongCode {
        left: i32,
    },
    NotInMysql,
}

impl Storage {
    async fn try_step(
        &self,
        order_id: &str,
        store: Option<LocationId>,
        step: &Step,
        by: Actor,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Outcome> {
        let (mut tx, cur) = self
            .in_time(deadline, async {
                let mut tx = self.begin().await?;
                let cur = lock_order(&mut tx, order_id).await?;
                Ok((tx, cur))
            })
            .await?;
        let Some(cur) = cur else {
            return Ok(Outcome::NotInMysql);
        };
        let outcome = match decide(order_id, step, store, &cur) {
            Decision::Refuse(r) => return Err(r.into()),
            Decision::Repeat => return Ok(Outcome::Done),
            Decision::WrongCode { left } => {
                self.in_time(deadline, async {
                    sqlx::query("UPDATE orders SET wrong_codes = wrong_codes + 1 WHERE id = ?")
                        .bind(order_id)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .await?;
                Outcome::WrongCode { left }
            }
            Decision::Apply(next) => {
                self.in_time(deadline, apply(&mut tx, order_id, &cur, next, by))
                    .await?;
                Outcome::Done
            }
        };
        self.commit_in_time(tx).await?;
        Ok(outcome)
    }
}

/// Locks an order's row and reads what a step decides on (`None`: MySQL has no such order).
pub(super) async fn lock_order(
    conn: &mut MySqlConnection,
    order_id: &str,
) -> StorageResult<Option<Current>> {
    Ok(sqlx::query_as(
        "SELECT CAST(status AS CHAR) AS status, CAST(path AS CHAR) AS path, \
         CAST(delivery_type AS CHAR) AS delivery_type, location_id, \
         CAST(fulfillment AS CHAR) AS fulfillment, pickup_code, wrong_codes \
         FROM orders WHERE id = ? FOR UPDATE",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Moves the locked order to `next`; a hand-over takes its units out of `committed`.
async fn apply(
    conn: &mut MySqlConnection,
    order_id: &str,
    cur: &Current,
    next: FulfillmentStatus,
    by: Actor,
) -> StorageResult<()> {
    if next.is_handed_over() {
        hand_over_stock(conn, cur.location_id, order_id, by).await?;
        sqlx::query("UPDATE orders SET fulfillment = ?, handed_over_at = NOW(3) WHERE id = ?")
            .bind(next.as_str())
            .bind(order_id)
            .execute(&mut *conn)
            .await?;
    } else {
        sqlx::query("UPDATE orders SET fulfillment = ?, ready_at = NOW(3) WHERE id = ?")
            .bind(next.as_str())
            .bind(order_id)
            .execute(&mut *conn)
            .await?;
    }
    order_changed(conn, EventType::OrderFulfillmentChanged, &[order_id]).await
}

/// The order's lines as (product, units), in product order.
pub(super) async fn order_units(
    conn: &mut MySqlConnection,
    order_id: &str,
) -> StorageResult<Vec<(ProductId, i64)>> {
    let rows: Vec<(ProductId, i32)> = sqlx::query_as(
        "SELECT product_id, quantity FROM order_lines WHERE order_id = ? ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(p, q)| (p, i64::from(q))).collect())
}

/// Takes a handed-over order's units out of `committed` (and so `onHand`), row by row in product
/// order, and writes their `FULFILLED` ledger rows, made by `by`. A row whose last count left fewer units on
/// the shelf than the order hands over is refused (409): the count must be corrected first, as a
/// hand-over cannot take onHand below zero. A row with fewer units committed than the order holds
/// breaks the committed identity: refused as a fault, and rolled back.
async fn hand_over_stock(
    conn: &mut MySqlConnection,
    loc: LocationId,
    order_id: &str,
    by: Actor,
) -> StorageResult<()> {
    let units = order_units(conn, order_id).await?;
    for (p, n) in &units {
        let changed = sqlx::query(
            "UPDATE stock SET committed = committed - ? \
             WHERE location_id = ? AND product_id = ? AND committed >= ? \
             AND available + committed + reserved >= ?",
        )
        .bind(n)
        .bind(loc)
        .bind(p)
        .bind(n)
        .bind(n)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed == 0 {
            let (committed, on_hand): (i64, i64) = sqlx::query_as(
                "SELECT committed, available + committed + reserved FROM stock \
                 WHERE location_id = ? AND product_id = ?",
            )
            .bind(loc)
            .bind(p)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or((0, 0));
            if committed >= *n && on_hand < *n {
                return Err(Refusal::Conflict(format!(
                    "the last count left {on_hand} units of product {p} on hand at location {loc}, fewer than the {n} this order hands over: count the shelf again (PUT /api/admin/locations/{loc}/products/{p}/stock with reason COUNT), then hand the order over"
                ))
                .into());
            }
            return Err(StorageError::internal(format!(
                "hand-over of order {order_id}: location {loc} has fewer than {n} units of product {p} committed"
            )));
        }
    }
    let by = Attribution::of(by);
    let moves: Vec<_> = Move::all(loc, &units, order_id, &by).collect();
    insert_handovers(conn, &moves).await
}
