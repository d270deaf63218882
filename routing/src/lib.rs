//! Fulfillment decisions, free of I/O.
//!
//! # Layout
//!
//! - [`domain`]: values that are validated once at the edge ([`ProductId`], [`Quantity`],
//!   [`Coordinates`], [`OrderLines`]) so code past the edge never re-checks them.
//! - [`calendar`]: a location's [`Calendar`] (zone, opening hours, closed dates, same-day cut-off,
//!   pickup preparation), validated once, and the questions asked of it at a given instant.
//! - [`index`]: the in-memory [`LocationIndex`] of active warehouses and stores, with a latitude-band
//!   prefilter so ranking stays fast with thousands of stores.
//! - [`plan`]: turns a delivery request into ranked [`Candidate`]s ([`candidates`], or
//!   [`candidates_at`] with the current time), and keeps, in that order, those a stock view says
//!   can fill every line ([`eligible`]). The order paths try the candidates in turn; the stock
//!   decides, under locks or in a script, which one takes it. [`same_day`], [`same_day_closed`]
//!   and [`ready_by`] answer the time-aware parts of same-day and pickup.
//! - `sql` (with the `sqlx` feature): how a storage layer reads these values from SQL and binds
//!   the ids; the crate itself never runs a query.
//!
//! This crate must never talk to a database, a cache or the network, nor read a clock: callers
//! hand it the locations, a stock lookup and the current time, and it answers with a decision.

pub mod calendar;
pub mod domain;
pub mod index;
pub mod plan;
#[cfg(feature = "sqlx")]
mod sql;

pub use calendar::{
    rfc3339, Calendar, CalendarError, CalendarSpec, ClockTime, OpeningHours, OpeningHoursSpec,
};
pub use domain::{
    Coordinates, DeliveryType, DomainError, LocationId, LocationKind, OrderLines, ProductId,
    Quantity, MAX_DISTINCT_LINES, MAX_LINE_QUANTITY,
};
pub use index::{Candidate, LocationIndex, Site};
pub use plan::{
    candidates, candidates_at, eligible, ready_by, same_day, same_day_closed, Destination,
    PickupAlternative, RoutingError, SameDayClosed, SameDayRanking,
};
