//! The dispatcher's loop. Every tick, the instance that holds the lease `webhook-dispatcher`:
//!
//! 1. places the committed events in the feed ([`Events::sequence`]);
//! 2. fans the new ones out to each enabled endpoint of their type ([`Events::fan_out`]);
//! 3. claims each endpoint's due deliveries, as many as it has free slots (per subject only the
//!    first pending one, so an order's events arrive in order), and sends each in a task of its
//!    own, which records the outcome and when to try again ([`super::retry`]).
//!
//! A call that ends wakes the loop at once rather than at its next tick, so an endpoint that
//! answers fast is sent its backlog at the pace it answers, not a few calls per tick.
//!
//! Memory is bounded by the slots: at most `concurrency` deliveries per endpoint are held at
//! once, whatever the backlog in MySQL. An instance that loses the lease finishes the calls it
//! has started and claims no more; one killed mid-call leaves its claimed deliveries pending, due
//! again when their claim lapses (the receiver may then get the same `webhook-id` twice).

use super::retry::RetryPolicy;
use super::send::{self, Answer};
use sf_openapi::metrics::Metrics;
use sf_persistence::events::deliveries::{ActiveEndpoint, AfterFailure, Attempted, DueDelivery};
use sf_persistence::Storage;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The lease's name in `leases`.
pub const LEASE: &str = "webhook-dispatcher";

/// How the dispatcher runs (the `WEBHOOK_*` settings).
#[derive(Debug, Clone, Copy)]
pub struct DispatcherSettings {
    /// How often it looks for work (`WEBHOOK_TICK_MS`).
    pub tick: Duration,
    /// How long its lease lasts unless renewed (`WEBHOOK_LEASE_MS`); renewed every tick.
    pub lease: Duration,
    /// The bound on one call (`WEBHOOK_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Calls in flight per endpoint (`WEBHOOK_CONCURRENCY`).
    pub concurrency: usize,
    /// An endpoint whose every attempt failed for this long is disabled
    /// (`WEBHOOK_DISABLE_AFTER_SECS`).
    pub disable_after: Duration,
    pub retry: RetryPolicy,
}

impl DispatcherSettings {
    /// How long a claimed delivery is kept from being claimed again: the call's bound, and time
    /// to record its outcome.
    fn claim(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }
}

/// Runs the dispatcher until `stop`, as `holder` (this instance's id).
pub async fn run(
    storage: Arc<Storage>,
    metrics: Metrics,
    settings: DispatcherSettings,
    holder: String,
    stop: CancellationToken,
) {
    let client = match send::client(settings.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook dispatcher: no HTTP client; nothing is delivered");
            return;
        }
    };
    let wake = Arc::new(Notify::new());
    let mut dispatcher = Dispatcher {
        storage,
        metrics,
        wake: wake.clone(),
        settings,
        client,
        slots: HashMap::new(),
        calls: TaskTracker::new(),
    };
    let mut tick = tokio::time::interval(settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut holding = false;
    let mut erring = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            // A call ended: its slot is free, and the next delivery of its subject may be due.
            _ = wake.notified() => {}
        }
        let events = dispatcher.storage.events();
        // While MySQL is down every tick fails: one warning per streak, not one per tick.
        let outcome = match events.take_lease(LEASE, &holder, settings.lease).await {
            Ok(true) => dispatcher.pass().await.map(|()| true),
            other => other,
        };
        let held = match outcome {
            Ok(held) => {
                if erring {
                    tracing::info!("webhook dispatcher: its ticks succeed again");
                    erring = false;
                }
                held
            }
            Err(e) => {
                if !erring {
                    tracing::warn!(error = %e, "webhook dispatcher: a tick failed; it retries every tick");
                    erring = true;
                }
                // Whether it still holds the lease is unknown; a lease not renewed lapses.
                holding
            }
        };
        if held != holding {
            tracing::info!(
                holder,
                held,
                "webhook dispatcher lease {}",
                if held { "taken" } else { "lost" }
            );
            holding = held;
        }
    }
    dispatcher.calls.close();
    dispatcher.calls.wait().await;
    if holding {
        if let Err(e) = dispatcher
            .storage
            .events()
            .release_lease(LEASE, &holder)
            .await
        {
            tracing::warn!(error = %e, "webhook dispatcher: could not release its lease");
        }
    }
}

struct Dispatcher {
    storage: Arc<Storage>,
    metrics: Metrics,
    /// Told when a call ends.
    wake: Arc<Notify>,
    settings: DispatcherSettings,
    client: reqwest::Client,
    /// Per endpoint, its free call slots.
    slots: HashMap<u64, Arc<Semaphore>>,
    /// The calls in flight, waited for on stop.
    calls: TaskTracker,
}

impl Dispatcher {
    async fn pass(&mut self) -> sf_persistence::StorageResult<()> {
        let events = self.storage.events();
        events.sequence().await?;
        let endpoints = events.active_endpoints().await?;
        self.slots
            .retain(|id, _| endpoints.iter().any(|e| e.id == *id));
        for endpoint in endpoints {
            let endpoint = Arc::new(endpoint);
            if let Err(e) = self.serve(&endpoint).await {
                tracing::warn!(endpoint = endpoint.id, error = %e, "webhook endpoint {}: a pass failed", endpoint.id);
            }
        }
        Ok(())
    }

    /// Fans out to one endpoint and starts its due calls.
    async fn serve(&mut self, endpoint: &Arc<ActiveEndpoint>) -> sf_persistence::StorageResult<()> {
        let events = self.storage.events();
        let fanned = events.fan_out(endpoint).await?;
        if fanned > 0 {
            tracing::debug!(
                endpoint = endpoint.id,
                fanned,
                "webhook endpoint {}: {fanned} new deliveries",
                endpoint.id
            );
        }
        let slots = self
            .slots
            .entry(endpoint.id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.concurrency.max(1))))
            .clone();
        let free = slots.available_permits() as u32;
        let due = events
            .claim_due(endpoint.id, free, self.settings.claim())
            .await?;
        for delivery in due {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Claimed but no slot: it is due again when its claim lapses.
                break;
            };
            let call = Call {
                storage: self.storage.clone(),
                metrics: self.metrics.clone(),
                wake: self.wake.clone(),
                client: self.client.clone(),
                settings: self.settings,
                endpoint: endpoint.clone(),
                delivery,
                _slot: slot,
            };
            self.calls.spawn(call.run());
        }
        Ok(())
    }
}

/// One delivery's attempt, holding one of its endpoint's slots.
struct Call {
    storage: Arc<Storage>,
    metrics: Metrics,
    wake: Arc<Notify>,
    client: reqwest::Client,
    settings: DispatcherSettings,
    endpoint: Arc<ActiveEndpoint>,
    delivery: DueDelivery,
    _slot: OwnedSemaphorePermit,
}

impl Call {
    #[tracing::instrument(skip(self), fields(endpoint = self.endpoint.id, event = %self.delivery.event_id))]
    async fn run(self) {
        let (endpoint, d) = (&self.endpoint, &self.delivery);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_secs() as i64);
        let started = Instant::now();
        let answer =
            send::attempt(&self.client, endpoint, d, timestamp, self.settings.timeout).await;
        let took = started.elapsed();
        let outcome = match answer {
            Answer::Delivered(status_code) => {
                tracing::debug!(
                    status_code,
                    "webhook {} delivered to endpoint {}",
                    d.event_id,
                    endpoint.id
                );
                Attempted::Delivered { status_code }
            }
            Answer::Refused { status_code, error } => self.failed(Some(status_code), error, took),
            Answer::NoAnswer(error) => self.failed(None, error, took),
        };
        self.metrics.webhook_attempt(match &outcome {
            Attempted::Delivered { .. } => "delivered",
            Attempted::Failed {
                then: AfterFailure::GiveUp,
                ..
            } => "given_up",
            Attempted::Failed { .. } => "retried",
        });
        match self
            .storage
            .events()
            .record_attempt(
                endpoint.id,
                d.seq,
                &outcome,
                took,
                self.settings.disable_after,
            )
            .await
        {
            Ok(Some(reason)) => tracing::warn!(
                endpoint = endpoint.id,
                reason,
                "webhook endpoint {} disabled: {reason}",
                endpoint.id
            ),
            Ok(None) => {}
            // The claim lapses and the delivery is made again.
            Err(e) => {
                tracing::warn!(error = %e, "webhook {}: its outcome could not be recorded", d.event_id)
            }
        }
        self.wake.notify_one();
    }

    fn failed(&self, status_code: Option<u16>, error: String, took: Duration) -> Attempted {
        let d = &self.delivery;
        let now_ms = d.now_ms + took.as_millis() as i64;
        let then = self.settings.retry.after_failure(
            d.attempts,
            d.first_attempt_ms,
            now_ms,
            rand::random::<f64>(),
        );
        tracing::info!(
            endpoint = self.endpoint.id,
            status_code,
            attempts = d.attempts + 1,
            ?then,
            "webhook {} to endpoint {} failed: {error}",
            d.event_id,
            self.endpoint.id
        );
        Attempted::Failed {
            status_code,
            error,
            then,
        }
    }
}
