//! Background work of an instance besides the consumer: the scheduled jobs (tokio-cron-scheduler)
//! and the watchers that keep the in-memory caches fresh and notice when Redis lost its data.

use crate::config::Config;
use chrono::{DateTime, Utc};
use sf_persistence::infra::jobs::{JobKind, JobRunner, RunOutcome};
use sf_persistence::Storage;
use sf_routing::LocationId;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

/// The cron schedule (six fields: seconds first) of each job.
pub fn schedule(config: &Config, kind: JobKind) -> &str {
    match kind {
        JobKind::Reconcile => &config.reconcile_schedule,
        JobKind::Reclaim => &config.reclaim_schedule,
        JobKind::Housekeeping => &config.housekeeping_schedule,
        JobKind::NotCollected => &config.not_collected_schedule,
        JobKind::HoldExpiry => &config.hold_expiry_schedule,
    }
}

/// Schedules every job. Each tick goes through [`JobRunner::run`], which skips a tick while the
/// previous run still goes, takes the job's lease, and survives panics.
pub async fn start_scheduler(
    config: &Config,
    runner: Arc<JobRunner>,
) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new().await?;
    for kind in JobKind::ALL {
        let cron = schedule(config, kind).to_owned();
        let runner = runner.clone();
        let job = Job::new_async(cron.as_str(), move |_, _| {
            let runner = runner.clone();
            Box::pin(async move {
                match runner.run(kind).await {
                    Ok(RunOutcome::Ran(run)) => tracing::debug!(
                        job = kind.name(),
                        ok = run.ok,
                        ms = run.duration_ms,
                        "job ran"
                    ),
                    Ok(RunOutcome::Skipped(why)) => {
                        tracing::debug!(job = kind.name(), "job skipped: {why}")
                    }
                    Err(e) => tracing::warn!(job = kind.name(), error = %e, "job could not start"),
                }
            })
        })
        .map_err(|e| anyhow::anyhow!("bad schedule {cron:?} for job {}: {e}", kind.name()))?;
        scheduler.add(job).await?;
        tracing::info!(job = kind.name(), schedule = %cron, "scheduled job {}", kind.name());
    }
    scheduler.start().await?;
    Ok(scheduler)
}

/// Reloads the catalogue and locations every few seconds, so that changes made through another
/// instance reach this one's pricing and routing.
pub async fn refresh_caches(storage: Arc<Storage>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = storage.catalog().refresh_catalog().await {
            tracing::warn!(error = %e, "catalogue refresh failed");
        }
        if let Err(e) = storage.catalog().refresh_locations().await {
            tracing::warn!(error = %e, "locations refresh failed");
        }
    }
}

/// Watches Redis. While the circuit is open, probes it (at once, then every `probe`) and, once it
/// answers, runs the recovery (fresh pool, stale keys set from MySQL) before Redis decides orders
/// again. While it is closed, checks every `every` that Redis still holds what was loaded: if it
/// lost its data (a restart without persistence, a flush) the loss is recorded (so a status
/// look-up of an order lost with it says so) and the stock is reloaded from MySQL; meanwhile no
/// order is decided on a missing key (the order paths load the keys they need). Each check also
/// re-syncs stock keys marked stale by another instance, and keys a failed write left queued.
pub async fn watch_redis(
    storage: Arc<Storage>,
    every: Duration,
    probe: Duration,
    shutdown: CancellationToken,
) {
    let mut last_check: Option<tokio::time::Instant> = None;
    let mut last_attempt: Option<tokio::time::Instant> = None;
    let mut owed = Owed::default();
    loop {
        if !storage.health().circuit().trusted() {
            // At most one recovery attempt per `probe`, however often the circuit opens.
            if let Some(wait) = last_attempt.and_then(|t| probe.checked_sub(t.elapsed())) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            last_attempt = Some(tokio::time::Instant::now());
            match storage.recovery().recover_redis().await {
                Ok(true) => last_check = None,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "redis still unreachable"),
            }
        }
        if storage.health().circuit().trusted() && last_check.is_none_or(|t| t.elapsed() >= every) {
            last_check = Some(tokio::time::Instant::now());
            check_redis(&storage, &mut owed).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(probe.min(every)) => {}
            // A circuit that just opened is probed at once: a single cut connection is over as
            // soon as a new one answers.
            _ = storage.health().circuit().opened() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Refreshes the metrics that need a store (the consumer's backlog, the last job runs) every
/// `every`, so that a scrape reads only memory.
pub async fn refresh_metrics(
    state: Arc<sf_openapi::ApiState>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        state.metrics.refresh(&state.storage).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Probes MySQL every `every` (every `probe` while it does not answer), so that health checks
/// can say at once whether it answers.
pub async fn watch_mysql(
    storage: Arc<Storage>,
    every: Duration,
    probe: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let up = storage.health().probe_mysql().await;
        tokio::select! {
            _ = tokio::time::sleep(if up { every } else { probe }) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// What a Redis check left to do, done at the next checks until it succeeds.
#[derive(Default)]
struct Owed {
    /// Locations to warm up.
    cold: BTreeSet<LocationId>,
    /// Losses to record, oldest first.
    losses: Vec<(DateTime<Utc>, Vec<LocationId>)>,
}

/// One check of a trusted Redis: each location's data, stale keys, queued keys. A location whose
/// epoch marker is gone, or is not one this instance met (at the last check, or in a key load
/// since), had its data lost (on a cluster, with the shard that held it). The locations found so
/// in one check are one loss, since the earliest data set of theirs that is gone; only they are
/// recorded (once) and reloaded.
async fn check_redis(storage: &Storage, owed: &mut Owed) {
    let locations = storage.catalog().all_location_ids();
    let met: Vec<_> = locations
        .iter()
        .map(|l| storage.recovery().epochs_met(*l))
        .collect();
    let epochs = match storage.recovery().redis_epochs(&locations).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach redis to check its data");
            return;
        }
    };
    // Every location found without data it held: one loss, since the earliest data set gone.
    // (Each location's data was loaded at a moment of its own, so a flush of a Redis holding
    // 1,310 locations finds up to 1,310 different markers gone; they are one loss, recorded
    // and announced once.)
    let mut lost: Vec<LocationId> = Vec::new();
    let mut since: Option<DateTime<Utc>> = None;
    for ((loc, epoch), met) in epochs.into_iter().zip(met) {
        let gone = storage.recovery().check_epoch(loc, met, epoch);
        if epoch.is_none() || !gone.is_empty() {
            owed.cold.insert(loc);
        }
        if let Some(first) = gone.first() {
            lost.push(loc);
            since = Some(since.map_or(*first, |s| s.min(*first)));
        }
    }
    if let Some(since) = since {
        tracing::warn!(loaded_at = %since, locations = ?lost, "redis lost the data of {} locations (restart without persistence, flush, or a shard that lost it); reloading their stock from MySQL", lost.len());
        owed.losses.push((since, lost));
    }
    // A loss not recorded yet (MySQL did not answer) is recorded at a later check.
    while let Some((since, lost)) = owed.losses.first() {
        if let Err(e) = storage.orders().record_data_loss(*since, lost).await {
            tracing::error!(error = %e, "could not record the redis data loss; retrying at the next check");
            break;
        }
        owed.losses.remove(0);
    }
    if !owed.cold.is_empty() {
        if since.is_none() {
            tracing::info!(
                locations = owed.cold.len(),
                "warming redis up: loading stock from MySQL"
            );
        }
        // Until a warm-up of them succeeds: an order's own key load sets a location's marker, so
        // a later check may find it and yet the location is not whole in Redis.
        let cold: Vec<LocationId> = owed.cold.iter().copied().collect();
        match storage.recovery().warm_up(&cold).await {
            Ok(_) => owed.cold.clear(),
            Err(e) => {
                tracing::error!(error = %e, locations = cold.len(), "warm-up failed; retrying at the next check")
            }
        }
    }
    match storage.recovery().resync_stale_keys().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(keys = n, "re-synced stock keys another writer marked stale"),
        Err(e) => tracing::warn!(error = %e, "could not re-sync stale stock keys"),
    }
    let left = storage.recovery().drain_resync_queue().await;
    if left > 0 {
        tracing::warn!(
            keys = left,
            "stock keys still waiting to be re-synced from MySQL"
        );
    }
}
