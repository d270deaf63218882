//! Operators' routes under `/api/admin`, behind the admin bearer token.

use crate::auth::AdminAuth;
use crate::problem::{bad_request, fail, Problem};
use crate::problem_responses;
use crate::state::ApiState;
use crate::types::{LocationBody, LocationTypeBody, OrderBody};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use sf_persistence::catalog::{LocationChange, ProductChange};
use sf_persistence::jobs::{recent_runs, JobKind, RunOutcome};
use sf_persistence::mysql_first::{Reason, StockTarget};
use sf_routing::{Coordinates, LocationId, LocationKind};
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

/// A new warehouse or store.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewLocation {
    pub location_type: LocationTypeBody,
    /// 1 to 200 characters.
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
}

/// Changes to a location; absent fields stay as they are. `active: false` closes it: routing
/// never chooses it again.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct LocationPatch {
    pub name: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub active: Option<bool>,
}

/// A new product.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct NewProduct {
    /// Unique, 1 to 64 characters.
    pub sku: String,
    /// 1 to 200 characters.
    pub name: String,
    /// Price of one unit in won, 0 to 100,000,000.
    pub price: i64,
}

/// Changes to a product; absent fields stay as they are. `active: false` stops its sale.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AdminProductBody {
    pub product_id: u64,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub active: bool,
}

impl From<sf_persistence::model::Product> for AdminProductBody {
    fn from(p: sf_persistence::model::Product) -> Self {
        Self {
            product_id: p.product_id,
            sku: p.sku,
            name: p.name,
            price: p.price,
            active: p.active,
        }
    }
}

macro_rules! write_response {
    ($name:ident, $body:ty, $status:literal, $doc:literal) => {
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "bad_request")]
        pub enum $name {
            #[doc = $doc]
            #[oai(status = $status)]
            Ok(Json<$body>),
            #[oai(status = 400, content_type = "application/problem+json")]
            BadRequest(Json<Problem>),
            #[oai(status = 401, content_type = "application/problem+json")]
            Unauthorized(Json<Problem>),
            #[oai(status = 404, content_type = "application/problem+json")]
            NotFound(Json<Problem>),
            /// A product with this SKU exists already.
            #[oai(status = 409, content_type = "application/problem+json")]
            Conflict(Json<Problem>),
            /// A field out of range.
            #[oai(status = 422, content_type = "application/problem+json")]
            Unprocessable(Json<Problem>),
            #[oai(status = 500, content_type = "application/problem+json")]
            Internal(Json<Problem>),
        }
        problem_responses!($name { 400 => BadRequest, 401 => Unauthorized, 404 => NotFound, 409 => Conflict, 422 => Unprocessable });
    };
}
write_response!(CreateLocationResponse, LocationBody, 201, "Opened.");
write_response!(UpdateLocationResponse, LocationBody, 200, "Changed.");
write_response!(CreateProductResponse, AdminProductBody, 201, "Created.");
write_response!(UpdateProductResponse, AdminProductBody, 200, "Changed.");

fn check_name(field: &str, value: &str, max: usize) -> Result<(), Problem> {
    let n = value.trim().chars().count();
    if n == 0 || n > max {
        return Err(Problem::validation(format!(
            "{field} must have 1 to {max} characters"
        )));
    }
    Ok(())
}

const MAX_PRICE: i64 = 100_000_000;

fn check_price(price: i64) -> Result<(), Problem> {
    if !(0..=MAX_PRICE).contains(&price) {
        return Err(Problem::validation(format!(
            "price must be between 0 and {MAX_PRICE}, got {price}"
        )));
    }
    Ok(())
}

/// One run of a scheduled job.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobRunBody {
    pub run_id: u64,
    /// `reconcile`, `reclaim` or `housekeeping`.
    pub job: String,
    /// The instance that ran it.
    pub instance: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// False when the run failed or panicked (`details.error` says why).
    pub ok: bool,
    pub keys_checked: u64,
    /// Redis keys whose value differed from MySQL and were set right.
    pub keys_repaired: u64,
    /// Stock rows whose on-hand is not initial stock plus the ledger (reported, never rewritten).
    pub ledger_mismatches: u64,
    /// For reconcile: `repairs` (location, product, before, after), `mismatches`, `keysLoaded`.
    pub details: serde_json::Value,
}

impl From<sf_persistence::jobs::JobRun> for JobRunBody {
    fn from(r: sf_persistence::jobs::JobRun) -> Self {
        Self {
            run_id: r.run_id,
            job: r.job,
            instance: r.instance,
            started_at: r.started_at,
            duration_ms: r.duration_ms,
            ok: r.ok,
            keys_checked: r.keys_checked,
            keys_repaired: r.keys_repaired,
            ledger_mismatches: r.ledger_mismatches,
            details: r.details,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct JobRunList {
    /// Newest first.
    pub runs: Vec<JobRunBody>,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum JobRunsResponse {
    /// Recent runs.
    #[oai(status = 200)]
    Ok(Json<JobRunList>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(JobRunsResponse { 400 => BadRequest, 401 => Unauthorized });

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum RunNowResponse {
    /// The run finished; here is what it checked and repaired.
    #[oai(status = 200)]
    Ok(Json<JobRunBody>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// A run is already going (here or on another instance).
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(RunNowResponse { 400 => BadRequest, 401 => Unauthorized, 409 => Conflict, 503 => Unavailable });

#[derive(Debug, Clone, Object)]
pub struct OrderList {
    /// Newest first.
    pub orders: Vec<OrderBody>,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum OrderListResponse {
    /// Orders in that status.
    #[oai(status = 200)]
    Ok(Json<OrderList>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(OrderListResponse { 400 => BadRequest, 401 => Unauthorized, 503 => Unavailable });

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum RetryOrderResponse {
    /// MySQL took the order as sold now: it is `CONFIRMED`, with its stock and ledger rows.
    #[oai(status = 200)]
    Ok(Json<OrderBody>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// No such order.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The order is not `REJECTED` (`/problems/conflict`), or its location still lacks the units
    /// (`/problems/out-of-stock`, naming the product); nothing changed.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(RetryOrderResponse { 400 => BadRequest, 401 => Unauthorized, 404 => NotFound, 409 => Conflict, 503 => Unavailable });

/// A time Redis lost the data the service had loaded into it.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct DataLossBody {
    /// When the lost data set had been loaded into Redis (RFC 3339). Redis-path orders accepted
    /// between this and `detectedAt` that had not reached MySQL were lost with it.
    pub since: String,
    /// When the service noticed (RFC 3339).
    pub detected_at: String,
}

#[derive(Debug, Clone, Object)]
pub struct DataLossList {
    /// Newest first.
    pub losses: Vec<DataLossBody>,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum DataLossResponse {
    /// Recorded data losses.
    #[oai(status = 200)]
    Ok(Json<DataLossList>),
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}
problem_responses!(DataLossResponse { 400 => BadRequest, 401 => Unauthorized, 503 => Unavailable });

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

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
            let reason = reason.into();
            let change = self
                .state
                .write(|s| async move { s.change_stock(loc, product, target, reason).await })
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

    /// Open a location
    ///
    /// Adds a warehouse or a store. Routing considers it at once (on other instances within a few
    /// seconds). Give it stock with the stock routes.
    #[oai(path = "/locations", method = "post", operation_id = "createLocation")]
    async fn create_location(
        &self,
        _auth: AdminAuth,
        body: Json<NewLocation>,
    ) -> CreateLocationResponse {
        let run = async {
            check_name("name", &body.name, 200)?;
            let at = Coordinates::new(body.latitude, body.longitude)?;
            let kind = match body.location_type {
                LocationTypeBody::Warehouse => LocationKind::Warehouse,
                LocationTypeBody::Store => LocationKind::Store,
            };
            Ok::<_, Problem>(
                self.state
                    .store
                    .create_location(kind, body.name.trim(), at)
                    .await?,
            )
        };
        match run.await {
            Ok(l) => CreateLocationResponse::Ok(Json(l.into())),
            Err(p) => p.into(),
        }
    }

    /// Change a location
    ///
    /// Rename, move, close (`active: false`) or reopen a location.
    #[oai(
        path = "/locations/:locationId",
        method = "patch",
        operation_id = "updateLocation"
    )]
    async fn update_location(
        &self,
        _auth: AdminAuth,
        #[oai(name = "locationId")] location_id: Path<i64>,
        body: Json<LocationPatch>,
    ) -> UpdateLocationResponse {
        let run = async {
            let id = location_in_path(location_id.0)?;
            if let Some(n) = &body.name {
                check_name("name", n, 200)?;
            }
            let coordinates = match (body.latitude, body.longitude) {
                (Some(lat), Some(lon)) => Some(Coordinates::new(lat, lon)?),
                (None, None) => None,
                _ => return Err(Problem::validation("send latitude and longitude together")),
            };
            let change = LocationChange {
                name: body.name.as_ref().map(|n| n.trim().to_owned()),
                coordinates,
                active: body.active,
            };
            Ok::<_, Problem>(self.state.store.update_location(id, change).await?)
        };
        match run.await {
            Ok(l) => UpdateLocationResponse::Ok(Json(l.into())),
            Err(p) => p.into(),
        }
    }

    /// Close a location
    ///
    /// Same as `PATCH` with `active: false`: routing never chooses it again; its stock, orders and
    /// keys stay.
    #[oai(
        path = "/locations/:locationId",
        method = "delete",
        operation_id = "deactivateLocation"
    )]
    async fn deactivate_location(
        &self,
        auth: AdminAuth,
        #[oai(name = "locationId")] location_id: Path<i64>,
    ) -> UpdateLocationResponse {
        let close = LocationPatch {
            name: None,
            latitude: None,
            longitude: None,
            active: Some(false),
        };
        self.update_location(auth, location_id, Json(close)).await
    }

    /// Create a product
    #[oai(path = "/products", method = "post", operation_id = "createProduct")]
    async fn create_product(
        &self,
        _auth: AdminAuth,
        body: Json<NewProduct>,
    ) -> CreateProductResponse {
        let run = async {
            check_name("sku", &body.sku, 64)?;
            check_name("name", &body.name, 200)?;
            check_price(body.price)?;
            Ok::<_, Problem>(
                self.state
                    .store
                    .create_product(body.sku.trim(), body.name.trim(), body.price)
                    .await?,
            )
        };
        match run.await {
            Ok(p) => CreateProductResponse::Ok(Json(p.into())),
            Err(p) => p.into(),
        }
    }

    /// Change a product
    ///
    /// Rename, reprice (orders placed from now on get the new price), stop (`active: false`) or
    /// resume its sale.
    #[oai(
        path = "/products/:productId",
        method = "patch",
        operation_id = "updateProduct"
    )]
    async fn update_product(
        &self,
        _auth: AdminAuth,
        #[oai(name = "productId")] product_id: Path<i64>,
        body: Json<ProductPatch>,
    ) -> UpdateProductResponse {
        let run = async {
            let id = crate::catalog::product_in_path(product_id.0)?;
            if let Some(n) = &body.name {
                check_name("name", n, 200)?;
            }
            if let Some(p) = body.price {
                check_price(p)?;
            }
            let change = ProductChange {
                name: body.name.as_ref().map(|n| n.trim().to_owned()),
                price: body.price,
                active: body.active,
            };
            Ok::<_, Problem>(self.state.store.update_product(id, change).await?)
        };
        match run.await {
            Ok(p) => UpdateProductResponse::Ok(Json(p.into())),
            Err(p) => p.into(),
        }
    }

    /// Stop selling a product
    ///
    /// Same as `PATCH` with `active: false`.
    #[oai(
        path = "/products/:productId",
        method = "delete",
        operation_id = "deactivateProduct"
    )]
    async fn deactivate_product(
        &self,
        auth: AdminAuth,
        #[oai(name = "productId")] product_id: Path<i64>,
    ) -> UpdateProductResponse {
        let stop = ProductPatch {
            name: None,
            price: None,
            active: Some(false),
        };
        self.update_product(auth, product_id, Json(stop)).await
    }

    /// Reconciliation runs
    ///
    /// The most recent runs of the scheduled jobs, newest first: when each started, how long it
    /// took, the keys it checked and repaired (with before and after values), and ledger
    /// mismatches. `job` filters (`reconcile`, `reclaim`, `housekeeping`); `limit` is 1 to 200
    /// (default 20).
    #[oai(path = "/reconciliation", method = "get", operation_id = "listJobRuns")]
    async fn job_runs(
        &self,
        _auth: AdminAuth,
        job: Query<Option<String>>,
        limit: Query<Option<i64>>,
    ) -> JobRunsResponse {
        let run = async {
            let limit = limit.0.unwrap_or(20);
            if !(1..=200).contains(&limit) {
                return Err(Problem::bad_request(format!(
                    "limit must be between 1 and 200, got {limit}"
                )));
            }
            if let Some(j) = &job.0 {
                if !JobKind::ALL.iter().any(|k| k.name() == j) {
                    return Err(Problem::bad_request(format!(
                        "job must be one of reconcile, reclaim, housekeeping; got {j:?}"
                    )));
                }
            }
            let runs = recent_runs(&self.state.store, job.0.as_deref(), limit as u32).await?;
            Ok::<_, Problem>(JobRunList {
                runs: runs.into_iter().map(Into::into).collect(),
            })
        };
        match run.await {
            Ok(l) => JobRunsResponse::Ok(Json(l)),
            Err(p) => p.into(),
        }
    }

    /// List orders by status
    ///
    /// `status=REJECTED` (the default) lists the orders accepted on the Redis path that MySQL
    /// could not take as sold, each with its `rejectReason`; retry one after a restock
    /// (`POST /api/admin/orders/{orderId}/retry`) or close it with a cancel. Any order status may
    /// be listed; `limit` is 1 to 200 (default 50). Newest first.
    #[oai(path = "/orders", method = "get", operation_id = "listOrdersByStatus")]
    async fn list_orders(
        &self,
        _auth: AdminAuth,
        status: Query<Option<String>>,
        limit: Query<Option<i64>>,
    ) -> OrderListResponse {
        let run = async {
            let limit = limit.0.unwrap_or(50);
            if !(1..=200).contains(&limit) {
                return Err(Problem::bad_request(format!(
                    "limit must be between 1 and 200, got {limit}"
                )));
            }
            let status = status.0.unwrap_or_else(|| "REJECTED".into());
            let parsed = sf_persistence::model::OrderStatus::parse(&status)
                .filter(|s| *s != sf_persistence::model::OrderStatus::Accepted)
                .ok_or_else(|| {
                    Problem::bad_request(format!(
                        "status must be one of CONFIRMED, CANCELLED, REJECTED (ACCEPTED orders are not in MySQL yet); got {status:?}"
                    ))
                })?;
            let orders = self
                .state
                .store
                .orders_by_status(parsed, limit as u32)
                .await?;
            Ok::<_, Problem>(OrderList {
                orders: orders.into_iter().map(Into::into).collect(),
            })
        };
        match run.await {
            Ok(l) => OrderListResponse::Ok(Json(l)),
            Err(p) => p.into(),
        }
    }

    /// List Redis data losses
    ///
    /// Each time the service found that Redis had lost the data it had loaded (a restart without
    /// its append-only file, a flush): when that data set had been loaded and when the loss was
    /// noticed. Redis-path orders accepted in between that had not reached MySQL were lost with
    /// it (their status look-up answers 410); orders accepted after the reload for units MySQL no
    /// longer had are listed as `REJECTED`. `limit` is 1 to 200 (default 20). Newest first.
    #[oai(
        path = "/redis-data-losses",
        method = "get",
        operation_id = "listRedisDataLosses"
    )]
    async fn data_losses(&self, _auth: AdminAuth, limit: Query<Option<i64>>) -> DataLossResponse {
        let run = async {
            let limit = limit.0.unwrap_or(20);
            if !(1..=200).contains(&limit) {
                return Err(Problem::bad_request(format!(
                    "limit must be between 1 and 200, got {limit}"
                )));
            }
            let losses = self.state.store.data_losses(limit as u32).await?;
            Ok::<_, Problem>(DataLossList {
                losses: losses
                    .into_iter()
                    .map(|l| DataLossBody {
                        since: rfc3339_ms(l.since_ms),
                        detected_at: rfc3339_ms(l.detected_ms),
                    })
                    .collect(),
            })
        };
        match run.await {
            Ok(l) => DataLossResponse::Ok(Json(l)),
            Err(p) => p.into(),
        }
    }

    /// Retry a rejected order
    ///
    /// For an order MySQL could not take as sold (`REJECTED`), after a restock: if its location
    /// has the units now, the order becomes `CONFIRMED` with its stock and ledger rows, exactly as
    /// the consumer would have written it; otherwise 409 names the missing product and nothing
    /// changes.
    #[oai(
        path = "/orders/:orderId/retry",
        method = "post",
        operation_id = "retryRejectedOrder"
    )]
    async fn retry_order(
        &self,
        _auth: AdminAuth,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> RetryOrderResponse {
        let id = order_id.0;
        match self
            .state
            .write(|s| async move { s.retry_rejected(&id).await })
            .await
        {
            Ok(o) => RetryOrderResponse::Ok(Json(o.into())),
            Err(e) => fail(e),
        }
    }

    /// Reconcile now
    ///
    /// Runs reconciliation at once and answers what it checked and repaired. Redis keys are
    /// repaired at a consistent point (orders in flight are counted, never erased); MySQL is
    /// never rewritten.
    #[oai(
        path = "/reconciliation/runs",
        method = "post",
        operation_id = "runReconciliation"
    )]
    async fn run_now(&self, _auth: AdminAuth) -> RunNowResponse {
        match self.state.jobs.run(JobKind::Reconcile).await {
            Ok(RunOutcome::Ran(r)) => RunNowResponse::Ok(Json(r.into())),
            Ok(RunOutcome::Skipped(why)) => {
                Problem::new(409, "job-running", "A run is already going", why).into()
            }
            Err(e) => fail(e),
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
