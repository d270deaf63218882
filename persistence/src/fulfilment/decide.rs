//! What a fulfilment step may do to an order, decided from the order's locked row alone: apply,
//! answer the current state (a repeat), count a wrong code, or refuse. Pure, so each rule has its
//! unit test.

use crate::error::Refusal;
use crate::model::{FulfillmentStatus, OrderPath, OrderStatus};
use sf_routing::{DeliveryType, LocationId};

/// Wrong pickup codes an order takes; past them, only an operator can collect it.
pub const WRONG_CODES_ALLOWED: i32 = 5;

/// A step of an order's way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A pickup is ready at the store (`READY_FOR_PICKUP`).
    Ready,
    /// A ready pickup is collected: with the code the customer shows (the store), or without one
    /// (an operator, after too many wrong codes).
    Collect { code: Option<String> },
    /// A same-day order leaves with a courier (`DISPATCHED`).
    Dispatch,
    /// A warehouse order is shipped (`SHIPPED`).
    Ship,
}

impl Step {
    /// The status the step leads to.
    pub fn target(&self) -> FulfillmentStatus {
        match self {
            Self::Ready => FulfillmentStatus::ReadyForPickup,
            Self::Collect { .. } => FulfillmentStatus::Collected,
            Self::Dispatch => FulfillmentStatus::Dispatched,
            Self::Ship => FulfillmentStatus::Shipped,
        }
    }

    /// The one delivery type the step is for.
    fn delivery_type(&self) -> DeliveryType {
        match self {
            Self::Ready | Self::Collect { .. } => DeliveryType::Pickup,
            Self::Dispatch => DeliveryType::SameDay,
            Self::Ship => DeliveryType::Normal,
        }
    }

    /// The status the order must be at for the step to apply.
    fn from(&self) -> FulfillmentStatus {
        match self {
            Self::Collect { .. } => FulfillmentStatus::ReadyForPickup,
            _ => FulfillmentStatus::Unfulfilled,
        }
    }
}

/// What a step reads of the order's locked row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Current {
    pub status: OrderStatus,
    pub path: OrderPath,
    pub delivery_type: DeliveryType,
    pub location_id: LocationId,
    pub fulfillment: FulfillmentStatus,
    pub pickup_code: Option<String>,
    pub wrong_codes: i32,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Move the order to this status (a hand-over when it is one).
    Apply(FulfillmentStatus),
    /// Already there: nothing changes, the answer is the current state.
    Repeat,
    /// A wrong pickup code: count it, change nothing else, and refuse.
    WrongCode { left: i32 },
    /// Refused as asked; nothing changes.
    Refuse(Refusal),
}

/// Decides `step` on order `id` for `store` (`None`: an operator, who acts for every location).
pub(crate) fn decide(id: &str, step: &Step, store: Option<LocationId>, cur: &Current) -> Decision {
    if store.is_some_and(|s| s != cur.location_id) {
        return Decision::Refuse(Refusal::UnknownOrder(id.to_owned()));
    }
    let target = step.target();
    if cur.path == OrderPath::Pos || cur.delivery_type != step.delivery_type() {
        return Decision::Refuse(Refusal::Conflict(format!(
            "order {id} is a {} order; {} is for {} orders only",
            delivery_name(cur.path, cur.delivery_type),
            target.as_str(),
            step.delivery_type().as_str()
        )));
    }
    match cur.status {
        OrderStatus::Confirmed => {}
        OrderStatus::Accepted => {
            return Decision::Refuse(Refusal::Conflict(format!(
                "order {id} is not yet persisted; retry in a moment"
            )))
        }
        other => {
            return Decision::Refuse(Refusal::Conflict(format!(
                "order {id} is {}; it has no way out",
                other.as_str()
            )))
        }
    }
    if cur.fulfillment == target {
        return Decision::Repeat;
    }
    if cur.fulfillment != step.from() {
        let why = if cur.fulfillment > target {
            "steps only go forward"
        } else {
            "it is not ready for pickup yet"
        };
        return Decision::Refuse(Refusal::Conflict(format!(
            "order {id} is {}; it cannot become {}: {why}",
            cur.fulfillment.as_str(),
            target.as_str()
        )));
    }
    if let Step::Collect { code: Some(code) } = step {
        if cur.wrong_codes >= WRONG_CODES_ALLOWED {
            return Decision::Refuse(Refusal::WrongPickupCode(format!(
                "order {id} took {WRONG_CODES_ALLOWED} wrong pickup codes; an operator must collect it (POST /api/admin/orders/{id}/collect)"
            )));
        }
        if cur.pickup_code.as_deref() != Some(code.as_str()) {
            return Decision::WrongCode {
                left: WRONG_CODES_ALLOWED - cur.wrong_codes - 1,
            };
        }
    }
    Decision::Apply(target)
}

/// Why an order may not be cancelled, if it may not: an online order handed over has left the
/// building (a till sale, handed over at once, comes back through its store's return instead).
/// Every cancel that locks an order's row asks this under the lock.
pub(crate) fn refuse_cancel(
    id: &str,
    path: OrderPath,
    fulfillment: FulfillmentStatus,
) -> Option<Refusal> {
    (path != OrderPath::Pos && fulfillment.is_handed_over()).then(|| {
        Refusal::Conflict(format!(
            "order {id} was handed over ({}); it can no longer be cancelled",
            fulfillment.as_str()
        ))
    })
}

fn delivery_name(path: OrderPath, t: DeliveryType) -> &'static str {
    match path {
        OrderPath::Pos => "POS",
        _ => t.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: LocationId = LocationId::new_unchecked(4);

    fn pickup(f: FulfillmentStatus) -> Current {
        Current {
            status: OrderStatus::Confirmed,
            path: OrderPath::DbLock,
            delivery_type: DeliveryType::Pickup,
            location_id: STORE,
            fulfillment: f,
            pickup_code: Some("123456".into()),
            wrong_codes: 0,
        }
    }

    fn collect(code: &str) -> Step {
        Step::Collect {
            code: Some(code.into()),
        }
    }

    fn refused(d: Decision) -> Refusal {
        match d {
            Decision::Refuse(r) => r,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_pickup_goes_ready_then_collected() {
        let cur = pickup(FulfillmentStatus::Unfulfilled);
        assert_eq!(
            decide("4-a", &Step::Ready, Some(STORE), &cur),
            Decision::Apply(FulfillmentStatus::ReadyForPickup)
        );
        let cur = pickup(FulfillmentStatus::ReadyForPickup);
        assert_eq!(
            decide("4-a", &collect("123456"), Some(STORE), &cur),
            Decision::Apply(FulfillmentStatus::Collected)
        );
        assert_eq!(
            decide("4-a", &Step::Collect { code: None }, None, &cur),
            Decision::Apply(FulfillmentStatus::Collected)
        );
    }

    #[test]
    fn a_repeat_answers_the_current_state() {
        let cur = pickup(FulfillmentStatus::ReadyForPickup);
        assert_eq!(
            decide("4-a", &Step::Ready, Some(STORE), &cur),
            Decision::Repeat
        );
        let cur = pickup(FulfillmentStatus::Collected);
        // Even with a wrong code: the order was collected, nothing is left to guard.
        assert_eq!(
            decide("4-a", &collect("000000"), Some(STORE), &cur),
            Decision::Repeat
        );
    }

    #[test]
    fn steps_only_go_forward() {
        let cur = pickup(FulfillmentStatus::Collected);
        let r = refused(decide("4-a", &Step::Ready, Some(STORE), &cur));
        assert!(r.to_string().contains("only go forward"), "{r}");
        let cur = pickup(FulfillmentStatus::Unfulfilled);
        let r = refused(decide("4-a", &collect("123456"), Some(STORE), &cur));
        assert!(r.to_string().contains("not ready"), "{r}");
    }

    #[test]
    fn another_stores_order_is_unknown_to_it() {
        let cur = pickup(FulfillmentStatus::Unfulfilled);
        let r = refused(decide(
            "4-a",
            &Step::Ready,
            Some(LocationId::new_unchecked(5)),
            &cur,
        ));
        assert!(matches!(r, Refusal::UnknownOrder(_)));
    }

    #[test]
    fn each_step_is_for_one_delivery_type() {
        let cur = pickup(FulfillmentStatus::Unfulfilled);
        assert!(matches!(
            refused(decide("4-a", &Step::Dispatch, Some(STORE), &cur)),
            Refusal::Conflict(_)
        ));
        assert!(matches!(
            refused(decide("4-a", &Step::Ship, None, &cur)),
            Refusal::Conflict(_)
        ));
        let sale = Current {
            path: OrderPath::Pos,
            delivery_type: DeliveryType::InStore,
            fulfillment: FulfillmentStatus::Collected,
            ..cur
        };
        assert!(matches!(
            refused(decide("4-a", &Step::Ready, Some(STORE), &sale)),
            Refusal::Conflict(_)
        ));
    }

    #[test]
    fn a_cancelled_or_unpersisted_order_takes_no_step() {
        for status in [
            OrderStatus::Cancelled,
            OrderStatus::Rejected,
            OrderStatus::Accepted,
        ] {
            let cur = Current {
                status,
                ..pickup(FulfillmentStatus::Unfulfilled)
            };
            assert!(matches!(
                refused(decide("4-a", &Step::Ready, Some(STORE), &cur)),
                Refusal::Conflict(_)
            ));
        }
    }

    #[test]
    fn a_handed_over_order_cannot_be_cancelled() {
        for f in [
            FulfillmentStatus::Collected,
            FulfillmentStatus::Dispatched,
            FulfillmentStatus::Shipped,
        ] {
            assert!(refuse_cancel("4-a", OrderPath::Redis, f).is_some());
        }
        assert!(
            refuse_cancel("4-a", OrderPath::DbLock, FulfillmentStatus::ReadyForPickup).is_none()
        );
        // A till sale is returned, not cancelled.
        assert!(refuse_cancel("4-a", OrderPath::Pos, FulfillmentStatus::Collected).is_none());
    }

    #[test]
    fn wrong_codes_count_until_the_operator_must_collect() {
        let mut cur = pickup(FulfillmentStatus::ReadyForPickup);
        for n in 0..WRONG_CODES_ALLOWED {
            cur.wrong_codes = n;
            assert_eq!(
                decide("4-a", &collect("654321"), Some(STORE), &cur),
                Decision::WrongCode {
                    left: WRONG_CODES_ALLOWED - n - 1
                }
            );
        }
        cur.wrong_codes = WRONG_CODES_ALLOWED;
        // Locked: even the right code is refused, and an operator may still collect.
        assert!(matches!(
            refused(decide("4-a", &collect("123456"), Some(STORE), &cur)),
            Refusal::WrongPickupCode(_)
        ));
        assert_eq!(
            decide("4-a", &Step::Collect { code: None }, None, &cur),
            Decision::Apply(FulfillmentStatus::Collected)
        );
    }
}
