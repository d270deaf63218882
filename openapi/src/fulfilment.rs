//! The order's way out of the building: a store makes a pickup ready, hands it to the customer
//! who shows its code, hands a same-day order to a courier, and works from its list of orders
//! at each step (per-store keys, as the store's other writes); operators ship warehouse orders
//! and collect a pickup locked by wrong codes (admin token).
//!
//! Every step answers the order as it is after it; the same step sent again takes effect once
//! and answers the current state. A store's answers never show a pickup code.

use crate::auth::{OperatorAuth, StoreKey};
use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use crate::types::OrderBody;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{Enum, Object, OpenApi, Tags};
use sf_persistence::access::Actor;
use sf_persistence::fulfilment::{Step, WorkListStep};
use sf_persistence::model::Order;
use sf_routing::{LocationId, LocationKind};
use std::sync::Arc;

#[derive(Tags)]
pub enum FulfilmentTag {
    /// The order's way out: pickups made ready and collected, same-day orders dispatched,
    /// warehouse orders shipped, and the store's work list.
    Fulfilment,
}

pub struct FulfilmentApi {
    pub state: Arc<ApiState>,
}

/// The code the customer shows at the store.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields, example)]
pub struct CollectRequest {
    /// The order's 6-digit pickup code.
    #[oai(validator(pattern = r"^[0-9]{6}$"))]
    pub pickup_code: String,
}

impl Example for CollectRequest {
    fn example() -> Self {
        Self {
            pickup_code: "482913".into(),
        }
    }
}

/// The steps a store works from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkListStepParam {
    /// Orders to prepare, or to hand to a courier.
    Unfulfilled,
    /// Pickups waiting to be collected.
    ReadyForPickup,
}

/// A page of the store's work list.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct WorkListBody {
    pub store_id: u64,
    pub fulfillment: WorkListStepParam,
    /// Oldest first, without pickup codes.
    pub orders: Vec<OrderBody>,
    /// The `after` of the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

impl Example for WorkListBody {
    fn example() -> Self {
        let order = OrderBody::example();
        Self {
            store_id: 1,
            fulfillment: WorkListStepParam::Unfulfilled,
            next: Some(order.order_id.clone()),
            orders: vec![order],
        }
    }
}

/// A store's view of an order: without its pickup code.
fn for_store(o: Order) -> Json<OrderBody> {
    Json(
        Order {
            fulfillment: o.fulfillment.clone().without_code(),
            ..o
        }
        .into(),
    )
}

impl FulfilmentApi {
    /// The path's store, which must be an open store.
    fn store(&self, id: i64) -> Result<LocationId, Problem> {
        let loc = LocationId::new_unchecked(id as u64);
        match self.state.storage.catalog().locations().index.get(loc) {
            Some(s) if s.kind == LocationKind::Store => Ok(loc),
            _ => Err(Problem::not_found(format!(
                "store {id} does not exist or is closed"
            ))),
        }
    }

    /// Takes `step` for `store` (`None`: an operator) as `by`, as a write of its own.
    async fn step(
        &self,
        store: Option<LocationId>,
        order_id: String,
        step: Step,
        by: Actor,
    ) -> Result<Order, Problem> {
        Ok(self
            .state
            .write(move |s| async move { s.fulfilment().step(&order_id, store, step, by).await })
            .await?)
    }
}

/// A page of the store's work list (the operation is declared with the store's other routes on
/// its path, `StoresApi::work_list`: one path belongs to one API struct in the spec).
pub(crate) async fn work_list(
    state: &ApiState,
    store: LocationId,
    fulfillment: WorkListStepParam,
    after: Option<&str>,
    limit: Option<u32>,
) -> ApiResult<Json<WorkListBody>> {
    let step = match fulfillment {
        WorkListStepParam::Unfulfilled => WorkListStep::Unfulfilled,
        WorkListStepParam::ReadyForPickup => WorkListStep::ReadyForPickup,
    };
    let page = state
        .storage
        .fulfilment()
        .work_list(store, step, after, limit.unwrap_or(20))
        .await?;
    Ok(Json(WorkListBody {
        store_id: store.get(),
        fulfillment,
        orders: page.orders.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

#[OpenApi(tag = "FulfilmentTag::Fulfilment")]
impl FulfilmentApi {
    /// Pickup ready
    ///
    /// The store has put the pickup's units aside: the order becomes `READY_FOR_PICKUP`
    /// (`readyAt`), and the customer can come with the code. Sending it again answers the order
    /// as it is. Needs a key of this store.
    ///
    /// Answers 401/403 as the store's other writes; 404 when the order is not this store's; 409
    /// when it is not a pickup, not yet persisted (retry in a moment), cancelled, or past this
    /// step.
    #[oai(
        path = "/api/stores/:storeId/orders/:orderId/ready",
        method = "post",
        operation_id = "markReadyForPickup"
    )]
    async fn ready(
        &self,
        auth: StoreKey,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let store = self.store(store_id.0)?;
        let by = auth.authorize(&self.state, store).await?;
        Ok(for_store(
            self.step(Some(store), order_id.0, Step::Ready, by).await?,
        ))
    }

    /// Pickup collected
    ///
    /// The customer showed the pickup's code and took the units: the order becomes `COLLECTED`
    /// (`handedOverAt`), and its units leave the store's `committed` and `onHand`. Sending it
    /// again answers the order as it is. Needs a key of this store.
    ///
    /// Answers 403 when the code is wrong (counted: after 5 wrong codes only an operator can
    /// collect the order); 404 when the order is not this store's; 409 when it is not a ready
    /// pickup.
    #[oai(
        path = "/api/stores/:storeId/orders/:orderId/collect",
        method = "post",
        operation_id = "collectPickup"
    )]
    async fn collect(
        &self,
        auth: StoreKey,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        #[oai(name = "orderId")] order_id: Path<String>,
        body: Json<CollectRequest>,
    ) -> ApiResult<Json<OrderBody>> {
        let store = self.store(store_id.0)?;
        let by = auth.authorize(&self.state, store).await?;
        let step = Step::Collect {
            code: Some(body.0.pickup_code),
        };
        Ok(for_store(
            self.step(Some(store), order_id.0, step, by).await?,
        ))
    }

    /// Same-day order dispatched
    ///
    /// A courier took the order: it becomes `DISPATCHED` (`handedOverAt`), and its units leave
    /// the store's `committed` and `onHand`. Sending it again answers the order as it is. Needs a
    /// key of this store.
    ///
    /// Answers 404 when the order is not this store's; 409 when it is not a same-day order, not
    /// yet persisted, or cancelled.
    #[oai(
        path = "/api/stores/:storeId/orders/:orderId/dispatch",
        method = "post",
        operation_id = "dispatchOrder"
    )]
    async fn dispatch(
        &self,
        auth: StoreKey,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let store = self.store(store_id.0)?;
        let by = auth.authorize(&self.state, store).await?;
        Ok(for_store(
            self.step(Some(store), order_id.0, Step::Dispatch, by)
                .await?,
        ))
    }

    /// Warehouse order shipped (operators)
    ///
    /// The order left its warehouse: it becomes `SHIPPED` (`handedOverAt`), and its units leave
    /// the warehouse's `committed` and `onHand`. Sending it again answers the order as it is.
    ///
    /// Answers 404 when there is no such order; 409 when it is not a warehouse (`NORMAL`)
    /// order, not yet persisted, or cancelled.
    #[oai(
        path = "/api/admin/orders/:orderId/ship",
        method = "post",
        operation_id = "shipOrder"
    )]
    async fn ship(
        &self,
        auth: OperatorAuth,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let by = auth.0.actor();
        Ok(Json(
            self.step(None, order_id.0, Step::Ship, by).await?.into(),
        ))
    }

    /// Pickup collected without its code (operators)
    ///
    /// For a ready pickup whose code the store can no longer take (5 wrong codes), after the
    /// operator checked the customer otherwise: the order becomes `COLLECTED`, as through the
    /// store's route.
    ///
    /// Answers 404 when there is no such order; 409 when it is not a ready pickup.
    #[oai(
        path = "/api/admin/orders/:orderId/collect",
        method = "post",
        operation_id = "collectPickupAdmin"
    )]
    async fn collect_admin(
        &self,
        auth: OperatorAuth,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let step = Step::Collect { code: None };
        let by = auth.0.actor();
        Ok(Json(self.step(None, order_id.0, step, by).await?.into()))
    }
}
