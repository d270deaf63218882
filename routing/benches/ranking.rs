//! Ranking cost with a country-sized index: 5,000 stores spread over South Korea plus 5
//! warehouses, placed by a fixed pseudo-random sequence so every run measures the same world.
//!
//! Run with `cargo bench -p sf-routing --bench ranking`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sf_routing::{
    candidates, eligible, Coordinates, Destination, LocationId, LocationIndex, LocationKind,
    OrderLines, ProductId, Site,
};
use std::hint::black_box;

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
