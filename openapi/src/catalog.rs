//! Products and locations as MySQL has them.

use crate::problem::{bad_request, fail, Problem};
use crate::problem_responses;
use crate::state::ApiState;
use crate::types::{page_params, LocationList, ProductBody, ProductList};
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

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum ProductListResponse {
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
    /// Bad page parameters.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(ProductListResponse { 400 => BadRequest, 503 => Unavailable });

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum ProductResponse {
    /// The product with its stock at every active location.
    #[oai(status = 200)]
    Ok(
        Json<ProductBody>,
        /// Where the stock figures come from: `redis` (the sellable figure), or `mysql`
        /// (on-hand; the Redis-path read falls back to it while the stock cache is unavailable).
        #[oai(header = "Stock-Source")]
        Option<String>,
    ),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No such product.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(ProductResponse { 400 => BadRequest, 404 => NotFound, 503 => Unavailable });

#[derive(ApiResponse)]
pub enum LocationsResponse {
    /// Every warehouse and store, active or not.
    #[oai(status = 200)]
    Ok(Json<LocationList>),
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
        page: Query<Option<i64>>,
        size: Query<Option<i64>>,
    ) -> ProductListResponse {
        let (page, size) = match page_params(page.0, size.0) {
            Ok(p) => p,
            Err(p) => return p.into(),
        };
        match self.state.store.products_page(page, size).await {
            Ok(p) => ProductListResponse::Ok(
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
            ),
            Err(e) => fail(e),
        }
    }

    /// Get a product with its stock
    ///
    /// The on-hand quantity at every active location, as MySQL has it.
    #[oai(
        path = "/api/products/:productId",
        method = "get",
        tag = "CatalogTag::Products",
        operation_id = "getProduct"
    )]
    async fn get(&self, #[oai(name = "productId")] product_id: Path<i64>) -> ProductResponse {
        let id = match product_in_path(product_id.0) {
            Ok(id) => id,
            Err(p) => return p.into(),
        };
        match self.state.store.product_with_stock(id).await {
            Ok((p, stock)) => ProductResponse::Ok(
                Json(ProductBody::new(p, Some(stock))),
                Some(StockSource::Mysql.as_str().into()),
            ),
            Err(e) => fail(e),
        }
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
    async fn locations(&self) -> LocationsResponse {
        let locations = self.state.store.locations();
        LocationsResponse::Ok(Json(LocationList {
            locations: locations.all.iter().cloned().map(Into::into).collect(),
        }))
    }
}
