//! Deterministic demo, benchmark and retail-size data.
//!
//! - `demo`: 2 warehouses and 30 stores around Seoul, 200 products, stock for every
//!   (product, location), and one POS key per store. A few stores keep hours of their own
//!   ([`DEMO_HOURS`]), one of them closed today.
//! - `bench`: 5 warehouses and 45 stores, 10,000 products: 500,000 stock rows. Every location is
//!   open around the clock, as in runs from before calendars, so figures still compare.
//! - `retail`: a national chain's size: 10 warehouses and 1,300 stores, 10,000 products: 13.1
//!   million stock rows. The stores are the demo's 30 in Seoul, then branches scattered around
//!   Korean cities ([`CITIES`], real coordinates), as many per city as its weight says. Open
//!   around the clock, like the bench profile. Tests seed it at a reduced size ([`Sizes`]).
//!
//! The same profile and sizes always yield the same rows (a fixed random seed), so figures from
//! different runs compare; the one exception is the demo's closed date, which is the day of
//! seeding. Demo POS keys are derived from the store id (`sfk_demo_<storeId>`), and every profile
//! has one sales channel, `web`, with the key [`DEMO_CHANNEL_KEY`]: they are for local trials only,
//! and an operator issues real ones through the admin API.
//!
//! Stock rows go in product by product (the table's primary key), in statements of many rows,
//! several at once and each committed on its own, with the (location, product) key built after
//! them: 13.1 million rows would otherwise update that key at random places row by row.

mod csv;
mod places;
pub use csv::write_csv;
use places::{CITIES, STORES, WAREHOUSES};

use crate::error::{Refusal, StorageError, StorageResult};
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sf_routing::{Calendar, CalendarSpec, LocationKind, OpeningHoursSpec};
use sqlx::{MySqlPool, QueryBuilder};
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Demo,
    Bench,
    Retail,
}

/// How many locations and products a seed makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub warehouses: usize,
    pub stores: usize,
    pub products: usize,
}

impl Sizes {
    pub fn stock_rows(&self) -> usize {
        (self.warehouses + self.stores) * self.products
    }
}

impl Profile {
    pub const NAMES: [&'static str; 3] = ["demo", "bench", "retail"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "demo" => Some(Self::Demo),
            "bench" => Some(Self::Bench),
            "retail" => Some(Self::Retail),
            _ => None,
        }
    }

    /// The profile's own sizes.
    pub fn sizes(self) -> Sizes {
        let (warehouses, stores, products) = match self {
            Self::Demo => (2, 30, 200),
            Self::Bench => (5, 45, 10_000),
            Self::Retail => (10, 1_300, 10_000),
        };
        Sizes {
            warehouses,
            stores,
            products,
        }
    }
}

/// A demo store's hours: the same range on each of `days`.
struct DemoHours {
    store: &'static str,
    opens: &'static str,
    closes: &'static str,
    days: &'static [&'static str],
    cutoff: Option<&'static str>,
    preparation_minutes: Option<i64>,
}

const fn hours(store: &'static str, opens: &'static str, closes: &'static str) -> DemoHours {
    DemoHours {
        store,
        opens,
        closes,
        days: ALL_WEEK,
        cutoff: None,
        preparation_minutes: None,
    }
}

/// Demo stores with hours of their own. Every other location is open around the clock, among
/// them stores 3 and 4 (Gangnam Station, Hongdae), whose same-day and pickup orders
/// `ops/demo-orders` places at any hour.
const DEMO_HOURS: &[DemoHours] = &[
    // The store nearest the README's same-day address (Seoul City Hall); closed on the day of
    // seeding (see `DEMO_CLOSED_TODAY`), so a same-day order there goes to the next store.
    hours("Myeongdong", "10:00", "22:00"),
    DemoHours {
        cutoff: Some("20:00"),
        ..hours("Jongno 3-ga", "10:00", "22:00")
    },
    hours("Apgujeong", "10:00", "22:00"),
    DemoHours {
        cutoff: Some("21:00"),
        preparation_minutes: Some(20),
        ..hours("Yeouido", "11:00", "24:00")
    },
    // Closing early, with an earlier cut-off (and, at Seoul Station, a longer preparation and
    // no Sunday opening).
    DemoHours {
        days: WORKING_WEEK,
        cutoff: Some("16:00"),
        preparation_minutes: Some(60),
        ..hours("Seoul Station", "10:00", "18:00")
    },
    DemoHours {
        cutoff: Some("15:00"),
        ..hours("Itaewon", "10:00", "18:00")
    },
];
const ALL_WEEK: &[&str] = &["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
const WORKING_WEEK: &[&str] = &["MON", "TUE", "WED", "THU", "FRI", "SAT"];
/// The demo store closed on the day it is seeded.
const DEMO_CLOSED_TODAY: &str = "Myeongdong";

/// The stored calendar of a demo store (JSON, as the `calendar` column holds it), or `None` for
/// one open around the clock. `today` is a date in the calendars' zone, Asia/Seoul.
fn demo_calendar(name: &str, today: jiff::civil::Date) -> StorageResult<Option<String>> {
    let Some(h) = DEMO_HOURS.iter().find(|h| h.store == name) else {
        return Ok(None);
    };
    let spec = CalendarSpec {
        time_zone: None,
        opening_hours: h
            .days
            .iter()
            .map(|day| OpeningHoursSpec {
                day: (*day).into(),
                opens: h.opens.into(),
                closes: h.closes.into(),
            })
            .collect(),
        closed_dates: if name == DEMO_CLOSED_TODAY {
            vec![today.to_string()]
        } else {
            vec![]
        },
        same_day_cutoff: h.cutoff.map(Into::into),
        pickup_preparation_minutes: h.preparation_minutes,
    };
    let calendar = Calendar::parse(&spec)
        .map_err(|e| StorageError::internal(format!("demo calendar of {name}: {e}")))?;
    super::calendars::to_column(&calendar)
}

/// What a seeding run did.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub skipped: bool,
    pub locations: usize,
    pub products: usize,
    pub stock_rows: usize,
    /// The demo channel's id and key.
    pub channel: Option<(u64, String)>,
    /// `(storeId, store name, demo key)`.
    pub store_keys: Vec<(u64, String, String)>,
}

/// The demo sales channel's key, for `Authorization: Bearer` on the shop's routes.
pub const DEMO_CHANNEL_KEY: &str = "sfc_demo_web";

/// The demo sales channel (`web`) and its key, created when missing (a database seeded before
/// channels gets them too); answers the channel's id.
async fn demo_channel(db: &MySqlPool) -> StorageResult<(u64, String)> {
    sqlx::query("INSERT IGNORE INTO channels (name) VALUES ('web')")
        .execute(db)
        .await?;
    let id: u64 = sqlx::query_scalar("SELECT id FROM channels WHERE name = 'web'")
        .fetch_one(db)
        .await?;
    sqlx::query(
        "INSERT IGNORE INTO channel_keys (channel_id, key_hash, label) VALUES (?, ?, 'demo')",
    )
    .bind(id)
    .bind(crate::catalog::credentials::hash_key(DEMO_CHANNEL_KEY))
    .execute(db)
    .await?;
    Ok((id, DEMO_CHANNEL_KEY.to_owned()))
}

pub fn demo_key(store_id: u64) -> String {
    format!("sfk_demo_{store_id}")
}

/// Seeds `profile` at `sizes` (the profile's own: [`Profile::sizes`]) into an empty database.
/// With `if_empty`, a database that has products already is left alone (and its demo keys are
/// still reported).
pub async fn seed(
    db: &MySqlPool,
    profile: Profile,
    sizes: Sizes,
    if_empty: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> StorageResult<SeedReport> {
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(db)
        .await?;
    if existing > 0 {
        if if_empty {
            let mut report = SeedReport {
                skipped: true,
                ..SeedReport::default()
            };
            report.store_keys = existing_demo_keys(db).await?;
            report.channel = Some(demo_channel(db).await?);
            return Ok(report);
        }
        return Err(Refusal::Conflict(format!(
            "the database already has {existing} products; seed an empty database (or pass --if-empty)"
        )).into());
    }
    let Sizes {
        warehouses: n_wh,
        stores: n_st,
        products: n_prod,
    } = sizes;
    let mut rng = StdRng::seed_from_u64(20_261_124);
    let mut tx = crate::infra::mysql::begin(db).await?;

    progress(&format!("locations: {n_wh} warehouses, {n_st} stores"));
    let locs = locations(profile, sizes, &mut rng)?;
    for chunk in locs.chunks(1000) {
        QueryBuilder::new("INSERT INTO locations (kind, name, latitude, longitude, calendar) ")
            .push_values(chunk, |mut row, (name, kind, lat, lon, calendar)| {
                row.push_bind(kind.as_str())
                    .push_bind(name)
                    .push_bind(lat)
                    .push_bind(lon)
                    .push_bind(calendar);
            })
            .build()
            .execute(&mut *tx)
            .await?;
    }
    // Stores warn of low stock (`stock.low`) at 5 sellable units.
    sqlx::query("UPDATE locations SET low_stock_threshold = 5 WHERE kind = 'STORE'")
        .execute(&mut *tx)
        .await?;
    let ids: Vec<SeededLocation> =
        sqlx::query_as("SELECT id, CAST(kind AS CHAR) AS kind FROM locations ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;

    progress(&format!("products: {n_prod}"));
    const CATEGORIES: &[&str] = &[
        "Sneakers",
        "T-shirt",
        "Hoodie",
        "Backpack",
        "Water Bottle",
        "Headphones",
        "Notebook",
        "Umbrella",
        "Cap",
        "Socks",
        "Jacket",
        "Tumbler",
        "Phone Case",
        "Charger",
        "Sunglasses",
    ];
    const COLOURS: &[&str] = &["Black", "White", "Navy", "Red", "Olive", "Grey", "Beige"];
    for chunk in (1..=n_prod).collect::<Vec<_>>().chunks(2000) {
        QueryBuilder::new("INSERT INTO products (id, sku, name, price) ")
            .push_values(chunk, |mut row, i| {
                let cat = CATEGORIES[i % CATEGORIES.len()];
                let colour = COLOURS[(i / CATEGORIES.len()) % COLOURS.len()];
                let price = rng.gen_range(5..=150) * 1000;
                row.push_bind(*i as u64)
                    .push_bind(format!("SF-{i:06}"))
                    .push_bind(format!("{colour} {cat} #{i}"))
                    .push_bind(price as i64);
            })
            .build()
            .execute(&mut *tx)
            .await?;
    }

    let mut store_keys = Vec::new();
    let mut keys = Vec::new();
    for (SeededLocation { id, kind }, (name, ..)) in ids.iter().zip(&locs) {
        if *kind == LocationKind::Store {
            let key = demo_key(*id);
            keys.push((*id, crate::catalog::credentials::hash_key(&key)));
            store_keys.push((*id, name.clone(), key));
        }
    }
    for chunk in keys.chunks(1000) {
        QueryBuilder::new("INSERT INTO store_keys (store_id, key_hash, label) ")
            .push_values(chunk, |mut row, (id, hash)| {
                row.push_bind(id).push_bind(hash).push_bind("demo");
            })
            .build()
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;

    // Each (location, product)'s figure, drawn location by location (the order every profile
    // has drawn them in since the first, so the bench data stays what it was).
    let mut quantity: Vec<u16> = Vec::with_capacity(ids.len() * n_prod);
    for SeededLocation { kind, .. } in &ids {
        for _ in 0..n_prod {
            quantity.push(if *kind == LocationKind::Warehouse {
                rng.gen_range(200..=1000)
            } else {
                rng.gen_range(0..=40)
            });
        }
    }
    let total = ids.len() * n_prod;
    progress(&format!("stock: {total} rows"));
    load_stock(db, &ids, n_prod, &quantity, progress).await?;

    Ok(SeedReport {
        skipped: false,
        locations: ids.len(),
        products: n_prod,
        stock_rows: total,
        store_keys,
        channel: Some(demo_channel(db).await?),
    })
}

/// Stock rows per statement of the load.
const STOCK_ROWS_PER_STATEMENT: usize = 10_000;
/// Statements of the load under way at once.
const STOCK_STATEMENTS_AT_ONCE: usize = 3;

/// Inserts the stock rows, `quantity` holding each (location, product)'s figure location by
/// location. The rows go in product by product, the primary key's order, in statements of
/// [`STOCK_ROWS_PER_STATEMENT`], [`STOCK_STATEMENTS_AT_ONCE`] at a time, each committed on its own;
/// the (location, product) key is dropped for the load and built once after it (also when the load
/// fails: a half-seeded database is dropped, not used, but must not lack the key).
async fn load_stock(
    db: &MySqlPool,
    ids: &[SeededLocation],
    n_prod: usize,
    quantity: &[u16],
    progress: &(dyn Fn(&str) + Sync),
) -> StorageResult<()> {
    if quantity.is_empty() {
        return Ok(());
    }
    // The foreign keys need no check (every id was just read back) and the location key's
    // foreign key lets its index go only so.
    let mut admin = db.acquire().await?;
    sqlx::raw_sql(
        "SET SESSION foreign_key_checks = 0; \
         ALTER TABLE stock DROP KEY uq_stock_location_product; \
         SET SESSION foreign_key_checks = 1",
    )
    .execute(&mut *admin)
    .await?;
    let per_statement = (STOCK_ROWS_PER_STATEMENT / ids.len()).max(1);
    let total = quantity.len();
    let written = std::sync::atomic::AtomicUsize::new(0);
    let reported = std::sync::atomic::AtomicUsize::new(0);
    let statements = (1..=n_prod).step_by(per_statement).map(|first| {
        let last = (first + per_statement - 1).min(n_prod);
        let mut sql = String::with_capacity((last - first + 1) * ids.len() * 24 + 100);
        sql.push_str(
            "SET SESSION foreign_key_checks = 0; INSERT INTO stock \
             (location_id, product_id, available, initial_quantity) VALUES ",
        );
        let mut rows = 0;
        for p in first..=last {
            for (li, loc) in ids.iter().enumerate() {
                let q = quantity[li * n_prod + (p - 1)];
                if rows > 0 {
                    sql.push(',');
                }
                let _ = write!(sql, "({},{p},{q},{q})", loc.id);
                rows += 1;
            }
        }
        sql.push_str("; SET SESSION foreign_key_checks = 1");
        (sql, rows)
    });
    let loaded = futures::stream::iter(statements)
        .map(|(sql, rows)| {
            let (written, reported) = (&written, &reported);
            async move {
                sqlx::raw_sql(&sql).execute(db).await?;
                use std::sync::atomic::Ordering::Relaxed;
                let now = written.fetch_add(rows, Relaxed) + rows;
                // A line per tenth, and at the end.
                let step = (total / 10).max(1);
                let due = now / step;
                if reported.fetch_max(due, Relaxed) < due {
                    progress(&format!("stock: {now}/{total} rows"));
                }
                Ok::<_, StorageError>(())
            }
        })
        .buffer_unordered(STOCK_STATEMENTS_AT_ONCE)
        .try_collect::<()>()
        .await;
    progress("stock: building the (location, product) key");
    let keyed = sqlx::query(
        "ALTER TABLE stock ADD UNIQUE KEY uq_stock_location_product (location_id, product_id)",
    )
    .execute(&mut *admin)
    .await;
    loaded?;
    keyed?;
    Ok(())
}

/// A location to seed: name, kind, latitude, longitude, calendar (JSON).
type NewLocation = (String, LocationKind, f64, f64, Option<String>);

/// The locations of `profile` at `sizes`.
fn locations(profile: Profile, sizes: Sizes, rng: &mut StdRng) -> StorageResult<Vec<NewLocation>> {
    // The day of seeding where the demo stores are: the one closed date of the demo.
    let today = jiff::Timestamp::now()
        .to_zoned(Calendar::default().time_zone().clone())
        .date();
    let mut locs = Vec::with_capacity(sizes.warehouses + sizes.stores);
    for i in 0..sizes.warehouses {
        let (name, lat, lon) = WAREHOUSES[i % WAREHOUSES.len()];
        let name = match i / WAREHOUSES.len() {
            0 => name.to_owned(),
            n => format!("{name} {}", n + 1),
        };
        locs.push((name, LocationKind::Warehouse, lat, lon, None));
    }
    let city_weights: u32 = CITIES.iter().map(|c| c.3).sum();
    let mut per_city = vec![0u32; CITIES.len()];
    for i in 0..sizes.stores {
        let (name, lat, lon) = STORES[i % STORES.len()];
        if i < STORES.len() {
            let calendar = match profile {
                Profile::Demo => demo_calendar(name, today)?,
                Profile::Bench | Profile::Retail => None,
            };
            locs.push((name.to_owned(), LocationKind::Store, lat, lon, calendar));
        } else if profile == Profile::Retail {
            // A branch around a city drawn by weight, within about 5 km of its centre.
            let mut draw = rng.gen_range(0..city_weights);
            let c = CITIES
                .iter()
                .position(|c| {
                    let hit = draw < c.3;
                    draw = draw.saturating_sub(c.3);
                    hit
                })
                .expect("a draw below the sum of the weights");
            let (city, lat, lon, _) = CITIES[c];
            per_city[c] += 1;
            let dlat = rng.gen_range(-0.045..0.045);
            let dlon = rng.gen_range(-0.055..0.055);
            locs.push((
                format!("{city} {}", per_city[c]),
                LocationKind::Store,
                lat + dlat,
                lon + dlon,
                None,
            ));
        } else {
            // Beyond the named list: a second branch nearby.
            let dlat = rng.gen_range(-0.02..0.02);
            let dlon = rng.gen_range(-0.02..0.02);
            locs.push((
                format!("{name} 2"),
                LocationKind::Store,
                lat + dlat,
                lon + dlon,
                None,
            ));
        }
    }
    Ok(locs)
}

/// A location as the seed reads it back, with the id MySQL gave it.
#[derive(sqlx::FromRow)]
struct SeededLocation {
    id: u64,
    kind: LocationKind,
}

/// A store with a demo key.
#[derive(sqlx::FromRow)]
struct DemoStore {
    id: u64,
    name: String,
}

async fn existing_demo_keys(db: &MySqlPool) -> StorageResult<Vec<(u64, String, String)>> {
    let stores: Vec<DemoStore> = sqlx::query_as(
        "SELECT l.id, l.name FROM locations l JOIN store_keys k ON k.store_id = l.id \
         WHERE k.label = 'demo' AND k.revoked_at IS NULL GROUP BY l.id, l.name ORDER BY l.id",
    )
    .fetch_all(db)
    .await?;
    Ok(stores
        .into_iter()
        .map(|s| (s.id, s.name, demo_key(s.id)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_closes_one_store_on_the_day_of_seeding_and_leaves_the_others_open_around_the_clock()
    {
        let today = jiff::civil::date(2026, 12, 7);
        let closed = demo_calendar(DEMO_CLOSED_TODAY, today).unwrap().unwrap();
        assert!(
            closed.contains(r#""closedDates":["2026-12-07"]"#),
            "{closed}"
        );
        let early = demo_calendar("Seoul Station", today).unwrap().unwrap();
        assert_eq!(
            early,
            r#"{"timeZone":"Asia/Seoul","openingHours":[{"day":"MON","opens":"10:00","closes":"18:00"},{"day":"TUE","opens":"10:00","closes":"18:00"},{"day":"WED","opens":"10:00","closes":"18:00"},{"day":"THU","opens":"10:00","closes":"18:00"},{"day":"FRI","opens":"10:00","closes":"18:00"},{"day":"SAT","opens":"10:00","closes":"18:00"}],"closedDates":[],"sameDayCutoff":"16:00","pickupPreparationMinutes":60}"#
        );
        assert_eq!(demo_calendar("Sinchon", today).unwrap(), None);
        for h in DEMO_HOURS {
            let name = h.store;
            assert!(
                STORES.iter().any(|s| s.0 == name),
                "{name} is not a demo store"
            );
        }
    }
}
