//! Connections behind the deadlines: a Redis connection from the pool (behind the circuit, or
//! for settling a step already taken), one of its own, the MySQL deadline of a request, and the
//! health probes.

use super::circuit::{self, Circuit};
use super::Health;
use super::{Keys, RedisPool};
use crate::error::{StorageError, StorageResult};
use crate::{Storage, StorageOptions};
use std::time::Duration;

/// What Redis keeps on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisPersistence {
    /// An append-only file: an acknowledged order survives a crash.
    AppendOnly,
    /// Snapshots only: orders since the last one are lost in a crash.
    Snapshots,
    Nothing,
}

impl Storage {
    /// A Redis connection for one operation, behind the circuit: it fails at once while the
    /// circuit is open, and each of its commands ends within the command deadline. The pooled
    /// connection is multiplexed: a clone of it pipelines this operation with other requests'
    /// over the same socket, and the pool slot is free again at once.
    pub(crate) async fn conn(&self) -> StorageResult<circuit::GuardedConn> {
        if !self.circuit.passes() {
            return Err(StorageError::from(Circuit::open_error()));
        }
        self.pooled_conn(false).await
    }

    /// A Redis connection for settling a step a request already took in Redis (storing or
    /// releasing its idempotency claim, taking back an increment whose commit is unknown): it is
    /// tried even while the circuit is open — a single cut connection opens it, and the step
    /// usually succeeds on the next one — still within the command deadline.
    pub(crate) async fn settling_conn(&self) -> StorageResult<circuit::GuardedConn> {
        self.pooled_conn(true).await
    }

    async fn pooled_conn(&self, always: bool) -> StorageResult<circuit::GuardedConn> {
        let pool = RedisPool::clone(&self.redis.load());
        let pooled = match pool.get().await {
            Ok(c) => c,
            Err(bb8::RunError::User(e)) => {
                if Circuit::unreachable(&e) {
                    self.circuit.trip(&e.to_string());
                }
                return Err(e.into());
            }
            Err(bb8::RunError::TimedOut) => {
                self.circuit
                    .trip("no redis connection could be opened in time");
                return Err(StorageError::from(Circuit::open_error()));
            }
        };
        Ok(circuit::GuardedConn::new(
            (*pooled).clone(),
            self.circuit.clone(),
            self.redis_settings.command_timeout,
            always,
        ))
    }

    /// A Redis connection of its own, outside the pool, behind the circuit (the consumer's
    /// reads: their large replies would otherwise delay the requests multiplexed beside them),
    /// whose calls may take `extra` beyond the command deadline: a blocking read waits up to
    /// `extra` for data.
    pub(crate) async fn own_conn_waiting(
        &self,
        extra: Duration,
    ) -> StorageResult<circuit::GuardedConn> {
        if !self.circuit.passes() {
            return Err(StorageError::from(Circuit::open_error()));
        }
        let settings = &self.redis_settings;
        let conn = match tokio::time::timeout(
            settings.connect_timeout + settings.command_timeout,
            settings.own_connection_waiting(&self.redis_client, extra),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if let Some(re) = e.redis_error().filter(|re| Circuit::unreachable(re)) {
                    self.circuit.trip(&re.to_string());
                }
                return Err(e);
            }
            Err(_) => {
                self.circuit
                    .trip("no redis connection could be opened in time");
                return Err(StorageError::from(Circuit::open_error()));
            }
        };
        Ok(circuit::GuardedConn::new(
            conn,
            self.circuit.clone(),
            settings.command_timeout + extra,
            false,
        ))
    }

    /// When the MySQL work of a request started now must end.
    pub(crate) fn db_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.config.db_timeout
    }

    /// Runs a transaction's statements (everything before its commit step) under the request's
    /// MySQL deadline. When it passes, the transaction is dropped, which rolls it back.
    pub(crate) async fn in_time<T>(
        &self,
        deadline: tokio::time::Instant,
        statements: impl std::future::Future<Output = StorageResult<T>>,
    ) -> StorageResult<T> {
        match tokio::time::timeout_at(deadline, statements).await {
            Ok(r) => r,
            Err(_) => Err(StorageError::unavailable(format!(
                "MySQL did not answer within {} ms; nothing was changed",
                self.config.db_timeout.as_millis()
            ))),
        }
    }

    /// The settings it runs with.
    pub fn options(&self) -> &StorageOptions {
        &self.config
    }

    /// Redis key names under this instance's prefix.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A MySQL transaction on the storage's pool (see [`crate::infra::mysql::begin`]).
    pub(crate) async fn begin(&self) -> StorageResult<sqlx::Transaction<'static, sqlx::MySql>> {
        crate::infra::mysql::begin(&self.db).await
    }

    /// How often a Redis found down is probed.
    pub(crate) fn probe_every(&self) -> std::time::Duration {
        self.redis_settings.probe_every
    }

    /// The number of a load of the in-memory copies that starts now.
    pub(crate) fn next_load(&self) -> u64 {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    /// Replaces the Redis pool with a fresh one (after an outage: the old connections may still
    /// be bound to the dead server).
    pub(crate) async fn renew_redis_pool(&self) -> StorageResult<()> {
        let fresh = self.redis_settings.pool(&self.redis_client).await?;
        self.redis.store(std::sync::Arc::new(fresh));
        Ok(())
    }
}

impl<'a> Health<'a> {
    /// DB-lock groups decided in one transaction, and the orders they decided.
    pub fn group_commits(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.groups.groups.load(Relaxed),
            self.groups.orders.load(Relaxed),
        )
    }

    /// DB-lock cancel groups done in one transaction, and the cancels they did.
    pub fn cancel_groups(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.groups.cancel_groups.load(Relaxed),
            self.groups.cancels.load(Relaxed),
        )
    }

    /// The Redis circuit: its state and the work done in degraded mode.
    pub fn circuit(&self) -> &'a Circuit {
        &self.0.circuit
    }

    /// Whether MySQL answered its last probe.
    pub fn mysql_health(&self) -> &'a circuit::MysqlHealth {
        &self.0.mysql_health
    }

    /// Connections of the MySQL pool: open and idle.
    pub fn db_pool_state(&self) -> (u32, usize) {
        (self.db.size(), self.db.num_idle())
    }

    /// What Redis keeps on disk, as its `CONFIG` says.
    pub async fn redis_persistence(&self) -> StorageResult<RedisPersistence> {
        let mut c = self.conn().await?;
        let setting = |name: &'static str| redis::cmd("CONFIG").arg("GET").arg(name).clone();
        let aof: Vec<String> = setting("appendonly").query_async(&mut c).await?;
        let save: Vec<String> = setting("save").query_async(&mut c).await?;
        let aof = aof.get(1).is_some_and(|v| v == "yes");
        let save = save.get(1).is_some_and(|v| !v.trim().is_empty());
        Ok(match (aof, save) {
            (true, _) => RedisPersistence::AppendOnly,
            (false, true) => RedisPersistence::Snapshots,
            (false, false) => RedisPersistence::Nothing,
        })
    }

    /// Connections of the Redis pool, open and idle.
    pub fn redis_pool_state(&self) -> bb8::State {
        self.redis.load().state()
    }

    /// Asks MySQL for `SELECT 1` within the connect and command deadlines, and records whether
    /// it answered (health checks read that record and never wait on MySQL themselves).
    pub async fn probe_mysql(&self) -> bool {
        let ask = sqlx::query("SELECT 1").execute(&self.db);
        let result = match tokio::time::timeout(self.config.db_timeout, ask).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.config.db_timeout.as_millis()
            )),
        };
        let up = result.is_ok();
        self.mysql_health.set(result);
        up
    }
}
