//! Credentials: the operators' bearer token, and per-store POS keys.

use crate::problem::Problem;
use crate::state::ApiState;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use sf_routing::LocationId;
use std::sync::Arc;

/// Operators: `Authorization: Bearer <ADMIN_TOKEN>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_admin")]
pub struct AdminAuth(());

async fn check_admin(req: &Request, bearer: Bearer) -> Option<()> {
    let state = req.data::<Arc<ApiState>>()?;
    constant_time_eq(bearer.token.as_bytes(), state.admin_token.as_bytes()).then_some(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// POS terminals: `Authorization: Bearer <store key>`, issued by an operator for one store. A key
/// acts for its own store only.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct StoreKey(pub Bearer);

impl StoreKey {
    /// Checks that this key is valid and belongs to `store`: 401 when it is not valid, 403 when it
    /// belongs to another store.
    pub async fn authorize(&self, state: &ApiState, store: LocationId) -> Result<(), Problem> {
        match state.storage.catalog().store_of_key(&self.0.token).await? {
            None => Err(Problem::unauthorized(
                "this store key is unknown or revoked",
            )),
            Some(owner) if owner == store => Ok(()),
            Some(owner) => Err(Problem::forbidden(format!(
                "this key belongs to store {owner}; it cannot act for store {store}"
            ))),
        }
    }
}

/// The shop's writes (orders on both paths, cancels, holds) and its reads of its own orders and
/// holds: `Authorization: Bearer <channel key>`, issued by an operator for one sales channel.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct ShopKey(pub Bearer);

/// The token a request without credentials carries when `SHOP_AUTH=off` ([`open_shop`]): it
/// acts for no channel.
pub const NO_CHANNEL_TOKEN: &str = "shop-auth-off";

/// Who a shop request acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shop {
    /// `None`: no channel (`SHOP_AUTH=off` and no key sent).
    pub channel: Option<u64>,
}

impl ShopKey {
    /// The channel this key acts for: 401 when it is unknown or revoked.
    pub async fn shop(&self, state: &ApiState) -> Result<Shop, Problem> {
        if !state.shop_auth && self.0.token == NO_CHANNEL_TOKEN {
            return Ok(Shop { channel: None });
        }
        match state.storage.channels().of_key(&self.0.token).await? {
            Some(k) => Ok(Shop {
                channel: Some(k.channel_id),
            }),
            None => Err(Problem::unauthorized(
                "this channel key is unknown or revoked",
            )),
        }
    }
}

impl Shop {
    /// The scope of its `Idempotency-Key`s: the channel's, one for both order paths.
    pub fn scope(&self, what: &str) -> String {
        match self.channel {
            Some(id) => format!("{what}:CHANNEL:{id}"),
            None => format!("{what}:NO_CHANNEL"),
        }
    }

    /// Whether it may read and cancel what `owner` placed: a channel sees its own; without a
    /// channel (`SHOP_AUTH=off`) everything is visible.
    pub fn owns(&self, owner: Option<u64>) -> bool {
        self.channel.is_none() || self.channel == owner
    }
}

/// With `SHOP_AUTH=off`, a request without `Authorization` is given [`NO_CHANNEL_TOKEN`], so the
/// shop's routes take it as a request for no channel; a request that sends credentials is
/// checked as it is. Operators' and stores' routes refuse that token like any unknown one.
pub struct OpenShop<E> {
    pub inner: E,
    /// `SHOP_AUTH=off`.
    pub open: bool,
}

impl<E: poem::Endpoint> poem::Endpoint for OpenShop<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        if self.open
            && !req
                .headers()
                .contains_key(poem::http::header::AUTHORIZATION)
        {
            req.headers_mut().insert(
                poem::http::header::AUTHORIZATION,
                poem::http::HeaderValue::from_static(concat!("Bearer ", "shop-auth-off")),
            );
        }
        self.inner.call(req).await
    }
}
