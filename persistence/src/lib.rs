//! Storage for Stock Flow: MySQL (the system of record) through sqlx, Redis (the fast order path)
//! through a bb8 pool of self-healing multiplexed connections, and the Lua scripts that decide
//! orders in Redis. [`Storage`] is sealed: callers take a handle per concern ([`Storage::orders`],
//! [`Storage::db_lock`], [`Storage::redis_path`], [`Storage::fulfilment`], [`Storage::holds`], [`Storage::catalog`],
//! [`Storage::recovery`], [`Storage::health`]) and get typed errors; each folder's `mod.rs` says
//! what leaves it, and everything else is `pub(crate)` at most.
//!
//! # Map
//!
//! Where an order is decided, persisted and repaired:
//!
//! | folder | what it holds |
//! |---|---|
//! | [`db_lock`] | the DB-lock path: orders decided in a MySQL transaction with row locks, group commit per location, POS sales and returns, operators' stock changes, and the commit step every MySQL-first write ends with |
//! | [`redis_path`] | the Redis path: orders decided by `reserve.lua`, `Idempotency-Key` claims, replication (`WAIT`), cancels, stock reads |
//! | [`consumer`] | the background writer that persists the Redis path's events to MySQL exactly once, and its dead letters |
//! | [`recovery`] | Redis repaired from MySQL: key loads and re-syncs at a consistent point, the reconciliation pass, data-loss records, stale keys, recovery after an outage |
//! | [`holds`] | checkout holds: units moved from `available` to `reserved` while a customer pays, released, expired by the job, or converted into a DB-lock order |
//! | [`fulfilment`] | the order's way out: pickups made ready and collected with their code, dispatches, shipments, the store's work list, the not-collected job |
//! | [`orders`] | reading orders of any path, building them, the ledger rows every writer shares, idempotency, and when MySQL holds a stream event (the one definition of *applied*) |
//! | [`events`] | events out: the outbox every change writes its events into, their order in the feed, webhook endpoints and their deliveries |
//! | [`catalog`] | products and locations in memory, operators' changes, product pages, the stock mirror, shared reads, POS credentials, demo data |
//! | [`scripts`] | one typed wrapper per Lua script (`persistence/lua/`): its keys, arguments and decoded reply |
//! | [`formats`] | what Redis and MySQL keep (order records, claims, stream events), versioned |
//! | [`infra`] | the MySQL pool and deadlines, the Redis link, cluster and circuit, connections, health probes, key names, scheduled jobs |
//!
//! And at the top: [`error`] (the error model), [`model`] (the records handed to callers),
//! [`options`] (the settings).
//!
//! This crate decides nothing about routing (that is `sf-routing`) and knows nothing of HTTP.

pub mod access;
pub mod catalog;
pub mod consumer;
pub mod db_lock;
pub mod error;
pub mod events;
pub(crate) mod formats;
pub mod fulfilment;
pub mod holds;
pub mod infra;
pub mod model;
pub mod options;
pub mod orders;
pub mod recovery;
pub mod redis_path;
pub mod scripts;

pub use error::{
    Alternative, Cause, Dependency, Failure, FailureKind, Refusal, StorageError, StorageResult,
};
pub use infra::{
    Circuit, CircuitState, Keys, RedisClient, RedisConn, RedisLink, RedisPersistence, RedisPool,
    RedisSettings,
};
pub use options::StorageOptions;

use arc_swap::ArcSwap;
use catalog::{Locations, ProductIndex};
use infra::circuit;
use sf_routing::{LocationId, ProductId};
use sqlx::MySqlPool;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// MySQL and Redis, and the in-memory copies of the catalogue and the locations. Sealed: the
/// layers above take its handles and read its typed state, never its pools.
pub struct Storage {
    db: MySqlPool,
    /// Replaced by a fresh pool when Redis comes back after an outage.
    redis: ArcSwap<RedisPool>,
    /// For connections of their own, outside the pool.
    redis_client: infra::RedisClient,
    redis_settings: RedisSettings,
    /// Open while Redis is unreachable: Redis calls fail at once.
    circuit: Arc<Circuit>,
    /// Whether MySQL answered its last probe ([`crate::infra::Health::probe_mysql`]).
    mysql_health: circuit::MysqlHealth,
    keys: Keys,
    config: StorageOptions,
    catalog: ArcSwap<ProductIndex>,
    locations: ArcSwap<Locations>,
    /// Stock keys that may differ from MySQL after a failure and could not be re-synced at once;
    /// [`crate::recovery::Recovery::drain_resync_queue`] sets them from MySQL.
    resync_queue: Mutex<BTreeMap<LocationId, BTreeSet<ProductId>>>,
    /// Numbers the loads of the in-memory catalogue and locations, in the order they start.
    loads: std::sync::atomic::AtomicU64,
    /// Each location's epoch markers: the one the last Redis check found, and every one a key
    /// load met since. The check tells a loss from each of them that is no longer the marker.
    epochs: Mutex<std::collections::HashMap<LocationId, recovery::reconcile::Epochs>>,
    /// Slots whose node last had fewer replicas than `REDIS_MIN_REPLICA_ACKS`, and since when.
    replicas_short: Mutex<std::collections::HashMap<u16, std::time::Instant>>,
    /// The DB-lock path's group commit: one lane per location.
    groups: db_lock::group_commit::GroupCommit,
    /// Key loads of Redis-path orders ([`Storage::order_key_load`]): those of the same keys
    /// shared, the turns (an eighth of the MySQL pool), and the places in line for a turn (four
    /// times as many).
    key_loads: catalog::ReadGroups<(sf_routing::LocationId, Vec<sf_routing::ProductId>), ()>,
    order_loads: tokio::sync::Semaphore,
    load_line: tokio::sync::Semaphore,
}

/// Declares a handle: a view of [`Storage`] for one concern, with the operations that concern's
/// callers need. It reads the storage it was taken from; everything else stays sealed.
macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a>(pub(crate) &'a crate::Storage);

        impl std::ops::Deref for $name<'_> {
            type Target = crate::Storage;
            fn deref(&self) -> &crate::Storage {
                self.0
            }
        }
    };
}
pub(crate) use handle;

impl Storage {
    /// Reading orders of any path, and the record of orders lost with Redis's data.
    pub fn orders(&self) -> orders::Orders<'_> {
        orders::Orders(self)
    }

    /// The DB-lock path: orders, cancels and POS returns decided in MySQL, operators' stock
    /// changes.
    pub fn db_lock(&self) -> db_lock::DbLock<'_> {
        db_lock::DbLock(self)
    }

    /// The Redis path: orders decided in Redis, their cancels, stock reads.
    pub fn redis_path(&self) -> redis_path::RedisPath<'_> {
        redis_path::RedisPath(self)
    }

    /// The order's way out: fulfilment steps, the store's work list, the not-collected job.
    pub fn fulfilment(&self) -> fulfilment::Fulfilment<'_> {
        fulfilment::Fulfilment(self)
    }

    /// Checkout holds: placed, read, extended, released, converted, expired.
    pub fn holds(&self) -> holds::Holds<'_> {
        holds::Holds(self)
    }

    /// Products and locations: reads, pages, operators' changes, POS credentials.
    pub fn catalog(&self) -> catalog::Catalog<'_> {
        catalog::Catalog(self)
    }

    /// Operators, their roles and tokens, and the audit trail of what they did.
    pub fn access(&self) -> access::Access<'_> {
        access::Access(self)
    }

    /// Redis repaired from MySQL, and what the checks found.
    pub fn recovery(&self) -> recovery::Recovery<'_> {
        recovery::Recovery(self)
    }

    /// The state of the connections: the Redis circuit, MySQL's health, the pools.
    pub fn health(&self) -> infra::Health<'_> {
        infra::Health(self)
    }

    /// Wraps open pools and loads the catalogue and locations into memory.
    pub async fn new(
        db: MySqlPool,
        redis: RedisLink,
        config: StorageOptions,
    ) -> StorageResult<Self> {
        let load_turns = (db.options().get_max_connections() as usize / 8).max(1);
        let store = Self {
            db,
            redis: ArcSwap::from_pointee(redis.pool),
            redis_client: redis.client,
            redis_settings: redis.settings,
            circuit: Arc::default(),
            mysql_health: circuit::MysqlHealth::default(),
            keys: Keys::new(config.key_prefix.clone()),
            config,
            catalog: ArcSwap::default(),
            locations: ArcSwap::default(),
            resync_queue: Mutex::default(),
            loads: Default::default(),
            epochs: Mutex::default(),
            replicas_short: Mutex::default(),
            groups: Default::default(),
            key_loads: Default::default(),
            order_loads: tokio::sync::Semaphore::new(load_turns),
            load_line: tokio::sync::Semaphore::new(4 * load_turns),
        };
        store.catalog().refresh_catalog().await?;
        store.catalog().refresh_locations().await?;
        Ok(store)
    }
}
