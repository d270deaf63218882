//! Online orders on the DB-lock path, and order status for every path.

use crate::problem::{bad_request, fail, Problem};
use crate::problem_responses;
use crate::state::ApiState;
use crate::types::{OrderBody, OrderRequest};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use sf_persistence::idempotency::IdempotencyRequest;
use sf_persistence::model::OrderPath;
use sf_persistence::mysql_first::{MysqlFirstOrder, Placed};
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

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum CreateOrderResponse {
    /// The order is committed. A repeated `Idempotency-Key` with the same body gets the first
    /// answer again, with `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<OrderBody>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
    /// Malformed JSON, a field of the wrong type, an unknown enum value or bad Idempotency-Key.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// An unknown product or store.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// Not enough stock anywhere the order may ship from (names the product; for a pickup, lists
    /// nearby stores that have it), or the same Idempotency-Key is still being processed.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// Valid JSON that breaks a rule: empty order, quantity out of 1..1000, missing address or
    /// store, coordinates out of range, or an Idempotency-Key reused with another body.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// A dependency is down; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(CreateOrderResponse { 400 => BadRequest, 404 => NotFound, 409 => Conflict, 422 => Unprocessable, 503 => Unavailable });

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum OrderResponse {
    /// The order.
    #[oai(status = 200)]
    Ok(Json<OrderBody>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No such order.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The state of the order does not allow this.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The order was accepted on the Redis path, but Redis lost its data before the order reached
    /// MySQL: it was not persisted and no stock was taken for it (`/problems/order-lost`).
    #[oai(status = 410, content_type = "application/problem+json")]
    Gone(Json<Problem>),
    /// A dependency is down, or the fate of an order is being settled after Redis lost its data;
    /// retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(OrderResponse { 400 => BadRequest, 404 => NotFound, 409 => Conflict, 410 => Gone, 503 => Unavailable });

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

pub fn created(placed: Placed) -> CreateOrderResponse {
    match placed {
        Placed::New(o) => CreateOrderResponse::Created(Json(o.into()), None),
        Placed::Replayed(o) => CreateOrderResponse::Created(Json(o.into()), Some("true".into())),
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
        body: Json<OrderRequest>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
    ) -> CreateOrderResponse {
        let run = async {
            let (lines, destination) = body.validate(self.state.store.config.same_day_radius_km)?;
            let idempotency = idempotency("DB_LOCK", key.0, &*body)?;
            let order = MysqlFirstOrder {
                lines,
                destination,
                path: OrderPath::DbLock,
                idempotency,
            };
            Ok::<_, Problem>(
                self.state
                    .write(|s| async move { s.place_mysql_first(&order).await })
                    .await?,
            )
        };
        match run.await {
            Ok(placed) => created(placed),
            Err(p) => p.into(),
        }
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
    async fn get(&self, #[oai(name = "orderId")] order_id: Path<String>) -> OrderResponse {
        match self.state.store.get_order(&order_id.0).await {
            Ok(o) => OrderResponse::Ok(Json(o.into())),
            Err(e) => fail(e),
        }
    }
}
