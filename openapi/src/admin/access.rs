//! Operators' routes about who acts: named operators with their roles (created, listed,
//! revoked) and the audit trail of what they did.

use super::AdminTag;
use crate::auth::{OperatorAuth, RoleBody};
use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use crate::types::rfc3339;
use crate::types::Text;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sf_persistence::access::{AuditEntry, Operator, OperatorName, Role};
use std::sync::Arc;

pub struct AccessApi {
    pub state: Arc<ApiState>,
}

/// A new operator.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct NewOperator {
    /// 1 to 100 characters, not only white space, no control characters; unique (a revoked
    /// operator keeps its name). A name that breaks this is a 422.
    pub name: Text,
    /// `admin` (everything, operators and keys included), `stock` (stock changes, safety stock,
    /// fulfilment steps, retries of rejected orders, and reads) or `viewer` (reads only). Any
    /// other value is a 422.
    pub role: Text,
}

impl Example for NewOperator {
    fn example() -> Self {
        Self {
            name: Text("ana".into()),
            role: Text("stock".into()),
        }
    }
}

/// An operator (never its token).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct OperatorBody {
    pub operator_id: u64,
    pub name: String,
    pub role: RoleBody,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// When it was revoked (RFC 3339, UTC); absent while its token works.
    #[oai(skip_serializing_if_is_none)]
    pub revoked_at: Option<String>,
}

impl Example for OperatorBody {
    fn example() -> Self {
        Self {
            operator_id: 2,
            name: "ana".into(),
            role: RoleBody::Stock,
            created_at: "2026-12-07T04:30:00.000Z".into(),
            revoked_at: None,
        }
    }
}

impl From<Operator> for OperatorBody {
    fn from(o: Operator) -> Self {
        Self {
            operator_id: o.id,
            name: o.name,
            role: o.role.into(),
            created_at: crate::types::rfc3339(o.created_ms),
            revoked_at: o.revoked_ms.map(rfc3339),
        }
    }
}

/// A new operator with its token.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct CreatedOperatorBody {
    pub operator_id: u64,
    pub name: String,
    pub role: RoleBody,
    pub created_at: String,
    /// The operator's bearer token. Shown this once; only its hash is kept.
    pub token: String,
}

impl Example for CreatedOperatorBody {
    fn example() -> Self {
        Self {
            operator_id: 2,
            name: "ana".into(),
            role: RoleBody::Stock,
            created_at: "2026-12-07T04:30:00.000Z".into(),
            token: "sfo_3f9c0e1d2b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382".into(),
        }
    }
}

/// A created operator.
#[derive(ApiResponse)]
pub enum OperatorCreated {
    /// Created; the token is shown this once.
    #[oai(status = 201)]
    Created(Json<CreatedOperatorBody>),
}

#[derive(Debug, Clone, Object)]
pub struct OperatorList {
    /// Every operator, revoked ones too, in id order.
    pub operators: Vec<OperatorBody>,
}

/// What an operator did.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct AuditEntryBody {
    /// Its place in the trail: later entries have greater ids.
    pub id: u64,
    /// Who: `operator:<id>` (`ADMIN_TOKEN` is the operator `bootstrap`).
    pub actor: String,
    /// What: `operator.created`, `operator.revoked`, `store-key.issued`, `store-key.revoked`,
    /// `location.created`, `location.changed`, `product.created`, `product.changed`,
    /// `safety-stock.set`, `order.retried`, `dead-letter.replayed`, `job.run`.
    pub action: String,
    /// On what: `operator:<id>`, `store-key:<id>`, `location:<id>`, `product:<id>`,
    /// `location:<id>/product:<id>`, `order:<id>`, `dead-letter:<id>`, `job:<name>`.
    pub subject: String,
    /// The request's body, or a note on the outcome.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The request's id (its `X-Request-Id`; the access log line of the request carries it).
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
}

impl Example for AuditEntryBody {
    fn example() -> Self {
        Self {
            id: 41,
            actor: "operator:1".into(),
            action: "operator.created".into(),
            subject: "operator:2".into(),
            detail: Some(r#"{"name":"ana","role":"stock"}"#.into()),
            time: "2026-12-07T04:30:00.000Z".into(),
            request_id: Some("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into()),
        }
    }
}

impl From<AuditEntry> for AuditEntryBody {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            detail: e.detail,
            time: crate::types::rfc3339(e.at_ms),
            request_id: e.request_id,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntryBody>,
    /// The `after` of the next page, when this page is full.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<u64>,
}

#[OpenApi(prefix_path = "/api/admin", tag = "AdminTag::Admin")]
impl AccessApi {
    /// Create an operator
    ///
    /// A named operator with a role and a token of its own. The answer shows the token once;
    /// only its hash is kept. Answers 409 when the name is taken; 422 when the name or the role
    /// is not valid.
    #[oai(path = "/operators", method = "post", operation_id = "createOperator")]
    async fn create_operator(
        &self,
        auth: OperatorAuth,
        body: Json<NewOperator>,
    ) -> ApiResult<OperatorCreated> {
        let name = OperatorName::parse(&body.name.0)?;
        let role = Role::parse(&body.role.0).ok_or_else(|| {
            Problem::validation(format!(
                "role must be admin, stock or viewer; got {:?}",
                body.role.0
            ))
        })?;
        let created = self
            .state
            .storage
            .access()
            .create_operator(&name, role)
            .await?;
        let o = created.operator;
        self.state
            .audit(
                &auth.0,
                "operator.created",
                &format!("operator:{}", o.id),
                Some(serde_json::json!({ "name": o.name, "role": role.as_str() }).to_string()),
            )
            .await;
        Ok(OperatorCreated::Created(Json(CreatedOperatorBody {
            operator_id: o.id,
            name: o.name,
            role: o.role.into(),
            created_at: crate::types::rfc3339(o.created_ms),
            token: created.token,
        })))
    }

    /// List operators
    ///
    /// Every operator, revoked ones too, in id order, with its role; never a token.
    #[oai(path = "/operators", method = "get", operation_id = "listOperators")]
    async fn list_operators(&self, _auth: OperatorAuth) -> ApiResult<Json<OperatorList>> {
        let operators = self.state.storage.access().operators().await?;
        Ok(Json(OperatorList {
            operators: operators.into_iter().map(Into::into).collect(),
        }))
    }

    /// Revoke an operator
    ///
    /// The operator's token stops working at once, on every instance. Answers 200 with the
    /// operator (`revokedAt`); revoking twice answers the same. 404 when there is no such
    /// operator; 409 for `bootstrap`, whose token is `ADMIN_TOKEN` (change that instead).
    #[oai(
        path = "/operators/:operatorId",
        method = "delete",
        operation_id = "revokeOperator"
    )]
    async fn revoke_operator(
        &self,
        auth: OperatorAuth,
        #[oai(name = "operatorId", validator(minimum(value = "1")))] operator_id: Path<i64>,
    ) -> ApiResult<Json<OperatorBody>> {
        let id = operator_id.0 as u64;
        let o = self.state.storage.access().revoke_operator(id).await?;
        self.state
            .audit(
                &auth.0,
                "operator.revoked",
                &format!("operator:{id}"),
                Some(serde_json::json!({ "name": o.name }).to_string()),
            )
            .await;
        Ok(Json(o.into()))
    }

    /// Audit trail
    ///
    /// What operators did, newest first: operators created and revoked, POS keys issued and
    /// revoked, locations and products created and changed, safety stock set, rejected orders
    /// retried, dead letters replayed, jobs run now. Stock counts and adjustments are in each
    /// stock row's ledger (`listMovements`) with their actor. Keyset-paged: `after` is the
    /// `next` of the previous page (the last `id` seen); `limit` 1 to 500 (default 50).
    #[oai(path = "/audit", method = "get", operation_id = "listAudit")]
    async fn audit(
        &self,
        _auth: OperatorAuth,
        /// The `next` of the previous page: only entries older than it.
        #[oai(validator(minimum(value = "1")))]
        after: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<AuditPage>> {
        let limit = limit.0.unwrap_or(50) as u32;
        let entries = self
            .state
            .storage
            .access()
            .audit(after.0.map(|a| a as u64), limit)
            .await?;
        let next = (entries.len() == limit as usize)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        Ok(Json(AuditPage {
            entries: entries.into_iter().map(Into::into).collect(),
            next,
        }))
    }
}
