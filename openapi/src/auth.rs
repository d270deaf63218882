//! Credentials: the operators' bearer token, and per-store POS keys.

use crate::problem::Problem;
use crate::state::ApiState;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use sf_persistence::access::Actor;
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

/// The operator behind an admin request, as the ledger names it.
///
/// OPERATOR IDENTITY COMES FROM HERE. Today every operator shares `ADMIN_TOKEN`, so this is the
/// placeholder `operator:0`; once named operators land, this answers the operator the token
/// belongs to, and every operator's write names them without another change.
pub fn operator_actor(_auth: &AdminAuth) -> Actor {
    Actor::Operator(0)
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
    /// Checks that this key is valid and belongs to `store`, and answers the key as the actor of
    /// the store's writes: 401 when it is not valid, 403 when it belongs to another store.
    pub async fn authorize(&self, state: &ApiState, store: LocationId) -> Result<Actor, Problem> {
        match state.storage.catalog().store_of_key(&self.0.token).await? {
            None => Err(Problem::unauthorized(
                "this store key is unknown or revoked",
            )),
            Some((owner, key_id)) if owner == store => Ok(Actor::StoreKey(key_id)),
            Some((owner, _)) => Err(Problem::forbidden(format!(
                "this key belongs to store {owner}; it cannot act for store {store}"
            ))),
        }
    }
}
