//! Loading and repairing Redis stock from MySQL at a consistent point.
//!
//! The Redis figure of a (location, product) must equal MySQL's on-hand minus the reservations
//! still in the location's event stream plus the cancels still there, counting only events MySQL
//! has not applied yet — applied as [`Standing`] (`orders/applied.rs`) defines it, the rule the
//! consumer goes by. To compute that without racing a writer, the MySQL rows are share-locked
//! first (no MySQL write to them can commit meanwhile), then the events in the stream are checked
//! against MySQL, and finally `sync.lua` adds the events appended since and sets the keys
//! atomically in Redis.

use super::Recovery;
use crate::error::{StorageError, StorageResult};
use crate::formats::{decode_lines, EventKind};
use crate::infra::mysql::push_list;
use crate::orders::applied::{unapplied_effect, Standing};
use crate::recovery::safety::Own;
use crate::scripts::sync::{SyncKeys, Synced};
use crate::Storage;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use sf_routing::{LocationId, ProductId};
use sqlx::{MySqlConnection, QueryBuilder};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Stream entries read per page by a key sync.
const STREAM_PAGE: usize = 1_000;

/// An event's lines: product and units.
type Lines = Vec<(ProductId, u32)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Set keys that are missing; leave present ones alone.
    Load,
    /// Set every key whose value differs from the expected one.
    Repair,
}

/// What one key was, should be, and whether it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedKey {
    pub product: ProductId,
    pub before: Option<i64>,
    pub expected: i64,
    pub changed: bool,
}

/// The stock rows of one location a key sync sets from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rows<'a> {
    /// These products' rows.
    These(&'a [ProductId]),
    /// The first `limit` rows after product `after`, in product order (a pass's batch).
    After { after: u64, limit: usize },
}

/// A stock row's figure and buffer, as a key sync reads them.
#[derive(sqlx::FromRow)]
struct Figures {
    product_id: ProductId,
    available: i64,
    safety_stock: Option<i64>,
}

/// A key marked stale, as `redis_stale_keys` holds it.
#[derive(sqlx::FromRow)]
struct StaleKey {
    location_id: LocationId,
    product_id: ProductId,
}

impl Storage {
    /// Loads missing stock keys of `products` at `loc` in a transaction of its own, by `deadline`
    /// (its retries after a lock wait included): a request that needs a key while its row stays
    /// locked is refused in time, not after every retry.
    pub(crate) async fn load_keys(
        &self,
        loc: LocationId,
        products: &[ProductId],
        deadline: tokio::time::Instant,
    ) -> StorageResult<()> {
        self.sync_in_own_tx(loc, products, SyncMode::Load, deadline)
            .await
    }

    /// [`Storage::sync_keys`] in a transaction of its own, retried after a deadlock or a lock
    /// wait, all by `deadline`.
    async fn sync_in_own_tx(
        &self,
        loc: LocationId,
        products: &[ProductId],
        mode: SyncMode,
        deadline: tokio::time::Instant,
    ) -> StorageResult<()> {
        self.in_time(
            deadline,
            crate::infra::mysql::with_retry("set stock keys from MySQL", || async {
                let mut tx = self.begin().await?;
                self.sync_keys(&mut tx, loc, products, mode).await?;
                tx.commit().await?;
                Ok(())
            }),
        )
        .await
    }

    /// Sets the Redis stock of `products` at `loc` from MySQL at a consistent point, after a
    /// failure that may have left them wrong. If that fails too (MySQL or Redis unreachable, or
    /// not within the MySQL deadline of a request: callers may hold a write's guard), the keys
    /// are queued and [`crate::recovery::Recovery::drain_resync_queue`] sets them later.
    pub(crate) async fn resync_or_queue(&self, loc: LocationId, products: &[ProductId]) {
        let done = self
            .sync_in_own_tx(loc, products, SyncMode::Repair, self.db_deadline())
            .await;
        if let Err(e) = done {
            tracing::warn!(location = %loc, error = %e, "could not re-sync stock keys now; queued for the background re-sync");
            self.resync_queue
                .lock()
                .expect("resync queue")
                .entry(loc)
                .or_default()
                .extend(products.iter().copied());
        }
    }

    /// One PING on a connection of its own (on a cluster, `CLUSTER INFO` must say every slot is
    /// served), within the connect and command deadlines.
    async fn probe_redis(&self) -> StorageResult<()> {
        let settings = &self.redis_settings;
        let ping = async {
            let mut c = settings.own_connection(&self.redis_client).await?;
            if settings.is_cluster() {
                // A node answering is not enough: every slot must be served (a failover over).
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut c)
                    .await?;
                if !info.contains("cluster_state:ok") {
                    return Err(StorageError::unavailable(
                        "the redis cluster does not serve every slot yet",
                    ));
                }
            } else {
                redis::cmd("PING").query_async::<()>(&mut c).await?;
            }
            Ok::<_, StorageError>(())
        };
        match tokio::time::timeout(settings.connect_timeout + settings.command_timeout, ping).await
        {
            Ok(r) => r,
            Err(_) => Err(StorageError::unavailable(
                "redis did not answer the probe in time",
            )),
        }
    }

    /// Computes and sets the Redis stock of `products` at `loc` within `conn`'s transaction, which
    /// keeps the share locks until it ends.
    pub(crate) async fn sync_keys(
        &self,
        conn: &mut MySqlConnection,
        loc: LocationId,
        products: &[ProductId],
        mode: SyncMode,
    ) -> StorageResult<Vec<SyncedKey>> {
        self.sync_keys_before(conn, loc, products, mode, &[]).await
    }

    /// [`Storage::sync_keys`] over the next `limit` stock rows of `loc` after product `after`
    /// (none: the location is done).
    pub(crate) async fn sync_next(
        &self,
        conn: &mut MySqlConnection,
        loc: LocationId,
        after: u64,
        limit: usize,
        mode: SyncMode,
    ) -> StorageResult<Vec<SyncedKey>> {
        self.sync_keys_replicated(conn, loc, Rows::After { after, limit }, mode, &[], None)
            .await
            .map(|(out, _)| out)
    }

    /// Like [`Storage::sync_keys`], from within a transaction that already changed some of these
    /// rows by `own` and has not yet told Redis: the keys are computed from the rows as they were
    /// before that change, which then reaches Redis as a change like any other.
    pub(crate) async fn sync_keys_before(
        &self,
        conn: &mut MySqlConnection,
        loc: LocationId,
        products: &[ProductId],
        mode: SyncMode,
        own: &[(ProductId, i64)],
    ) -> StorageResult<Vec<SyncedKey>> {
        self.sync_keys_replicated(conn, loc, Rows::These(products), mode, own, None)
            .await
            .map(|(out, _)| out)
    }

    /// [`Storage::sync_keys_before`]; with `replication`, the script is followed by `WAIT` on its
    /// connection, and the answer says how many replicas hold the keys it set.
    async fn sync_keys_replicated(
        &self,
        conn: &mut MySqlConnection,
        loc: LocationId,
        rows: Rows<'_>,
        mode: SyncMode,
        own: &[(ProductId, i64)],
        replication: Option<crate::scripts::Replication>,
    ) -> StorageResult<(Vec<SyncedKey>, Option<u32>)> {
        // The figures and the buffers, under one share lock each.
        let (rows, products): (Vec<Figures>, std::borrow::Cow<'_, [ProductId]>) = match rows {
            Rows::These(products) => {
                if products.is_empty() {
                    return Ok((Vec::new(), None));
                }
                let mut q = QueryBuilder::new(
                    "SELECT product_id, available, safety_stock FROM stock WHERE location_id = ",
                );
                q.push_bind(loc).push(" AND product_id IN ");
                push_list(&mut q, products.iter().copied());
                q.push(" ORDER BY product_id LOCK IN SHARE MODE");
                let rows = q.build_query_as().fetch_all(&mut *conn).await?;
                (rows, products.into())
            }
            Rows::After { after, limit } => {
                // One index range: a pass's batch is the next rows of the location.
                let rows: Vec<Figures> = sqlx::query_as(
                    "SELECT product_id, available, safety_stock FROM stock \
                     WHERE location_id = ? AND product_id > ? \
                     ORDER BY product_id LIMIT ? LOCK IN SHARE MODE",
                )
                .bind(loc)
                .bind(after)
                .bind(limit as u64)
                .fetch_all(&mut *conn)
                .await?;
                if rows.is_empty() {
                    return Ok((Vec::new(), None));
                }
                let products: Vec<ProductId> = rows.iter().map(|r| r.product_id).collect();
                (rows, products.into())
            }
        };
        let products: &[ProductId] = &products;
        let mut available: HashMap<ProductId, i64> = rows
            .iter()
            .map(|row| (row.product_id, row.available))
            .collect();
        let buffers: Vec<Own> = rows
            .into_iter()
            .map(|row| Own {
                product_id: row.product_id,
                safety_stock: row.safety_stock,
            })
            .collect();
        for (p, d) in own {
            if let Some(v) = available.get_mut(p) {
                *v -= d;
            }
        }

        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut redis = self.conn().await?;
        let mut moved = 0;
        let (out, marker, held) = loop {
            // The marker first, then the stream: the script checks that the marker is still
            // this one, so the stream read belongs to the data set the script then changes.
            let marker_seen: Option<String> = redis.get(self.keys.epoch(loc)).await?;
            let (counted, read_to) = self
                .count_unapplied(conn, &mut redis, loc, products, &available)
                .await?;
            let sync = SyncKeys {
                loc,
                mode,
                counted: &counted,
                read_to: &read_to,
                loaded_at: &now,
                marker_seen: marker_seen.as_deref(),
            };
            let (synced, held) = match replication {
                None => (sync.run(&self.keys, &mut redis).await?, None),
                Some(r) => {
                    let (synced, held) = sync.run_replicated(&self.keys, &mut redis, r).await?;
                    (synced, Some(held))
                }
            };
            match synced {
                Synced::Set(out, marker) => break (out, marker, held),
                Synced::Moved(current) if moved < 3 => {
                    moved += 1;
                    tracing::debug!(location = %loc, seen = ?marker_seen, now = ?current, "the location's data changed while its stream was read; reading again");
                }
                Synced::Moved(_) => {
                    return Err(StorageError::unavailable(format!(
                        "the stock cache's data of location {loc} kept changing while it was loaded; retry shortly"
                    )))
                }
            }
        };
        self.saw_epoch(loc, crate::recovery::reconcile::parse_epoch(&marker));
        for k in out.iter().filter(|k| k.changed) {
            match k.before {
                None => {
                    tracing::debug!(location = %loc, product = %k.product, value = k.expected, "loaded stock key {loc}/{}", k.product)
                }
                Some(before) => tracing::warn!(
                    location = %loc, product = %k.product, before, after = k.expected,
                    reason = "redis differed from mysql minus unpersisted events",
                    "repaired stock key {loc}/{}: {before} -> {}", k.product, k.expected
                ),
            }
        }
        // The buffers these keys are decided with, from the same consistent point.
        self.write_safety_of(conn, &mut redis, loc, &buffers)
            .await?;
        Ok((out, held))
    }

    /// Reads the event stream of `loc` in pages and counts, per product of `products`, MySQL's
    /// on-hand moved by the units of every event MySQL has not applied (by [`Standing`], the
    /// definition the consumer goes by: a reservation's units are gone already, a cancel's are
    /// back). Answers the counts (in `products` order) and the id of the last entry read (`0-0`:
    /// none). The caller holds share locks on the stock rows, so an event MySQL has not applied
    /// stays unapplied until they are released.
    async fn count_unapplied(
        &self,
        conn: &mut MySqlConnection,
        redis: &mut crate::infra::circuit::GuardedConn,
        loc: LocationId,
        products: &[ProductId],
        available: &HashMap<ProductId, i64>,
    ) -> StorageResult<(Vec<(ProductId, i64)>, String)> {
        let wanted: HashSet<ProductId> = products.iter().copied().collect();
        let stream = self.keys.stream(loc);
        let mut read_to = "0-0".to_owned();
        // Each event that moves these products: its order, its kind, and its lines among them.
        let mut events: Vec<(String, EventKind, Lines)> = Vec::new();
        loop {
            let page: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(format!("({read_to}"))
                .arg("+")
                .arg("COUNT")
                .arg(STREAM_PAGE)
                .query_async(&mut *redis)
                .await?;
            let full = page.ids.len() == STREAM_PAGE;
            for entry in &page.ids {
                read_to.clone_from(&entry.id);
                let t: Option<String> = entry.get("t");
                let o: Option<String> = entry.get("o");
                let l: Option<String> = entry.get("l");
                let (Some(t), Some(o), Some(l)) = (t, o, l) else {
                    continue;
                };
                let Some(kind) = single_kind(&t) else {
                    continue;
                };
                if unapplied_effect(kind) == 0 {
                    continue;
                }
                let lines: Lines = decode_lines(&l)?
                    .into_iter()
                    .filter(|(p, _)| wanted.contains(p))
                    .collect();
                if !lines.is_empty() {
                    events.push((o, kind, lines));
                }
            }
            if !full {
                break;
            }
        }
        let ids: Vec<&str> = {
            let mut v: Vec<&str> = events.iter().map(|(o, _, _)| o.as_str()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let held = crate::orders::statuses(&mut *conn, &ids, false).await?;
        let mut counted: HashMap<ProductId, i64> = products
            .iter()
            .map(|p| (*p, available.get(p).copied().unwrap_or(0)))
            .collect();
        for (order, kind, lines) in &events {
            if Standing::of(*kind, held.get(order).copied()).is_final() {
                continue;
            }
            for (p, q) in lines {
                *counted.get_mut(p).expect("a wanted product") +=
                    unapplied_effect(*kind) * i64::from(*q);
            }
        }
        Ok((products.iter().map(|p| (*p, counted[p])).collect(), read_to))
    }
}

/// The kind of a stream entry whose `t` is one character; another `t` moves nothing.
fn single_kind(t: &str) -> Option<EventKind> {
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(EventKind::from_char(c)),
        _ => None,
    }
}

impl Recovery<'_> {
    /// Re-syncs the queued stock keys; those that still fail stay queued. Answers how many keys
    /// are left.
    pub async fn drain_resync_queue(&self) -> usize {
        let queued = std::mem::take(&mut *self.resync_queue.lock().expect("resync queue"));
        for (loc, products) in queued {
            let products: Vec<ProductId> = products.into_iter().collect();
            self.resync_or_queue(loc, &products).await;
        }
        self.resync_queue
            .lock()
            .expect("resync queue")
            .values()
            .map(BTreeSet::len)
            .sum()
    }

    /// Brings Redis back into use after the circuit opened. A PING on a fresh connection (within
    /// the connect and command deadlines) must answer; then calls go through again (the circuit
    /// is half open), the pool is replaced by a fresh one (no request meets a connection bound to
    /// the dead server), every MySQL-first write that saw the circuit open is waited for, and
    /// every key marked stale in `redis_stale_keys` is set from MySQL. Only then does the circuit
    /// close and Redis decide orders again. Answers whether it closed.
    pub async fn recover_redis(&self) -> StorageResult<bool> {
        if self.circuit.trusted() {
            return Ok(true);
        }
        if self.circuit.state() == crate::CircuitState::Open {
            self.probe_redis().await?;
            if !self.circuit.half_open() {
                return Ok(self.circuit.trusted());
            }
            tracing::info!("redis answers again; re-syncing stale keys before it decides orders");
        }
        let steps = async {
            self.renew_redis_pool().await?;
            self.circuit.wait_for_writes().await;
            let n = self.resync_stale_keys().await?;
            if n > 0 {
                tracing::info!(
                    keys = n,
                    "re-synced {n} stock keys written on MySQL alone during the outage"
                );
            }
            Ok::<_, StorageError>(())
        };
        if let Err(e) = steps.await {
            self.circuit.trip(&format!("recovery failed: {e}"));
            return Err(e);
        }
        Ok(self.circuit.close())
    }

    /// Sets every key marked stale from MySQL (minus the events MySQL has not applied yet) and
    /// clears the marks, location by location, each in one transaction that share-locks the stock
    /// rows first: a write marking one of them again waits for it, or is waited for. Answers how
    /// many keys were re-synced.
    ///
    /// It takes the marks there were when it began, in key order, once each: other instances may
    /// keep marking keys meanwhile, and a pass that chased them could go on for ever (and keep a
    /// recovering instance's circuit open). A later mark is left to the next check.
    pub async fn resync_stale_keys(&self) -> StorageResult<usize> {
        let began: chrono::NaiveDateTime = sqlx::query_scalar("SELECT NOW(3)")
            .fetch_one(&self.db)
            .await?;
        let mut after: (u64, u64) = (0, 0);
        let mut done = 0;
        loop {
            let rows: Vec<StaleKey> = sqlx::query_as(
                "SELECT location_id, product_id FROM redis_stale_keys \
                 WHERE marked_at <= ? AND (location_id, product_id) > (?, ?) \
                 ORDER BY location_id, product_id LIMIT 1000",
            )
            .bind(began)
            .bind(after.0)
            .bind(after.1)
            .fetch_all(&self.db)
            .await?;
            if rows.is_empty() {
                return Ok(done);
            }
            let mut by_location: std::collections::BTreeMap<LocationId, Vec<ProductId>> =
                Default::default();
            for key in &rows {
                after = after.max((key.location_id.get(), key.product_id.get()));
                by_location
                    .entry(key.location_id)
                    .or_default()
                    .push(key.product_id);
            }
            for (loc, products) in by_location {
                // Under `REDIS_MIN_REPLICA_ACKS` a mark goes only once enough replicas hold the
                // re-sync: a failover to a replica that lacks it would bring the stale figure
                // back. Until then the keys are still set on the master (so Redis may decide on
                // them), and the mark stays for a later check.
                let wanted = self.replication();
                let slot_key = self.keys.stream(loc);
                let replication = wanted.and_then(|_| self.replication_at(&slot_key));
                let cleared = crate::infra::mysql::with_retry("re-sync stale keys", || async {
                    let mut tx = self.begin().await?;
                    let (_, held) = self
                        .sync_keys_replicated(
                            &mut tx,
                            loc,
                            Rows::These(&products),
                            SyncMode::Repair,
                            &[],
                            replication,
                        )
                        .await?;
                    let clear = match wanted {
                        None => true,
                        Some(w) => held.is_some_and(|h| h >= w.replicas),
                    };
                    if clear {
                        let mut q =
                            QueryBuilder::new("DELETE FROM redis_stale_keys WHERE location_id = ");
                        q.push_bind(loc).push(" AND product_id IN ");
                        push_list(&mut q, products.iter().copied());
                        q.build().execute(&mut *tx).await?;
                    } else if held.is_some() {
                        self.note_replicas_short(&slot_key);
                    }
                    tx.commit().await?;
                    Ok(clear)
                })
                .await?;
                if cleared {
                    done += products.len();
                }
            }
        }
    }
}
