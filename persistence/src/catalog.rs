//! Products and locations: MySQL queries, and the in-memory copies that pricing and routing read
//! on every order (no per-request catalogue query on the hot path).

use crate::error::{StorageError, StorageResult};
use crate::model::{Location, Page, Product, StockLevel};
use crate::Storage;
use sf_routing::{
    Coordinates, LocationId, LocationIndex, LocationKind, OrderLines, ProductId, Site,
};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Arc;

/// Active and inactive products by id.
#[derive(Debug, Default)]
pub struct Catalog {
    products: HashMap<ProductId, Product>,
    /// Active products by id, for pages served without a MySQL query.
    active: Vec<ProductId>,
    /// Which load this is (see [`Storage::refresh_catalog`]).
    load: u64,
}

/// All locations, and the routing index of the active ones.
#[derive(Debug, Default)]
pub struct Locations {
    pub all: Vec<Location>,
    pub index: LocationIndex,
    /// Which load this is (see [`Storage::refresh_locations`]).
    load: u64,
}

impl Locations {
    pub fn get(&self, id: LocationId) -> Option<&Location> {
        self.all.iter().find(|l| l.location_id == id.get())
    }
}

fn product_from_row(r: &sqlx::mysql::MySqlRow) -> StorageResult<Product> {
    Ok(Product {
        product_id: r.try_get("id")?,
        sku: r.try_get("sku")?,
        name: r.try_get("name")?,
        price: r.try_get("price")?,
        active: r.try_get("active")?,
    })
}

fn kind(s: &str) -> StorageResult<LocationKind> {
    LocationKind::parse(s).ok_or_else(|| StorageError::Internal(format!("bad location kind {s}")))
}

impl Storage {
    /// Reloads the products into memory (at start-up, after an operator's change, and on a timer
    /// so that several instances converge).
    ///
    /// Two loads can overlap (the timer and an explicit refresh): the one that started last read
    /// the newest rows, so an older load never replaces it.
    pub async fn refresh_catalog(&self) -> StorageResult<()> {
        let load = self.next_load();
        let rows = sqlx::query("SELECT id, sku, name, price, active FROM products")
            .fetch_all(&self.db)
            .await?;
        let mut products = HashMap::with_capacity(rows.len());
        let mut active = Vec::with_capacity(rows.len());
        for r in &rows {
            let p = product_from_row(r)?;
            if p.active {
                active.push(ProductId::new_unchecked(p.product_id));
            }
            products.insert(ProductId::new_unchecked(p.product_id), p);
        }
        active.sort_unstable();
        let mut current = self.catalog.write().expect("catalog lock");
        if current.load < load {
            *current = Arc::new(Catalog {
                products,
                active,
                load,
            });
        }
        Ok(())
    }

    /// A page of active products from the in-memory catalogue (the Redis read path: no MySQL
    /// query per request; the catalogue is at most a few seconds old on other instances).
    pub fn cached_products_page(&self, page: u32, size: u32) -> Page<Product> {
        let catalog = self.catalog.read().expect("catalog lock").clone();
        let start = (page as usize).saturating_mul(size as usize);
        Page {
            items: catalog
                .active
                .iter()
                .skip(start)
                .take(size as usize)
                .filter_map(|id| catalog.products.get(id).cloned())
                .collect(),
            total: catalog.active.len() as u64,
        }
    }

    /// Reloads the locations and rebuilds the routing index of the active ones. Like the
    /// catalogue, an older load never replaces a newer one.
    pub async fn refresh_locations(&self) -> StorageResult<()> {
        let load = self.next_load();
        let rows = sqlx::query(
            "SELECT id, CAST(kind AS CHAR) AS kind, name, latitude, longitude, active FROM locations ORDER BY id",
        )
        .fetch_all(&self.db)
        .await?;
        let mut all = Vec::with_capacity(rows.len());
        for r in &rows {
            all.push(Location {
                location_id: r.try_get("id")?,
                location_type: kind(r.try_get("kind")?)?,
                name: r.try_get("name")?,
                latitude: r.try_get("latitude")?,
                longitude: r.try_get("longitude")?,
                active: r.try_get("active")?,
            });
        }
        let index = LocationIndex::new(all.iter().filter(|l| l.active).filter_map(|l| {
            Some(Site {
                id: LocationId::new_unchecked(l.location_id),
                kind: l.location_type,
                name: l.name.clone(),
                coordinates: Coordinates::new(l.latitude, l.longitude).ok()?,
            })
        }));
        let mut current = self.locations.write().expect("locations lock");
        if current.load < load {
            *current = Arc::new(Locations { all, index, load });
        }
        Ok(())
    }

    /// Ids of every location, active or not (every one may have events in flight).
    pub fn all_location_ids(&self) -> Vec<LocationId> {
        self.locations()
            .all
            .iter()
            .map(|l| LocationId::new_unchecked(l.location_id))
            .collect()
    }

    pub fn locations(&self) -> Arc<Locations> {
        self.locations.read().expect("locations lock").clone()
    }

    pub fn catalog_product(&self, id: ProductId) -> Option<Product> {
        self.catalog
            .read()
            .expect("catalog lock")
            .products
            .get(&id)
            .cloned()
    }

    /// The server's prices for `products`, all of which must exist and be active.
    pub async fn prices(&self, lines: &OrderLines) -> StorageResult<Vec<i64>> {
        let price = |catalog: &Catalog, p: ProductId| {
            catalog
                .products
                .get(&p)
                .filter(|prod| prod.active)
                .map(|prod| prod.price)
                .ok_or(StorageError::UnknownProduct(p))
        };
        let catalog = self.catalog.read().expect("catalog lock").clone();
        if let Ok(prices) = lines.products().map(|p| price(&catalog, p)).collect() {
            return Ok(prices);
        }
        // Perhaps created on another instance since our last refresh.
        self.refresh_catalog().await?;
        let catalog = self.catalog.read().expect("catalog lock").clone();
        lines.products().map(|p| price(&catalog, p)).collect()
    }

    /// Active products by id, a page at a time (MySQL).
    pub async fn products_page(&self, page: u32, size: u32) -> StorageResult<Page<Product>> {
        self.in_time(self.db_deadline(), async {
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products WHERE active")
                .fetch_one(&self.db)
                .await?;
            let rows = sqlx::query(
                "SELECT id, sku, name, price, active FROM products WHERE active ORDER BY id LIMIT ? OFFSET ?",
            )
            .bind(size)
            .bind(u64::from(page) * u64::from(size))
            .fetch_all(&self.db)
            .await?;
            Ok(Page {
                items: rows
                    .iter()
                    .map(product_from_row)
                    .collect::<StorageResult<_>>()?,
                total: total as u64,
            })
        })
        .await
    }

    /// One active product and its on-hand stock at every active location (MySQL).
    pub async fn product_with_stock(
        &self,
        id: ProductId,
    ) -> StorageResult<(Product, Vec<StockLevel>)> {
        self.in_time(self.db_deadline(), async {
            let row = sqlx::query(
                "SELECT id, sku, name, price, active FROM products WHERE id = ? AND active",
            )
            .bind(id.get())
            .fetch_optional(&self.db)
            .await?
            .ok_or(StorageError::UnknownProduct(id))?;
            let product = product_from_row(&row)?;
            let rows = sqlx::query(
                "SELECT s.location_id, CAST(l.kind AS CHAR) AS kind, s.on_hand FROM stock s \
             JOIN locations l ON l.id = s.location_id WHERE s.product_id = ? AND l.active \
             ORDER BY s.location_id",
            )
            .bind(id.get())
            .fetch_all(&self.db)
            .await?;
            let stock = rows
                .iter()
                .map(|r| {
                    Ok(StockLevel {
                        location_id: r.try_get("location_id")?,
                        location_type: kind(r.try_get("kind")?)?,
                        quantity: r.try_get("on_hand")?,
                    })
                })
                .collect::<StorageResult<_>>()?;
            Ok((product, stock))
        })
        .await
    }
}

/// Fields an operator may change on a location; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct LocationChange {
    pub name: Option<String>,
    pub coordinates: Option<Coordinates>,
    pub active: Option<bool>,
}

/// Fields an operator may change on a product; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ProductChange {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub active: Option<bool>,
}

/// A unique-key violation becomes a client conflict here, in one place.
fn conflict_on_duplicate(e: sqlx::Error, what: impl FnOnce() -> String) -> StorageError {
    let e = StorageError::from(e);
    if e.is_duplicate_key() {
        StorageError::Conflict(what())
    } else {
        e
    }
}

impl Storage {
    /// Opens a warehouse or store. It takes part in routing at once on this instance, and within
    /// a few seconds on the others.
    pub async fn create_location(
        &self,
        kind: LocationKind,
        name: &str,
        at: Coordinates,
    ) -> StorageResult<Location> {
        self.in_time(self.db_deadline(), async {
            let id = sqlx::query(
                "INSERT INTO locations (kind, name, latitude, longitude) VALUES (?, ?, ?, ?)",
            )
            .bind(kind.as_str())
            .bind(name)
            .bind(at.latitude())
            .bind(at.longitude())
            .execute(&self.db)
            .await?
            .last_insert_id();
            self.refresh_locations().await?;
            self.locations()
                .get(LocationId::new_unchecked(id))
                .cloned()
                .ok_or(StorageError::UnknownLocation(LocationId::new_unchecked(id)))
        })
        .await
    }

    /// Renames, moves, deactivates or reactivates a location. A deactivated location is never
    /// chosen by routing; its stock and orders stay.
    pub async fn update_location(
        &self,
        id: LocationId,
        change: LocationChange,
    ) -> StorageResult<Location> {
        self.in_time(self.db_deadline(), async {
            sqlx::query(
                "UPDATE locations SET name = COALESCE(?, name), latitude = COALESCE(?, latitude), \
             longitude = COALESCE(?, longitude), active = COALESCE(?, active) WHERE id = ?",
            )
            .bind(change.name)
            .bind(change.coordinates.map(|c| c.latitude()))
            .bind(change.coordinates.map(|c| c.longitude()))
            .bind(change.active)
            .bind(id.get())
            .execute(&self.db)
            .await?;
            self.refresh_locations().await?;
            self.locations()
                .get(id)
                .cloned()
                .ok_or(StorageError::UnknownLocation(id))
        })
        .await
    }

    pub async fn create_product(
        &self,
        sku: &str,
        name: &str,
        price: i64,
    ) -> StorageResult<Product> {
        self.in_time(self.db_deadline(), async {
            let id = sqlx::query("INSERT INTO products (sku, name, price) VALUES (?, ?, ?)")
                .bind(sku)
                .bind(name)
                .bind(price)
                .execute(&self.db)
                .await
                .map_err(|e| {
                    conflict_on_duplicate(e, || {
                        format!("a product with SKU {sku:?} exists already")
                    })
                })?
                .last_insert_id();
            self.refresh_catalog().await?;
            self.catalog_product(ProductId::new_unchecked(id))
                .ok_or(StorageError::UnknownProduct(ProductId::new_unchecked(id)))
        })
        .await
    }

    /// Renames, reprices, deactivates or reactivates a product. A new price applies to orders
    /// placed from now on; a deactivated product cannot be ordered.
    pub async fn update_product(
        &self,
        id: ProductId,
        change: ProductChange,
    ) -> StorageResult<Product> {
        self.in_time(self.db_deadline(), async {
            sqlx::query(
                "UPDATE products SET name = COALESCE(?, name), price = COALESCE(?, price), \
             active = COALESCE(?, active) WHERE id = ?",
            )
            .bind(change.name)
            .bind(change.price)
            .bind(change.active)
            .bind(id.get())
            .execute(&self.db)
            .await?;
            self.refresh_catalog().await?;
            self.catalog_product(id)
                .ok_or(StorageError::UnknownProduct(id))
        })
        .await
    }
}
