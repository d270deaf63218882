//! Operators' changes to locations and products: each reaches the in-memory copies of this
//! instance at once, and of the others within seconds.

use super::calendars::{self, CalendarChange};
use super::pages::page_end;
use super::*;

use crate::error::{Refusal, StorageError, StorageResult};
use crate::model::{Location, Product};
use sf_routing::{CalendarSpec, Coordinates, LocationId, LocationKind, ProductId};

/// Fields an operator may change on a location; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct LocationChange {
    pub name: Option<String>,
    pub coordinates: Option<Coordinates>,
    pub active: Option<bool>,
    /// The default safety stock of the location's products.
    pub safety_stock: Option<i64>,
    /// Where its products count as low (`stock.low`).
    pub low_stock_threshold: Option<i64>,
    /// Its calendar, field by field.
    pub calendar: CalendarChange,
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
        Refusal::Conflict(what()).into()
    } else {
        e
    }
}

impl Catalog<'_> {
    /// Opens a warehouse or store, with its calendar (`None`: open around the clock). It takes
    /// part in routing at once on this instance, and within a few seconds on the others. A
    /// calendar that [`sf_routing::Calendar::parse`] refuses is a [`Refusal::Invalid`] with its
    /// message, and nothing is written.
    pub async fn create_location(
        &self,
        kind: LocationKind,
        name: &str,
        at: Coordinates,
        calendar: Option<&CalendarSpec>,
    ) -> StorageResult<Location> {
        let calendar = match calendar {
            Some(spec) => calendars::to_column(&calendars::parse(spec)?)?,
            None => None,
        };
        self.in_time(self.db_deadline(), async {
            let id = sqlx::query(
                "INSERT INTO locations (kind, name, latitude, longitude, calendar) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(kind.as_str())
            .bind(name)
            .bind(at.latitude())
            .bind(at.longitude())
            .bind(calendar)
            .execute(&self.db)
            .await?
            .last_insert_id();
            // The key MySQL just gave the row: `AUTO_INCREMENT` starts at 1.
            let id = LocationId::new_unchecked(id);
            self.catalog().refresh_locations().await?;
            self.catalog()
                .locations()
                .get(id)
                .cloned()
                .ok_or(Refusal::UnknownLocation(id).into())
        })
        .await
    }

    /// Renames, moves, deactivates or reactivates a location, or changes its calendar. A
    /// deactivated location is never chosen by routing; its stock and orders stay.
    ///
    /// A calendar change is merged into the calendar MySQL holds (the row locked, so two
    /// operators' changes to different fields both stay) and validated whole before anything is
    /// written: a calendar that [`sf_routing::Calendar::parse`] refuses is a
    /// [`Refusal::Invalid`] with its message, and nothing of the change is applied.
    pub async fn update_location(
        &self,
        id: LocationId,
        change: LocationChange,
    ) -> StorageResult<Location> {
        self.in_time(self.db_deadline(), async {
            let mut tx = self.begin().await?;
            // MariaDB's JSON is a binary-collated text: read as text (see `refresh_locations`).
            let stored: Option<Option<String>> = sqlx::query_scalar(
                "SELECT CAST(calendar AS CHAR) FROM locations WHERE id = ? FOR UPDATE",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let stored = stored.ok_or(Refusal::UnknownLocation(id))?;
            let calendar = if change.calendar.is_empty() {
                stored
            } else {
                let current = calendars::from_column(id, stored.as_deref());
                let current = current
                    .as_deref()
                    .unwrap_or_else(|| sf_routing::calendar::always_open());
                calendars::to_column(&change.calendar.apply(current)?)?
            };
            sqlx::query(
                "UPDATE locations SET name = COALESCE(?, name), latitude = COALESCE(?, latitude), \
             longitude = COALESCE(?, longitude), active = COALESCE(?, active), \
             safety_stock = COALESCE(?, safety_stock), \
             low_stock_threshold = COALESCE(?, low_stock_threshold), calendar = ? WHERE id = ?",
            )
            .bind(change.name)
            .bind(change.coordinates.map(|c| c.latitude()))
            .bind(change.coordinates.map(|c| c.longitude()))
            .bind(change.active)
            .bind(change.safety_stock)
            .bind(change.low_stock_threshold)
            .bind(calendar)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if change.safety_stock.is_some() {
                // Redis decides online orders with the location's default too.
                self.push_safety(id, &[]).await;
            }
            self.catalog().refresh_locations().await?;
            self.catalog()
                .locations()
                .get(id)
                .cloned()
                .ok_or(Refusal::UnknownLocation(id).into())
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
            // The key MySQL just gave the row: `AUTO_INCREMENT` starts at 1.
            let id = ProductId::new_unchecked(id);
            self.catalog().refresh_catalog().await?;
            self.product(id).ok_or(Refusal::UnknownProduct(id).into())
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
            let rows: Vec<ProductRow> = sqlx::query_as(
                "SELECT id, sku, name, price, active FROM products \
                 WHERE id > ? AND (? IS NULL OR active = ?) ORDER BY id LIMIT ?",
            )
            .bind(after)
            .bind(active)
            .bind(active)
            .bind(limit + 1)
            .fetch_all(&self.db)
            .await?;
            let mut items: Vec<Product> = rows.into_iter().map(Product::from).collect();
            let next = page_end(&mut items, limit as usize, |p| p.product_id);
            Ok((items, next))
        })
        .await
    }

    /// One product as operators see it, active or not (MySQL).
    pub async fn product_for_operators(&self, id: ProductId) -> StorageResult<Product> {
        self.in_time(self.db_deadline(), async {
            let row: ProductRow =
                sqlx::query_as("SELECT id, sku, name, price, active FROM products WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .ok_or(Refusal::UnknownProduct(id))?;
            Ok(row.into())
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
            .bind(id)
            .execute(&self.db)
            .await?;
            self.catalog().refresh_catalog().await?;
            self.product(id).ok_or(Refusal::UnknownProduct(id).into())
        })
        .await
    }
}
