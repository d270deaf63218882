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
use crate::model::{FulfillmentStatus, Order, OrderStatus};

/// What MySQL holds of an order, as far as its stream events are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) status: OrderStatus,
    /// Its units left the building: collected, dispatched or shipped.
    pub(crate) handed_over: bool,
}

impl Held {
    /// An order MySQL holds as `status`, at fulfilment step `step`.
    pub(crate) fn new(status: OrderStatus, step: FulfillmentStatus) -> Self {
        Self {
            status,
            handed_over: step.is_handed_over(),
        }
    }

    /// What MySQL holds of `order`, read from it.
    pub(crate) fn of(order: &Order) -> Self {
        Self::new(order.status, order.fulfillment.status)
    }
}

/// Where a stream event stands against what MySQL holds of its order (`None`: no row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// MySQL holds its effect; applying it again would count it twice. A reservation once its
    /// order's row exists, whatever its status; a cancel once that row is `CANCELLED` — or
    /// `REJECTED`: a rejected order took no stock, so its cancel has nothing left to give back.
    Applied,
    /// MySQL will never apply it: a cancel of an order MySQL holds as handed over. Such a cancel
    /// is one whose own MySQL commit failed after its script ran, so that it reached MySQL only
    /// through the stream, after the store had handed the order over: the units left the
    /// building, and the units its script gave back in Redis are not there.
    Late,
    /// MySQL does not hold it and can apply it now: a reservation of an order MySQL does not
    /// hold, a cancel of an order MySQL holds as sold and not handed over.
    Due,
    /// MySQL does not hold it and cannot apply it yet: a cancel of an order MySQL does not hold
    /// (its reservation is still on its way, or will never come).
    Waiting,
    /// A kind this release does not know: it changes nothing in MySQL.
    Inert,
}

impl Standing {
    /// The standing of an event of `kind` while MySQL holds `held` of its order.
    pub(crate) fn of(kind: EventKind, held: Option<Held>) -> Self {
        use OrderStatus::{Cancelled, Confirmed, Rejected};
        match (kind, held.map(|h| (h.status, h.handed_over))) {
            (EventKind::Reservation, Some(_)) => Self::Applied,
            (EventKind::Reservation, None) => Self::Due,
            (EventKind::Cancel, Some((Cancelled | Rejected, _))) => Self::Applied,
            (EventKind::Cancel, Some((Confirmed, true))) => Self::Late,
            (EventKind::Cancel, Some((Confirmed, false))) => Self::Due,
            (EventKind::Cancel, _) => Self::Waiting,
            (EventKind::Other(_), _) => Self::Inert,
        }
    }

    /// Whether MySQL holds all it will ever take of the event ([`Self::Applied`] or
    /// [`Self::Late`]): nothing of it is still to come, so the key re-sync counts nothing for it.
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Self::Applied | Self::Late)
    }
}

/// What MySQL holds of an order once an event of `kind` is applied to what it held (`held`): the
/// consumer carries a batch's own events forward with it, so that an event its batch repeats
/// stands [`Standing::Applied`] by the same rule.
pub(crate) fn held_after(kind: EventKind, held: Option<Held>) -> Option<Held> {
    match kind {
        EventKind::Reservation => Some(Held::new(
            OrderStatus::Confirmed,
            FulfillmentStatus::Unfulfilled,
        )),
        EventKind::Cancel => Some(Held::new(
            OrderStatus::Cancelled,
            FulfillmentStatus::Unfulfilled,
        )),
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

    fn held(status: OrderStatus) -> Option<Held> {
        Some(Held::new(status, FulfillmentStatus::Unfulfilled))
    }

    const HANDED_OVER: Option<Held> = Some(Held {
        status: Confirmed,
        handed_over: true,
    });

    #[test]
    fn a_reservation_is_applied_once_its_order_has_a_row() {
        assert_eq!(Standing::of(R, None), Standing::Due);
        for h in [
            held(Confirmed),
            held(Cancelled),
            held(Rejected),
            HANDED_OVER,
        ] {
            assert_eq!(Standing::of(R, h), Standing::Applied, "{h:?}");
        }
    }

    #[test]
    fn a_cancel_is_applied_once_its_order_is_closed_and_waits_for_its_reservation() {
        assert_eq!(Standing::of(C, held(Confirmed)), Standing::Due);
        assert_eq!(Standing::of(C, held(Cancelled)), Standing::Applied);
        // A rejected order took no stock: its cancel has nothing to give back.
        assert_eq!(Standing::of(C, held(Rejected)), Standing::Applied);
        assert_eq!(Standing::of(C, None), Standing::Waiting);
        assert_eq!(Standing::of(C, held(Accepted)), Standing::Waiting);
    }

    #[test]
    fn a_cancel_of_an_order_handed_over_is_late_and_final() {
        assert_eq!(Standing::of(C, HANDED_OVER), Standing::Late);
        assert!(Standing::of(C, HANDED_OVER).is_final());
        assert!(!Standing::of(C, held(Confirmed)).is_final());
        assert!(!Standing::of(C, None).is_final());
    }

    #[test]
    fn an_unknown_kind_changes_nothing() {
        let z = EventKind::Other('Z');
        assert_eq!(Standing::of(z, None), Standing::Inert);
        assert_eq!(Standing::of(z, held(Confirmed)), Standing::Inert);
        assert_eq!(held_after(z, held(Confirmed)), held(Confirmed));
        assert_eq!(unapplied_effect(z), 0);
    }

    #[test]
    fn an_applied_event_repeated_stands_applied() {
        for kind in [R, C] {
            for h in [None, held(Confirmed)] {
                let after = held_after(kind, h);
                assert_eq!(
                    Standing::of(kind, after),
                    Standing::Applied,
                    "{kind:?} {h:?}"
                );
            }
        }
    }

    #[test]
    fn the_script_gets_the_effects_of_the_kinds_that_move_stock() {
        assert_eq!(effects_arg(), "R:-1,C:1");
    }
}
