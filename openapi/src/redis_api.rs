//! The Redis path: orders decided by an atomic Lua script and answered at once, persisted to
//! MySQL in the background; stock read from Redis.

use crate::auth::ShopKey;
use crate::catalog::{
    after_and_limit, stock_scope, Answer, ProductPage, ProductWithStock, Rendered,
};
use crate::orders::idempotency;
use crate::problem::ApiResult;
use crate::state::ApiState;
use crate::types::{OrderBody, OrderRequest, ProductList};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use sf_persistence::access::KeyLookup;
use sf_persistence::db_lock::Placed;
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

/// An order taken on the Redis path.
#[derive(ApiResponse)]
pub enum Accepted {
    /// Accepted: the stock is taken and the order is durably recorded in Redis; it becomes
    /// `CONFIRMED` once the consumer has written it to MySQL. A repeated `Idempotency-Key` with the
    /// same body gets the first answer again, with `Idempotent-Replayed: true`.
    #[oai(status = 202)]
    Accepted(
        Rendered<OrderBody>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

impl Accepted {
    /// The answer to a placed order (its body rendered without a `serde_json::Value` tree).
    pub fn new(placed: Placed) -> ApiResult<Self> {
        Ok(match placed {
            Placed::New(o) => Self::Accepted(Rendered::of(&o.into())?, None),
            Placed::Replayed(o) => Self::Accepted(Rendered::of(&o.into())?, Some("true".into())),
        })
    }
}

#[OpenApi]
impl RedisApi {
    /// List products with stock (Redis)
    ///
    /// Like `GET /api/products` (same cursor, `limit`, `ETag` and `Cache-Control`), and each
    /// product's `totalQuantity` is its sellable stock summed over the active locations as Redis
    /// has it when the request arrives (reservations not yet in MySQL already taken off). The
    /// stock per location is on `GET /api/redis/products/{productId}`.
    #[oai(
        path = "/api/redis/products",
        method = "get",
        tag = "RedisTag::RedisPath",
        operation_id = "listProductsRedis"
    )]
    async fn list(
        &self,
        /// Start after this product id: the `next` of the previous page (leave it out for the
        /// first page).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Products per page, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
        /// The `ETag` of a copy the client holds.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> ApiResult<ProductPage> {
        let (after, limit) = after_and_limit(after.0, limit.0);
        let page = self
            .state
            .storage
            .catalog()
            .redis_products_after(after, limit)
            .await?;
        Ok(Answer::new(
            &ProductList::new(&page, limit),
            page.source,
            if_none_match.0.as_deref(),
        )?
        .into())
    }

    /// Get a product with its stock (Redis)
    ///
    /// The sellable quantity at the active locations as Redis has it, and their sum: the same
    /// parameters and pages as `GET /api/products/{productId}`. Sends an
    /// `ETag`, and `Cache-Control: no-cache`; with `If-None-Match` naming the current `ETag` the
    /// answer is `304` without a body. Answers 404 when there is no such active product.
    #[oai(
        path = "/api/redis/products/:productId",
        method = "get",
        tag = "RedisTag::RedisPath",
        operation_id = "getProductRedis"
    )]
    async fn get(
        &self,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
        /// The `ETag` of a copy the client holds.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
        /// `latitude,longitude` (WGS 84 degrees, e.g. `37.5665,126.9780`): only the locations
        /// within `radiusKm` of this point, nearest first, each with its `distanceKm`. A
        /// latitude beyond ±90 or a longitude beyond ±180 is 422.
        #[oai(validator(custom = "crate::types::Matches(&crate::types::NEAR)"))]
        near: Query<Option<String>>,
        /// With `near` only (422 without it): how far to look, in kilometres (more than 0, at
        /// most 500; default 10).
        #[oai(
            name = "radiusKm",
            validator(minimum(value = "0", exclusive), maximum(value = "500"))
        )]
        radius_km: Query<Option<f64>>,
        /// Locations per answer: 1 to 500 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<i64>>,
        /// Without `near` only (422 with it): the locations after this location id (the previous
        /// answer's `next`).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
    ) -> ApiResult<ProductWithStock> {
        let scope = stock_scope(near.0.as_deref(), radius_km.0, limit.0, after.0)?;
        // The validator keeps the id positive, so it always names a possible product.
        let id = ProductId::new_unchecked(product_id.0 as u64);
        // Boxed: the web framework moves this handler's future into a box at each routing level,
        // and the read's state held inline made each of those copies large.
        let p = Box::pin(
            self.state
                .storage
                .catalog()
                .redis_product_with_stock(id, scope),
        )
        .await?;
        Ok(self
            .state
            .pages
            .redis
            .answer(p, if_none_match.0.as_deref())?
            .into())
    }

    /// Place an order (Redis path)
    ///
    /// Same body, routing, validation and `Idempotency-Key` rules as `POST /api/orders`. One Lua
    /// script checks every line, takes all lines or none, and records the order event durably in
    /// the same atomic step; the answer (`202`, `ACCEPTED`) does not wait for MySQL.
    ///
    /// Answers 503 (with `Retry-After`) when the stock could not be loaded into Redis; retry after
    /// the given seconds.
    #[oai(
        path = "/api/redis/orders",
        method = "post",
        tag = "RedisTag::RedisPath",
        operation_id = "createOrderRedis"
    )]
    async fn create(
        &self,
        auth: ShopKey,
        body: Json<OrderRequest>,
        /// Makes retries safe: 1 to 128 visible ASCII characters.
        #[oai(
            name = "Idempotency-Key",
            validator(
                min_length = 1,
                max_length = 128,
                custom = "crate::types::Matches(&crate::types::IDEMPOTENCY_KEY)"
            )
        )]
        key: Header<Option<String>>,
    ) -> ApiResult<Accepted> {
        let (lines, destination) =
            body.validate(self.state.storage.options().same_day_radius_km)?;
        let shop = auth.shop(&self.state, KeyLookup::RedisFirst).await?;
        let idempotency = idempotency(&shop.scope("ORDER"), key.0, &*body)?;
        let order = RedisOrder {
            lines,
            destination,
            idempotency,
            channel: shop.channel,
        };
        let placed = self
            .state
            .write(|s| async move { s.redis_path().place(&order).await })
            .await?;
        Accepted::new(placed)
    }

    /// Cancel an order (Redis path)
    ///
    /// Gives the units back in Redis atomically and exactly once, also before the order reached
    /// MySQL; the MySQL restock follows through the same event flow.
    ///
    /// Answers 404 when there is no such order; 409 when the state of the order does not allow
    /// this; 410 when the order was accepted on the Redis path but Redis lost its data before the
    /// order reached MySQL (it was not persisted and no stock was taken for it); 503 (with
    /// `Retry-After`) when a dependency is down, or while the fate of an order is being settled
    /// after Redis lost its data.
    #[oai(
        path = "/api/redis/orders/:orderId/cancel",
        method = "patch",
        tag = "RedisTag::RedisPath",
        operation_id = "cancelOrderRedis"
    )]
    async fn cancel(
        &self,
        auth: ShopKey,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let id = order_id.0;
        crate::orders::may_cancel(&self.state, &auth, &id).await?;
        let order = self
            .state
            .write(|s| async move { s.redis_path().cancel(&id).await })
            .await?;
        Ok(Json(order.into()))
    }
}
