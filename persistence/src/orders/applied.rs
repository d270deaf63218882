//! Whether MySQL already holds a stream event: the one definition of "applied".
//!
//! Three readers of the event streams must agree on it, and all take it from here:
//!
//! - the consumer's `classify` (`consumer/classify.rs`): which events of a batch to write, which
//!   are duplicates, which cancels wait for their reservation;
//! - the key re-sync's count (`recovery/sync.rs`): which events still in a stream the sellable
//!   figure must net out of MySQL's on-hand, and by how much;
//! - `sync.lua`, which re-derives nothing: it is handed the counts the re-sync made with
//!   [`Standing`], the last stream id they cover, and [`effects_arg`]; every entry appended after
//!   that id is unapplied, because applying one writes a stock row the re-sync holds
//!   share-locked.
//!
//! Pure: it reads nothing but its arguments.

use crate::formats::EventKind;
use crate::model::OrderStatus;

/// Where a stream event stands against what MySQL holds of its order (`None`: no row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// MySQL holds its effect; applying it again would count it twice. A reservation once its
    /// order's row exists, whatever its status; a cancel once that row is `CANCELLED` — or
    /// `REJECTED`: a rejected order took no stock, so its cancel has nothing left to give back.
    Applied,
    /// MySQL does not hold it and can apply it now: a reservation of an order MySQL does not
    /// hold, a cancel of an order MySQL holds as sold.
    Due,
    /// MySQL does not hold it and cannot apply it yet: a cancel of an order MySQL does not hold
    /// (its reservation is still on its way, or will never come).
    Waiting,
    /// A kind this release does not know: it changes nothing in MySQL.
    Inert,
}

impl Standing {
    /// The standing of an event of `kind` while MySQL holds `held` of its order.
    pub(crate) fn of(kind: EventKind, held: Option<OrderStatus>) -> Self {
        use OrderStatus::{Cancelled, Confirmed, Rejected};
        match (kind, held) {
            (EventKind::Reservation, Some(_)) => Self::Applied,
            (EventKind::Reservation, None) => Self::Due,
            (EventKind::Cancel, Some(Cancelled | Rejected)) => Self::Applied,
            (EventKind::Cancel, Some(Confirmed)) => Self::Due,
            (EventKind::Cancel, _) => Self::Waiting,
            (EventKind::Other(_), _) => Self::Inert,
        }
    }

    pub(crate) fn is_applied(self) -> bool {
        self == Self::Applied
    }
}

/// What MySQL holds of an order once an event of `kind` is applied to what it held (`held`): the
/// consumer carries a batch's own events forward with it, so that an event its batch repeats
/// stands [`Standing::Applied`] by the same rule.
pub(crate) fn held_after(kind: EventKind, held: Option<OrderStatus>) -> Option<OrderStatus> {
    match kind {
        EventKind::Reservation => Some(OrderStatus::Confirmed),
        EventKind::Cancel => Some(OrderStatus::Cancelled),
        EventKind::Other(_) => held,
    }
}

/// The sign by which the units of an event MySQL has not applied move the sellable figure away
/// from MySQL's on-hand: a reservation's units are gone already, a cancel's are back already, an
/// event of another kind moves nothing.
pub(crate) fn unapplied_effect(kind: EventKind) -> i64 {
    match kind {
        EventKind::Reservation => -1,
        EventKind::Cancel => 1,
        EventKind::Other(_) => 0,
    }
}

/// [`unapplied_effect`] of every kind that moves stock, as `sync.lua` takes it:
/// `<kind>:<sign>`, comma separated.
pub(crate) fn effects_arg() -> String {
    [EventKind::Reservation, EventKind::Cancel]
        .into_iter()
        .map(|k| format!("{}:{}", k.as_char(), unapplied_effect(k)))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::{Accepted, Cancelled, Confirmed, Rejected};

    const R: EventKind = EventKind::Reservation;
    const C: EventKind = EventKind::Cancel;

    #[test]
    fn a_reservation_is_applied_once_its_order_has_a_row() {
        assert_eq!(Standing::of(R, None), Standing::Due);
        for held in [Confirmed, Cancelled, Rejected] {
            assert!(Standing::of(R, Some(held)).is_applied(), "{held:?}");
        }
    }

    #[test]
    fn a_cancel_is_applied_once_its_order_is_closed_and_waits_for_its_reservation() {
        assert_eq!(Standing::of(C, Some(Confirmed)), Standing::Due);
        assert!(Standing::of(C, Some(Cancelled)).is_applied());
        // A rejected order took no stock: its cancel has nothing to give back.
        assert!(Standing::of(C, Some(Rejected)).is_applied());
        assert_eq!(Standing::of(C, None), Standing::Waiting);
        assert_eq!(Standing::of(C, Some(Accepted)), Standing::Waiting);
    }

    #[test]
    fn an_unknown_kind_changes_nothing() {
        let z = EventKind::Other('Z');
        assert_eq!(Standing::of(z, None), Standing::Inert);
        assert_eq!(Standing::of(z, Some(Confirmed)), Standing::Inert);
        assert_eq!(held_after(z, Some(Confirmed)), Some(Confirmed));
        assert_eq!(unapplied_effect(z), 0);
    }

    #[test]
    fn an_applied_event_repeated_stands_applied() {
        for kind in [R, C] {
            for held in [None, Some(Confirmed)] {
                let after = held_after(kind, held);
                assert!(Standing::of(kind, after).is_applied(), "{kind:?} {held:?}");
            }
        }
    }

    #[test]
    fn the_script_gets_the_effects_of_the_kinds_that_move_stock() {
        assert_eq!(effects_arg(), "R:-1,C:1");
    }
}
