//! The store POS API under `/api/stores/{storeId}`.
//!
//! Reads (the store's stock, nearby stores) are open, like the shop's product pages: they show
//! figures the shop shows anyway. Everything that changes stock (a sale, a cancel or return) needs
//! a POS key of that very store: no key or a bad key is `401`, a key of another store `403`, and
//! neither changes anything.

use crate::auth::StoreKey;
use crate::catalog::product_in_path;
use crate::orders::{idempotency, CreateOrderResponse, OrderResponse};
use crate::problem::{bad_request, Problem};
use crate::problem_responses;
use crate::state::ApiState;
use crate::types::{page_params, parse_lines, PosOrderRequest};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use sf_persistence::model::OrderPath;
use sf_persistence::mysql_first::MysqlFirstOrder;
use sf_persistence::StoreError;
use sf_routing::{Destination, LocationId, LocationKind, ProductId};
use std::sync::Arc;

#[derive(Tags)]
pub enum StoresTag {
    /// Store terminals: the store's stock, nearby stores, POS sales and returns (per-store keys).
    Stores,
}

pub struct StoresApi {
    pub state: Arc<ApiState>,
}

/// A product and its sellable quantity in one store.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StoreProduct {
    pub product_id: u64,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub quantity: i64,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StoreProductList {
    pub store_id: u64,
    pub products: Vec<StoreProduct>,
    pub page: u32,
    pub size: u32,
    pub total: u64,
}

/// One product's sellable quantity in one store.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StoreStock {
    pub store_id: u64,
    pub product_id: u64,
    pub quantity: i64,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct NearbyStore {
    pub store_id: u64,
    pub name: String,
    pub distance_km: f64,
    pub quantity: i64,
}

#[derive(Debug, Clone, Object)]
pub struct NearbyStores {
    /// Nearest first.
    pub stores: Vec<NearbyStore>,
}

macro_rules! read_response {
    ($name:ident, $body:ty, $doc:literal) => {
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "bad_request")]
        pub enum $name {
            #[doc = $doc]
            #[oai(status = 200)]
            Ok(
                Json<$body>,
                /// `redis` (the sellable figure), or `mysql` while the stock cache is unavailable
                /// (on-hand, still counting online orders not yet persisted).
                #[oai(header = "Stock-Source")]
                String,
            ),
            /// Bad query parameters.
            #[oai(status = 400, content_type = "application/problem+json")]
            BadRequest(Json<Problem>),
            /// No such store or product.
            #[oai(status = 404, content_type = "application/problem+json")]
            NotFound(Json<Problem>),
            #[oai(status = 503, content_type = "application/problem+json")]
            Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
            #[oai(status = 500, content_type = "application/problem+json")]
            Internal(Json<Problem>),
        }
        problem_responses!($name { 400 => BadRequest, 404 => NotFound, 503 => Unavailable });
    };
}
read_response!(
    StoreProductsResponse,
    StoreProductList,
    "A page of the store's products with their sellable quantity."
);
read_response!(
    StoreStockResponse,
    StoreStock,
    "The product's sellable quantity in the store."
);
read_response!(
    NearbyResponse,
    NearbyStores,
    "Other stores that have the product, nearest first."
);

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum PosSaleResponse {
    /// The sale is committed in MySQL and reflected in the store's Redis stock. A repeated
    /// `Idempotency-Key` with the same body gets the first answer, with `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<crate::types::OrderBody>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No key, or a key that is unknown or revoked.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// A key of another store.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// Not enough sellable stock in the store (units taken by online orders are not sellable).
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(PosSaleResponse { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound, 409 => Conflict, 422 => Unprocessable, 503 => Unavailable });

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum PosCancelResponse {
    /// The sale is cancelled (or was already); its stock came back exactly once.
    #[oai(status = 200)]
    Ok(Json<crate::types::OrderBody>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such sale in this store.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(PosCancelResponse { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound, 503 => Unavailable });

impl From<CreateOrderResponse> for PosSaleResponse {
    fn from(r: CreateOrderResponse) -> Self {
        match r {
            CreateOrderResponse::Created(b, h) => Self::Created(b, h),
            CreateOrderResponse::BadRequest(p) => Self::BadRequest(p),
            CreateOrderResponse::NotFound(p) => Self::NotFound(p),
            CreateOrderResponse::Conflict(p) => Self::Conflict(p),
            CreateOrderResponse::Unprocessable(p) => Self::Unprocessable(p),
            CreateOrderResponse::Unavailable(p, s) => Self::Unavailable(p, s),
            CreateOrderResponse::Internal(p) => Self::Internal(p),
        }
    }
}

impl From<OrderResponse> for PosCancelResponse {
    fn from(r: OrderResponse) -> Self {
        match r {
            OrderResponse::Ok(b) => Self::Ok(b),
            OrderResponse::BadRequest(p) => Self::BadRequest(p),
            OrderResponse::NotFound(p) => Self::NotFound(p),
            OrderResponse::Unavailable(p, s) => Self::Unavailable(p, s),
            // A POS sale is never on the Redis path, so never rejected or lost.
            OrderResponse::Conflict(p) | OrderResponse::Gone(p) | OrderResponse::Internal(p) => {
                Self::Internal(p)
            }
        }
    }
}

impl StoresApi {
    /// The path's store, which must be an active store.
    fn store(&self, id: i64) -> Result<LocationId, Problem> {
        let not_found = || Problem::not_found(format!("store {id} does not exist or is closed"));
        let loc = LocationId::parse("storeId", id).map_err(|_| not_found())?;
        let locations = self.state.store.locations();
        match locations.index.get(loc) {
            Some(s) if s.kind == LocationKind::Store => Ok(loc),
            _ => Err(not_found()),
        }
    }
}

#[OpenApi]
impl StoresApi {
    /// List the store's products
    ///
    /// Active products by id with their sellable quantity in this store (Redis). No key needed.
    #[oai(
        path = "/api/stores/:storeId/products",
        method = "get",
        tag = "StoresTag::Stores",
        operation_id = "listStoreProducts"
    )]
    async fn products(
        &self,
        #[oai(name = "storeId")] store_id: Path<i64>,
        page: Query<Option<i64>>,
        size: Query<Option<i64>>,
    ) -> StoreProductsResponse {
        let run = async {
            let store = self.store(store_id.0)?;
            let (page, size) = page_params(page.0, size.0)?;
            let p = self.state.store.products_page(page, size).await?;
            let ids: Vec<ProductId> = p
                .items
                .iter()
                .map(|p| ProductId::new_unchecked(p.product_id))
                .collect();
            let (stock, source) = self.state.store.read_stock(&[store], &ids).await?;
            let list = StoreProductList {
                store_id: store.get(),
                products: p
                    .items
                    .into_iter()
                    .zip(stock.first().cloned().unwrap_or_default())
                    .map(|(p, quantity)| StoreProduct {
                        product_id: p.product_id,
                        sku: p.sku,
                        name: p.name,
                        price: p.price,
                        quantity,
                    })
                    .collect(),
                page,
                size,
                total: p.total,
            };
            Ok::<_, Problem>((list, source))
        };
        match run.await {
            Ok((l, source)) => StoreProductsResponse::Ok(Json(l), source.as_str().into()),
            Err(p) => p.into(),
        }
    }

    /// One product's stock in the store
    ///
    /// The quantity the store can sell now (Redis). No key needed.
    #[oai(
        path = "/api/stores/:storeId/products/:productId/stock",
        method = "get",
        tag = "StoresTag::Stores",
        operation_id = "getStoreStock"
    )]
    async fn stock(
        &self,
        #[oai(name = "storeId")] store_id: Path<i64>,
        #[oai(name = "productId")] product_id: Path<i64>,
    ) -> StoreStockResponse {
        let run = async {
            let store = self.store(store_id.0)?;
            let product = product_in_path(product_id.0)?;
            if !self
                .state
                .store
                .catalog_product(product)
                .is_some_and(|p| p.active)
            {
                return Err(StoreError::UnknownProduct(product).into());
            }
            let (stock, source) = self.state.store.read_stock(&[store], &[product]).await?;
            let body = StoreStock {
                store_id: store.get(),
                product_id: product.get(),
                quantity: stock[0][0],
            };
            Ok::<_, Problem>((body, source))
        };
        match run.await {
            Ok((s, source)) => StoreStockResponse::Ok(Json(s), source.as_str().into()),
            Err(p) => p.into(),
        }
    }

    /// Nearby stores that have the product
    ///
    /// Other active stores within `radiusKm` (0.1 to 100, default: the same-day radius) that have
    /// at least one unit, nearest first, at most `limit` (1 to 50, default 10). No key needed.
    #[oai(
        path = "/api/stores/:storeId/products/:productId/nearby",
        method = "get",
        tag = "StoresTag::Stores",
        operation_id = "nearbyStores"
    )]
    async fn nearby(
        &self,
        #[oai(name = "storeId")] store_id: Path<i64>,
        #[oai(name = "productId")] product_id: Path<i64>,
        #[oai(name = "radiusKm")] radius_km: Query<Option<f64>>,
        limit: Query<Option<i64>>,
    ) -> NearbyResponse {
        let run = async {
            let store = self.store(store_id.0)?;
            let product = product_in_path(product_id.0)?;
            if !self
                .state
                .store
                .catalog_product(product)
                .is_some_and(|p| p.active)
            {
                return Err(StoreError::UnknownProduct(product).into());
            }
            let radius = radius_km
                .0
                .unwrap_or(self.state.store.config.same_day_radius_km);
            if !(0.1..=100.0).contains(&radius) {
                return Err(Problem::bad_request(format!(
                    "radiusKm must be between 0.1 and 100, got {radius}"
                )));
            }
            let limit = limit.0.unwrap_or(10);
            if !(1..=50).contains(&limit) {
                return Err(Problem::bad_request(format!(
                    "limit must be between 1 and 50, got {limit}"
                )));
            }
            let (nearby, source) = self
                .state
                .store
                .nearby_stock(store, &[product], radius)
                .await?;
            let body = NearbyStores {
                stores: nearby
                    .into_iter()
                    .filter(|(_, _, q)| q[0] > 0)
                    .take(limit as usize)
                    .map(|(c, name, q)| NearbyStore {
                        store_id: c.location.get(),
                        name,
                        distance_km: (c.distance_km.unwrap_or(0.0) * 1000.0).round() / 1000.0,
                        quantity: q[0],
                    })
                    .collect(),
            };
            Ok::<_, Problem>((body, source))
        };
        match run.await {
            Ok((s, source)) => NearbyResponse::Ok(Json(s), source.as_str().into()),
            Err(p) => p.into(),
        }
    }

    /// POS sale
    ///
    /// Written to MySQL and committed before the answer, then reflected in the store's Redis
    /// stock as a change (orders in flight are kept). Never sells a unit an online order already
    /// took. Needs a key of this store.
    #[oai(
        path = "/api/stores/:storeId/orders",
        method = "post",
        tag = "StoresTag::Stores",
        operation_id = "posSale"
    )]
    async fn sale(
        &self,
        auth: StoreKey,
        #[oai(name = "storeId")] store_id: Path<i64>,
        body: Json<PosOrderRequest>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
    ) -> PosSaleResponse {
        let run = async {
            let store = self.store(store_id.0)?;
            auth.authorize(&self.state, store).await?;
            let lines = parse_lines(&body.items)?;
            let idempotency = idempotency(&format!("POS:{store}"), key.0, &*body)?;
            let order = MysqlFirstOrder {
                lines,
                destination: Destination::InStore { store },
                path: OrderPath::Pos,
                idempotency,
            };
            Ok::<_, Problem>(
                self.state
                    .write(|s| async move { s.place_mysql_first(&order).await })
                    .await?,
            )
        };
        match run.await {
            Ok(placed) => crate::orders::created(placed).into(),
            Err(p) => p.into(),
        }
    }

    /// POS cancel or return
    ///
    /// Cancels a sale of this store; its stock comes back exactly once, however often this is
    /// sent. Needs a key of this store.
    #[oai(
        path = "/api/stores/:storeId/orders/:orderId/cancel",
        method = "patch",
        tag = "StoresTag::Stores",
        operation_id = "posCancel"
    )]
    async fn cancel(
        &self,
        auth: StoreKey,
        #[oai(name = "storeId")] store_id: Path<i64>,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> PosCancelResponse {
        let run = async {
            let store = self.store(store_id.0)?;
            auth.authorize(&self.state, store).await?;
            let not_here = || {
                Problem::new(
                    404,
                    "unknown-order",
                    "Unknown order",
                    format!("store {store} has no sale {}", order_id.0),
                )
            };
            let order = self
                .state
                .store
                .order_from_mysql(&order_id.0)
                .await?
                .ok_or_else(not_here)?;
            if order.path != OrderPath::Pos || order.fulfillment_location_id != store.get() {
                return Err(not_here());
            }
            let id = order_id.0.clone();
            Ok::<_, Problem>(
                self.state
                    .write(|s| async move { s.cancel_mysql_first(&id).await })
                    .await?,
            )
        };
        match run.await {
            Ok(o) => PosCancelResponse::Ok(Json(o.into())),
            Err(p) => p.into(),
        }
    }
}
