//! The in-memory index of active locations.
//!
//! Sites are kept sorted by latitude; a radius query first narrows to the latitude band (binary
//! search) and a longitude window, then measures the survivors geodesically. Ties in distance are
//! broken by location id so every decision is deterministic.

use crate::calendar::{always_open, Calendar};
use crate::domain::{Coordinates, LocationId, LocationKind};
use geo::{Distance, Geodesic, Point};
use std::sync::Arc;

/// One active warehouse or store as routing sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: LocationId,
    pub kind: LocationKind,
    pub name: String,
    pub coordinates: Coordinates,
    /// Opening hours, closed dates and cut-off; `None` for a location that has none, which is
    /// open around the clock (it answers as [`Calendar::default`]). Shared, so that rebuilding
    /// the index does not copy calendars.
    pub calendar: Option<Arc<Calendar>>,
}

impl Site {
    /// The calendar this site follows: its own, or the always-open default.
    pub fn calendar(&self) -> &Calendar {
        self.calendar.as_deref().unwrap_or_else(|| always_open())
    }
}

/// A location ranked for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub location: LocationId,
    /// Geodesic distance from the delivery address, when the request has one.
    pub distance_km: Option<f64>,
}

/// Kilometres per degree of latitude, rounded down so the band is never too narrow.
const KM_PER_DEGREE_LAT: f64 = 110.5;

#[derive(Debug, Clone, Default)]
pub struct LocationIndex {
    /// Active sites sorted by latitude.
    by_latitude: Vec<Site>,
    /// `(id, position in by_latitude)`, sorted by id, so that a lookup by id is a binary search.
    by_id: Vec<(LocationId, usize)>,
}

impl LocationIndex {
    /// Builds the index from active sites (callers leave inactive ones out).
    pub fn new(sites: impl IntoIterator<Item = Site>) -> Self {
        let mut by_latitude: Vec<Site> = sites.into_iter().collect();
        by_latitude.sort_by(|a, b| {
            a.coordinates
                .latitude()
                .total_cmp(&b.coordinates.latitude())
                .then(a.id.cmp(&b.id))
        });
        let mut by_id: Vec<(LocationId, usize)> = by_latitude
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        by_id.sort_unstable();
        Self { by_latitude, by_id }
    }

    pub fn len(&self) -> usize {
        self.by_latitude.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_latitude.is_empty()
    }

    pub fn get(&self, id: LocationId) -> Option<&Site> {
        let at = self.by_id.binary_search_by_key(&id, |(id, _)| *id).ok()?;
        Some(&self.by_latitude[self.by_id[at].1])
    }

    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.by_latitude.iter()
    }

    /// Every site of `kind`, nearest to `from` first.
    pub fn nearest(&self, kind: LocationKind, from: Coordinates) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .by_latitude
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| candidate(s, from))
            .collect();
        sort(&mut out);
        out
    }

    /// Sites of `kind` within `radius_km` of `from` (geodesic), nearest first.
    pub fn within(&self, kind: LocationKind, from: Coordinates, radius_km: f64) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .sites_within(kind, from, radius_km)
            .map(|(_, c)| c)
            .collect();
        sort(&mut out);
        out
    }

    /// Sites of any kind within `radius_km` of `from` (geodesic), nearest first.
    pub fn near(&self, from: Coordinates, radius_km: f64) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self.sites_near(from, radius_km).map(|(_, c)| c).collect();
        sort(&mut out);
        out
    }

    /// Sites of `kind` within `radius_km` of `from`, each with its candidate, in index order
    /// (unsorted).
    pub(crate) fn sites_within(
        &self,
        kind: LocationKind,
        from: Coordinates,
        radius_km: f64,
    ) -> impl Iterator<Item = (&Site, Candidate)> {
        self.sites_near(from, radius_km)
            .filter(move |(s, _)| s.kind == kind)
    }

    /// Sites of any kind within `radius_km` of `from`, each with its candidate, in index order
    /// (unsorted).
    fn sites_near(
        &self,
        from: Coordinates,
        radius_km: f64,
    ) -> impl Iterator<Item = (&Site, Candidate)> {
        // A negative or NaN radius holds nothing (and would invert the band below).
        let band = if radius_km.is_nan() || radius_km < 0.0 {
            &self.by_latitude[..0]
        } else {
            self.band(from, radius_km)
        };
        let lon_window = longitude_window(from, radius_km);
        band.iter()
            .filter(move |s| {
                lon_window.is_none_or(|w| (s.coordinates.longitude() - from.longitude()).abs() <= w)
            })
            .map(move |s| (s, candidate(s, from)))
            .filter(move |(_, c)| c.distance_km.is_some_and(|d| d <= radius_km))
    }

    /// The sites whose latitude lies within `radius_km` of `from`'s.
    fn band(&self, from: Coordinates, radius_km: f64) -> &[Site] {
        let band = radius_km / KM_PER_DEGREE_LAT;
        let lo = from.latitude() - band;
        let hi = from.latitude() + band;
        let start = self
            .by_latitude
            .partition_point(|s| s.coordinates.latitude() < lo);
        let end = self
            .by_latitude
            .partition_point(|s| s.coordinates.latitude() <= hi);
        &self.by_latitude[start..end]
    }
}

/// Half-width in degrees of longitude that surely holds every point within `radius_km`, or `None`
/// near the poles or the antimeridian, where the window would not be safe and every site in the
/// band is measured instead.
fn longitude_window(from: Coordinates, radius_km: f64) -> Option<f64> {
    // The widest latitude the circle reaches has the narrowest degrees of longitude.
    let edge = (from.latitude().abs() + radius_km / KM_PER_DEGREE_LAT).to_radians();
    let km_per_degree_lon = 111.0 * edge.cos();
    if km_per_degree_lon < 1.0 {
        return None;
    }
    let w = radius_km / km_per_degree_lon * 1.01;
    (from.longitude().abs() + w < 180.0).then_some(w)
}

/// A distance in km as the service tells it (orders, product pages, nearby stores): to the
/// metre, enough for a shop's "2.4 km away".
pub fn to_the_metre(km: f64) -> f64 {
    (km * 1000.0).round() / 1000.0
}

pub fn distance_km(a: Coordinates, b: Coordinates) -> f64 {
    let pa = Point::new(a.longitude(), a.latitude());
    let pb = Point::new(b.longitude(), b.latitude());
    Geodesic.distance(pa, pb) / 1000.0
}

fn candidate(site: &Site, from: Coordinates) -> Candidate {
    Candidate {
        location: site.id,
        distance_km: Some(distance_km(from, site.coordinates)),
    }
}

pub(crate) fn sort(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| {
        let da = a.distance_km.unwrap_or(0.0);
        let db = b.distance_km.unwrap_or(0.0);
        da.total_cmp(&db).then(a.location.cmp(&b.location))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: u64, kind: LocationKind, lat: f64, lon: f64) -> Site {
        Site {
            id: LocationId::new_unchecked(id),
            kind,
            name: format!("site {id}"),
            coordinates: Coordinates::new(lat, lon).unwrap(),
            calendar: None,
        }
    }

    #[test]
    fn seoul_to_busan_is_about_325_km() {
        let seoul = Coordinates::new(37.5665, 126.9780).unwrap();
        let busan = Coordinates::new(35.1796, 129.0756).unwrap();
        let d = distance_km(seoul, busan);
        assert!((320.0..330.0).contains(&d), "{d}");
    }

    #[test]
    fn within_respects_radius_kind_and_order() {
        let idx = LocationIndex::new([
            site(1, LocationKind::Store, 37.60, 127.00),
            site(2, LocationKind::Store, 37.57, 126.98),
            site(3, LocationKind::Warehouse, 37.57, 126.98),
            site(4, LocationKind::Store, 38.50, 127.00),
        ]);
        let from = Coordinates::new(37.5665, 126.9780).unwrap();
        let got: Vec<u64> = idx
            .within(LocationKind::Store, from, 10.0)
            .iter()
            .map(|c| c.location.get())
            .collect();
        assert_eq!(got, vec![2, 1]);
        assert!(idx.within(LocationKind::Store, from, -1.0).is_empty());
        assert!(idx.within(LocationKind::Store, from, f64::NAN).is_empty());
    }
}
