//! What a batch comes to in MySQL: which of its orders MySQL takes as sold, which it rejects,
//! which give way or wait for a later batch, which cancels give units back, and how each stock
//! row changes. Pure: it reads nothing but its arguments. [`super::apply`] reads what it asks
//! for, calls [`settle`], and writes what it answers; every order is named by its id.
//!
//! MySQL must cover the batch as a whole, not each prefix of the stream: the writes decided in
//! MySQL first (POS sales, DB-lock orders) are not in the stream, and MySQL already holds those
//! that came after some of the batch's events. Where it cannot, the orders their customers
//! cancelled in Redis alone give way first (they end `CANCELLED`), then the latest reservations
//! — each of those waits for a later batch instead while a cancel still in the stream could have
//! freed the units it needs.

use super::classify::NewOrder;
use super::Event;
use crate::formats::EventKind;
use crate::model::{Order, OrderStatus};
use crate::orders::applied::{Held, Standing};
use sf_routing::LocationId;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A stock row as MySQL keys it: (location, product).
pub(super) type Row = (u64, u64);

/// What a batch asks of MySQL, and what MySQL holds under the batch's row locks.
pub(super) struct Batch<'a> {
    /// The on-hand of every stock row the batch touches; a row MySQL lacks is absent.
    pub(super) available: &'a HashMap<Row, i64>,
    /// The new orders, in stream order.
    pub(super) orders: &'a [NewOrder<'a>],
    /// The cancels MySQL can apply, at most one per order.
    pub(super) cancels: &'a [&'a Event],
    /// Orders whose `Idempotency-Key` MySQL holds for another order: order id → that order.
    pub(super) key_held_by: &'a HashMap<String, String>,
}

/// A cancel still in a stream: its order, and the products it gives back.
pub(super) type PendingCancel = (String, Vec<u64>);

/// The cancels still in some locations' streams and not in the batch, and what MySQL holds of
/// their orders.
#[derive(Debug, Default, Clone)]
pub(super) struct StreamCancels {
    /// Per location read: each cancel's order and the products it gives back; `None` when the
    /// stream was too long to read (then every product counts as having one).
    pub(super) at: HashMap<LocationId, Option<Vec<PendingCancel>>>,
    /// What MySQL holds of those orders.
    pub(super) held: HashMap<String, Held>,
}

impl StreamCancels {
    /// Whether a cancel still in the stream gives units of `row` back to MySQL. Then a shortage
    /// there may only be the order of work: Redis counted that cancel's units before later
    /// orders (and MySQL-first sales, which MySQL already holds) took them, and MySQL has not
    /// seen it yet. Only a cancel MySQL can apply ([`Standing::Due`]: its order is sold) gives
    /// units back; one whose order is not persisted yet nets to nothing (and waits for it), so
    /// waiting on it could go in circles. A location not read has none.
    pub(super) fn restores(&self, (loc, product): Row) -> bool {
        match self.at.get(&LocationId::new_unchecked(loc)) {
            None => false,
            Some(None) => true,
            Some(Some(cancels)) => cancels.iter().any(|(order, products)| {
                products.contains(&product)
                    && Standing::of(EventKind::Cancel, self.held.get(order).copied())
                        == Standing::Due
            }),
        }
    }
}

/// What a batch comes to, by order id.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Settlement {
    /// Orders MySQL takes as sold: `CONFIRMED`, their units taken.
    pub(super) confirm: BTreeSet<String>,
    /// Orders MySQL cannot take as sold, with the reason: `REJECTED`, taking no stock.
    pub(super) reject: BTreeMap<String, String>,
    /// Orders that do not fit either and that their customers cancelled in Redis alone (a cancel
    /// whose own MySQL commit failed after its script ran): `CANCELLED`, taking no stock —
    /// nothing was sold, nothing comes back.
    pub(super) give_way: BTreeSet<String>,
    /// Orders that wait for a later batch: neither written nor acknowledged now.
    pub(super) defer: BTreeSet<String>,
    /// The orders whose cancels give their units back now.
    pub(super) restore: BTreeSet<String>,
    /// The change of each stock row that changes.
    pub(super) stock: BTreeMap<Row, i64>,
    /// Locations where Redis sold units that MySQL does not take (an order rejected or giving
    /// way there): their touched keys are set from MySQL before the commit.
    pub(super) resync: BTreeSet<LocationId>,
}

impl Settlement {
    /// `order` as it is written: its status (and reason) as settled. `None` for an order that
    /// waits.
    pub(super) fn ends(&self, mut order: Order) -> Option<Order> {
        if self.defer.contains(&order.order_id) {
            return None;
        }
        if let Some(reason) = self.reject.get(&order.order_id) {
            order.status = OrderStatus::Rejected;
            order.reason = Some(reason.clone());
        } else if self.give_way.contains(&order.order_id) {
            order.status = OrderStatus::Cancelled;
        }
        Some(order)
    }
}

impl Batch<'_> {
    /// The orders whose Redis records [`settle`] must be told of (whether their customers
    /// cancelled them in Redis alone): none while the batch fits; every order when it does not
    /// (any may give way); else those refused at once (a key another order holds, a row MySQL
    /// lacks), which end `CANCELLED` instead if cancelled.
    pub(super) fn asks_states(&self) -> Vec<&NewOrder<'_>> {
        let draft = Draft::net(self);
        let short = draft.short();
        self.orders
            .iter()
            .filter(|n| short || draft.refused.contains_key(n.id()))
            .collect()
    }

    /// The rows still short once the orders cancelled in Redis alone gave way: those where
    /// [`settle`] asks [`StreamCancels::restores`].
    pub(super) fn short_rows(&self, cancelled_in_redis: &HashSet<String>) -> BTreeSet<Row> {
        let mut draft = Draft::net(self);
        draft.give_way(cancelled_in_redis);
        draft.short_rows()
    }
}

/// Settles `batch`: `cancelled_in_redis` names the orders (of [`Batch::asks_states`]) whose
/// Redis records say their customers cancelled them; `pending` holds the cancels still in the
/// streams of [`Batch::short_rows`]' locations.
pub(super) fn settle(
    batch: &Batch,
    cancelled_in_redis: &HashSet<String>,
    pending: &StreamCancels,
) -> Settlement {
    let mut draft = Draft::net(batch);
    draft.give_way(cancelled_in_redis);
    draft.make_room(pending);
    draft.finish(cancelled_in_redis)
}

impl NewOrder<'_> {
    fn id(&self) -> &str {
        &self.order.order_id
    }
}

/// Why an order takes no stock.
#[derive(Debug)]
enum Refusal<'a> {
    /// Its `Idempotency-Key` stands for this other order.
    KeyHeld(&'a str),
    /// MySQL has no stock row of this product at the location.
    NoRow(Row),
    /// Its customer cancelled it in Redis alone, and it gave way.
    Cancelled,
    /// The row was this many units short.
    Short(Row, i64),
}

impl Refusal<'_> {
    fn reason(&self) -> String {
        match self {
            Self::KeyHeld(holder) => format!(
                "the same Idempotency-Key stands for order {holder}: Redis lost the key while that order was on its way to MySQL, and this retry was accepted as a second order; it was not persisted as sold"
            ),
            Self::NoRow((loc, product)) => {
                format!("location {loc} carries no stock of product {product}")
            }
            Self::Cancelled => "cancelled before it was persisted".to_owned(),
            Self::Short((loc, product), missing) => format!(
                "MySQL did not have the units: product {product} at location {loc} was {missing} short when the order was persisted (Redis had sold units that MySQL did not have)"
            ),
        }
    }
}

/// A batch being settled: the rows as its orders and cancels leave them so far.
struct Draft<'a> {
    batch: &'a Batch<'a>,
    available: HashMap<Row, i64>,
    refused: HashMap<&'a str, Refusal<'a>>,
    defer: BTreeSet<&'a str>,
    /// Orders whose cancel is in the batch: they take nothing net, so they are kept.
    cancelled_here: HashSet<&'a str>,
}

impl<'a> Draft<'a> {
    /// Every order takes its units and every cancel gives its units back — except an order whose
    /// key another order holds, or that asks for a row MySQL lacks: it takes nothing, and its
    /// cancel gives nothing back.
    fn net(batch: &'a Batch<'a>) -> Self {
        let mut draft = Self {
            batch,
            available: batch.available.clone(),
            refused: HashMap::new(),
            defer: BTreeSet::new(),
            cancelled_here: batch.cancels.iter().map(|e| e.order_id.as_str()).collect(),
        };
        for n in batch.orders {
            let order = &n.order;
            if let Some(holder) = batch.key_held_by.get(&order.order_id) {
                draft.refused.insert(n.id(), Refusal::KeyHeld(holder));
                continue;
            }
            let loc = order.fulfillment_location_id;
            if let Some(it) = order
                .items
                .iter()
                .find(|it| !batch.available.contains_key(&(loc, it.product_id)))
            {
                draft
                    .refused
                    .insert(n.id(), Refusal::NoRow((loc, it.product_id)));
                continue;
            }
            draft.moves(order, -1);
        }
        for e in batch.cancels {
            if draft.refused.contains_key(e.order_id.as_str()) {
                continue;
            }
            for (p, q) in &e.lines {
                if let Some(v) = draft.available.get_mut(&(e.loc.get(), p.get())) {
                    *v += i64::from(*q);
                }
            }
        }
        draft
    }

    /// Moves the units of `order` (whose rows all exist): `-1` takes them, `1` gives them back.
    fn moves(&mut self, order: &Order, sign: i64) {
        let loc = order.fulfillment_location_id;
        for it in &order.items {
            *self
                .available
                .get_mut(&(loc, it.product_id))
                .expect("a row of the batch") += sign * i64::from(it.quantity);
        }
    }

    fn short(&self) -> bool {
        self.available.values().any(|v| *v < 0)
    }

    fn short_rows(&self) -> BTreeSet<Row> {
        self.available
            .iter()
            .filter(|(_, v)| **v < 0)
            .map(|(r, _)| *r)
            .collect()
    }

    /// The first row of `order` that is short, if any.
    fn short_row_of(&self, order: &Order) -> Option<Row> {
        let loc = order.fulfillment_location_id;
        order
            .items
            .iter()
            .map(|it| (loc, it.product_id))
            .find(|row| self.available[row] < 0)
    }

    /// Whether `n` still stands as it was netted: taking its units, none of its cancel.
    fn standing(&self, n: &NewOrder) -> bool {
        !self.refused.contains_key(n.id()) && !self.cancelled_here.contains(n.id())
    }

    /// While a row is short: the orders cancelled in Redis alone that take units of a short row
    /// give way, latest first.
    fn give_way(&mut self, cancelled_in_redis: &HashSet<String>) {
        let orders = self.batch.orders;
        for n in orders.iter().rev() {
            if !self.short() {
                break;
            }
            if !cancelled_in_redis.contains(n.id())
                || !self.standing(n)
                || self.short_row_of(&n.order).is_none()
            {
                continue;
            }
            self.refused.insert(n.id(), Refusal::Cancelled);
            self.moves(&n.order, 1);
        }
    }

    /// While a row is short: the latest orders that take units of a short row wait for a later
    /// batch, while a cancel still in the stream restores units of their first short row, or
    /// else are refused.
    fn make_room(&mut self, pending: &StreamCancels) {
        let orders = self.batch.orders;
        for n in orders.iter().rev() {
            if !self.short() {
                break;
            }
            if !self.standing(n) {
                continue;
            }
            let Some(row) = self.short_row_of(&n.order) else {
                continue;
            };
            if pending.restores(row) {
                self.defer.insert(n.id());
            } else {
                self.refused
                    .insert(n.id(), Refusal::Short(row, -self.available[&row]));
            }
            self.moves(&n.order, 1);
        }
    }

    fn finish(self, cancelled_in_redis: &HashSet<String>) -> Settlement {
        let mut out = Settlement::default();
        for n in self.batch.orders {
            let id = n.id().to_owned();
            if self.defer.contains(n.id()) {
                out.defer.insert(id);
                continue;
            }
            let Some(refusal) = self.refused.get(n.id()) else {
                out.confirm.insert(id);
                continue;
            };
            if cancelled_in_redis.contains(&id) {
                out.give_way.insert(id);
            } else {
                out.reject.insert(id, refusal.reason());
            }
            out.resync.insert(n.event.loc);
        }
        out.restore = self
            .batch
            .cancels
            .iter()
            .map(|e| e.order_id.as_str())
            .filter(|o| !self.refused.contains_key(o) && !self.defer.contains(o))
            .map(str::to_owned)
            .collect();
        out.stock = self
            .available
            .iter()
            .map(|(row, v)| (*row, v - self.batch.available[row]))
            .filter(|(_, d)| *d != 0)
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderItem, OrderPath};
    use sf_routing::ProductId;

    const L: u64 = 4;
    const LOC: LocationId = LocationId::new_unchecked(L);

    fn event(kind: EventKind, id: &str, lines: &[(u64, u32)]) -> Event {
        Event {
            loc: LOC,
            stream_id: format!("1-{id}"),
            kind,
            order_id: id.into(),
            lines: lines
                .iter()
                .map(|(p, q)| (ProductId::new_unchecked(*p), *q))
                .collect(),
            json: None,
            unreadable: None,
        }
    }

    fn order(id: &str, lines: &[(u64, u32)]) -> Order {
        Order {
            order_id: id.into(),
            status: OrderStatus::Confirmed,
            path: OrderPath::Redis,
            delivery_type: sf_routing::DeliveryType::Normal,
            fulfillment_location_id: L,
            distance_km: None,
            delivery_address: None,
            items: lines
                .iter()
                .map(|(p, q)| OrderItem {
                    product_id: *p,
                    quantity: *q,
                    unit_price: 100,
                })
                .collect(),
            total_amount: 0,
            accepted_at_ms: 0,
            reason: None,
            fulfillment: Default::default(),
            channel: None,
        }
    }

    /// A batch at location 4 and what is known around it.
    #[derive(Default, Clone)]
    struct Case {
        available: HashMap<Row, i64>,
        reservations: Vec<(Event, Order)>,
        cancels: Vec<Event>,
        key_held_by: HashMap<String, String>,
        cancelled_in_redis: HashSet<String>,
        pending: StreamCancels,
    }

    impl Case {
        /// MySQL's on-hand of each product at location 4.
        fn stock(rows: &[(u64, i64)]) -> Self {
            Self {
                available: rows.iter().map(|(p, v)| ((L, *p), *v)).collect(),
                ..Self::default()
            }
        }

        fn order(mut self, id: &str, lines: &[(u64, u32)]) -> Self {
            let e = event(EventKind::Reservation, id, lines);
            self.reservations.push((e, order(id, lines)));
            self
        }

        fn cancel(mut self, id: &str, lines: &[(u64, u32)]) -> Self {
            self.cancels.push(event(EventKind::Cancel, id, lines));
            self
        }

        fn key_held(mut self, id: &str, holder: &str) -> Self {
            self.key_held_by.insert(id.into(), holder.into());
            self
        }

        /// Its customer cancelled it in Redis alone (the cancel's MySQL commit failed).
        fn cancelled_in_redis(mut self, id: &str) -> Self {
            self.cancelled_in_redis.insert(id.into());
            self
        }

        /// A cancel still in the stream, not in the batch, of an order MySQL holds as `held`.
        fn pending(mut self, id: &str, products: &[u64], held: Option<OrderStatus>) -> Self {
            self.pending
                .at
                .entry(LOC)
                .or_insert_with(|| Some(Vec::new()))
                .as_mut()
                .expect("a stream read")
                .push((id.into(), products.to_vec()));
            if let Some(held) = held {
                self.pending.held.insert(
                    id.into(),
                    Held::new(held, crate::model::FulfillmentStatus::Unfulfilled),
                );
            }
            self
        }

        /// MySQL holds `id`, of a pending cancel, as handed over.
        fn handed_over(mut self, id: &str) -> Self {
            self.pending
                .held
                .get_mut(id)
                .expect("a pending cancel's order")
                .handed_over = true;
            self
        }

        fn stream_too_long(mut self) -> Self {
            self.pending.at.insert(LOC, None);
            self
        }

        /// Settles the batch; and checks that it settles the same on no more than the caller
        /// reads: the states [`Batch::asks_states`] asks for, the streams of
        /// [`Batch::short_rows`]' locations.
        fn settle(&self) -> Settlement {
            let orders: Vec<NewOrder> = self
                .reservations
                .iter()
                .map(|(e, o)| NewOrder {
                    order: o.clone(),
                    key: None,
                    event: e,
                })
                .collect();
            let cancels: Vec<&Event> = self.cancels.iter().collect();
            let batch = Batch {
                available: &self.available,
                orders: &orders,
                cancels: &cancels,
                key_held_by: &self.key_held_by,
            };
            let full = settle(&batch, &self.cancelled_in_redis, &self.pending);
            let asked: HashSet<String> = batch
                .asks_states()
                .iter()
                .map(|n| n.id().to_owned())
                .filter(|id| self.cancelled_in_redis.contains(id))
                .collect();
            let locations: HashSet<u64> = batch.short_rows(&asked).iter().map(|r| r.0).collect();
            let read = StreamCancels {
                at: self
                    .pending
                    .at
                    .iter()
                    .filter(|(l, _)| locations.contains(&l.get()))
                    .map(|(l, c)| (*l, c.clone()))
                    .collect(),
                held: self.pending.held.clone(),
            };
            assert_eq!(
                settle(&batch, &asked, &read),
                full,
                "settled on more than the caller reads"
            );
            full
        }
    }

    fn ids(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("4-{i:03}")).collect()
    }

    fn short_by(product: u64, missing: i64) -> String {
        format!(
            "MySQL did not have the units: product {product} at location 4 was {missing} short when the order was persisted (Redis had sold units that MySQL did not have)"
        )
    }

    #[test]
    fn a_batch_that_fits_is_confirmed_whole_and_asks_nothing_more() {
        let case = Case::stock(&[(1, 10), (2, 1)])
            .order("4-a", &[(1, 2)])
            .order("4-b", &[(1, 3), (2, 1)]);
        let s = case.settle();
        assert_eq!(s.confirm, ids(&["4-a", "4-b"]));
        assert_eq!(s.stock, BTreeMap::from([((L, 1), -5), ((L, 2), -1)]));
        assert!(s.reject.is_empty() && s.give_way.is_empty() && s.defer.is_empty());
        assert!(s.resync.is_empty());
        let orders: Vec<NewOrder> = case
            .reservations
            .iter()
            .map(|(e, o)| NewOrder {
                order: o.clone(),
                key: None,
                event: e,
            })
            .collect();
        let batch = Batch {
            available: &case.available,
            orders: &orders,
            cancels: &[],
            key_held_by: &case.key_held_by,
        };
        assert!(batch.asks_states().is_empty());
        assert!(batch.short_rows(&HashSet::new()).is_empty());
    }

    /// Not each prefix of the stream: a cancel later in the batch covers an order before it.
    #[test]
    fn mysql_covers_the_batch_as_a_whole() {
        let s = Case::stock(&[(1, 0)])
            .order("4-a", &[(1, 1)])
            .cancel("4-z", &[(1, 1)])
            .settle();
        assert_eq!(s.confirm, ids(&["4-a"]));
        assert_eq!(s.restore, ids(&["4-z"]));
        assert!(s.stock.is_empty(), "nets to zero: {:?}", s.stock);
    }

    /// Drift (`orders_mysql_cannot_take_are_rejected_listed_and_retried`): Redis sold 14 units
    /// where MySQL has 10. The earliest 10 are confirmed, the latest 4 rejected, each saying how
    /// short its row was when its turn came, and Redis is set from MySQL there.
    #[test]
    fn drift_rejects_the_latest_orders_and_says_how_short_they_were() {
        let names = names(14);
        let case = names
            .iter()
            .fold(Case::stock(&[(1, 10)]), |c, id| c.order(id, &[(1, 1)]));
        let s = case.settle();
        assert_eq!(s.confirm, names[..10].iter().cloned().collect());
        let reject: BTreeMap<String, String> = names[10..]
            .iter()
            .zip([1, 2, 3, 4])
            .map(|(id, missing)| (id.clone(), short_by(1, missing)))
            .collect();
        assert_eq!(s.reject, reject);
        assert_eq!(s.stock, BTreeMap::from([((L, 1), -10)]));
        assert_eq!(s.resync, BTreeSet::from([LOC]));
    }

    /// `a_rejection_is_shown_only_once_it_is_committed`: an order MySQL no longer has the unit
    /// for is rejected; decided again once the unit is back, it is confirmed.
    #[test]
    fn an_order_that_no_longer_fits_is_rejected_until_its_units_are_back() {
        let s = Case::stock(&[(1, 0)]).order("4-a", &[(1, 1)]).settle();
        assert_eq!(
            s.reject,
            BTreeMap::from([("4-a".to_owned(), short_by(1, 1))])
        );
        assert!(s.confirm.is_empty() && s.stock.is_empty());
        let s = Case::stock(&[(1, 1)]).order("4-a", &[(1, 1)]).settle();
        assert_eq!(s.confirm, ids(&["4-a"]));
        assert!(s.resync.is_empty());
    }

    /// `a_batch_with_many_short_orders_reads_its_stream_once`: 150 orders, 50 units; one short
    /// row, so one stream to read.
    #[test]
    fn many_short_orders_ask_about_one_row() {
        let names = names(150);
        let case = names
            .iter()
            .fold(Case::stock(&[(1, 50)]), |c, id| c.order(id, &[(1, 1)]));
        let s = case.settle();
        assert_eq!((s.confirm.len(), s.reject.len()), (50, 100));
        assert!(s.confirm.contains(&names[49]) && !s.confirm.contains(&names[50]));
        assert_eq!(s.stock, BTreeMap::from([((L, 1), -50)]));
    }

    /// `a_pos_sale_using_a_unit_a_pending_cancel_freed_rejects_nothing`: 2 units; b persisted,
    /// then a reserved, b cancelled in Redis and a POS sale took the unit b's cancel freed.
    /// MySQL has 0 left for a, while b's cancel is still in the stream: a waits for it.
    #[test]
    fn a_pos_sale_using_a_unit_a_pending_cancel_freed_defers_the_order() {
        let case = Case::stock(&[(1, 0)]).order("4-a", &[(1, 1)]);
        let s = case
            .clone()
            .pending("4-b", &[1], Some(OrderStatus::Confirmed))
            .settle();
        assert_eq!(s.defer, ids(&["4-a"]));
        assert!(s.confirm.is_empty() && s.reject.is_empty() && s.stock.is_empty());
        assert!(s.resync.is_empty());
        // A stream too long to read counts as holding such a cancel.
        let s = case.stream_too_long().settle();
        assert_eq!(s.defer, ids(&["4-a"]));
    }

    /// Only a cancel MySQL can apply frees units: not one whose order it does not hold yet (it
    /// waits for its reservation, and waiting on it could go in circles), nor one it applied,
    /// nor one of an order handed over (it is late: MySQL never applies it), nor one of another
    /// product.
    #[test]
    fn only_a_pending_cancel_of_a_sold_order_of_the_product_defers() {
        let base = || Case::stock(&[(1, 0), (2, 5)]).order("4-a", &[(1, 1)]);
        for case in [
            base().pending("4-b", &[1], None),
            base().pending("4-b", &[1], Some(OrderStatus::Cancelled)),
            base().pending("4-b", &[1], Some(OrderStatus::Rejected)),
            base()
                .pending("4-b", &[1], Some(OrderStatus::Confirmed))
                .handed_over("4-b"),
            base().pending("4-b", &[2], Some(OrderStatus::Confirmed)),
        ] {
            let s = case.settle();
            assert_eq!(s.reject.keys().collect::<Vec<_>>(), ["4-a"]);
            assert!(s.defer.is_empty());
        }
    }

    /// `a_cancelled_order_gives_way_before_a_standing_one_is_rejected`: 2 units, x and y reserved
    /// one each, x cancelled in Redis alone, and a POS sale took the unit x's cancel freed. x
    /// gives way (it ends CANCELLED, taking nothing), y stands.
    #[test]
    fn a_cancelled_order_gives_way_before_a_standing_one_is_rejected() {
        let case = Case::stock(&[(1, 1)])
            .order("4-x", &[(1, 1)])
            .order("4-y", &[(1, 1)]);
        let s = case.clone().cancelled_in_redis("4-x").settle();
        assert_eq!(s.give_way, ids(&["4-x"]));
        assert_eq!(s.confirm, ids(&["4-y"]));
        assert!(s.reject.is_empty());
        assert_eq!(s.stock, BTreeMap::from([((L, 1), -1)]));
        assert_eq!(s.resync, BTreeSet::from([LOC]));
        // Without that cancel the latest order is the one refused.
        let s = case.settle();
        assert_eq!(s.confirm, ids(&["4-x"]));
        assert_eq!(s.reject.keys().collect::<Vec<_>>(), ["4-y"]);
    }

    /// An order cancelled in Redis alone that takes nothing of a short row stands (its cancel,
    /// still in the stream, closes it later); so does one cancelled in the same batch, which
    /// takes nothing net.
    #[test]
    fn only_orders_on_a_short_row_give_way_and_one_cancelled_here_is_kept() {
        let s = Case::stock(&[(1, 1), (2, 5)])
            .order("4-x", &[(2, 1)])
            .order("4-y", &[(1, 1)])
            .order("4-z", &[(1, 1)])
            .cancelled_in_redis("4-x")
            .settle();
        assert_eq!(s.confirm, ids(&["4-x", "4-y"]));
        assert_eq!(s.reject.keys().collect::<Vec<_>>(), ["4-z"]);

        let s = Case::stock(&[(1, 0)])
            .order("4-a", &[(1, 1)])
            .order("4-b", &[(1, 1)])
            .cancel("4-a", &[(1, 1)])
            .settle();
        assert_eq!(s.confirm, ids(&["4-a"]));
        assert_eq!(s.restore, ids(&["4-a"]));
        assert_eq!(s.reject.keys().collect::<Vec<_>>(), ["4-b"]);
        assert!(s.stock.is_empty());
    }

    /// `mysql_keeps_one_order_per_key_when_redis_lost_the_claim`: an order whose key MySQL holds
    /// for another order is rejected naming that order, and takes nothing, although it fits.
    /// Only its own record is asked about.
    #[test]
    fn an_order_whose_key_stands_for_another_is_rejected_naming_it() {
        let case = Case::stock(&[(1, 10)])
            .order("4-a", &[(1, 2)])
            .order("4-b", &[(1, 2)])
            .key_held("4-b", "4-first");
        let s = case.settle();
        assert_eq!(s.confirm, ids(&["4-a"]));
        let reason = &s.reject["4-b"];
        assert!(
            reason.contains("4-first") && reason.contains("Idempotency-Key"),
            "{reason}"
        );
        assert_eq!(s.stock, BTreeMap::from([((L, 1), -2)]));
        assert_eq!(s.resync, BTreeSet::from([LOC]));
        // Cancelled in Redis meanwhile, it ends CANCELLED instead.
        let s = case.cancelled_in_redis("4-b").settle();
        assert_eq!(s.give_way, ids(&["4-b"]));
        assert!(s.reject.is_empty());
    }

    /// A product the location carries no stock row of: the order is rejected whole, and its
    /// cancel in the same batch gives nothing back.
    #[test]
    fn an_order_for_a_product_the_location_does_not_carry_is_rejected() {
        let s = Case::stock(&[(1, 5)])
            .order("4-a", &[(1, 1), (9, 1)])
            .cancel("4-a", &[(1, 1), (9, 1)])
            .settle();
        assert_eq!(
            s.reject,
            BTreeMap::from([(
                "4-a".to_owned(),
                "location 4 carries no stock of product 9".to_owned()
            )])
        );
        assert!(s.restore.is_empty() && s.stock.is_empty());
    }

    /// An order is all or nothing: refused on one short line, it gives back all its lines.
    #[test]
    fn a_refused_order_gives_back_every_line() {
        let s = Case::stock(&[(1, 1), (2, 5)])
            .order("4-a", &[(1, 1), (2, 2)])
            .order("4-b", &[(1, 1), (2, 3)])
            .settle();
        assert_eq!(s.confirm, ids(&["4-a"]));
        assert_eq!(s.reject.keys().collect::<Vec<_>>(), ["4-b"]);
        assert_eq!(s.stock, BTreeMap::from([((L, 1), -1), ((L, 2), -2)]));
    }

    #[test]
    fn an_order_ends_as_settled() {
        let s = Settlement {
            confirm: ids(&["4-a"]),
            reject: BTreeMap::from([("4-b".to_owned(), "why".to_owned())]),
            give_way: ids(&["4-c"]),
            defer: ids(&["4-d"]),
            ..Settlement::default()
        };
        let end = |id: &str| s.ends(order(id, &[(1, 1)])).map(|o| (o.status, o.reason));
        assert_eq!(end("4-a"), Some((OrderStatus::Confirmed, None)));
        assert_eq!(
            end("4-b"),
            Some((OrderStatus::Rejected, Some("why".to_owned())))
        );
        assert_eq!(end("4-c"), Some((OrderStatus::Cancelled, None)));
        assert_eq!(end("4-d"), None);
    }
}
