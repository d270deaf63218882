//! Liveness and readiness. Both answer from what the background probes last saw, never by asking
//! MySQL or Redis themselves, so they answer at once whatever the stores do.

use crate::state::ApiState;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use sf_persistence::CircuitState;
use std::sync::Arc;

#[derive(Tags)]
pub enum HealthTag {
    /// Probes for orchestrators and load balancers.
    Health,
}

pub struct HealthApi {
    pub state: Arc<ApiState>,
}

/// What the instance can do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Readiness {
    /// MySQL and Redis both answer.
    Ready,
    /// One of them does not; the instance still takes orders (see docs/operations.md, when Redis is down or slow).
    Degraded,
    /// Neither answers: no order can be taken.
    Unavailable,
}

/// One dependency as the probes last saw it.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Component {
    /// `up` or `down`.
    pub status: String,
    /// For Redis: the circuit, `closed` (in use), `open` (unreachable; calls fail at once) or
    /// `recovering` (reachable again; stale keys being re-synced before it decides orders).
    #[oai(skip_serializing_if_is_none)]
    pub circuit: Option<String>,
    /// When the dependency last went down (Redis: the circuit last opened), if it did.
    #[oai(skip_serializing_if_is_none)]
    pub since: Option<String>,
    /// The last error seen while it was down.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Health {
    pub status: Readiness,
    pub mysql: Component,
    pub redis: Component,
    /// `required`: the shop's routes need a channel key; `off` (`SHOP_AUTH=off`, for local
    /// experiments): a request without one acts for no channel.
    pub shop_auth: String,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The instance takes orders: `ready`, or `degraded` while one store is down (Redis down:
    /// MySQL-first writes go on and the Redis path answers 503; MySQL down: the Redis path goes
    /// on). A shared store's outage is not a reason to take the instance out of a load balancer.
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// Neither MySQL nor Redis answers.
    #[oai(status = 503)]
    NotReady(Json<Health>),
}

fn stamp(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[OpenApi]
impl HealthApi {
    /// Liveness
    ///
    /// The process is up.
    #[oai(
        path = "/health/live",
        method = "get",
        tag = "HealthTag::Health",
        operation_id = "live"
    )]
    async fn live(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// Readiness
    ///
    /// Whether MySQL and Redis answer, as the background probes last saw them (MySQL every
    /// `HEALTH_CHECK_MS`, Redis on every call and every `OUTAGE_PROBE_MS` while its circuit is
    /// open). Answers at once, whatever the stores do.
    #[oai(
        path = "/health/ready",
        method = "get",
        tag = "HealthTag::Health",
        operation_id = "ready"
    )]
    async fn ready(&self) -> ReadyResponse {
        let store = &self.state.storage;
        let mysql_up = store.health().mysql_health().up();
        let mysql = Component {
            status: if mysql_up { "up" } else { "down" }.into(),
            circuit: None,
            since: if mysql_up {
                None
            } else {
                stamp(store.health().mysql_health().since())
            },
            error: (!mysql_up)
                .then(|| store.health().mysql_health().last_error())
                .flatten(),
        };
        let circuit = store.health().circuit().state();
        let redis_up = circuit != CircuitState::Open;
        let redis = Component {
            status: if redis_up { "up" } else { "down" }.into(),
            circuit: Some(circuit.as_str().into()),
            since: (circuit != CircuitState::Closed)
                .then(|| stamp(store.health().circuit().opened_at()))
                .flatten(),
            error: (circuit != CircuitState::Closed)
                .then(|| store.health().circuit().last_error())
                .flatten(),
        };
        let status = match (mysql_up, circuit == CircuitState::Closed, redis_up) {
            (true, true, _) => Readiness::Ready,
            (false, _, false) => Readiness::Unavailable,
            _ => Readiness::Degraded,
        };
        let health = Health {
            status,
            mysql,
            redis,
            shop_auth: if self.state.shop_auth {
                "required"
            } else {
                "off"
            }
            .into(),
        };
        match status {
            Readiness::Unavailable => ReadyResponse::NotReady(Json(health)),
            _ => ReadyResponse::Ready(Json(health)),
        }
    }
}
