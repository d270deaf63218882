//! Credentials: the operators' bearer tokens with their roles, and per-store POS keys.
//!
//! Every operators' route needs a role, named in one place: [`role_needed_by`], by operation id.
//! The operators' scheme ([`OperatorAuth`]) resolves the token to its operator, reports the actor
//! for the access log, and refuses a route beyond the operator's role (403 naming the role it
//! needs) before the handler runs.

use crate::edge::{Methods, Operation};
use crate::problem::Problem;
use crate::request_id::{set_actor, ActorSlot, RequestId};
use crate::state::ApiState;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::{Enum, SecurityScheme};
use sf_persistence::access::{Actor, KeyLookup, Role, BOOTSTRAP};
use sf_routing::LocationId;
use std::sync::Arc;

/// The role each operators' route needs, by operation id: `viewer` reads, `stock` changes stock
/// and moves orders on, `admin` does everything (operators, keys, the catalogue, repairs). An
/// operators' route missing here needs `admin` (and the spec's test fails for it).
pub fn role_needed_by(operation_id: &str) -> Option<Role> {
    Some(match operation_id {
        "getStockStates"
        | "listMovements"
        | "listLocationsAdmin"
        | "getLocationAdmin"
        | "listProductsAdmin"
        | "getProductAdmin"
        | "listJobRuns"
        | "listOrdersByStatus"
        | "listRedisDataLosses"
        | "listStaleKeys"
        | "listDeadLetters"
        | "listAudit"
        | "listEvents"
        | "listWebhookDeliveries" => Role::Viewer,
        "setStock" | "adjustStock" | "setSafetyStock" | "shipOrder" | "collectPickupAdmin"
        | "retryRejectedOrder" => Role::Stock,
        "issueStoreKey"
        | "revokeStoreKey"
        | "createLocation"
        | "updateLocation"
        | "createProduct"
        | "updateProduct"
        | "replayDeadLetter"
        | "runReconciliation"
        | "createOperator"
        | "listOperators"
        | "revokeOperator"
        | "createChannel"
        | "listChannels"
        | "issueChannelKey"
        | "revokeChannelKey"
        | "createWebhook"
        | "listWebhooks"
        | "getWebhook"
        | "updateWebhook"
        | "deleteWebhook"
        | "rotateWebhookSecret"
        | "redeliverWebhookEvent"
        | "redeliverWebhookSince" => Role::Admin,
        _ => return None,
    })
}

/// An operator's role, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum RoleBody {
    Admin,
    Stock,
    Viewer,
}

impl From<Role> for RoleBody {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => Self::Admin,
            Role::Stock => Self::Stock,
            Role::Viewer => Self::Viewer,
        }
    }
}

/// Operators: `Authorization: Bearer <operator token>` (`ADMIN_TOKEN` acts as the operator
/// `bootstrap`, role admin). Each route needs a role: `viewer` < `stock` < `admin`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_operator")]
pub struct OperatorAuth(pub Caller);

/// The operator a request acts as, and the request, for the audit trail.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: u64,
    pub name: String,
    pub role: Role,
    pub request_id: Option<RequestId>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::Operator(self.id)
    }

    /// Refuses (403, naming the role needed) what this operator's role does not cover.
    pub fn require(&self, needed: Role) -> Result<(), Problem> {
        if self.role.covers(needed) {
            return Ok(());
        }
        Err(Problem {
            required_role: Some(needed.into()),
            ..Problem::forbidden(format!(
                "this route needs the role {needed}; operator '{}' has {}",
                self.name, self.role
            ))
        })
    }
}

async fn check_operator(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = req.data::<Arc<ApiState>>().ok_or_else(Problem::internal)?;
    let request_id = req.data::<RequestId>().cloned();
    let caller = if constant_time_eq(
        bearer.token.as_bytes(),
        state.admin_token.expose().as_bytes(),
    ) {
        Caller {
            id: state.bootstrap_operator,
            name: BOOTSTRAP.to_owned(),
            role: Role::Admin,
            request_id,
        }
    } else {
        match state
            .storage
            .access()
            .operator_of_token(&bearer.token)
            .await
            .map_err(Problem::from)?
        {
            Some(o) => Caller {
                id: o.id,
                name: o.name,
                role: o.role,
                request_id,
            },
            None => {
                return Err(
                    Problem::unauthorized("this operator token is unknown or revoked").into(),
                )
            }
        }
    };
    set_actor(req, &caller.actor());
    // A route the table does not name needs the most: a new route is closed until classed.
    let needed = req
        .data::<Arc<Methods>>()
        .and_then(|m| m.operation(req.method(), req.original_uri().path()))
        .and_then(|Operation(id)| role_needed_by(&id))
        .unwrap_or(Role::Admin);
    caller.require(needed)?;
    Ok(caller)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// POS terminals: `Authorization: Bearer <store key>`, issued by an operator for one store. A key
/// acts for its own store only.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "take_key")]
pub struct StoreKey(pub PresentedKey);

/// A store or channel key as presented, with the request's actor slot (filled once the key is checked).
pub struct PresentedKey {
    token: String,
    actor: Option<ActorSlot>,
}

async fn take_key(req: &Request, bearer: Bearer) -> Option<PresentedKey> {
    Some(PresentedKey {
        token: bearer.token,
        actor: req.data::<ActorSlot>().cloned(),
    })
}

impl StoreKey {
    /// Checks that this key is valid and belongs to `store`, and answers the key as the actor of
    /// the store's writes: 401 when it is not valid, 403 when it belongs to another store.
    pub async fn authorize(&self, state: &ApiState, store: LocationId) -> Result<Actor, Problem> {
        match state.storage.catalog().store_of_key(&self.0.token).await? {
            None => Err(Problem::unauthorized(
                "this store key is unknown or revoked",
            )),
            Some((key_id, owner)) => {
                if let Some(slot) = &self.0.actor {
                    slot.set(&Actor::StoreKey(key_id));
                }
                if owner == store {
                    Ok(Actor::StoreKey(key_id))
                } else {
                    Err(Problem::forbidden(format!(
                        "this key belongs to store {owner}; it cannot act for store {store}"
                    )))
                }
            }
        }
    }
}

/// The shop's writes (orders on both paths, cancels, holds) and its reads of its own orders and
/// holds: `Authorization: Bearer <channel key>`, issued by an operator for one sales channel.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "take_key")]
pub struct ShopKey(pub PresentedKey);

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
    /// The channel this key acts for, looked up as `lookup` says: 401 when it is unknown or
    /// revoked.
    pub async fn shop(&self, state: &ApiState, lookup: KeyLookup) -> Result<Shop, Problem> {
        if !state.shop_auth && self.0.token == NO_CHANNEL_TOKEN {
            if let Some(slot) = &self.0.actor {
                slot.set(&Actor::NoChannel);
            }
            return Ok(Shop { channel: None });
        }
        match state
            .storage
            .channels()
            .of_key(&self.0.token, lookup)
            .await?
        {
            Some(k) => {
                if let Some(slot) = &self.0.actor {
                    slot.set(&Actor::Channel(k.channel_id));
                }
                Ok(Shop {
                    channel: Some(k.channel_id),
                })
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            id: 4,
            name: "ana".into(),
            role,
            request_id: None,
        }
    }

    #[test]
    fn a_route_beyond_the_role_names_the_role_it_needs() {
        let p = caller(Role::Viewer).require(Role::Stock).unwrap_err();
        assert_eq!(p.status, 403);
        assert_eq!(
            p.detail,
            "this route needs the role stock; operator 'ana' has viewer"
        );
        assert_eq!(p.required_role, Some(RoleBody::Stock));
        assert!(caller(Role::Admin).require(Role::Stock).is_ok());
        assert!(caller(Role::Stock).require(Role::Viewer).is_ok());
        assert!(caller(Role::Stock).require(Role::Admin).is_err());
    }
}
