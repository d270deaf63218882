//! The shop's product pages: a list page (each product with its stock summed over the active
//! locations) and one product with its stock per active location, from MySQL or from Redis.

use super::*;

use crate::error::{Refusal, StorageResult};
use crate::model::{Page, Product, StockLevel, StockSource};
use crate::Storage;
use sf_routing::{Coordinates, LocationId, LocationKind, ProductId};
use sqlx::QueryBuilder;
use std::sync::Arc;

/// A product as a list page shows it: its stock summed over the active locations instead of the
/// stock per location.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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

/// One active product with its stock at the active locations its [`StockScope`] shows, in the
/// scope's order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductStock {
    pub product: Product,
    pub stock: Vec<StockLevel>,
    pub source: StockSource,
    /// The `after` of the next page of locations ([`StockScope::ById`]), when more follow.
    pub next: Option<u64>,
    /// The scope it shows.
    pub scope: ScopeKey,
}

/// Which active locations a product page shows. A page never shows more than `limit`: at a
/// national chain's size a product is stocked at over a thousand locations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StockScope {
    /// By location id, from the first above `after`.
    ById { after: u64, limit: u32 },
    /// Within `radius_km` of a point, nearest first (ties by id).
    Near {
        from: Coordinates,
        radius_km: f64,
        limit: u32,
    },
}

/// The locations a scope shows: each with its kind and, for [`StockScope::Near`], its distance.
/// Two are the same when they come from the same scope and the same load of the locations: what
/// the read groups compare and hash, instead of every location shown.
#[derive(Debug, Clone)]
pub(super) struct Shown {
    /// Shared with the near points kept ([`NearPoints`]): a page copies none of it.
    pub(super) at: Arc<[ShownAt]>,
    pub(super) next: Option<u64>,
    /// The scope and [`Locations::load`] these locations follow from.
    from: (ScopeKey, u64),
}

impl PartialEq for Shown {
    fn eq(&self, other: &Self) -> bool {
        self.from == other.from
    }
}

impl Eq for Shown {}

impl std::hash::Hash for Shown {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.from.hash(state);
    }
}

/// A [`StockScope`] as a key (its floating-point figures as their bits): two pages of one
/// product with the same key show the same locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKey {
    ById {
        after: u64,
        limit: u32,
    },
    Near {
        at: (u64, u64),
        radius: u64,
        limit: u32,
    },
}

impl From<StockScope> for ScopeKey {
    fn from(scope: StockScope) -> Self {
        match scope {
            StockScope::ById { after, limit } => Self::ById { after, limit },
            StockScope::Near {
                from,
                radius_km,
                limit,
            } => Self::Near {
                at: (from.latitude().to_bits(), from.longitude().to_bits()),
                radius: radius_km.to_bits(),
                limit,
            },
        }
    }
}

impl Shown {
    fn ids(&self) -> Vec<LocationId> {
        self.at.iter().map(|at| at.id).collect()
    }

    fn level(&self, i: usize, quantity: i64) -> StockLevel {
        let at = self.at[i];
        StockLevel {
            location_id: at.id.get(),
            location_type: at.kind,
            quantity,
            distance_km: at.distance.map(f64::from_bits),
        }
    }
}

impl Locations {
    /// The active locations `scope` shows.
    pub(super) fn shown(&self, scope: StockScope) -> Shown {
        let key = ScopeKey::from(scope);
        let from = (key, self.load);
        match scope {
            StockScope::ById { after, limit } => {
                let start = self.active.partition_point(|(l, _)| l.get() <= after);
                let end = start.saturating_add(limit as usize).min(self.active.len());
                let at: Arc<[ShownAt]> = self.active[start..end]
                    .iter()
                    .map(|(l, k)| self.shown_at(*l, *k, None))
                    .collect();
                let next = (end < self.active.len())
                    .then(|| at.last().map(|at| at.id.get()))
                    .flatten();
                Shown { at, next, from }
            }
            StockScope::Near {
                from: point,
                radius_km,
                limit,
            } => {
                let at = self.near.points.get(&key).unwrap_or_else(|| {
                    let at: Arc<[ShownAt]> = self
                        .index
                        .near(point, radius_km)
                        .into_iter()
                        .take(limit as usize)
                        .filter_map(|c| {
                            let site = self.index.get(c.location)?;
                            Some(self.shown_at(
                                c.location,
                                site.kind,
                                c.distance_km.map(f64::to_bits),
                            ))
                        })
                        .collect();
                    self.near.points.insert(key, at.clone());
                    at
                });
                Shown {
                    at,
                    next: None,
                    from,
                }
            }
        }
    }
}

/// The active locations within a radius of a point, nearest first, for the last
/// [`NearPoints::KEPT`] (point, radius, limit) product pages asked for. Measuring every location
/// in the point's latitude band geodesically was about a fifth of a product page's CPU; a shopper
/// reads many products from one point. Part of one [`Locations`] load, so a change of the
/// locations starts it empty.
pub(super) struct NearPoints {
    /// By [`ScopeKey::Near`].
    points: quick_cache::sync::Cache<ScopeKey, Arc<[ShownAt]>>,
}

/// A location a page shows.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShownAt {
    id: LocationId,
    kind: LocationKind,
    /// From the point asked about, in km as `f64` bits.
    distance: Option<u64>,
    /// The location's own safety stock, for products without one of their own (looked up once
    /// per scope, not once per page).
    safety: i64,
}

impl Locations {
    fn shown_at(&self, id: LocationId, kind: LocationKind, distance: Option<u64>) -> ShownAt {
        ShownAt {
            id,
            kind,
            distance,
            safety: self.default_safety(id),
        }
    }
}

impl NearPoints {
    const KEPT: usize = 4096;
}

impl Default for NearPoints {
    fn default() -> Self {
        Self {
            points: quick_cache::sync::Cache::new(Self::KEPT),
        }
    }
}

impl std::fmt::Debug for NearPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NearPoints({} kept)", self.points.len())
    }
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

impl Storage {
    /// The stock mirror the product pages read Redis through, on one server (see
    /// [`StockMirror`]).
    fn page_mirror<'a>(&self, catalog: &'a ProductIndex) -> Option<&'a StockMirror> {
        (!self.redis_settings.is_cluster()).then_some(&*catalog.mirror)
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn read_products_after(&self, after: u64, limit: u32) -> StorageResult<ProductsAfter> {
        self.in_time(self.db_deadline(), async {
            // One row more than asked for says whether a next page exists.
            let mut items: Vec<ListedProduct> = sqlx::query_as(
                "SELECT p.id AS product_id, p.name, p.price, \
                 (SELECT CAST(COALESCE(SUM(GREATEST(0, s.available - COALESCE(s.safety_stock, l.safety_stock))), 0) AS SIGNED) FROM stock s \
                  JOIN locations l ON l.id = s.location_id AND l.active \
                  WHERE s.product_id = p.id) AS total_quantity \
                 FROM products p WHERE p.active AND p.id > ? ORDER BY p.id LIMIT ?",
            )
            .bind(after)
            .bind(limit + 1)
            .fetch_all(&self.db)
            .await?;
            let next = page_end(&mut items, limit as usize, |p| p.product_id);
            Ok(ProductsAfter {
                items,
                next,
                source: StockSource::Mysql,
            })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, shown))]
    async fn read_product_with_stock(
        &self,
        id: ProductId,
        shown: &Shown,
    ) -> StorageResult<ProductStock> {
        self.in_time(self.db_deadline(), async {
            let mut q = QueryBuilder::new(
                "SELECT p.id, p.sku, p.name, p.price, p.active, s.location_id, \
                 GREATEST(0, s.available - COALESCE(s.safety_stock, l.safety_stock)) AS available \
                 FROM products p \
                 LEFT JOIN (stock s JOIN locations l ON l.id = s.location_id AND l.active) \
                 ON s.product_id = p.id AND s.location_id IN ",
            );
            crate::infra::mysql::push_list(
                &mut q,
                shown
                    .ids()
                    .into_iter()
                    .chain([LocationId::new_unchecked(0)]),
            );
            q.push(" WHERE p.id = ").push_bind(id).push(" AND p.active");
            let rows: Vec<ProductStockRow> = q.build_query_as().fetch_all(&self.db).await?;
            let found: std::collections::HashMap<u64, i64> = rows
                .iter()
                .filter_map(|r| Some((r.location_id?, r.available?)))
                .collect();
            // In the scope's order; a location without a stock row for the product is left out.
            let stock = shown
                .at
                .iter()
                .enumerate()
                .filter_map(|(i, at)| Some(shown.level(i, *found.get(&at.id.get())?)))
                .collect();
            let first = rows.into_iter().next();
            Ok(ProductStock {
                product: first.ok_or(Refusal::UnknownProduct(id))?.product.into(),
                stock,
                source: StockSource::Mysql,
                next: shown.next,
                scope: shown.from.0,
            })
        })
        .await
    }
}

impl Catalog<'_> {
    /// Active products by id, a page at a time, with their count (MySQL; the store's product
    /// list).
    pub async fn products_page(&self, page: u32, size: u32) -> StorageResult<Page<Product>> {
        self.in_time(self.db_deadline(), async {
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products WHERE active")
                .fetch_one(&self.db)
                .await?;
            let rows: Vec<ProductRow> = sqlx::query_as(
                "SELECT id, sku, name, price, active FROM products WHERE active ORDER BY id LIMIT ? OFFSET ?",
            )
            .bind(size)
            .bind(u64::from(page) * u64::from(size))
            .fetch_all(&self.db)
            .await?;
            Ok(Page {
                items: rows.into_iter().map(Product::from).collect(),
                total: total as u64,
            })
        })
        .await
    }

    /// Up to `limit` active products with an id above `after`, each with its on-hand stock summed
    /// over the active locations (MySQL: one statement, an index range of the products and, per
    /// product, the sum of its stock rows; no temporary table, no sort).
    pub async fn products_after(
        &self,
        after: u64,
        limit: u32,
    ) -> StorageResult<Arc<ProductsAfter>> {
        let catalog = self.products();
        catalog
            .reads
            .mysql_lists
            .read((after, limit), || self.read_products_after(after, limit))
            .await
    }

    /// Up to `limit` active products with an id above `after`, from the in-memory catalogue,
    /// each with its sellable stock summed over the active locations from Redis (one read of the
    /// whole page, see [`crate::redis_path::RedisPath::read_stock`]); MySQL's on-hand while Redis is not trusted.
    pub async fn redis_products_after(
        &self,
        after: u64,
        limit: u32,
    ) -> StorageResult<Arc<ProductsAfter>> {
        let catalog = self.products();
        let start = catalog.active.partition_point(|p| p.get() <= after);
        let end = start
            .saturating_add(limit as usize)
            .min(catalog.active.len());
        catalog
            .reads
            .redis_lists
            .read((start, end), || async {
                let ids = &catalog.active[start..end];
                let sites = self.catalog().locations();
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
                            total_quantity: total(
                                locations
                                    .iter()
                                    .zip(&stock)
                                    .map(|(l, at)| sites.sellable_online(*l, *id, at[i])),
                            ),
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

    /// One active product and its on-hand stock at the active locations `scope` shows (MySQL,
    /// one statement).
    pub async fn product_with_stock(
        &self,
        id: ProductId,
        scope: StockScope,
    ) -> StorageResult<Arc<ProductStock>> {
        let catalog = self.products();
        let shown = self.catalog().locations().shown(scope);
        catalog
            .reads
            .mysql_products
            .read((id, shown.clone()), || {
                self.read_product_with_stock(id, &shown)
            })
            .await
    }

    /// One active product (from the in-memory catalogue) and its sellable stock at the active
    /// locations `scope` shows, from Redis (one read, see
    /// [`crate::redis_path::RedisPath::read_stock`]); MySQL's on-hand while Redis is not
    /// trusted.
    pub async fn redis_product_with_stock(
        &self,
        id: ProductId,
        scope: StockScope,
    ) -> StorageResult<Arc<ProductStock>> {
        let catalog = self.products();
        let product = catalog
            .products
            .get(&id)
            .filter(|p| p.active)
            .ok_or(Refusal::UnknownProduct(id))?;
        let sites = self.catalog().locations();
        let shown = sites.shown(scope);
        let mirror = self.page_mirror(&catalog);
        let read = || async {
            let (stock, source) = self.read_stock_with(&shown.ids(), &[id], mirror).await?;
            Ok(ProductStock {
                product: product.clone(),
                stock: stock
                    .iter()
                    .enumerate()
                    .map(|(i, at)| {
                        let loc = shown.at[i];
                        let quantity = sites.sellable_with(
                            loc.id,
                            id,
                            loc.safety,
                            at.first().copied().unwrap_or(0),
                        );
                        shown.level(i, quantity)
                    })
                    .collect(),
                source,
                next: shown.next,
                scope: shown.from.0,
            })
        };
        // A page read through a live mirror shares its one round trip (the mirror's `PING`) with
        // the pages read at the same time already, and assembling it costs less than the read
        // groups' bookkeeping; any other read (Redis directly, MySQL) is shared here.
        if mirror.is_some_and(StockMirror::is_live) && self.circuit.trusted() {
            return Ok(Arc::new(Box::pin(read()).await?));
        }
        catalog
            .reads
            .redis_products
            .read((id, shown.clone()), read)
            .await
    }
}

/// A row of [`Storage::read_product_with_stock`]: the product, and its stock at one location.
#[derive(sqlx::FromRow)]
struct ProductStockRow {
    #[sqlx(flatten)]
    product: ProductRow,
    location_id: Option<u64>,
    available: Option<i64>,
}

/// Cuts `items` (read with one more than `limit`) to the page, and gives the cursor of the next
/// page: the last id shown, when more follow.
pub(super) fn page_end<T>(items: &mut Vec<T>, limit: usize, id: impl Fn(&T) -> u64) -> Option<u64> {
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn totals_count_a_figure_below_zero_as_zero() {
        assert_eq!(total([3, -2, 4].into_iter()), 7);
        assert_eq!(total(std::iter::empty()), 0);
    }
}
