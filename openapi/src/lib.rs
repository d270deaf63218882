//! Stock Flow's HTTP surface, built with poem-openapi: the spec and Swagger UI are generated from
//! this code.
//!
//! # Layout
//!
//! One API struct per tag, combined in [`routes`]:
//!
//! - [`catalog`]: products and locations from MySQL;
//! - [`orders`]: the DB-lock order path and order status;
//! - [`redis_api`]: the Redis order path and stock read from Redis;
//! - [`stores`]: the store POS API (per-store keys);
//! - [`admin`]: operators' routes (admin token);
//! - [`health`]: liveness and readiness.
//!
//! Errors are RFC 9457 problems ([`problem`]); metrics are in [`metrics`]. This crate turns HTTP
//! into calls on `sf-persistence` and back; it decides nothing itself.

pub mod admin;
pub mod auth;
pub mod catalog;
pub mod health;
pub mod metrics;
pub mod orders;
pub mod problem;
pub mod redis_api;
pub mod state;
pub mod stores;
pub mod types;

pub use state::ApiState;

use poem::{get, Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::OpenApiService;
use std::sync::Arc;

pub type Apis = (
    catalog::CatalogApi,
    orders::OrdersApi,
    redis_api::RedisApi,
    stores::StoresApi,
    admin::AdminApi,
    health::HealthApi,
);

/// The OpenAPI service (all operations, one spec).
pub fn api_service(state: &Arc<ApiState>) -> OpenApiService<Apis, ()> {
    let apis = (
        catalog::CatalogApi {
            state: state.clone(),
        },
        orders::OrdersApi {
            state: state.clone(),
        },
        redis_api::RedisApi {
            state: state.clone(),
        },
        stores::StoresApi {
            state: state.clone(),
        },
        admin::AdminApi {
            state: state.clone(),
        },
        health::HealthApi {
            state: state.clone(),
        },
    );
    OpenApiService::new(apis, "Stock Flow", env!("CARGO_PKG_VERSION"))
        .description(
            "Store-aware inventory and fulfillment. Two order paths side by side: the DB-lock \
             path (one MySQL transaction with row locks) and the Redis path (an atomic Lua \
             script, persisted to MySQL in the background). Errors are \
             application/problem+json (RFC 9457).",
        )
        .server("/")
}

/// The whole route tree: operations, spec (`/api/openapi.json`, `/api/openapi.yaml`), Swagger UI
/// (`/swagger-ui`) and metrics (`/metrics`). Every error leaves as a problem.
pub fn routes(state: Arc<ApiState>) -> impl Endpoint {
    let service = api_service(&state);
    let spec_json = service.spec();
    let spec_yaml = service.spec_yaml();
    let ui = service.swagger_ui();
    let metrics_state = state.clone();
    let app = Route::new()
        .nest("/", service)
        .nest("/swagger-ui", ui)
        .at(
            "/api/openapi.json",
            get(poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json")
                    .body(spec_json.clone())
            })),
        )
        .at(
            "/api/openapi.yaml",
            get(poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/yaml")
                    .body(spec_yaml.clone())
            })),
        )
        .at(
            "/metrics",
            get(poem::endpoint::make(move |_| {
                metrics::render(metrics_state.clone())
            })),
        )
        .data(state.clone())
        .catch_all_error(|err: poem::Error| async move {
            problem::into_response(&problem::from_poem(&err)).into_response()
        });
    metrics::Track {
        inner: app,
        metrics: state.metrics.clone(),
    }
}
