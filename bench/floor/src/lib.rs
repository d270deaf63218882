//! `sf-floor`: the floor of the Redis order path, for `ops/bench`. Not part of the shipped
//! service.
//!
//! One bare poem handler, `POST /orders`, does the least an order on the Redis path can do: parse
//! a JSON body like the service's, draw a uuid-v7 order id, run the service's own `reserve.lua`
//! once (one `EVALSHA`) on one hot stock key, and answer 202 with the order's JSON. Redis is
//! reached exactly as the service reaches it: [`RedisSettings`] builds the client and the bb8 pool
//! of self-healing multiplexed connections, a request takes a clone of a pooled connection and
//! frees the slot at once, the call runs under the command deadline, and
//! [`Reserve::invocation`] builds the script's keys and arguments (decoded by
//! [`reserve::decode`]). What the service adds on top — routing, the order model, idempotency,
//! the circuit, metrics, OpenAPI validation, the consumer writing to MySQL — is what the distance
//! between the two throughputs measures.
//!
//! Its keys live under a prefix of their own (`floor:` by default) and are never cleaned up here:
//! every order adds an order record and an event to the stream, and nothing consumes them, so the
//! bench deletes the prefix after its run. `GET /health/live` answers `ok` for readiness checks.

use anyhow::Context;
use clap::Parser;
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{get, handler, post, EndpointExt, Response, Route, Server};
use serde::{Deserialize, Serialize};
use sf_persistence::scripts::reserve::SOURCE as RESERVE_LUA;
use sf_persistence::scripts::reserve::{self, Decision, Reserve};
use sf_persistence::{Keys, RedisPool, RedisSettings};
use sf_routing::{LocationId, OrderLines, ProductId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Settings, from the command line or the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sf-floor",
    version,
    about = "Benchmark floor: POST /orders runs Stock Flow's reserve.lua once per order"
)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "FLOOR_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the line printed at start-up names it).
    #[arg(long, env = "FLOOR_PORT", default_value_t = 8090)]
    pub port: u16,
    /// The Redis server (the service's `REDIS_URL`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,
    /// Prefix of every key the floor writes (no braces), apart from the service's.
    #[arg(long, env = "FLOOR_KEY_PREFIX", default_value = "floor:")]
    pub key_prefix: String,
    /// Most Redis connections in the pool (the service's `REDIS_POOL_SIZE`).
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 32)]
    pub redis_pool_size: u32,
    /// Milliseconds to open a Redis connection (the service's `REDIS_CONNECT_TIMEOUT_MS`).
    #[arg(long, env = "REDIS_CONNECT_TIMEOUT_MS", default_value_t = 500)]
    pub redis_connect_timeout_ms: u64,
    /// Milliseconds one script call may take (the service's `REDIS_COMMAND_TIMEOUT_MS`).
    #[arg(long, env = "REDIS_COMMAND_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_command_timeout_ms: u64,
    /// The location whose stock key every order decrements.
    #[arg(long, default_value_t = 1)]
    pub location: u64,
    /// The product whose stock is set at start-up; orders for another product are answered 409
    /// (not loaded).
    #[arg(long, default_value_t = 1)]
    pub product: u64,
    /// Units of that product set at start-up (large enough never to run out).
    #[arg(long, default_value_t = 1_000_000_000_000_000)]
    pub stock: i64,
}

/// What the handler shares.
struct State {
    pool: RedisPool,
    keys: Keys,
    script: redis::Script,
    location: LocationId,
    command_timeout: Duration,
}

/// A running floor.
pub struct Floor {
    port: u16,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Floor {
    /// Connects to Redis, sets the hot stock key, loads the script and starts serving.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !settings.key_prefix.is_empty() && !settings.key_prefix.contains(['{', '}']),
            "the key prefix must be non-empty and contain no braces"
        );
        anyhow::ensure!(
            settings.location > 0 && settings.product > 0,
            "location and product must be positive ids"
        );
        let redis = RedisSettings {
            pool_size: settings.redis_pool_size,
            connect_timeout: Duration::from_millis(settings.redis_connect_timeout_ms),
            command_timeout: Duration::from_millis(settings.redis_command_timeout_ms),
            ..RedisSettings::new(settings.redis_url.clone())
        };
        let client = redis.client().context("Redis client")?;
        let pool = redis.pool(&client).await.context("Redis pool")?;
        let location = LocationId::new_unchecked(settings.location);
        let keys = Keys::new(settings.key_prefix.clone());
        let script = redis::Script::new(RESERVE_LUA);
        {
            let mut conn = pool
                .get()
                .await
                .with_context(|| format!("connecting to Redis at {}", settings.redis_url))?
                .clone();
            let stock_key = keys.stock(location, ProductId::new_unchecked(settings.product));
            redis::cmd("SET")
                .arg(&stock_key)
                .arg(settings.stock)
                .query_async::<()>(&mut conn)
                .await
                .with_context(|| format!("setting {stock_key}"))?;
            // No safety stock: the script reads the location's buffer as the service's keys
            // load it (version 1, a default of 0).
            let safety_key = keys.safety(location);
            redis::cmd("HSET")
                .arg(&safety_key)
                .arg("v")
                .arg(1)
                .arg("*")
                .arg(0)
                .query_async::<()>(&mut conn)
                .await
                .with_context(|| format!("setting {safety_key}"))?;
            script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .context("loading reserve.lua")?;
        }
        let state = Arc::new(State {
            pool,
            keys,
            script,
            location,
            command_timeout: redis.command_timeout,
        });

        let acceptor = TcpListener::bind(format!("{}:{}", settings.host, settings.port))
            .into_acceptor()
            .await
            .with_context(|| format!("listening on {}:{}", settings.host, settings.port))?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .context("listener has no address")?;
        let routes = Route::new()
            .at("/orders", post(place_order))
            .at("/health/live", get(live))
            .data(state);
        let (shutdown, mut rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    routes,
                    async move {
                        let _ = rx.wait_for(|v| *v).await;
                    },
                    Some(Duration::from_secs(5)),
                )
                .await
        });
        Ok(Self {
            port,
            shutdown,
            server,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then drains the requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("SIGTERM handler")?;
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        self.stop().await
    }

    /// Stops serving and waits for the requests in flight.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await.context("server task")??;
        Ok(())
    }
}

/// An order as the service takes it; only the items are used.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderBody {
    items: Vec<Item>,
    delivery_type: String,
    #[allow(dead_code)] // parsed like the service parses it; the floor routes nothing
    delivery_address: Option<Address>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    product_id: i64,
    quantity: i64,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Address {
    latitude: f64,
    longitude: f64,
}

/// The order's JSON: what the script stores and the answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    order_id: &'a str,
    status: &'static str,
    path: &'static str,
    delivery_type: &'a str,
    fulfillment_location_id: u64,
    items: Vec<AnswerItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AnswerItem {
    product_id: u64,
    quantity: u32,
}

#[handler]
async fn live() -> &'static str {
    "ok"
}

#[handler]
async fn place_order(Data(state): Data<&Arc<State>>, Json(body): Json<OrderBody>) -> Response {
    let lines = match OrderLines::parse(body.items.iter().map(|i| (i.product_id, i.quantity))) {
        Ok(lines) => lines,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let loc = state.location;
    let order_id = format!("{}-{}", loc.get(), uuid::Uuid::now_v7().simple());
    let json = match serde_json::to_string(&Answer {
        order_id: &order_id,
        status: "ACCEPTED",
        path: "REDIS",
        delivery_type: &body.delivery_type,
        fulfillment_location_id: loc.get(),
        items: lines
            .iter()
            .map(|(p, q)| AnswerItem {
                product_id: p.get(),
                quantity: q.get(),
            })
            .collect(),
    }) {
        Ok(j) => j,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let inv = Reserve {
        loc,
        order_id: &order_id,
        json: &json,
        lines: &lines,
    }
    .invocation(&state.keys);
    let mut call = state.script.prepare_invoke();
    for k in &inv.keys {
        call.key(k);
    }
    for a in &inv.args {
        call.arg(a);
    }
    // As the service does: a clone of a pooled multiplexed connection, the slot freed at once.
    let mut conn = match state.pool.get().await {
        Ok(c) => c.clone(),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let reply: Vec<i64> =
        match tokio::time::timeout(state.command_timeout, call.invoke_async(&mut conn)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            Err(_) => return problem(StatusCode::SERVICE_UNAVAILABLE, "redis command deadline"),
        };
    match reserve::decode(&reply, lines.len()) {
        Ok(Decision::Applied) => Response::builder()
            .status(StatusCode::ACCEPTED)
            .content_type("application/json")
            .body(json),
        Ok(Decision::Short { .. }) => problem(StatusCode::CONFLICT, "out of stock"),
        Ok(Decision::NotLoaded { .. }) => problem(StatusCode::CONFLICT, "stock key not set"),
        Ok(Decision::Duplicate) => problem(StatusCode::CONFLICT, "duplicate order id"),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A small problem+json answer.
fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({ "status": status.as_u16(), "detail": detail });
    Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_service_order_body() {
        let body: OrderBody = serde_json::from_str(
            r#"{"items":[{"productId":1,"quantity":1}],"deliveryType":"NORMAL",
                "deliveryAddress":{"latitude":37.5665,"longitude":126.978}}"#,
        )
        .unwrap();
        assert_eq!(body.items.len(), 1);
        assert_eq!((body.items[0].product_id, body.items[0].quantity), (1, 1));
        assert_eq!(body.delivery_type, "NORMAL");
    }

    #[test]
    fn settings_default_to_a_prefix_of_their_own() {
        let s = Settings::try_parse_from(["sf-floor", "--port", "0"]).unwrap();
        assert_eq!(s.port, 0);
        assert_ne!(s.key_prefix, "sf:");
    }
}
