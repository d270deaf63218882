//! Prometheus metrics: requests by operation and status, latency histograms, pool and consumer
//! figures. Rendered at `/metrics` in the text exposition format. A scrape reads only memory: the
//! figures that need a store (the consumer's backlog, the last job runs) are refreshed in the
//! background ([`Metrics::refresh`]); what only grows is a counter.

use crate::state::ApiState;
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::OperationId;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    consumer: IntCounterVec,
    backlog: IntGauge,
    backlog_age: IntGauge,
    /// Figures of the scheduled jobs, set by the app.
    pub jobs: IntGaugeVec,
    up: IntGaugeVec,
    circuit: IntGaugeVec,
    trips: IntCounter,
    degraded: IntCounterVec,
    shed: IntCounterVec,
    in_flight: IntGaugeVec,
    groups: IntCounterVec,
    holds_active: IntGauge,
    holds: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by operation and status",
            ),
            &["operation", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["operation"],
        )
        .expect("metric");
        let pool = IntGaugeVec::new(
            Opts::new("pool_connections", "Connections in the pools by state"),
            &["pool", "state"],
        )
        .expect("metric");
        let consumer = IntCounterVec::new(
            Opts::new("consumer_events_total", "Order events the consumer handled"),
            &["outcome"],
        )
        .expect("metric");
        let backlog = IntGauge::new(
            "consumer_backlog_events",
            "Events accepted in Redis and not yet acknowledged as persisted",
        )
        .expect("metric");
        let backlog_age = IntGauge::new(
            "consumer_backlog_oldest_ms",
            "Age of the oldest event not yet acknowledged as persisted, in ms",
        )
        .expect("metric");
        let jobs = IntGaugeVec::new(
            Opts::new(
                "job_last_run",
                "Figures of the last run of each scheduled job",
            ),
            &["job", "figure"],
        )
        .expect("metric");
        let up = IntGaugeVec::new(
            Opts::new(
                "dependency_up",
                "1 while the dependency answers (MySQL: its last probe; Redis: circuit not open)",
            ),
            &["dependency"],
        )
        .expect("metric");
        let circuit = IntGaugeVec::new(
            Opts::new(
                "redis_circuit",
                "The Redis circuit: 1 for its current state (closed, open or recovering)",
            ),
            &["state"],
        )
        .expect("metric");
        let trips = IntCounter::new(
            "redis_circuit_trips_total",
            "Times the Redis circuit opened",
        )
        .expect("metric");
        let degraded = IntCounterVec::new(
            Opts::new(
                "degraded_total",
                "Work done in degraded mode (Redis unreachable, or its replicas behind), by kind",
            ),
            &["kind"],
        )
        .expect("metric");
        let shed = IntCounterVec::new(
            Opts::new(
                "requests_shed_total",
                "Requests refused with 503 because their kind had its most requests in flight",
            ),
            &["kind"],
        )
        .expect("metric");
        let in_flight = IntGaugeVec::new(
            Opts::new("requests_in_flight", "Requests in flight, by kind of work"),
            &["kind"],
        )
        .expect("metric");
        let groups = IntCounterVec::new(
            Opts::new(
                "db_lock_group_commits_total",
                "DB-lock orders decided together in one transaction: groups, and the order attempts in them (an order tried at a second location counts again)",
            ),
            &["count"],
        )
        .expect("metric");
        let holds_active = IntGauge::new(
            "holds_active",
            "Checkout holds whose units are reserved now (all instances, from MySQL)",
        )
        .expect("metric");
        let holds = IntCounterVec::new(
            Opts::new(
                "holds_total",
                "Checkout holds placed, and how they ended: converted, released, expired (all instances, from MySQL)",
            ),
            &["outcome"],
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(holds_active.clone()),
            Box::new(holds.clone()),
            Box::new(groups.clone()),
            Box::new(shed.clone()),
            Box::new(in_flight.clone()),
            Box::new(up.clone()),
            Box::new(circuit.clone()),
            Box::new(trips.clone()),
            Box::new(degraded.clone()),
            Box::new(latency.clone()),
            Box::new(pool.clone()),
            Box::new(consumer.clone()),
            Box::new(backlog.clone()),
            Box::new(backlog_age.clone()),
            Box::new(jobs.clone()),
        ] {
            registry.register(c).expect("register metric");
        }
        Self {
            registry,
            requests,
            latency,
            pool,
            consumer,
            backlog,
            backlog_age,
            jobs,
            up,
            circuit,
            trips,
            degraded,
            shed,
            in_flight,
            groups,
            holds_active,
            holds,
        }
    }

    fn observe(&self, operation: &str, status: u16, started: Instant) {
        self.requests
            .with_label_values(&[operation, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sets the figures that need a store: the consumer's backlog and the last run of each job.
    /// Called in the background; a slow store only makes them older, never a scrape slower.
    pub async fn refresh(&self, storage: &sf_persistence::Storage) {
        let bound = std::time::Duration::from_millis(500);
        if let Ok(Ok((n, age))) =
            tokio::time::timeout(bound, sf_persistence::consumer::backlog(storage)).await
        {
            self.backlog.set(n as i64);
            self.backlog_age.set(age as i64);
        }
        if let Ok(Ok(c)) = tokio::time::timeout(bound, storage.holds().counts()).await {
            self.holds_active.set(c.active);
            for (outcome, n) in [
                ("placed", c.placed()),
                ("converted", c.converted),
                ("released", c.released),
                ("expired", c.expired),
            ] {
                catch_up(&self.holds.with_label_values(&[outcome]), n as u64);
            }
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
            if let Some(r) = runs.first() {
                for (figure, v) in [
                    ("keys_checked", r.keys_checked as i64),
                    ("keys_repaired", r.keys_repaired as i64),
                    ("ledger_mismatches", r.ledger_mismatches as i64),
                    ("duration_ms", r.duration_ms as i64),
                    ("ok", i64::from(r.ok)),
                ] {
                    self.jobs.with_label_values(&[kind.name(), figure]).set(v);
                }
            }
        }
    }

    /// Reads the in-memory figures (pools, circuit, counters) and renders everything.
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
        catch_up(&self.groups.with_label_values(&["groups"]), groups);
        catch_up(&self.groups.with_label_values(&["orders"]), grouped);
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
            ("batch", &c.batches),
            ("error", &c.errors),
            ("rejected", &c.rejected),
            ("dead_letter", &c.dead_letters),
        ] {
            catch_up(
                &self.consumer.with_label_values(&[k]),
                v.load(Ordering::Relaxed),
            );
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .unwrap_or_default();
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Middleware: counts and times every request by its operation id.
pub struct Track<E> {
    pub inner: E,
    pub metrics: Metrics,
}

impl<E: Endpoint> Endpoint for Track<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let (op, status) = match &result {
            Ok(resp) => (resp.data::<OperationId>().map(|o| o.0), resp.status()),
            Err(err) => (err.data::<OperationId>().map(|o| o.0), err.status()),
        };
        self.metrics
            .observe(op.unwrap_or("other"), status.as_u16(), started);
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
