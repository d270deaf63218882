//! Operators' routes under `/api/admin`, behind the operators' bearer tokens; the role each
//! needs is named in [`crate::auth::role_needed_by`].

mod access;
mod bodies;
mod channels;
mod repair;
mod repair_bodies;
mod webhook_bodies;
mod webhooks;

pub use access::AccessApi;
pub use bodies::*;
pub use channels::ChannelsApi;
pub use repair::RepairApi;
pub use repair_bodies::*;
pub use webhook_bodies::*;
pub use webhooks::WebhooksApi;

use crate::auth::OperatorAuth;
use crate::problem::{ApiResult, Problem};
use crate::request_id::RequestId;
use crate::state::ApiState;
use crate::types::{LocationBody, LocationList, LocationTypeBody};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{OpenApi, Tags};
use sf_persistence::access::Attribution;
use sf_persistence::catalog::{LocationChange, ProductChange};
use sf_persistence::db_lock::StockTarget;
use sf_persistence::infra::jobs::{recent_runs, JobKind, RunOutcome};
use sf_routing::{Coordinates, LocationKind};
use std::sync::Arc;

/// A request body as the audit trail records it: the fields sent (`null` is taken as absent).
fn sent_fields<T: ToJSON>(body: &T) -> String {
    match body.to_json() {
        Some(serde_json::Value::Object(mut fields)) => {
            fields.retain(|_, v| !v.is_null());
            serde_json::Value::Object(fields).to_string()
        }
        other => other.unwrap_or_default().to_string(),
    }
}

#[derive(Tags)]
pub enum AdminTag {
    /// Operators: stock changes, POS keys, locations and products, reconciliation, operators and
    /// the audit trail.
    Admin,
}

pub struct AdminApi {
    pub state: Arc<ApiState>,
}

impl AdminApi {
    /// An operator's stock change, recorded in the ledger as `by` says.
    async fn change(
        &self,
        by: Attribution,
        location_id: i64,
        product_id: i64,
        target: StockTarget,
        reason: StockReason,
    ) -> ApiResult<Json<StockChangeBody>> {
        let loc = location_in_path(location_id)?;
        let product = crate::catalog::product_in_path(product_id)?;
        let reason = reason.into();
        let change = self
            .state
            .write(|s| async move {
                s.db_lock()
                    .change_stock(loc, product, target, reason, &by)
                    .await
            })
            .await?;
        Ok(Json(StockChangeBody {
            location_id: loc.get(),
            product_id: product.get(),
            before: change.before,
            after: change.after,
        }))
    }
}

#[OpenApi(prefix_path = "/api/admin", tag = "AdminTag::Admin")]
impl AdminApi {
    /// Set on-hand stock
    ///
    /// Sets the on-hand quantity of a product at a location. The difference is recorded in the
    /// ledger with the reason, and reaches Redis as a change, so online orders in flight are kept.
    /// Answers 200 once the stock is changed, recorded in the ledger, and applied to Redis as a
    /// change; 404 when there is no such location or product; 409 when the units to remove are
    /// reserved by online orders not yet in MySQL.
    #[oai(
        path = "/locations/:locationId/products/:productId/stock",
        method = "put",
        operation_id = "setStock"
    )]
    async fn set_stock(
        &self,
        auth: OperatorAuth,
        request_id: Data<&RequestId>,
        #[oai(name = "locationId", validator(minimum(value = "1")))] location_id: Path<i64>,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
        body: Json<SetStockRequest>,
    ) -> ApiResult<Json<StockChangeBody>> {
        let by = stock_change_by(&auth, &request_id, &body.note, &body.reference)?;
        self.change(
            by,
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
    /// Answers 200 once the stock is changed, recorded in the ledger, and applied to Redis as a
    /// change; 404 when there is no such location or product; 409 when the units to remove are
    /// reserved by online orders not yet in MySQL, or when the change would make the stock
    /// negative. A `delta` of zero changes nothing and records nothing.
    #[oai(
        path = "/locations/:locationId/products/:productId/stock/adjustments",
        method = "post",
        operation_id = "adjustStock"
    )]
    async fn adjust_stock(
        &self,
        auth: OperatorAuth,
        request_id: Data<&RequestId>,
        #[oai(name = "locationId", validator(minimum(value = "1")))] location_id: Path<i64>,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
        body: Json<AdjustStockRequest>,
    ) -> ApiResult<Json<StockChangeBody>> {
        let by = stock_change_by(&auth, &request_id, &body.note, &body.reference)?;
        self.change(
            by,
            location_id.0,
            product_id.0,
            StockTarget::Add(body.delta),
            body.reason,
        )
        .await
    }

    /// Stock states of a product at a location
    ///
    /// Every state of the product's stock as MySQL holds it: `onHand`, `committed`, `reserved`,
    /// `available`, `safetyStock`, `sellableOnline` (and `quantity` = `available`). A product the
    /// location never carried has zeros. Answers 404 when there is no such location or product.
    #[oai(
        path = "/locations/:locationId/products/:productId/stock",
        method = "get",
        operation_id = "getStockStates"
    )]
    async fn stock_states(
        &self,
        _auth: OperatorAuth,
        #[oai(name = "locationId", validator(minimum(value = "1")))] location_id: Path<i64>,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
    ) -> ApiResult<Json<StockStatesBody>> {
        let loc = location_in_path(location_id.0)?;
        let product = crate::catalog::product_in_path(product_id.0)?;
        let states = self
            .state
            .storage
            .db_lock()
            .stock_states(loc, product)
            .await?;
        Ok(Json(states.into()))
    }

    /// Ledger of a product at a location
    ///
    /// Every movement of the product's stock at the location, newest first: its reason, what
    /// caused it (`refId`: the order, sale or operator's change) and what it moved of each state.
    /// For the row, `available` = its initial quantity + Σ `availableDelta`, onHand likewise with
    /// `onHandDelta`, `committed` = Σ `committedDelta` and `reserved` = Σ `reservedDelta`. Keyset-paged: `after` is the `next`
    /// of the previous page; `limit` 1 to 500 (default 50). Answers 404 when there is no such
    /// location or product.
    #[oai(
        path = "/locations/:locationId/products/:productId/movements",
        method = "get",
        operation_id = "listMovements"
    )]
    async fn movements(
        &self,
        _auth: OperatorAuth,
        #[oai(name = "locationId", validator(minimum(value = "1")))] location_id: Path<i64>,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
        /// The `next` of the previous page: only rows older than it.
        #[oai(validator(minimum(value = "1")))]
        after: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<MovementPage>> {
        let loc = location_in_path(location_id.0)?;
        let product = crate::catalog::product_in_path(product_id.0)?;
        let limit = limit.0.unwrap_or(50) as u32;
        let rows = self
            .state
            .storage
            .db_lock()
            .movements(loc, product, after.0.map(|a| a as u64), limit)
            .await?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last().map(|m| m.id))
            .flatten();
        Ok(Json(MovementPage {
            movements: rows.into_iter().map(Into::into).collect(),
            next,
        }))
    }

    /// Set a product's safety stock at a location
    ///
    /// The units online orders (both paths) may not take; the till may. `null` returns the
    /// product to the location's default (`safetyStock` of the location). Answers the product's
    /// stock states once MySQL holds the buffer; the Redis path decides with it from then on
    /// (copied at once; if the stock cache cannot be reached, from the next re-sync of the
    /// location's keys). 404 when there is no such location or product.
    #[oai(
        path = "/locations/:locationId/products/:productId/safety-stock",
        method = "put",
        operation_id = "setSafetyStock"
    )]
    async fn set_safety_stock(
        &self,
        auth: OperatorAuth,
        #[oai(name = "locationId", validator(minimum(value = "1")))] location_id: Path<i64>,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
        body: Json<SafetyStockRequest>,
    ) -> ApiResult<Json<StockStatesBody>> {
        let loc = location_in_path(location_id.0)?;
        let product = crate::catalog::product_in_path(product_id.0)?;
        let quantity = body.quantity;
        let states = self
            .state
            .write(
                move |s| async move { s.db_lock().set_safety_stock(loc, product, quantity).await },
            )
            .await?;
        self.state
            .audit(
                &auth.0,
                "safety-stock.set",
                &format!("location:{loc}/product:{product}"),
                // `null` means something here (the location's default): the body as it is.
                Some(body.0.to_json_string()),
            )
            .await;
        Ok(Json(states.into()))
    }

    /// Issue a POS key
    ///
    /// A new key for a store's terminals. The answer shows the key once; only its hash is kept.
    /// Answers 404 when there is no such store (a warehouse is not one).
    #[oai(
        path = "/stores/:storeId/keys",
        method = "post",
        operation_id = "issueStoreKey"
    )]
    async fn issue_key(
        &self,
        auth: OperatorAuth,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        body: Json<IssueKeyRequest>,
    ) -> ApiResult<KeyIssued> {
        let store = location_in_path(store_id.0)?;
        let label = body.label.as_ref().map_or("", |l| l.0.trim());
        let k = self
            .state
            .storage
            .catalog()
            .issue_store_key(store, label)
            .await?;
        self.state
            .audit(
                &auth.0,
                "store-key.issued",
                &format!("store-key:{}", k.key_id),
                Some(format!("store {store}, label {label:?}")),
            )
            .await;
        Ok(KeyIssued::Created(Json(IssuedKeyBody {
            key_id: k.key_id,
            store_id: k.store_id,
            key: k.key,
        })))
    }

    /// Open a location
    ///
    /// Adds a warehouse or a store, with its calendar (none: open around the clock). Routing
    /// considers it at once (on other instances within a few seconds). Give it stock with the
    /// stock routes. Answers 422 when the calendar breaks a rule (the `detail` names the field).
    #[oai(path = "/locations", method = "post", operation_id = "createLocation")]
    async fn create_location(
        &self,
        auth: OperatorAuth,
        body: Json<NewLocation>,
    ) -> ApiResult<LocationCreated> {
        let at = Coordinates::new(body.latitude, body.longitude)?;
        let kind = match body.location_type {
            LocationTypeBody::Warehouse => LocationKind::Warehouse,
            LocationTypeBody::Store => LocationKind::Store,
        };
        let l = self
            .state
            .storage
            .catalog()
            .create_location(kind, body.name.0.trim(), at, body.calendar().as_ref())
            .await?;
        self.state
            .audit(
                &auth.0,
                "location.created",
                &format!("location:{}", l.location_id),
                Some(sent_fields(&body.0)),
            )
            .await;
        let now = jiff::Timestamp::now();
        Ok(LocationCreated::Created(Json(LocationBody::new(&l, now))))
    }

    /// Change a location
    ///
    /// Rename, move, close (`active: false`) or reopen a location, or change its calendar.
    /// Answers 200 with the changed location; 404 when there is no such location; 422 when the
    /// calendar that results breaks a rule (nothing is changed). A field not sent stays as it is.
    #[oai(
        path = "/locations/:locationId",
        method = "patch",
        operation_id = "updateLocation"
    )]
    async fn update_location(
        &self,
        auth: OperatorAuth,
        #[oai(name = "locationId", validator(minimum(value = "1")))] location_id: Path<i64>,
        body: Json<LocationPatch>,
    ) -> ApiResult<Json<LocationBody>> {
        let id = location_in_path(location_id.0)?;
        let coordinates = match (body.latitude, body.longitude) {
            (None, None) => None,
            (lat, lon) => {
                let now = self
                    .state
                    .storage
                    .catalog()
                    .locations()
                    .all
                    .iter()
                    .find(|l| l.location_id == id.get())
                    .map(|l| (l.latitude, l.longitude))
                    .ok_or(sf_persistence::Refusal::UnknownLocation(id))?;
                Some(Coordinates::new(
                    lat.unwrap_or(now.0),
                    lon.unwrap_or(now.1),
                )?)
            }
        };
        let change = LocationChange {
            name: body.name.as_ref().map(|n| n.0.trim().to_owned()),
            coordinates,
            active: body.active,
            safety_stock: body.safety_stock,
            low_stock_threshold: body.low_stock_threshold,
            calendar: body.calendar(),
        };
        let l = self
            .state
            .storage
            .catalog()
            .update_location(id, change)
            .await?;
        self.state
            .audit(
                &auth.0,
                "location.changed",
                &format!("location:{id}"),
                Some(sent_fields(&body.0)),
            )
            .await;
        Ok(Json(LocationBody::new(&l, jiff::Timestamp::now())))
    }

    /// List locations (operators)
    ///
    /// Every warehouse and store, open or closed, in id order; `active=false` lists only the
    /// closed ones, `active=true` only the open ones.
    #[oai(
        path = "/locations",
        method = "get",
        operation_id = "listLocationsAdmin"
    )]
    async fn list_locations(
        &self,
        _auth: OperatorAuth,
        active: Query<Option<bool>>,
    ) -> ApiResult<Json<LocationList>> {
        let locations = self.state.storage.catalog().locations();
        let now = jiff::Timestamp::now();
        Ok(Json(LocationList {
            locations: locations
                .all
                .iter()
                .filter(|l| active.0.is_none_or(|a| l.active == a))
                .map(|l| LocationBody::new(l, now))
                .collect(),
        }))
    }

    /// Get a location (operators)
    ///
    /// The location, open or closed (`active`). Answers 404 when there is no such location.
    #[oai(
        path = "/locations/:locationId",
        method = "get",
        operation_id = "getLocationAdmin"
    )]
    async fn get_location(
        &self,
        _auth: OperatorAuth,
        #[oai(name = "locationId", validator(minimum(value = "1")))] location_id: Path<i64>,
    ) -> ApiResult<Json<LocationBody>> {
        let id = location_in_path(location_id.0)?;
        let locations = self.state.storage.catalog().locations();
        let location = locations
            .get(id)
            .ok_or(sf_persistence::Refusal::UnknownLocation(id))?;
        Ok(Json(LocationBody::new(location, jiff::Timestamp::now())))
    }

    /// Create a product
    ///
    /// Answers 409 when a product with this SKU exists already.
    #[oai(path = "/products", method = "post", operation_id = "createProduct")]
    async fn create_product(
        &self,
        auth: OperatorAuth,
        body: Json<NewProduct>,
    ) -> ApiResult<ProductCreated> {
        let p = self
            .state
            .storage
            .catalog()
            .create_product(body.sku.0.trim(), body.name.0.trim(), body.price)
            .await?;
        self.state
            .audit(
                &auth.0,
                "product.created",
                &format!("product:{}", p.product_id),
                Some(sent_fields(&body.0)),
            )
            .await;
        Ok(ProductCreated::Created(Json(p.into())))
    }

    /// Change a product
    ///
    /// Rename, reprice (orders placed from now on get the new price), stop (`active: false`) or
    /// resume its sale. Answers 200 with the changed product; 404 when there is no such product.
    #[oai(
        path = "/products/:productId",
        method = "patch",
        operation_id = "updateProduct"
    )]
    async fn update_product(
        &self,
        auth: OperatorAuth,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
        body: Json<ProductPatch>,
    ) -> ApiResult<Json<AdminProductBody>> {
        let id = crate::catalog::product_in_path(product_id.0)?;
        let change = ProductChange {
            name: body.name.as_ref().map(|n| n.0.trim().to_owned()),
            price: body.price,
            active: body.active,
        };
        let p = self
            .state
            .storage
            .catalog()
            .update_product(id, change)
            .await?;
        self.state
            .audit(
                &auth.0,
                "product.changed",
                &format!("product:{id}"),
                Some(sent_fields(&body.0)),
            )
            .await;
        Ok(Json(p.into()))
    }

    /// List products (operators)
    ///
    /// Every product, on sale or stopped, with its `active` flag, in id order, a page at a time:
    /// `limit` per page (1 to 100, default 20) after the product id `after`, `next` as on the
    /// shop's pages. `active=false` lists only the stopped ones, `active=true` only those on sale.
    #[oai(path = "/products", method = "get", operation_id = "listProductsAdmin")]
    async fn list_products(
        &self,
        _auth: OperatorAuth,
        active: Query<Option<bool>>,
        #[oai(validator(minimum(value = "0")))] after: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<AdminProductList>> {
        let (after, limit) = crate::catalog::after_and_limit(after.0, limit.0);
        let (products, next) = self
            .state
            .storage
            .catalog()
            .products_for_operators(active.0, after, limit)
            .await?;
        Ok(Json(AdminProductList {
            products: products.into_iter().map(Into::into).collect(),
            limit,
            next,
        }))
    }

    /// Get a product (operators)
    ///
    /// The product, on sale or stopped (`active`); the shop's pages answer 404 for a stopped one.
    /// Answers 404 when there is no such product.
    #[oai(
        path = "/products/:productId",
        method = "get",
        operation_id = "getProductAdmin"
    )]
    async fn get_product(
        &self,
        _auth: OperatorAuth,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
    ) -> ApiResult<Json<AdminProductBody>> {
        let id = crate::catalog::product_in_path(product_id.0)?;
        Ok(Json(
            self.state
                .storage
                .catalog()
                .product_for_operators(id)
                .await?
                .into(),
        ))
    }

    /// Revoke a POS key
    ///
    /// The key stops working at once. Answers 404 when the store has no such key.
    #[oai(
        path = "/stores/:storeId/keys/:keyId",
        method = "delete",
        operation_id = "revokeStoreKey"
    )]
    async fn revoke_key(
        &self,
        auth: OperatorAuth,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        #[oai(name = "keyId", validator(minimum(value = "1")))] key_id: Path<i64>,
    ) -> ApiResult<KeyRevoked> {
        let store = location_in_path(store_id.0)?;
        let key = u64::try_from(key_id.0)
            .map_err(|_| Problem::not_found(format!("store {store} has no key {}", key_id.0)))?;
        self.state
            .storage
            .catalog()
            .revoke_store_key(store, key)
            .await?;
        self.state
            .audit(
                &auth.0,
                "store-key.revoked",
                &format!("store-key:{key}"),
                Some(format!("store {store}")),
            )
            .await;
        Ok(KeyRevoked::Revoked)
    }
}
