//! Products and locations: MySQL queries, and the in-memory copies that pricing and routing read
//! on every order (no per-request catalogue query on the hot path).
//!
//! The shop's product pages read here too: a list page (each product with its stock summed over
//! the active locations) and a product with its stock per active location, from MySQL or from
//! Redis. Every answer holds the figures as they were after its request arrived: concurrent
//! requests for the same page share one read that starts after they all arrived
//! ([`ReadGroups`]), and the Redis pages read through a copy of the stock keys that Redis itself
//! keeps exact ([`StockMirror`]), whose one round trip per read (a `PING`) all the pages read at
//! the same time share. Nothing is served from a cache that could be stale.

mod calendars;
mod changes;
pub mod credentials;
mod mirror;
mod pages;
mod read_groups;
pub mod seed;

pub use calendars::CalendarChange;
pub use changes::{LocationChange, ProductChange};
pub use credentials::IssuedKey;
pub(crate) use mirror::StockMirror;
use pages::Shown;
pub use pages::{ListedProduct, ProductStock, ProductsAfter, ScopeKey, StockScope};
pub(crate) use read_groups::ReadGroups;

use crate::error::{Refusal, StorageResult};
use crate::model::{Location, Product};
use crate::Storage;
use arc_swap::ArcSwap;
use sf_routing::{
    Coordinates, LocationId, LocationIndex, LocationKind, OrderLines, ProductId, Site,
};
use std::collections::HashMap;
use std::sync::Arc;

crate::handle!(
    /// Products and locations, as callers use them: taken with [`crate::Storage::catalog`].
    Catalog
);

/// Active and inactive products by id.
#[derive(Debug, Default)]
pub struct ProductIndex {
    products: HashMap<ProductId, Product>,
    /// Active products by id, for pages served without a MySQL query.
    active: Vec<ProductId>,
    /// Which load this is (see [`crate::catalog::Catalog::refresh_catalog`]).
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
    /// Redis list pages by their range in [`ProductIndex::active`].
    redis_lists: ReadGroups<(usize, usize), ProductsAfter>,
    /// Product pages by product and the locations they show.
    mysql_products: ReadGroups<(ProductId, Shown), ProductStock>,
    redis_products: ReadGroups<(ProductId, Shown), ProductStock>,
}

/// All locations, and the routing index of the active ones.
#[derive(Debug, Default)]
pub struct Locations {
    pub all: Vec<Location>,
    pub index: LocationIndex,
    /// The ids of `all`, in the same order.
    ids: Vec<LocationId>,
    /// The active locations by id: where product pages show stock.
    active: Vec<(LocationId, LocationKind)>,
    /// The products with a safety stock of their own, per location (the others take their
    /// location's default): what the shop's figures keep back.
    own_safety: rustc_hash::FxHashMap<(LocationId, ProductId), i64>,
    /// Which load this is (see [`crate::catalog::Catalog::refresh_locations`]).
    load: u64,
    /// The locations near a point that product pages showed lately (see
    /// [`pages::NearPoints`]): a shopper reads many products from one point.
    near: pages::NearPoints,
}

impl Locations {
    /// What the shop sees of `available` units of `product` at `loc`: `sellableOnline`, the
    /// units above the safety stock (as of the last load of the locations).
    pub fn sellable_online(&self, loc: LocationId, product: ProductId, available: i64) -> i64 {
        self.sellable_with(loc, product, self.default_safety(loc), available)
    }

    /// [`Locations::sellable_online`], with the location's own safety stock (`default`, what
    /// [`Locations::default_safety`] answers) looked up already.
    pub(crate) fn sellable_with(
        &self,
        loc: LocationId,
        product: ProductId,
        default: i64,
        available: i64,
    ) -> i64 {
        let safety = self
            .own_safety
            .get(&(loc, product))
            .copied()
            .unwrap_or(default);
        (available - safety).max(0)
    }

    /// The safety stock of `loc`'s products that have none of their own (0: no such location).
    pub(crate) fn default_safety(&self, loc: LocationId) -> i64 {
        self.get(loc).map_or(0, |l| l.safety_stock)
    }

    pub fn get(&self, id: LocationId) -> Option<&Location> {
        // `all` is in id order, as `ids` is.
        let at = self.ids.binary_search(&id).ok()?;
        self.all.get(at)
    }
}

/// A row of `products`, as `SELECT id, sku, name, price, active` reads it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ProductRow {
    pub id: ProductId,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub active: bool,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            product_id: row.id.get(),
            sku: row.sku,
            name: row.name,
            price: row.price,
            active: row.active,
        }
    }
}

/// A row of `locations`, its kind read as text.
#[derive(Debug, sqlx::FromRow)]
struct LocationRow {
    id: LocationId,
    kind: LocationKind,
    name: String,
    latitude: f64,
    longitude: f64,
    active: bool,
    safety_stock: i64,
    low_stock_threshold: i64,
    /// JSON, see [`calendars`]; read `CAST(calendar AS CHAR)`, as MariaDB's JSON type is a
    /// binary-collated text the driver would not decode as a string.
    calendar: Option<String>,
}

impl Storage {
    /// The server's prices for `products`, all of which must exist and be active.
    pub(crate) async fn prices(&self, lines: &OrderLines) -> StorageResult<Vec<i64>> {
        let price = |catalog: &ProductIndex, p: ProductId| {
            catalog
                .products
                .get(&p)
                .filter(|prod| prod.active)
                .map(|prod| prod.price)
                .ok_or(Refusal::UnknownProduct(p).into())
        };
        let catalog = self.catalog.load_full();
        if let Ok(prices) = lines.products().map(|p| price(&catalog, p)).collect() {
            return Ok(prices);
        }
        // Perhaps created on another instance since our last refresh.
        self.catalog().refresh_catalog().await?;
        let catalog = self.catalog.load_full();
        lines.products().map(|p| price(&catalog, p)).collect()
    }

    fn products(&self) -> Arc<ProductIndex> {
        self.catalog.load_full()
    }
}

impl Catalog<'_> {
    /// Reloads the products into memory (at start-up, after an operator's change, and on a timer
    /// so that several instances converge).
    ///
    /// Two loads can overlap (the timer and an explicit refresh): the one that started last read
    /// the newest rows, so an older load never replaces it.
    pub async fn refresh_catalog(&self) -> StorageResult<()> {
        let load = self.next_load();
        let rows: Vec<ProductRow> =
            sqlx::query_as("SELECT id, sku, name, price, active FROM products")
                .fetch_all(&self.db)
                .await?;
        let mut products = HashMap::with_capacity(rows.len());
        let mut active = Vec::with_capacity(rows.len());
        for row in rows {
            if row.active {
                active.push(row.id);
            }
            products.insert(row.id, Product::from(row));
        }
        active.sort_unstable();
        let fresh = Arc::new(ProductIndex {
            products,
            active,
            load,
            reads: PageReads::default(),
            mirror: self.catalog.load().mirror.clone(),
        });
        replace_if_newer(&self.catalog, fresh, |c| c.load);
        Ok(())
    }

    /// Reloads the locations and rebuilds the routing index of the active ones. Like the
    /// catalogue, an older load never replaces a newer one.
    pub async fn refresh_locations(&self) -> StorageResult<()> {
        let load = self.next_load();
        let rows: Vec<LocationRow> = sqlx::query_as(
            "SELECT id, CAST(kind AS CHAR) AS kind, name, latitude, longitude, active, \
             safety_stock, low_stock_threshold, CAST(calendar AS CHAR) AS calendar \
             FROM locations ORDER BY id",
        )
        .fetch_all(&self.db)
        .await?;
        let own_safety: rustc_hash::FxHashMap<(LocationId, ProductId), i64> =
            sqlx::query_as::<_, (LocationId, ProductId, i64)>(
                "SELECT location_id, product_id, safety_stock FROM stock WHERE safety_stock IS NOT NULL",
            )
            .fetch_all(&self.db)
            .await?
            .into_iter()
            .map(|(l, p, s)| ((l, p), s))
            .collect();
        let all: Vec<Location> = rows
            .into_iter()
            .map(|l| Location {
                calendar: calendars::from_column(l.id, l.calendar.as_deref()),
                location_id: l.id.get(),
                location_type: l.kind,
                name: l.name,
                latitude: l.latitude,
                longitude: l.longitude,
                active: l.active,
                safety_stock: l.safety_stock,
                low_stock_threshold: l.low_stock_threshold,
            })
            .collect();
        // Nothing changed: the load in place stays, with the locations near the points the pages
        // asked about (measuring them again after every refresh was a fiftieth of a page), and
        // nothing is rebuilt.
        let current = self.locations.load();
        if current.all == all && current.own_safety == own_safety {
            return Ok(());
        }
        let id = |l: &Location| LocationId::new_unchecked(l.location_id);
        let index = LocationIndex::new(all.iter().filter(|l| l.active).filter_map(|l| {
            Some(Site {
                id: id(l),
                kind: l.location_type,
                name: l.name.clone(),
                coordinates: Coordinates::new(l.latitude, l.longitude).ok()?,
                calendar: l.calendar.clone(),
            })
        }));
        // `all` is in id order (the query's), and so are these.
        let active = all
            .iter()
            .filter(|l| l.active)
            .map(|l| (id(l), l.location_type))
            .collect();
        let ids = all.iter().map(id).collect();
        let fresh = Arc::new(Locations {
            all,
            index,
            ids,
            active,
            own_safety,
            load,
            near: Default::default(),
        });
        replace_if_newer(&self.locations, fresh, |l| l.load);
        Ok(())
    }

    /// Ids of every location, active or not (every one may have events in flight).
    pub fn all_location_ids(&self) -> Vec<LocationId> {
        self.locations().ids.clone()
    }

    pub fn locations(&self) -> Arc<Locations> {
        self.locations.load_full()
    }

    pub fn product(&self, id: ProductId) -> Option<Product> {
        self.catalog.load().products.get(&id).cloned()
    }
}

/// Puts `fresh` in `slot` unless the copy there comes from a load that started later (two loads
/// can overlap: the timer's and an explicit refresh); readers never wait for it.
fn replace_if_newer<T>(slot: &ArcSwap<T>, fresh: Arc<T>, load: impl Fn(&T) -> u64) {
    let mut current = slot.load_full();
    while load(&current) < load(&fresh) {
        let before = slot.compare_and_swap(&current, fresh.clone());
        if Arc::ptr_eq(&before, &current) {
            return;
        }
        current = arc_swap::Guard::into_inner(before);
    }
}
