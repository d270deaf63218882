//! Building an order from a decision, for both paths: the lines with the server's prices, the
//! destination, and the location that fulfils it.

use crate::model::{Address, Order, OrderItem, OrderPath, OrderStatus};
use sf_routing::{Candidate, Destination, LocationIndex, OrderLines};

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// When a pickup decided at `now` will be ready at its store ([`sf_routing::ready_by`]), as the
/// order promises it ([`sf_routing::rfc3339`]); `None` for every other destination.
pub(crate) fn ready_by(
    index: &LocationIndex,
    destination: &Destination,
    now: jiff::Timestamp,
) -> Option<String> {
    let Destination::Pickup { store, .. } = *destination else {
        return None;
    };
    sf_routing::ready_by(index, store, now)
        .ok()
        .flatten()
        .map(|at| sf_routing::rfc3339(&at))
}

#[allow(clippy::too_many_arguments)] // the order's parts, each its own type
pub(crate) fn build_order(
    order_id: String,
    status: OrderStatus,
    path: OrderPath,
    destination: &Destination,
    candidate: Candidate,
    lines: &OrderLines,
    prices: &[i64],
    channel: Option<u64>,
) -> Order {
    let (delivery_type, address) = match *destination {
        Destination::Normal { address } => (sf_routing::DeliveryType::Normal, Some(address)),
        Destination::SameDay { address, .. } => (sf_routing::DeliveryType::SameDay, Some(address)),
        Destination::Pickup { address, .. } => (sf_routing::DeliveryType::Pickup, address),
        Destination::InStore { .. } => (sf_routing::DeliveryType::InStore, None),
    };
    let items: Vec<OrderItem> = lines
        .iter()
        .zip(prices)
        .map(|((p, q), price)| OrderItem {
            product_id: p.get(),
            quantity: q.get(),
            unit_price: *price,
        })
        .collect();
    let total_amount = items
        .iter()
        .map(|i| i64::from(i.quantity) * i.unit_price)
        .sum();
    Order {
        order_id,
        status,
        path,
        delivery_type,
        fulfillment_location_id: candidate.location.get(),
        distance_km: candidate.distance_km.map(sf_routing::index::to_the_metre),
        delivery_address: address.map(|a| Address {
            latitude: a.latitude(),
            longitude: a.longitude(),
        }),
        items,
        total_amount,
        accepted_at_ms: now_ms(),
        reason: None,
        fulfillment: match path {
            // A till sale is handed over at once.
            OrderPath::Pos => crate::model::Fulfillment {
                status: crate::model::FulfillmentStatus::Collected,
                handed_over_at_ms: Some(now_ms()),
                ..Default::default()
            },
            _ => crate::model::Fulfillment::new(delivery_type),
        },
        channel,
    }
}
