//! Deadlines on every Redis command, and the circuit breaker that makes Redis calls fail at once
//! while Redis is unreachable.
//!
//! The circuit has three states:
//!
//! - **closed**: Redis answers; every call goes through, each under the command deadline.
//! - **open**: a call failed to reach Redis (connection refused or dropped, no answer within the
//!   deadline, Redis still loading its data). Every call fails at once without touching the
//!   network; the Redis path sheds, MySQL-first writes commit on MySQL alone and mark their keys
//!   stale, reads come from MySQL. A background probe pings Redis every `OUTAGE_PROBE_MS`.
//! - **recovering**: the probe got an answer. Calls go through again, but Redis is not trusted
//!   to decide orders or to show stock until [`crate::recovery::Recovery::recover_redis`] has checked for lost data
//!   and re-synced every key that was written on MySQL alone; then the circuit closes.
//!
//! [`recover_redis`]: crate::recovery::Recovery::recover_redis

use crate::infra::redis_link::RedisConn;
use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    Recovering,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::Recovering => "recovering",
        }
    }
}

/// The Redis circuit breaker, shared by every connection of one service instance.
#[derive(Debug)]
pub struct Circuit {
    state: AtomicU8,
    /// When the circuit last opened (ms since the epoch), 0 if never.
    opened_at_ms: AtomicI64,
    trips: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Held (shared) by every MySQL-first write through its commit step. Recovery takes it
    /// exclusively once, after calls go through again: every write that saw the circuit open has
    /// then committed its stale marks, so the re-sync that precedes the closing sees them all.
    barrier: tokio::sync::RwLock<()>,
    /// Wakes the probe as soon as the circuit opens.
    tripped: tokio::sync::Notify,
    /// MySQL-first writes committed on MySQL alone.
    pub degraded_writes: AtomicU64,
    /// Redis-path orders answered 503 because the circuit was not closed.
    pub shed_orders: AtomicU64,
    /// Stock reads answered from MySQL because the circuit was not closed.
    pub mysql_reads: AtomicU64,
    /// Redis-path orders answered 504: fewer replicas than `REDIS_MIN_REPLICA_ACKS` held them in
    /// time.
    pub unreplicated: AtomicU64,
}

impl Default for Circuit {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(0),
            opened_at_ms: AtomicI64::new(0),
            trips: AtomicU64::new(0),
            last_error: Mutex::new(None),
            barrier: tokio::sync::RwLock::new(()),
            tripped: tokio::sync::Notify::new(),
            degraded_writes: AtomicU64::new(0),
            shed_orders: AtomicU64::new(0),
            mysql_reads: AtomicU64::new(0),
            unreplicated: AtomicU64::new(0),
        }
    }
}

impl Circuit {
    pub fn state(&self) -> CircuitState {
        match self.state.load(Ordering::Acquire) {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            _ => CircuitState::Recovering,
        }
    }

    /// Whether calls may reach Redis (closed or recovering).
    pub fn passes(&self) -> bool {
        self.state() != CircuitState::Open
    }

    /// Whether Redis may decide orders and show stock (closed only).
    pub fn trusted(&self) -> bool {
        self.state() == CircuitState::Closed
    }

    /// Opens the circuit after a call could not reach Redis.
    pub fn trip(&self, why: &str) {
        let before = self.state.swap(1, Ordering::AcqRel);
        *self.last_error.lock().expect("circuit error") = Some(why.to_owned());
        if before != 1 {
            self.tripped.notify_one();
            self.trips.fetch_add(1, Ordering::Relaxed);
            self.opened_at_ms
                .store(chrono::Utc::now().timestamp_millis(), Ordering::Release);
            tracing::warn!(
                error = why,
                "redis circuit open: redis calls fail at once until a probe gets an answer"
            );
        }
    }

    /// The probe got an answer: calls go through again, Redis is not yet trusted. Answers false
    /// if the circuit was not open.
    pub(crate) fn half_open(&self) -> bool {
        self.state
            .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Recovery finished: Redis is trusted again. Answers false if a call failed meanwhile (the
    /// circuit opened again) and recovery must start over.
    pub(crate) fn close(&self) -> bool {
        let closed = self
            .state
            .compare_exchange(2, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if closed {
            let opened = self.opened_at_ms.load(Ordering::Acquire);
            tracing::info!(
                outage_ms = chrono::Utc::now().timestamp_millis() - opened,
                "redis circuit closed: redis decides orders again"
            );
        }
        closed
    }

    /// Resolves when the circuit opens (or opened since the last call).
    pub async fn opened(&self) {
        self.tripped.notified().await
    }

    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// When the circuit last opened, if it ever did.
    pub fn opened_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self.opened_at_ms.load(Ordering::Acquire) {
            0 => None,
            ms => chrono::DateTime::from_timestamp_millis(ms),
        }
    }

    /// The error that last opened the circuit.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("circuit error").clone()
    }

    /// Held by a MySQL-first write through its commit step, and by a Redis-path decision from
    /// its trust check through its script.
    pub(crate) async fn write_in_flight(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.barrier.read().await
    }

    /// Waits until every MySQL-first write that started its commit step before now has ended.
    pub(crate) async fn wait_for_writes(&self) {
        drop(self.barrier.write().await);
    }

    /// Whether `e` means Redis could not be reached (as opposed to an answer Redis gave).
    pub fn unreachable(e: &RedisError) -> bool {
        e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(
                e.kind(),
                ErrorKind::BusyLoadingError
                    | ErrorKind::TryAgain
                    | ErrorKind::ClusterDown
                    | ErrorKind::MasterDown
                    | ErrorKind::ReadOnly
                    // A cluster whose topology is changing (a failover under way): the slot's
                    // master cannot be reached, even after the client's own redirects.
                    | ErrorKind::Moved
                    | ErrorKind::Ask
                    | ErrorKind::ClusterConnectionNotFound
            )
    }

    /// Whether `e` is [`Circuit::open_error`]: the call was refused before it was sent.
    pub fn is_open_error(e: &RedisError) -> bool {
        e.to_string().starts_with("redis circuit open")
    }

    /// The error calls get while the circuit is open.
    pub fn open_error() -> RedisError {
        RedisError::from((
            ErrorKind::IoError,
            "redis circuit open",
            "redis did not answer recently; calls fail at once until it does".to_owned(),
        ))
    }
}

/// A pooled Redis connection behind the circuit: each command fails at once while the circuit
/// is open, and otherwise ends within the command deadline; a failure to reach Redis opens the
/// circuit.
#[derive(Clone)]
pub struct GuardedConn {
    inner: RedisConn,
    circuit: Arc<Circuit>,
    deadline: Duration,
    /// Tried even while the circuit is open (still within the deadline): for settling a step
    /// already taken (see [`crate::Storage::settling_conn`]).
    always: bool,
}

impl GuardedConn {
    pub(crate) fn new(
        inner: RedisConn,
        circuit: Arc<Circuit>,
        deadline: Duration,
        always: bool,
    ) -> Self {
        Self {
            inner,
            circuit,
            deadline,
            always,
        }
    }

    /// The same connection with `extra` more time per call (for a call that includes a `WAIT`).
    pub(crate) fn with_extra_time(&self, extra: Duration) -> Self {
        let mut c = self.clone();
        c.deadline += extra;
        c
    }

    async fn guarded<T>(
        circuit: &Circuit,
        always: bool,
        deadline: Duration,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        if !always && !circuit.passes() {
            return Err(Circuit::open_error());
        }
        let result = match tokio::time::timeout(deadline, call).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::from((
                ErrorKind::IoError,
                "redis command deadline",
                format!("no answer within {} ms", deadline.as_millis()),
            ))),
        };
        if let Err(e) = &result {
            if Circuit::unreachable(e) {
                circuit.trip(&e.to_string());
            }
        }
        result
    }
}

impl ConnectionLike for GuardedConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(Self::guarded(
            &self.circuit,
            self.always,
            self.deadline,
            self.inner.req_packed_command(cmd),
        ))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(Self::guarded(
            &self.circuit,
            self.always,
            self.deadline,
            self.inner.req_packed_commands(cmd, offset, count),
        ))
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// Whether MySQL answered its last probe (set by a background probe; read by health checks, which
/// must answer at once whatever MySQL does).
#[derive(Debug)]
pub struct MysqlHealth {
    up: std::sync::atomic::AtomicBool,
    /// When the current state began (ms since the epoch).
    since_ms: AtomicI64,
    last_error: Mutex<Option<String>>,
}

impl Default for MysqlHealth {
    fn default() -> Self {
        Self {
            up: std::sync::atomic::AtomicBool::new(true),
            since_ms: AtomicI64::new(chrono::Utc::now().timestamp_millis()),
            last_error: Mutex::new(None),
        }
    }
}

impl MysqlHealth {
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// When MySQL last went up or down.
    pub fn since(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(self.since_ms.load(Ordering::Acquire))
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("mysql error").clone()
    }

    pub(crate) fn set(&self, result: Result<(), String>) {
        let up = result.is_ok();
        if self.up.swap(up, Ordering::AcqRel) != up {
            self.since_ms
                .store(chrono::Utc::now().timestamp_millis(), Ordering::Release);
            match &result {
                Ok(()) => tracing::info!("mysql answers again"),
                Err(e) => tracing::warn!(error = %e, "mysql does not answer"),
            }
        }
        if let Err(e) = result {
            *self.last_error.lock().expect("mysql error") = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_circuit_goes_closed_open_recovering_closed() {
        let c = Circuit::default();
        assert_eq!(c.state(), CircuitState::Closed);
        assert!(c.passes() && c.trusted());
        assert_eq!((c.trips(), c.opened_at()), (0, None));

        c.trip("connection refused");
        assert_eq!(c.state(), CircuitState::Open);
        assert!(!c.passes() && !c.trusted());
        assert_eq!(c.trips(), 1);
        assert!(c.opened_at().is_some());
        assert_eq!(c.last_error().as_deref(), Some("connection refused"));
        // Closing needs a probe's answer first.
        assert!(!c.close());
        assert_eq!(c.state(), CircuitState::Open);

        assert!(c.half_open());
        assert_eq!(c.state(), CircuitState::Recovering);
        assert!(
            c.passes() && !c.trusted(),
            "calls go through, Redis decides nothing"
        );
        assert!(!c.half_open(), "only an open circuit half-opens");

        assert!(c.close());
        assert_eq!(c.state(), CircuitState::Closed);
        assert!(c.passes() && c.trusted());
    }

    #[test]
    fn a_failure_while_recovering_opens_it_again_and_recovery_starts_over() {
        let c = Circuit::default();
        c.trip("first");
        assert!(c.half_open());
        c.trip("second");
        assert_eq!(c.state(), CircuitState::Open);
        assert_eq!(c.trips(), 2, "each opening counts");
        assert!(!c.close(), "the recovery under way may not close it");
        assert_eq!(c.last_error().as_deref(), Some("second"));
    }

    #[test]
    fn tripping_an_open_circuit_counts_once() {
        let c = Circuit::default();
        c.trip("a");
        let opened = c.opened_at();
        c.trip("b");
        assert_eq!(c.trips(), 1);
        assert_eq!(c.opened_at(), opened, "the outage began at the first trip");
        assert_eq!(c.last_error().as_deref(), Some("b"));
    }

    #[test]
    fn only_failures_to_reach_redis_open_it() {
        let unreachable = [
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            RedisError::from((ErrorKind::MasterDown, "master down")),
            RedisError::from((ErrorKind::ClusterDown, "cluster down")),
            Circuit::open_error(),
        ];
        for e in &unreachable {
            assert!(Circuit::unreachable(e), "{e}");
        }
        let answers = [
            RedisError::from((ErrorKind::ResponseError, "WRONGTYPE")),
            RedisError::from((ErrorKind::NoScriptError, "NOSCRIPT")),
        ];
        for e in &answers {
            assert!(!Circuit::unreachable(e), "{e}");
        }
        assert!(Circuit::is_open_error(&Circuit::open_error()));
        assert!(!Circuit::is_open_error(&answers[0]));
    }

    #[tokio::test]
    async fn recovery_waits_for_the_writes_that_started_before_it() {
        let c = Arc::new(Circuit::default());
        let write = c.write_in_flight().await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.wait_for_writes().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a write is still in its commit step");
        drop(write);
        waiter.await.unwrap();
    }
}
