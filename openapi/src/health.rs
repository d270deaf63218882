//! Liveness and readiness.

use crate::state::ApiState;
use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use std::sync::Arc;

#[derive(Tags)]
pub enum HealthTag {
    /// Probes for orchestrators and load balancers.
    Health,
}

pub struct HealthApi {
    pub state: Arc<ApiState>,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// MySQL and Redis both answer.
    #[oai(status = 200)]
    Ready(PlainText<String>),
    /// One of them does not; the body says which.
    #[oai(status = 503)]
    NotReady(PlainText<String>),
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
    /// MySQL and Redis are reachable.
    #[oai(
        path = "/health/ready",
        method = "get",
        tag = "HealthTag::Health",
        operation_id = "ready"
    )]
    async fn ready(&self) -> ReadyResponse {
        let store = &self.state.store;
        let db = sqlx::query("SELECT 1").execute(&store.db).await;
        let redis = async {
            let mut c = store.conn().await.map_err(|e| e.to_string())?;
            redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match (db, redis) {
            (Ok(_), Ok(_)) => ReadyResponse::Ready(PlainText("ready".into())),
            (db, redis) => ReadyResponse::NotReady(PlainText(format!(
                "mysql: {}; redis: {}",
                db.map(|_| "ok".to_owned())
                    .unwrap_or_else(|e| e.to_string()),
                redis.map(|_| "ok".to_owned()).unwrap_or_else(|e| e)
            ))),
        }
    }
}
