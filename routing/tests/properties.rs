//! Properties of the routing decisions, checked against brute-force oracles.
//!
//! Each generated world holds warehouses and stores (mostly in a box around Seoul, some anywhere on
//! earth, some sharing coordinates so distances tie), a random stock per (site, product) for a few
//! products, and random order lines and addresses. The oracles scan every site with
//! [`distance_km`] and never go through the index, so a prefilter that drops a site it should keep
//! shows up as a difference.

use geo::{Destination as _, Geodesic, Point};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use sf_routing::index::distance_km;
use sf_routing::{
    candidates, eligible, Candidate, Coordinates, Destination, LocationId, LocationIndex,
    LocationKind, OrderLines, ProductId, RoutingError, Site,
};
use std::collections::{BTreeMap, HashMap};

/// Products are 1 ..= PRODUCTS.
const PRODUCTS: u64 = 4;

// ------------------------------------------------------------------------------------------------
// Worlds
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct World {
    sites: Vec<Site>,
    /// Sellable quantity per (location, product); a missing entry is "unknown".
    stock: HashMap<(u64, u64), i64>,
}

impl World {
    fn index(&self) -> LocationIndex {
        LocationIndex::new(self.sites.iter().cloned())
    }

    fn available(&self) -> impl Fn(LocationId, ProductId) -> Option<i64> + '_ {
        |location, product| self.stock.get(&(location.get(), product.get())).copied()
    }

    fn site(&self, id: LocationId) -> &Site {
        self.sites
            .iter()
            .find(|s| s.id == id)
            .expect("a candidate names a site of the world")
    }

    /// Whether `location` holds enough of every product of the raw lines, summed by product.
    fn fills(&self, location: LocationId, raw_lines: &[(i64, i64)]) -> bool {
        let mut need: BTreeMap<i64, i64> = BTreeMap::new();
        for &(product, quantity) in raw_lines {
            *need.entry(product).or_default() += quantity;
        }
        need.iter().all(|(&product, &quantity)| {
            self.stock
                .get(&(location.get(), product as u64))
                .is_some_and(|&have| have >= quantity)
        })
    }

    /// Every site of `kind` within `radius_km` (when given) of `from`, by a scan of all sites,
    /// ordered by (distance, id).
    fn brute_force(
        &self,
        kind: LocationKind,
        from: Coordinates,
        radius_km: Option<f64>,
    ) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = self
            .sites
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| (distance_km(from, s.coordinates), s.id.get()))
            .filter(|(d, _)| radius_km.is_none_or(|r| *d <= r))
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out
    }
}

fn site(id: u64, kind: LocationKind, latitude: f64, longitude: f64) -> Site {
    Site {
        id: LocationId::new_unchecked(id),
        kind,
        name: format!("site {id}"),
        coordinates: Coordinates::new(latitude, longitude).expect("valid test coordinates"),
        calendar: None,
    }
}

fn coords(latitude: f64, longitude: f64) -> Coordinates {
    Coordinates::new(latitude, longitude).expect("valid test coordinates")
}

/// `(distance, id)` of each candidate; every ranked candidate carries a distance.
fn ranked(cands: &[Candidate]) -> Vec<(f64, u64)> {
    cands
        .iter()
        .map(|c| {
            (
                c.distance_km.expect("a ranked candidate has a distance"),
                c.location.get(),
            )
        })
        .collect()
}

fn ids(cands: &[Candidate]) -> Vec<u64> {
    cands.iter().map(|c| c.location.get()).collect()
}

fn kind() -> impl Strategy<Value = LocationKind> {
    prop_oneof![Just(LocationKind::Warehouse), Just(LocationKind::Store)]
}

fn near_seoul() -> impl Strategy<Value = Coordinates> {
    (37.0..38.0f64, 126.5..127.5f64).prop_map(|(lat, lon)| coords(lat, lon))
}

fn anywhere() -> impl Strategy<Value = Coordinates> {
    (-90.0..=90.0f64, -180.0..=180.0f64).prop_map(|(lat, lon)| coords(lat, lon))
}

fn location() -> impl Strategy<Value = Coordinates> {
    prop_oneof![9 => near_seoul(), 1 => anywhere()]
}

/// 1..300 sites with distinct ids in random order, a fifth of them placed on the coordinates of
/// another site so that distances tie, and a random stock.
fn world() -> impl Strategy<Value = World> {
    prop::collection::btree_set(1u64..1_000_000, 1..300)
        .prop_flat_map(|ids| {
            let n = ids.len();
            let ids: Vec<u64> = ids.into_iter().collect();
            (
                Just(ids).prop_shuffle(),
                prop::collection::vec(
                    (
                        kind(),
                        location(),
                        prop::option::weighted(0.2, any::<Index>()),
                    ),
                    n,
                ),
                prop::collection::vec(prop::option::weighted(0.9, 0i64..6), n * PRODUCTS as usize),
            )
        })
        .prop_map(|(ids, specs, stock_cells)| {
            let mut sites: Vec<Site> = Vec::with_capacity(ids.len());
            for (i, (id, (kind, at, copy))) in ids.iter().zip(specs).enumerate() {
                let coordinates = match copy {
                    Some(j) if i > 0 => sites[j.index(i)].coordinates,
                    _ => at,
                };
                sites.push(Site {
                    id: LocationId::new_unchecked(*id),
                    kind,
                    name: format!("site {id}"),
                    coordinates,
                    calendar: None,
                });
            }
            let mut stock = HashMap::new();
            for (cell, have) in stock_cells.into_iter().enumerate() {
                if let Some(have) = have {
                    let site = sites[cell / PRODUCTS as usize].id.get();
                    let product = (cell % PRODUCTS as usize) as u64 + 1;
                    stock.insert((site, product), have);
                }
            }
            World { sites, stock }
        })
}

/// Raw order lines, possibly naming one product twice.
fn raw_lines() -> impl Strategy<Value = Vec<(i64, i64)>> {
    prop::collection::vec((1..=PRODUCTS as i64, 1i64..=3), 1..5)
}

/// An address near Seoul, anywhere, or exactly on one of the sites (`pick`).
fn address(world: &World, free: Coordinates, pick: Option<Index>) -> Coordinates {
    match pick {
        Some(i) => world.sites[i.index(world.sites.len())].coordinates,
        None => free,
    }
}

fn radius() -> impl Strategy<Value = f64> {
    prop_oneof![Just(10.0), 0.1..100.0f64, 0.0..500.0f64]
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported in the test output; nothing is written next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------------------------------------
// Worlds for the prefilter: sites on and around the radius circle, anywhere on earth
// ------------------------------------------------------------------------------------------------

/// Addresses biased to the places where the longitude window is narrow or unsafe.
fn hard_address() -> impl Strategy<Value = Coordinates> {
    prop_oneof![
        2 => anywhere(),
        1 => near_seoul(),
        1 => (prop_oneof![80.0..=90.0f64, -90.0..=-80.0f64], -180.0..=180.0f64)
            .prop_map(|(lat, lon)| coords(lat, lon)),
        1 => (-89.0..89.0f64, prop_oneof![170.0..=180.0f64, -180.0..=-170.0f64])
            .prop_map(|(lat, lon)| coords(lat, lon)),
        1 => (prop_oneof![60.0..80.0f64, -80.0..-60.0f64], -180.0..=180.0f64)
            .prop_map(|(lat, lon)| coords(lat, lon)),
    ]
}

fn hard_radius() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(10.0),
        0.0..1.0f64,
        0.1..100.0f64,
        100.0..1_000.0f64,
        1_000.0..5_000.0f64,
    ]
}

/// Where a site sits relative to the circle: a fraction of the radius.
fn ring_factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => Just(1.0),
        3 => 0.999_999..1.000_001f64,
        2 => 0.99..1.01f64,
        1 => 0.5..1.5f64,
        1 => 0.0..1.0f64,
    ]
}

fn wrap_longitude(lon: f64) -> f64 {
    let wrapped = (lon + 180.0).rem_euclid(360.0) - 180.0;
    wrapped.clamp(-180.0, 180.0)
}

/// An address, a radius and sites at a random bearing and a distance close to the radius (plus a
/// few anywhere), so that the latitude band and the longitude window are tested at their edges.
fn ring_world() -> impl Strategy<Value = (Coordinates, f64, World)> {
    (
        hard_address(),
        hard_radius(),
        prop::collection::vec(
            (
                kind(),
                0.0..360.0f64,
                ring_factor(),
                prop::option::weighted(0.05, anywhere()),
            ),
            1..200,
        ),
    )
        .prop_map(|(from, radius_km, specs)| {
            let origin = Point::new(from.longitude(), from.latitude());
            let sites = specs
                .into_iter()
                .enumerate()
                .map(|(i, (kind, bearing, factor, elsewhere))| {
                    let coordinates = elsewhere.unwrap_or_else(|| {
                        let p = Geodesic.destination(origin, bearing, radius_km * factor * 1000.0);
                        coords(p.y().clamp(-90.0, 90.0), wrap_longitude(p.x()))
                    });
                    Site {
                        id: LocationId::new_unchecked(i as u64 + 1),
                        kind,
                        name: format!("site {}", i + 1),
                        coordinates,
                        calendar: None,
                    }
                })
                .collect();
            (
                from,
                radius_km,
                World {
                    sites,
                    stock: HashMap::new(),
                },
            )
        })
}

// ------------------------------------------------------------------------------------------------
// Properties
// ------------------------------------------------------------------------------------------------

/// The four destinations one generated request can take.
fn destinations(address: Coordinates, radius_km: f64, store: LocationId) -> [Destination; 4] {
    [
        Destination::Normal { address },
        Destination::SameDay { address, radius_km },
        Destination::Pickup {
            store,
            address: Some(address),
        },
        Destination::InStore { store },
    ]
}

/// A location id for PICKUP / IN_STORE: one of the sites (store or warehouse), or an unknown id.
fn chosen_id(world: &World, pick: Index, unknown: u64, use_unknown: bool) -> LocationId {
    if use_unknown && !world.sites.iter().any(|s| s.id.get() == unknown) {
        LocationId::new_unchecked(unknown)
    } else {
        world.sites[pick.index(world.sites.len())].id
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// What routing would choose — the first eligible candidate — holds enough of every product,
    /// with the lines of one product summed.
    #[test]
    fn the_first_eligible_candidate_fills_every_line(
        world in world(),
        lines in raw_lines(),
        free in location(),
        at_site in prop::option::weighted(0.1, any::<Index>()),
        radius_km in radius(),
        pick in any::<Index>(),
        unknown in 1u64..2_000_000,
        use_unknown in prop::bool::weighted(0.2),
    ) {
        let index = world.index();
        let order = OrderLines::parse(lines.iter().copied()).unwrap();
        let address = address(&world, free, at_site);
        let store = chosen_id(&world, pick, unknown, use_unknown);
        for destination in destinations(address, radius_km, store) {
            let Ok(cands) = candidates(&index, &destination) else { continue };
            let chosen = eligible(&cands, &order, world.available());
            if let Some(first) = chosen.first() {
                prop_assert!(
                    world.fills(first.location, &lines),
                    "{destination:?}: chose {} which cannot fill {lines:?}", first.location
                );
            }
        }
    }

    /// `eligible` keeps exactly the candidates that can fill every line (unknown stock never
    /// counts as enough), in the order it was given them.
    #[test]
    fn eligible_keeps_exactly_the_candidates_that_fill_every_line_in_order(
        world in world(),
        lines in raw_lines(),
        free in location(),
        radius_km in radius(),
    ) {
        let index = world.index();
        let order = OrderLines::parse(lines.iter().copied()).unwrap();
        for destination in [
            Destination::Normal { address: free },
            Destination::SameDay { address: free, radius_km },
        ] {
            let cands = candidates(&index, &destination).unwrap();
            let chosen = eligible(&cands, &order, world.available());
            let expected: Vec<Candidate> = cands
                .iter()
                .filter(|c| world.fills(c.location, &lines))
                .copied()
                .collect();
            prop_assert_eq!(chosen, expected, "{:?}", destination);
        }
    }

    /// No nearer eligible location is skipped: the eligible list is sorted by (distance, id),
    /// every eligible location is at least as far as the chosen one, and the chosen one is the
    /// nearest location of the right kind (within the radius for SAME_DAY) that can fill the
    /// order, found by scanning every site.
    #[test]
    fn no_nearer_eligible_location_is_skipped(
        world in world(),
        lines in raw_lines(),
        free in location(),
        at_site in prop::option::weighted(0.1, any::<Index>()),
        radius_km in radius(),
    ) {
        let index = world.index();
        let order = OrderLines::parse(lines.iter().copied()).unwrap();
        let address = address(&world, free, at_site);
        for (destination, kind, radius) in [
            (Destination::Normal { address }, LocationKind::Warehouse, None),
            (Destination::SameDay { address, radius_km }, LocationKind::Store, Some(radius_km)),
        ] {
            let cands = candidates(&index, &destination).unwrap();
            let chosen = ranked(&eligible(&cands, &order, world.available()));
            for pair in chosen.windows(2) {
                prop_assert!(
                    pair[0].0.total_cmp(&pair[1].0).then(pair[0].1.cmp(&pair[1].1)).is_lt(),
                    "{destination:?}: eligible not sorted by (distance, id): {pair:?}"
                );
            }
            if let Some(first) = chosen.first() {
                for other in &chosen {
                    prop_assert!(other.0 >= first.0, "{destination:?}: {other:?} nearer than {first:?}");
                }
            }
            let nearest_that_fills = world
                .brute_force(kind, address, radius)
                .into_iter()
                .find(|&(_, id)| world.fills(LocationId::new_unchecked(id), &lines));
            prop_assert_eq!(chosen.first().copied(), nearest_that_fills, "{:?}", destination);
        }
    }

    /// SAME_DAY never offers a store outside the radius, and every store within the radius (by a
    /// scan of all sites) is among the candidates, at its geodesic distance.
    #[test]
    fn same_day_never_chooses_outside_the_radius_and_keeps_every_store_within_it(
        world in world(),
        free in location(),
        at_site in prop::option::weighted(0.1, any::<Index>()),
        radius_km in radius(),
    ) {
        let index = world.index();
        let address = address(&world, free, at_site);
        let cands = candidates(&index, &Destination::SameDay { address, radius_km }).unwrap();
        for c in &cands {
            let site = world.site(c.location);
            let d = distance_km(address, site.coordinates);
            prop_assert_eq!(site.kind, LocationKind::Store);
            prop_assert!(d <= radius_km, "{} at {d} km is outside {radius_km} km", c.location);
            prop_assert_eq!(c.distance_km, Some(d));
        }
        prop_assert_eq!(
            ranked(&cands),
            world.brute_force(LocationKind::Store, address, Some(radius_km))
        );
    }

    /// NORMAL ranks every warehouse and nothing else, nearest first.
    #[test]
    fn normal_yields_every_warehouse_and_only_warehouses(
        world in world(),
        free in location(),
        at_site in prop::option::weighted(0.1, any::<Index>()),
    ) {
        let index = world.index();
        let address = address(&world, free, at_site);
        let cands = candidates(&index, &Destination::Normal { address }).unwrap();
        for c in &cands {
            prop_assert_eq!(world.site(c.location).kind, LocationKind::Warehouse);
        }
        prop_assert_eq!(ranked(&cands), world.brute_force(LocationKind::Warehouse, address, None));
    }

    /// SAME_DAY, PICKUP and IN_STORE only ever yield stores; PICKUP and IN_STORE of an unknown id
    /// or of a warehouse are an error, and of a store yield exactly that store.
    #[test]
    fn same_day_pickup_and_in_store_yield_only_stores_and_reject_anything_else(
        world in world(),
        free in location(),
        radius_km in radius(),
        pick in any::<Index>(),
        unknown in 1u64..2_000_000,
        use_unknown in prop::bool::weighted(0.3),
        with_address in any::<bool>(),
    ) {
        let index = world.index();
        let same_day = candidates(&index, &Destination::SameDay { address: free, radius_km }).unwrap();
        for c in &same_day {
            prop_assert_eq!(world.site(c.location).kind, LocationKind::Store);
        }

        let id = chosen_id(&world, pick, unknown, use_unknown);
        let is_store = world
            .sites
            .iter()
            .any(|s| s.id == id && s.kind == LocationKind::Store);
        let address = with_address.then_some(free);
        let pickup = candidates(&index, &Destination::Pickup { store: id, address });
        let in_store = candidates(&index, &Destination::InStore { store: id });
        if is_store {
            let at = world.site(id).coordinates;
            prop_assert_eq!(
                pickup,
                Ok(vec![Candidate { location: id, distance_km: address.map(|a| distance_km(a, at)) }])
            );
            prop_assert_eq!(in_store, Ok(vec![Candidate { location: id, distance_km: None }]));
        } else {
            prop_assert_eq!(pickup, Err(RoutingError::UnknownStore(id)));
            prop_assert_eq!(in_store, Err(RoutingError::UnknownStore(id)));
        }
    }

    /// Locations at the same distance are ranked by id, and the ranking does not depend on the
    /// order in which the sites were handed to the index.
    #[test]
    fn ties_are_broken_deterministically_by_location_id(
        world in world(),
        free in location(),
        at_site in prop::option::weighted(0.3, any::<Index>()),
        radius_km in radius(),
        seed in any::<u64>(),
    ) {
        let index = world.index();
        let mut reordered = world.sites.clone();
        reordered.reverse();
        let rotate = (seed as usize) % reordered.len();
        reordered.rotate_left(rotate);
        let other = LocationIndex::new(reordered);
        let address = address(&world, free, at_site);
        for destination in [
            Destination::Normal { address },
            Destination::SameDay { address, radius_km },
        ] {
            let cands = candidates(&index, &destination).unwrap();
            for pair in ranked(&cands).windows(2) {
                if pair[0].0 == pair[1].0 {
                    prop_assert!(pair[0].1 < pair[1].1, "{destination:?}: tie not broken by id: {pair:?}");
                }
            }
            prop_assert_eq!(&cands, &candidates(&other, &destination).unwrap());
        }
    }
}

/// Pairs of sites mirrored across the equator, seen from an address on the equator: each pair
/// is at exactly the same distance, while the index (sorted by latitude) holds them apart.
fn mirrored_world() -> impl Strategy<Value = (Coordinates, World)> {
    (
        -179.0..179.0f64,
        prop::collection::vec((kind(), 0.0..0.2f64, -0.2..0.2f64), 1..40),
    )
        .prop_flat_map(|(lon, pairs)| {
            let n = pairs.len() * 2;
            (
                Just(lon),
                Just(pairs),
                prop::collection::btree_set(1u64..1_000_000, n..=n)
                    .prop_map(|ids| ids.into_iter().collect::<Vec<_>>())
                    .prop_shuffle(),
            )
        })
        .prop_map(|(lon, pairs, ids)| {
            let mut sites = Vec::with_capacity(ids.len());
            for (i, (kind, dlat, dlon)) in pairs.into_iter().enumerate() {
                for (j, lat) in [dlat, -dlat].into_iter().enumerate() {
                    let id = ids[2 * i + j];
                    sites.push(Site {
                        id: LocationId::new_unchecked(id),
                        kind,
                        name: format!("site {id}"),
                        coordinates: coords(lat, lon + dlon),
                        calendar: None,
                    });
                }
            }
            (
                coords(0.0, lon),
                World {
                    sites,
                    stock: HashMap::new(),
                },
            )
        })
}

proptest! {
    #![proptest_config(config(256))]

    /// Ties between sites at different places (not merely on one point) are broken by id too.
    #[test]
    fn ties_between_sites_at_different_places_are_broken_by_location_id(
        (address, world) in mirrored_world(),
        radius_km in prop_oneof![Just(10.0), 0.0..40.0f64],
    ) {
        let index = world.index();
        for (destination, kind, radius) in [
            (Destination::Normal { address }, LocationKind::Warehouse, None),
            (Destination::SameDay { address, radius_km }, LocationKind::Store, Some(radius_km)),
        ] {
            let cands = ranked(&candidates(&index, &destination).unwrap());
            for pair in cands.windows(2) {
                if pair[0].0 == pair[1].0 {
                    prop_assert!(pair[0].1 < pair[1].1, "{destination:?}: tie not broken by id: {pair:?}");
                }
            }
            prop_assert_eq!(cands, world.brute_force(kind, address, radius));
        }
    }
}

proptest! {
    #![proptest_config(config(2048))]

    /// The latitude band and the longitude window never drop a site within the radius, anywhere
    /// on earth (near the poles, across the antimeridian, large and tiny radii), for sites placed
    /// on and around the circle: `within` equals a scan of every site.
    #[test]
    fn the_prefilter_never_drops_a_site_within_the_radius(
        (from, radius_km, world) in ring_world(),
    ) {
        let index = world.index();
        for kind in [LocationKind::Store, LocationKind::Warehouse] {
            prop_assert_eq!(
                ranked(&index.within(kind, from, radius_km)),
                world.brute_force(kind, from, Some(radius_km)),
                "{:?} within {} km of {:?}", kind, radius_km, from
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Deterministic edge cases
// ------------------------------------------------------------------------------------------------

fn within_ids(index: &LocationIndex, from: Coordinates, radius_km: f64) -> Vec<u64> {
    ids(&index.within(LocationKind::Store, from, radius_km))
}

/// The largest f64 below a positive, finite `x`.
fn just_below(x: f64) -> f64 {
    assert!(x > 0.0 && x.is_finite());
    f64::from_bits(x.to_bits() - 1)
}

#[test]
fn a_store_exactly_at_the_radius_is_kept_and_one_just_beyond_is_not() {
    let from = coords(37.5665, 126.9780);
    let at = coords(37.6, 127.05);
    let index = LocationIndex::new([site(7, LocationKind::Store, at.latitude(), at.longitude())]);
    let d = distance_km(from, at);
    assert_eq!(within_ids(&index, from, d), vec![7]);
    assert!(within_ids(&index, from, just_below(d)).is_empty());
    let cands = candidates(
        &index,
        &Destination::SameDay {
            address: from,
            radius_km: d,
        },
    )
    .unwrap();
    assert_eq!(cands[0].distance_km, Some(d));
}

#[test]
fn stores_on_the_radius_circle_are_kept_on_every_bearing() {
    // Stores placed (by the direct geodesic problem) within a hair of the circle at every degree
    // of bearing, in Seoul and at high latitude where the longitude window is narrow.
    for from in [
        coords(37.5665, 126.9780),
        coords(69.6, 18.9),
        coords(-77.8, 166.7),
    ] {
        for radius_km in [0.5, 10.0, 100.0] {
            let origin = Point::new(from.longitude(), from.latitude());
            let sites: Vec<Site> = (0..360)
                .flat_map(|deg| {
                    let bearing = f64::from(deg);
                    [(1.0 - 1e-7, 0), (1.0 + 1e-7, 1000)].map(|(f, id_offset)| {
                        let p = Geodesic.destination(origin, bearing, radius_km * f * 1000.0);
                        site(
                            deg as u64 + 1 + id_offset,
                            LocationKind::Store,
                            p.y(),
                            p.x(),
                        )
                    })
                })
                .collect();
            let index = LocationIndex::new(sites);
            let inside = within_ids(&index, from, radius_km);
            let mut inside_sorted = inside.clone();
            inside_sorted.sort_unstable();
            let expected: Vec<u64> = (1..=360).collect();
            assert_eq!(inside_sorted, expected, "{from:?}, {radius_km} km");
        }
    }
}

#[test]
fn a_store_across_the_antimeridian_is_kept() {
    let index = LocationIndex::new([
        site(1, LocationKind::Store, 0.0, -179.95),
        site(2, LocationKind::Store, -16.5, -179.99),
        site(3, LocationKind::Store, 0.0, 179.0),
    ]);
    let from = coords(0.0, 179.95);
    assert_eq!(within_ids(&index, from, 20.0), vec![1]);
    let fiji = coords(-16.5, 179.99);
    assert_eq!(within_ids(&index, fiji, 5.0), vec![2]);
    // From the west side of the line as well.
    assert_eq!(within_ids(&index, coords(0.0, -179.99), 10.0), vec![1]);
    assert_eq!(within_ids(&index, coords(0.0, 180.0), 10.0), vec![1]);
}

#[test]
fn a_store_on_the_far_side_of_a_pole_is_kept() {
    let index = LocationIndex::new([
        site(1, LocationKind::Store, 89.95, 180.0),
        site(2, LocationKind::Store, 89.8, -170.0),
        site(3, LocationKind::Store, 90.0, 0.0),
        site(4, LocationKind::Store, -89.9, 45.0),
        site(5, LocationKind::Store, -89.9, -135.0),
        site(6, LocationKind::Store, 88.0, 10.0),
    ]);
    // ~11 km across the north pole.
    assert_eq!(within_ids(&index, coords(89.95, 0.0), 20.0), vec![3, 1]);
    // A circle that contains the pole reaches the opposite meridian.
    assert_eq!(within_ids(&index, coords(89.9, 10.0), 50.0), vec![3, 1, 2]);
    // ~22 km across the south pole.
    assert_eq!(within_ids(&index, coords(-89.9, 45.0), 30.0), vec![4, 5]);
    // From the pole itself every longitude is as near as the latitude says.
    assert_eq!(within_ids(&index, coords(90.0, 77.0), 40.0), vec![3, 1, 2]);
}

#[test]
fn a_zero_radius_keeps_only_a_store_at_the_address() {
    let index = LocationIndex::new([
        site(2, LocationKind::Store, 37.5, 127.0),
        site(1, LocationKind::Store, 37.5, 127.000_001),
        site(3, LocationKind::Warehouse, 37.5, 127.0),
    ]);
    assert_eq!(within_ids(&index, coords(37.5, 127.0), 0.0), vec![2]);
}

#[test]
fn a_radius_past_half_the_earth_keeps_every_store() {
    let index = LocationIndex::new([
        site(1, LocationKind::Store, 37.5, 127.0),
        site(2, LocationKind::Store, -37.5, -53.0),
        site(3, LocationKind::Store, 89.0, -179.0),
        site(4, LocationKind::Warehouse, 0.0, 0.0),
    ]);
    let from = coords(37.5, 127.0);
    let mut got = within_ids(&index, from, 20_100.0);
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3]);
    let mut got = within_ids(&index, from, f64::INFINITY);
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3]);
}

#[test]
fn equal_distances_rank_by_location_id() {
    // Four stores on the same point, given in scrambled order, and two warehouses at the same
    // distance on opposite sides of the address (mirrored in longitude on the equator).
    let index = LocationIndex::new([
        site(40, LocationKind::Store, 37.51, 127.01),
        site(10, LocationKind::Store, 37.51, 127.01),
        site(30, LocationKind::Store, 37.51, 127.01),
        site(20, LocationKind::Store, 37.51, 127.01),
        site(9, LocationKind::Warehouse, 0.0, 10.5),
        site(5, LocationKind::Warehouse, 0.0, 9.5),
    ]);
    assert_eq!(
        within_ids(&index, coords(37.5, 127.0), 10.0),
        vec![10, 20, 30, 40]
    );
    let normal = candidates(
        &index,
        &Destination::Normal {
            address: coords(0.0, 10.0),
        },
    )
    .unwrap();
    assert_eq!(normal[0].distance_km, normal[1].distance_km);
    assert_eq!(ids(&normal), vec![5, 9]);

    // Mirrored across the equator: the index holds 8 (south) before 3 (north), the tie is still
    // broken by id.
    let index = LocationIndex::new([
        site(3, LocationKind::Store, 0.01, 100.0),
        site(8, LocationKind::Store, -0.01, 100.0),
    ]);
    let got = index.within(LocationKind::Store, coords(0.0, 100.0), 5.0);
    assert_eq!(got[0].distance_km, got[1].distance_km);
    assert_eq!(ids(&got), vec![3, 8]);
}

#[test]
fn an_empty_index_yields_no_candidates_and_rejects_every_store() {
    let index = LocationIndex::new([]);
    let address = coords(37.5, 127.0);
    assert!(candidates(&index, &Destination::Normal { address })
        .unwrap()
        .is_empty());
    assert!(candidates(
        &index,
        &Destination::SameDay {
            address,
            radius_km: 10.0
        }
    )
    .unwrap()
    .is_empty());
    let store = LocationId::new_unchecked(1);
    assert_eq!(
        candidates(
            &index,
            &Destination::Pickup {
                store,
                address: None
            }
        ),
        Err(RoutingError::UnknownStore(store))
    );
}

#[test]
fn pickup_of_a_warehouse_is_an_error_and_of_a_store_carries_the_distance() {
    let index = LocationIndex::new([
        site(1, LocationKind::Warehouse, 37.5, 127.0),
        site(2, LocationKind::Store, 37.6, 127.1),
    ]);
    let warehouse = LocationId::new_unchecked(1);
    let store = LocationId::new_unchecked(2);
    let address = coords(37.5, 127.0);
    assert_eq!(
        candidates(
            &index,
            &Destination::Pickup {
                store: warehouse,
                address: Some(address)
            }
        ),
        Err(RoutingError::UnknownStore(warehouse))
    );
    assert_eq!(
        candidates(&index, &Destination::InStore { store: warehouse }),
        Err(RoutingError::UnknownStore(warehouse))
    );
    let pickup = candidates(
        &index,
        &Destination::Pickup {
            store,
            address: Some(address),
        },
    )
    .unwrap();
    assert_eq!(
        pickup,
        vec![Candidate {
            location: store,
            distance_km: Some(distance_km(address, coords(37.6, 127.1)))
        }]
    );
}

#[test]
fn unknown_stock_never_counts_as_enough() {
    let a = LocationId::new_unchecked(1);
    let b = LocationId::new_unchecked(2);
    let cands = [
        Candidate {
            location: a,
            distance_km: Some(1.0),
        },
        Candidate {
            location: b,
            distance_km: Some(2.0),
        },
    ];
    let order = OrderLines::parse([(1, 2), (2, 1), (1, 1)]).unwrap();
    // `a` has product 1 only twice (the two lines of product 1 add up to 3) and `b` knows nothing
    // of product 2.
    let chosen = eligible(&cands, &order, |loc, p| match (loc.get(), p.get()) {
        (1, 1) => Some(2),
        (1, 2) => Some(5),
        (2, 1) => Some(3),
        _ => None,
    });
    assert!(chosen.is_empty());
    let chosen = eligible(&cands, &order, |loc, p| match (loc.get(), p.get()) {
        (1, 1) => Some(3),
        (1, 2) => Some(1),
        _ => None,
    });
    assert_eq!(chosen, vec![cands[0]]);
}
