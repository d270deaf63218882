//! What the events of a batch are, given the statuses MySQL holds: pure, it reads nothing but
//! its arguments.

use super::*;

use crate::error::{StorageError, StorageResult};
use crate::formats::EventKind;
use crate::model::{Order, OrderStatus};
use sf_routing::LocationId;
use std::collections::{HashMap, HashSet};

/// What the events of a batch are, given the status MySQL holds for their orders: new
/// reservations (as orders to insert), cancels of persisted orders, cancels that must wait for
/// their reservation, duplicates — and which events may be acknowledged once the batch commits.
/// Pure: it reads nothing but its arguments.
pub(super) struct Classified<'a> {
    pub(super) new_orders: Vec<(Order, LocationId)>,
    /// The `Idempotency-Key` of new orders placed with one, by order id.
    pub(super) keys: HashMap<String, crate::orders::idempotency::IdempotencyRequest>,
    pub(super) cancels: Vec<&'a Event>,
    /// The events that change MySQL, in stream order.
    pub(super) fresh: Vec<&'a Event>,
    pub(super) waiting: Vec<&'a Event>,
    pub(super) ackable: HashSet<(String, LocationId)>,
    pub(super) duplicates: usize,
}

pub(super) fn classify<'a>(
    events: &'a [Event],
    status: &HashMap<String, OrderStatus>,
) -> StorageResult<Classified<'a>> {
    let mut new_orders: Vec<(Order, LocationId)> = Vec::new();
    let mut keys = HashMap::new();
    let mut inserted: HashSet<&str> = HashSet::new();
    let mut cancels: Vec<&Event> = Vec::new();
    let mut cancelled: HashSet<&str> = HashSet::new();
    let mut fresh: Vec<&Event> = Vec::new();
    let mut waiting: Vec<&Event> = Vec::new();
    let mut ackable = HashSet::new();
    let mut duplicates = 0;
    for e in events {
        let known = status.get(&e.order_id).copied();
        match e.kind {
            EventKind::Reservation => {
                if known.is_some() || inserted.contains(e.order_id.as_str()) {
                    duplicates += 1;
                } else {
                    let json = e.json.as_deref().ok_or_else(|| {
                        StorageError::internal(format!(
                            "reservation event of {} has no order",
                            e.order_id
                        ))
                    })?;
                    let (mut order, key) = crate::formats::OrderRecord::decode_keyed(json)?;
                    if order.order_id != e.order_id || order.fulfillment_location_id != e.loc.get()
                    {
                        return Err(StorageError::internal(format!(
                            "reservation event of {} carries order {} at location {}",
                            e.order_id, order.order_id, order.fulfillment_location_id
                        )));
                    }
                    order.status = OrderStatus::Confirmed;
                    if let Some(key) = key {
                        keys.insert(e.order_id.clone(), key);
                    }
                    inserted.insert(e.order_id.as_str());
                    new_orders.push((order, e.loc));
                    fresh.push(e);
                }
                ackable.insert((e.stream_id.clone(), e.loc));
            }
            EventKind::Cancel => {
                let persisted =
                    known == Some(OrderStatus::Confirmed) || inserted.contains(e.order_id.as_str());
                if matches!(known, Some(OrderStatus::Cancelled | OrderStatus::Rejected))
                    || cancelled.contains(e.order_id.as_str())
                {
                    duplicates += 1;
                    ackable.insert((e.stream_id.clone(), e.loc));
                } else if persisted {
                    cancelled.insert(e.order_id.as_str());
                    cancels.push(e);
                    fresh.push(e);
                    ackable.insert((e.stream_id.clone(), e.loc));
                } else {
                    // Its reservation is pending elsewhere (reclaimed out of order): later —
                    // unless it will never come (see below).
                    waiting.push(e);
                }
            }
            EventKind::Other(other) => {
                tracing::error!(order = %e.order_id, kind = %other, "unknown event kind; acknowledged without effect");
                ackable.insert((e.stream_id.clone(), e.loc));
            }
        }
    }

    Ok(Classified {
        new_orders,
        keys,
        cancels,
        fresh,
        waiting,
        ackable,
        duplicates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderItem, OrderPath};
    use std::collections::BTreeSet;

    const LOC: LocationId = LocationId::new_unchecked(4);

    fn reservation(id: &str, stream_id: &str) -> Event {
        let order = Order {
            order_id: id.into(),
            status: OrderStatus::Accepted,
            path: OrderPath::Redis,
            delivery_type: sf_routing::DeliveryType::Normal,
            fulfillment_location_id: LOC.get(),
            distance_km: None,
            delivery_address: None,
            items: vec![OrderItem {
                product_id: 9,
                quantity: 2,
                unit_price: 100,
            }],
            total_amount: 200,
            accepted_at_ms: 0,
            reason: None,
        };
        Event {
            loc: LOC,
            stream_id: stream_id.into(),
            kind: EventKind::Reservation,
            order_id: id.into(),
            lines: vec![(ProductId::new_unchecked(9), 2)],
            json: Some(crate::formats::OrderRecord::encode(&order)),
            unreadable: None,
        }
    }

    fn cancel(id: &str, stream_id: &str) -> Event {
        Event {
            kind: EventKind::Cancel,
            json: None,
            ..reservation(id, stream_id)
        }
    }

    fn status(pairs: &[(&str, &str)]) -> HashMap<String, OrderStatus> {
        pairs
            .iter()
            .map(|(o, s)| (o.to_string(), OrderStatus::parse(s).unwrap()))
            .collect()
    }

    fn acked(c: &Classified) -> BTreeSet<String> {
        c.ackable.iter().map(|(id, _)| id.clone()).collect()
    }

    #[test]
    fn a_new_reservation_becomes_a_confirmed_order() {
        let events = [reservation("4-a", "1-0")];
        let c = classify(&events, &status(&[])).unwrap();
        assert_eq!(c.new_orders.len(), 1);
        assert_eq!(c.new_orders[0].0.status, OrderStatus::Confirmed);
        assert_eq!((c.fresh.len(), c.duplicates), (1, 0));
        assert_eq!(acked(&c), BTreeSet::from(["1-0".to_owned()]));
    }

    #[test]
    fn what_mysql_holds_or_the_batch_repeats_is_a_duplicate() {
        let events = [
            reservation("4-a", "1-0"),
            reservation("4-b", "1-1"),
            reservation("4-b", "1-2"),
            cancel("4-c", "1-3"),
        ];
        let c = classify(
            &events,
            &status(&[("4-a", "CONFIRMED"), ("4-c", "CANCELLED")]),
        )
        .unwrap();
        assert_eq!(c.new_orders.len(), 1);
        assert_eq!(c.duplicates, 3);
        assert_eq!(acked(&c).len(), 4);
    }

    #[test]
    fn a_cancel_applies_to_a_persisted_order_or_one_of_the_same_batch() {
        let events = [
            cancel("4-a", "1-0"),
            reservation("4-b", "1-1"),
            cancel("4-b", "1-2"),
            cancel("4-b", "1-3"),
        ];
        let c = classify(&events, &status(&[("4-a", "CONFIRMED")])).unwrap();
        assert_eq!(c.cancels.len(), 2);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.fresh.len(), 3);
        assert!(c.waiting.is_empty());
    }

    #[test]
    fn a_cancel_before_its_reservation_waits_and_is_not_acknowledged() {
        let events = [cancel("4-a", "1-0")];
        let c = classify(&events, &status(&[])).unwrap();
        assert_eq!(c.waiting.len(), 1);
        assert!(c.ackable.is_empty());
        // A rejected order took nothing: its cancel has nothing to give back.
        let c = classify(&events, &status(&[("4-a", "REJECTED")])).unwrap();
        assert_eq!((c.waiting.len(), c.duplicates), (0, 1));
    }

    #[test]
    fn an_unknown_kind_is_acknowledged_without_effect() {
        let events = [Event {
            kind: EventKind::Other('Z'),
            ..cancel("4-a", "1-0")
        }];
        let c = classify(&events, &status(&[])).unwrap();
        assert!(c.fresh.is_empty() && c.new_orders.is_empty());
        assert_eq!(acked(&c).len(), 1);
    }

    #[test]
    fn a_reservation_that_carries_another_order_or_none_is_an_error() {
        let mut wrong = reservation("4-b", "1-0");
        wrong.order_id = "4-a".into();
        assert!(classify(&[wrong], &status(&[])).is_err());
        let mut empty = reservation("4-a", "1-0");
        empty.json = None;
        assert!(classify(&[empty], &status(&[])).is_err());
    }
}
