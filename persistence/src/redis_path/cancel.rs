//! Cancels through the shop's routes: every `CANCELLED` answered is held by MySQL first.

use super::RedisPath;
use crate::access::Actor;
use crate::db_lock::commit::mark_stale;
use crate::error::{Refusal, StorageError, StorageResult};
use crate::model::{Order, OrderPath, OrderStatus};
use crate::orders::ledger::{insert_orders, lock_stock_rows, Reason};
use crate::scripts::cancel::{Cancel, Cancelled};
use crate::Storage;
use sf_routing::{LocationId, ProductId};

impl Storage {
    pub(super) async fn try_cancel_order(
        &self,
        order_id: &str,
        loc: LocationId,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Order> {
        if let Some(persisted) = self.order_from_mysql(order_id).await? {
            return self.cancel_persisted(persisted, deadline).await;
        }
        if !self.circuit.trusted() {
            return Err(self.redis_down_error());
        }
        let Some(record) = self.redis_record(loc, order_id).await? else {
            // Persisted (and its record expired) since MySQL was asked, or lost, or unknown.
            return match self.order_from_mysql(order_id).await? {
                Some(persisted) => self.cancel_persisted(persisted, deadline).await,
                None => Err(self.missing_order(order_id).await),
            };
        };
        let order = Order {
            status: OrderStatus::Cancelled,
            reason: None,
            ..record.order()?
        };
        // The stock rows are locked too, although MySQL's figures do not change: a re-sync
        // computing these keys (under its share locks) then sees either neither the cancel's row
        // nor its script's effect, or both.
        let statements = async {
            let mut tx = self.begin().await?;
            insert_orders(
                &mut tx,
                &[(&order, Actor::of_order(&order))],
                Reason::Cancel,
            )
            .await?;
            let products: Vec<ProductId> = order
                .items
                .iter()
                .map(|i| ProductId::new_unchecked(i.product_id))
                .collect();
            lock_stock_rows(&mut tx, loc, &products).await?;
            Ok(tx)
        };
        let tx = match self.in_time(deadline, statements).await {
            Ok(tx) => tx,
            // The consumer persisted it meanwhile: MySQL-first, like any persisted order.
            Err(e) if e.is_duplicate_key() => {
                let persisted = self
                    .order_from_mysql(order_id)
                    .await?
                    .ok_or_else(|| Refusal::UnknownOrder(order_id.to_owned()))?;
                return self.cancel_persisted(persisted, deadline).await;
            }
            Err(e) => return Err(e),
        };
        let cancel = Cancel {
            loc,
            order_id,
            items: &order.items,
        };
        let cancelled = async {
            let mut redis = self.conn().await?;
            if self.replication().is_none() {
                return Ok((cancel.run(&self.keys, &mut redis).await?, true));
            }
            // The units given back must reach the replicas as well: a failover to a replica
            // without them would keep them out of sale in Redis while MySQL holds them, and the
            // reservation left in its stream counts as applied, so no re-sync would follow.
            let slot_key = self.keys.stream(loc);
            match self.replication_at(&slot_key) {
                Some(r) => {
                    let (done, held) = cancel.run_replicated(&self.keys, &mut redis, r).await?;
                    if held < r.replicas {
                        self.note_replicas_short(&slot_key);
                    }
                    Ok((done, held >= r.replicas))
                }
                None => Ok((cancel.run(&self.keys, &mut redis).await?, false)),
            }
        }
        .await;
        match cancelled {
            Ok((Cancelled::Now | Cancelled::Already, replicated)) => {
                let mut tx = tx;
                if !replicated {
                    // Held by too few replicas: its keys are marked stale with the cancel, and
                    // set from MySQL by a re-sync that enough replicas hold.
                    let products = order
                        .items
                        .iter()
                        .map(|i| ProductId::new_unchecked(i.product_id));
                    if let Err(e) = mark_stale(&mut tx, loc, products).await {
                        let _ = tx.rollback().await;
                        return Err(e);
                    }
                }
                self.commit_in_time(tx).await?;
                Ok(order)
            }
            Ok((Cancelled::BeingRejected, _)) => {
                let _ = tx.rollback().await;
                Err(StorageError::unavailable(format!(
                    "order {order_id} is being rejected (MySQL does not have its units); retry shortly"
                )))
            }
            // The record went between the two reads: Redis lost it with its data.
            Ok((Cancelled::NoRecord, _)) => {
                let _ = tx.rollback().await;
                Err(self.missing_order(order_id).await)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// The MySQL-first cancel of an order MySQL holds, unless it is a POS sale.
    pub(super) async fn cancel_persisted(
        &self,
        persisted: Order,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Order> {
        if persisted.path == OrderPath::Pos {
            return Err(Refusal::UnknownOrder(persisted.order_id).into());
        }
        self.try_cancel_db_lock(&persisted.order_id, None, deadline)
            .await
    }
}

impl RedisPath<'_> {
    /// Cancels an order through the shop's routes. Every `CANCELLED` it answers is held by MySQL
    /// before it is answered, so no later failure of Redis (a restart without its data, a
    /// failover to a replica that lacked the cancel) can take it back:
    ///
    /// - an order MySQL holds — a DB-lock order, or a Redis-path order the consumer persisted —
    ///   is cancelled MySQL-first: its row is locked, its units come back in MySQL and, under
    ///   that lock, in Redis ([`Storage::cancel_db_lock`]). This needs no trusted Redis;
    /// - a Redis-path order not yet persisted is written to MySQL as `CANCELLED` (it took no stock
    ///   there), `cancel.lua` gives its units back in Redis while that new row and the order's
    ///   stock rows are locked (under `REDIS_MIN_REPLICA_ACKS`, held by the replicas, or else its
    ///   keys are marked stale in the same transaction), and then the transaction commits. The consumer later finds the order in MySQL and applies neither
    ///   its reservation nor its cancel event. Should the commit fail after the script ran, the
    ///   order still ends `CANCELLED`: the consumer persists its reservation and then its cancel.
    ///
    /// Either way the stock comes back exactly once. A POS sale is not the shop's to cancel: here
    /// it is an unknown order (its store returns it through the store's route).
    #[tracing::instrument(skip(self))]
    pub async fn cancel(&self, order_id: &str) -> StorageResult<Order> {
        let loc = Order::location_of(order_id)
            .ok_or_else(|| Refusal::UnknownOrder(order_id.to_owned()))?;
        let deadline = self.db_deadline();
        crate::infra::mysql::with_retry("cancel", || self.try_cancel_order(order_id, loc, deadline))
            .await
    }
}
