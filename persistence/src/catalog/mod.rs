//! Products and locations: MySQL queries, and the in-memory copies that pricing and routing read
//! on every order (no per-request catalogue query on the hot path).
//!
//! The shop's product pages read here too: a list page (each product with its stock summed over
//! the active locations) and a product with its stock per active location, from MySQL or from
//! Redis. Every answer holds the figures as they were after its request arrived: concurrent
//! requests for the same page share one read that starts after they all arrived
//! ([`ReadGroups`]), and the Redis pages read through a copy of the stock keys that Redis itself
//! keeps exact ([`StockMirror`]). Nothing is served from a cache that could be stale.

pub mod credentials;
pub mod seed;

pub use credentials::IssuedKey;

use crate::error::{Dependency, StorageError, StorageResult};
use crate::model::{Location, Page, Product, StockLevel, StockSource};
use crate::Storage;
use sf_routing::{
    Coordinates, LocationId, LocationIndex, LocationKind, OrderLines, ProductId, Site,
};
use sqlx::Row;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Active and inactive products by id.
#[derive(Debug, Default)]
pub struct Catalog {
    products: HashMap<ProductId, Product>,
    /// Active products by id, for pages served without a MySQL query.
    active: Vec<ProductId>,
    /// Which load this is (see [`Storage::refresh_catalog`]).
    load: u64,
    /// Product-page reads in flight over this load of the catalogue (a reload starts new groups).
    reads: PageReads,
    /// What the Redis product pages read Redis's stock through. It lives as long as the storage:
    /// each load of the catalogue takes it over.
    mirror: Arc<StockMirror>,
}

/// The product-page reads that requests arriving together share, by what they read.
#[derive(Debug, Default)]
struct PageReads {
    /// MySQL list pages by (`after`, `limit`).
    mysql_lists: ReadGroups<(u64, u32), ProductsAfter>,
    /// Redis list pages by their range in [`Catalog::active`].
    redis_lists: ReadGroups<(usize, usize), ProductsAfter>,
    mysql_products: ReadGroups<ProductId, ProductStock>,
    redis_products: ReadGroups<ProductId, ProductStock>,
}

/// All locations, and the routing index of the active ones.
#[derive(Debug, Default)]
pub struct Locations {
    pub all: Vec<Location>,
    pub index: LocationIndex,
    /// The active locations by id: where product pages show stock.
    active: Vec<(LocationId, LocationKind)>,
    /// Which load this is (see [`Storage::refresh_locations`]).
    load: u64,
}

impl Locations {
    pub fn get(&self, id: LocationId) -> Option<&Location> {
        self.all.iter().find(|l| l.location_id == id.get())
    }
}

/// A product as a list page shows it: its stock summed over the active locations instead of the
/// stock per location.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedProduct {
    pub product_id: u64,
    pub name: String,
    pub price: i64,
    /// The sum over the active locations (a location's figure counts as 0 when it is below 0: it
    /// sells nothing).
    pub total_quantity: i64,
}

/// Active products in id order after a cursor (keyset pagination: no count, no offset).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductsAfter {
    pub items: Vec<ListedProduct>,
    /// The cursor of the next page (the id of this page's last product), `None` on the last page.
    pub next: Option<u64>,
    pub source: StockSource,
}

/// One active product with its stock at every active location, by location id.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductStock {
    pub product: Product,
    pub stock: Vec<StockLevel>,
    pub source: StockSource,
}

impl ProductStock {
    /// The sum over the locations, as a list page shows it.
    pub fn total_quantity(&self) -> i64 {
        total(self.stock.iter().map(|s| s.quantity))
    }
}

/// Stock summed over locations; a figure below 0 (Redis after a change taken back, until its
/// re-sync) sells nothing and counts as 0.
fn total(quantities: impl Iterator<Item = i64>) -> i64 {
    quantities.map(|q| q.max(0)).sum()
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
                reads: PageReads::default(),
                mirror: current.mirror.clone(),
            });
        }
        Ok(())
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
        let mut active: Vec<(LocationId, LocationKind)> = all
            .iter()
            .filter(|l| l.active)
            .map(|l| (LocationId::new_unchecked(l.location_id), l.location_type))
            .collect();
        active.sort_unstable_by_key(|(id, _)| *id);
        let mut current = self.locations.write().expect("locations lock");
        if current.load < load {
            *current = Arc::new(Locations {
                all,
                index,
                active,
                load,
            });
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

    /// Active products by id, a page at a time, with their count (MySQL; the store's product
    /// list).
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

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// The stock mirror the product pages read Redis through, on one server (see
    /// [`StockMirror`]).
    fn page_mirror<'a>(&self, catalog: &'a Catalog) -> Option<&'a StockMirror> {
        (!self.redis_settings.is_cluster()).then_some(&*catalog.mirror)
    }

    /// Up to `limit` active products with an id above `after`, each with its on-hand stock summed
    /// over the active locations (MySQL: one statement, an index range of the products and, per
    /// product, the sum of its stock rows; no temporary table, no sort).
    pub async fn products_after(
        &self,
        after: u64,
        limit: u32,
    ) -> StorageResult<Arc<ProductsAfter>> {
        let catalog = self.catalog();
        catalog
            .reads
            .mysql_lists
            .read((after, limit), || self.read_products_after(after, limit))
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn read_products_after(&self, after: u64, limit: u32) -> StorageResult<ProductsAfter> {
        self.in_time(self.db_deadline(), async {
            // One row more than asked for says whether a next page exists.
            let rows = sqlx::query(
                "SELECT p.id, p.name, p.price, \
                 (SELECT CAST(COALESCE(SUM(s.on_hand), 0) AS SIGNED) FROM stock s \
                  JOIN locations l ON l.id = s.location_id AND l.active \
                  WHERE s.product_id = p.id) AS total \
                 FROM products p WHERE p.active AND p.id > ? ORDER BY p.id LIMIT ?",
            )
            .bind(after)
            .bind(limit + 1)
            .fetch_all(&self.db)
            .await?;
            let mut items = rows
                .iter()
                .map(|r| {
                    Ok(ListedProduct {
                        product_id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        price: r.try_get("price")?,
                        total_quantity: r.try_get("total")?,
                    })
                })
                .collect::<StorageResult<Vec<_>>>()?;
            let next = page_end(&mut items, limit as usize, |p| p.product_id);
            Ok(ProductsAfter {
                items,
                next,
                source: StockSource::Mysql,
            })
        })
        .await
    }

    /// Up to `limit` active products with an id above `after`, from the in-memory catalogue,
    /// each with its sellable stock summed over the active locations from Redis (one read of the
    /// whole page, see [`Storage::read_stock`]); MySQL's on-hand while Redis is not trusted.
    pub async fn redis_products_after(
        &self,
        after: u64,
        limit: u32,
    ) -> StorageResult<Arc<ProductsAfter>> {
        let catalog = self.catalog();
        let start = catalog.active.partition_point(|p| p.get() <= after);
        let end = start
            .saturating_add(limit as usize)
            .min(catalog.active.len());
        catalog
            .reads
            .redis_lists
            .read((start, end), || async {
                let ids = &catalog.active[start..end];
                let sites = self.locations();
                let locations: Vec<LocationId> = sites.active.iter().map(|(l, _)| *l).collect();
                let (stock, source) = self
                    .read_stock_with(&locations, ids, self.page_mirror(&catalog))
                    .await?;
                let items = ids
                    .iter()
                    .enumerate()
                    .filter_map(|(i, id)| {
                        let p = catalog.products.get(id)?;
                        Some(ListedProduct {
                            product_id: p.product_id,
                            name: p.name.clone(),
                            price: p.price,
                            total_quantity: total(stock.iter().map(|at| at[i])),
                        })
                    })
                    .collect();
                Ok(ProductsAfter {
                    items,
                    next: (end < catalog.active.len())
                        .then(|| ids.last().map(|p| p.get()))
                        .flatten(),
                    source,
                })
            })
            .await
    }

    /// One active product and its on-hand stock at every active location (MySQL, one statement).
    pub async fn product_with_stock(&self, id: ProductId) -> StorageResult<Arc<ProductStock>> {
        let catalog = self.catalog();
        catalog
            .reads
            .mysql_products
            .read(id, || self.read_product_with_stock(id))
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn read_product_with_stock(&self, id: ProductId) -> StorageResult<ProductStock> {
        self.in_time(self.db_deadline(), async {
            let rows = sqlx::query(
                "SELECT p.id, p.sku, p.name, p.price, p.active, s.location_id, \
                 CAST(l.kind AS CHAR) AS kind, s.on_hand FROM products p \
                 LEFT JOIN (stock s JOIN locations l ON l.id = s.location_id AND l.active) \
                 ON s.product_id = p.id \
                 WHERE p.id = ? AND p.active ORDER BY s.location_id",
            )
            .bind(id.get())
            .fetch_all(&self.db)
            .await?;
            let product = product_from_row(rows.first().ok_or(StorageError::UnknownProduct(id))?)?;
            let mut stock = Vec::with_capacity(rows.len());
            for r in &rows {
                // A product without stock rows comes back as one row without a location.
                let Some(location_id) = r.try_get::<Option<u64>, _>("location_id")? else {
                    continue;
                };
                stock.push(StockLevel {
                    location_id,
                    location_type: kind(r.try_get("kind")?)?,
                    quantity: r.try_get("on_hand")?,
                });
            }
            Ok(ProductStock {
                product,
                stock,
                source: StockSource::Mysql,
            })
        })
        .await
    }

    /// One active product (from the in-memory catalogue) and its sellable stock at every active
    /// location from Redis (one read, see [`Storage::read_stock`]); MySQL's on-hand while Redis
    /// is not trusted.
    pub async fn redis_product_with_stock(
        &self,
        id: ProductId,
    ) -> StorageResult<Arc<ProductStock>> {
        let catalog = self.catalog();
        let product = catalog
            .products
            .get(&id)
            .filter(|p| p.active)
            .ok_or(StorageError::UnknownProduct(id))?;
        catalog
            .reads
            .redis_products
            .read(id, || async {
                let sites = self.locations();
                let locations: Vec<LocationId> = sites.active.iter().map(|(l, _)| *l).collect();
                let (stock, source) = self
                    .read_stock_with(&locations, &[id], self.page_mirror(&catalog))
                    .await?;
                Ok(ProductStock {
                    product: product.clone(),
                    stock: sites
                        .active
                        .iter()
                        .zip(stock)
                        .map(|((loc, kind), at)| StockLevel {
                            location_id: loc.get(),
                            location_type: *kind,
                            quantity: at.first().copied().unwrap_or(0),
                        })
                        .collect(),
                    source,
                })
            })
            .await
    }
}

/// Cuts `items` (read with one more than `limit`) to the page, and gives the cursor of the next
/// page: the last id shown, when more follow.
fn page_end<T>(items: &mut Vec<T>, limit: usize, id: impl Fn(&T) -> u64) -> Option<u64> {
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(id)
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

    /// Products as operators see them, active or not (`active` filters), in id order after the
    /// cursor `after` (keyset pagination, like the shop's pages), read from MySQL; with the cursor
    /// of the next page, `None` on the last.
    pub async fn products_for_operators(
        &self,
        active: Option<bool>,
        after: u64,
        limit: u32,
    ) -> StorageResult<(Vec<Product>, Option<u64>)> {
        self.in_time(self.db_deadline(), async {
            // One row more than asked for says whether a next page exists.
            let rows = sqlx::query(
                "SELECT id, sku, name, price, active FROM products \
                 WHERE id > ? AND (? IS NULL OR active = ?) ORDER BY id LIMIT ?",
            )
            .bind(after)
            .bind(active)
            .bind(active)
            .bind(limit + 1)
            .fetch_all(&self.db)
            .await?;
            let mut items = rows
                .iter()
                .map(product_from_row)
                .collect::<StorageResult<Vec<_>>>()?;
            let next = page_end(&mut items, limit as usize, |p| p.product_id);
            Ok((items, next))
        })
        .await
    }

    /// One product as operators see it, active or not (MySQL).
    pub async fn product_for_operators(&self, id: ProductId) -> StorageResult<Product> {
        self.in_time(self.db_deadline(), async {
            let row = sqlx::query("SELECT id, sku, name, price, active FROM products WHERE id = ?")
                .bind(id.get())
                .fetch_optional(&self.db)
                .await?
                .ok_or(StorageError::UnknownProduct(id))?;
            product_from_row(&row)
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

/// The product pages' copy of the Redis stock keys they read, which Redis itself keeps exact
/// (server-assisted client-side caching: `CLIENT TRACKING` in broadcasting mode).
///
/// A product page shows a product's stock at every location: 50 keys, each lying anywhere in
/// Redis's memory, so reading them cost Redis more than everything else the page does (30-40 µs
/// per page on the bench data). The mirror holds the figures it read, on a connection of its own
/// on which Redis reports every change to a stock key of every location
/// (`BCAST PREFIX <prefix>{L<loc>}:s:`; Redis keeps nothing per key for it): an order, a cancel,
/// a stock change, a re-sync, a flush. The mirror forgets each key it hears of.
///
/// Why a figure it holds is never older than the request: Redis queues these reports before it
/// writes any reply, so by the time a writer has its answer, the report of its change is on the
/// mirror's connection. Before answering, a request waits for a `PING` on that connection sent
/// after the request arrived (shared, like any read: [`ReadGroups`]); its answer comes after
/// every report queued before it, and the connection applies each report as it arrives, before
/// it hands out any later answer. Keys the mirror does not hold are read on the same connection
/// (one `MGET`) and kept, unless a report of them arrived since that `MGET` was sent.
///
/// Whenever the connection fails or is replaced, the mirror forgets everything, and requests read
/// through the pooled connections (behind the circuit) meanwhile; a location opened since the
/// connection was made (whose keys Redis does not report on it) replaces it. One server only
/// (RESP3): on a Redis Cluster the pages read Redis directly.
pub(crate) struct StockMirror {
    /// Shared with the connection's push handler, which applies the invalidations in the order
    /// Redis sent them, before any later reply on the connection is handed out.
    copy: Arc<Mutex<Mirrored>>,
    conn: Mutex<Option<Tracked>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// After a failed attempt, none before this.
    retry_at: Mutex<Option<std::time::Instant>>,
    /// The `PING`s that requests share, by connection.
    barriers: ReadGroups<u64, ()>,
}

/// The tracked connection and its number.
#[derive(Clone)]
struct Tracked {
    conn: redis::aio::MultiplexedConnection,
    generation: u64,
    /// The locations whose stock keys Redis reports on this connection, by id.
    locations: Arc<Vec<u64>>,
}

#[derive(Default)]
struct Mirrored {
    /// By product, then by location id: a product page reads one product at every location,
    /// which then lies together in memory.
    values: HashMap<u64, Vec<(u64, Slot)>, std::hash::BuildHasherDefault<IdHasher>>,
    /// What every stock key starts with (`<prefix>{L`).
    key_start: String,
    /// Counts invalidations (a key, or everything).
    seq: u64,
    /// When everything was last forgotten.
    flushed: u64,
    /// The connection whose messages count; `None` while there is none.
    live: Option<u64>,
    generations: u64,
}

/// A key's figure, if the mirror holds one, and when it was last invalidated.
struct Slot {
    value: Option<i64>,
    invalidated: u64,
}

impl Mirrored {
    fn invalidate(&mut self, key: &[u8]) {
        // Only stock keys are read on the connection, so only they are invalidated; anything
        // else is not understood, and everything is forgotten.
        let Some(id) = stock_key_ids(&self.key_start, key) else {
            return self.forget_all();
        };
        self.seq += 1;
        let seq = self.seq;
        let slot = self.slot(id);
        slot.value = None;
        slot.invalidated = seq;
    }

    /// The slot of (location, product), made when there is none.
    fn slot(&mut self, (loc, product): (u64, u64)) -> &mut Slot {
        let at = self.values.entry(product).or_default();
        let i = match at.binary_search_by_key(&loc, |(l, _)| *l) {
            Ok(i) => i,
            Err(i) => {
                let empty = Slot {
                    value: None,
                    invalidated: 0,
                };
                at.insert(i, (loc, empty));
                i
            }
        };
        &mut at[i].1
    }

    fn forget_all(&mut self) {
        self.seq += 1;
        self.flushed = self.seq;
        self.values.clear();
    }

    /// Keeps `value`, read by an `MGET` sent when the count of invalidations was `sent_at`,
    /// unless the key (or everything) was invalidated since: then `value` may be older than
    /// Redis's.
    fn keep(&mut self, id: (u64, u64), value: i64, sent_at: u64) {
        if self.flushed > sent_at {
            return;
        }
        let slot = self.slot(id);
        if slot.invalidated <= sent_at {
            slot.value = Some(value);
        }
    }

    /// What Redis says on connection `generation`.
    fn apply(&mut self, generation: u64, push: redis::PushInfo) {
        if self.live != Some(generation) {
            return;
        }
        match push.kind {
            redis::PushKind::Invalidate => match push.data.first() {
                Some(redis::Value::Array(keys)) => {
                    for key in keys {
                        match key {
                            redis::Value::BulkString(k) => self.invalidate(k),
                            redis::Value::SimpleString(k) => self.invalidate(k.as_bytes()),
                            _ => self.forget_all(),
                        }
                    }
                }
                // A flush: every key.
                _ => self.forget_all(),
            },
            redis::PushKind::Disconnection => {
                self.forget_all();
                self.live = None;
            }
            _ => {}
        }
    }
}

impl Default for StockMirror {
    fn default() -> Self {
        Self {
            copy: Arc::default(),
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            retry_at: Mutex::new(None),
            barriers: ReadGroups::default(),
        }
    }
}

impl std::fmt::Debug for StockMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let copy = self.copy.lock().expect("stock mirror");
        f.debug_struct("StockMirror")
            .field("keys", &copy.values.len())
            .field("live", &copy.live)
            .finish()
    }
}

/// How long the mirror waits before it tries to connect again after a failure.
const MIRROR_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl StockMirror {
    /// The figures of `keys` (`None`: not in Redis, not loaded), each as Redis had it after this
    /// call began.
    pub(crate) async fn read(
        &self,
        storage: &Storage,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StorageResult<Vec<Option<i64>>> {
        let tracked = self.tracked(storage).await?;
        let result = self.read_on(storage, &tracked, locations, products).await;
        if result.is_err() {
            self.retire(tracked.generation);
        }
        result
    }

    /// The figures location by location, products in order.
    async fn read_on(
        &self,
        storage: &Storage,
        tracked: &Tracked,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StorageResult<Vec<Option<i64>>> {
        self.barriers
            .read(tracked.generation, || async {
                let mut conn = tracked.conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                Ok(())
            })
            .await?;
        let mut out = vec![None; locations.len() * products.len()];
        let mut missing = Vec::new();
        let sent_at = {
            let copy = self.copy.lock().expect("stock mirror");
            if copy.live != Some(tracked.generation) {
                return Err(StorageError::Unavailable(
                    "the stock mirror's connection was lost".into(),
                ));
            }
            // A location opened since the connection was: Redis does not report its keys there,
            // so the connection is replaced (with it) before the mirror holds any of them.
            if locations
                .iter()
                .any(|l| tracked.locations.binary_search(&l.get()).is_err())
            {
                return Err(StorageError::Unavailable(
                    "a location is new to the stock mirror".into(),
                ));
            }
            // Product by product: each one's figures lie together, by location id, as the
            // locations come (callers ask in id order; any order gives the right figures).
            for (pi, p) in products.iter().enumerate() {
                let held = copy.values.get(&p.get()).map_or(&[][..], Vec::as_slice);
                let mut next = 0;
                for (li, l) in locations.iter().enumerate() {
                    let l = l.get();
                    if held.get(next).is_none_or(|(at, _)| *at != l) {
                        next = held.partition_point(|(at, _)| *at < l);
                    }
                    let value = match held.get(next) {
                        Some((at, slot)) if *at == l => {
                            next += 1;
                            slot.value
                        }
                        _ => None,
                    };
                    let i = li * products.len() + pi;
                    match value {
                        Some(v) => out[i] = Some(v),
                        None => missing.push((i, (l, p.get()))),
                    }
                }
            }
            copy.seq
        };
        if missing.is_empty() {
            return Ok(out);
        }
        let mut mget = redis::cmd("MGET");
        for (_, (l, p)) in &missing {
            mget.arg(
                storage
                    .keys
                    .stock(LocationId::new_unchecked(*l), ProductId::new_unchecked(*p)),
            );
        }
        let values: Vec<Option<i64>> = mget.query_async(&mut tracked.conn.clone()).await?;
        let mut copy = self.copy.lock().expect("stock mirror");
        for ((i, id), v) in missing.into_iter().zip(values) {
            out[i] = v;
            if let Some(v) = v {
                copy.keep(id, v, sent_at);
            }
        }
        Ok(out)
    }

    /// The tracked connection, opened when there is none.
    async fn tracked(&self, storage: &Storage) -> StorageResult<Tracked> {
        if let Some(t) = self.live_conn() {
            return Ok(t);
        }
        let _one = self.connecting.lock().await;
        if let Some(t) = self.live_conn() {
            return Ok(t);
        }
        if self
            .retry_at
            .lock()
            .expect("stock mirror")
            .is_some_and(|at| std::time::Instant::now() < at)
        {
            return Err(StorageError::Unavailable(
                "the stock mirror is waiting to reconnect".into(),
            ));
        }
        match self.connect(storage).await {
            Ok(t) => {
                *self.conn.lock().expect("stock mirror") = Some(t.clone());
                Ok(t)
            }
            Err(e) => {
                *self.retry_at.lock().expect("stock mirror") =
                    Some(std::time::Instant::now() + MIRROR_RETRY);
                tracing::info!(error = %e, "the stock mirror could not connect; product pages read redis directly");
                Err(e)
            }
        }
    }

    fn live_conn(&self) -> Option<Tracked> {
        let conn = self.conn.lock().expect("stock mirror").clone()?;
        let live = self.copy.lock().expect("stock mirror").live;
        (live == Some(conn.generation)).then_some(conn)
    }

    async fn connect(&self, storage: &Storage) -> StorageResult<Tracked> {
        let crate::infra::redis_link::RedisClient::Single(client) = &storage.redis_client else {
            return Err(StorageError::Unavailable(
                "the stock mirror serves one redis server only".into(),
            ));
        };
        let mut info = client.get_connection_info().clone();
        info.redis.protocol = redis::ProtocolVersion::RESP3;
        // Every location, open or closed: a closed one may open again.
        let mut locations: Vec<u64> = storage.all_location_ids().iter().map(|l| l.get()).collect();
        locations.sort_unstable();
        let locations = Arc::new(locations);
        let generation = {
            let mut copy = self.copy.lock().expect("stock mirror");
            copy.forget_all();
            copy.key_start = format!("{}{{L", storage.keys.prefix());
            copy.generations += 1;
            copy.live = Some(copy.generations);
            copy.generations
        };
        let copy = self.copy.clone();
        let settings = &storage.redis_settings;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(settings.connect_timeout)
            .set_response_timeout(settings.command_timeout)
            .set_push_sender(move |push: redis::PushInfo| {
                copy.lock().expect("stock mirror").apply(generation, push);
                Ok::<(), std::convert::Infallible>(())
            });
        let opened = async {
            let client = redis::Client::open(info)?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // Redis reports every change to a stock key of these locations on this connection.
            let mut tracking = redis::cmd("CLIENT");
            tracking.arg("TRACKING").arg("ON").arg("BCAST");
            for loc in locations.iter() {
                tracking
                    .arg("PREFIX")
                    .arg(format!("{}{{L{loc}}}:s:", storage.keys.prefix()));
            }
            let _: () = tracking.query_async(&mut conn).await?;
            Ok::<_, StorageError>(conn)
        }
        .await;
        match opened {
            Ok(conn) => Ok(Tracked {
                conn,
                generation,
                locations,
            }),
            Err(e) => {
                self.retire(generation);
                Err(e)
            }
        }
    }

    /// Drops connection `generation` after a failure on it: whatever Redis said since is unknown,
    /// so the mirror forgets everything.
    fn retire(&self, generation: u64) {
        let mut copy = self.copy.lock().expect("stock mirror");
        if copy.live == Some(generation) {
            copy.forget_all();
            copy.live = None;
        }
        drop(copy);
        let mut conn = self.conn.lock().expect("stock mirror");
        if conn.as_ref().is_some_and(|c| c.generation == generation) {
            *conn = None;
        }
    }
}

/// (location, product) of a stock key `<key_start><location>}:s:<product>`.
fn stock_key_ids(key_start: &str, key: &[u8]) -> Option<(u64, u64)> {
    let rest = std::str::from_utf8(key.strip_prefix(key_start.as_bytes())?).ok()?;
    let (loc, product) = rest.split_once("}:s:")?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((number(loc)?, number(product)?))
}

/// Hashes the mirror's (location, product) pairs: a multiply per word, where the standard
/// hasher (built against hostile keys these are not) took a tenth of a product page's time.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Requests for the same read that arrive together share it, and every one of them still gets
/// figures read after it arrived — like a group commit, for reads.
///
/// A request that finds no read of its key running starts one. A request that finds one running
/// does not take its result (that read may have started before a change the request must see):
/// it waits for it to end and then takes the next read, which starts after it arrived and
/// answers every request that waited meanwhile. So under load each key is read at most twice at
/// a time (one running, one about to start), whatever the number of requests; alone, a request
/// reads as it would without this.
pub(crate) struct ReadGroups<K, V> {
    running: Mutex<HashMap<K, Running<V>>>,
    /// Numbers the reads in the order they start; never reused, so a request can tell a read
    /// that started after it arrived.
    started: AtomicU64,
}

struct Running<V> {
    seq: u64,
    outcome: watch::Receiver<Outcome<V>>,
}

/// What a request finds for its key.
enum Found<V> {
    /// A read is running: its number and its outcome to come.
    Running {
        seq: u64,
        outcome: watch::Receiver<Outcome<V>>,
    },
    /// None was: this request runs one, numbered `seq`, and sends its outcome.
    Nothing {
        seq: u64,
        tx: watch::Sender<Outcome<V>>,
    },
}

enum Outcome<V> {
    Pending,
    Read(Arc<V>),
    Failed(Arc<StorageError>),
    /// The request that ran the read went away before it ended (a client that hung up): those
    /// that waited for it read again.
    Abandoned,
}

impl<V> Clone for Outcome<V> {
    fn clone(&self) -> Self {
        match self {
            Self::Pending => Self::Pending,
            Self::Read(v) => Self::Read(v.clone()),
            Self::Failed(e) => Self::Failed(e.clone()),
            Self::Abandoned => Self::Abandoned,
        }
    }
}

impl<K, V> Default for ReadGroups<K, V> {
    fn default() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
        }
    }
}

impl<K, V> std::fmt::Debug for ReadGroups<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self.running.lock().map(|r| r.len()).unwrap_or(0);
        f.debug_struct("ReadGroups")
            .field("running", &running)
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V> ReadGroups<K, V> {
    /// What `read` gives for `key`, from a read that started after this call.
    pub(crate) async fn read<F, Fut>(&self, key: K, read: F) -> StorageResult<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StorageResult<V>>,
    {
        // The read that was running when this request arrived: its figures may be too old.
        let mut arrived_during: Option<u64> = None;
        loop {
            let (seq, mut outcome) = match self.join_or_start(&key) {
                Found::Running { seq, outcome } => (seq, outcome),
                Found::Nothing { seq, tx } => return self.lead(key, seq, tx, read).await,
            };
            let joins = arrived_during.is_some_and(|before| seq > before);
            arrived_during.get_or_insert(seq);
            let ended = match outcome.wait_for(|o| !matches!(o, Outcome::Pending)).await {
                Ok(o) => o.clone(),
                // The sender is only dropped after sending.
                Err(_) => Outcome::Abandoned,
            };
            match ended {
                Outcome::Read(v) if joins => return Ok(v),
                Outcome::Failed(e) if joins => return Err(copy_error(&e)),
                // Started before this request arrived, or abandoned: wait for the next one.
                _ => {}
            }
        }
    }

    /// The read of `key` running now, or, when none is, a new one this request runs.
    fn join_or_start(&self, key: &K) -> Found<V> {
        let mut running = self.running.lock().expect("read groups");
        if let Some(r) = running.get(key) {
            return Found::Running {
                seq: r.seq,
                outcome: r.outcome.clone(),
            };
        }
        let seq = self.started.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Outcome::Pending);
        running.insert(key.clone(), Running { seq, outcome: rx });
        Found::Nothing { seq, tx }
    }

    /// Runs the read for everyone who joins it, and hands its outcome over.
    async fn lead<Fut>(
        &self,
        key: K,
        seq: u64,
        tx: watch::Sender<Outcome<V>>,
        read: impl FnOnce() -> Fut,
    ) -> StorageResult<Arc<V>>
    where
        Fut: Future<Output = StorageResult<V>>,
    {
        let mut lead = Lead {
            groups: self,
            key: Some(key),
            seq,
            tx,
        };
        let result = read().await.map(Arc::new);
        lead.end(match &result {
            Ok(v) => Outcome::Read(v.clone()),
            Err(e) => Outcome::Failed(Arc::new(copy_error(e))),
        });
        result
    }

    fn finish(&self, key: &K, seq: u64) {
        let mut running = self.running.lock().expect("read groups");
        if running.get(key).is_some_and(|r| r.seq == seq) {
            running.remove(key);
        }
    }
}

/// The request running a read. Dropped before the read ended (its request went away), it tells
/// the requests that joined to read again.
struct Lead<'a, K: Eq + Hash + Clone, V> {
    groups: &'a ReadGroups<K, V>,
    key: Option<K>,
    seq: u64,
    tx: watch::Sender<Outcome<V>>,
}

impl<K: Eq + Hash + Clone, V> Lead<'_, K, V> {
    fn end(&mut self, outcome: Outcome<V>) {
        if let Some(key) = self.key.take() {
            // Out of the map first: a request woken by the outcome must not find this read again.
            self.groups.finish(&key, self.seq);
            self.tx.send_replace(outcome);
        }
    }
}

impl<K: Eq + Hash + Clone, V> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        self.end(Outcome::Abandoned);
    }
}

/// The same error for another request that shared the read: errors are not `Clone` (they may
/// carry a driver's error), so the copy keeps what the answer depends on.
fn copy_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::UnknownProduct(p) => StorageError::UnknownProduct(*p),
        StorageError::NotFound(s) => StorageError::NotFound(s.clone()),
        StorageError::Unavailable(s) => StorageError::Unavailable(s.clone()),
        StorageError::RedisDown(s) => StorageError::RedisDown(s.clone()),
        e => match e.unreachable() {
            Some(Dependency::Redis) => {
                StorageError::Unavailable("the stock cache cannot be reached; retry shortly".into())
            }
            Some(Dependency::Mysql) => {
                StorageError::Unavailable("the database cannot be reached; retry shortly".into())
            }
            None => StorageError::Internal(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_page_ends_with_the_cursor_of_the_next_only_when_one_follows() {
        let mut v = vec![1, 2, 3];
        assert_eq!(page_end(&mut v, 3, |x| *x), None);
        assert_eq!(v, [1, 2, 3]);
        let mut v = vec![1, 2, 3, 4];
        assert_eq!(page_end(&mut v, 3, |x| *x), Some(3));
        assert_eq!(v, [1, 2, 3]);
        let mut v: Vec<u64> = vec![];
        assert_eq!(page_end(&mut v, 3, |x| *x), None);
    }

    #[test]
    fn stock_keys_name_their_location_and_product() {
        let start = "sf:{L";
        assert_eq!(stock_key_ids(start, b"sf:{L12}:s:345"), Some((12, 345)));
        assert_eq!(stock_key_ids(start, b"sf:{L12}:ev"), None);
        assert_eq!(stock_key_ids(start, b"sf:{L12}:s:"), None);
        assert_eq!(stock_key_ids(start, b"sf:{L}:s:3"), None);
        assert_eq!(stock_key_ids(start, b"sf:{L1}:s:+3"), None);
        assert_eq!(stock_key_ids(start, b"other:{L1}:s:3"), None);
    }

    fn mirrored(generation: u64) -> Mirrored {
        Mirrored {
            key_start: "sf:{L".into(),
            live: Some(generation),
            ..Mirrored::default()
        }
    }

    fn invalidation(keys: &[&str]) -> redis::PushInfo {
        redis::PushInfo {
            kind: redis::PushKind::Invalidate,
            data: vec![redis::Value::Array(
                keys.iter()
                    .map(|k| redis::Value::BulkString(k.as_bytes().to_vec()))
                    .collect(),
            )],
        }
    }

    fn held(m: &Mirrored, id: (u64, u64)) -> Option<i64> {
        let at = m.values.get(&id.1)?;
        let i = at.binary_search_by_key(&id.0, |(l, _)| *l).ok()?;
        at[i].1.value
    }

    #[test]
    fn the_mirror_forgets_a_key_redis_says_changed() {
        let mut m = mirrored(1);
        m.keep((1, 2), 5, m.seq);
        m.keep((1, 3), 7, m.seq);
        m.apply(1, invalidation(&["sf:{L1}:s:2"]));
        assert_eq!((held(&m, (1, 2)), held(&m, (1, 3))), (None, Some(7)));
        // A figure read before that invalidation is not kept: it may be the old one.
        let sent_before = m.seq - 1;
        m.keep((1, 2), 5, sent_before);
        assert_eq!(held(&m, (1, 2)), None);
        // Read after it, it is.
        m.keep((1, 2), 4, m.seq);
        assert_eq!(held(&m, (1, 2)), Some(4));
        // Nor is a figure of a key invalidated while it was being read, before it was held.
        let sent_at = m.seq;
        m.apply(1, invalidation(&["sf:{L9}:s:9"]));
        m.keep((9, 9), 1, sent_at);
        assert_eq!(held(&m, (9, 9)), None);
    }

    #[test]
    fn a_flush_a_lost_connection_or_a_key_not_understood_forgets_everything() {
        for push in [
            redis::PushInfo {
                kind: redis::PushKind::Invalidate,
                data: vec![redis::Value::Nil],
            },
            redis::PushInfo {
                kind: redis::PushKind::Disconnection,
                data: vec![],
            },
            invalidation(&["sf:{L1}:ev"]),
        ] {
            let mut m = mirrored(1);
            let sent_at = m.seq;
            m.keep((1, 2), 5, sent_at);
            let disconnection = push.kind == redis::PushKind::Disconnection;
            m.apply(1, push);
            assert_eq!(held(&m, (1, 2)), None);
            // Reads sent before are not kept either.
            m.keep((1, 2), 5, sent_at);
            assert_eq!(held(&m, (1, 2)), None);
            assert_eq!(m.live, if disconnection { None } else { Some(1) });
        }
        // A message of a connection replaced since changes nothing.
        let mut m = mirrored(2);
        m.keep((1, 2), 5, m.seq);
        m.apply(1, invalidation(&["sf:{L1}:s:2"]));
        assert_eq!(held(&m, (1, 2)), Some(5));
    }

    #[test]
    fn totals_count_a_figure_below_zero_as_zero() {
        assert_eq!(total([3, -2, 4].into_iter()), 7);
        assert_eq!(total(std::iter::empty()), 0);
    }

    /// Reads that count their calls and wait at a gate, so that requests pile up behind them.
    struct Reads {
        calls: AtomicUsize,
        gate: watch::Sender<bool>,
    }

    impl Reads {
        fn new() -> Self {
            Self {
                calls: AtomicUsize::new(0),
                gate: watch::channel(false).0,
            }
        }

        async fn read(&self) -> StorageResult<usize> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let mut gate = self.gate.subscribe();
            gate.wait_for(|open| *open).await.expect("gate");
            // A real read waits for its answer at least once.
            tokio::task::yield_now().await;
            Ok(n)
        }

        async fn fail(&self) -> StorageResult<usize> {
            self.read().await?;
            Err(StorageError::Unavailable("down".into()))
        }

        fn open(&self) {
            self.gate.send_replace(true);
        }
    }

    #[tokio::test]
    async fn requests_that_arrive_during_a_read_share_the_next_one() {
        let groups = ReadGroups::<u8, usize>::default();
        let reads = Reads::new();
        let mut first = pin!(groups.read(1, || reads.read()));
        assert!(futures::poll!(&mut first).is_pending());
        let mut late = pin!(futures::future::join_all(
            (0..10).map(|_| groups.read(1, || reads.read()))
        ));
        assert!(futures::poll!(&mut late).is_pending());
        reads.open();
        let (first, late) = tokio::join!(first, late);
        // The first read answers its request; the ten that came while it ran share the second.
        assert_eq!(*first.unwrap(), 1);
        for r in late {
            assert_eq!(*r.unwrap(), 2);
        }
        assert_eq!(reads.calls.load(Ordering::SeqCst), 2);
        // Other keys read on their own, and nothing stays behind.
        assert_eq!(*groups.read(2, || reads.read()).await.unwrap(), 3);
        assert!(groups.running.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_request_never_takes_a_read_that_started_before_it() {
        let groups = ReadGroups::<u8, usize>::default();
        let reads = Reads::new();
        let mut first = pin!(groups.read(1, || reads.read()));
        assert!(futures::poll!(&mut first).is_pending());
        let second = groups.read(1, || reads.read());
        reads.open();
        let (first, second) = tokio::join!(first, second);
        assert_eq!((*first.unwrap(), *second.unwrap()), (1, 2));
    }

    #[tokio::test]
    async fn a_failed_read_fails_everyone_who_shared_it() {
        let groups = ReadGroups::<u8, usize>::default();
        let reads = Reads::new();
        let mut first = pin!(groups.read(1, || async {
            reads.read().await?;
            Err::<usize, _>(StorageError::UnknownProduct(ProductId::new_unchecked(7)))
        }));
        assert!(futures::poll!(&mut first).is_pending());
        let mut late = pin!(futures::future::join(
            groups.read(1, || reads.fail()),
            groups.read(1, || reads.fail()),
        ));
        assert!(futures::poll!(&mut late).is_pending());
        reads.open();
        let (first, (a, b)) = tokio::join!(first, late);
        assert!(matches!(first, Err(StorageError::UnknownProduct(_))));
        assert!(matches!(a, Err(StorageError::Unavailable(_))), "{a:?}");
        assert!(matches!(b, Err(StorageError::Unavailable(_))), "{b:?}");
        assert_eq!(reads.calls.load(Ordering::SeqCst), 2);
        assert!(groups.running.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn when_the_request_running_a_read_goes_away_those_waiting_read_again() {
        let groups = ReadGroups::<u8, usize>::default();
        let reads = Reads::new();
        let mut gone = Box::pin(groups.read(1, || reads.read()));
        assert!(futures::poll!(&mut gone).is_pending());
        let mut waiting = pin!(groups.read(1, || reads.read()));
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(gone);
        reads.open();
        assert_eq!(*waiting.await.unwrap(), 2);
        assert!(groups.running.lock().unwrap().is_empty());
    }
}
