//! Running the scheduled jobs safely, wherever they are scheduled from: a run never overlaps the
//! previous run of the same job on this instance; across instances a lease in Redis (expiring on
//! its own if the holder dies) lets only one run at a time; a panic or error is logged and
//! recorded, and the next run happens as usual. Every run is recorded in `job_runs` for the
//! operators' view.

use crate::consumer::{self, ConsumerConfig, ConsumerStats};
use crate::error::StorageResult;
use crate::recovery::sync::SyncMode;
use crate::scripts::lease::{Lease, LeaseOp};
use crate::Storage;
use serde::Serialize;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The jobs the service schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Compare Redis with MySQL for every stock key, repair drift, check the ledger.
    Reconcile,
    /// Take over and persist events held by a consumer that died.
    Reclaim,
    /// Remove expired idempotency keys and old job runs.
    Housekeeping,
    /// Cancel the pickups left ready longer than `PICKUP_EXPIRY`.
    NotCollected,
    /// Give back the units of checkout holds past their `expiresAt`.
    HoldExpiry,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        Self::Reconcile,
        Self::Reclaim,
        Self::Housekeeping,
        Self::NotCollected,
        Self::HoldExpiry,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Self::Reconcile => "reconcile",
            Self::Reclaim => "reclaim",
            Self::Housekeeping => "housekeeping",
            Self::NotCollected => "not-collected",
            Self::HoldExpiry => "hold-expiry",
        }
    }
}

/// What a job body reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub keys_checked: u64,
    pub keys_repaired: u64,
    pub ledger_mismatches: u64,
    pub details: serde_json::Value,
    /// The run found nothing to do and is not worth a row: a job that runs every second
    /// (hold expiry) records only the runs that changed something.
    #[serde(skip)]
    pub quiet: bool,
}

/// One recorded run (`runId` 0: a quiet run, not recorded).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    pub run_id: u64,
    pub job: String,
    pub instance: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub ok: bool,
    pub keys_checked: u64,
    pub keys_repaired: u64,
    pub ledger_mismatches: u64,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone)]
pub enum RunOutcome {
    Ran(JobRun),
    /// Not run: the previous run is still going, or another instance holds the lease.
    Skipped(String),
}

pub struct JobRunner {
    store: Arc<Storage>,
    /// This instance's id, the lease holder value.
    pub instance: String,
    lease: Duration,
    running: Mutex<HashSet<String>>,
    consumer: ConsumerConfig,
    stats: Arc<ConsumerStats>,
}

impl JobRunner {
    pub fn new(
        store: Arc<Storage>,
        instance: String,
        lease: Duration,
        consumer: ConsumerConfig,
        stats: Arc<ConsumerStats>,
    ) -> Self {
        Self {
            store,
            instance,
            lease,
            running: Mutex::default(),
            consumer,
            stats,
        }
    }

    pub async fn run(&self, kind: JobKind) -> StorageResult<RunOutcome> {
        let consumer = self.consumer.clone();
        let stats = self.stats.clone();
        self.run_named(kind.name(), move |store| async move {
            match kind {
                JobKind::Reconcile => {
                    let report = store.reconcile(SyncMode::Repair, &|_| {}).await?;
                    tracing::info!(
                        checked = report.keys_checked, loaded = report.keys_loaded,
                        repaired = report.keys_repaired, ledger_mismatches = report.ledger_mismatches,
                        "reconcile: {} keys checked, {} repaired, {} loaded, {} ledger mismatches",
                        report.keys_checked, report.keys_repaired, report.keys_loaded, report.ledger_mismatches
                    );
                    Ok(Figures {
                        keys_checked: report.keys_checked,
                        keys_repaired: report.keys_repaired,
                        ledger_mismatches: report.ledger_mismatches,
                        details: serde_json::to_value(&report)?,
                        quiet: false,
                    })
                }
                JobKind::Reclaim => {
                    let n = consumer::reclaim_pass(&store, &consumer, &stats).await?;
                    let (waiting, oldest_ms) = consumer::backlog(&store).await?;
                    Ok(Figures {
                        details: serde_json::json!({"reclaimed": n, "waiting": waiting, "oldestMs": oldest_ms}),
                        ..Figures::default()
                    })
                }
                JobKind::Housekeeping => {
                    let removed = store.housekeeping().await?;
                    Ok(Figures {
                        details: serde_json::json!({"rowsRemoved": removed}),
                        ..Figures::default()
                    })
                }
                JobKind::NotCollected => {
                    let expiry = store.options().pickup_expiry;
                    let cancelled = store.fulfilment().cancel_not_collected(expiry).await?;
                    Ok(Figures {
                        details: serde_json::json!({"cancelled": cancelled}),
                        ..Figures::default()
                    })
                }
                JobKind::HoldExpiry => {
                    let expired = store.holds().expire_due().await?;
                    Ok(Figures {
                        details: serde_json::json!({"expired": expired}),
                        quiet: expired == 0,
                        ..Figures::default()
                    })
                }
            }
        })
        .await
    }

    /// Runs `body` as job `name` with the guarantees of this module.
    pub async fn run_named<F, Fut>(&self, name: &str, body: F) -> StorageResult<RunOutcome>
    where
        F: FnOnce(Arc<Storage>) -> Fut,
        Fut: Future<Output = StorageResult<Figures>> + Send + 'static,
    {
        if !self
            .running
            .lock()
            .expect("running set")
            .insert(name.to_owned())
        {
            return Ok(RunOutcome::Skipped(format!(
                "the previous {name} run is still going"
            )));
        }
        let _guard = RunningGuard {
            set: &self.running,
            name: name.to_owned(),
        };
        let key = self.store.keys.lease(name);
        let taken: Option<String> = {
            let mut c = self.store.conn().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg(&self.instance)
                .arg("NX")
                .arg("PX")
                .arg(self.lease.as_millis() as u64)
                .query_async(&mut c)
                .await?
        };
        if taken.is_none() {
            return Ok(RunOutcome::Skipped(format!(
                "another instance holds the {name} lease"
            )));
        }

        let started_at = chrono::Utc::now();
        let started = Instant::now();
        let renew = self.renew_lease(key.clone());
        let task = tokio::spawn(body(self.store.clone()));
        let result = tokio::select! {
            r = task => r,
            _ = renew => unreachable!("lease renewal runs until the job ends"),
        };
        self.release_lease(&key).await;
        let (ok, figures) = match result {
            Ok(Ok(f)) => (true, f),
            Ok(Err(e)) => {
                tracing::error!(job = name, error = %e, "job {name} failed; it runs again at its next tick");
                (
                    false,
                    Figures {
                        details: serde_json::json!({"error": e.to_string()}),
                        ..Figures::default()
                    },
                )
            }
            Err(e) => {
                tracing::error!(job = name, error = %e, "job {name} panicked; it runs again at its next tick");
                (
                    false,
                    Figures {
                        details: serde_json::json!({"error": format!("panic: {e}")}),
                        ..Figures::default()
                    },
                )
            }
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let run_id = if ok && figures.quiet {
            0
        } else {
            self.record(name, started_at, duration_ms, ok, &figures)
                .await?
        };
        Ok(RunOutcome::Ran(JobRun {
            run_id,
            job: name.to_owned(),
            instance: self.instance.clone(),
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_ms,
            ok,
            keys_checked: figures.keys_checked,
            keys_repaired: figures.keys_repaired,
            ledger_mismatches: figures.ledger_mismatches,
            details: figures.details,
        }))
    }

    /// Writes a run into `job_runs`; answers its id.
    async fn record(
        &self,
        name: &str,
        started_at: chrono::DateTime<chrono::Utc>,
        duration_ms: u64,
        ok: bool,
        figures: &Figures,
    ) -> StorageResult<u64> {
        Ok(sqlx::query(
            "INSERT INTO job_runs (job, instance, started_at, duration_ms, ok, keys_checked, keys_repaired, ledger_mismatches, details) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(name)
        .bind(&self.instance)
        .bind(started_at.naive_utc())
        .bind(duration_ms)
        .bind(ok)
        .bind(figures.keys_checked)
        .bind(figures.keys_repaired)
        .bind(figures.ledger_mismatches)
        .bind(figures.details.to_string())
        .execute(&self.store.db)
        .await?
        .last_insert_id())
    }

    /// Keeps the lease alive while the job runs (never returns).
    async fn renew_lease(&self, key: String) {
        let every = self.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let renewed: StorageResult<bool> = async {
                let renew = Lease {
                    key: &key,
                    holder: &self.instance,
                    op: LeaseOp::Renew(self.lease),
                };
                let mut c = self.store.conn().await?;
                renew.run(&mut c).await
            }
            .await;
            if !matches!(renewed, Ok(true)) {
                tracing::warn!(lease = %key, "could not renew a job lease; another instance may start the job");
            }
        }
    }

    async fn release_lease(&self, key: &str) {
        let released: StorageResult<bool> = async {
            let release = Lease {
                key,
                holder: &self.instance,
                op: LeaseOp::Release,
            };
            let mut c = self.store.conn().await?;
            release.run(&mut c).await
        }
        .await;
        if let Err(e) = released {
            tracing::warn!(lease = key, error = %e, "could not release a job lease; it expires on its own");
        }
    }
}

struct RunningGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    name: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.name);
        }
    }
}

/// The most recent runs, newest first, of one job or of all.
pub async fn recent_runs(
    store: &Storage,
    job: Option<&str>,
    limit: u32,
) -> StorageResult<Vec<JobRun>> {
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT id, job, instance, DATE_FORMAT(started_at, '%Y-%m-%dT%H:%i:%s.%fZ') AS started, \
         duration_ms, ok, keys_checked, keys_repaired, ledger_mismatches, details \
         FROM job_runs WHERE (? IS NULL OR job = ?) ORDER BY id DESC LIMIT ?",
    )
    .bind(job)
    .bind(job)
    .bind(limit)
    .fetch_all(&store.db)
    .await?;
    Ok(rows.into_iter().map(JobRun::from).collect())
}

/// A row of `job_runs`, its start as text with microseconds.
#[derive(sqlx::FromRow)]
struct RunRow {
    id: u64,
    job: String,
    instance: String,
    started: String,
    duration_ms: i64,
    ok: bool,
    keys_checked: i64,
    keys_repaired: i64,
    ledger_mismatches: i64,
    details: Option<String>,
}

impl From<RunRow> for JobRun {
    fn from(r: RunRow) -> Self {
        Self {
            run_id: r.id,
            job: r.job,
            instance: r.instance,
            // Microseconds to milliseconds: keep RFC 3339 with three decimals.
            started_at: r
                .started
                .split_once('.')
                .map(|(a, b)| format!("{a}.{}Z", &b[..3.min(b.len())]))
                .unwrap_or_else(|| r.started.clone()),
            duration_ms: r.duration_ms as u64,
            ok: r.ok,
            keys_checked: r.keys_checked as u64,
            keys_repaired: r.keys_repaired as u64,
            ledger_mismatches: r.ledger_mismatches as u64,
            details: r
                .details
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(serde_json::Value::Null),
        }
    }
}
