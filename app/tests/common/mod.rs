//! Test harness: every test gets its own MariaDB database and its own Redis key prefix on the
//! servers named by `DATABASE_URL` / `REDIS_URL` (default: the standard local ports), and starts
//! the real application on port 0.
#![allow(dead_code)]

use rand::Rng;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sf_persistence::redis_stock::Keys;
use sf_routing::{LocationId, ProductId};
use sqlx::Row;
use std::time::{Duration, Instant};
use stock_flow::{Application, Config};

pub mod proxy;

pub const ADMIN: &str = "test-admin-token";

pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// `mysql://user@host:port/anything` with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub struct TestApp {
    pub app: Option<Application>,
    pub base: String,
    pub client: Client,
    pub db_name: String,
    pub database_url: String,
    pub redis_url: String,
    pub prefix: String,
    pub config: Config,
}

pub fn test_config() -> (Config, String, String) {
    let tag: u64 = rand::thread_rng().gen();
    let db_name = format!("sft_{tag:016x}");
    let prefix = format!("t{tag:016x}:");
    let mut config = Config::from_env();
    config.storage.database_url = with_database(&server_url(), &db_name);
    config.storage.redis_url = redis_url();
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
    (config, db_name, prefix)
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
        let app = Application::build(config.clone())
            .await
            .expect("app starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        Self {
            app: Some(app),
            base,
            client: Client::builder()
                .pool_max_idle_per_host(256)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            db_name,
            database_url: config.storage.database_url.clone(),
            redis_url: config.storage.redis_url.clone(),
            prefix,
            config,
        }
    }

    pub fn app(&mut self) -> &mut Application {
        self.app.as_mut().expect("app running")
    }

    pub fn storage(&self) -> &sf_persistence::Storage {
        &self.app.as_ref().expect("app running").storage
    }

    pub fn keys(&self) -> Keys {
        Keys::new(self.prefix.clone())
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
        .execute(&self.storage().db)
        .await
        .unwrap()
        .last_insert_id();
        self.storage().refresh_locations().await.unwrap();
        id
    }

    pub async fn add_product(&self, price: i64) -> u64 {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
            .fetch_one(&self.storage().db)
            .await
            .unwrap();
        let id = sqlx::query("INSERT INTO products (sku, name, price) VALUES (?, ?, ?)")
            .bind(format!("T-{}", n + 1))
            .bind(format!("Test product {}", n + 1))
            .bind(price)
            .execute(&self.storage().db)
            .await
            .unwrap()
            .last_insert_id();
        self.storage().refresh_catalog().await.unwrap();
        id
    }

    /// Initial stock of a (location, product): before any order touches it.
    pub async fn stock_row(&self, loc: u64, product: u64, qty: i64) {
        sqlx::query("INSERT INTO stock (location_id, product_id, on_hand, initial_quantity) VALUES (?, ?, ?, ?)")
            .bind(loc)
            .bind(product)
            .bind(qty)
            .bind(qty)
            .execute(&self.storage().db)
            .await
            .unwrap();
    }

    pub async fn on_hand(&self, loc: u64, product: u64) -> i64 {
        sqlx::query_scalar("SELECT on_hand FROM stock WHERE location_id = ? AND product_id = ?")
            .bind(loc)
            .bind(product)
            .fetch_one(&self.storage().db)
            .await
            .unwrap()
    }

    pub async fn ledger_sum(&self, loc: u64, product: u64) -> i64 {
        sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(delta), 0) AS SIGNED) FROM stock_movements \
             WHERE location_id = ? AND product_id = ?",
        )
        .bind(loc)
        .bind(product)
        .fetch_one(&self.storage().db)
        .await
        .unwrap()
    }

    pub async fn redis_stock(&self, loc: u64, product: u64) -> Option<i64> {
        let mut c = self.storage().conn().await.unwrap();
        redis::cmd("GET")
            .arg(self.keys().stock(
                LocationId::new_unchecked(loc),
                ProductId::new_unchecked(product),
            ))
            .query_async(&mut c)
            .await
            .unwrap()
    }

    pub async fn count_orders(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = ?")
            .bind(status)
            .fetch_one(&self.storage().db)
            .await
            .unwrap()
    }

    /// Like [`TestApp::count_orders`], on a connection of its own straight to the server (not
    /// through the service's pool, which may point at a proxy).
    pub async fn count_orders_direct(&self, status: &str) -> i64 {
        use sqlx::Connection;
        let url = with_database(&server_url(), &self.db_name);
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = ?")
            .bind(status)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }

    /// Waits until every Redis event is persisted and acknowledged.
    pub async fn wait_persisted(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (n, _) = sf_persistence::consumer::backlog(self.storage())
                .await
                .unwrap();
            if n == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "consumer did not catch up: {n} events left"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// I4: for every stock row, Redis (when loaded) equals MySQL, and on-hand equals initial stock
    /// plus the ledger. Answers the number of rows checked.
    pub async fn assert_converged(&self) -> usize {
        let rows = sqlx::query(
            "SELECT s.location_id, s.product_id, s.on_hand, s.initial_quantity, \
             CAST(COALESCE((SELECT SUM(m.delta) FROM stock_movements m WHERE m.location_id = s.location_id AND m.product_id = s.product_id), 0) AS SIGNED) AS ledger \
             FROM stock s",
        )
        .fetch_all(&self.storage().db)
        .await
        .unwrap();
        for r in &rows {
            let loc: u64 = r.get("location_id");
            let p: u64 = r.get("product_id");
            let on_hand: i64 = r.get("on_hand");
            let initial: i64 = r.get("initial_quantity");
            let ledger: i64 = r.get("ledger");
            assert_eq!(on_hand, initial + ledger, "ledger of ({loc},{p})");
            if let Some(v) = self.redis_stock(loc, p).await {
                assert_eq!(v, on_hand, "redis vs mysql for ({loc},{p})");
            }
        }
        rows.len()
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

    pub async fn get_admin(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{}", self.base, path))
            .bearer_auth(ADMIN)
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

    pub async fn admin_set_stock(&self, loc: u64, product: u64, qty: i64) -> Response {
        self.client
            .put(format!(
                "{}/api/admin/locations/{loc}/products/{product}/stock",
                self.base
            ))
            .bearer_auth(ADMIN)
            .json(&json!({"quantity": qty, "reason": "RESTOCK"}))
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_adjust(&self, loc: u64, product: u64, delta: i64) -> Response {
        self.client
            .post(format!(
                "{}/api/admin/locations/{loc}/products/{product}/stock/adjustments",
                self.base
            ))
            .bearer_auth(ADMIN)
            .json(&json!({"delta": delta, "reason": "ADJUST"}))
            .send()
            .await
            .unwrap()
    }

    pub async fn issue_key(&self, store: u64) -> String {
        let r = self
            .client
            .post(format!("{}/api/admin/stores/{store}/keys", self.base))
            .bearer_auth(ADMIN)
            .json(&json!({"label": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Stops the app and removes the test's database and Redis keys.
    pub async fn cleanup(mut self) {
        if let Some(app) = self.app.take() {
            let db = app.storage.db.clone();
            let redis = app.storage.redis_client.clone();
            app.stop().await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{}`", self.db_name))
                .execute(&db)
                .await;
            let conn = redis.get_multiplexed_async_connection().await;
            if let Ok(mut c) = conn {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}*", self.prefix))
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                for chunk in keys.chunks(500) {
                    let _: redis::RedisResult<()> =
                        redis::cmd("UNLINK").arg(chunk).query_async(&mut c).await;
                }
            }
        }
    }
}

/// `host:port` of a `scheme://user@host:port/...` URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap().to_owned()
}

/// The same URL through the proxy on `port`.
pub fn via(url: &str, port: u16) -> String {
    url.replacen(&host_port(url), &format!("127.0.0.1:{port}"), 1)
}

/// Waits until the consumer caught up and nothing waits for a re-sync.
pub async fn settle(t: &TestApp) {
    t.wait_persisted().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.storage().drain_resync_queue().await > 0 {
        assert!(Instant::now() < deadline, "stock keys never re-synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every stock row: Redis holds a value and it equals MySQL; MySQL equals initial stock plus the
/// ledger.
pub async fn assert_all_converged(t: &TestApp, keys: &[(u64, u64)]) {
    for (l, p) in keys {
        let on_hand = t.on_hand(*l, *p).await;
        assert_eq!(
            t.redis_stock(*l, *p).await,
            Some(on_hand),
            "redis vs mysql for ({l},{p})"
        );
    }
    assert!(t.assert_converged().await >= keys.len());
}

/// An order body for the online paths.
pub fn normal_order(items: &[(u64, i64)], lat: f64, lon: f64) -> Value {
    json!({
        "items": items.iter().map(|(p, q)| json!({"productId": p, "quantity": q})).collect::<Vec<_>>(),
        "deliveryType": "NORMAL",
        "deliveryAddress": {"latitude": lat, "longitude": lon},
    })
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

/// Seoul City Hall: the default delivery address of the tests.
pub const SEOUL: (f64, f64) = (37.5665, 126.9780);

/// A private `redis-server` (append-only, `appendfsync always`) on a free loopback port, for tests
/// that kill Redis. Killed and its folder removed on drop.
pub struct PrivateRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sf-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Self {
            port,
            dir,
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port and folder (it replays its append-only file).
    pub fn restart(&mut self) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = std::process::Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir.to_str().unwrap(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts (set REDIS_SERVER_BIN)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .map(|n| &buf[..n] == b"+PONG\r\n")
                        .unwrap_or(false)
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes the data files of a killed server, so that it restarts empty.
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "wipe a killed server");
        std::fs::remove_dir_all(&self.dir).unwrap();
        std::fs::create_dir_all(&self.dir).unwrap();
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
