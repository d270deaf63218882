//! What the events of a batch are, given the statuses MySQL holds: pure, it reads nothing but
//! its arguments. Whether an event is applied already is [`Standing`]'s rule
//! (`orders/applied.rs`), the one the key re-sync and `sync.lua` go by too.

use super::*;

use crate::error::{StorageError, StorageResult};
use crate::formats::EventKind;
use crate::model::{Order, OrderStatus};
use crate::orders::applied::{held_after, Held, Standing};
use crate::orders::idempotency::IdempotencyRequest;
use sf_routing::LocationId;
use std::collections::{HashMap, HashSet};

/// A reservation MySQL does not hold yet, as the order to insert.
pub(super) struct NewOrder<'a> {
    /// `CONFIRMED` as read; [`super::settle`] decides what it ends as.
    pub(super) order: Order,
    /// The `Idempotency-Key` it was placed with.
    pub(super) key: Option<IdempotencyRequest>,
    /// Its reservation event.
    pub(super) event: &'a Event,
}

/// What the events of a batch are, given the status MySQL holds for their orders: new
/// reservations (as orders to insert, in stream order), cancels MySQL can apply, duplicates —
/// and which events may be acknowledged once the batch commits. Pure: it reads nothing but its
/// arguments.
pub(super) struct Classified<'a> {
    pub(super) orders: Vec<NewOrder<'a>>,
    /// Cancels of orders MySQL holds as sold or that this batch inserts, at most one per order.
    pub(super) cancels: Vec<&'a Event>,
    /// Cancels MySQL will never apply ([`Standing::Late`]): their orders were handed over first.
    /// Their scripts gave units back in Redis that are not there: the batch sets those keys from
    /// MySQL.
    pub(super) late: Vec<&'a Event>,
    /// `(streamId, location)` of the events to acknowledge once the batch commits: all but the
    /// cancels that wait for their reservation.
    pub(super) ackable: HashSet<(String, LocationId)>,
    pub(super) duplicates: usize,
}

/// Classifies `events` by [`Standing`] against `status` (what MySQL holds of their orders, read
/// under the orders' row locks), carrying each event of the batch forward to the next. A cancel
/// whose reservation MySQL does not hold waits for it (not acknowledged) — unless its order is in
/// `never`: Redis lost the order's record, or its reservation was dead-lettered, so it will never
/// come; such a cancel is acknowledged without effect.
pub(super) fn classify<'a>(
    events: &'a [Event],
    status: &HashMap<String, Held>,
    never: &HashSet<String>,
) -> StorageResult<Classified<'a>> {
    let mut held: HashMap<&str, Option<Held>> = HashMap::new();
    let mut out = Classified {
        orders: Vec::new(),
        cancels: Vec::new(),
        late: Vec::new(),
        ackable: HashSet::new(),
        duplicates: 0,
    };
    for e in events {
        let now = *held
            .entry(e.order_id.as_str())
            .or_insert_with(|| status.get(&e.order_id).copied());
        let standing = Standing::of(e.kind, now);
        match standing {
            Standing::Applied => out.duplicates += 1,
            Standing::Late => {
                tracing::warn!(order = %e.order_id, "cancel event of an order handed over before it reached MySQL; acknowledged without effect, its keys set from MySQL");
                out.late.push(e);
            }
            Standing::Due if e.kind == EventKind::Reservation => {
                out.orders.push(new_order(e)?);
            }
            Standing::Due => out.cancels.push(e),
            Standing::Waiting if never.contains(&e.order_id) => {
                tracing::warn!(order = %e.order_id, "cancel event of an order whose reservation will never be persisted; acknowledged without effect");
            }
            Standing::Waiting => {
                // Its reservation is pending elsewhere (reclaimed out of order): later.
                tracing::debug!(order = %e.order_id, "cancel event waits for its reservation");
                continue;
            }
            Standing::Inert => {
                tracing::error!(order = %e.order_id, kind = %e.kind, "unknown event kind; acknowledged without effect");
            }
        }
        if standing == Standing::Due {
            held.insert(e.order_id.as_str(), held_after(e.kind, now));
        }
        out.ackable.insert((e.stream_id.clone(), e.loc));
    }
    Ok(out)
}

/// The order a reservation event carries, `CONFIRMED`; an event that carries none, or another
/// order than it names, is an error of the event.
fn new_order(e: &Event) -> StorageResult<NewOrder<'_>> {
    let json = e.json.as_deref().ok_or_else(|| {
        StorageError::internal(format!("reservation event of {} has no order", e.order_id))
    })?;
    let (mut order, key) = crate::formats::OrderRecord::decode_keyed(json)?;
    if order.order_id != e.order_id || order.fulfillment_location_id != e.loc.get() {
        return Err(StorageError::internal(format!(
            "reservation event of {} carries order {} at location {}",
            e.order_id, order.order_id, order.fulfillment_location_id
        )));
    }
    order.status = OrderStatus::Confirmed;
    Ok(NewOrder {
        order,
        key,
        event: e,
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
            fulfillment: Default::default(),
            channel: None,
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

    /// What MySQL holds: a status, `+` when the order is handed over (`CONFIRMED+`).
    fn status(pairs: &[(&str, &str)]) -> HashMap<String, Held> {
        pairs
            .iter()
            .map(|(o, s)| {
                let (s, handed_over) = s.strip_suffix('+').map_or((*s, false), |s| (s, true));
                let status = OrderStatus::parse(s).unwrap();
                (
                    o.to_string(),
                    Held {
                        status,
                        handed_over,
                    },
                )
            })
            .collect()
    }

    fn acked(c: &Classified) -> BTreeSet<String> {
        c.ackable.iter().map(|(id, _)| id.clone()).collect()
    }

    fn classify<'a>(events: &'a [Event], status: &HashMap<String, Held>) -> Classified<'a> {
        super::classify(events, status, &HashSet::new()).unwrap()
    }

    #[test]
    fn a_new_reservation_becomes_a_confirmed_order() {
        let events = [reservation("4-a", "1-0")];
        let c = classify(&events, &status(&[]));
        assert_eq!(c.orders.len(), 1);
        assert_eq!(c.orders[0].order.status, OrderStatus::Confirmed);
        assert_eq!(c.orders[0].event.stream_id, "1-0");
        assert_eq!((c.cancels.len(), c.duplicates), (0, 0));
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
        );
        assert_eq!(c.orders.len(), 1);
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
        let c = classify(&events, &status(&[("4-a", "CONFIRMED")]));
        let cancelled: Vec<&str> = c.cancels.iter().map(|e| e.stream_id.as_str()).collect();
        assert_eq!(cancelled, ["1-0", "1-2"]);
        assert_eq!((c.orders.len(), c.duplicates), (1, 1));
        assert_eq!(acked(&c).len(), 4);
    }

    #[test]
    fn a_cancel_of_an_order_handed_over_is_late_applies_nothing_and_is_acknowledged() {
        let events = [
            cancel("4-a", "1-0"),
            reservation("4-b", "1-1"),
            cancel("4-b", "1-2"),
        ];
        let c = classify(&events, &status(&[("4-a", "CONFIRMED+")]));
        let late: Vec<&str> = c.late.iter().map(|e| e.order_id.as_str()).collect();
        assert_eq!(late, ["4-a"]);
        let cancelled: Vec<&str> = c.cancels.iter().map(|e| e.order_id.as_str()).collect();
        assert_eq!(cancelled, ["4-b"]);
        assert_eq!(c.duplicates, 0);
        assert_eq!(acked(&c).len(), 3);
    }

    #[test]
    fn a_cancel_before_its_reservation_waits_and_is_not_acknowledged() {
        let events = [cancel("4-a", "1-0")];
        let c = classify(&events, &status(&[]));
        assert!(c.cancels.is_empty() && c.ackable.is_empty());
        assert_eq!(c.duplicates, 0);
        // A rejected order took no stock: its cancel has nothing to give back.
        let c = classify(&events, &status(&[("4-a", "REJECTED")]));
        assert_eq!((acked(&c).len(), c.duplicates), (1, 1));
        // Its reservation comes later in the same batch (reclaimed out of order): still later.
        let events = [cancel("4-a", "1-0"), reservation("4-a", "1-1")];
        let c = classify(&events, &status(&[]));
        assert!(c.cancels.is_empty());
        assert_eq!(acked(&c), BTreeSet::from(["1-1".to_owned()]));
    }

    #[test]
    fn a_cancel_whose_reservation_will_never_come_is_acknowledged_without_effect() {
        let events = [cancel("4-a", "1-0")];
        let never = HashSet::from(["4-a".to_owned()]);
        let c = super::classify(&events, &status(&[]), &never).unwrap();
        assert!(c.cancels.is_empty() && c.orders.is_empty());
        assert_eq!(c.duplicates, 0);
        assert_eq!(acked(&c).len(), 1);
        // Only a cancel that would wait: one of a persisted order applies as ever.
        let c = super::classify(&events, &status(&[("4-a", "CONFIRMED")]), &never).unwrap();
        assert_eq!(c.cancels.len(), 1);
    }

    /// Poison events (the integration test `a_poison_event_is_dead_lettered_and_the_rest_flows`):
    /// an unknown kind is acknowledged without effect; a reservation that carries another order,
    /// or none, fails its batch, which is split until the event is dead-lettered alone.
    #[test]
    fn an_unknown_kind_is_acknowledged_without_effect() {
        let events = [Event {
            kind: EventKind::Other('Z'),
            ..cancel("4-a", "1-0")
        }];
        let c = classify(&events, &status(&[]));
        assert!(c.cancels.is_empty() && c.orders.is_empty());
        assert_eq!(c.duplicates, 0);
        assert_eq!(acked(&c).len(), 1);
    }

    #[test]
    fn a_reservation_that_carries_another_order_or_none_is_an_error() {
        let none = HashSet::new();
        let mut wrong = reservation("4-b", "1-0");
        wrong.order_id = "4-a".into();
        assert!(super::classify(&[wrong], &status(&[]), &none).is_err());
        let mut elsewhere = reservation("4-a", "1-0");
        elsewhere.loc = LocationId::new_unchecked(5);
        assert!(super::classify(&[elsewhere], &status(&[]), &none).is_err());
        let mut empty = reservation("4-a", "1-0");
        empty.json = None;
        assert!(super::classify(&[empty], &status(&[]), &none).is_err());
        let mut unreadable = reservation("4-a", "1-0");
        unreadable.json = Some("{not json".into());
        assert!(super::classify(&[unreadable], &status(&[]), &none).is_err());
        // Unless MySQL holds the order already: a duplicate is not read.
        let mut late = reservation("4-a", "1-0");
        late.json = None;
        let late = [late];
        let c = super::classify(&late, &status(&[("4-a", "CONFIRMED")]), &none).unwrap();
        assert_eq!(c.duplicates, 1);
    }

    #[test]
    fn the_idempotency_key_travels_with_its_order() {
        let mut keyed = reservation("4-a", "1-0");
        let order = crate::formats::OrderRecord::decode(keyed.json.as_deref().unwrap()).unwrap();
        let key = IdempotencyRequest {
            scope: "redis".into(),
            key: "k".into(),
            fingerprint: "f".into(),
        };
        keyed.json = Some(crate::formats::OrderRecord::encode_keyed(
            &order,
            Some(&key),
        ));
        let events = [keyed, reservation("4-b", "1-1")];
        let c = classify(&events, &status(&[]));
        assert_eq!(c.orders[0].key.as_ref().map(|k| k.key.as_str()), Some("k"));
        assert!(c.orders[1].key.is_none());
    }
}
