//! Checkout holds: units set aside while a customer pays, released on time, converted into an
//! order exactly once.
//!
//! Holds are MySQL-first, like DB-lock orders: placing one moves its units from `available` to
//! `reserved` in a MySQL transaction under the stock rows' locks, and Redis's `available` moves
//! with it while the locks are held (the commit step every MySQL-first write ends with,
//! [`crate::db_lock`]). Releasing or expiring one moves them back the same way. Converting one
//! creates a `CONFIRMED` order in the transaction that moves the units from `reserved` to
//! `committed`, under the hold's row lock; `available` does not move, so Redis does not either.
//!
//! Every decision on a hold's state is one of [`decide`]'s pure functions; this folder's other
//! files read and write rows: [`rows`] (the SQL of a hold), [`place`], [`end`] (release and
//! expiry), [`extend`], [`convert`], [`expiry`] (the job's pass).

pub mod decide;
pub(crate) mod rows;

mod convert;
mod end;
mod expiry;
mod extend;
mod place;

pub use decide::{HoldStatus, Ttl};
pub use place::HoldRequest;

use crate::model::{Address, OrderItem};
use sf_routing::DeliveryType;

crate::handle!(
    /// Checkout holds, as callers use them: taken with [`crate::Storage::holds`].
    Holds
);

/// A hold as callers read it, its status already the effective one ([`decide::effective`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub hold_id: String,
    pub status: HoldStatus,
    /// The order it became (status `CONVERTED`).
    pub order_id: Option<String>,
    pub delivery_type: DeliveryType,
    pub fulfillment_location_id: u64,
    pub distance_km: Option<f64>,
    pub delivery_address: Option<Address>,
    /// Each line with the price the hold was given; the order made from it keeps them.
    pub items: Vec<OrderItem>,
    pub total_amount: i64,
    /// In ms since the Unix epoch.
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    /// The sales channel that placed it (`None`: placed with `SHOP_AUTH=off`).
    pub channel: Option<u64>,
}

/// A hold just placed, or the first answer replayed for a repeated `Idempotency-Key`.
#[derive(Debug, Clone)]
pub enum PlacedHold {
    New(Hold),
    Replayed(Hold),
}

impl PlacedHold {
    pub fn hold(&self) -> &Hold {
        match self {
            Self::New(h) | Self::Replayed(h) => h,
        }
    }
}

/// How many holds are in each state, across every instance (for `/metrics`).
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldCounts {
    pub active: i64,
    pub converted: i64,
    pub released: i64,
    pub expired: i64,
    /// How long the active hold furthest past its `expiresAt` has been so, in ms (0 when none
    /// is): how far the expiry job is behind.
    pub overdue_ms: i64,
}

impl HoldCounts {
    /// Every hold ever placed.
    pub fn placed(&self) -> i64 {
        self.active + self.converted + self.released + self.expired
    }
}

impl Holds<'_> {
    /// A hold as it stands now: past its `expiresAt` it reads `EXPIRED`, whether or not the
    /// expiry job has given its units back yet.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, hold_id: &str) -> crate::StorageResult<Hold> {
        let mut conn = self.db.acquire().await?;
        rows::read(&mut conn, hold_id, false).await
    }

    /// How many holds are in each state, as MySQL has them written (a hold past its time the
    /// job has not reached yet still counts as active).
    pub async fn counts(&self) -> crate::StorageResult<HoldCounts> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT CAST(status AS CHAR), COUNT(*) FROM holds GROUP BY status")
                .fetch_all(&self.db)
                .await?;
        let mut c = HoldCounts::default();
        for (status, n) in rows {
            match status.as_str() {
                "ACTIVE" => c.active = n,
                "CONVERTED" => c.converted = n,
                "RELEASED" => c.released = n,
                "EXPIRED" => c.expired = n,
                _ => {}
            }
        }
        let (overdue_us,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(expires_at), NOW(3)), 0) \
             FROM holds WHERE status = 'ACTIVE' AND expires_at <= NOW(3)",
        )
        .fetch_one(&self.db)
        .await?;
        c.overdue_ms = overdue_us.max(0) / 1000;
        Ok(c)
    }
}
