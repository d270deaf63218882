//! Events out: what happened to orders, holds and stock, for the shop and the operators.
//!
//! Every event is written to the `events` table (an outbox) in the transaction of the change
//! that causes it, so there is no event without its change and no change without its event:
//! orders as they are inserted ([`crate::orders::ledger::insert_order_rows`], which every writer
//! of an order goes through) and as their status or fulfilment changes, holds as the expiry ends
//! them, stock crossings by a trigger on the `stock` table (whichever writer changes a row).
//! After it has committed, an event gets its place in the feed, its `seq`, in commit order
//! ([`Events::sequence`]): the pull feed's cursor, and the order in which webhook deliveries are
//! made ([`webhooks`], [`deliveries`]).

pub mod deliveries;
mod feed;
pub mod lease;
mod outbox;
pub mod webhooks;

pub use feed::{FeedEvent, FeedPage, FeedReader, UNPLACED};
pub(crate) use outbox::{order_changed, orders_placed, record, NewEvent};
pub use outbox::{set_bodies, Bodies};

use serde::Serialize;

/// The kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventType {
    /// A Redis-path order was accepted (it is written to MySQL with its outcome, so this comes
    /// with `order.confirmed` or `order.rejected`).
    OrderAccepted,
    OrderConfirmed,
    /// An accepted order could not be persisted as sold; `data.reason` says why.
    OrderRejected,
    /// `data.cancelReason`: `NOT_COLLECTED` when the pickup expiry cancelled it.
    OrderCancelled,
    /// Redis lost its data before some accepted orders reached MySQL; `data` names the locations
    /// and the window (the orders themselves are unknown: they are the ones accepted there then
    /// that got no `order.confirmed` or `order.rejected`).
    OrderLost,
    /// A fulfilment step: ready for pickup, collected, dispatched, shipped.
    OrderFulfillmentChanged,
    HoldExpired,
    StockLow,
    StockOut,
    StockBack,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        Self::OrderAccepted,
        Self::OrderConfirmed,
        Self::OrderRejected,
        Self::OrderCancelled,
        Self::OrderLost,
        Self::OrderFulfillmentChanged,
        Self::HoldExpired,
        Self::StockLow,
        Self::StockOut,
        Self::StockBack,
    ];

    /// Its name on the wire (`type`), also written by the stock trigger (migration 0012).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderAccepted => "order.accepted",
            Self::OrderConfirmed => "order.confirmed",
            Self::OrderRejected => "order.rejected",
            Self::OrderCancelled => "order.cancelled",
            Self::OrderLost => "order.lost",
            Self::OrderFulfillmentChanged => "order.fulfillment_changed",
            Self::HoldExpired => "hold.expired",
            Self::StockLow => "stock.low",
            Self::StockOut => "stock.out",
            Self::StockBack => "stock.back",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

crate::handle!(
    /// The outbox seen from outside: sequencing and the pull feed.
    Events
);

impl crate::Storage {
    /// Events out: the feed, sequencing, webhook endpoints and their deliveries.
    pub fn events(&self) -> Events<'_> {
        Events(self)
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    /// Every statement that changes an order's status or fulfilment is in a function that writes
    /// its event: a file with such a statement calls `order_changed` as often as it has them.
    #[test]
    fn every_change_of_an_order_writes_its_event() {
        fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    files(&path, out);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    out.push(path);
                }
            }
        }
        let mut all = Vec::new();
        files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut all,
        );
        let mut changes_seen = 0;
        for path in all {
            let text = std::fs::read_to_string(&path).unwrap();
            let changes = text.matches("UPDATE orders SET status").count()
                + text.matches("UPDATE orders SET fulfillment").count();
            let events =
                text.matches("order_changed(").count() - text.matches("fn order_changed(").count();
            changes_seen += changes;
            assert!(
                events >= changes.min(1) && (changes == 0 || events > 0),
                "{}: {changes} changes of orders, {events} order_changed calls",
                path.display()
            );
        }
        assert!(changes_seen >= 6, "the scan found {changes_seen} changes");
    }

    #[test]
    fn every_type_reads_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("order.unknown"), None);
    }
}
