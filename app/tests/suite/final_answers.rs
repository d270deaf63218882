//! I8 answers are final: a terminal state shown to a client (`CANCELLED`, `CONFIRMED`,
//! `REJECTED`) is never taken back, whatever fails afterwards. Each test reproduces one way an
//! answer could be undone, with real MariaDB and Redis and the faults injected for real.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// Orders must reach one replica (`REDIS_MIN_REPLICA_ACKS=1`), and the test's Redis has none:
/// every `WAIT` comes back short, after 50 ms.
fn a_replica_asked_and_none_there(c: &mut stock_flow::Config) {
    c.storage.redis_min_replica_acks = 1;
    c.storage.redis_wait_timeout_ms = 50;
    c.jobs_enabled = false;
}

/// A Redis-path cancel answered 200 is never undone by Redis losing its data before the consumer
/// applied the cancel: neither for an order already persisted (its Redis record lives on for a
/// while after) nor for one not persisted yet. Both stay `CANCELLED`, their units come back once,
/// and MySQL, Redis and the ledger agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_path_cancel_answered_200_survives_redis_losing_its_data() {
    let mut t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let persisted = t
        .place_redis(&normal_order(&[(p, 4)], SEOUL.0, SEOUL.1))
        .await;
    t.wait_persisted().await;
    assert_eq!(t.order_status(&persisted).await, "CONFIRMED");
    t.app().stop_consumer_now();
    let pending = t
        .place_redis(&normal_order(&[(p, 3)], SEOUL.0, SEOUL.1))
        .await;
    for id in [&persisted, &pending] {
        let (s, b) = json_of(t.patch(&format!("/api/redis/orders/{id}/cancel")).await).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "CANCELLED", "{b}");
    }
    t.lose_redis_data().await;
    t.app().start_consumer();
    t.run_reconcile().await;
    settle(&t).await;
    for id in [&persisted, &pending] {
        assert_eq!(t.order_state(id).await, "CANCELLED", "{id}");
        assert_eq!(t.order_status(id).await, "CANCELLED", "{id}");
    }
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// I7: a POS sale is cancelled only through its store's route, with its key. The shop's cancel
/// routes (both paths) answer 404 for it and change nothing; the store's route still returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_cancel_routes_do_not_cancel_a_pos_sale() {
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let StockedStore {
        store,
        products,
        key,
    } = t.store_with(1, 5).await;
    let p = products[0];
    let (s, sale) = json_of(
        t.post_with_key(
            &format!("/api/stores/{store}/orders"),
            &key,
            &pos_sale(&[(p, 2)]),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{sale}");
    let id = sale["orderId"].as_str().unwrap().to_owned();
    for route in ["/api/orders", "/api/redis/orders"] {
        let (s, b) = json_of(t.patch(&format!("{route}/{id}/cancel")).await).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{route}: {b}");
    }
    assert_eq!(t.order_status(&id).await, "CONFIRMED");
    assert_eq!(t.available(store, p).await, 3);
    let r = t
        .client
        .patch(format!("{}/api/stores/{store}/orders/{id}/cancel", t.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(t.available(store, p).await, 5);
    assert_eq!(t.ledger_sum(store, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// A MySQL-first write whose Redis change got no answer (the change may have been applied), and
/// whose commit on MySQL alone then fails too (the connection is cut at its stale mark): Redis must
/// not keep the units MySQL never took in. The operator's retry then adds them once, and Redis
/// ends equal to MySQL, without waiting for a reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_whose_commit_on_mysql_alone_fails_leaves_no_phantom_units() {
    let redis_proxy = proxy::Proxy::start(&host_port(&redis_url())).await;
    let mysql_proxy = proxy::Proxy::start(&host_port(&server_url())).await;
    let t = TestApp::spawn_with(|c| {
        c.storage.redis_url = via(c.storage.redis_url.expose(), redis_proxy.port).into();
        c.storage.database_url = via(c.storage.database_url.expose(), mysql_proxy.port).into();
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    // Loads the key, then the adjustment script (so that the next one sent is the change's own).
    let (s, _) = json_of(t.get(&format!("/api/redis/products/{p}")).await).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = json_of(t.admin_adjust(wh, p, 1).await).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.redis_stock(wh, p).await, Some(11));
    let sha = redis::Script::new(sf_persistence::scripts::adjust::SOURCE)
        .get_hash()
        .to_owned();
    redis_proxy.lose_reply_to(sha.as_bytes(), 1);
    mysql_proxy.lose_reply_to(b"INSERT INTO redis_stale_keys", 1);
    let (s, b) = json_of(t.admin_adjust(wh, p, 5).await).await;
    assert_eq!(
        (redis_proxy.lost_replies(), mysql_proxy.lost_replies()),
        (1, 1)
    );
    assert!(s.is_server_error(), "{s}: {b}");
    assert_eq!(t.available(wh, p).await, 11, "nothing committed");
    // The operator retries until it is taken.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (s, b) = json_of(t.admin_adjust(wh, p, 5).await).await;
        if s == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s}: {b}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    settle(&t).await;
    assert_eq!(t.available(wh, p).await, 16);
    assert_eq!(t.ledger_sum(wh, p).await, 6);
    assert_eq!(t.redis_stock(wh, p).await, Some(16), "redis equals mysql");
}

/// Replication asked for (`REDIS_MIN_REPLICA_ACKS=1`) and no replica: the first order's `WAIT`
/// times out, and it is answered 504 — it stands, and the route its detail names finds it. Once
/// the service knows the slot is short of replicas, it refuses the next orders before touching
/// stock (503 with `Retry-After`, nothing changed) instead of deciding them and answering 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_known_short_of_replicas_refuses_orders_before_taking_stock() {
    let t = TestApp::spawn_with(a_replica_asked_and_none_there).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let (s, b) = json_of(t.post("/api/redis/orders", &body).await).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{b}");
    assert_eq!(b["type"], "/problems/order-not-replicated", "{b}");
    let id = b["orderId"].as_str().unwrap().to_owned();
    let named = format!("GET /api/orders/{id}");
    assert!(b["detail"].as_str().unwrap().contains(&named), "{b}");
    let (s, found) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!((s, &found["orderId"]), (StatusCode::OK, &b["orderId"]));
    for _ in 0..5 {
        let r = t.post("/api/redis/orders", &body).await;
        assert!(r.headers().contains_key("retry-after"));
        let (s, b) = json_of(r).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert_eq!(b["type"], "/problems/stock-cache-unavailable", "{b}");
    }
    assert_eq!(
        t.redis_stock(wh, p).await,
        Some(9),
        "only the first order took a unit"
    );
    settle(&t).await;
    assert_eq!(t.count_orders("CONFIRMED").await, 1);
    assert_eq!(t.available(wh, p).await, 9);
}

/// A replayed order that neither Redis nor MySQL holds right now is not declared lost (410) while
/// a consumer batch on its way to MySQL may still bring it in: the retry is told to come back
/// (503), and once the batch commits, the replay answers the persisted order. A 410 is never
/// followed by `CONFIRMED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_is_not_declared_lost_while_its_batch_may_still_commit() {
    let master = PrivateRedis::start();
    let _replica = PrivateRedis::replica_of(&master);
    let t = TestApp::spawn_with(|c| {
        a_replica_asked_and_none_there(c);
        c.storage.redis_url = master.url().into();
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let (s, _) = json_of(t.get(&format!("/api/redis/products/{p}")).await).await;
    assert_eq!(s, StatusCode::OK);
    let send = || {
        t.client
            .post(format!("{}/api/redis/orders", t.base))
            .header("Idempotency-Key", "replayed")
            .json(&normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
            .send()
    };
    // The consumer's batch will wait for this lock on the stock row.
    let lock = t.lock_stock_row(wh, p).await;
    let (s, b) = json_of(send().await.unwrap()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["orderId"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Redis loses the location's data (the order's record and its stream), not the claim.
    let loc = sf_routing::LocationId::new_unchecked(wh);
    let _: () = redis::cmd("UNLINK")
        .arg(t.keys().order(loc, &id))
        .arg(t.keys().stream(loc))
        .query_async(&mut t.redis().await)
        .await
        .unwrap();
    let (s, b) = json_of(send().await.unwrap()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "not lost yet: {b}");
    lock.commit().await.unwrap();
    // The batch commits (its stream is gone, so the backlog says nothing of it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !t.order_ids().await.contains(&id) {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never committed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(t.order_status(&id).await, "CONFIRMED");
    let (s, b) = json_of(send().await.unwrap()).await;
    assert!(s.is_success(), "{s}: {b}");
    assert_eq!(
        (b["orderId"].as_str(), &b["status"]),
        (Some(id.as_str()), &Value::from("CONFIRMED"))
    );
    assert_eq!(t.available(wh, p).await, 8);
}

/// The re-sync of stale keys ends although another instance keeps marking keys meanwhile: it
/// takes the marks there were when it began (a recovering instance must be able to close its
/// circuit), and leaves later ones to the next check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_resync_of_stale_keys_ends_while_others_keep_marking() {
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let (wh, products) = t.warehouse_with(3, 10).await;
    let mark = |p: u64| {
        sqlx::query(
            "INSERT INTO redis_stale_keys (location_id, product_id) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE marked_at = NOW(3)",
        )
        .bind(wh)
        .bind(p)
        .execute(&t.db)
    };
    mark(products[0]).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let marker = {
        let (db, stop, p) = (t.db.clone(), stop.clone(), products[1]);
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sqlx::query(
                    "INSERT INTO redis_stale_keys (location_id, product_id) VALUES (?, ?) \
                     ON DUPLICATE KEY UPDATE marked_at = NOW(3)",
                )
                .bind(wh)
                .bind(p)
                .execute(&db)
                .await
                .unwrap();
            }
        })
    };
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        t.storage().recovery().resync_stale_keys(),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    marker.await.unwrap();
    let synced = ended.expect("the re-sync ended").unwrap();
    assert!((1..=2).contains(&synced), "{synced} keys re-synced");
    assert_eq!(t.redis_stock(wh, products[0]).await, Some(10));
    let left: Vec<u64> =
        sqlx::query_scalar("SELECT product_id FROM redis_stale_keys WHERE product_id = ?")
            .bind(products[0])
            .fetch_all(&t.db)
            .await
            .unwrap();
    assert!(
        left.is_empty(),
        "the mark there was at the start is cleared"
    );
}

/// A consumer batch that rejects an order and then fails before its commit shows nothing: the
/// order stays `ACCEPTED` (no `REJECTED` with a reason that a later batch could turn into
/// `CONFIRMED`). Here MySQL lost the unit the order took in Redis, the batch's insert is cut, and
/// before the consumer tries again the unit is back in MySQL: the order ends `CONFIRMED`, and was
/// never shown otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejection_is_shown_only_once_it_is_committed() {
    let mysql_proxy = proxy::Proxy::start(&host_port(&server_url())).await;
    let mut t = TestApp::spawn_with(|c| {
        c.storage.database_url = via(c.storage.database_url.expose(), mysql_proxy.port).into();
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 1).await;
    let id = t
        .place_redis(&normal_order(&[(p, 1)], SEOUL.0, SEOUL.1))
        .await;
    let db = t.db.clone();
    let set_on_hand = |v: i64| {
        sqlx::query("UPDATE stock SET available = ? WHERE location_id = ? AND product_id = ?")
            .bind(v)
            .bind(wh)
            .bind(p)
            .execute(&db)
    };
    set_on_hand(0).await.unwrap();
    mysql_proxy.lose_reply_to(b"INSERT INTO orders", 1);
    t.app().start_consumer();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while mysql_proxy.lost_replies() < 1 {
        assert!(std::time::Instant::now() < deadline, "the batch never ran");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    t.app().stop_consumer_now();
    assert_eq!(t.order_state(&id).await, "ACCEPTED");
    set_on_hand(1).await.unwrap();
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.order_state(&id).await, "CONFIRMED");
    assert_eq!(t.available(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// A graceful stop finishes the consumer's batch under way: here the batch waits for a row lock
/// when the stop begins; once the lock is released the batch commits and is acknowledged, and
/// only then does the stop return.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_stop_finishes_the_batch_under_way() {
    let mut t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let (s, _) = json_of(t.get(&format!("/api/redis/products/{p}")).await).await;
    assert_eq!(s, StatusCode::OK);
    let lock = t.lock_stock_row(wh, p).await;
    let id = t
        .place_redis(&normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
        .await;
    // The consumer has read the event and waits for the lock.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let app = t.app.take().unwrap();
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "the stop waits for the batch");
    lock.commit().await.unwrap();
    stopping.await.unwrap().unwrap();
    assert_eq!(t.order_status(&id).await, "CONFIRMED");
    assert_eq!(t.available(wh, p).await, 8);
    let left: i64 = redis::cmd("XLEN")
        .arg(t.keys().stream(sf_routing::LocationId::new_unchecked(wh)))
        .query_async(&mut t.redis().await)
        .await
        .unwrap();
    assert_eq!(left, 0, "the batch was acknowledged");
}

/// Every MySQL step of a request ends within the request's deadline, also a key load that waits
/// for a locked stock row: the order is refused within seconds (503, nothing changed), not after
/// the lock-wait retries (a minute), and its claim's lease outlives the attempt, so the retry with
/// the same `Idempotency-Key` places exactly one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_load_waiting_for_a_locked_row_ends_within_the_deadline() {
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let send = || {
        t.client
            .post(format!("{}/api/redis/orders", t.base))
            .header("Idempotency-Key", "slow-mysql")
            .json(&normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
            .send()
    };
    let lock = t.lock_stock_row(wh, p).await;
    let started = std::time::Instant::now();
    let (s, b) = json_of(send().await.unwrap()).await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(
        took < std::time::Duration::from_secs(8),
        "answered after {took:?}"
    );
    lock.commit().await.unwrap();
    let (s, first) = json_of(send().await.unwrap()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let (s, again) = json_of(send().await.unwrap()).await;
    assert!(s.is_success(), "{again}");
    assert_eq!(first["orderId"], again["orderId"]);
    settle(&t).await;
    assert_eq!(t.order_ids().await.len(), 1);
    assert_eq!(t.available(wh, p).await, 8);
    t.assert_converged(InRedis::All).await;
}

/// A frozen instance (paused with `SIGSTOP` in the middle of a MySQL-first write, its connections
/// open) does not hold the hot row's lock for hours: MariaDB ends its idle transaction within
/// seconds, the other instance's orders for that row go through, and once the frozen instance
/// runs again its lost connection is an unknown outcome like any other: stock, ledger and Redis
/// agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_instance_does_not_hold_row_locks_for_long() {
    let redis_proxy = proxy::Proxy::start(&host_port(&redis_url())).await;
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let (s, _) = json_of(t.post("/api/orders", &body).await).await;
    assert_eq!(s, StatusCode::CREATED);
    // The frozen one: its Redis answers slowly, so a write holds the row while it waits.
    let frozen = t.spawn_process(&[
        ("REDIS_URL", &via(&t.redis_url, redis_proxy.port)),
        ("REDIS_COMMAND_TIMEOUT_MS", "2000"),
        ("CONSUMER_ENABLED", "false"),
        ("JOBS_ENABLED", "false"),
    ]);
    frozen
        .wait_for(
            &t.client,
            "/health/ready",
            std::time::Duration::from_secs(30),
        )
        .await;
    redis_proxy.set_latency(std::time::Duration::from_millis(700));
    let write = tokio::spawn(
        t.client
            .post(format!("{}/api/orders", frozen.base))
            .json(&body)
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    frozen.pause();
    let started = std::time::Instant::now();
    let took = loop {
        let (s, b) = json_of(t.post("/api/orders", &body).await).await;
        if s == StatusCode::CREATED {
            break started.elapsed();
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the row stayed locked by the frozen instance"
        );
    };
    frozen.resume();
    redis_proxy.set_latency(std::time::Duration::ZERO);
    let _ = write.await;
    settle(&t).await;
    // The frozen instance's write had an unknown outcome; it sets the key from MySQL itself, now
    // or from its re-sync queue once its circuit has closed again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while t.redis_stock(wh, p).await != Some(t.available(wh, p).await) {
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never repaired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let confirmed = t.count_orders("CONFIRMED").await;
    assert!((2..=3).contains(&confirmed), "{confirmed} orders");
    assert_eq!(t.available(wh, p).await, 100 - confirmed);
    t.assert_converged(InRedis::All).await;
    eprintln!("the other instance's order went through {took:?} after the freeze");
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
}

/// A reservation that goes to the dead-letter stream after its order was cancelled in Redis (a
/// cancel whose own MySQL commit failed after its script ran: the order reads `CANCELLED`) is
/// listed in MySQL as `CANCELLED`, not `REJECTED`: the answer shown is not taken back, and no
/// operator's retry of a rejected order can bring it back to life.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_lettered_reservation_of_a_cancelled_order_stays_cancelled() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let id = t
        .place_redis(&normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
        .await;
    let (_, order) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    let loc = sf_routing::LocationId::new_unchecked(wh);
    let stream = t.keys().stream(loc);
    let mut c = t.redis().await;
    // The cancel's script ran; its MySQL commit did not.
    let cancelled: Vec<i64> = redis::Script::new(sf_persistence::scripts::cancel::SOURCE)
        .key(t.keys().order(loc, &id))
        .key(&stream)
        .key(t.stock_key(wh, p))
        .arg(&id)
        .arg(format!("{p}:2"))
        .arg(2)
        .invoke_async(&mut c)
        .await
        .unwrap();
    assert_eq!(cancelled, [1]);
    assert_eq!(t.order_state(&id).await, "CANCELLED");
    // Its reservation event turns out unreadable as persisted: it names another location.
    t.misdirect_reservation(wh, &id).await;
    assert_eq!(order["status"], "ACCEPTED");
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.order_status(&id).await, "CANCELLED");
    assert_eq!(t.order_state(&id).await, "CANCELLED");
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// A Redis-path order already under way when the Redis circuit opens is not decided while the
/// circuit recovers, on a key whose stale mark is not re-synced yet: it waits for a key load when
/// the circuit opens; recovery is held up re-syncing another stale key; the order, once its key
/// is loaded, is refused (503) instead of being decided on the stale figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_under_way_is_not_decided_while_the_circuit_recovers() {
    // No periodic check: it would re-sync the stale keys itself (and wait on r's lock).
    let t = TestApp::spawn_with(|c| {
        c.jobs_enabled = false;
        c.health_check_ms = 600_000;
    })
    .await;
    let wh = t.add_warehouse().await;
    // r sorts first among the stale keys, so the recovery waits on it before it reaches p.
    let r = t.add_stocked_product(wh, 1_000, 10).await;
    let p = t.add_stocked_product(wh, 1_000, 10).await;
    let q = t.add_stocked_product(wh, 1_000, 10).await;
    let (s, _) = json_of(t.get(&format!("/api/redis/products/{p}")).await).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.redis_stock(wh, p).await, Some(10));
    // p is sold out on MySQL alone (its Redis figure is stale), and r is stale too.
    sqlx::query("UPDATE stock SET available = 0 WHERE location_id = ? AND product_id = ?")
        .bind(wh)
        .bind(p)
        .execute(&t.db)
        .await
        .unwrap();
    for product in [r, p] {
        sqlx::query("INSERT INTO redis_stale_keys (location_id, product_id) VALUES (?, ?)")
            .bind(wh)
            .bind(product)
            .execute(&t.db)
            .await
            .unwrap();
    }
    // q's key is not loaded, and its row is locked: the order waits in its key load.
    let q_lock = t.lock_stock_row(wh, q).await;
    let order = tokio::spawn(
        t.client
            .post(format!("{}/api/redis/orders", t.base))
            .json(&normal_order(&[(p, 1), (q, 1)], SEOUL.0, SEOUL.1))
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r_lock = t.lock_stock_row(wh, r).await;
    t.storage()
        .health()
        .circuit()
        .trip("test: redis went away for a moment");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while t.storage().health().circuit().state() != sf_persistence::CircuitState::Recovering {
        assert!(std::time::Instant::now() < deadline, "never recovering");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    q_lock.commit().await.unwrap();
    let (s, b) = json_of(order.await.unwrap().unwrap()).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "decided while recovering: {b}"
    );
    assert_eq!(b["type"], "/problems/stock-cache-unavailable", "{b}");
    r_lock.commit().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !t.storage().health().circuit().trusted() {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(t.redis_stock(wh, p).await, Some(0));
    settle(&t).await;
    assert_eq!(t.order_ids().await.len(), 0);
}

/// A batch in which many orders are short reads each location's stream once, not once per short
/// order: its row locks are not held through a stream scan per order (a backlog plus a shortage
/// once held them through hundreds). 150 orders wait in the stream; MySQL has units for only 50;
/// the consumer's batch rejects 100 of them with a handful of stream reads in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_with_many_short_orders_reads_its_stream_once() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let mut t = TestApp::spawn_with(|c| {
        c.storage.redis_url = url.clone().into();
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 200).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    for _ in 0..150 {
        t.place_redis(&body).await;
    }
    sqlx::query("UPDATE stock SET available = 50, initial_quantity = 50 WHERE location_id = ? AND product_id = ?")
        .bind(wh)
        .bind(p)
        .execute(&t.db)
        .await
        .unwrap();
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream_reads = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            let stats: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut c)
                .await
                .unwrap();
            stats
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_xrange:calls="))
                .and_then(|v| v.split(',').next())
                .map_or(0, |v| v.parse::<u64>().unwrap())
        }
    };
    let before = stream_reads(&mut c).await;
    t.app().start_consumer();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while t.order_ids().await.len() < 150 {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never committed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reads = stream_reads(&mut c).await - before;
    assert_eq!(t.count_orders("REJECTED").await, 100);
    assert_eq!(t.count_orders("CONFIRMED").await, 50);
    assert!(reads <= 10, "{reads} stream reads for one batch");
    settle(&t).await;
    assert_eq!(t.available(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// I5 across a loss of Redis's data: an order placed with an `Idempotency-Key` and persisted,
/// then Redis loses everything (the key's claim with it); the retry with the same key gets that
/// order, not a second one. The key's record is in MySQL with the order (the consumer writes it
/// in the order's own transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_still_names_its_order_after_redis_lost_its_data() {
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let app = &t;
    let send = |body: Value| async move {
        app.post_idempotent("/api/redis/orders", "survives-a-flush", &body)
            .await
    };
    let body = normal_order(&[(p, 2)], SEOUL.0, SEOUL.1);
    let (s, first) = json_of(send(body.clone()).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    settle(&t).await;
    t.lose_redis_data().await;
    t.run_reconcile().await;
    let (s, again) = json_of(send(body.clone()).await).await;
    assert!(s.is_success(), "{s}: {again}");
    assert_eq!(again["orderId"], first["orderId"]);
    assert_eq!(again["status"], "CONFIRMED");
    // Another body under the same key is still refused.
    let (s, other) = json_of(send(normal_order(&[(p, 3)], SEOUL.0, SEOUL.1)).await).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
    settle(&t).await;
    assert_eq!(t.order_ids().await.len(), 1);
    assert_eq!(t.available(wh, p).await, 8);
    t.assert_converged(InRedis::All).await;
}

/// I5 when Redis loses a key's claim while the key's first order is still on its way to MySQL (a
/// failover to a replica that lacked the claim, or a loss of Redis's data while the consumer's
/// batch was in flight): the retry finds the key neither in Redis nor in MySQL and is answered
/// with a second order. MySQL keeps one order per key all the same: the consumer persists the
/// first of them, and the other ends `REJECTED`, its reason naming the order the key stands for,
/// its units back in both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_keeps_one_order_per_key_when_redis_lost_the_claim() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    const KEY: &str = "claim-lost-in-flight";
    let body = normal_order(&[(p, 2)], SEOUL.0, SEOUL.1);
    let (s, first) = json_of(t.post_idempotent("/api/redis/orders", KEY, &body).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    // Redis loses the claim (and only the claim): the order is still in its stream.
    let mut redis = t.redis().await;
    let claims: Vec<String> = redis::cmd("KEYS")
        .arg(t.keys().idempotency("*", &format!("{KEY}*")))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        claims.len(),
        1,
        "the claim (its lease was released): {claims:?}"
    );
    let _: () = redis::cmd("DEL")
        .arg(&claims)
        .query_async(&mut redis)
        .await
        .unwrap();
    let (s, second) = json_of(t.post_idempotent("/api/redis/orders", KEY, &body).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{second}");
    assert_ne!(second["orderId"], first["orderId"]);
    t.app().start_consumer();
    settle(&t).await;
    let (a, b) = (
        first["orderId"].as_str().unwrap(),
        second["orderId"].as_str().unwrap(),
    );
    assert_eq!(t.order_status(a).await, "CONFIRMED");
    assert_eq!(t.order_status(b).await, "REJECTED");
    let (_, shown) = json_of(t.get(&format!("/api/orders/{b}")).await).await;
    let reason = shown["rejectReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(a) && reason.contains("Idempotency-Key"),
        "{shown}"
    );
    assert_eq!(t.available(wh, p).await, 8);
    assert_eq!(t.ledger_sum(wh, p).await, -2);
    t.assert_converged(InRedis::All).await;
    // The key's retry replays its claim's answer: the second order, now rejected.
    let (s, again) = json_of(t.post_idempotent("/api/redis/orders", KEY, &body).await).await;
    assert!(s.is_success(), "{s}: {again}");
    assert_eq!(again["orderId"], second["orderId"], "{again}");
}

/// A keyed order's claim must be held by the replicas before anything is decided under it
/// (`REDIS_MIN_REPLICA_ACKS=1`): a claim only the master holds is gone after a failover, and the
/// key's retry would place a second order beside the first. Here Redis has no replica: the
/// claim's `WAIT` comes back short, and the order is refused before it takes stock (503 with
/// `Retry-After`, no order, the claim freed), as an order is on a slot known short of replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_the_replicas_do_not_hold_decides_nothing() {
    let t = TestApp::spawn_with(a_replica_asked_and_none_there).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    for _ in 0..3 {
        let r = t
            .post_idempotent("/api/redis/orders", "claim-unreplicated", &body)
            .await;
        assert!(r.headers().contains_key("retry-after"));
        let (s, b) = json_of(r).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert_eq!(b["type"], "/problems/stock-cache-unavailable", "{b}");
        assert!(b.get("orderId").is_none(), "{b}");
    }
    let mut redis = t.redis().await;
    let claims: Vec<String> = redis::cmd("KEYS")
        .arg(t.keys().idempotency("*", "claim-unreplicated"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(claims, Vec::<String>::new(), "the claims were freed");
    assert_eq!(t.redis_stock(wh, p).await, None, "nothing was decided");
    assert_eq!(t.available(wh, p).await, 10);
    settle(&t).await;
    assert_eq!(t.order_ids().await, Vec::<String>::new());
}

/// A key re-sync reads a location's event backlog in pages, outside the script: `sync.lua` runs
/// atomically, and a script that scans a long stream stops every other command of its shard
/// meanwhile. Here 40,000 events wait in the stream (the consumer is stopped) and the reconcile
/// repairs a key that drifted: the key comes out right, and Redis's slow log (every command over
/// 5 ms, on a private server) shows no script call of this location.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_resync_does_not_scan_the_backlog_inside_redis() {
    const BACKLOG: i64 = 40_000;
    let redis = PrivateRedis::start();
    let t = TestApp::spawn_with(|c| {
        c.storage.redis_url = redis.url().into();
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 100_000).await;
    let (s, _) = json_of(t.get(&format!("/api/redis/products/{p}")).await).await;
    assert_eq!(s, StatusCode::OK);
    let loc = sf_routing::LocationId::new_unchecked(wh);
    let mut conn = t.redis().await;
    let mut pipe = redis::pipe();
    for i in 0..BACKLOG {
        pipe.cmd("XADD")
            .arg(t.keys().stream(loc))
            .arg("*")
            .arg("v")
            .arg("1")
            .arg("t")
            .arg("R")
            .arg("o")
            .arg(format!("{wh}-backlog{i}"))
            .arg("l")
            .arg(format!("{p}:1"))
            .ignore();
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    t.set_redis_stock(wh, p, 7).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut conn)
        .await
        .unwrap();
    t.run_reconcile().await;
    assert_eq!(t.redis_stock(wh, p).await, Some(100_000 - BACKLOG));
    let slow: redis::Value = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let slow = format!("{slow:?}");
    let stream = t.keys().stream(loc);
    assert!(
        !(slow.to_lowercase().contains("evalsha") && slow.contains(&stream)),
        "a script call on {stream} took over 5 ms: {slow}"
    );
}
