//! Products and locations as MySQL has them.

use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use crate::types::{LocationList, ProductBody, ProductList};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use sf_persistence::model::StockSource;
use sf_routing::ProductId;
use std::sync::Arc;

#[derive(Tags)]
pub enum CatalogTag {
    /// Products and their on-hand stock, read from MySQL (the system of record).
    Products,
    /// Warehouses and stores.
    Locations,
}

pub struct CatalogApi {
    pub state: Arc<ApiState>,
}

/// A page of products (also the answer of the Redis-path product list).
#[derive(ApiResponse)]
pub enum ProductPage {
    /// A page of products.
    #[oai(status = 200)]
    Ok(
        Json<ProductList>,
        /// Where the stock figures come from, when the page has them: `redis` (the sellable
        /// figure), or `mysql` (on-hand; the Redis-path reads fall back to it while the stock
        /// cache is unavailable).
        #[oai(header = "Stock-Source")]
        Option<String>,
    ),
}

/// One product with its stock (also the answer of the Redis-path product read).
#[derive(ApiResponse)]
pub enum ProductWithStock {
    /// The product with its stock at every active location.
    #[oai(status = 200)]
    Ok(
        Json<ProductBody>,
        /// Where the stock figures come from: `redis` (the sellable figure), or `mysql`
        /// (on-hand; the Redis-path read falls back to it while the stock cache is unavailable).
        #[oai(header = "Stock-Source")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum LocationsResponse {
    /// Every warehouse and store, active or not.
    #[oai(status = 200)]
    Ok(Json<LocationList>),
}

/// The page parameters once their validators passed (`page` 0 to 1,000,000, `size` 1 to 100),
/// with their defaults applied: page 0, 20 per page.
pub(crate) fn page_and_size(page: Option<i64>, size: Option<i64>) -> (u32, u32) {
    (page.unwrap_or(0) as u32, size.unwrap_or(20) as u32)
}

/// A path id that cannot name a product is simply not found.
pub fn product_in_path(id: i64) -> Result<ProductId, Problem> {
    ProductId::parse(id).map_err(|_| {
        Problem::new(
            404,
            "unknown-product",
            "Unknown product",
            format!("product {id} does not exist"),
        )
    })
}

#[OpenApi]
impl CatalogApi {
    /// List products
    ///
    /// Active products by id, `size` per page (1 to 100, default 20), from page 0.
    #[oai(
        path = "/api/products",
        method = "get",
        tag = "CatalogTag::Products",
        operation_id = "listProducts"
    )]
    async fn list(
        &self,
        /// The page, from 0 (default 0).
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        page: Query<Option<i64>>,
        /// Products per page (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        size: Query<Option<i64>>,
    ) -> ApiResult<ProductPage> {
        let (page, size) = page_and_size(page.0, size.0);
        let p = self.state.storage.products_page(page, size).await?;
        Ok(ProductPage::Ok(
            Json(ProductList {
                products: p
                    .items
                    .into_iter()
                    .map(|p| ProductBody::new(p, None))
                    .collect(),
                page,
                size,
                total: p.total,
            }),
            None,
        ))
    }

    /// Get a product with its stock
    ///
    /// The on-hand quantity at every active location, as MySQL has it.
    ///
    /// Answers 404 when there is no such product.
    #[oai(
        path = "/api/products/:productId",
        method = "get",
        tag = "CatalogTag::Products",
        operation_id = "getProduct"
    )]
    async fn get(
        &self,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
    ) -> ApiResult<ProductWithStock> {
        // The validator keeps the id positive, so it always names a possible product.
        let id = ProductId::new_unchecked(product_id.0 as u64);
        let (p, stock) = self.state.storage.product_with_stock(id).await?;
        Ok(ProductWithStock::Ok(
            Json(ProductBody::new(p, Some(stock))),
            Some(StockSource::Mysql.as_str().into()),
        ))
    }

    /// List locations
    ///
    /// Warehouses and stores with their coordinates.
    #[oai(
        path = "/api/locations",
        method = "get",
        tag = "CatalogTag::Locations",
        operation_id = "listLocations"
    )]
    async fn locations(&self) -> ApiResult<LocationsResponse> {
        let locations = self.state.storage.locations();
        Ok(LocationsResponse::Ok(Json(LocationList {
            locations: locations.all.iter().cloned().map(Into::into).collect(),
        })))
    }
}
