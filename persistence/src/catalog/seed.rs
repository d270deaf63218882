//! Deterministic demo and benchmark data.
//!
//! - `demo`: 2 warehouses and 30 stores around Seoul, 200 products, stock for every
//!   (product, location), and one POS key per store. A few stores keep hours of their own
//!   ([`DEMO_HOURS`]), one of them closed today.
//! - `bench`: 5 warehouses and 45 stores, 10,000 products: 500,000 stock rows. Every location is
//!   open around the clock, as in runs from before calendars, so figures still compare.
//!
//! The same profile always yields the same rows (a fixed random seed), so figures from different
//! runs compare; the one exception is the demo's closed date, which is the day of seeding. Demo
//! POS keys are derived from the store id (`sfk_demo_<storeId>`), and both profiles have one
//! sales channel, `web`, with the key [`DEMO_CHANNEL_KEY`]: they are for local trials only, and
//! an operator issues real ones through the admin API.

use crate::error::{Refusal, StorageError, StorageResult};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sf_routing::{Calendar, CalendarSpec, LocationKind, OpeningHoursSpec};
use sqlx::{MySqlPool, QueryBuilder};
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Demo,
    Bench,
}

impl Profile {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "demo" => Some(Self::Demo),
            "bench" => Some(Self::Bench),
            _ => None,
        }
    }
    fn sizes(self) -> (usize, usize, usize) {
        // (warehouses, stores, products)
        match self {
            Self::Demo => (2, 30, 200),
            Self::Bench => (5, 45, 10_000),
        }
    }
}

/// Seoul-area logistics centers and neighbourhoods, with their real coordinates.
const WAREHOUSES: &[(&str, f64, f64)] = &[
    ("Icheon Logistics Center", 37.2792, 127.4425),
    ("Gimpo Logistics Center", 37.6152, 126.7156),
    ("Yongin Logistics Center", 37.2411, 127.1776),
    ("Namyangju Logistics Center", 37.6360, 127.2165),
    ("Pyeongtaek Logistics Center", 36.9921, 127.1129),
];

const STORES: &[(&str, f64, f64)] = &[
    ("Gangnam Station", 37.4979, 127.0276),
    ("Hongdae", 37.5563, 126.9236),
    ("Myeongdong", 37.5636, 126.9826),
    ("Jamsil", 37.5133, 127.1001),
    ("Yeouido", 37.5219, 126.9245),
    ("Sinchon", 37.5551, 126.9368),
    ("Konkuk University", 37.5404, 127.0692),
    ("Itaewon", 37.5345, 126.9946),
    ("Apgujeong", 37.5270, 127.0286),
    ("Jongno 3-ga", 37.5704, 126.9921),
    ("Dongdaemun", 37.5714, 127.0095),
    ("Seoul Station", 37.5547, 126.9707),
    ("Yongsan", 37.5299, 126.9648),
    ("Mapo", 37.5440, 126.9516),
    ("Mok-dong", 37.5265, 126.8750),
    ("Guro Digital Complex", 37.4852, 126.9015),
    ("Sillim", 37.4842, 126.9297),
    ("Sadang", 37.4766, 126.9816),
    ("Seocho", 37.4837, 127.0324),
    ("Samseong", 37.5089, 127.0631),
    ("Seongsu", 37.5446, 127.0557),
    ("Wangsimni", 37.5612, 127.0380),
    ("Cheongnyangni", 37.5802, 127.0470),
    ("Nowon", 37.6551, 127.0613),
    ("Suyu", 37.6380, 127.0257),
    ("Yeonsinnae", 37.6190, 126.9210),
    ("Magok", 37.5602, 126.8254),
    ("Cheonho", 37.5386, 127.1236),
    ("Pangyo", 37.3948, 127.1112),
    ("Bundang Seohyeon", 37.3850, 127.1233),
];

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

/// Seeds `profile` into an empty database. With `if_empty`, a database that has products already
/// is left alone (and its demo keys are still reported).
pub async fn seed(
    db: &MySqlPool,
    profile: Profile,
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
    let (n_wh, n_st, n_prod) = profile.sizes();
    let mut rng = StdRng::seed_from_u64(20_261_124);
    let mut tx = db.begin().await?;

    progress(&format!("locations: {n_wh} warehouses, {n_st} stores"));
    // The day of seeding where the demo stores are: the one closed date of the demo.
    let today = jiff::Timestamp::now()
        .to_zoned(Calendar::default().time_zone().clone())
        .date();
    let mut locs: Vec<(String, LocationKind, f64, f64, Option<String>)> = Vec::new();
    for i in 0..n_wh {
        let (name, lat, lon) = WAREHOUSES[i % WAREHOUSES.len()];
        locs.push((name.to_owned(), LocationKind::Warehouse, lat, lon, None));
    }
    for i in 0..n_st {
        let (name, lat, lon) = STORES[i % STORES.len()];
        if i < STORES.len() {
            let calendar = match profile {
                Profile::Demo => demo_calendar(name, today)?,
                Profile::Bench => None,
            };
            locs.push((name.to_owned(), LocationKind::Store, lat, lon, calendar));
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
    QueryBuilder::new("INSERT INTO locations (kind, name, latitude, longitude, calendar) ")
        .push_values(&locs, |mut row, (name, kind, lat, lon, calendar)| {
            row.push_bind(kind.as_str())
                .push_bind(name)
                .push_bind(lat)
                .push_bind(lon)
                .push_bind(calendar);
        })
        .build()
        .execute(&mut *tx)
        .await?;
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

    let total = ids.len() * n_prod;
    progress(&format!("stock: {total} rows"));
    let mut rows: Vec<(u64, u64, i64)> = Vec::with_capacity(5000);
    let mut written = 0;
    for SeededLocation { id: loc, kind } in &ids {
        for p in 1..=n_prod as u64 {
            let qty = if *kind == LocationKind::Warehouse {
                rng.gen_range(200..=1000)
            } else {
                rng.gen_range(0..=40)
            };
            rows.push((*loc, p, qty));
            if rows.len() == 5000 {
                insert_stock(&mut tx, &rows).await?;
                written += rows.len();
                rows.clear();
                if written % 100_000 == 0 {
                    progress(&format!("stock: {written}/{total} rows"));
                }
            }
        }
    }
    insert_stock(&mut tx, &rows).await?;

    let mut store_keys = Vec::new();
    for (SeededLocation { id, kind }, (name, ..)) in ids.iter().zip(&locs) {
        if *kind == LocationKind::Store {
            let key = demo_key(*id);
            sqlx::query("INSERT INTO store_keys (store_id, key_hash, label) VALUES (?, ?, 'demo')")
                .bind(id)
                .bind(crate::catalog::credentials::hash_key(&key))
                .execute(&mut *tx)
                .await?;
            store_keys.push((*id, name.clone(), key));
        }
    }
    tx.commit().await?;
    Ok(SeedReport {
        skipped: false,
        locations: ids.len(),
        products: n_prod,
        stock_rows: total,
        store_keys,
        channel: Some(demo_channel(db).await?),
    })
}

async fn insert_stock(
    tx: &mut sqlx::MySqlConnection,
    rows: &[(u64, u64, i64)],
) -> StorageResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    QueryBuilder::new("INSERT INTO stock (location_id, product_id, available, initial_quantity) ")
        .push_values(rows, |mut row, (l, p, qty)| {
            row.push_bind(l).push_bind(p).push_bind(qty).push_bind(qty);
        })
        .build()
        .execute(&mut *tx)
        .await?;
    Ok(())
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

/// A product as the CSV files list it.
#[derive(sqlx::FromRow)]
struct CsvProduct {
    id: u64,
    sku: String,
    price: i64,
}

/// An active location as the CSV files list it.
#[derive(sqlx::FromRow)]
struct CsvLocation {
    id: u64,
    kind: LocationKind,
    name: String,
    latitude: f64,
    longitude: f64,
}

/// Writes the CSV files the JMeter plans read: products, warehouses, stores, store keys, and
/// delivery addresses around the stores.
pub async fn write_csv(db: &MySqlPool, dir: &Path) -> StorageResult<()> {
    let io = |e: std::io::Error| StorageError::internal(format!("writing {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let products: Vec<CsvProduct> =
        sqlx::query_as("SELECT id, sku, price FROM products WHERE active ORDER BY id")
            .fetch_all(db)
            .await?;
    let mut f = std::fs::File::create(dir.join("products.csv")).map_err(io)?;
    writeln!(f, "productId,sku,price").map_err(io)?;
    for CsvProduct { id, sku, price } in &products {
        writeln!(f, "{id},{sku},{price}").map_err(io)?;
    }
    let locs: Vec<CsvLocation> = sqlx::query_as(
        "SELECT id, CAST(kind AS CHAR) AS kind, name, latitude, longitude FROM locations \
         WHERE active ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    for (kind, file) in [
        (LocationKind::Warehouse, "warehouses.csv"),
        (LocationKind::Store, "stores.csv"),
    ] {
        let mut f = std::fs::File::create(dir.join(file)).map_err(io)?;
        writeln!(f, "locationId,name,latitude,longitude").map_err(io)?;
        for l in locs.iter().filter(|l| l.kind == kind) {
            writeln!(f, "{},{},{},{}", l.id, l.name, l.latitude, l.longitude).map_err(io)?;
        }
    }
    let mut f = std::fs::File::create(dir.join("store_keys.csv")).map_err(io)?;
    writeln!(f, "storeId,storeKey").map_err(io)?;
    for (id, _, key) in existing_demo_keys(db).await? {
        writeln!(f, "{id},{key}").map_err(io)?;
    }
    let mut rng = StdRng::seed_from_u64(7);
    let stores: Vec<_> = locs
        .iter()
        .filter(|l| l.kind == LocationKind::Store)
        .collect();
    let mut f = std::fs::File::create(dir.join("addresses.csv")).map_err(io)?;
    writeln!(f, "latitude,longitude,nearStoreId").map_err(io)?;
    for _ in 0..1000 {
        if stores.is_empty() {
            break;
        }
        let s = stores[rng.gen_range(0..stores.len())];
        let lat = s.latitude + rng.gen_range(-0.03..0.03);
        let lon = s.longitude + rng.gen_range(-0.03..0.03);
        writeln!(f, "{lat:.5},{lon:.5},{}", s.id).map_err(io)?;
    }
    Ok(())
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
