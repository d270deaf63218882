//! Operators' routes under `/api/admin`, behind the admin bearer token.

use crate::auth::AdminAuth;
use crate::problem::{bad_request, Problem};
use crate::problem_responses;
use crate::state::ApiState;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use sf_persistence::mysql_first::{Reason, StockTarget};
use sf_routing::LocationId;
use std::sync::Arc;

#[derive(Tags)]
pub enum AdminTag {
    /// Operators: stock changes, POS keys, locations and products, reconciliation.
    Admin,
}

pub struct AdminApi {
    pub state: Arc<ApiState>,
}

/// Why an operator changes stock; recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockReason {
    /// Goods arrived.
    Restock,
    /// A correction (count, damage, loss).
    Adjust,
}

impl From<StockReason> for Reason {
    fn from(r: StockReason) -> Self {
        match r {
            StockReason::Restock => Reason::Restock,
            StockReason::Adjust => Reason::Adjust,
        }
    }
}

/// Set the on-hand stock to a quantity.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct SetStockRequest {
    /// The new on-hand quantity, 0 to 1,000,000,000.
    pub quantity: i64,
    pub reason: StockReason,
}

impl Example for SetStockRequest {
    fn example() -> Self {
        Self {
            quantity: 50,
            reason: StockReason::Restock,
        }
    }
}

/// Change the on-hand stock by a signed amount.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct AdjustStockRequest {
    /// Units to add (negative to remove), -1,000,000,000 to 1,000,000,000, not zero.
    pub delta: i64,
    pub reason: StockReason,
}

impl Example for AdjustStockRequest {
    fn example() -> Self {
        Self {
            delta: -2,
            reason: StockReason::Adjust,
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StockChangeBody {
    pub location_id: u64,
    pub product_id: u64,
    /// On-hand before the change.
    pub before: i64,
    /// On-hand after the change.
    pub after: i64,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum StockChangeResponse {
    /// Changed, recorded in the ledger, and applied to Redis as a change.
    #[oai(status = 200)]
    Ok(Json<StockChangeBody>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// Missing or wrong admin token.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// No such location or product.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The units to remove are reserved by online orders not yet in MySQL.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// A quantity out of range, or a change that would make the stock negative.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(StockChangeResponse { 400 => BadRequest, 401 => Unauthorized, 404 => NotFound, 409 => Conflict, 422 => Unprocessable, 503 => Unavailable });

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct IssueKeyRequest {
    /// A note for operators, such as the terminal's name.
    pub label: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct IssuedKeyBody {
    pub key_id: u64,
    pub store_id: u64,
    /// The key itself. Shown this once; only its hash is kept.
    pub key: String,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum IssueKeyResponse {
    /// Issued.
    #[oai(status = 201)]
    Created(Json<IssuedKeyBody>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// No such store.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The location is a warehouse.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(IssueKeyResponse { 400 => BadRequest, 401 => Unauthorized, 404 => NotFound, 422 => Unprocessable });

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum RevokeKeyResponse {
    /// Revoked; it stops working at once.
    #[oai(status = 204)]
    Revoked,
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// The store has no such key.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(RevokeKeyResponse { 400 => BadRequest, 401 => Unauthorized, 404 => NotFound });

pub fn location_in_path(id: i64) -> Result<LocationId, Problem> {
    LocationId::parse("locationId", id)
        .map_err(|_| Problem::not_found(format!("location {id} does not exist")))
}

const MAX_STOCK: i64 = 1_000_000_000;

impl AdminApi {
    async fn change(
        &self,
        location_id: i64,
        product_id: i64,
        target: StockTarget,
        reason: StockReason,
    ) -> StockChangeResponse {
        let run = async {
            let loc = location_in_path(location_id)?;
            let product = crate::catalog::product_in_path(product_id)?;
            let change = self
                .state
                .store
                .change_stock(loc, product, target, reason.into())
                .await?;
            Ok::<_, Problem>(StockChangeBody {
                location_id: loc.get(),
                product_id: product.get(),
                before: change.before,
                after: change.after,
            })
        };
        match run.await {
            Ok(b) => StockChangeResponse::Ok(Json(b)),
            Err(p) => p.into(),
        }
    }
}

#[OpenApi(prefix_path = "/api/admin", tag = "AdminTag::Admin")]
impl AdminApi {
    /// Set on-hand stock
    ///
    /// Sets the on-hand quantity of a product at a location. The difference is recorded in the
    /// ledger with the reason, and reaches Redis as a change, so online orders in flight are kept.
    #[oai(
        path = "/locations/:locationId/products/:productId/stock",
        method = "put",
        operation_id = "setStock"
    )]
    async fn set_stock(
        &self,
        _auth: AdminAuth,
        #[oai(name = "locationId")] location_id: Path<i64>,
        #[oai(name = "productId")] product_id: Path<i64>,
        body: Json<SetStockRequest>,
    ) -> StockChangeResponse {
        if !(0..=MAX_STOCK).contains(&body.quantity) {
            return Problem::validation(format!(
                "quantity must be between 0 and {MAX_STOCK}, got {}",
                body.quantity
            ))
            .into();
        }
        self.change(
            location_id.0,
            product_id.0,
            StockTarget::Set(body.quantity),
            body.reason,
        )
        .await
    }

    /// Adjust on-hand stock
    ///
    /// Adds (or, with a negative delta, removes) units; recorded in the ledger like a set.
    #[oai(
        path = "/locations/:locationId/products/:productId/stock/adjustments",
        method = "post",
        operation_id = "adjustStock"
    )]
    async fn adjust_stock(
        &self,
        _auth: AdminAuth,
        #[oai(name = "locationId")] location_id: Path<i64>,
        #[oai(name = "productId")] product_id: Path<i64>,
        body: Json<AdjustStockRequest>,
    ) -> StockChangeResponse {
        if body.delta == 0 || !(-MAX_STOCK..=MAX_STOCK).contains(&body.delta) {
            return Problem::validation(format!(
                "delta must be non-zero and between -{MAX_STOCK} and {MAX_STOCK}, got {}",
                body.delta
            ))
            .into();
        }
        self.change(
            location_id.0,
            product_id.0,
            StockTarget::Add(body.delta),
            body.reason,
        )
        .await
    }

    /// Issue a POS key
    ///
    /// A new key for a store's terminals. The answer shows the key once; only its hash is kept.
    #[oai(
        path = "/stores/:storeId/keys",
        method = "post",
        operation_id = "issueStoreKey"
    )]
    async fn issue_key(
        &self,
        _auth: AdminAuth,
        #[oai(name = "storeId")] store_id: Path<i64>,
        body: Json<IssueKeyRequest>,
    ) -> IssueKeyResponse {
        let run = async {
            let store = location_in_path(store_id.0)?;
            let label = body.label.clone().unwrap_or_default();
            if label.chars().count() > 100 {
                return Err(Problem::validation("label may have at most 100 characters"));
            }
            Ok::<_, Problem>(self.state.store.issue_store_key(store, &label).await?)
        };
        match run.await {
            Ok(k) => IssueKeyResponse::Created(Json(IssuedKeyBody {
                key_id: k.key_id,
                store_id: k.store_id,
                key: k.key,
            })),
            Err(p) => p.into(),
        }
    }

    /// Revoke a POS key
    #[oai(
        path = "/stores/:storeId/keys/:keyId",
        method = "delete",
        operation_id = "revokeStoreKey"
    )]
    async fn revoke_key(
        &self,
        _auth: AdminAuth,
        #[oai(name = "storeId")] store_id: Path<i64>,
        #[oai(name = "keyId")] key_id: Path<i64>,
    ) -> RevokeKeyResponse {
        let run = async {
            let store = location_in_path(store_id.0)?;
            let key = u64::try_from(key_id.0).map_err(|_| {
                Problem::not_found(format!("store {store} has no key {}", key_id.0))
            })?;
            self.state.store.revoke_store_key(store, key).await?;
            Ok::<_, Problem>(())
        };
        match run.await {
            Ok(()) => RevokeKeyResponse::Revoked,
            Err(p) => p.into(),
        }
    }
}
