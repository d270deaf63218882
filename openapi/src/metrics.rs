//! Prometheus metrics: requests by route and status class, pool, circuit, consumer and job
//! figures, and the process's own. Rendered at `/metrics` in the text exposition format. A scrape
//! reads only memory: the figures that need a store (the consumer's backlog, holds, stale keys,
//! dead letters, the last job runs) are refreshed in the background ([`Metrics::refresh`]); what
//! only grows is a counter.
//!
//! Names follow Prometheus's conventions, and `metrics` in the test suite checks them on a real
//! scrape: every name starts with `stockflow_`, times are in seconds, a counter ends in `_total`
//! and nothing else does. A figure read from a store the instances share starts with
//! `stockflow_cluster_`: every instance exports the same value, so it is aggregated with `max`,
//! never `sum`. docs/operations.md lists every metric and the alert it feeds.

mod process;

use crate::edge::Methods;
use crate::state::ApiState;
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The outcomes of a webhook call, as `stockflow_webhook_deliveries_total` labels them.
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "retried", "given_up"];

/// Printed by the cluster-wide figures' help.
const CLUSTER: &str = "the same figure on every instance; aggregate with max, not sum";

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    latency: HistogramVec,
    pool: IntGaugeVec,
    consumer_events: IntCounterVec,
    consumer_batches: IntCounter,
    consumer_failed_rounds: IntCounter,
    backlog: IntGauge,
    backlog_age: Gauge,
    job_keys_checked: IntGaugeVec,
    job_keys_repaired: IntGaugeVec,
    job_ledger_mismatches: IntGaugeVec,
    job_duration: GaugeVec,
    job_success: IntGaugeVec,
    job_started: GaugeVec,
    up: IntGaugeVec,
    circuit: IntGaugeVec,
    trips: IntCounter,
    degraded: IntCounterVec,
    shed: IntCounterVec,
    in_flight: IntGaugeVec,
    group_commits: IntCounter,
    grouped_orders: IntCounter,
    cancel_groups: IntCounter,
    grouped_cancels: IntCounter,
    holds_active: IntGauge,
    holds: IntCounterVec,
    holds_overdue: Gauge,
    stale_keys: IntGauge,
    stale_age: Gauge,
    dead_letters: IntGauge,
    webhook_attempts: IntCounterVec,
    webhook_pending: IntGauge,
    webhook_pending_age: Gauge,
    webhook_disabled: IntGauge,
    process: Option<process::Figures>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a metric and hands it back.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("register metric");
    c
}

/// The help of a cluster-wide figure.
fn cluster(help: &str) -> String {
    format!("{help} ({CLUSTER})")
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let int_gauge = |name: &str, help: &str| {
            register(
                &r,
                IntGauge::with_opts(Opts::new(name, help)).expect("metric"),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(&r, Gauge::with_opts(Opts::new(name, help)).expect("metric"))
        };
        let int_gauges = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("metric"),
            )
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                GaugeVec::new(Opts::new(name, help), labels).expect("metric"),
            )
        };
        let counter = |name: &str, help: &str| {
            register(
                &r,
                IntCounter::with_opts(Opts::new(name, help)).expect("metric"),
            )
        };
        let counters = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("metric"),
            )
        };

        let build = int_gauges(
            "stockflow_build_info",
            "Always 1; its label names the version running",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let latency = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "stockflow_http_request_duration_seconds",
                    "HTTP requests and their duration, by method, route template (`other`: no route of the service) and status class",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["method", "route", "status"],
            )
            .expect("metric"),
        );
        let shed = counters(
            "stockflow_http_requests_shed_total",
            "Requests refused with 503 because their kind of work had its most requests in flight",
            &["kind"],
        );
        let in_flight = int_gauges(
            "stockflow_http_requests_in_flight",
            "Requests in flight, by kind of work",
            &["kind"],
        );
        let pool = int_gauges(
            "stockflow_pool_connections",
            "Connections in this instance's pools, by state",
            &["pool", "state"],
        );
        let up = int_gauges(
            "stockflow_dependency_up",
            "1 while the dependency answers (MySQL: its last probe; Redis: circuit not open)",
            &["dependency"],
        );
        let circuit = int_gauges(
            "stockflow_redis_circuit_state",
            "The Redis circuit: 1 for its current state (closed, open or recovering), 0 for the others",
            &["state"],
        );
        let trips = counter(
            "stockflow_redis_circuit_trips_total",
            "Times the Redis circuit opened",
        );
        let degraded = counters(
            "stockflow_degraded_total",
            "Work done in degraded mode (Redis unreachable, or its replicas behind), by kind",
            &["kind"],
        );
        let group_commits = counter(
            "stockflow_db_lock_group_commits_total",
            "Transactions that decided DB-lock orders together",
        );
        let grouped_orders = counter(
            "stockflow_db_lock_grouped_orders_total",
            "Order attempts decided in those transactions (an order tried at a second location counts again)",
        );
        let cancel_groups = counter(
            "stockflow_db_lock_cancel_groups_total",
            "Transactions that cancelled MySQL-held orders together",
        );
        let grouped_cancels = counter(
            "stockflow_db_lock_grouped_cancels_total",
            "Cancels done in those transactions",
        );
        let consumer_events = counters(
            "stockflow_consumer_events_total",
            "Order events this instance's consumer handled, by outcome",
            &["outcome"],
        );
        let consumer_batches = counter(
            "stockflow_consumer_batches_total",
            "Batches of events this instance's consumer committed to MySQL",
        );
        let consumer_failed_rounds = counter(
            "stockflow_consumer_failed_rounds_total",
            "Rounds of this instance's consumer that failed and were retried whole (MySQL or Redis unreachable)",
        );
        let backlog = int_gauge(
            "stockflow_cluster_consumer_backlog_events",
            &cluster("Events accepted in Redis and not yet acknowledged as persisted, over all locations"),
        );
        let backlog_age = gauge(
            "stockflow_cluster_consumer_backlog_oldest_seconds",
            &cluster("Age of the oldest event not yet acknowledged as persisted (0: none)"),
        );
        let holds_active = int_gauge(
            "stockflow_cluster_holds_active",
            &cluster("Checkout holds whose units are reserved now, as MySQL has them"),
        );
        let holds = counters(
            "stockflow_cluster_holds_total",
            &cluster("Checkout holds placed, and how they ended: converted, released, expired"),
            &["outcome"],
        );
        let webhook_attempts = counters(
            "stockflow_webhook_deliveries_total",
            "Webhook calls this instance made, by outcome: delivered (2xx), retried (failed, tried again later), given_up (failed past the retry window)",
            &["outcome"],
        );
        for outcome in WEBHOOK_OUTCOMES {
            webhook_attempts.with_label_values(&[outcome]);
        }
        let webhook_pending = int_gauge(
            "stockflow_cluster_webhook_deliveries_pending",
            &cluster("Webhook deliveries not made yet, over every endpoint"),
        );
        let webhook_pending_age = gauge(
            "stockflow_cluster_webhook_deliveries_pending_oldest_seconds",
            &cluster("Age of the oldest webhook delivery not made yet (0: none)"),
        );
        let webhook_disabled = int_gauge(
            "stockflow_cluster_webhook_endpoints_disabled",
            &cluster(
                "Webhook endpoints disabled, by an operator or after failing for their window",
            ),
        );
        let holds_overdue = gauge(
            "stockflow_cluster_holds_overdue_seconds",
            &cluster("How long the active hold furthest past its expiresAt has been so: how far the expiry job is behind (0: none)"),
        );
        let stale_keys = int_gauge(
            "stockflow_cluster_stale_keys",
            &cluster("Stock keys written on MySQL alone, to be set from MySQL before Redis decides on them again"),
        );
        let stale_age = gauge(
            "stockflow_cluster_stale_keys_oldest_seconds",
            &cluster("How long ago the oldest stale mark was written (0: none)"),
        );
        let dead_letters = int_gauge(
            "stockflow_cluster_dead_letters",
            &cluster("Events in the dead-letter streams, waiting for an operator"),
        );
        let job = |figure: &str, help: &str| {
            int_gauges(
                &format!("stockflow_cluster_job_last_run_{figure}"),
                &cluster(help),
                &["job"],
            )
        };
        let job_keys_checked = job("keys_checked", "Stock keys the last run of the job checked");
        let job_keys_repaired = job(
            "keys_repaired",
            "Stock keys the last run of the job repaired",
        );
        let job_ledger_mismatches = job(
            "ledger_mismatches",
            "Ledger mismatches the last run of the job found",
        );
        let job_success = job(
            "success",
            "1 if the last run of the job succeeded, 0 if it failed",
        );
        let job_duration = gauges(
            "stockflow_cluster_job_last_run_duration_seconds",
            &cluster("How long the last run of the job took"),
            &["job"],
        );
        let job_started = gauges(
            "stockflow_cluster_job_last_run_timestamp_seconds",
            &cluster("When the last run of the job started, in seconds since the Unix epoch"),
            &["job"],
        );
        let process = process::Figures::register(&r);
        Self {
            registry: r,
            latency,
            pool,
            consumer_events,
            consumer_batches,
            consumer_failed_rounds,
            backlog,
            backlog_age,
            job_keys_checked,
            job_keys_repaired,
            job_ledger_mismatches,
            job_duration,
            job_success,
            job_started,
            up,
            circuit,
            trips,
            degraded,
            shed,
            in_flight,
            group_commits,
            grouped_orders,
            cancel_groups,
            grouped_cancels,
            holds_active,
            holds,
            holds_overdue,
            stale_keys,
            stale_age,
            dead_letters,
            webhook_attempts,
            webhook_pending,
            webhook_pending_age,
            webhook_disabled,
            process,
        }
    }

    /// Counts a webhook call by its outcome, one of [`WEBHOOK_OUTCOMES`].
    pub fn webhook_attempt(&self, outcome: &'static str) {
        self.webhook_attempts.with_label_values(&[outcome]).inc();
    }

    fn observe(&self, method: &Method, route: &str, status: StatusCode, started: Instant) {
        self.latency
            .with_label_values(&[method_label(method), route, status_class(status)])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sets the figures that need a store: the consumer's backlog, holds, stale keys, dead
    /// letters and the last run of each job. Called in the background; a slow store only makes
    /// them older, never a scrape slower.
    pub async fn refresh(&self, storage: &sf_persistence::Storage) {
        let bound = std::time::Duration::from_millis(500);
        let seconds = |ms: u64| ms as f64 / 1000.0;
        if let Ok(Ok((n, age_ms))) =
            tokio::time::timeout(bound, sf_persistence::consumer::backlog(storage)).await
        {
            self.backlog.set(n as i64);
            self.backlog_age.set(seconds(age_ms));
        }
        if let Ok(Ok(c)) = tokio::time::timeout(bound, storage.holds().counts()).await {
            self.holds_active.set(c.active);
            self.holds_overdue.set(seconds(c.overdue_ms.max(0) as u64));
            for (outcome, n) in [
                ("placed", c.placed()),
                ("converted", c.converted),
                ("released", c.released),
                ("expired", c.expired),
            ] {
                catch_up(&self.holds.with_label_values(&[outcome]), n as u64);
            }
        }
        if let Ok(Ok((n, age_ms))) =
            tokio::time::timeout(bound, storage.recovery().stale_key_figures()).await
        {
            self.stale_keys.set(n as i64);
            self.stale_age.set(seconds(age_ms));
        }
        if let Ok(Ok(n)) = tokio::time::timeout(bound, storage.recovery().dead_letter_count()).await
        {
            self.dead_letters.set(n as i64);
        }
        if let Ok(Ok(f)) = tokio::time::timeout(bound, storage.events().delivery_figures()).await {
            self.webhook_pending.set(f.pending);
            self.webhook_pending_age
                .set(seconds(f.oldest_pending_ms.max(0) as u64));
            self.webhook_disabled.set(f.disabled_endpoints);
        }
        for kind in sf_persistence::infra::jobs::JobKind::ALL {
            let Ok(Ok(runs)) = tokio::time::timeout(
                bound,
                sf_persistence::infra::jobs::recent_runs(storage, Some(kind.name()), 1),
            )
            .await
            else {
                continue;
            };
            let Some(r) = runs.first() else { continue };
            let job = [kind.name()];
            self.job_keys_checked
                .with_label_values(&job)
                .set(r.keys_checked as i64);
            self.job_keys_repaired
                .with_label_values(&job)
                .set(r.keys_repaired as i64);
            self.job_ledger_mismatches
                .with_label_values(&job)
                .set(r.ledger_mismatches as i64);
            self.job_success
                .with_label_values(&job)
                .set(i64::from(r.ok));
            self.job_duration
                .with_label_values(&job)
                .set(seconds(r.duration_ms));
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&r.started_at) {
                self.job_started
                    .with_label_values(&job)
                    .set(t.timestamp_millis() as f64 / 1000.0);
            }
        }
    }

    /// Reads the in-memory figures (pools, circuit, counters, the process) and renders
    /// everything.
    pub fn render(&self, state: &ApiState) -> String {
        let storage = &state.storage;
        let (db_open, db_idle) = storage.health().db_pool_state();
        self.pool
            .with_label_values(&["mysql", "open"])
            .set(i64::from(db_open));
        self.pool
            .with_label_values(&["mysql", "idle"])
            .set(db_idle as i64);
        let r = storage.health().redis_pool_state();
        self.pool
            .with_label_values(&["redis", "open"])
            .set(i64::from(r.connections));
        self.pool
            .with_label_values(&["redis", "idle"])
            .set(i64::from(r.idle_connections));
        let c = storage.health().circuit();
        self.up
            .with_label_values(&["mysql"])
            .set(i64::from(storage.health().mysql_health().up()));
        self.up
            .with_label_values(&["redis"])
            .set(i64::from(c.passes()));
        for s in [
            sf_persistence::CircuitState::Closed,
            sf_persistence::CircuitState::Open,
            sf_persistence::CircuitState::Recovering,
        ] {
            self.circuit
                .with_label_values(&[s.as_str()])
                .set(i64::from(c.state() == s));
        }
        catch_up(&self.trips, c.trips());
        for (kind, v) in [
            ("mysql_only_writes", &c.degraded_writes),
            ("redis_orders_shed", &c.shed_orders),
            ("mysql_stock_reads", &c.mysql_reads),
            ("redis_orders_unreplicated", &c.unreplicated),
        ] {
            catch_up(
                &self.degraded.with_label_values(&[kind]),
                v.load(Ordering::Relaxed),
            );
        }
        let (groups, grouped) = storage.health().group_commits();
        catch_up(&self.group_commits, groups);
        catch_up(&self.grouped_orders, grouped);
        let (groups, grouped) = storage.health().cancel_groups();
        catch_up(&self.cancel_groups, groups);
        catch_up(&self.grouped_cancels, grouped);
        for kind in crate::edge::Kind::ALL {
            catch_up(
                &self.shed.with_label_values(&[kind.name()]),
                state.shedder.shed(kind),
            );
            self.in_flight
                .with_label_values(&[kind.name()])
                .set(state.shedder.in_flight(kind) as i64);
        }
        let c = &state.consumer;
        for (k, v) in [
            ("applied", &c.applied),
            ("duplicate", &c.duplicates),
            ("rejected", &c.rejected),
            ("dead_letter", &c.dead_letters),
        ] {
            catch_up(
                &self.consumer_events.with_label_values(&[k]),
                v.load(Ordering::Relaxed),
            );
        }
        catch_up(&self.consumer_batches, c.batches.load(Ordering::Relaxed));
        catch_up(
            &self.consumer_failed_rounds,
            c.errors.load(Ordering::Relaxed),
        );
        if let Some(p) = &self.process {
            p.update();
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .unwrap_or_default();
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The `method` label: the request's method, or `other` for one no route of the service
/// answers (so that a client cannot add series at will).
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The `status` label: the class of the status (`2xx`, `4xx`, `5xx`).
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Middleware: counts and times every request by its route template and status class.
pub struct Track<E> {
    pub inner: E,
    pub metrics: Metrics,
    /// Route templates (the spec's paths, as the edge matches them).
    pub methods: Arc<Methods>,
}

impl<E: Endpoint> Endpoint for Track<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let method = req.method().clone();
        // A path that names no route (a scanner's guesses, Swagger UI's files) is one series.
        let route = self.methods.template(req.uri().path()).unwrap_or("other");
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let status = match &result {
            Ok(resp) => resp.status(),
            Err(err) => err.status(),
        };
        self.metrics.observe(&method, route, status, started);
        result
    }
}

pub async fn render(state: Arc<ApiState>) -> Response {
    let body = state.metrics.render(&state);
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// Moves a counter up to a running total kept elsewhere (the counters of the storage layer and
/// the consumer are plain atomics; they only grow).
fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    let have = counter.get();
    if total > have {
        counter.inc_by(total - have);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_as_its_class() {
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::CONFLICT), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
    }

    #[test]
    fn an_unknown_method_is_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
