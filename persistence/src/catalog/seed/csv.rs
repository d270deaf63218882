//! The CSV files the JMeter plans read, written from a seeded database.

use super::existing_demo_keys;
use crate::error::{StorageError, StorageResult};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sf_routing::LocationKind;
use sqlx::MySqlPool;
use std::io::Write;
use std::path::Path;

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
