//! Reconciliation: compares every Redis stock key with MySQL at a consistent point and repairs
//! Redis where it drifted; checks the ledger; warms Redis up after it lost its data.
//!
//! The work goes location by location in batches of stock rows (bounded memory, short share
//! locks), so even the benchmark profile's 500,000 rows never stall orders for long. MySQL is the
//! system of record and is never rewritten here: a ledger mismatch is reported, not fixed.

use super::Recovery;
use crate::error::StorageResult;
use crate::recovery::sync::SyncMode;
use crate::Storage;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sf_routing::{LocationId, ProductId};
use std::collections::BTreeSet;
use std::time::Instant;

/// Stock rows per batch (one share-locked range of one location).
pub const BATCH: usize = 1000;

/// Locations a pass works on at once, by mode.
pub struct AtOnce {
    /// A reconciliation runs beside the orders it must not slow: one location at a time (a batch
    /// holds share locks on its rows while it reads the location's stream; two at once made
    /// writers at both wait at once, past their deadline under load).
    pub repair: usize,
    /// A warm-up refills a Redis that lost its data; until it is done, orders for keys not yet
    /// loaded load them themselves, one request at a time. Wider, to be done sooner.
    pub load: usize,
}

pub const AT_ONCE: AtOnce = AtOnce { repair: 1, load: 6 };

impl AtOnce {
    fn of(&self, mode: SyncMode) -> usize {
        match mode {
            SyncMode::Repair => self.repair,
            SyncMode::Load => self.load,
        }
    }
}
/// Repairs and mismatches listed in a report; the counts are always complete.
const LISTED: usize = 100;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Repair {
    pub location_id: u64,
    pub product_id: u64,
    /// Redis before the repair.
    pub before: i64,
    /// What it should be: MySQL on-hand minus the reservations not yet persisted (plus cancels).
    pub after: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct LedgerMismatch {
    pub location_id: u64,
    pub product_id: u64,
    pub available: i64,
    /// Initial stock plus the sum of the ledger.
    pub expected: i64,
    /// The units checkout holds set aside, and the sum of the ledger's `reserved_delta`.
    pub reserved: i64,
    pub expected_reserved: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub keys_checked: u64,
    /// Keys that were missing in Redis and were loaded.
    pub keys_loaded: u64,
    pub keys_repaired: u64,
    pub ledger_mismatches: u64,
    pub repairs: Vec<Repair>,
    pub mismatches: Vec<LedgerMismatch>,
}

impl ReconcileReport {
    /// Adds a part of the pass; the lists keep their first [`LISTED`] entries.
    fn add(&mut self, part: ReconcileReport) {
        self.keys_checked += part.keys_checked;
        self.keys_loaded += part.keys_loaded;
        self.keys_repaired += part.keys_repaired;
        self.ledger_mismatches += part.ledger_mismatches;
        let room = LISTED.saturating_sub(self.repairs.len());
        self.repairs.extend(part.repairs.into_iter().take(room));
        let room = LISTED.saturating_sub(self.mismatches.len());
        self.mismatches
            .extend(part.mismatches.into_iter().take(room));
    }
}

impl Storage {
    /// One full pass over every stock row. `mode` is [`SyncMode::Repair`] for reconciliation and
    /// [`SyncMode::Load`] for warm-up (which only fills missing keys and skips the ledger).
    pub(crate) async fn reconcile(
        &self,
        mode: SyncMode,
        progress: &(dyn Fn(&ReconcileReport) + Send + Sync),
    ) -> StorageResult<ReconcileReport> {
        let locations: Vec<LocationId> = sqlx::query_scalar("SELECT id FROM locations ORDER BY id")
            .fetch_all(&self.db)
            .await?;
        self.reconcile_locations(mode, &locations, progress).await
    }

    /// [`Storage::reconcile`] over the stock rows of `locations` only: [`AT_ONCE`] locations at a
    /// time, each in batches of [`BATCH`] rows in product order, each batch one short transaction.
    pub(crate) async fn reconcile_locations(
        &self,
        mode: SyncMode,
        locations: &[LocationId],
        progress: &(dyn Fn(&ReconcileReport) + Send + Sync),
    ) -> StorageResult<ReconcileReport> {
        let report = std::sync::Mutex::new(ReconcileReport::default());
        let report_ref = &report;
        futures::stream::iter(locations.to_vec())
            .map(move |loc| self.reconcile_location(loc, mode, report_ref, progress))
            .buffer_unordered(AT_ONCE.of(mode))
            .try_collect::<()>()
            .await?;
        let mut report = report.into_inner().expect("reconcile report");
        // Locations finish in any order; the lists read in key order.
        report
            .repairs
            .sort_by_key(|r| (r.location_id, r.product_id));
        report
            .mismatches
            .sort_by_key(|m| (m.location_id, m.product_id));
        Ok(report)
    }

    /// One location's part of a pass, batch by batch.
    async fn reconcile_location(
        &self,
        loc: LocationId,
        mode: SyncMode,
        report: &std::sync::Mutex<ReconcileReport>,
        progress: &(dyn Fn(&ReconcileReport) + Send + Sync),
    ) -> StorageResult<()> {
        let mut after: u64 = 0;
        loop {
            let mut part = ReconcileReport::default();
            let Some(last) = self.reconcile_batch(loc, after, mode, &mut part).await? else {
                return Ok(());
            };
            {
                let mut report = report.lock().expect("reconcile report");
                report.add(part);
                progress(&report);
            }
            match last {
                Some(last) => after = last.get(),
                None => return Ok(()),
            }
        }
    }

    /// The next batch of `loc` after product `after`: answers `None` when there was none, else
    /// the last product of a full batch (`Some(None)` when it was not full: the location is done).
    async fn reconcile_batch(
        &self,
        loc: LocationId,
        after: u64,
        mode: SyncMode,
        report: &mut ReconcileReport,
    ) -> StorageResult<Option<Option<ProductId>>> {
        let synced = crate::infra::mysql::with_retry("reconcile batch", || async {
            let mut tx = self.begin().await?;
            let synced = self.sync_next(&mut tx, loc, after, BATCH, mode).await?;
            tx.commit().await?;
            Ok(synced)
        })
        .await?;
        let products: Vec<ProductId> = synced.iter().map(|k| k.product).collect();
        let (Some(first), Some(last)) = (products.first().copied(), products.last().copied())
        else {
            return Ok(None);
        };
        for k in synced {
            report.keys_checked += 1;
            match k.before {
                None if k.changed => report.keys_loaded += 1,
                Some(before) if k.changed => {
                    report.keys_repaired += 1;
                    report.repairs.push(Repair {
                        location_id: loc.get(),
                        product_id: k.product.get(),
                        before,
                        after: k.expected,
                    });
                }
                _ => {}
            }
        }
        if mode == SyncMode::Repair {
            self.check_ledger(loc, first, last, report).await?;
        }
        Ok(Some((products.len() == BATCH).then_some(last)))
    }

    /// Reports every row of the batch whose available figure is not initial stock plus the
    /// ledger, or whose reserved figure is not the ledger's sum of reserved deltas.
    async fn check_ledger(
        &self,
        loc: LocationId,
        first: ProductId,
        last: ProductId,
        report: &mut ReconcileReport,
    ) -> StorageResult<()> {
        let rows: Vec<LedgerMismatch> = sqlx::query_as(
            "SELECT s.location_id, s.product_id, s.available, \
             CAST(s.initial_quantity + COALESCE(m.total, 0) AS SIGNED) AS expected, \
             s.reserved, CAST(COALESCE(m.reserved, 0) AS SIGNED) AS expected_reserved \
             FROM stock s LEFT JOIN ( \
               SELECT product_id, SUM(available_delta) AS total, \
               SUM(reserved_delta) AS reserved FROM stock_movements \
               WHERE location_id = ? AND product_id BETWEEN ? AND ? GROUP BY product_id \
             ) m ON m.product_id = s.product_id \
             WHERE s.location_id = ? AND s.product_id BETWEEN ? AND ? \
             AND (s.available <> s.initial_quantity + COALESCE(m.total, 0) \
               OR s.reserved <> COALESCE(m.reserved, 0))",
        )
        .bind(loc)
        .bind(first)
        .bind(last)
        .bind(loc)
        .bind(first)
        .bind(last)
        .fetch_all(&self.db)
        .await?;
        for m in rows {
            tracing::error!(
                location = m.location_id,
                product = m.product_id,
                available = m.available,
                expected = m.expected,
                reserved = m.reserved,
                expected_reserved = m.expected_reserved,
                "ledger mismatch at {}/{}: available {} (initial stock plus ledger: {}), reserved {} (ledger: {})",
                m.location_id,
                m.product_id,
                m.available,
                m.expected,
                m.reserved,
                m.expected_reserved
            );
            report.ledger_mismatches += 1;
            if report.mismatches.len() < LISTED {
                report.mismatches.push(m);
            }
        }
        Ok(())
    }

    /// Notes a marker that a key load met (set, or found): data this instance's orders may use,
    /// which the next Redis check must find still there.
    pub(crate) fn saw_epoch(&self, loc: LocationId, at: chrono::DateTime<chrono::Utc>) {
        self.epochs
            .lock()
            .expect("epochs")
            .entry(loc)
            .or_default()
            .seen
            .insert(at);
    }

    /// Removes expired idempotency keys, old job runs and old events. Answers how many rows went.
    pub(crate) async fn housekeeping(&self) -> StorageResult<u64> {
        let mut removed = 0;
        loop {
            let n =
                sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < NOW(3) LIMIT 5000")
                    .execute(&self.db)
                    .await?
                    .rows_affected();
            removed += n;
            if n < 5000 {
                break;
            }
        }
        removed += sqlx::query("DELETE FROM job_runs WHERE started_at < NOW(3) - INTERVAL 7 DAY")
            .execute(&self.db)
            .await?
            .rows_affected();
        removed += self.events().remove_old().await?;
        Ok(removed)
    }
}

impl Recovery<'_> {
    /// When each of `locations` was last loaded into Redis (its epoch marker), or `None` for a
    /// location whose marker is gone: Redis no longer holds what this service loaded for it (it
    /// restarted without its data, was flushed, or — on a cluster — the shard holding the
    /// location did), or never held it.
    pub async fn redis_epochs(
        &self,
        locations: &[LocationId],
    ) -> StorageResult<Vec<(LocationId, Option<chrono::DateTime<chrono::Utc>>)>> {
        if locations.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        for loc in locations {
            pipe.cmd("GET").arg(self.keys.epoch(*loc));
        }
        let markers: Vec<Option<String>> = pipe.query_async(&mut c).await?;
        Ok(locations
            .iter()
            .zip(markers)
            .map(|(loc, v)| (*loc, v.as_deref().map(parse_epoch)))
            .collect())
    }

    /// The epoch marker the last Redis check found for `loc`, if any.
    pub fn known_epoch(&self, loc: LocationId) -> Option<chrono::DateTime<chrono::Utc>> {
        self.epochs
            .lock()
            .expect("epochs")
            .get(&loc)
            .and_then(|e| e.checked)
    }

    /// The markers of `loc` met since the last Redis check (by it, or by a key load): taken just
    /// before the check reads the markers, so that only markers met before that read are judged
    /// by it ([`Storage::check_epoch`]).
    pub fn epochs_met(&self, loc: LocationId) -> BTreeSet<chrono::DateTime<chrono::Utc>> {
        let epochs = self.epochs.lock().expect("epochs");
        epochs
            .get(&loc)
            .map(|e| e.seen.iter().copied().chain(e.checked).collect())
            .unwrap_or_default()
    }

    /// The Redis check's step for `loc`, whose marker the check read as `current`, having taken
    /// `met` just before ([`Storage::epochs_met`]): answers the markers of `met` that are no
    /// longer the marker — each a data set Redis lost, oldest first. A data set loaded and lost
    /// between two checks is among them whenever a key load of this instance met it, so no loss
    /// hides behind a later one.
    pub fn check_epoch(
        &self,
        loc: LocationId,
        met: BTreeSet<chrono::DateTime<chrono::Utc>>,
        current: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Vec<chrono::DateTime<chrono::Utc>> {
        let mut epochs = self.epochs.lock().expect("epochs");
        let e = epochs.entry(loc).or_default();
        e.seen.retain(|m| !met.contains(m));
        e.checked = current;
        met.into_iter().filter(|m| Some(*m) != current).collect()
    }

    /// Loads the missing stock keys of `locations` from MySQL (minus reservations not yet
    /// persisted), then marks each location as warm (its epoch marker, where it has none: every
    /// key load sets it too). Orders meanwhile load the keys they need
    /// themselves; none is decided on a missing key.
    pub async fn warm_up(&self, locations: &[LocationId]) -> StorageResult<ReconcileReport> {
        let started = Instant::now();
        let report = self
            .reconcile_locations(SyncMode::Load, locations, &|_| {})
            .await?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        for loc in locations {
            // Only where missing: a marker that changes says it went missing in between. `GET`
            // answers the one there before (none: it is `now`).
            pipe.cmd("SET")
                .arg(self.keys.epoch(*loc))
                .arg(&now)
                .arg("NX")
                .arg("GET");
        }
        let before: Vec<Option<String>> = pipe.query_async(&mut c).await?;
        for (loc, marker) in locations.iter().zip(before) {
            self.saw_epoch(*loc, parse_epoch(marker.as_deref().unwrap_or(&now)));
        }
        tracing::info!(
            locations = locations.len(),
            keys = report.keys_checked,
            loaded = report.keys_loaded,
            ms = started.elapsed().as_millis() as u64,
            "redis warm for {} locations: {} stock keys checked, {} loaded",
            locations.len(),
            report.keys_checked,
            report.keys_loaded
        );
        Ok(report)
    }
}

/// An epoch marker's time; a marker that cannot be read says "loaded", at an unknown time.
pub(crate) fn parse_epoch(v: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default()
}

/// One location's epoch markers, as this instance knows them.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    /// What the last Redis check found (none: no marker, or no check yet).
    pub(crate) checked: Option<chrono::DateTime<chrono::Utc>>,
    /// Markers key loads met since that check.
    pub(crate) seen: BTreeSet<chrono::DateTime<chrono::Utc>>,
}
