//! Redis down or slow, MySQL slow: the shop and the stores keep selling and nothing hangs. Real
//! MariaDB and Redis, with the fault-injecting proxy in between (or a private Redis that is
//! killed), and real concurrent clients.

use crate::common::proxy::Proxy;
use crate::common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Redis goes away as a dead server does: open connections are cut, new ones refused.
fn redis_down(proxy: &Proxy) {
    proxy.refuse(true);
    proxy.cut_all();
}

/// `GET /health/ready`: status, body, and how long it took.
async fn health(t: &TestApp) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let (s, b) = json_of(t.get("/health/ready").await).await;
    (s, b, started.elapsed())
}

/// Waits until readiness says `what` (its `status` field), answering how long that took.
async fn wait_status(t: &TestApp, what: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (_, b, _) = health(t).await;
        if b["status"] == what {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "readiness never became {what}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls readiness every 20 ms until stopped, keeping the slowest answer.
struct HealthWatch {
    stop: Arc<AtomicBool>,
    slowest: Arc<Mutex<(Duration, Value)>>,
    task: tokio::task::JoinHandle<usize>,
}

impl HealthWatch {
    fn start(t: &TestApp) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let slowest = Arc::new(Mutex::new((Duration::ZERO, Value::Null)));
        let (client, url) = (t.client.clone(), format!("{}/health/ready", t.base));
        let (s, w) = (stop.clone(), slowest.clone());
        let task = tokio::spawn(async move {
            let mut n = 0;
            while !s.load(Ordering::SeqCst) {
                let started = Instant::now();
                let r = client.get(&url).send().await.unwrap();
                let body: Value = r.json().await.unwrap();
                let took = started.elapsed();
                {
                    let mut slowest = w.lock().unwrap();
                    if took > slowest.0 {
                        *slowest = (took, body);
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        });
        Self {
            stop,
            slowest,
            task,
        }
    }

    /// Stops polling; every answer came within 100 ms.
    async fn assert_fast(self) {
        self.stop.store(true, Ordering::SeqCst);
        let n = self.task.await.unwrap();
        let (slowest, body) = self.slowest.lock().unwrap().clone();
        // Polled throughout (every 20 ms): how often depends on how long the phase took.
        assert!(n >= 3, "readiness was polled only {n} times");
        assert!(
            slowest < Duration::from_millis(100),
            "readiness took {slowest:?} once ({body})"
        );
    }
}

fn db_lock_order(p: u64, q: i64) -> Value {
    normal_order(&[(p, q)], 37.4, 127.1)
}

/// Sends `bodies` to `path` all at once; answers each status, body, `Retry-After` header and time.
async fn burst(
    t: &TestApp,
    path: &str,
    key: Option<&str>,
    bodies: Vec<Value>,
) -> Vec<(StatusCode, Value, Option<String>, Duration)> {
    join_all(bodies.into_iter().map(|b| async move {
        let started = Instant::now();
        let mut req = t.client.post(format!("{}{path}", t.base)).json(&b);
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let r = req.send().await.unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let (s, body) = json_of(r).await;
        (s, body, retry, started.elapsed())
    }))
    .await
}

/// Prints the median and slowest answer of a burst (the figures quoted in docs/operations.md).
fn timings(what: &str, rs: &[(StatusCode, Value, Option<String>, Duration)]) {
    let mut d: Vec<Duration> = rs.iter().map(|r| r.3).collect();
    d.sort();
    eprintln!(
        "{what}: {} answers, median {:?}, slowest {:?}",
        d.len(),
        d[d.len() / 2],
        d[d.len() - 1]
    );
}

/// Resident memory of this process (the service runs in it), in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kb / 1024
}

/// `GET /api/admin/stale-keys`: the (location, product) of each key marked stale.
async fn stale_keys(t: &TestApp) -> BTreeSet<(u64, u64)> {
    let (s, b) = json_of(t.admin().get("/api/admin/stale-keys").await).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert!(
                k["markedAt"].as_str().is_some_and(|m| m.ends_with('Z')),
                "{k}"
            );
            (
                k["locationId"].as_u64().unwrap(),
                k["productId"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A Redis outage during mixed DB-lock, POS and Redis-path traffic on a few hot products. The
/// MySQL-first writes succeed throughout, committing on MySQL alone; the Redis path sheds in
/// milliseconds with 503 and Retry-After; store stock reads come from MySQL, marked so;
/// readiness stays fast and says Redis is down. A product the DB-lock path sells out during the
/// outage is still counted by Redis (stale) — after Redis returns, the keys are re-synced before
/// the Redis path decides again, so it refuses that product instead of selling it twice. In the
/// end nothing is rejected or oversold, MySQL equals Redis and the ledger sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_first_writes_sell_through_a_redis_outage_and_nothing_is_sold_twice() {
    let (proxy, t) = behind_redis_proxy(|c| c.jobs_enabled = false).await;
    let wh = t.add_warehouse().await;
    let store = t.add_location("STORE", "S", 37.57, 126.98).await;
    let (a, b, scarce) = (
        t.add_product(1_000).await,
        t.add_product(2_000).await,
        t.add_product(3_000).await,
    );
    for p in [a, b] {
        t.stock_row(wh, p, 100).await;
        t.stock_row(store, p, 30).await;
    }
    t.stock_row(wh, scarce, 6).await;
    let key = t.issue_key(store).await;

    // Healthy: a few orders on each path.
    let before = burst(&t, "/api/redis/orders", None, vec![db_lock_order(a, 1); 5]).await;
    assert!(before.iter().all(|r| r.0 == StatusCode::ACCEPTED));
    assert_eq!(health(&t).await.1["status"], "ready");
    settle(&t).await;
    // Redis holds every key the outage will touch.
    assert_eq!(t.redis_stock(wh, scarce).await, None);
    let (s, _) = json_of(t.get(&format!("/api/redis/products/{scarce}")).await).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.redis_stock(wh, scarce).await, Some(6));

    let watch = HealthWatch::start(&t);
    redis_down(&proxy);
    let outage = Instant::now();
    // The first write to need Redis finds it gone and commits on MySQL alone.
    let first = burst(&t, "/api/orders", None, vec![db_lock_order(a, 1)]).await;
    assert_eq!(first[0].0, StatusCode::CREATED, "{}", first[0].1);
    assert!(first[0].3 < Duration::from_millis(1500), "{:?}", first[0].3);
    let (_, h, _) = health(&t).await;
    assert_eq!(
        (&h["status"], &h["redis"]["status"], &h["redis"]["circuit"]),
        (&json!("degraded"), &json!("down"), &json!("open")),
        "{h}"
    );
    assert_eq!(h["mysql"]["status"], "up");

    // Mixed traffic during the outage, all at once.
    let sales = format!("/api/stores/{store}/orders");
    let mut db_lock: Vec<Value> = (0..24).map(|i| db_lock_order([a, b][i % 2], 1)).collect();
    db_lock.extend((0..8).map(|_| db_lock_order(scarce, 1)));
    let (db_lock, pos, redis) = tokio::join!(
        burst(&t, "/api/orders", None, db_lock),
        burst(&t, &sales, Some(&key), vec![pos_sale(&[(a, 1)]); 12]),
        burst(&t, "/api/redis/orders", None, vec![db_lock_order(a, 1); 40]),
    );
    timings("outage: DB-lock orders", &db_lock);
    timings("outage: POS sales", &pos);
    timings("outage: Redis-path orders (shed)", &redis);
    let created = |rs: &[(StatusCode, Value, Option<String>, Duration)]| {
        rs.iter().filter(|r| r.0 == StatusCode::CREATED).count()
    };
    // 24 + 6 (all of the scarce product) + 12 sales commit; 2 scarce orders find none left.
    assert_eq!(created(&db_lock), 30, "{db_lock:?}");
    assert_eq!(
        db_lock
            .iter()
            .filter(|r| r.0 == StatusCode::CONFLICT && r.1["type"] == "/problems/out-of-stock")
            .count(),
        2
    );
    assert_eq!(created(&pos), 12, "{pos:?}");
    for r in db_lock.iter().chain(&pos) {
        assert!(
            r.3 < Duration::from_secs(2),
            "a MySQL-first write took {:?}",
            r.3
        );
    }
    for r in &redis {
        assert_eq!(r.0, StatusCode::SERVICE_UNAVAILABLE, "{}", r.1);
        assert_eq!(r.1["type"], "/problems/stock-cache-unavailable");
        assert_eq!(r.2.as_deref(), Some("1"));
        // At once: not after the 1 s Redis deadline (the bound leaves room for a loaded 2-core
        // machine running debug code beside 44 MySQL-first writes).
        assert!(
            r.3 < Duration::from_millis(500),
            "the redis path took {:?} to shed",
            r.3
        );
    }
    // Reads come from MySQL, and say so.
    let r = t
        .get(&format!("/api/stores/{store}/products/{a}/stock"))
        .await;
    assert_eq!(r.headers()["stock-source"], "mysql");
    let (s, body) = json_of(r).await;
    assert_eq!((s, body["quantity"].as_i64()), (StatusCode::OK, Some(18)));
    let r = t.get(&format!("/api/redis/products/{scarce}")).await;
    assert_eq!(r.headers()["stock-source"], "mysql");
    // A DB-lock order is cancelled on MySQL alone too.
    let cancelled = db_lock.iter().find(|r| r.0 == StatusCode::CREATED).unwrap();
    let id = cancelled.1["orderId"].as_str().unwrap();
    let (s, body) = json_of(t.patch(&format!("/api/orders/{id}/cancel")).await).await;
    assert_eq!(
        (s, body["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED"))
    );
    // Redis still counts the scarce units the outage sold: it is stale until re-synced.
    assert_eq!(t.available(wh, scarce).await, 0);
    // Operators see which keys wait for it: every key written on MySQL alone.
    let stale = stale_keys(&t).await;
    assert_eq!(
        stale,
        BTreeSet::from([(wh, a), (wh, b), (wh, scarce), (store, a)])
    );

    // Redis returns; the Redis path decides again only after the stale keys are set from MySQL.
    let down_for = outage.elapsed();
    proxy.refuse(false);
    let recovery = wait_status(&t, "ready", Duration::from_secs(5)).await;
    eprintln!("outage {down_for:?}; ready again {recovery:?} after redis returned");
    assert_eq!(t.redis_stock(wh, scarce).await, Some(0));
    assert_eq!(stale_keys(&t).await, BTreeSet::new());
    let after = burst(
        &t,
        "/api/redis/orders",
        None,
        vec![db_lock_order(scarce, 1); 4],
    )
    .await;
    for r in &after {
        assert_eq!(r.0, StatusCode::CONFLICT, "sold twice? {}", r.1);
    }
    let after = burst(&t, "/api/redis/orders", None, vec![db_lock_order(b, 1); 4]).await;
    assert!(after.iter().all(|r| r.0 == StatusCode::ACCEPTED));
    watch.assert_fast().await;

    settle(&t).await;
    assert_eq!(t.count_orders("REJECTED").await, 0);
    // 5 before, 1 + 12 + 12 during (less the cancelled one, of a or b), 4 of b after.
    let a_sold = t.sold(wh, a).await;
    let b_sold = t.sold(wh, b).await;
    assert_eq!(a_sold + b_sold, 5 + 1 + 24 - 1 + 4);
    assert_eq!(t.sold(wh, scarce).await, 6);
    assert_eq!(t.sold(store, a).await, 12);
    assert_eq!(t.available(wh, a).await, 100 - a_sold);
    assert_eq!(t.available(wh, b).await, 100 - b_sold);
    // The store's stock of b was never touched: Redis need not hold it.
    t.assert_converged(InRedis::Keys(&[(wh, a), (wh, b), (wh, scarce), (store, a)]))
        .await;
    // The metrics count the degraded work exactly: 1 + 30 + 12 writes and 1 cancel on MySQL
    // alone, 40 orders shed.
    let metrics = t.get("/metrics").await.text().await.unwrap();
    for line in [
        "stockflow_degraded_total{kind=\"mysql_only_writes\"} 44",
        "stockflow_degraded_total{kind=\"redis_orders_shed\"} 40",
        "stockflow_redis_circuit_state{state=\"closed\"} 1",
        "stockflow_redis_circuit_trips_total 1",
        "stockflow_dependency_up{dependency=\"redis\"} 1",
    ] {
        assert!(metrics.contains(line), "metrics lack {line}");
    }
}

/// Redis dies and comes back empty (a restart without its data). Meanwhile DB-lock orders go on;
/// on its return the loss is detected and recorded as before, the stock reloaded, and the keys
/// written on MySQL alone are set from MySQL; the Redis path then sells exactly what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_back_without_its_data_recovers_in_seconds() {
    let mut redis = PrivateRedis::start();
    let t = TestApp::spawn_with(|c| {
        c.storage.redis_url = redis.url().into();
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let accepted = burst(&t, "/api/redis/orders", None, vec![db_lock_order(p, 1); 3]).await;
    assert!(accepted.iter().all(|r| r.0 == StatusCode::ACCEPTED));
    settle(&t).await;
    wait_status(&t, "ready", Duration::from_secs(5)).await;

    redis.kill();
    let outage = burst(&t, "/api/orders", None, vec![db_lock_order(p, 1); 4]).await;
    assert!(
        outage.iter().all(|r| r.0 == StatusCode::CREATED),
        "{outage:?}"
    );
    let shed = burst(&t, "/api/redis/orders", None, vec![db_lock_order(p, 1); 5]).await;
    assert!(shed.iter().all(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE));
    let (s, h, took) = health(&t).await;
    assert_eq!((s, &h["redis"]["status"]), (StatusCode::OK, &json!("down")));
    assert!(took < Duration::from_millis(100), "{took:?}");

    redis.wipe();
    redis.restart();
    let recovery = wait_status(&t, "ready", Duration::from_secs(5)).await;
    eprintln!("ready {recovery:?} after redis came back empty");
    // The loss is recorded (it is noticed by the check that follows the recovery).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, b) = json_of(t.admin().get("/api/admin/redis-data-losses").await).await;
        assert_eq!(s, StatusCode::OK);
        if b["losses"].as_array().is_some_and(|l| l.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "data loss never recorded: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 10 - 3 - 4 = 3 left: the Redis path sells exactly those.
    let last = burst(&t, "/api/redis/orders", None, vec![db_lock_order(p, 1); 5]).await;
    let took = last.iter().filter(|r| r.0 == StatusCode::ACCEPTED).count();
    assert_eq!(took, 3, "{last:?}");
    settle(&t).await;
    assert_eq!(t.count_orders("REJECTED").await, 0);
    assert_eq!(t.sold(wh, p).await, 10);
    t.assert_converged(InRedis::All).await;
}

/// Slow is a fault too. With 500 ms added to every Redis reply and a 300 ms command deadline,
/// MySQL-first writes end within the deadline and commit on MySQL alone, the Redis path sheds;
/// with 500 ms added to every MySQL reply and a 1 s deadline, DB-lock orders end within their
/// deadlines with 503 and change nothing, while the Redis path, which does not wait for MySQL,
/// goes on. Readiness answers at once throughout, and everything converges afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_redis_and_slow_mysql_end_within_their_deadlines() {
    let mysql = Proxy::start(&host_port(&server_url())).await;
    let (redis, t) = behind_redis_proxy(|c| {
        c.storage.database_url = via(c.storage.database_url.expose(), mysql.port).into();
        c.storage.redis_command_timeout_ms = 300;
        c.storage.db_command_timeout_ms = 1000;
        c.storage.db_connect_timeout_ms = 500;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    let warm = burst(&t, "/api/redis/orders", None, vec![db_lock_order(p, 1); 2]).await;
    assert!(warm.iter().all(|r| r.0 == StatusCode::ACCEPTED));
    settle(&t).await;
    let watch = HealthWatch::start(&t);
    let rss_before = rss_mib();

    // Slow Redis.
    redis.set_latency(Duration::from_millis(500));
    let db_lock = burst(&t, "/api/orders", None, vec![db_lock_order(p, 1); 10]).await;
    for r in &db_lock {
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
        assert!(r.3 < Duration::from_millis(1500), "took {:?}", r.3);
    }
    let shed = burst(&t, "/api/redis/orders", None, vec![db_lock_order(p, 1); 10]).await;
    timings("slow redis: DB-lock orders", &db_lock);
    timings("slow redis: Redis-path orders (shed)", &shed);
    for r in &shed {
        assert_eq!(r.0, StatusCode::SERVICE_UNAVAILABLE, "{}", r.1);
        // Shed without waiting for Redis: well under one Redis command deadline.
        assert!(r.3 < Duration::from_millis(250), "took {:?}", r.3);
    }
    assert_eq!(health(&t).await.1["redis"]["circuit"], "open");
    redis.set_latency(Duration::ZERO);
    wait_status(&t, "ready", Duration::from_secs(5)).await;

    // Slow MySQL.
    mysql.set_latency(Duration::from_millis(500));
    let (db_lock, online) = tokio::join!(
        burst(&t, "/api/orders", None, vec![db_lock_order(p, 1); 30]),
        burst(&t, "/api/redis/orders", None, vec![db_lock_order(p, 1); 10]),
    );
    for r in &db_lock {
        assert_eq!(r.0, StatusCode::SERVICE_UNAVAILABLE, "{}", r.1);
        assert!(r.3 < Duration::from_millis(3500), "took {:?}", r.3);
    }
    for r in &online {
        assert_eq!(r.0, StatusCode::ACCEPTED, "{}", r.1);
        assert!(r.3 < Duration::from_millis(500), "took {:?}", r.3);
    }
    mysql.set_latency(Duration::ZERO);
    timings("slow mysql: DB-lock orders (503)", &db_lock);
    timings("slow mysql: Redis-path orders", &online);
    eprintln!(
        "resident memory {rss_before} MiB before the slow phases, {} MiB after",
        rss_mib()
    );
    watch.assert_fast().await;

    settle(&t).await;
    assert_eq!(t.count_orders("REJECTED").await, 0);
    // 2 + 10 online, 10 on MySQL alone while Redis was slow; none while MySQL was.
    assert_eq!(t.sold(wh, p).await, 22);
    t.assert_converged(InRedis::All).await;
}

/// Two instances on one Redis. The second lost its Redis connections for a moment: its circuit
/// opened, and it will not probe again for a minute, although Redis answers it again. Meanwhile
/// the first sells the same product through Redis. The second's DB-lock orders still change
/// Redis (only a write that cannot reach Redis commits on MySQL alone), so the first never sells
/// a unit they took: every order answered 202 is CONFIRMED, none is REJECTED, and the units sold
/// are exactly the stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_lock_orders_on_an_instance_whose_circuit_is_open_still_reach_redis_for_the_others() {
    // No background re-sync of stale keys: only the writes themselves can keep Redis exact.
    let t = TestApp::spawn_with(|c| {
        c.jobs_enabled = false;
        c.health_check_ms = 600_000;
    })
    .await;
    let wh = t.add_warehouse().await;
    let (scarce, other) = (t.add_product(1_000).await, t.add_product(2_000).await);
    t.stock_row(wh, scarce, 40).await;
    t.stock_row(wh, other, 1_000).await;
    // Started after the fixtures: it loads the locations and products at start-up.
    let proxy = Proxy::start(&host_port(&redis_url())).await;
    let second = t
        .spawn_instance(|c| {
            c.storage.redis_url = via(c.storage.redis_url.expose(), proxy.port).into();
            c.storage.outage_probe_ms = 60_000;
            c.health_check_ms = 600_000;
        })
        .await;
    let second_base = format!("http://127.0.0.1:{}", second.app().port());
    let on_second = |body: Value| {
        let (client, url) = (t.client.clone(), format!("{second_base}/api/orders"));
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            json_of(r).await
        }
    };
    let mysql_only = || async {
        let text = t
            .client
            .get(format!("{second_base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric(
            &text,
            "stockflow_degraded_total{kind=\"mysql_only_writes\"}",
        )
        .unwrap_or(0)
    };
    // The second instance's Redis circuit, as its readiness reports it.
    let second_circuit = || async {
        let r = t
            .client
            .get(format!("{second_base}/health/ready"))
            .send()
            .await
            .unwrap();
        let (_, h) = json_of(r).await;
        h["redis"]["circuit"].as_str().unwrap().to_owned()
    };
    // Both keys in Redis, through the first instance.
    for p in [scarce, other] {
        let (s, _) = json_of(t.get(&format!("/api/redis/products/{p}")).await).await;
        assert_eq!(s, StatusCode::OK);
    }

    // The second instance's connections are cut: its next write opens its circuit.
    redis_down(&proxy);
    let (s, b) = on_second(db_lock_order(other, 1)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(mysql_only().await, 1);
    proxy.refuse(false);
    // Its connections come back on their own; until then a write may still go to MySQL alone
    // (given 5 s at most: the burst below shows what follows when none reaches Redis).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let before = mysql_only().await;
        let (s, b) = on_second(db_lock_order(other, 1)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        if mysql_only().await == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What it wrote on MySQL alone is set from MySQL (as its own recovery or the first
    // instance's check would do); from here on, nothing may go to MySQL alone.
    t.storage().recovery().resync_stale_keys().await.unwrap();
    let writes_on_mysql_alone = mysql_only().await;
    assert_eq!(second_circuit().await, "open");

    // 30 DB-lock orders on the second instance and 30 Redis-path orders on the first, at once,
    // for 40 units.
    let db_lock = join_all((0..30).map(|_| on_second(db_lock_order(scarce, 1))));
    let redis = burst(
        &t,
        "/api/redis/orders",
        None,
        vec![db_lock_order(scarce, 1); 30],
    );
    let (db_lock, redis) = tokio::join!(db_lock, redis);
    assert_eq!(second_circuit().await, "open");
    let created = db_lock
        .iter()
        .filter(|r| r.0 == StatusCode::CREATED)
        .count();
    let accepted: Vec<&str> = redis
        .iter()
        .filter(|r| r.0 == StatusCode::ACCEPTED)
        .map(|r| r.1["orderId"].as_str().unwrap())
        .collect();
    for (s, b) in &db_lock {
        assert!(
            *s == StatusCode::CREATED
                || (*s == StatusCode::CONFLICT && b["type"] == "/problems/out-of-stock"),
            "{s} {b}"
        );
    }
    for r in &redis {
        assert!(
            r.0 == StatusCode::ACCEPTED
                || (r.0 == StatusCode::CONFLICT && r.1["type"] == "/problems/out-of-stock"),
            "{} {}",
            r.0,
            r.1
        );
    }
    assert_eq!(created + accepted.len(), 40, "every unit sold exactly once");

    settle(&t).await;
    assert_eq!(t.count_orders("REJECTED").await, 0);
    for id in &accepted {
        assert_eq!(t.order_status(id).await, "CONFIRMED", "{id}");
    }
    assert_eq!(t.sold(wh, scarce).await, 40);
    assert_eq!(t.available(wh, scarce).await, 0);
    assert_eq!(t.redis_stock(wh, scarce).await, Some(0));
    // None of the burst's writes went to MySQL alone.
    assert_eq!(mysql_only().await, writes_on_mysql_alone);
    drop(second);
}
