//! The Redis path: orders decided by an atomic Lua script and answered at once, persisted to
//! MySQL in the background; stock read from Redis.

use crate::catalog::{product_in_path, ProductListResponse, ProductResponse};
use crate::orders::{idempotency, CreateOrderResponse, OrderResponse};
use crate::problem::{bad_request, fail, Problem};
use crate::problem_responses;
use crate::state::ApiState;
use crate::types::{page_params, OrderBody, OrderRequest, ProductBody, ProductList};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use sf_persistence::mysql_first::Placed;
use sf_persistence::redis_path::RedisOrder;
use sf_routing::ProductId;
use std::sync::Arc;

#[derive(Tags)]
pub enum RedisTag {
    /// Orders decided atomically in Redis and persisted to MySQL in the background, and stock as
    /// Redis sells it.
    RedisPath,
}

pub struct RedisApi {
    pub state: Arc<ApiState>,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum AcceptOrderResponse {
    /// Accepted: the stock is taken and the order is durably recorded in Redis; it becomes
    /// `CONFIRMED` once the consumer has written it to MySQL. A repeated `Idempotency-Key` with the
    /// same body gets the first answer again, with `Idempotent-Replayed: true`.
    #[oai(status = 202)]
    Accepted(
        Json<OrderBody>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Stock could not be loaded into Redis; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(AcceptOrderResponse { 400 => BadRequest, 404 => NotFound, 409 => Conflict, 422 => Unprocessable, 503 => Unavailable });

impl From<CreateOrderResponse> for AcceptOrderResponse {
    fn from(r: CreateOrderResponse) -> Self {
        match r {
            CreateOrderResponse::Created(b, h) => Self::Accepted(b, h),
            CreateOrderResponse::BadRequest(p) => Self::BadRequest(p),
            CreateOrderResponse::NotFound(p) => Self::NotFound(p),
            CreateOrderResponse::Conflict(p) => Self::Conflict(p),
            CreateOrderResponse::Unprocessable(p) => Self::Unprocessable(p),
            CreateOrderResponse::Unavailable(p, s) => Self::Unavailable(p, s),
            CreateOrderResponse::Internal(p) => Self::Internal(p),
        }
    }
}

#[OpenApi]
impl RedisApi {
    /// List products with stock (Redis)
    ///
    /// Like `GET /api/products`, and each product carries its sellable stock per active location
    /// as Redis has it (reservations not yet in MySQL already taken off).
    #[oai(
        path = "/api/redis/products",
        method = "get",
        tag = "RedisTag::RedisPath",
        operation_id = "listProductsRedis"
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
        let run = async {
            let p = self.state.store.cached_products_page(page, size);
            let ids: Vec<ProductId> = p
                .items
                .iter()
                .map(|p| ProductId::new_unchecked(p.product_id))
                .collect();
            let (mut stock, source) = self.state.store.redis_stock_levels(&ids).await?;
            let list = ProductList {
                products: p
                    .items
                    .into_iter()
                    .map(|p| {
                        let s = stock.remove(&ProductId::new_unchecked(p.product_id));
                        ProductBody::new(p, Some(s.unwrap_or_default()))
                    })
                    .collect(),
                page,
                size,
                total: p.total,
            };
            Ok::<_, Problem>((list, source))
        };
        match run.await {
            Ok((list, source)) => ProductListResponse::Ok(Json(list), Some(source.as_str().into())),
            Err(p) => p.into(),
        }
    }

    /// Get a product with its stock (Redis)
    #[oai(
        path = "/api/redis/products/:productId",
        method = "get",
        tag = "RedisTag::RedisPath",
        operation_id = "getProductRedis"
    )]
    async fn get(&self, #[oai(name = "productId")] product_id: Path<i64>) -> ProductResponse {
        let run = async {
            let id = product_in_path(product_id.0)?;
            let product = self
                .state
                .store
                .catalog_product(id)
                .filter(|p| p.active)
                .ok_or(sf_persistence::StoreError::UnknownProduct(id))?;
            let (mut stock, source) = self.state.store.redis_stock_levels(&[id]).await?;
            Ok::<_, Problem>((ProductBody::new(product, stock.remove(&id)), source))
        };
        match run.await {
            Ok((p, source)) => ProductResponse::Ok(Json(p), Some(source.as_str().into())),
            Err(p) => p.into(),
        }
    }

    /// Place an order (Redis path)
    ///
    /// Same body, routing, validation and `Idempotency-Key` rules as `POST /api/orders`. One Lua
    /// script checks every line, takes all lines or none, and records the order event durably in
    /// the same atomic step; the answer (`202`, `ACCEPTED`) does not wait for MySQL.
    #[oai(
        path = "/api/redis/orders",
        method = "post",
        tag = "RedisTag::RedisPath",
        operation_id = "createOrderRedis"
    )]
    async fn create(
        &self,
        body: Json<OrderRequest>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
    ) -> AcceptOrderResponse {
        let run = async {
            let (lines, destination) = body.validate(self.state.store.config.same_day_radius_km)?;
            let idempotency = idempotency("REDIS", key.0, &*body)?;
            let order = RedisOrder {
                lines,
                destination,
                idempotency,
            };
            Ok::<_, Problem>(
                self.state
                    .write(|s| async move { s.place_redis(&order).await })
                    .await?,
            )
        };
        match run.await {
            Ok(Placed::New(o)) => AcceptOrderResponse::Accepted(Json(o.into()), None),
            Ok(Placed::Replayed(o)) => {
                AcceptOrderResponse::Accepted(Json(o.into()), Some("true".into()))
            }
            Err(p) => p.into(),
        }
    }

    /// Cancel an order (Redis path)
    ///
    /// Gives the units back in Redis atomically and exactly once, also before the order reached
    /// MySQL; the MySQL restock follows through the same event flow.
    #[oai(
        path = "/api/redis/orders/:orderId/cancel",
        method = "patch",
        tag = "RedisTag::RedisPath",
        operation_id = "cancelOrderRedis"
    )]
    async fn cancel(&self, #[oai(name = "orderId")] order_id: Path<String>) -> OrderResponse {
        let id = order_id.0;
        match self
            .state
            .write(|s| async move { s.cancel_order(&id).await })
            .await
        {
            Ok(o) => OrderResponse::Ok(Json(o.into())),
            Err(e) => fail(e),
        }
    }
}
