//! Faults are part of the spec: the Redis path and the MySQL-first writes under lost replies, cut
//! connections, Redis losing its data, a consumer outage with large orders, and bad events. Real
//! MariaDB and Redis, with a fault-injecting TCP proxy in between where a reply must be lost.

use crate::common::proxy::Proxy;
use crate::common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The service with its MySQL connections through a fault proxy.
async fn behind_mysql_proxy(tweak: impl FnOnce(&mut stock_flow::Config)) -> (Proxy, TestApp) {
    let proxy = Proxy::start(&host_port(&server_url())).await;
    let t = TestApp::spawn_with(|c| {
        c.storage.database_url = via(c.storage.database_url.expose(), proxy.port).into();
        tweak(c);
    })
    .await;
    (proxy, t)
}

/// Sends `n` Redis-path orders at once; each must be accepted. Answers their ids.
async fn place_many(t: &TestApp, body: &Value, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for r in join_all((0..n).map(|_| t.post("/api/redis/orders", body))).await {
        let (s, b) = json_of(r).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        ids.push(b["orderId"].as_str().unwrap().to_owned());
    }
    ids
}

/// Waits until the proxy has lost `n` replies.
async fn lost_replies(proxy: &Proxy, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while proxy.lost_replies() < n {
        assert!(
            Instant::now() < deadline,
            "no reply was lost: the request never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every order of `ids` is CONFIRMED.
async fn assert_confirmed(t: &TestApp, ids: &[String]) {
    for id in ids {
        assert_eq!(t.order_state(id).await, "CONFIRMED", "{id}");
    }
}

/// I2 nothing lost, with large orders: 300 orders of 50 lines each are accepted while no consumer
/// runs; once one starts, every one of them is CONFIRMED, no statement exceeds the server's
/// placeholder limit, and stock, ledger and Redis agree.
/// A `BEGIN` given up halfway (slow to reach the server, its caller's deadline gone) leaves its pooled
/// connection outside any transaction, so the next user's plain statements commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_begin_given_up_halfway_leaves_no_transaction_open() {
    use sf_persistence::infra::mysql;
    let proxy = Proxy::start(&host_port(&server_url())).await;
    let url = via(&with_database(&server_url(), "mysql"), proxy.port);
    let second = Duration::from_secs(1);
    // One connection, so every step below uses the same one.
    let pool = mysql::connect(&url, 1, 5 * second, 3 * second, 10 * second)
        .await
        .unwrap();
    for round in 0..5 {
        proxy.slow_down(Some((b"BEGIN", Duration::from_millis(200))));
        let given_up = tokio::time::timeout(Duration::from_millis(50), mysql::begin(&pool)).await;
        assert!(
            given_up.is_err(),
            "round {round}: BEGIN answered in 50 ms though held 200"
        );
        proxy.slow_down(None);
        let mut conn = pool.acquire().await.unwrap();
        let open: u64 = sqlx::query_scalar("SELECT @@in_transaction")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            open, 0,
            "round {round}: the pooled connection is inside a transaction"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_outage_with_fifty_line_orders_recovers() {
    let mut t = TestApp::spawn_with(|c| c.consumer_enabled = false).await;
    let (wh, ps) = t.warehouse_with(50, 1_000).await;
    let items: Vec<(u64, i64)> = ps.iter().map(|p| (*p, 1)).collect();
    let body = normal_order(&items, SEOUL.0, SEOUL.1);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.extend(place_many(&t, &body, 50).await);
    }
    assert_eq!(ids.len(), 300);
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.count_orders("CONFIRMED").await, 300);
    for p in &ps {
        assert_eq!(t.available(wh, *p).await, 700);
        assert_eq!(t.ledger_sum(wh, *p).await, -300);
    }
    assert_eq!(t.order_state(&ids[0]).await, "CONFIRMED");
    assert_eq!(t.order_state(&ids[299]).await, "CONFIRMED");
    t.assert_converged(InRedis::All).await;
}

/// One bad event blocks nothing: events that cannot be read, that carry another order than they
/// name, or that are of an unknown kind sit between good orders in the same batch. The good
/// orders are all CONFIRMED, the bad events go to the dead-letter stream (unknown kinds are
/// acknowledged without effect), and the stream is empty afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_is_dead_lettered_and_the_rest_flows() {
    let mut t = TestApp::spawn_with(|c| c.consumer_enabled = false).await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let mut good = Vec::new();
    for _ in 0..5 {
        good.push(t.place_redis(&body).await);
    }
    let stream = t.keys().stream(sf_routing::LocationId::new_unchecked(wh));
    let mut c = t.redis().await;
    let other: Value = {
        let (_, b) = json_of(t.get(&format!("/api/orders/{}", good[0])).await).await;
        b
    };
    // Unreadable JSON; an order that is not the one the event names; missing fields; an unknown
    // kind.
    let poison: Vec<Vec<(&str, String)>> = vec![
        vec![
            ("t", "R".into()),
            ("o", format!("{wh}-bad1")),
            ("l", format!("{p}:1")),
            ("j", "{not json".into()),
        ],
        vec![
            ("t", "R".into()),
            ("o", format!("{wh}-bad2")),
            ("l", format!("{p}:1")),
            ("j", other.to_string()),
        ],
        vec![("t", "R".into()), ("o", format!("{wh}-bad3"))],
        vec![
            ("t", "Z".into()),
            ("o", format!("{wh}-bad4")),
            ("l", format!("{p}:1")),
        ],
    ];
    for fields in &poison {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(v);
        }
        let _: String = cmd.query_async(&mut c).await.unwrap();
    }
    for _ in 0..5 {
        good.push(t.place_redis(&body).await);
    }
    t.app().start_consumer();
    settle(&t).await;
    assert_confirmed(&t, &good).await;
    assert_eq!(t.count_orders("CONFIRMED").await, 10);
    let dead: i64 = redis::cmd("XLEN")
        .arg(
            t.keys()
                .dead_letters(sf_routing::LocationId::new_unchecked(wh)),
        )
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        dead, 3,
        "three events dead-lettered (the unknown kind is not)"
    );
    // Operators read them with their errors, the latest first.
    let (s, listed) = json_of(t.admin().get("/api/admin/dead-letters").await).await;
    assert_eq!(s, StatusCode::OK, "{listed}");
    let listed = listed["deadLetters"].as_array().unwrap().clone();
    let orders: BTreeSet<&str> = listed
        .iter()
        .map(|d| d["orderId"].as_str().unwrap_or_else(|| panic!("{d}")))
        .collect();
    let expected: Vec<String> = (1..=3).map(|i| format!("{wh}-bad{i}")).collect();
    assert_eq!(orders, expected.iter().map(String::as_str).collect());
    let ids: Vec<&str> = listed.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let mut latest_first = ids.clone();
    latest_first.sort_by_key(|id| {
        let (loc, id) = id.split_once(':').unwrap();
        assert_eq!(loc, wh.to_string());
        let (ms, seq) = id.split_once('-').unwrap();
        std::cmp::Reverse((ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap()))
    });
    assert_eq!(ids, latest_first);
    for d in &listed {
        assert_eq!(d["locationId"], wh, "{d}");
        assert_eq!(d["kind"], "R", "{d}");
        assert!(
            d["error"].as_str().is_some_and(|e| !e.is_empty()) && d["eventId"].is_string(),
            "{d}"
        );
    }
    let bad1 = listed
        .iter()
        .find(|d| d["orderId"] == format!("{wh}-bad1"))
        .unwrap();
    assert!(
        bad1["error"]
            .as_str()
            .unwrap()
            .contains("unreadable order record"),
        "{bad1}"
    );
    // Its order was never persisted: there is nothing to replay, and it stays listed.
    let replay = format!(
        "/api/admin/dead-letters/{}/replay",
        bad1["id"].as_str().unwrap()
    );
    let (s, b) = json_of(t.admin().post_empty(&replay).await).await;
    assert_eq!(
        (s, b["type"].as_str()),
        (StatusCode::CONFLICT, Some("/problems/conflict")),
        "{b}"
    );
    let (_, again) = json_of(t.admin().get("/api/admin/dead-letters").await).await;
    assert_eq!(again["deadLetters"].as_array().unwrap().len(), 3);
    let left: i64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let metrics = t.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("stockflow_consumer_events_total{outcome=\"dead_letter\"} 3"),
        "dead letters counted in /metrics"
    );
    // The three still wait in the dead-letter stream: the figure every instance exports.
    t.wait_for_metrics(&["stockflow_cluster_dead_letters 3"])
        .await;
    assert_eq!(t.available(wh, p).await, 90);
    t.assert_converged(InRedis::All).await;
}

/// A reservation dead-lettered (its event names another location: it cannot be persisted as it
/// is) leaves its order `REJECTED` and its units free. After the fix — here: the units are still
/// there — an operator replays it: the order is taken as sold once, the entry leaves the list, and
/// a second replay finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_dead_letter_sells_its_order_once() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let id = t
        .place_redis(&normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
        .await;
    t.misdirect_reservation(wh, &id).await;
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.order_status(&id).await, "REJECTED");
    assert_eq!(t.available(wh, p).await, 10);

    let (_, listed) = json_of(t.admin().get("/api/admin/dead-letters").await).await;
    let dead = listed["deadLetters"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{listed}");
    assert_eq!(
        (&dead[0]["orderId"], &dead[0]["kind"]),
        (&json!(id), &json!("R"))
    );
    let replay = format!(
        "/api/admin/dead-letters/{}/replay",
        dead[0]["id"].as_str().unwrap()
    );
    let (s, order) = json_of(t.admin().post_empty(&replay).await).await;
    assert_eq!(s, StatusCode::OK, "{order}");
    assert_eq!(
        (&order["orderId"], &order["status"]),
        (&json!(id), &json!("CONFIRMED"))
    );
    assert_eq!(t.stock_states(wh, p).await, (8, 2, 10));
    let (_, listed) = json_of(t.admin().get("/api/admin/dead-letters").await).await;
    assert_eq!(listed["deadLetters"], json!([]));
    let (s, b) = json_of(t.admin().post_empty(&replay).await).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(t.stock_states(wh, p).await, (8, 2, 10));
    t.assert_ledger_identities().await;
    t.assert_converged(InRedis::All).await;
}

/// The service with its Redis connections through a fault proxy, a warehouse with 10 units of a
/// product, a body ordering 2 of them, and the reservation script's SHA. A first order has
/// loaded the script and the key, so a reply lost next is the reservation's own.
async fn reservation_behind_redis_proxy() -> (Proxy, TestApp, (u64, u64), Value, String) {
    let (proxy, t) = behind_redis_proxy(|_| {}).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let body = normal_order(&[(p, 2)], SEOUL.0, SEOUL.1);
    t.place_redis(&body).await;
    let sha = redis::Script::new(sf_persistence::scripts::reserve::SOURCE)
        .get_hash()
        .to_owned();
    (proxy, t, (wh, p), body, sha)
}

/// A lost reply without an `Idempotency-Key`: Redis took the order, the client cannot know it. The
/// 503 says the outcome is unknown and names the order (`/problems/order-outcome-unknown` with
/// its `orderId`), never "nothing was changed"; looked up, the order is the one placed, and it
/// ends CONFIRMED with its units taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_reply_to_a_reservation_without_a_key_names_the_order() {
    let (proxy, t, (wh, p), body, sha) = reservation_behind_redis_proxy().await;
    proxy.lose_reply_to(sha.as_bytes(), 1);
    let (s, b) = json_of(t.post("/api/redis/orders", &body).await).await;
    assert_eq!(proxy.lost_replies(), 1);
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["type"], "/problems/order-outcome-unknown", "{b}");
    let id = b["orderId"]
        .as_str()
        .expect("the problem names the order")
        .to_owned();
    assert!(b["detail"].as_str().unwrap().contains(&id), "{b}");
    settle(&t).await;
    assert_eq!(t.order_state(&id).await, "CONFIRMED");
    assert_eq!(t.count_orders("CONFIRMED").await, 2);
    assert_eq!(t.available(wh, p).await, 6);
    assert_eq!(t.ledger_sum(wh, p).await, -4);
    t.assert_converged(InRedis::All).await;
}

/// I5 under a lost reply: the reply to the reservation script is lost after Redis ran it; the
/// client retries with the same Idempotency-Key (after the `Retry-After` of the 503s it gets while
/// the Redis circuit recovers from the cut connection) and gets the order the first attempt
/// placed, not a second one. Then the answer-storing write loses its reply: the retry still gets
/// that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_reply_to_the_reservation_then_a_retry_with_the_same_key() {
    let (proxy, t, (wh, p), body, sha) = reservation_behind_redis_proxy().await;

    let send = |key: &'static str| {
        t.client
            .post(format!("{}/api/redis/orders", t.base))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    // A client that honours Retry-After.
    let retrying = |key: &'static str| async move {
        for _ in 0..5 {
            let r = send(key).await.unwrap();
            if r.status() != StatusCode::SERVICE_UNAVAILABLE {
                return r;
            }
            let after: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            tokio::time::sleep(Duration::from_secs(after)).await;
        }
        panic!("still unavailable after 5 tries");
    };
    proxy.lose_reply_to(sha.as_bytes(), 1);
    let (s, b) = json_of(send("lost-reply-1").await.unwrap()).await;
    assert_eq!(proxy.lost_replies(), 1);
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    let (s, first) = json_of(retrying("lost-reply-1").await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let (s, again) = json_of(send("lost-reply-1").await.unwrap()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(first["orderId"], again["orderId"]);

    // The reply to storing the answer is lost: the client got its 202; a retry replays it.
    proxy.lose_reply_to(b"KEEPTTL", 1);
    let (s, placed) = json_of(send("lost-reply-2").await.unwrap()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{placed}");
    assert_eq!(proxy.lost_replies(), 2);
    let (s, replay) = json_of(retrying("lost-reply-2").await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{replay}");
    assert_eq!(placed["orderId"], replay["orderId"]);

    settle(&t).await;
    // The warm-up order, one order per key: 3 orders of 2 units.
    assert_eq!(t.count_orders("CONFIRMED").await, 3);
    assert_eq!(t.available(wh, p).await, 4);
    assert_eq!(t.ledger_sum(wh, p).await, -6);
    assert_eq!(
        t.order_state(first["orderId"].as_str().unwrap()).await,
        "CONFIRMED"
    );
    t.assert_converged(InRedis::All).await;
}

/// A MySQL `COMMIT` command packet (length 7, sequence 0, COM_QUERY): matching the whole packet
/// keeps other statements that mention it (`... READ COMMITTED`) from firing the proxy.
const COMMIT: &[u8] = b"\x07\x00\x00\x00\x03COMMIT";

/// A lost COMMIT acknowledgement on every MySQL-first write: DB-lock order, POS sale, cancel, POS
/// return, stock set and adjustment. MySQL commits, the service never hears it. Each time Redis
/// ends equal to MySQL (nothing blindly compensated), a retry with the same Idempotency-Key gets
/// the committed order, a repeated cancel restores nothing twice, and the ledger sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_commit_acknowledgement_on_each_mysql_first_write() {
    let (proxy, t) = behind_mysql_proxy(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let StockedStore {
        store,
        products,
        key,
    } = t.store_with(1, 50).await;
    let p = products[0];
    let check = |expect: i64| {
        let t = &t;
        async move {
            assert_eq!(t.available(store, p).await, expect);
            assert_eq!(
                t.redis_stock(store, p).await,
                Some(expect),
                "redis after recovery"
            );
            assert_eq!(t.ledger_sum(store, p).await, expect - 50);
        }
    };
    // Loads the key into Redis.
    let (s, _) = json_of(
        t.get(&format!("/api/stores/{store}/products/{p}/stock"))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // DB-lock order (PICKUP at the store), with an Idempotency-Key.
    let order = pickup_order(&[(p, 3)], store);
    let send = || {
        t.client
            .post(format!("{}/api/orders", t.base))
            .header("Idempotency-Key", "commit-lost")
            .json(&order)
            .send()
    };
    proxy.lose_reply_to(COMMIT, 1);
    let (s, b) = json_of(send().await.unwrap()).await;
    assert!(s.is_server_error(), "{s} {b}");
    assert_eq!(proxy.lost_replies(), 1);
    check(47).await;
    let (s, placed) = json_of(send().await.unwrap()).await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let online = placed["orderId"].as_str().unwrap().to_owned();
    check(47).await;

    // POS sale.
    let sale = pos_sale(&[(p, 2)]);
    proxy.lose_reply_to(COMMIT, 1);
    let (s, _) = json_of(
        t.post_with_key(&format!("/api/stores/{store}/orders"), &key, &sale)
            .await,
    )
    .await;
    assert!(s.is_server_error());
    check(45).await;
    let pos: String = sqlx::query_scalar("SELECT id FROM orders WHERE path = 'POS'")
        .fetch_one(&t.db)
        .await
        .unwrap();

    // Cancel of the online order: units come back once, however often it is sent.
    proxy.lose_reply_to(COMMIT, 1);
    let (s, _) = json_of(t.patch(&format!("/api/orders/{online}/cancel")).await).await;
    assert!(s.is_server_error());
    check(48).await;
    let (s, b) = json_of(t.patch(&format!("/api/orders/{online}/cancel")).await).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED"))
    );
    check(48).await;

    // POS return.
    proxy.lose_reply_to(COMMIT, 1);
    let r = t
        .client
        .patch(format!("{}/api/stores/{store}/orders/{pos}/cancel", t.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error());
    check(50).await;

    // Operators: set and adjust.
    proxy.lose_reply_to(COMMIT, 1);
    assert!(t
        .admin_set_stock(store, p, 80)
        .await
        .status()
        .is_server_error());
    check(80).await;
    proxy.lose_reply_to(COMMIT, 1);
    assert!(t
        .admin_adjust(store, p, -5)
        .await
        .status()
        .is_server_error());
    check(75).await;
    assert_eq!(proxy.lost_replies(), 6);
}

/// I1 and I2 when Redis loses its data mid-sale: 64 clients race for the last units of one
/// product while the (private) Redis is flushed. MySQL never sells more than it has; every order
/// answered 202 ends CONFIRMED or REJECTED, or is reported lost with Redis's data; afterwards
/// Redis equals MySQL and the ledger sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_loses_its_data_while_clients_race_for_the_last_units() {
    let losses = race_through_flushes(1_500, &[600]).await;
    // Operators see the loss, once, however often it was noticed.
    assert_eq!(losses.len(), 1, "{losses:?}");
}

/// The same, with Redis flushed nine times, some of them a few orders apart: a data set loaded
/// and lost between two of the service's checks is noticed too, so an order accepted into it and
/// lost is reported lost (410), never unknown (404).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_loses_its_data_again_and_again_while_clients_race() {
    let losses =
        race_through_flushes(2_000, &[100, 130, 160, 400, 420, 700, 1000, 1010, 1300]).await;
    assert!(!losses.is_empty());
}

/// 64 clients buy one unit at a time until the product is sold out, while Redis is flushed
/// before the orders numbered in `flush_at`. Checks every invariant; answers the data losses
/// operators see.
async fn race_through_flushes(units: i64, flush_at: &[usize]) -> Vec<Value> {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let t = TestApp::spawn_with(|c| {
        c.storage.redis_url = url.clone().into();
        c.health_check_ms = 100;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, units).await;
    let flush_at: Arc<HashSet<usize>> = Arc::new(flush_at.iter().copied().collect());
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    // Orders answered 202, and orders whose outcome the answer said was unknown.
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let unknown = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sold_out = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flushes = Arc::new(AtomicUsize::new(0));
    let per_client = (units as usize * 3 / 64).max(60);
    let clients = (0..64).map(|_| {
        let (flush_at, accepted, unknown, sold_out, sent, flushes) = (
            flush_at.clone(),
            accepted.clone(),
            unknown.clone(),
            sold_out.clone(),
            sent.clone(),
            flushes.clone(),
        );
        let (client, base, body, url) =
            (t.client.clone(), t.base.clone(), body.clone(), url.clone());
        async move {
            // Bounded: at most `per_client` orders per client.
            for _ in 0..per_client {
                if sold_out.load(Ordering::SeqCst) {
                    return;
                }
                let n = sent.fetch_add(1, Ordering::SeqCst);
                if flush_at.contains(&n) {
                    let c = redis::Client::open(url.as_str()).unwrap();
                    let mut c = c.get_multiplexed_async_connection().await.unwrap();
                    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
                    flushes.fetch_add(1, Ordering::SeqCst);
                }
                let r = client
                    .post(format!("{base}/api/redis/orders"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let b: Value = r.json().await.unwrap_or(Value::Null);
                match (status, b["type"].as_str()) {
                    (StatusCode::ACCEPTED, _) => accepted
                        .lock()
                        .unwrap()
                        .push(b["orderId"].as_str().unwrap().to_owned()),
                    (StatusCode::CONFLICT, _) => sold_out.store(true, Ordering::SeqCst),
                    (StatusCode::SERVICE_UNAVAILABLE, Some("/problems/order-outcome-unknown")) => {
                        unknown
                            .lock()
                            .unwrap()
                            .push(b["orderId"].as_str().unwrap().to_owned());
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    // While Redis reloads, an order may be refused for a moment.
                    (StatusCode::SERVICE_UNAVAILABLE, _) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    (other, _) => panic!("unexpected {other}: {b}"),
                }
            }
        }
    });
    join_all(clients).await;
    assert_eq!(flushes.load(Ordering::SeqCst), flush_at.len());
    settle(&t).await;
    // Orders accepted after the flush are persisted too; give the watcher its tick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    settle(&t).await;

    let accepted = accepted.lock().unwrap().clone();
    let unknown = unknown.lock().unwrap().clone();
    let confirmed: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS SIGNED) FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE o.status = 'CONFIRMED'",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert!(confirmed <= units, "MySQL sold {confirmed} of {units}");
    assert_eq!(t.available(wh, p).await, units - confirmed);
    let mut ends: HashMap<String, usize> = HashMap::new();
    for (id, answered_202) in accepted
        .iter()
        .map(|id| (id, true))
        .chain(unknown.iter().map(|id| (id, false)))
    {
        let state = t.order_state(id).await;
        let end = match state.as_str() {
            "CONFIRMED" | "REJECTED" | "CANCELLED" => state.clone(),
            "410:/problems/order-lost" | "503:/problems/unavailable" => "LOST".into(),
            // An order whose reservation got no answer may never have been placed.
            "404:/problems/unknown-order" if !answered_202 => "NOT PLACED".into(),
            other => panic!("order {id} ended {other}"),
        };
        *ends.entry(end).or_default() += 1;
    }
    assert_eq!(
        ends.get("CONFIRMED").copied().unwrap_or(0) as i64,
        confirmed,
        "{ends:?}"
    );
    assert_eq!(ends.values().sum::<usize>(), accepted.len() + unknown.len());
    let unique: HashSet<&String> = accepted.iter().chain(&unknown).collect();
    assert_eq!(unique.len(), accepted.len() + unknown.len());
    t.assert_converged(InRedis::All).await;
    let r = t.admin().get("/api/admin/redis-data-losses").await;
    let (s, losses) = json_of(r).await;
    assert_eq!(s, StatusCode::OK);
    losses["losses"].as_array().unwrap().clone()
}

/// An order's id carries the time its request began, not the time Redis took it: a request that
/// waited for its stock key to load took its units from the data set loaded after its id was
/// made. Lost with that data set, the order is reported lost (410), not unknown. An id made after
/// every loss its location had is unknown (404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_lost_with_the_data_set_loaded_after_its_id_was_made_is_reported_lost() {
    let t = TestApp::spawn().await;
    let (wh, _) = t.warehouse_with_product(1_000, 10).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let loaded_ms = now_ms - 120_000;
    let detected_ms = loaded_ms + 2_000;
    sqlx::query(
        "INSERT INTO redis_data_losses (since, locations, locations_sha, detected_at) \
         VALUES (FROM_UNIXTIME(? / 1000), ?, UNHEX(SHA2(?, 256)), FROM_UNIXTIME(? / 1000))",
    )
    .bind(loaded_ms)
    .bind(wh.to_string())
    .bind(wh.to_string())
    .bind(detected_ms)
    .execute(&t.db)
    .await
    .unwrap();
    let id_made_at = |ms: i64| {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ms / 1000) as u64,
            ((ms % 1000) * 1_000_000) as u32,
        );
        format!("{wh}-{}", uuid::Uuid::new_v7(ts).simple())
    };
    for (made_ms, expected) in [
        // Began 50 ms before the load it waited for.
        (loaded_ms - 50, "410:/problems/order-lost"),
        // Taken while the data set was loaded.
        (loaded_ms + 1_000, "410:/problems/order-lost"),
        // Made after the loss was noticed: no loss can explain it.
        (detected_ms + 1_000, "404:/problems/unknown-order"),
    ] {
        let id = id_made_at(made_ms);
        assert_eq!(t.order_state(&id).await, expected, "{id} made at {made_ms}");
    }
}

/// Item: a cancel that arrives as the order's Redis record expires (it was persisted) still finds
/// the order, and however many are sent at once, the units come back exactly once (I3).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_cancels_around_the_record_expiry_restore_once() {
    let t = TestApp::spawn_with(|c| c.order_record_ttl_secs = 1).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let body = normal_order(&[(p, 4)], SEOUL.0, SEOUL.1);
    for wait_ms in [900u64, 1000, 1100, 1500] {
        let (s, b) = json_of(t.post("/api/redis/orders", &body).await).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let id = b["orderId"].as_str().unwrap().to_owned();
        t.wait_persisted().await;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let path = format!("/api/redis/orders/{id}/cancel");
        let results = join_all((0..20).map(|_| t.patch(&path))).await;
        for r in results {
            let (s, b) = json_of(r).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            assert_eq!(b["status"], "CANCELLED");
        }
        settle(&t).await;
        assert_eq!(t.available(wh, p).await, 10, "after waiting {wait_ms} ms");
        assert_eq!(t.ledger_sum(wh, p).await, 0);
        t.assert_converged(InRedis::All).await;
    }
}

/// Item: an increment reaches Redis even on a key below zero (a DB-lock cancel used to be
/// refused there and silently skipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_reaches_a_negative_redis_key() {
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let (s, b) = json_of(
        t.post("/api/orders", &normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = b["orderId"].as_str().unwrap().to_owned();
    t.set_redis_stock(wh, p, -3).await;
    let (s, _) = json_of(t.patch(&format!("/api/orders/{id}/cancel")).await).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.redis_stock(wh, p).await, Some(-1));
    // A real -1 is a value, not "missing": reconciliation repairs it, it does not load it.
    let run = t.run_reconcile().await;
    assert_eq!(run["keysRepaired"], 1, "{run}");
    assert_eq!(run["details"]["keysLoaded"], 0, "{run}");
    assert_eq!(t.redis_stock(wh, p).await, Some(10));
}

/// A defined end for orders MySQL cannot take: Redis sold more than MySQL has (it drifted, as
/// after a data loss); the consumer confirms what MySQL has, rejects the rest with a reason
/// (no stock taken), sets Redis from MySQL, and lists the rejected orders for operators, who retry
/// them after a restock. A cancel of a rejected order gives nothing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_mysql_cannot_take_are_rejected_listed_and_retried() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let (s, _) = json_of(t.post("/api/redis/orders", &body).await).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // Redis drifts above MySQL by 5.
    let _: () = redis::cmd("INCRBY")
        .arg(t.stock_key(wh, p))
        .arg(5)
        .query_async(&mut t.redis().await)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for r in join_all((0..20).map(|_| t.post("/api/redis/orders", &body))).await {
        let (s, b) = json_of(r).await;
        if s == StatusCode::ACCEPTED {
            ids.push(b["orderId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 14, "Redis had 14 units left");
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.count_orders("CONFIRMED").await, 10);
    assert_eq!(t.count_orders("REJECTED").await, 5);
    assert_eq!(t.available(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
    let mut rejected = Vec::new();
    for id in &ids {
        let (s, b) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
        assert_eq!(s, StatusCode::OK);
        if b["status"] == "REJECTED" {
            assert!(
                b["rejectReason"]
                    .as_str()
                    .unwrap()
                    .contains("MySQL did not have the units"),
                "{b}"
            );
            rejected.push(id.clone());
        }
    }
    assert_eq!(rejected.len(), 5);
    let r = t.admin().get("/api/admin/orders?status=REJECTED").await;
    let (s, list) = json_of(r).await;
    assert_eq!(s, StatusCode::OK);
    let listed: HashSet<String> = list["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, rejected.iter().cloned().collect());
    let retry = |id: String| {
        let t = &t;
        async move {
            let r = t
                .admin()
                .post_empty(&format!("/api/admin/orders/{id}/retry"))
                .await;
            json_of(r).await
        }
    };
    // No stock yet: refused, nothing changes.
    let (s, b) = retry(rejected[0].clone()).await;
    assert_eq!(
        (s, b["type"].as_str()),
        (StatusCode::CONFLICT, Some("/problems/out-of-stock"))
    );
    // A cancel of a rejected order closes it and gives nothing back.
    let (s, b) = json_of(
        t.patch(&format!("/api/redis/orders/{}/cancel", rejected[4]))
            .await,
    )
    .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED"))
    );
    assert_eq!(t.available(wh, p).await, 0);
    assert_eq!(t.admin_adjust(wh, p, 4).await.status(), StatusCode::OK);
    for id in &rejected[..4] {
        let (s, b) = retry(id.clone()).await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some("CONFIRMED")),
            "{b}"
        );
    }
    let (s, _) = retry(rejected[0].clone()).await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a confirmed order is not retried again"
    );
    assert_eq!(t.count_orders("CONFIRMED").await, 14);
    // The retried orders' ledger rows are the operator's (`ADMIN_TOKEN`: `bootstrap`), not the
    // shop's.
    let bootstrap: u64 = sqlx::query_scalar("SELECT id FROM operators WHERE name = 'bootstrap'")
        .fetch_one(&t.db)
        .await
        .unwrap();
    for id in &rejected[..4] {
        let actors: Vec<String> =
            sqlx::query_scalar("SELECT actor FROM stock_movements WHERE ref_id = ? ORDER BY id")
                .bind(id)
                .fetch_all(&t.db)
                .await
                .unwrap();
        assert_eq!(actors, vec![format!("operator:{bootstrap}")], "{id}");
    }
    assert_eq!(t.available(wh, p).await, 0);
    assert_eq!(t.ledger_sum(wh, p).await, -10);
    t.assert_converged(InRedis::All).await;
}

/// I2 with a lost COMMIT acknowledgement on the consumer's own batch: MySQL committed, the
/// consumer never heard it, so the events stay pending; they are taken over and recognised as
/// persisted. Every order ends CONFIRMED exactly once, within the stated bound
/// (`CONSUMER_RECLAIM_IDLE_MS` plus one reclaim round; 2 s in the tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_commit_acknowledgement_on_a_consumer_batch() {
    let (proxy, t) = behind_mysql_proxy(|_| {}).await;
    let (wh, p) = t.warehouse_with_product(1_000, 500).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    // Loads the key, so the next COMMIT on the wire is the consumer's.
    t.place_redis(&body).await;
    t.wait_persisted().await;
    proxy.lose_reply_to(COMMIT, 1);
    let ids = place_many(&t, &body, 100).await;
    let fired = Instant::now();
    lost_replies(&proxy, 1).await;
    settle(&t).await;
    let took = fired.elapsed();
    assert!(took < Duration::from_secs(10), "settled after {took:?}");
    assert_eq!(t.count_orders("CONFIRMED").await, 101);
    assert_confirmed(&t, &ids).await;
    assert_eq!(t.available(wh, p).await, 399);
    assert_eq!(t.ledger_sum(wh, p).await, -101);
    t.assert_converged(InRedis::All).await;
}

/// A connection cut in the middle of a transaction: a DB-lock order's ledger insert, and a
/// consumer batch's line insert, never get their answers. MySQL rolls back; the DB-lock order
/// never reached Redis (its Redis change is the last step), and the consumer's events are taken
/// over and persisted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_cut_mid_transaction_leaves_nothing_half_done() {
    let (proxy, t) = behind_mysql_proxy(|_| {}).await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    let body = normal_order(&[(p, 3)], SEOUL.0, SEOUL.1);
    let (s, _) = json_of(t.post("/api/orders", &body).await).await;
    assert_eq!(s, StatusCode::CREATED);
    proxy.lose_reply_to(b"INSERT INTO stock_movements", 1);
    let (s, b) = json_of(t.post("/api/orders", &body).await).await;
    assert!(s.is_server_error(), "{s} {b}");
    assert_eq!(proxy.lost_replies(), 1);
    assert_eq!(t.count_orders("CONFIRMED").await, 1);
    assert_eq!(t.available(wh, p).await, 97);
    assert_eq!(t.redis_stock(wh, p).await, Some(97));

    proxy.lose_reply_to(b"INSERT INTO order_lines", 1);
    let ids = place_many(&t, &body, 20).await;
    lost_replies(&proxy, 2).await;
    settle(&t).await;
    assert_eq!(t.count_orders("CONFIRMED").await, 21);
    assert_confirmed(&t, &ids).await;
    assert_eq!(t.available(wh, p).await, 37);
    assert_eq!(t.ledger_sum(wh, p).await, -63);
    t.assert_converged(InRedis::All).await;
}

/// A DB-lock order whose connection is cut mid-transaction answers a stable, documented sentence:
/// the cause (the driver's own text about the cut connection) goes to the log, not to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mysql_connection_is_answered_without_its_internal_text() {
    let (proxy, t) = behind_mysql_proxy(|c| c.jobs_enabled = false).await;
    let (_, p) = t.warehouse_with_product(1_000, 100).await;
    let body = normal_order(&[(p, 3)], SEOUL.0, SEOUL.1);
    proxy.lose_reply_to(b"INSERT INTO order_lines", 1);
    let (s, b) = json_of(t.post("/api/orders", &body).await).await;
    assert_eq!(proxy.lost_replies(), 1);
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["type"], "/problems/unavailable", "{b}");
    assert_eq!(
        b["detail"], "the database cannot be reached; retry shortly",
        "{b}"
    );
    assert_eq!(t.count_orders("CONFIRMED").await, 0);
}

/// I2 while MySQL is unreachable: the Redis path keeps answering 202 from Redis; nothing is lost,
/// and once MySQL answers again every order is CONFIRMED exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_down_then_back_loses_nothing() {
    let (proxy, t) = behind_mysql_proxy(|_| {}).await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    t.place_redis(&body).await;
    t.wait_persisted().await;
    proxy.refuse(true);
    proxy.cut_all();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.extend(place_many(&t, &body, 10).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(t.count_orders("CONFIRMED").await, 1, "MySQL is down");
    proxy.refuse(false);
    settle(&t).await;
    assert_eq!(t.count_orders("CONFIRMED").await, 31);
    assert_confirmed(&t, &ids).await;
    assert_eq!(t.available(wh, p).await, 69);
    t.assert_converged(InRedis::All).await;
}

/// Item: a cancel whose record expires between its look-up and its script (here: a slow link to
/// Redis, and records that live 1 s once persisted) still cancels the persisted order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_the_record_expiry_finds_the_order() {
    let (proxy, t) = behind_redis_proxy(|c| {
        c.order_record_ttl_secs = 1;
        // The link is slow on purpose here; this test is about the race, not the deadline.
        c.storage.redis_command_timeout_ms = 10_000;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let id = t
        .place_redis(&normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
        .await;
    t.wait_persisted().await;
    // The look-up reaches Redis while the record is there; the script, after it has expired.
    proxy.set_latency(Duration::from_millis(400));
    let (s, b) = json_of(t.patch(&format!("/api/redis/orders/{id}/cancel")).await).await;
    proxy.set_latency(Duration::ZERO);
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED")),
        "{b}"
    );
    let (s, b) = json_of(t.patch(&format!("/api/redis/orders/{id}/cancel")).await).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED"))
    );
    settle(&t).await;
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// A restarted consumer reads new events after one pass over its own pending list, whatever that
/// list holds: here a cancel that must wait for its reservation (held by another consumer) stays
/// pending, and new orders are persisted all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_consumer_reads_new_events_after_its_pending_list() {
    use sf_persistence::consumer::{self, ConsumerConfig, ConsumerStats};
    let t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let stream = t.keys().stream(sf_routing::LocationId::new_unchecked(wh));
    let mut c = t.redis().await;
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(sf_persistence::consumer::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await;
    let read_as = |name: &'static str| {
        let stream = stream.clone();
        let mut c = c.clone();
        async move {
            let _: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(sf_persistence::consumer::GROUP)
                .arg(name)
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query_async(&mut c)
                .await
                .unwrap();
        }
    };
    // The reservation is pending with "other", its cancel with "c1".
    let first = t.place_redis(&body).await;
    read_as("other").await;
    let (s, _) = json_of(t.patch(&format!("/api/redis/orders/{first}/cancel")).await).await;
    assert_eq!(s, StatusCode::OK);
    read_as("c1").await;

    let stop = tokio_util::sync::CancellationToken::new();
    let store = t.app.as_ref().unwrap().storage.clone();
    let task = tokio::spawn(consumer::run(
        store,
        ConsumerConfig {
            name: "c1".into(),
            batch: 100,
            idle: Duration::from_millis(10),
            reclaim_idle: Duration::from_secs(600),
        },
        Arc::new(ConsumerStats::default()),
        stop.clone(),
    ));
    let new = t.place_redis(&body).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.order_state(&new).await != "CONFIRMED" {
        assert!(
            Instant::now() < deadline,
            "the restarted consumer never read new events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(t.available(wh, p).await, 9);
}

/// Item 6: a consumer batch that nets to zero on a row (an order and its cancel) still locks the
/// row, so it cannot commit in the middle of a key load that holds the row's share lock. The
/// cancel is in Redis alone: what a cancel leaves when its MySQL commit fails after its script
/// ran (a cancel that succeeds is in MySQL before its answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_nets_to_zero_still_waits_for_a_sync_on_its_rows() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let id = t
        .place_redis(&normal_order(&[(p, 1)], SEOUL.0, SEOUL.1))
        .await;
    let loc = sf_routing::LocationId::new_unchecked(wh);
    let cancelled: Vec<i64> = redis::Script::new(sf_persistence::scripts::cancel::SOURCE)
        .key(t.keys().order(loc, &id))
        .key(t.keys().stream(loc))
        .key(t.stock_key(wh, p))
        .arg(&id)
        .arg(format!("{p}:1"))
        .arg(1)
        .invoke_async(&mut t.redis().await)
        .await
        .unwrap();
    assert_eq!(cancelled, [1]);
    // A sync's share lock on the row, held from another connection.
    let mut sync = sf_persistence::infra::mysql::begin(&t.db).await.unwrap();
    sqlx::query(
        "SELECT available FROM stock WHERE location_id = ? AND product_id = ? LOCK IN SHARE MODE",
    )
    .bind(wh)
    .bind(p)
    .fetch_one(&mut *sync)
    .await
    .unwrap();
    t.app().start_consumer();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        t.count_orders("CANCELLED").await,
        0,
        "the batch committed while the row was share-locked"
    );
    sync.commit().await.unwrap();
    settle(&t).await;
    assert_eq!(t.count_orders("CANCELLED").await, 1);
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// A store holding 2 units of a new product, a POS key of the store, and a 1-unit pickup order
/// there.
async fn store_with_two_units(t: &TestApp) -> (u64, u64, String, Value) {
    let s = t.store_with(1, 2).await;
    let p = s.products[0];
    (s.store, p, s.key, pickup_order(&[(p, 1)], s.store))
}

/// Cancels a Redis-path order, then sells the unit it freed at the store's till.
async fn cancel_then_pos_sale(t: &TestApp, order: &str, store: u64, p: u64, key: &str) {
    let (s, _) = json_of(t.patch(&format!("/api/redis/orders/{order}/cancel")).await).await;
    assert_eq!(s, StatusCode::OK);
    let r = t
        .post_with_key(
            &format!("/api/stores/{store}/orders"),
            key,
            &pos_sale(&[(p, 1)]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// I1 and a defined end when MySQL-first sales interleave with Redis cancels: a POS sale takes a
/// unit a Redis cancel freed, before the consumer has seen that cancel. With one event per batch,
/// the reservation that came first waits for the cancel instead of being rejected. Nothing is
/// rejected, nothing oversold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pos_sale_using_a_unit_a_pending_cancel_freed_rejects_nothing() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_batch = 1;
        c.jobs_enabled = false;
    })
    .await;
    let (store, p, key, pickup) = store_with_two_units(&t).await;
    // b is persisted; then, with no consumer: a reserves, b is cancelled in Redis, and a POS sale
    // takes the unit b's cancel freed.
    let b = t.place_redis(&pickup).await;
    t.wait_persisted().await;
    t.app().stop_consumer_now();
    let a = t.place_redis(&pickup).await;
    cancel_then_pos_sale(&t, &b, store, p, &key).await;
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.order_state(&a).await, "CONFIRMED");
    assert_eq!(t.order_state(&b).await, "CANCELLED");
    assert_eq!(t.count_orders("REJECTED").await, 0);
    assert_eq!(t.available(store, p).await, 0);
    assert_eq!(t.ledger_sum(store, p).await, -2);
    t.assert_converged(InRedis::All).await;
}

/// Where MySQL cannot cover a batch, an order its customer cancelled after the batch was read
/// gives way (it ends CANCELLED), not a later order that stands: two reservations in one batch,
/// the first cancelled in Redis after it, and a POS sale that took the unit the cancel freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_order_gives_way_before_a_standing_one_is_rejected() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_batch = 2;
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (store, p, key, pickup) = store_with_two_units(&t).await;
    let x = t.place_redis(&pickup).await;
    let y = t.place_redis(&pickup).await;
    cancel_then_pos_sale(&t, &x, store, p, &key).await;
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.order_state(&x).await, "CANCELLED");
    assert_eq!(t.order_state(&y).await, "CONFIRMED");
    assert_eq!(t.count_orders("REJECTED").await, 0);
    assert_eq!(t.available(store, p).await, 0);
    assert_eq!(t.ledger_sum(store, p).await, -2);
    t.assert_converged(InRedis::All).await;
}
