//! Products and locations: MySQL queries, and the in-memory copies that pricing and routing read
//! on every order (no per-request catalogue query on the hot path).

use crate::error::{StoreError, StoreResult};
use crate::model::{Location, Page, Product, StockLevel};
use crate::Store;
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
}

/// All locations, and the routing index of the active ones.
#[derive(Debug, Default)]
pub struct Locations {
    pub all: Vec<Location>,
    pub index: LocationIndex,
}

impl Locations {
    pub fn get(&self, id: LocationId) -> Option<&Location> {
        self.all.iter().find(|l| l.location_id == id.get())
    }
}

fn product_from_row(r: &sqlx::mysql::MySqlRow) -> StoreResult<Product> {
    Ok(Product {
        product_id: r.try_get("id")?,
        sku: r.try_get("sku")?,
        name: r.try_get("name")?,
        price: r.try_get("price")?,
        active: r.try_get("active")?,
    })
}

fn kind(s: &str) -> StoreResult<LocationKind> {
    LocationKind::parse(s).ok_or_else(|| StoreError::Internal(format!("bad location kind {s}")))
}

impl Store {
    /// Reloads the products into memory (at start-up, after an operator's change, and on a timer
    /// so that several instances converge).
    pub async fn refresh_catalog(&self) -> StoreResult<()> {
        let rows = sqlx::query("SELECT id, sku, name, price, active FROM products")
            .fetch_all(&self.db)
            .await?;
        let mut products = HashMap::with_capacity(rows.len());
        for r in &rows {
            let p = product_from_row(r)?;
            products.insert(ProductId::new_unchecked(p.product_id), p);
        }
        *self.catalog.write().expect("catalog lock") = Arc::new(Catalog { products });
        Ok(())
    }

    /// Reloads the locations and rebuilds the routing index of the active ones.
    pub async fn refresh_locations(&self) -> StoreResult<()> {
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
        *self.locations.write().expect("locations lock") = Arc::new(Locations { all, index });
        Ok(())
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
    pub async fn prices(&self, lines: &OrderLines) -> StoreResult<Vec<i64>> {
        if lines.products().any(|p| self.catalog_product(p).is_none()) {
            // Perhaps created on another instance since our last refresh.
            self.refresh_catalog().await?;
        }
        lines
            .products()
            .map(|p| match self.catalog_product(p) {
                Some(prod) if prod.active => Ok(prod.price),
                _ => Err(StoreError::UnknownProduct(p)),
            })
            .collect()
    }

    /// Active products by id, a page at a time (MySQL).
    pub async fn products_page(&self, page: u32, size: u32) -> StoreResult<Page<Product>> {
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
                .collect::<StoreResult<_>>()?,
            total: total as u64,
        })
    }

    /// One active product and its on-hand stock at every active location (MySQL).
    pub async fn product_with_stock(
        &self,
        id: ProductId,
    ) -> StoreResult<(Product, Vec<StockLevel>)> {
        let row = sqlx::query(
            "SELECT id, sku, name, price, active FROM products WHERE id = ? AND active",
        )
        .bind(id.get())
        .fetch_optional(&self.db)
        .await?
        .ok_or(StoreError::UnknownProduct(id))?;
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
            .collect::<StoreResult<_>>()?;
        Ok((product, stock))
    }
}
