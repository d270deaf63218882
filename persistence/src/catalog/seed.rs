//! Deterministic demo and benchmark data.
//!
//! - `demo`: 2 warehouses and 30 stores around Seoul, 200 products, stock for every
//!   (product, location), and one POS key per store.
//! - `bench`: 5 warehouses and 45 stores, 10,000 products: 500,000 stock rows.
//!
//! The same profile always yields the same rows (a fixed random seed), so figures from different
//! runs compare. Demo POS keys are derived from the store id (`sfk_demo_<storeId>`): they are for
//! local trials only, and an operator issues real ones through the admin API.

use crate::error::{Refusal, StorageError, StorageResult};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sf_routing::LocationKind;
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

/// What a seeding run did.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub skipped: bool,
    pub locations: usize,
    pub products: usize,
    pub stock_rows: usize,
    /// `(storeId, store name, demo key)`.
    pub store_keys: Vec<(u64, String, String)>,
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
    let mut locs: Vec<(String, LocationKind, f64, f64)> = Vec::new();
    for i in 0..n_wh {
        let (name, lat, lon) = WAREHOUSES[i % WAREHOUSES.len()];
        locs.push((name.to_owned(), LocationKind::Warehouse, lat, lon));
    }
    for i in 0..n_st {
        let (name, lat, lon) = STORES[i % STORES.len()];
        if i < STORES.len() {
            locs.push((name.to_owned(), LocationKind::Store, lat, lon));
        } else {
            // Beyond the named list: a second branch nearby.
            let dlat = rng.gen_range(-0.02..0.02);
            let dlon = rng.gen_range(-0.02..0.02);
            locs.push((
                format!("{name} 2"),
                LocationKind::Store,
                lat + dlat,
                lon + dlon,
            ));
        }
    }
    QueryBuilder::new("INSERT INTO locations (kind, name, latitude, longitude) ")
        .push_values(&locs, |mut row, (name, kind, lat, lon)| {
            row.push_bind(kind.as_str())
                .push_bind(name)
                .push_bind(lat)
                .push_bind(lon);
        })
        .build()
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
