//! Storage for Stock Flow: MySQL (the system of record) through sqlx, Redis (the fast order path)
//! through a bb8 pool of self-healing multiplexed connections, and the Lua scripts that decide orders in Redis.
//!
//! # Layout
//!
//! - [`db`]: the MySQL pool, embedded migrations, deadlock retry.
//! - [`redis_stock`]: Redis key names, the Lua scripts (files under `persistence/lua/`).
//! - [`catalog`]: products and locations, with the in-memory copies routing and pricing read.
//! - [`sync`]: loading and repairing Redis stock from MySQL at a consistent point.
//! - [`mysql_first`]: orders decided in a MySQL transaction (the DB-lock path and POS sales),
//!   operator stock changes, and their cancels.
//! - [`redis_path`]: orders decided by the reservation script, and their cancels.
//! - [`consumer`]: the background writer that persists Redis order events to MySQL exactly once.
//! - [`orders`]: reading an order of any path.
//! - [`reconcile`]: the reconciliation pass, warm-up after Redis lost its data, housekeeping.
//! - [`jobs`]: running scheduled jobs without overlap, under a lease, with every run recorded.
//! - [`idempotency`], [`credentials`], [`seed`].
//!
//! This crate decides nothing about routing (that is `sf-routing`) and knows nothing of HTTP.

pub mod catalog;
pub mod consumer;
pub mod credentials;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod jobs;
pub mod model;
pub mod mysql_first;
pub mod orders;
pub mod reconcile;
pub mod redis_path;
pub mod redis_stock;
pub mod seed;
pub mod sync;

pub use error::{Alternative, StoreError, StoreResult};
pub use redis_stock::{Keys, RedisPool};

use catalog::{Catalog, Locations};
use sf_routing::{LocationId, ProductId};
use sqlx::MySqlPool;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

/// Settings of the storage layer.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Prefix of every Redis key (lets tests and deployments share one Redis).
    pub key_prefix: String,
    /// Radius of same-day delivery around the address, in km.
    pub same_day_radius_km: f64,
    /// How long an order record stays in Redis after it reached MySQL, in seconds.
    pub record_ttl_secs: u64,
    /// How long idempotency keys are kept, in seconds.
    pub idempotency_ttl_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            key_prefix: "sf:".into(),
            same_day_radius_km: 10.0,
            record_ttl_secs: 60,
            idempotency_ttl_secs: 48 * 3600,
        }
    }
}

/// Both stores and the in-memory copies of the catalogue and the locations.
pub struct Store {
    pub db: MySqlPool,
    pub redis: RedisPool,
    /// For connections of their own, outside the pool.
    pub redis_client: redis::Client,
    pub keys: Keys,
    pub scripts: redis_stock::Scripts,
    pub config: StoreConfig,
    catalog: RwLock<Arc<Catalog>>,
    locations: RwLock<Arc<Locations>>,
    /// Stock keys that may differ from MySQL after a failure and could not be re-synced at once;
    /// [`Store::drain_resync_queue`] sets them from MySQL.
    resync_queue: Mutex<BTreeMap<LocationId, BTreeSet<ProductId>>>,
}

impl Store {
    /// Wraps open pools and loads the catalogue and locations into memory.
    pub async fn new(
        db: MySqlPool,
        (redis, redis_client): (RedisPool, redis::Client),
        config: StoreConfig,
    ) -> StoreResult<Self> {
        let store = Self {
            db,
            redis,
            redis_client,
            keys: Keys::new(config.key_prefix.clone()),
            scripts: redis_stock::Scripts::default(),
            config,
            catalog: RwLock::default(),
            locations: RwLock::default(),
            resync_queue: Mutex::default(),
        };
        store.refresh_catalog().await?;
        store.refresh_locations().await?;
        Ok(store)
    }

    /// A Redis connection for one operation. The pooled connection is multiplexed: a clone of
    /// it pipelines this operation with other requests' over the same socket, and the pool slot
    /// is free again at once.
    pub async fn conn(&self) -> StoreResult<redis::aio::ConnectionManager> {
        let pooled = self.redis.get().await?;
        Ok((*pooled).clone())
    }
}
