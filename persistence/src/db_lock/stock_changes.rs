//! Operators' stock changes: set the on-hand stock of one product at one location, or change it
//! by a delta; recorded in the ledger and applied to Redis as a change, like any MySQL-first
//! write.

use super::DbLock;
use crate::access::Attribution;
use crate::error::{Refusal, StorageResult};
use crate::infra::mysql::with_retry;
use crate::orders::ledger::{change_mysql_stock, insert_movements, Move, Reason};
use crate::Storage;
use sf_routing::{LocationId, ProductId};
use tokio::time::Instant;

/// An operator's stock change: an absolute target or a relative delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockTarget {
    Set(i64),
    Add(i64),
}

/// The result of an operator's stock change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockChange {
    pub before: i64,
    pub after: i64,
}

impl Storage {
    async fn try_change_stock(
        &self,
        loc: LocationId,
        product: ProductId,
        change: StockTarget,
        reason: Reason,
        by: &Attribution,
        deadline: Instant,
    ) -> StorageResult<StockChange> {
        let (tx, delta, before) = self
            .in_time(
                deadline,
                self.stock_change_statements(loc, product, change, reason, by),
            )
            .await?;
        if delta == 0 {
            self.commit_in_time(tx).await?;
            return Ok(StockChange {
                before,
                after: before,
            });
        }
        self.commit_fact_with_redis(tx, loc, &[(product, delta)])
            .await?;
        Ok(StockChange {
            before,
            after: before + delta,
        })
    }

    /// The statements of an operator's stock change, up to its commit step: the transaction, the
    /// change, and the on-hand figure before it. The change moves onHand, and so `available` by
    /// the same delta: units committed to orders stay committed (a count below them leaves
    /// `available` negative, which refuses new orders until stock comes in).
    async fn stock_change_statements(
        &self,
        loc: LocationId,
        product: ProductId,
        change: StockTarget,
        reason: Reason,
        by: &Attribution,
    ) -> StorageResult<(sqlx::Transaction<'static, sqlx::MySql>, i64, i64)> {
        let mut tx = self.begin().await?;
        let lock = || {
            sqlx::query_scalar::<_, i64>(
                "SELECT available + committed + reserved FROM stock \
                 WHERE location_id = ? AND product_id = ? FOR UPDATE",
            )
            .bind(loc)
            .bind(product)
        };
        // The row is locked exclusively straight away: a shared lock first (as an INSERT IGNORE
        // on an existing row takes) would deadlock two operators upgrading it at once.
        let before = match lock().fetch_optional(&mut *tx).await? {
            Some(v) => v,
            None => {
                // A product the location never carried gets a row that starts at zero.
                sqlx::query(
                    "INSERT IGNORE INTO stock (location_id, product_id, available, initial_quantity) VALUES (?, ?, 0, 0)",
                )
                .bind(loc)
                .bind(product)
                .execute(&mut *tx)
                .await?;
                lock().fetch_one(&mut *tx).await?
            }
        };
        let delta = match change {
            StockTarget::Set(q) => q - before,
            StockTarget::Add(d) => d,
        };
        let after = before + delta;
        if after < 0 {
            return Err(Refusal::Conflict(format!(
                "on-hand stock of product {product} at location {loc} is {before}; a change of {delta} would make it negative"
            )).into());
        }
        if delta == 0 {
            return Ok((tx, 0, before));
        }
        change_mysql_stock(&mut tx, loc, &[(product, delta)], reason).await?;
        let ref_id = format!("op-{}", uuid::Uuid::now_v7().simple());
        insert_movements(
            &mut tx,
            &[Move::new(loc, product, delta, &ref_id, by)],
            reason,
        )
        .await?;
        Ok((tx, delta, before))
    }
}

impl DbLock<'_> {
    /// Refuses a location or product that does not exist (after a fresh read of each, so one
    /// just created elsewhere is found).
    async fn known(&self, loc: LocationId, product: ProductId) -> StorageResult<()> {
        if !self
            .catalog()
            .locations()
            .all
            .iter()
            .any(|l| l.location_id == loc.get())
        {
            self.catalog().refresh_locations().await?;
            if self.catalog().locations().get(loc).is_none() {
                return Err(Refusal::UnknownLocation(loc).into());
            }
        }
        if self.catalog().product(product).is_none() {
            self.catalog().refresh_catalog().await?;
            self.catalog()
                .product(product)
                .ok_or(Refusal::UnknownProduct(product))?;
        }
        Ok(())
    }

    /// Sets (`target`) or changes (`delta`) the on-hand stock of one product at one location, as
    /// an operator; recorded in the ledger, with `by`'s actor, note, reference and request id,
    /// and applied to Redis as a change.
    #[tracing::instrument(skip(self, by), fields(actor = %by.actor))]
    pub async fn change_stock(
        &self,
        loc: LocationId,
        product: ProductId,
        change: StockTarget,
        reason: Reason,
        by: &Attribution,
    ) -> StorageResult<StockChange> {
        self.known(loc, product).await?;
        let deadline = self.db_deadline();
        with_retry("stock change", || {
            self.try_change_stock(loc, product, change, reason, by, deadline)
        })
        .await
    }
}

impl DbLock<'_> {
    /// Every state of `product`'s stock at `loc` (all zero for a product the location never
    /// carried).
    pub async fn stock_states(
        &self,
        loc: LocationId,
        product: ProductId,
    ) -> StorageResult<crate::model::StockStates> {
        self.known(loc, product).await?;
        let row: Option<crate::model::StockStates> = sqlx::query_as(
            "SELECT s.location_id, s.product_id, s.available, s.committed, s.reserved, \
             COALESCE(s.safety_stock, l.safety_stock) AS safety_stock \
             FROM stock s JOIN locations l ON l.id = s.location_id \
             WHERE s.location_id = ? AND s.product_id = ?",
        )
        .bind(loc)
        .bind(product)
        .fetch_optional(&self.db)
        .await?;
        match row {
            Some(row) => Ok(row),
            None => Ok(crate::model::StockStates {
                location_id: loc.get(),
                product_id: product.get(),
                available: 0,
                committed: 0,
                reserved: 0,
                safety_stock: crate::orders::ledger::location_safety(
                    &mut *self.db.acquire().await?,
                    loc,
                )
                .await?,
            }),
        }
    }

    /// The ledger of `product` at `loc`, newest first: at most `limit` rows older than the row
    /// `before` (a row id from an earlier page; `None`: from the newest).
    pub async fn movements(
        &self,
        loc: LocationId,
        product: ProductId,
        before: Option<u64>,
        limit: u32,
    ) -> StorageResult<Vec<crate::model::Movement>> {
        self.known(loc, product).await?;
        self.in_time(self.db_deadline(), async {
            Ok(sqlx::query_as(
                "SELECT id, CAST(reason AS CHAR) AS reason, ref_id, available_delta, \
                 committed_delta, reserved_delta, on_hand_delta, actor, note, reference, request_id, \
                 CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) AS at_ms \
                 FROM stock_movements WHERE location_id = ? AND product_id = ? AND id < ? \
                 ORDER BY id DESC LIMIT ?",
            )
            .bind(loc)
            .bind(product)
            .bind(before.unwrap_or(u64::MAX))
            .bind(limit)
            .fetch_all(&self.db)
            .await?)
        })
        .await
    }

    /// Sets `product`'s own safety stock at `loc` (`None`: the location's default), then copies
    /// it to Redis, which online orders on the Redis path are decided with.
    pub async fn set_safety_stock(
        &self,
        loc: LocationId,
        product: ProductId,
        quantity: Option<i64>,
    ) -> StorageResult<crate::model::StockStates> {
        self.known(loc, product).await?;
        sqlx::query(
            "INSERT INTO stock (location_id, product_id, available, initial_quantity, safety_stock) \
             VALUES (?, ?, 0, 0, ?) ON DUPLICATE KEY UPDATE safety_stock = VALUES(safety_stock)",
        )
        .bind(loc)
        .bind(product)
        .bind(quantity)
        .execute(&self.db)
        .await?;
        self.push_safety(loc, &[product]).await;
        // The shop's figures here keep the new buffer back at once (other instances: from their
        // next load of the locations).
        self.catalog().refresh_locations().await?;
        self.stock_states(loc, product).await
    }
}
