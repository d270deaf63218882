//! Checkout holds: units set aside while a customer pays, released on time, turned into an
//! order exactly once.

use crate::auth::ShopKey;
use crate::orders::{idempotency, Created};
use crate::problem::ApiResult;
use crate::state::ApiState;
use crate::types::{ExtendHoldRequest, HoldBody, HoldRequest};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use sf_persistence::access::KeyLookup;
use sf_persistence::holds::{Hold, HoldRequest as Request, PlacedHold, Ttl};
use sf_persistence::{Refusal, StorageError};
use std::sync::Arc;

#[derive(Tags)]
pub enum HoldsTag {
    /// Checkout holds: a basket's units reserved while its customer pays, then turned into an
    /// order, released, or expired.
    Holds,
}

pub struct HoldsApi {
    pub state: Arc<ApiState>,
}

/// A placed hold.
#[derive(ApiResponse)]
pub enum HoldCreated {
    /// The hold is committed and its units reserved. A repeated `Idempotency-Key` with the same
    /// body gets the first answer again (the hold as it stands now), with
    /// `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<HoldBody>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[OpenApi]
impl HoldsApi {
    /// Place a hold
    ///
    /// The body of an online order plus `ttlSeconds` (10 to 3600, default 600). Routed as the
    /// order would be (`NORMAL`, `SAME_DAY`, `PICKUP`); every line needs `sellableOnline` at the
    /// chosen location, as an online order does. Its units move from `available` to `reserved`
    /// in MySQL and Redis before the answer: no online order or POS sale can take them until
    /// the hold is released or expires. Answers 409 (`/problems/out-of-stock`) as an order
    /// would. Send `Idempotency-Key` to make retries safe.
    #[oai(
        path = "/api/holds",
        method = "post",
        tag = "HoldsTag::Holds",
        operation_id = "createHold"
    )]
    async fn create(
        &self,
        auth: ShopKey,
        body: Json<HoldRequest>,
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
    ) -> ApiResult<HoldCreated> {
        let (lines, destination) = body
            .order
            .validate(self.state.storage.options().same_day_radius_km)?;
        let shop = auth.shop(&self.state, KeyLookup::Mysql).await?;
        let req = Request {
            lines,
            destination,
            ttl: body.ttl()?,
            idempotency: idempotency(&shop.scope("HOLD"), key.0, &*body)?,
            channel: shop.channel,
        };
        let placed = self
            .state
            .write(|s| async move { s.holds().place(&req).await })
            .await?;
        Ok(match placed {
            PlacedHold::New(h) => HoldCreated::Created(Json(h.into()), None),
            PlacedHold::Replayed(h) => HoldCreated::Created(Json(h.into()), Some("true".into())),
        })
    }

    /// Get a hold
    ///
    /// A hold past its `expiresAt` reads `EXPIRED` at once; its units are available again
    /// within seconds of that instant, whether or not anyone reads it.
    #[oai(
        path = "/api/holds/:holdId",
        method = "get",
        tag = "HoldsTag::Holds",
        operation_id = "getHold"
    )]
    async fn get(
        &self,
        auth: ShopKey,
        #[oai(name = "holdId")] hold_id: Path<String>,
    ) -> ApiResult<Json<HoldBody>> {
        Ok(Json(
            owned_hold(&self.state, &auth, &hold_id.0).await?.into(),
        ))
    }

    /// Extend a hold
    ///
    /// Sets `expiresAt` to `ttlSeconds` (10 to 3600) from now, only while the hold is `ACTIVE`
    /// (409 `/problems/hold-expired` or `/problems/hold-released` otherwise). A hold lives at
    /// most 2 h in all: an extension past that is refused (422) with the seconds still left.
    #[oai(
        path = "/api/holds/:holdId",
        method = "patch",
        tag = "HoldsTag::Holds",
        operation_id = "extendHold"
    )]
    async fn extend(
        &self,
        auth: ShopKey,
        #[oai(name = "holdId")] hold_id: Path<String>,
        body: Json<ExtendHoldRequest>,
    ) -> ApiResult<Json<HoldBody>> {
        let ttl = Ttl::new(body.ttl_seconds).map_err(sf_persistence::StorageError::from)?;
        let id = hold_id.0;
        owned_hold(&self.state, &auth, &id).await?;
        let hold = self
            .state
            .write(|s| async move { s.holds().extend(&id, ttl).await })
            .await?;
        Ok(Json(hold.into()))
    }

    /// Release a hold
    ///
    /// Its units are available again (MySQL and Redis) before the answer. Releasing a hold
    /// that was released or expired answers it as it is; a hold that became an order answers
    /// 409 (cancel the order instead).
    #[oai(
        path = "/api/holds/:holdId/release",
        method = "post",
        tag = "HoldsTag::Holds",
        operation_id = "releaseHold"
    )]
    async fn release(
        &self,
        auth: ShopKey,
        #[oai(name = "holdId")] hold_id: Path<String>,
    ) -> ApiResult<Json<HoldBody>> {
        let id = hold_id.0;
        owned_hold(&self.state, &auth, &id).await?;
        let hold = self
            .state
            .write(|s| async move { s.holds().release(&id).await })
            .await?;
        Ok(Json(hold.into()))
    }

    /// Turn a hold into an order
    ///
    /// Creates the order from the hold's lines, location and prices (`CONFIRMED`, DB-lock path,
    /// committed before the answer), moving its units from `reserved` to `committed` in the
    /// same transaction. Converting the same hold again, or many times at once, answers the
    /// same order (`Idempotent-Replayed: true`). An expired hold answers 409
    /// `/problems/hold-expired`, a released one 409 `/problems/hold-released`; nothing is
    /// created.
    #[oai(
        path = "/api/holds/:holdId/order",
        method = "post",
        tag = "HoldsTag::Holds",
        operation_id = "convertHold"
    )]
    async fn convert(
        &self,
        auth: ShopKey,
        #[oai(name = "holdId")] hold_id: Path<String>,
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
    ) -> ApiResult<Created> {
        let id = hold_id.0;
        owned_hold(&self.state, &auth, &id).await?;
        let idem = idempotency("HOLD_ORDER", key.0, &id)?;
        let placed = self
            .state
            .write(|s| async move { s.holds().convert(&id, idem.as_ref()).await })
            .await?;
        Created::new(placed)
    }
}

/// The hold `id` when the key's channel placed it; another channel's hold is not found, as a hold
/// that does not exist is.
async fn owned_hold(state: &ApiState, auth: &ShopKey, id: &str) -> ApiResult<Hold> {
    let shop = auth.shop(state, KeyLookup::RedisFirst).await?;
    let hold = state.storage.holds().get(id).await?;
    if shop.owns(hold.channel) {
        Ok(hold)
    } else {
        Err(StorageError::from(Refusal::UnknownHold(id.to_owned())).into())
    }
}
