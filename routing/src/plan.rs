//! From a delivery request to ranked candidates, and from candidates plus a stock view to the
//! locations that can fill the whole order.

use crate::domain::{Coordinates, LocationId, LocationKind, OrderLines, ProductId};
use crate::index::{distance_km, Candidate, LocationIndex};

/// Where the customer wants the order, already validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Destination {
    /// `NORMAL`: shipped from a warehouse to this address.
    Normal { address: Coordinates },
    /// `SAME_DAY`: delivered today by a store within `radius_km` of this address.
    SameDay {
        address: Coordinates,
        radius_km: f64,
    },
    /// `PICKUP`: collected at this store; the address, if given, only fills in the distance.
    Pickup {
        store: LocationId,
        address: Option<Coordinates>,
    },
    /// `IN_STORE`: a POS sale at this store.
    InStore { store: LocationId },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoutingError {
    #[error("location {0} is not an active store")]
    UnknownStore(LocationId),
}

/// The locations that may serve `destination`, nearest first, before looking at stock.
pub fn candidates(
    index: &LocationIndex,
    destination: &Destination,
) -> Result<Vec<Candidate>, RoutingError> {
    match *destination {
        Destination::Normal { address } => Ok(index.nearest(LocationKind::Warehouse, address)),
        Destination::SameDay { address, radius_km } => {
            Ok(index.within(LocationKind::Store, address, radius_km))
        }
        Destination::Pickup { store, address } => {
            let site = index
                .get(store)
                .filter(|s| s.kind == LocationKind::Store)
                .ok_or(RoutingError::UnknownStore(store))?;
            Ok(vec![Candidate {
                location: store,
                distance_km: address.map(|a| distance_km(a, site.coordinates)),
            }])
        }
        Destination::InStore { store } => {
            index
                .get(store)
                .filter(|s| s.kind == LocationKind::Store)
                .ok_or(RoutingError::UnknownStore(store))?;
            Ok(vec![Candidate {
                location: store,
                distance_km: None,
            }])
        }
    }
}

/// The candidates that can fill every line, in the order given. `available` answers the sellable
/// quantity of a product at a location (`None` when unknown, which never counts as enough).
pub fn eligible(
    candidates: &[Candidate],
    lines: &OrderLines,
    available: impl Fn(LocationId, ProductId) -> Option<i64>,
) -> Vec<Candidate> {
    candidates
        .iter()
        .filter(|c| {
            lines.iter().all(|(p, q)| {
                available(c.location, p).is_some_and(|have| have >= i64::from(q.get()))
            })
        })
        .copied()
        .collect()
}
