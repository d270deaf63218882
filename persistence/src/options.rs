//! The settings of the storage layer.

use std::time::Duration;

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
    /// How long a pickup may wait `READY_FOR_PICKUP` before the not-collected job cancels it.
    pub pickup_expiry: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sf:".into(),
            same_day_radius_km: 10.0,
            record_ttl_secs: 10,
            idempotency_ttl_secs: 48 * 3600,
            db_timeout: Duration::from_secs(3),
            pickup_expiry: Duration::from_secs(3 * 86_400),
        }
    }
}
