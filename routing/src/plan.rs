//! From a delivery request to ranked candidates, and from candidates plus a stock view to the
//! locations that can fill the whole order.
//!
//! Time enters through `now`, passed in by the caller: [`candidates_at`] keeps, for `SAME_DAY`,
//! only the stores in their same-day window; [`same_day`] also returns the stores outside it, and
//! [`same_day_closed`] turns those into the facts of a "same-day is closed" answer. [`ready_by`]
//! says when a pickup will be ready. `NORMAL`, `PICKUP` and `IN_STORE` rank as without a clock.

use crate::domain::{Coordinates, LocationId, LocationKind, OrderLines, ProductId};
use crate::index::{distance_km, sort, Candidate, LocationIndex};
use jiff::{Timestamp, Zoned};

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

/// Like [`candidates`], at `now`: a `SAME_DAY` destination keeps only the stores in their
/// same-day window ([`crate::Calendar::is_same_day_open`]); stores without a calendar are always
/// in it. Every other destination ranks exactly as [`candidates`] does.
pub fn candidates_at(
    index: &LocationIndex,
    destination: &Destination,
    now: Timestamp,
) -> Result<Vec<Candidate>, RoutingError> {
    match *destination {
        Destination::SameDay { address, radius_km } => {
            Ok(same_day(index, address, radius_km, now).in_window)
        }
        _ => candidates(index, destination),
    }
}

/// The stores within a same-day radius at one instant, split by their same-day window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SameDayRanking {
    /// In their window now, nearest first: the candidates for the order.
    pub in_window: Vec<Candidate>,
    /// Within the radius but outside their window now, nearest first. When none of
    /// `in_window` can fill the order, those of these that can (see [`eligible`]) go to
    /// [`same_day_closed`].
    pub outside_window: Vec<Candidate>,
}

/// Stores within `radius_km` of `address`, split by whether they are in their same-day window at
/// `now`. Both lists are ordered as [`LocationIndex::within`] orders them; `in_window` equals
/// `within(..)` for an index whose sites have no calendars.
pub fn same_day(
    index: &LocationIndex,
    address: Coordinates,
    radius_km: f64,
    now: Timestamp,
) -> SameDayRanking {
    let mut ranking = SameDayRanking::default();
    for (site, candidate) in index.sites_within(LocationKind::Store, address, radius_km) {
        let open = site
            .calendar
            .as_deref()
            .is_none_or(|c| c.is_same_day_open(now));
        if open {
            ranking.in_window.push(candidate);
        } else {
            ranking.outside_window.push(candidate);
        }
    }
    sort(&mut ranking.in_window);
    sort(&mut ranking.outside_window);
    ranking
}

/// The facts of a "same-day is closed" answer (HTTP 409 `/problems/same-day-closed`).
#[derive(Debug, Clone, PartialEq)]
pub struct SameDayClosed {
    /// The earliest instant one of the stores opens its same-day window again, in that store's
    /// zone; `None` when none does within [`crate::calendar::SEARCH_DAYS`].
    pub next_same_day_at: Option<Zoned>,
    /// The stores, in the order given, with when a pickup ordered now would be ready there.
    pub alternatives: Vec<PickupAlternative>,
}

/// A store offered for pickup instead of a same-day delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct PickupAlternative {
    pub candidate: Candidate,
    /// See [`crate::Calendar::ready_by`]; `None` when the store opens for long enough within
    /// [`crate::calendar::SEARCH_DAYS`].
    pub ready_by: Option<Zoned>,
}

/// For stores outside their same-day window that could fill the order (typically
/// `eligible(&ranking.outside_window, ..)`), the answer to give instead of a same-day order:
/// when the first of them opens its window, and when a pickup would be ready at each. `None`
/// when `stores` is empty (then there is nothing to offer: the order is short everywhere).
/// Candidates the index does not know are left out.
pub fn same_day_closed(
    index: &LocationIndex,
    stores: &[Candidate],
    now: Timestamp,
) -> Option<SameDayClosed> {
    let mut next_same_day_at: Option<Zoned> = None;
    let mut alternatives = Vec::with_capacity(stores.len());
    for candidate in stores {
        let Some(site) = index.get(candidate.location) else {
            continue;
        };
        let calendar = site.calendar();
        if let Some(at) = calendar.next_same_day_at(now) {
            if next_same_day_at
                .as_ref()
                .is_none_or(|best| at.timestamp() < best.timestamp())
            {
                next_same_day_at = Some(at);
            }
        }
        alternatives.push(PickupAlternative {
            candidate: *candidate,
            ready_by: calendar.ready_by(now),
        });
    }
    (!alternatives.is_empty()).then_some(SameDayClosed {
        next_same_day_at,
        alternatives,
    })
}

/// When a pickup at `store` ordered at `now` will be ready ([`crate::Calendar::ready_by`]). A
/// store without a calendar is ready after the default preparation time.
pub fn ready_by(
    index: &LocationIndex,
    store: LocationId,
    now: Timestamp,
) -> Result<Option<Zoned>, RoutingError> {
    let site = index
        .get(store)
        .filter(|s| s.kind == LocationKind::Store)
        .ok_or(RoutingError::UnknownStore(store))?;
    Ok(site.calendar().ready_by(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Calendar, CalendarSpec, OpeningHoursSpec};
    use crate::index::Site;
    use std::sync::Arc;

    /// Open 10:00–22:00 every day in Seoul, same-day until `cutoff`.
    fn hours(cutoff: &str) -> Arc<Calendar> {
        let spec = CalendarSpec {
            opening_hours: ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
                .iter()
                .map(|d| OpeningHoursSpec {
                    day: (*d).to_owned(),
                    opens: "10:00".to_owned(),
                    closes: "22:00".to_owned(),
                })
                .collect(),
            same_day_cutoff: Some(cutoff.to_owned()),
            ..CalendarSpec::default()
        };
        Arc::new(Calendar::parse(&spec).unwrap())
    }

    fn store(id: u64, lat: f64, calendar: Option<Arc<Calendar>>) -> Site {
        Site {
            id: LocationId::new_unchecked(id),
            kind: LocationKind::Store,
            name: format!("store {id}"),
            coordinates: Coordinates::new(lat, 127.0).unwrap(),
            calendar,
        }
    }

    fn ids(c: &[Candidate]) -> Vec<u64> {
        c.iter().map(|c| c.location.get()).collect()
    }

    /// Monday 2026-12-07 at `hh:mm` in Seoul.
    fn seoul(hh_mm: &str) -> Timestamp {
        format!("2026-12-07T{hh_mm}:00+09:00[Asia/Seoul]")
            .parse::<Zoned>()
            .unwrap()
            .timestamp()
    }

    #[test]
    fn same_day_keeps_stores_in_their_window_and_names_the_others() {
        let index = LocationIndex::new([
            store(1, 37.500, Some(hours("12:00"))),
            store(2, 37.501, Some(hours("18:00"))),
            store(3, 37.502, None),
            store(4, 37.503, Some(hours("20:00"))),
        ]);
        let address = Coordinates::new(37.5, 127.0).unwrap();
        let destination = Destination::SameDay {
            address,
            radius_km: 5.0,
        };

        let at_15 = same_day(&index, address, 5.0, seoul("15:00"));
        assert_eq!(ids(&at_15.in_window), [2, 3, 4]);
        assert_eq!(ids(&at_15.outside_window), [1]);
        assert_eq!(
            candidates_at(&index, &destination, seoul("15:00")).unwrap(),
            at_15.in_window
        );

        let at_19 = same_day(&index, address, 5.0, seoul("19:00"));
        assert_eq!(ids(&at_19.in_window), [3, 4]);
        assert_eq!(ids(&at_19.outside_window), [1, 2]);

        // Store 3 (no hours) is short of stock: the caller passes the stocked outsiders.
        let closed = same_day_closed(&index, &at_19.outside_window, seoul("19:00")).unwrap();
        assert_eq!(
            closed.next_same_day_at.map(|z| z.to_string()).as_deref(),
            Some("2026-12-08T10:00:00+09:00[Asia/Seoul]")
        );
        let ready: Vec<String> = closed
            .alternatives
            .iter()
            .map(|a| a.ready_by.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(
            ready,
            [
                "2026-12-07T19:30:00+09:00[Asia/Seoul]",
                "2026-12-07T19:30:00+09:00[Asia/Seoul]"
            ]
        );
        assert_eq!(same_day_closed(&index, &[], seoul("19:00")), None);
    }

    #[test]
    fn without_calendars_every_destination_ranks_as_without_a_clock() {
        let index = LocationIndex::new([store(1, 37.50, None), store(2, 37.51, None)]);
        let address = Coordinates::new(37.5, 127.0).unwrap();
        for destination in [
            Destination::SameDay {
                address,
                radius_km: 5.0,
            },
            Destination::Normal { address },
            Destination::Pickup {
                store: LocationId::new_unchecked(2),
                address: Some(address),
            },
            Destination::InStore {
                store: LocationId::new_unchecked(1),
            },
        ] {
            assert_eq!(
                candidates_at(&index, &destination, seoul("03:00")),
                candidates(&index, &destination)
            );
        }
        assert_eq!(
            ready_by(&index, LocationId::new_unchecked(1), seoul("03:00"))
                .unwrap()
                .map(|z| z.to_string())
                .as_deref(),
            Some("2026-12-07T03:30:00+09:00[Asia/Seoul]")
        );
        assert_eq!(
            ready_by(&index, LocationId::new_unchecked(9), seoul("03:00")),
            Err(RoutingError::UnknownStore(LocationId::new_unchecked(9)))
        );
    }
}
