//! Online orders on the DB-lock path, and order status for every path.

use crate::auth::ShopKey;
use crate::catalog::Rendered;
use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use crate::types::{OrderBody, OrderRequest};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use sf_persistence::access::KeyLookup;
use sf_persistence::db_lock::{DbLockOrder, Placed};
use sf_persistence::model::{Order, OrderPath};
use sf_persistence::orders::IdempotencyRequest;
use sf_persistence::{Refusal, StorageError};
use std::sync::Arc;

#[derive(Tags)]
pub enum OrdersTag {
    /// Orders decided in one MySQL transaction with row locks, committed before the answer.
    DbLockOrders,
    /// Any order's current status.
    OrderStatus,
}

pub struct OrdersApi {
    pub state: Arc<ApiState>,
}

/// A placed order.
#[derive(ApiResponse)]
pub enum Created {
    /// The order is committed. A repeated `Idempotency-Key` with the same body gets the first
    /// answer again, with `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Rendered<OrderBody>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

/// Validates an `Idempotency-Key` header: 1 to 128 visible ASCII characters.
pub fn idempotency(
    scope: &str,
    key: Option<String>,
    body: &impl serde::Serialize,
) -> Result<Option<IdempotencyRequest>, Problem> {
    match key {
        None => Ok(None),
        Some(k) if !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(IdempotencyRequest::new(scope, k, body)))
        }
        Some(_) => Err(Problem::bad_request(
            "Idempotency-Key must be 1 to 128 visible ASCII characters",
        )),
    }
}

impl Created {
    /// The answer to a placed order (its body rendered without a `serde_json::Value` tree).
    pub fn new(placed: Placed) -> ApiResult<Self> {
        Ok(match placed {
            Placed::New(o) => Self::Created(Rendered::of(&o.into())?, None),
            Placed::Replayed(o) => Self::Created(Rendered::of(&o.into())?, Some("true".into())),
        })
    }
}

#[OpenApi]
impl OrdersApi {
    /// Place an order (DB-lock path)
    ///
    /// Routes the order (`NORMAL`: nearest warehouse that has everything; `SAME_DAY`: nearest store
    /// within the same-day radius; `PICKUP`: the chosen store), then in one transaction locks the
    /// stock rows in a fixed order, checks, decrements, and writes the order, its lines and the
    /// ledger. Committed before the answer. Send `Idempotency-Key` to make retries safe.
    #[oai(
        path = "/api/orders",
        method = "post",
        tag = "OrdersTag::DbLockOrders",
        operation_id = "createOrderDbLock"
    )]
    async fn create(
        &self,
        auth: ShopKey,
        body: Json<OrderRequest>,
        #[oai(
            name = "Idempotency-Key",
            validator(
                min_length = 1,
                max_length = 128,
                custom = "crate::types::Matches(&crate::types::IDEMPOTENCY_KEY)"
            )
        )]
        key: Header<Option<String>>,
    ) -> ApiResult<Created> {
        let (lines, destination) =
            body.validate(self.state.storage.options().same_day_radius_km)?;
        let shop = auth.shop(&self.state, KeyLookup::Mysql).await?;
        let idempotency = idempotency(&shop.scope("ORDER"), key.0, &*body)?;
        let order = DbLockOrder {
            lines,
            destination,
            path: OrderPath::DbLock,
            idempotency,
            channel: shop.channel,
            // The order's own channel.
            by: None,
        };
        Created::new(self.state.place_db_lock(order).await?)
    }

    /// Cancel an order (DB-lock path)
    ///
    /// The stock comes back exactly once, however often this is sent; cancelling a cancelled
    /// order answers the cancelled order again. An order of another path is cancelled through its
    /// own mechanism.
    #[oai(
        path = "/api/orders/:orderId/cancel",
        method = "patch",
        tag = "OrdersTag::DbLockOrders",
        operation_id = "cancelOrderDbLock"
    )]
    async fn cancel(
        &self,
        auth: ShopKey,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let id = order_id.0;
        may_cancel(&self.state, &auth, &id).await?;
        let order = self
            .state
            .write(|s| async move { s.redis_path().cancel(&id).await })
            .await?;
        Ok(Json(order.into()))
    }

    /// Get an order
    ///
    /// Any path's order: `ACCEPTED` while a Redis-path order is not yet in MySQL, `CONFIRMED`
    /// once it is, `CANCELLED` after a cancel, `REJECTED` (with `rejectReason`) when MySQL could
    /// not take it as sold. An order Redis lost with its data before it reached MySQL answers 410.
    #[oai(
        path = "/api/orders/:orderId",
        method = "get",
        tag = "OrdersTag::OrderStatus",
        operation_id = "getOrder"
    )]
    async fn get(
        &self,
        auth: ShopKey,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        Ok(Json(
            owned_order(&self.state, &auth, &order_id.0).await?.into(),
        ))
    }
}

/// Whether the key's channel may cancel order `id`: it placed it. Another channel's order is not
/// found, as an order that does not exist is.
pub async fn may_cancel(state: &ApiState, auth: &ShopKey, id: &str) -> ApiResult<()> {
    let shop = auth.shop(state, KeyLookup::RedisFirst).await?;
    if shop.channel.is_none() || shop.owns(state.storage.orders().channel_of(id).await?) {
        Ok(())
    } else {
        Err(StorageError::from(Refusal::UnknownOrder(id.to_owned())).into())
    }
}

/// The order `id` when the key's channel placed it; another channel's order is not found, as an
/// order that does not exist is.
pub async fn owned_order(state: &ApiState, auth: &ShopKey, id: &str) -> ApiResult<Order> {
    let shop = auth.shop(state, KeyLookup::RedisFirst).await?;
    let order = state.storage.orders().get(id).await?;
    if shop.owns(order.channel) {
        Ok(order)
    } else {
        Err(StorageError::from(Refusal::UnknownOrder(id.to_owned())).into())
    }
}
