//! Redis repaired from MySQL: loading and re-syncing stock keys at a consistent point
//! ([`sync`]: key loads, stale keys, recovery after an outage), and the reconciliation pass with
//! its epochs and data-loss records ([`reconcile`]), the safety stock Redis decides with
//! ([`safety`]), and what waits for repair as operators see it ([`waiting`]: stale keys, dead
//! letters).

pub(crate) mod reconcile;
pub(crate) mod safety;
pub(crate) mod sync;
pub(crate) mod waiting;

pub use reconcile::ReconcileReport;
pub use sync::{SyncMode, SyncedKey};
pub use waiting::{DeadLetterEntry, StaleKey};

crate::handle!(
    /// Redis repaired from MySQL, as the jobs and operators drive it: taken with
    /// [`crate::Storage::recovery`].
    Recovery
);
