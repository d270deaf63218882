//! The order's way out of the building: a pickup made ready, collected with its code, a same-day
//! order dispatched, a warehouse order shipped, and the job that cancels a pickup nobody came
//! for. What a step may do is decided in [`decide`] (pure); [`steps`] locks, decides and writes;
//! [`work_list`] reads a store's orders at one step; [`not_collected`] is the expiry job.
//!
//! A hand-over moves the order's units out of `committed` (and so out of `onHand`); `available`
//! does not move, so Redis, which mirrors `available`, has nothing to learn. Each step locks the
//! order's row first, then its stock rows in (location, product) order, as every writer does.
//! *Handed over* is defined once: [`crate::model::FulfillmentStatus::is_handed_over`].

pub(crate) mod decide;
mod not_collected;
mod steps;
mod work_list;

pub use decide::{Step, WRONG_CODES_ALLOWED};
pub use work_list::{WorkList, WorkListStep};

crate::handle!(
    /// The fulfilment steps, the store's work list and the not-collected job: taken with
    /// [`crate::Storage::fulfilment`].
    Fulfilment
);

/// The `cancelReason` of a pickup the not-collected job cancelled.
pub const NOT_COLLECTED: &str = "NOT_COLLECTED";
