//! Redis repaired from MySQL: loading and re-syncing stock keys at a consistent point
//! ([`sync`]: key loads, stale keys, recovery after an outage), and the reconciliation pass with
//! its epochs and data-loss records ([`reconcile`]), and the safety stock Redis decides with
//! ([`safety`]).

pub(crate) mod reconcile;
pub(crate) mod safety;
pub(crate) mod sync;

pub use reconcile::ReconcileReport;
pub use sync::{SyncMode, SyncedKey};

crate::handle!(
    /// Redis repaired from MySQL, as the jobs and operators drive it: taken with
    /// [`crate::Storage::recovery`].
    Recovery
);
