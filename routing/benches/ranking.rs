//! Ranking cost with a country-sized index: 5,000 stores spread over South Korea plus 5
//! warehouses, placed by a fixed pseudo-random sequence so every run measures the same world.
//!
//! The same-day decision is measured twice: with stores that have no calendar (as before store
//! hours existed) and with every store following one of a few calendars, asked at instants spread
//! over a week so that stores are in, before and after their windows.
//!
//! Run with `cargo bench -p sf-routing --bench ranking`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jiff::Timestamp;
use sf_routing::{
    candidates, candidates_at, eligible, Calendar, CalendarSpec, Coordinates, Destination,
    LocationId, LocationIndex, LocationKind, OpeningHoursSpec, OrderLines, ProductId, Site,
};
use std::hint::black_box;
use std::sync::Arc;

const STORES: u64 = 5_000;
const ADDRESSES: usize = 4_096;
const SAME_DAY_RADIUS_KM: f64 = 10.0;

/// A 64-bit linear congruential generator (Knuth's MMIX constants); deterministic and
/// dependency-free, which is all a benchmark's scenery needs.
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // The top 53 bits as a fraction in [0, 1).
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// A point in the box around South Korea.
    fn korea(&mut self) -> Coordinates {
        let latitude = self.between(34.5, 38.3);
        let longitude = self.between(126.0, 129.5);
        Coordinates::new(latitude, longitude).expect("inside the box")
    }
}

fn sites() -> Vec<Site> {
    let mut rng = Lcg(0x5eed_0f57_07e5);
    let mut sites: Vec<Site> = (1..=STORES)
        .map(|id| Site {
            id: LocationId::new_unchecked(id),
            kind: LocationKind::Store,
            name: format!("store {id}"),
            coordinates: rng.korea(),
            calendar: None,
        })
        .collect();
    // Icheon, Daejeon, Daegu, Gwangju, Busan.
    let warehouses = [
        (37.2720, 127.4350),
        (36.3504, 127.3845),
        (35.8714, 128.6014),
        (35.1595, 126.8526),
        (35.1796, 129.0756),
    ];
    for (i, (lat, lon)) in warehouses.into_iter().enumerate() {
        let id = STORES + 1 + i as u64;
        sites.push(Site {
            id: LocationId::new_unchecked(id),
            kind: LocationKind::Warehouse,
            name: format!("warehouse {id}"),
            coordinates: Coordinates::new(lat, lon).expect("valid coordinates"),
            calendar: None,
        });
    }
    sites
}

fn calendar(
    days: &[&str],
    ranges: &[(&str, &str)],
    cutoff: Option<&str>,
    closed: &[&str],
) -> Arc<Calendar> {
    let spec = CalendarSpec {
        time_zone: Some("Asia/Seoul".to_owned()),
        opening_hours: days
            .iter()
            .flat_map(|day| {
                ranges.iter().map(|(opens, closes)| OpeningHoursSpec {
                    day: (*day).to_owned(),
                    opens: (*opens).to_owned(),
                    closes: (*closes).to_owned(),
                })
            })
            .collect(),
        closed_dates: closed.iter().map(|d| (*d).to_owned()).collect(),
        same_day_cutoff: cutoff.map(str::to_owned),
        pickup_preparation_minutes: Some(30),
    };
    Arc::new(Calendar::parse(&spec).expect("a valid calendar"))
}

/// The same sites, every store following one of four calendars: daily hours with a cut-off;
/// closed on Sundays without one; around the clock with a closed date; a lunch break, an early
/// cut-off and a closed date.
fn sites_with_hours(sites: &[Site]) -> Vec<Site> {
    const ALL: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let calendars = [
        calendar(&ALL, &[("10:00", "22:00")], Some("18:00"), &[]),
        calendar(&ALL[..6], &[("09:00", "21:00")], None, &[]),
        calendar(&ALL, &[("00:00", "24:00")], None, &["2026-12-09"]),
        calendar(
            &ALL,
            &[("10:00", "13:00"), ("14:00", "20:00")],
            Some("17:00"),
            &["2026-12-10"],
        ),
    ];
    sites
        .iter()
        .map(|s| Site {
            calendar: (s.kind == LocationKind::Store)
                .then(|| calendars[(s.id.get() % 4) as usize].clone()),
            ..s.clone()
        })
        .collect()
}

/// Instants across the week of 2026-12-07 (Seoul), at hours before, inside and after the
/// windows.
fn instants() -> Vec<Timestamp> {
    let mut out = Vec::new();
    for day in 7..14 {
        for hour in [
            "08:30", "11:00", "13:30", "16:00", "17:30", "19:00", "21:15", "23:45",
        ] {
            let zoned: jiff::Zoned = format!("2026-12-{day:02}T{hour}:00+09:00[Asia/Seoul]")
                .parse()
                .expect("a valid instant");
            out.push(zoned.timestamp());
        }
    }
    out
}

fn addresses() -> Vec<Coordinates> {
    let mut rng = Lcg(0x000a_dd7e_55e5);
    (0..ADDRESSES).map(|_| rng.korea()).collect()
}

/// Sellable stock, as the stock lookup would answer it: a fixed function of (location, product)
/// so that some candidates fall short and `eligible` has work to do.
fn available(location: LocationId, product: ProductId) -> Option<i64> {
    let h = location
        .get()
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(product.get().wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
    match (h >> 59) % 8 {
        0 => None,
        n => Some(n as i64),
    }
}

fn ranking(c: &mut Criterion) {
    let sites = sites();
    let index = LocationIndex::new(sites.clone());
    let addresses = addresses();
    let lines = OrderLines::parse([(1, 1), (2, 2), (3, 1)]).expect("valid lines");

    // How much work a same-day decision does, to read the timings against.
    let same_day_sizes: Vec<usize> = addresses
        .iter()
        .map(|&address| {
            index
                .within(LocationKind::Store, address, SAME_DAY_RADIUS_KM)
                .len()
        })
        .collect();
    let with_any = same_day_sizes.iter().filter(|n| **n > 0).count();
    eprintln!(
        "index: {} sites; same-day within {SAME_DAY_RADIUS_KM} km: {:.1} stores on average, \
         max {}, {with_any}/{} addresses with at least one",
        index.len(),
        same_day_sizes.iter().sum::<usize>() as f64 / same_day_sizes.len() as f64,
        same_day_sizes.iter().max().copied().unwrap_or(0),
        same_day_sizes.len(),
    );

    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));

    group.bench_function("same_day_10km", |b| {
        let mut next = addresses.iter().cycle();
        b.iter(|| {
            let address = *next.next().expect("cycle never ends");
            let destination = Destination::SameDay {
                address,
                radius_km: SAME_DAY_RADIUS_KM,
            };
            let ranked = candidates(&index, black_box(&destination)).expect("same day never fails");
            let chosen = eligible(&ranked, &lines, available);
            black_box(chosen.first().copied())
        });
    });

    let index_with_hours = LocationIndex::new(sites_with_hours(&sites));
    let instants = instants();
    let in_window: usize = addresses
        .iter()
        .zip(instants.iter().cycle())
        .map(|(&address, &now)| {
            let destination = Destination::SameDay {
                address,
                radius_km: SAME_DAY_RADIUS_KM,
            };
            candidates_at(&index_with_hours, &destination, now)
                .expect("same day never fails")
                .len()
        })
        .sum();
    eprintln!(
        "with hours: {:.1} stores in their same-day window on average",
        in_window as f64 / addresses.len() as f64
    );

    group.bench_function("same_day_10km_with_hours", |b| {
        // Address i is asked at instant i mod 56, so each instant meets many places.
        let mut next = addresses.iter().zip(instants.iter().cycle()).cycle();
        b.iter(|| {
            let (&address, &now) = next.next().expect("cycle never ends");
            let destination = Destination::SameDay {
                address,
                radius_km: SAME_DAY_RADIUS_KM,
            };
            let ranked = candidates_at(&index_with_hours, black_box(&destination), now)
                .expect("same day never fails");
            let chosen = eligible(&ranked, &lines, available);
            black_box(chosen.first().copied())
        });
    });

    group.bench_function("normal", |b| {
        let mut next = addresses.iter().cycle();
        b.iter(|| {
            let address = *next.next().expect("cycle never ends");
            let destination = Destination::Normal { address };
            let ranked = candidates(&index, black_box(&destination)).expect("normal never fails");
            let chosen = eligible(&ranked, &lines, available);
            black_box(chosen.first().copied())
        });
    });

    group.bench_function("pickup", |b| {
        let mut rng = Lcg(0x0009_1c0b);
        let picks: Vec<(LocationId, Coordinates)> = (0..ADDRESSES)
            .map(|_| {
                let id = 1 + (rng.next_f64() * STORES as f64) as u64;
                (LocationId::new_unchecked(id.min(STORES)), rng.korea())
            })
            .collect();
        let mut next = picks.iter().cycle();
        b.iter(|| {
            let &(store, address) = next.next().expect("cycle never ends");
            let destination = Destination::Pickup {
                store,
                address: Some(address),
            };
            let ranked = candidates(&index, black_box(&destination)).expect("a known store");
            let chosen = eligible(&ranked, &lines, available);
            black_box(chosen.first().copied())
        });
    });
    group.finish();

    let mut group = c.benchmark_group("index");
    group.bench_function("build_5005_sites", |b| {
        b.iter_batched(
            || sites.clone(),
            |sites| black_box(LocationIndex::new(sites)),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, ranking);
criterion_main!(benches);
