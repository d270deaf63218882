//! Storage for Stock Flow: MySQL (the system of record) through sqlx, Redis (the fast order path)
//! through a bb8 pool of self-healing multiplexed connections, and the Lua scripts that decide
//! orders in Redis. [`Storage`] is sealed: callers use its methods and typed errors.
//!
//! # Layout
//!
//! Connections and formats:
//! - [`db`]: the MySQL pool, embedded migrations, deadlock retry.
//! - [`redis_stock`]: Redis connections and key names, running the Lua scripts.
//! - [`scripts`]: one typed wrapper per Lua script (files under `persistence/lua/`): its keys,
//!   arguments and decoded reply.
//! - [`circuit`]: deadlines on Redis commands and the circuit breaker for Redis outages.
//! - [`formats`]: what Redis and MySQL keep (order records, claims), versioned.
//! - [`model`]: the records handed to callers.
//!
//! Writing orders and stock:
//! - [`build`]: an order from a decision, for both paths.
//! - [`ledger`]: the rows every writer shares (orders, lines, ledger rows, conditional stock
//!   changes).
//! - [`db_lock`]: orders decided in a MySQL transaction with row locks (the DB-lock path and POS
//!   sales), their cancels, and the commit step every MySQL-first write ends with.
//! - [`group_commit`]: DB-lock orders that wait for the same location's rows, decided together in
//!   one transaction.
//! - [`pos`]: the store POS's rule for returns.
//! - [`stock_changes`]: operators' stock changes.
//! - [`redis_path`]: orders decided by the reservation script, and their cancels.
//! - [`consumer`]: the background writer that persists Redis order events to MySQL exactly once.
//!
//! Reading, keeping in step, and the rest:
//! - [`catalog`]: products and locations, with the in-memory copies routing and pricing read; the
//!   product pages (keyset pages, reads shared by requests that arrive together, and the copy of
//!   the Redis stock keys that Redis keeps exact).
//! - [`orders`]: reading an order of any path.
//! - [`sync`]: loading and repairing Redis stock from MySQL at a consistent point; recovery after
//!   a Redis outage.
//! - [`reconcile`]: the reconciliation pass, warm-up after Redis lost its data, housekeeping.
//! - [`jobs`]: running scheduled jobs without overlap, under a lease, with every run recorded.
//! - [`idempotency`], [`credentials`], [`seed`].
//!
//! This crate decides nothing about routing (that is `sf-routing`) and knows nothing of HTTP.

pub mod build;
pub mod catalog;
pub mod circuit;
pub mod consumer;
pub mod credentials;
pub mod db;
pub mod db_lock;
pub mod error;
pub mod formats;
pub mod group_commit;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
pub mod model;
pub mod orders;
pub mod pos;
pub mod reconcile;
pub mod redis_link;
pub mod redis_path;
pub mod redis_stock;
pub mod scripts;
pub mod seed;
pub mod stock_changes;
pub mod sync;

pub use circuit::{Circuit, CircuitState};
pub use error::{Alternative, Dependency, StorageError, StorageResult};
pub use redis_link::{RedisClient, RedisConn, RedisLink, RedisPool, RedisSettings};
pub use redis_stock::Keys;

use catalog::{Catalog, Locations};
use sf_routing::{LocationId, ProductId};
use sqlx::MySqlPool;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
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

/// Settings of the storage layer.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Prefix of every Redis key (lets tests and deployments share one Redis).
    pub key_prefix: String,
    /// Radius of same-day delivery around the address, in km.
    pub same_day_radius_km: f64,
    /// How long an order record stays in Redis after it reached MySQL, in seconds.
    pub record_ttl_secs: u64,
    /// How long idempotency keys are kept, in seconds.
    pub idempotency_ttl_secs: u64,
    /// The MySQL work of one request: its transaction's statements (with the retries after a
    /// deadlock), and again its commit.
    pub db_timeout: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sf:".into(),
            same_day_radius_km: 10.0,
            record_ttl_secs: 10,
            idempotency_ttl_secs: 48 * 3600,
            db_timeout: Duration::from_secs(3),
        }
    }
}

/// MySQL and Redis, and the in-memory copies of the catalogue and the locations. Sealed: the
/// layers above call its methods and read its typed state, never its pools.
pub struct Storage {
    db: MySqlPool,
    /// Replaced by a fresh pool when Redis comes back after an outage.
    redis: RwLock<RedisPool>,
    /// For connections of their own, outside the pool.
    redis_client: redis_link::RedisClient,
    redis_settings: RedisSettings,
    /// Open while Redis is unreachable: Redis calls fail at once.
    circuit: Arc<Circuit>,
    /// Whether MySQL answered its last probe ([`Storage::probe_mysql`]).
    mysql_health: circuit::MysqlHealth,
    keys: Keys,
    config: StorageOptions,
    catalog: RwLock<Arc<Catalog>>,
    locations: RwLock<Arc<Locations>>,
    /// Stock keys that may differ from MySQL after a failure and could not be re-synced at once;
    /// [`Storage::drain_resync_queue`] sets them from MySQL.
    resync_queue: Mutex<BTreeMap<LocationId, BTreeSet<ProductId>>>,
    /// Numbers the loads of the in-memory catalogue and locations, in the order they start.
    loads: std::sync::atomic::AtomicU64,
    /// Each location's epoch markers: the one the last Redis check found, and every one a key
    /// load met since. The check tells a loss from each of them that is no longer the marker.
    epochs: Mutex<std::collections::HashMap<LocationId, reconcile::Epochs>>,
    /// Slots whose node last had fewer replicas than `REDIS_MIN_REPLICA_ACKS`, and since when.
    replicas_short: Mutex<std::collections::HashMap<u16, std::time::Instant>>,
    /// The DB-lock path's group commit: one lane per location.
    groups: group_commit::GroupCommit,
}

impl Storage {
    /// Wraps open pools and loads the catalogue and locations into memory.
    pub async fn new(
        db: MySqlPool,
        redis: RedisLink,
        config: StorageOptions,
    ) -> StorageResult<Self> {
        let store = Self {
            db,
            redis: RwLock::new(redis.pool),
            redis_client: redis.client,
            redis_settings: redis.settings,
            circuit: Arc::default(),
            mysql_health: circuit::MysqlHealth::default(),
            keys: Keys::new(config.key_prefix.clone()),
            config,
            catalog: RwLock::default(),
            locations: RwLock::default(),
            resync_queue: Mutex::default(),
            loads: Default::default(),
            epochs: Mutex::default(),
            replicas_short: Mutex::default(),
            groups: Default::default(),
        };
        store.refresh_catalog().await?;
        store.refresh_locations().await?;
        Ok(store)
    }

    /// A Redis connection for one operation, behind the circuit: it fails at once while the
    /// circuit is open, and each of its commands ends within the command deadline. The pooled
    /// connection is multiplexed: a clone of it pipelines this operation with other requests'
    /// over the same socket, and the pool slot is free again at once.
    pub(crate) async fn conn(&self) -> StorageResult<circuit::GuardedConn> {
        if !self.circuit.passes() {
            return Err(StorageError::Redis(Circuit::open_error()));
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
        let pool = self.redis.read().expect("redis pool").clone();
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
                return Err(StorageError::Redis(Circuit::open_error()));
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
    /// reads: their large replies would otherwise delay the requests multiplexed beside them).
    pub(crate) async fn own_conn(&self) -> StorageResult<circuit::GuardedConn> {
        if !self.circuit.passes() {
            return Err(StorageError::Redis(Circuit::open_error()));
        }
        let settings = &self.redis_settings;
        let conn = match tokio::time::timeout(
            settings.connect_timeout + settings.command_timeout,
            settings.own_connection(&self.redis_client),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if let StorageError::Redis(re) = &e {
                    if Circuit::unreachable(re) {
                        self.circuit.trip(&re.to_string());
                    }
                }
                return Err(e);
            }
            Err(_) => {
                self.circuit
                    .trip("no redis connection could be opened in time");
                return Err(StorageError::Redis(Circuit::open_error()));
            }
        };
        Ok(circuit::GuardedConn::new(
            conn,
            self.circuit.clone(),
            settings.command_timeout,
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
            Err(_) => Err(StorageError::Unavailable(format!(
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

    /// The Redis circuit: its state and the work done in degraded mode.
    /// DB-lock groups decided in one transaction, and the orders they decided.
    pub fn group_commits(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.groups.groups.load(Relaxed),
            self.groups.orders.load(Relaxed),
        )
    }

    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// Whether MySQL answered its last probe.
    pub fn mysql_health(&self) -> &circuit::MysqlHealth {
        &self.mysql_health
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
        self.redis.read().expect("redis pool").state()
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

    /// The number of a load of the in-memory copies that starts now.
    pub(crate) fn next_load(&self) -> u64 {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    /// Replaces the Redis pool with a fresh one (after an outage: the old connections may still
    /// be bound to the dead server).
    pub(crate) async fn renew_redis_pool(&self) -> StorageResult<()> {
        let fresh = self.redis_settings.pool(&self.redis_client).await?;
        *self.redis.write().expect("redis pool") = fresh;
        Ok(())
    }
}
