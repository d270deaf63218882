//! The commit step every MySQL-first write ends with (DB-lock orders, POS sales, operators' stock
//! changes, cancels): the change reaches Redis under the transaction's row locks, and what to do
//! when Redis cannot take it — commit on MySQL alone and mark the keys stale, or repair them when
//! the outcome is unknown.

use crate::error::{Cause, Failure, FailureKind, StorageError, StorageResult};
use crate::orders::ledger::ROWS_PER_STATEMENT;
use crate::recovery::sync::SyncMode;
use crate::scripts::adjust::{Adjust, AdjustMode, Adjusted};
use crate::Storage;
use sf_routing::{LocationId, ProductId};
use sqlx::{MySqlConnection, QueryBuilder};

impl Storage {
    /// The last step of every MySQL-first write, after all of its MySQL statements: applies the
    /// same change to Redis while the row locks are still held (the Redis figure also excludes
    /// units that online orders took, so a decrement can be refused here: then the transaction is
    /// rolled back and the short product answered), then commits.
    ///
    /// The change is tried in Redis even while this instance's circuit is open: other instances
    /// may still let Redis decide on the same keys. When Redis cannot be reached (the script got
    /// no answer within its deadline), the write commits on MySQL alone and marks its keys stale
    /// in the same transaction (`redis_stale_keys`); they are set from MySQL before this instance
    /// lets Redis decide an order again ([`crate::recovery::Recovery::recover_redis`]).
    ///
    /// Nothing is compensated blindly. When the commit's outcome is unknown (it failed or got no
    /// answer within its deadline), increments are taken back in Redis at once (Redis must never
    /// show units MySQL may not have; a figure too low only sells less for a moment), and the
    /// keys are then set from MySQL at a consistent point, now or, if that fails too, by the
    /// background re-sync.
    pub(crate) async fn commit_with_redis(
        &self,
        tx: sqlx::Transaction<'_, sqlx::MySql>,
        loc: LocationId,
        deltas: &[(ProductId, i64)],
    ) -> StorageResult<Option<(ProductId, i64)>> {
        self.commit_writes_with_redis(tx, loc, deltas, &[], 1, AdjustMode::Check)
            .await
    }

    /// [`Storage::commit_with_redis`] for orders: each decrement must leave its `floors` entry in
    /// Redis (an online order's safety stock; see [`crate::orders::ledger::Need::Sellable`]).
    pub(crate) async fn commit_order_with_redis(
        &self,
        tx: sqlx::Transaction<'_, sqlx::MySql>,
        loc: LocationId,
        deltas: &[(ProductId, i64)],
        floors: &[i64],
    ) -> StorageResult<Option<(ProductId, i64)>> {
        self.commit_writes_with_redis(tx, loc, deltas, floors, 1, AdjustMode::Check)
            .await
    }

    /// [`Storage::commit_with_redis`] for an operator's change of what is on the shelf: it is a
    /// fact, not an order, so Redis takes it whatever it holds (`fact` mode), even below zero —
    /// units Redis promised that are not there are a real shortage, shown and refusing orders
    /// until stock comes in. A key not loaded is loaded first, as for any change.
    pub(crate) async fn commit_fact_with_redis(
        &self,
        tx: sqlx::Transaction<'_, sqlx::MySql>,
        loc: LocationId,
        deltas: &[(ProductId, i64)],
    ) -> StorageResult<()> {
        self.commit_writes_with_redis(tx, loc, deltas, &[], 1, AdjustMode::Fact)
            .await
            .map(|_| ())
    }

    /// [`Storage::commit_with_redis`] for a transaction that holds `writes` writes (a group's
    /// orders): a commit on MySQL alone counts each of them.
    pub(crate) async fn commit_writes_with_redis(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::MySql>,
        loc: LocationId,
        deltas: &[(ProductId, i64)],
        floors: &[i64],
        writes: u64,
        mode: AdjustMode,
    ) -> StorageResult<Option<(ProductId, i64)>> {
        // Recovery waits for every write that got past here to finish (see `recover_redis`).
        let _in_flight = self.circuit.write_in_flight().await;
        // Tried even while this instance's circuit is open: another instance may be deciding on
        // these keys through Redis (its circuit closed, or a cluster shard other than theirs
        // opened this one's), and only a change in Redis itself keeps it from selling the units
        // taken here. Only a write that cannot reach Redis commits on MySQL alone.
        match self.adjust_redis(&mut tx, loc, deltas, floors, mode).await {
            Ok(Some(short)) => {
                tx.rollback().await?;
                return Ok(Some(short));
            }
            Ok(None) => {}
            Err(e) if matches!(e.failure(), Some(FailureKind::NotReplicatedChange)) => {
                // Applied on the master, held by too few replicas: a failover could lose it, so
                // the keys are set from MySQL again (by whichever instance checks first).
                let marked = self
                    .in_time(
                        self.db_deadline(),
                        mark_stale(&mut tx, loc, deltas.iter().map(|(p, _)| *p)),
                    )
                    .await;
                if let Err(e) = marked {
                    // Redis has the change and MySQL will not: take it back.
                    let _ = tx.rollback().await;
                    self.recover_stock_keys(loc, deltas).await;
                    return Err(e);
                }
            }
            Err(e) if e.redis_error().is_some_and(crate::Circuit::unreachable) => {
                // Whether or not the change reached Redis, the keys are set from MySQL before
                // Redis decides again.
                tracing::warn!(location = %loc, error = %e, "redis unreachable during a MySQL-first write; committing on MySQL alone");
                return self
                    .commit_mysql_alone(tx, loc, deltas, writes)
                    .await
                    .map(|()| None);
            }
            Err(e) => {
                let _ = tx.rollback().await;
                self.recover_stock_keys(loc, deltas).await;
                return Err(e);
            }
        }
        if let Err(e) = self.commit_in_time(tx).await {
            tracing::warn!(location = %loc, error = %e, "commit of a MySQL-first write failed or its answer was lost; setting the redis keys from MySQL");
            self.recover_stock_keys(loc, deltas).await;
            return Err(e);
        }
        Ok(None)
    }

    /// Commits a MySQL-first write without Redis: its keys are marked stale in the same
    /// transaction, so no instance lets Redis decide on them before they are set from MySQL.
    ///
    /// Its Redis change got no answer, so it may have been applied; when the mark or the commit
    /// then fails too, the write's outcome is unknown on both sides and the keys are repaired as
    /// after any unknown commit ([`Storage::recover_stock_keys`]): no stale mark protects them.
    pub(super) async fn commit_mysql_alone(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::MySql>,
        loc: LocationId,
        deltas: &[(ProductId, i64)],
        writes: u64,
    ) -> StorageResult<()> {
        let committed = async {
            self.in_time(
                self.db_deadline(),
                mark_stale(&mut tx, loc, deltas.iter().map(|(p, _)| *p)),
            )
            .await?;
            self.commit_in_time(tx).await
        }
        .await;
        if let Err(e) = committed {
            tracing::warn!(location = %loc, error = %e, "a write committing on MySQL alone failed or its answer was lost; setting the redis keys from MySQL");
            self.recover_stock_keys(loc, deltas).await;
            return Err(e);
        }
        self.circuit
            .degraded_writes
            .fetch_add(writes, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Commits within the MySQL deadline. A commit that does not answer in time has an unknown
    /// outcome, like one whose answer was lost.
    pub(crate) async fn commit_in_time(
        &self,
        tx: sqlx::Transaction<'_, sqlx::MySql>,
    ) -> StorageResult<()> {
        match tokio::time::timeout(self.config.db_timeout, tx.commit()).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StorageError::unavailable(format!(
                "MySQL did not confirm the commit within {} ms; the change may or may not have been made",
                self.config.db_timeout.as_millis()
            ))),
        }
    }

    /// After a MySQL-first write whose outcome is unknown: takes back its increments in Redis,
    /// then sets the keys from MySQL (or leaves them to the background re-sync).
    pub(super) async fn recover_stock_keys(&self, loc: LocationId, deltas: &[(ProductId, i64)]) {
        let back: Vec<(ProductId, i64)> = deltas
            .iter()
            .filter(|(_, d)| *d > 0)
            .map(|(p, d)| (*p, -d))
            .collect();
        if !back.is_empty() {
            if let Err(e) = self.run_adjust(loc, &back, &[], AdjustMode::Force).await {
                tracing::error!(location = %loc, error = %e, "could not take back redis increments of a write whose commit is unknown; the keys are re-synced from MySQL");
            }
        }
        let products: Vec<ProductId> = deltas.iter().map(|(p, _)| *p).collect();
        self.resync_or_queue(loc, &products).await;
    }

    /// Applies signed deltas to Redis while the caller holds the rows' locks, loading keys that
    /// are missing. Answers the first product whose Redis figure is too low.
    pub(crate) async fn adjust_redis(
        &self,
        conn: &mut MySqlConnection,
        loc: LocationId,
        deltas: &[(ProductId, i64)],
        floors: &[i64],
        mode: AdjustMode,
    ) -> StorageResult<Option<(ProductId, i64)>> {
        for _ in 0..3 {
            match self.run_adjust(loc, deltas, floors, mode).await? {
                (Adjusted::Applied, false) => {
                    return Err(Failure {
                        kind: FailureKind::NotReplicatedChange,
                        cause: Cause::Message("WAIT counted too few replicas".into()),
                    }
                    .into())
                }
                (Adjusted::Applied, true) => return Ok(None),
                (Adjusted::Short { index, have }, _) => return Ok(Some((deltas[index].0, have))),
                (Adjusted::NotLoaded { .. }, _) => {
                    // Within a deadline: the caller holds the write's guard (and a group's lane).
                    let products: Vec<ProductId> = deltas.iter().map(|(p, _)| *p).collect();
                    self.in_time(
                        self.db_deadline(),
                        self.sync_keys_before(conn, loc, &products, SyncMode::Load, deltas),
                    )
                    .await?;
                }
            }
        }
        Err(StorageError::unavailable(format!(
            "stock of location {loc} could not be loaded into redis"
        )))
    }

    /// Runs `adjust.lua`. Answers its outcome and whether enough replicas hold it (always, unless
    /// `REDIS_MIN_REPLICA_ACKS` asks for replicas: then a change that fewer replicas hold in time,
    /// or whose shard was short of replicas a moment ago, is not).
    pub(super) async fn run_adjust(
        &self,
        loc: LocationId,
        deltas: &[(ProductId, i64)],
        floors: &[i64],
        mode: AdjustMode,
    ) -> StorageResult<(Adjusted, bool)> {
        let adjust = Adjust {
            loc,
            mode,
            deltas,
            floors,
        };
        // Tried even while the circuit is open (see `commit_writes_with_redis`), within the
        // command deadline.
        let mut redis = self.settling_conn().await?;
        if mode == AdjustMode::Force || self.replication().is_none() {
            return Ok((adjust.run(&self.keys, &mut redis).await?, true));
        }
        let slot_key = self.keys.stream(loc);
        match self.replication_at(&slot_key) {
            Some(r) => {
                let (outcome, held) = adjust.run_replicated(&self.keys, &mut redis, r).await?;
                if held < r.replicas {
                    self.note_replicas_short(&slot_key);
                }
                Ok((outcome, held >= r.replicas))
            }
            None => Ok((adjust.run(&self.keys, &mut redis).await?, false)),
        }
    }
}

/// Marks stock keys stale: written on MySQL alone, so Redis may differ until they are set from
/// MySQL. Called inside the write's own transaction, after its stock rows are locked (the order
/// the re-sync takes them in too).
pub(crate) async fn mark_stale(
    conn: &mut MySqlConnection,
    loc: LocationId,
    products: impl Iterator<Item = ProductId>,
) -> StorageResult<()> {
    let mut products: Vec<ProductId> = products.collect();
    products.sort_unstable();
    products.dedup();
    for chunk in products.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::new("INSERT INTO redis_stale_keys (location_id, product_id) ")
            .push_values(chunk, |mut row, p| {
                row.push_bind(loc).push_bind(*p);
            })
            .push(" ON DUPLICATE KEY UPDATE marked_at = NOW(3)")
            .build()
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
