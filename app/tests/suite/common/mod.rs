//! Test harness: every test gets its own MariaDB database and its own Redis key prefix on the
//! servers named by `DATABASE_URL` / `REDIS_URL` (default: the standard local ports), and starts
//! the real application on port 0.
//!
//! The harness checks what the service did through connections of its own, straight to the real
//! servers (past any fault proxy the service is routed through): [`TestApp::db`] and
//! [`TestApp::redis`]. It calls the service only through HTTP and its public methods.
//!
//! Dropping a [`TestApp`] — at the end of a test, or while a failing test unwinds — stops the
//! application and removes the test's database and Redis keys, so nothing is left behind.

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sf_persistence::Keys;
use sf_routing::{LocationId, ProductId};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::Row;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};
use stock_flow::{Application, Config};

pub mod cluster;
pub mod fixtures;
pub mod outbox;
pub mod proxy;
pub mod servers;
pub mod webhooks;

pub use fixtures::*;
pub use outbox::outbox_violations;
pub use servers::*;

pub const ADMIN: &str = "test-admin-token";

/// Runs `stock-flow seed <args>` into `database_url` (Redis keys under `prefix`), which must
/// succeed; answers what it printed.
pub fn run_seed(args: &[&str], database_url: &str, redis_url: &str, prefix: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stock-flow"))
        .arg("seed")
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("REDIS_KEY_PREFIX", prefix)
        .output()
        .expect("the seed runs");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The value of the sample `name` (with its labels, if any) in a `/metrics` text; `None` when it
/// is not there.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|n| n.trim().parse::<f64>().expect("a number") as u64)
}

/// `mysql://user@host:port/anything` with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("a database URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// `host:port` of a `scheme://user@host:port/...` URL.
pub fn host_port(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("a server URL");
    format!(
        "{}:{}",
        parsed.host_str().expect("a host"),
        parsed.port().expect("a port")
    )
}

/// The same URL through the proxy on `port`.
pub fn via(url: &str, port: u16) -> String {
    let mut parsed = url::Url::parse(url).expect("a server URL");
    parsed.set_host(Some("127.0.0.1")).expect("a host");
    parsed.set_port(Some(port)).expect("a port");
    parsed.to_string()
}

/// The service with its Redis connections through a fault proxy; `tweak` changes its settings.
pub async fn behind_redis_proxy(
    tweak: impl FnOnce(&mut stock_flow::Config),
) -> (proxy::Proxy, TestApp) {
    let proxy = proxy::Proxy::start(&host_port(&redis_url())).await;
    let t = TestApp::spawn_with(|c| {
        c.storage.redis_url = via(c.storage.redis_url.expose(), proxy.port).into();
        tweak(c);
    })
    .await;
    (proxy, t)
}

/// The same URL straight to the real server when it points at a running [`proxy::Proxy`].
pub fn direct(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("a server URL");
    let upstream = (parsed.host_str() == Some("127.0.0.1"))
        .then(|| parsed.port())
        .flatten()
        .and_then(proxy::upstream_of);
    match upstream {
        Some(upstream) => {
            let (host, port) = upstream.rsplit_once(':').expect("host:port");
            let mut to = parsed.clone();
            to.set_host(Some(host)).expect("a host");
            to.set_port(Some(port.parse().expect("a port")))
                .expect("a port");
            to.to_string()
        }
        None => url.to_owned(),
    }
}

/// A sales channel and one of its keys.
#[derive(Debug, Clone)]
pub struct ShopChannel {
    pub channel_id: u64,
    pub key: String,
}

/// Creates the channel every test's shop requests act for (once per database: a second instance
/// on the same database finds it).
pub async fn shop_channel(storage: &sf_persistence::Storage) -> ShopChannel {
    shop_channel_named(storage, "test-shop").await
}

/// The channel `name` (created when missing) and a new key of it.
pub async fn shop_channel_named(storage: &sf_persistence::Storage, name: &str) -> ShopChannel {
    let channels = storage.channels();
    let channel = match channels.create(name).await {
        Ok(c) => c,
        Err(_) => channels
            .list()
            .await
            .expect("channels")
            .into_iter()
            .find(|c| c.name == name)
            .expect("the channel"),
    };
    let k = channels
        .issue_key(channel.id, "harness")
        .await
        .expect("a channel key");
    ShopChannel {
        channel_id: channel.id,
        key: k.key,
    }
}

/// An HTTP client whose requests carry `key` as their bearer credentials unless they set their
/// own (an operator's token, a store key).
pub fn shop_client(key: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("a header value"),
    );
    Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .unwrap()
}

pub fn test_config() -> (Config, String, String) {
    let tag: u64 = rand::random();
    let db_name = format!("sft_{tag:016x}");
    let prefix = format!("t{tag:016x}:");
    let mut config = Config::from_env();
    config.storage.database_url = with_database(&server_url(), &db_name).into();
    config.storage.redis_url = redis_url().into();
    config.storage.redis_key_prefix = prefix.clone();
    config.storage.db_max_connections = 24;
    config.storage.redis_pool_size = 16;
    config.host = "127.0.0.1".into();
    config.port = 0;
    config.admin_token = ADMIN.into();
    config.consumer_reclaim_idle_ms = 2_000;
    // The invariant tests send bursts far above the default bounds on requests in flight; the
    // shedding itself is tested on its own (edge.rs) with bounds of its own.
    config.max_in_flight_db_lock = Some(100_000);
    config.max_in_flight_redis = Some(100_000);
    config.max_in_flight_pos = Some(100_000);
    config.max_in_flight_reads = Some(100_000);
    // Likewise their bursts queue for connections longer than the default pool wait.
    config.storage.db_connect_timeout_ms = 10_000;
    (config, db_name, prefix)
}

/// Which stock keys [`TestApp::assert_converged`] requires Redis to hold.
#[derive(Clone, Copy, Debug)]
pub enum InRedis<'a> {
    /// The key of every stock row.
    All,
    /// These (location, product) keys; the others are compared when Redis holds them.
    Keys(&'a [(u64, u64)]),
}

pub struct TestApp {
    pub app: Option<Application>,
    pub base: String,
    /// Sends the test shop's channel key unless a request names its own credentials.
    pub client: Client,
    /// The sales channel [`TestApp::client`] acts for.
    pub shop: ShopChannel,
    /// The service's MySQL URL (through a proxy when the test routes it through one).
    pub database_url: String,
    /// The service's Redis URL (through a proxy when the test routes it through one).
    pub redis_url: String,
    pub prefix: String,
    pub config: Config,
    /// The harness's own pool, straight to the test's database on the real server.
    pub db: MySqlPool,
    /// The harness's own Redis client, straight to the server (or cluster) the service uses.
    pub redis: sf_persistence::RedisClient,
    /// What the test created on the servers; `None` once removed.
    leftovers: Option<Leftovers>,
}

/// A test's database and Redis keys, and how to reach them directly.
#[derive(Clone)]
struct Leftovers {
    /// The MySQL server, straight (any database name).
    server_url: String,
    db_name: String,
    redis: sf_persistence::RedisClient,
    prefix: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        // Logs go through the test harness, so they show only for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .with_test_writer()
            .try_init();
        let (mut config, db_name, prefix) = test_config();
        tweak(&mut config);
        let leftovers = Leftovers {
            server_url: direct(config.storage.database_url.expose()),
            db_name: db_name.clone(),
            redis: harness_redis(&config),
            prefix: prefix.clone(),
        };
        // From here on a failure still removes whatever the start created.
        let guard = Remover(Some(leftovers.clone()));
        let app = Application::build(config.clone())
            .await
            .expect("app starts");
        let db = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&with_database(&leftovers.server_url, &db_name))
            .await
            .expect("the harness connects to the test database");
        guard.defuse();
        let base = format!("http://127.0.0.1:{}", app.port());
        let shop = shop_channel(&app.storage).await;
        Self {
            app: Some(app),
            base,
            client: shop_client(&shop.key),
            shop,
            database_url: config.storage.database_url.expose().to_owned(),
            redis_url: config.storage.redis_url.expose().to_owned(),
            prefix,
            config,
            db,
            redis: leftovers.redis.clone(),
            leftovers: Some(leftovers),
        }
    }

    pub fn app(&mut self) -> &mut Application {
        self.app.as_mut().expect("app running")
    }

    /// The service's storage, for calling its public methods as part of the behaviour under test.
    pub fn storage(&self) -> &sf_persistence::Storage {
        &self.app.as_ref().expect("app running").storage
    }

    pub fn keys(&self) -> Keys {
        Keys::new(self.prefix.clone())
    }

    /// A connection of the harness's own to the test's Redis or cluster (a new one each time: it
    /// works across a restart of a private Redis).
    pub async fn redis(&self) -> sf_persistence::RedisConn {
        harness_conn(&self.redis)
            .await
            .expect("the harness connects to redis")
    }

    /// Another instance of the service on the test's database and Redis key prefix (its own
    /// port), stopped when dropped.
    pub async fn spawn_instance(&self, tweak: impl FnOnce(&mut Config)) -> Instance {
        let mut config = self.config.clone();
        config.port = 0;
        tweak(&mut config);
        Instance(Some(
            Application::build(config)
                .await
                .expect("second instance starts"),
        ))
    }

    // ---- fixture data, written straight to MySQL ----

    pub async fn add_location(&self, kind: &str, name: &str, lat: f64, lon: f64) -> u64 {
        let id = sqlx::query(
            "INSERT INTO locations (kind, name, latitude, longitude) VALUES (?, ?, ?, ?)",
        )
        .bind(kind)
        .bind(name)
        .bind(lat)
        .bind(lon)
        .execute(&self.db)
        .await
        .unwrap()
        .last_insert_id();
        self.storage().catalog().refresh_locations().await.unwrap();
        id
    }

    pub async fn add_product(&self, price: i64) -> u64 {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
            .fetch_one(&self.db)
            .await
            .unwrap();
        let id = sqlx::query("INSERT INTO products (sku, name, price) VALUES (?, ?, ?)")
            .bind(format!("T-{}", n + 1))
            .bind(format!("Test product {}", n + 1))
            .bind(price)
            .execute(&self.db)
            .await
            .unwrap()
            .last_insert_id();
        self.storage().catalog().refresh_catalog().await.unwrap();
        id
    }

    /// Initial stock of a (location, product): before any order touches it.
    pub async fn stock_row(&self, loc: u64, product: u64, qty: i64) {
        sqlx::query("INSERT INTO stock (location_id, product_id, available, initial_quantity) VALUES (?, ?, ?, ?)")
            .bind(loc)
            .bind(product)
            .bind(qty)
            .bind(qty)
            .execute(&self.db)
            .await
            .unwrap();
    }

    // ---- what MySQL and Redis hold, read directly ----

    pub async fn available(&self, loc: u64, product: u64) -> i64 {
        sqlx::query_scalar("SELECT available FROM stock WHERE location_id = ? AND product_id = ?")
            .bind(loc)
            .bind(product)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// (available, committed, onHand) of a stock row, as MySQL holds them.
    pub async fn stock_states(&self, loc: u64, product: u64) -> (i64, i64, i64) {
        sqlx::query_as(
            "SELECT available, committed, available + committed + reserved FROM stock \
             WHERE location_id = ? AND product_id = ?",
        )
        .bind(loc)
        .bind(product)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    /// The ledger identities, for every stock row: available = initial + Σ available_delta,
    /// committed = Σ committed_delta = the units of the location's persisted online orders that
    /// are neither cancelled nor handed over, and reserved = Σ reserved_delta = the units of its
    /// `ACTIVE` holds.
    pub async fn assert_ledger_identities(&self) {
        let rows: Vec<(u64, u64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT s.location_id, s.product_id, s.committed, \
               (SELECT CAST(COALESCE(SUM(m.committed_delta), 0) AS SIGNED) FROM stock_movements m \
                 WHERE m.location_id = s.location_id AND m.product_id = s.product_id), \
               (SELECT CAST(COALESCE(SUM(l.quantity), 0) AS SIGNED) FROM order_lines l \
                 JOIN orders o ON o.id = l.order_id \
                 WHERE o.location_id = s.location_id AND l.product_id = s.product_id \
                 AND o.status = 'CONFIRMED' AND o.path <> 'POS' \
                 AND o.fulfillment IN ('UNFULFILLED', 'READY_FOR_PICKUP')), \
               s.available, \
               s.initial_quantity + (SELECT CAST(COALESCE(SUM(m.available_delta), 0) AS SIGNED) \
                 FROM stock_movements m \
                 WHERE m.location_id = s.location_id AND m.product_id = s.product_id) \
             FROM stock s",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        assert!(!rows.is_empty(), "no stock rows to check");
        for (loc, p, committed, ledger, open, available, from_ledger) in rows {
            assert_eq!(
                (committed, ledger, available),
                (open, open, from_ledger),
                "({loc},{p}): committed, Σ committed_delta, available against the open online \
                 orders' units and initial + Σ available_delta"
            );
        }
        let reserved: Vec<(u64, u64, i64, i64, i64)> = sqlx::query_as(
            "SELECT s.location_id, s.product_id, s.reserved, \
               (SELECT CAST(COALESCE(SUM(m.reserved_delta), 0) AS SIGNED) FROM stock_movements m \
                 WHERE m.location_id = s.location_id AND m.product_id = s.product_id), \
               (SELECT CAST(COALESCE(SUM(l.quantity), 0) AS SIGNED) FROM hold_lines l \
                 JOIN holds h ON h.id = l.hold_id \
                 WHERE h.location_id = s.location_id AND l.product_id = s.product_id \
                 AND h.status = 'ACTIVE') \
             FROM stock s",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        for (loc, p, reserved, ledger, active) in reserved {
            assert_eq!(
                (reserved, ledger),
                (active, active),
                "({loc},{p}): reserved and Σ reserved_delta against the active holds' units"
            );
        }
    }

    pub async fn ledger_sum(&self, loc: u64, product: u64) -> i64 {
        sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(available_delta), 0) AS SIGNED) FROM stock_movements \
             WHERE location_id = ? AND product_id = ?",
        )
        .bind(loc)
        .bind(product)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    pub fn stock_key(&self, loc: u64, product: u64) -> String {
        self.keys().stock(
            LocationId::new_unchecked(loc),
            ProductId::new_unchecked(product),
        )
    }

    pub async fn redis_stock(&self, loc: u64, product: u64) -> Option<i64> {
        redis::cmd("GET")
            .arg(self.stock_key(loc, product))
            .query_async(&mut self.redis().await)
            .await
            .unwrap()
    }

    /// Sets a stock key in Redis by hand (a drift the service must cope with).
    pub async fn set_redis_stock(&self, loc: u64, product: u64, value: i64) {
        let _: () = redis::cmd("SET")
            .arg(self.stock_key(loc, product))
            .arg(value)
            .query_async(&mut self.redis().await)
            .await
            .unwrap();
    }

    /// A transaction of the harness's own holding `FOR UPDATE` the stock row of `(loc, product)`:
    /// a writer of the service that needs the row waits until it ends.
    pub async fn lock_stock_row(
        &self,
        loc: u64,
        product: u64,
    ) -> sqlx::Transaction<'static, sqlx::MySql> {
        let mut tx = sf_persistence::infra::mysql::begin(&self.db).await.unwrap();
        sqlx::query(
            "SELECT available FROM stock WHERE location_id = ? AND product_id = ? FOR UPDATE",
        )
        .bind(loc)
        .bind(product)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx
    }

    /// A Redis-path order that must be accepted (202); answers its id.
    pub async fn place_redis(&self, body: &Value) -> String {
        let (s, b) = json_of(self.post("/api/redis/orders", body).await).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        b["orderId"].as_str().unwrap().to_owned()
    }

    /// Makes the reservation event of Redis-path order `id` at `loc` one the consumer cannot
    /// persist: it is appended again (at the stream's end) carrying the order at another location
    /// than it names, as a corrupted event would.
    pub async fn misdirect_reservation(&self, loc: u64, id: &str) {
        let stream = self
            .keys()
            .stream(sf_routing::LocationId::new_unchecked(loc));
        let mut c = self.redis().await;
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .unwrap();
        let reservation = entries
            .ids
            .iter()
            .find(|e| {
                e.get::<String>("t").as_deref() == Some("R")
                    && e.get::<String>("o").as_deref() == Some(id)
            })
            .expect("the order's reservation event");
        let mut wrong: Value =
            serde_json::from_str(&reservation.get::<String>("j").unwrap()).unwrap();
        wrong["fulfillmentLocationId"] = self.add_warehouse().await.into();
        let lines: String = reservation.get("l").unwrap();
        let _: i64 = redis::cmd("XDEL")
            .arg(&stream)
            .arg(&reservation.id)
            .query_async(&mut c)
            .await
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("v")
            .arg("1")
            .arg("t")
            .arg("R")
            .arg("o")
            .arg(id)
            .arg("l")
            .arg(lines)
            .arg("j")
            .arg(wrong.to_string())
            .query_async(&mut c)
            .await
            .unwrap();
    }

    /// The status the API reports for an order: its `status`, or `<status>:<problem type>`.
    pub async fn order_state(&self, id: &str) -> String {
        let (s, body) = json_of(self.get(&format!("/api/orders/{id}")).await).await;
        match s {
            StatusCode::OK => body["status"].as_str().unwrap().to_owned(),
            _ => format!("{}:{}", s.as_u16(), body["type"].as_str().unwrap_or("")),
        }
    }

    /// Redis loses every key of the test (as a restart without its data would): stock keys,
    /// order records, event streams and epoch markers.
    pub async fn lose_redis_data(&self) {
        let mut c = self.redis().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut c)
            .await
            .unwrap();
        for key in keys {
            let _: () = redis::cmd("UNLINK")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }

    pub async fn count_orders(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = ?")
            .bind(status)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// The status MySQL holds for order `id`, which it must hold within 10 s: a dead-lettered
    /// reservation's order is listed in MySQL just after its event left the stream, so an empty
    /// backlog ([`TestApp::wait_persisted`]) does not yet mean the row is there.
    pub async fn order_status(&self, id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM orders WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await
                    .unwrap();
            if let Some(status) = status {
                return status;
            }
            assert!(Instant::now() < deadline, "order {id} is not in MySQL");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ids of the orders in MySQL.
    pub async fn order_ids(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT id FROM orders")
            .fetch_all(&self.db)
            .await
            .unwrap()
    }

    /// Units sold (CONFIRMED orders) of `p` at `loc`.
    pub async fn sold(&self, loc: u64, p: u64) -> i64 {
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS SIGNED) FROM order_lines l \
             JOIN orders o ON o.id = l.order_id \
             WHERE o.status = 'CONFIRMED' AND o.location_id = ? AND l.product_id = ?",
        )
        .bind(loc)
        .bind(p)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    /// Waits until every Redis event is persisted and acknowledged. The backlog cannot be read
    /// while the service's Redis circuit is open (after a Redis restart, for a moment): that
    /// counts as not caught up yet.
    pub async fn wait_persisted(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = match sf_persistence::consumer::backlog(self.storage()).await {
                Ok((0, _)) => return,
                Ok((n, _)) => format!("{n} events left"),
                Err(e) => format!("the backlog cannot be read: {e}"),
            };
            assert!(
                Instant::now() < deadline,
                "consumer did not catch up: {left}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/metrics` shows every one of `lines` (figures read from a store are refreshed
    /// in the background, every 2 s); answers the text.
    pub async fn wait_for_metrics(&self, lines: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = self.get("/metrics").await.text().await.unwrap();
            let missing: Vec<&&str> = lines.iter().filter(|l| !metrics.contains(**l)).collect();
            if missing.is_empty() {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "metrics lack {missing:?}:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// I4: the ledger identities of every stock row ([`TestApp::assert_ledger_identities`]), and
    /// Redis equals MySQL. `in_redis` says which keys Redis must hold; a key it does not require
    /// is compared when Redis holds it (a missing key means "not loaded").
    pub async fn assert_converged(&self, in_redis: InRedis<'_>) {
        self.assert_ledger_identities().await;
        let rows = sqlx::query(
            "SELECT s.location_id, s.product_id, s.available FROM stock s \
             ORDER BY s.location_id, s.product_id",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        assert!(!rows.is_empty(), "no stock rows to check");
        let mut required: BTreeSet<(u64, u64)> = match in_redis {
            InRedis::All => BTreeSet::new(),
            InRedis::Keys(keys) => keys.iter().copied().collect(),
        };
        let mut redis = self.redis().await;
        for r in &rows {
            let loc: u64 = r.get("location_id");
            let p: u64 = r.get("product_id");
            let available: i64 = r.get("available");
            let must = matches!(in_redis, InRedis::All) || required.remove(&(loc, p));
            let cached: Option<i64> = redis::cmd("GET")
                .arg(self.stock_key(loc, p))
                .query_async(&mut redis)
                .await
                .unwrap();
            match cached {
                Some(v) => assert_eq!(v, available, "redis vs mysql for ({loc},{p})"),
                None => assert!(!must, "redis lacks the key of ({loc},{p})"),
            }
        }
        assert!(
            required.is_empty(),
            "no stock row for the keys {required:?}"
        );
    }

    // ---- HTTP ----

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{}", self.base, path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST` with an `Idempotency-Key`.
    pub async fn post_idempotent(&self, path: &str, key: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{}", self.base, path))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_with_key(&self, path: &str, key: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{}", self.base, path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str) -> Response {
        self.client
            .patch(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap()
    }

    /// A request to this instance, to finish and send (see [`until_final`]).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// The operators' API, with the admin bearer token (`ADMIN_TOKEN`: the operator
    /// `bootstrap`).
    pub fn admin(&self) -> Admin<'_> {
        Admin(self, ADMIN)
    }

    /// The operators' API, as the operator whose token this is.
    pub fn operator<'a>(&'a self, token: &'a str) -> Admin<'a> {
        Admin(self, token)
    }

    pub async fn admin_set_stock(&self, loc: u64, product: u64, qty: i64) -> Response {
        self.admin()
            .put(
                &format!("/api/admin/locations/{loc}/products/{product}/stock"),
                &json!({"quantity": qty, "reason": "RESTOCK"}),
            )
            .await
    }

    pub async fn admin_adjust(&self, loc: u64, product: u64, delta: i64) -> Response {
        self.admin()
            .post(
                &format!("/api/admin/locations/{loc}/products/{product}/stock/adjustments"),
                &json!({"delta": delta, "reason": "ADJUST"}),
            )
            .await
    }

    /// `POST /api/admin/reconciliation/runs`: a run that must succeed; answers its report. While
    /// a scheduled run is going (409 `/problems/job-running`), it asks again.
    pub async fn run_reconcile(&self) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (s, b) = loop {
            let (s, b) = json_of(
                self.admin()
                    .post_empty("/api/admin/reconciliation/runs")
                    .await,
            )
            .await;
            if s != StatusCode::CONFLICT || std::time::Instant::now() > deadline {
                break (s, b);
            }
            assert_eq!(b["type"], "/problems/job-running", "{b}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["ok"], true, "{b}");
        b
    }

    pub async fn issue_key(&self, store: u64) -> String {
        let r = self
            .admin()
            .post(
                &format!("/api/admin/stores/{store}/keys"),
                &json!({"label": "test"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The operators' API of a [`TestApp`]: every request carries an operator's bearer token (the
/// admin token unless made with [`TestApp::operator`]).
#[derive(Clone, Copy)]
pub struct Admin<'a>(&'a TestApp, &'a str);

impl Admin<'_> {
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.0
            .client
            .request(method, format!("{}{path}", self.0.base))
            .bearer_auth(self.1)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A POST without a body (runs, retries).
    pub async fn post_empty(&self, path: &str) -> Response {
        self.request(Method::POST, path).send().await.unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PUT, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }
}

// ---- cleanup ----

impl Drop for TestApp {
    /// Stops the application and removes the test's database and Redis keys, whether the test
    /// passed or is unwinding from a failed assertion.
    fn drop(&mut self) {
        let app = self.app.take();
        let leftovers = self.leftovers.take();
        on_fresh_thread(move |drives| async move {
            if let Some(app) = app {
                stop_app(app, drives).await;
            }
            if let Some(l) = leftovers {
                l.remove().await;
            }
        });
    }
}

/// Removes the leftovers of a start that fails half-way.
struct Remover(Option<Leftovers>);

impl Remover {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl Drop for Remover {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            on_fresh_thread(move |_| l.remove());
        }
    }
}

/// A second instance of the service ([`TestApp::spawn_instance`]); stopped when dropped.
pub struct Instance(Option<Application>);

impl Instance {
    pub fn app(&self) -> &Application {
        self.0.as_ref().expect("instance running")
    }

    /// The instance's application, to stop or restart its consumer.
    pub fn app_mut(&mut self) -> &mut Application {
        self.0.as_mut().expect("instance running")
    }

    /// The instance's base URL (`http://127.0.0.1:<port>`).
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.app().port())
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.0.take() {
            app.stop().await.unwrap();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(app) = self.0.take() {
            on_fresh_thread(move |drives| stop_app(app, drives));
        }
    }
}

/// Stops an application within 30 s. Its tasks run on the test's runtime: when that runtime
/// `drives` them on other threads while the test's thread waits for the cleanup, the application
/// is stopped in order; on a single-threaded runtime (which cannot, and is dropped with its tasks
/// when the test ends) it is dropped, which tells its tasks to end.
async fn stop_app(app: Application, drives: bool) {
    if !drives {
        drop(app);
        return;
    }
    if tokio::time::timeout(Duration::from_secs(30), app.stop())
        .await
        .is_err()
    {
        eprintln!("the application did not stop within 30 s; removing its data anyway");
    }
}

/// Runs `work` to its end on a new thread with a runtime of its own, and waits for it: a `Drop`
/// cannot `.await`, and the test's runtime may be single-threaded or shutting down. `work` is
/// told whether the test's runtime drives its tasks on other threads meanwhile. Never panics.
fn on_fresh_thread<F>(work: impl FnOnce(bool) -> F + Send + 'static)
where
    F: Future<Output = ()>,
{
    let drives = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let thread = std::thread::Builder::new()
        .name("test-cleanup".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(work(drives)),
                Err(e) => eprintln!("cleanup runtime: {e}"),
            }
        });
    match thread {
        Ok(t) => {
            if t.join().is_err() {
                eprintln!("the test's cleanup panicked");
            }
        }
        Err(e) => eprintln!("cleanup thread: {e}"),
    }
}

impl Leftovers {
    /// Drops the database and unlinks the keys, on connections of its own (never the test's
    /// pools, which belong to the test's runtime). Errors are reported, not raised.
    async fn remove(self) {
        use sqlx::Connection;
        let drop_db = async {
            let url = with_database(&self.server_url, "information_schema");
            let mut c = sqlx::MySqlConnection::connect(&url).await?;
            sqlx::query("SET SESSION lock_wait_timeout = 20")
                .execute(&mut c)
                .await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS `{}`", self.db_name))
                .execute(&mut c)
                .await?;
            c.close().await
        };
        match tokio::time::timeout(Duration::from_secs(30), drop_db).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop database {}: {e}", self.db_name),
            Err(_) => eprintln!("dropping database {} took over 30 s", self.db_name),
        }
        let unlink = async {
            let mut c = harness_conn(&self.redis).await?;
            // On a cluster, KEYS asks every master and UNLINK is split by slot.
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query_async(&mut c)
                .await?;
            for chunk in keys.chunks(500) {
                let _: () = redis::cmd("UNLINK").arg(chunk).query_async(&mut c).await?;
            }
            redis::RedisResult::Ok(())
        };
        // A private Redis may be down for good when a test fails: its data goes with it.
        let _ = tokio::time::timeout(Duration::from_secs(10), unlink).await;
    }
}

/// The harness's Redis client: straight to the service's Redis, or to its cluster's seeds.
fn harness_redis(config: &Config) -> sf_persistence::RedisClient {
    let nodes = &config.storage.redis_cluster_nodes;
    if nodes.is_empty() {
        sf_persistence::RedisClient::Single(
            redis::Client::open(direct(config.storage.redis_url.expose())).expect("redis url"),
        )
    } else {
        sf_persistence::RedisClient::Cluster(
            redis::cluster::ClusterClient::new(
                nodes
                    .iter()
                    .map(|n| n.expose().to_owned())
                    .collect::<Vec<_>>(),
            )
            .expect("cluster seeds"),
        )
    }
}

async fn harness_conn(
    client: &sf_persistence::RedisClient,
) -> redis::RedisResult<sf_persistence::RedisConn> {
    Ok(match client {
        sf_persistence::RedisClient::Single(c) => {
            sf_persistence::RedisConn::Plain(c.get_multiplexed_async_connection().await?)
        }
        sf_persistence::RedisClient::Cluster(c) => {
            sf_persistence::RedisConn::Cluster(c.get_async_connection().await?)
        }
    })
}

// ---- waiting and checking ----

/// The problem type of a 409 whose `Idempotency-Key` is still in flight.
pub const KEY_IN_FLIGHT: &str = "/problems/idempotency-key-in-flight";

/// Sends the request `make` builds until its answer is final, as the API asks of a client: a 503
/// (a dependency slow or down: nothing changed, or an outcome the same `Idempotency-Key` tells)
/// or a 409 saying that key is still in flight is followed by the same request again, 50 ms
/// later, for up to 30 s. Answers the final status and body, and how many answers came before.
pub async fn until_final(make: impl Fn() -> RequestBuilder) -> (StatusCode, Value, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut retries = 0;
    loop {
        let (status, body) = json_of(make().send().await.unwrap()).await;
        let again = status == StatusCode::SERVICE_UNAVAILABLE
            || (status == StatusCode::CONFLICT && body["type"] == KEY_IN_FLIGHT);
        if !again || Instant::now() > deadline {
            return (status, body, retries);
        }
        retries += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the consumer caught up and nothing waits for a re-sync.
pub async fn settle(t: &TestApp) {
    t.wait_persisted().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.storage().recovery().drain_resync_queue().await > 0 {
        assert!(Instant::now() < deadline, "stock keys never re-synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn json_of(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(
            ct, "application/problem+json",
            "error body type for {status}: {body}"
        );
    }
    (status, body)
}
