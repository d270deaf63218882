//! Reconciliation and recovery: repairs, loss of Redis data, reconcile under fire, job leases
//! across instances, and jobs that fail.

use crate::common::proxy::Proxy;
use crate::common::*;
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sf_persistence::infra::jobs::{Figures, JobRunner, RunOutcome};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency the proxy adds to each MySQL read, each way, in the two-instance test.
const LATENCY_MS: u64 = 50;

/// A wrong value written into Redis by hand is repaired by the next run, which reports exactly
/// one repair with its before and after values; the operators' view lists the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edited_key_is_repaired_once() {
    let t = TestApp::spawn().await;
    let wh = t.add_warehouse().await;
    let p = t.add_stocked_product(wh, 1_000, 40).await;
    t.add_stocked_product(wh, 1_000, 7).await;
    let (s, _) = json_of(
        t.post(
            "/api/redis/orders",
            &normal_order(&[(p, 5)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    t.wait_persisted().await;
    let first = t.run_reconcile().await;
    assert_eq!(first["keysRepaired"], 0, "{first}");

    t.set_redis_stock(wh, p, 999).await;

    let run = t.run_reconcile().await;
    assert_eq!(run["keysRepaired"], 1, "{run}");
    assert_eq!(run["keysChecked"], 2);
    assert_eq!(run["ledgerMismatches"], 0);
    assert_eq!(
        run["details"]["repairs"],
        json!([{"locationId": wh, "productId": p, "before": 999, "after": 35}])
    );
    assert_eq!(t.redis_stock(wh, p).await, Some(35));
    assert_eq!(t.run_reconcile().await["keysRepaired"], 0);

    let r = t
        .admin()
        .get("/api/admin/reconciliation?job=reconcile")
        .await;
    let (s, b) = json_of(r).await;
    assert_eq!(s, StatusCode::OK);
    let repaired: Vec<u64> = b["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["keysRepaired"].as_u64().unwrap())
        .collect();
    assert_eq!(repaired, vec![0, 1, 0]);
    t.wait_for_metrics(&[
        "stockflow_cluster_job_last_run_keys_repaired{job=\"reconcile\"} 0",
        "stockflow_cluster_consumer_backlog_events 0",
    ])
    .await;
}

/// A ledger that does not add up is reported, not silently rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_mismatch_is_reported() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    sqlx::query("UPDATE stock SET available = 12 WHERE location_id = ? AND product_id = ?")
        .bind(wh)
        .bind(p)
        .execute(&t.db)
        .await
        .unwrap();
    let run = t.run_reconcile().await;
    assert_eq!(run["ledgerMismatches"], 1);
    assert_eq!(
        run["details"]["mismatches"],
        json!([{"locationId": wh, "productId": p, "available": 12, "expected": 10,
                "reserved": 0, "expectedReserved": 0}])
    );
    assert_eq!(t.available(wh, p).await, 12);
}

/// FLUSHALL on Redis: the service notices and reloads; meanwhile no order is accepted against a
/// missing key; afterwards the stock is right. (A private Redis: flushing the shared one would
/// disturb other tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushall_is_noticed_and_reloaded() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let t = TestApp::spawn_with(|c| {
        c.storage.redis_url = url.into();
        c.health_check_ms = 100;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 300).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    for _ in 0..50 {
        assert_eq!(
            t.post("/api/redis/orders", &body).await.status(),
            StatusCode::ACCEPTED
        );
    }
    t.wait_persisted().await;
    assert_eq!(t.redis_stock(wh, p).await, Some(250));

    // Orders keep coming while Redis is flushed.
    let t = Arc::new(t);
    let accepted = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let t = t.clone();
            let body = body.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let r = t.post("/api/redis/orders", &body).await;
                    match r.status() {
                        StatusCode::ACCEPTED => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        StatusCode::SERVICE_UNAVAILABLE | StatusCode::CONFLICT => {}
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut c = t.redis().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    join_all(workers).await;
    // The watcher reloads everything and marks the location warm again (its epoch marker is back).
    let mut warm = false;
    for _ in 0..100 {
        warm = redis::cmd("EXISTS")
            .arg(t.keys().epoch(sf_routing::LocationId::new_unchecked(wh)))
            .query_async(&mut c)
            .await
            .unwrap();
        if warm {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(warm, "redis was not warmed up again");
    t.wait_persisted().await;
    let sold = 50 + accepted.load(Ordering::Relaxed) as i64;
    // Orders accepted in the instant before the flush may be lost with it (Redis lost them);
    // none is ever sold twice, and the stock agrees with what MySQL holds.
    let confirmed = t.count_orders("CONFIRMED").await;
    assert!(
        confirmed <= sold && confirmed >= 50,
        "{confirmed} confirmed of {sold} accepted"
    );
    assert_eq!(t.available(wh, p).await, 300 - confirmed);
    assert_eq!(t.redis_stock(wh, p).await, Some(300 - confirmed));
    t.assert_converged(InRedis::All).await;
    let run = t.run_reconcile().await;
    assert_eq!(run["keysRepaired"], 0);
}

/// Reconcile under fire: reconcile every second while 20,000 Redis-path orders, cancels and POS
/// sales run on a few hot products: no oversell, nothing lost, and at the end Redis and MySQL
/// agree with zero repairs in every run (a repair would mean the job raced an order).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcile_under_fire_needs_no_repair() {
    let t = TestApp::spawn_with(|c| c.reconcile_schedule = "*/1 * * * * *".into()).await;
    let StockedStore {
        store,
        products,
        key,
    } = t.store_with(4, 4_000).await;
    let t = Arc::new(t);
    let next = Arc::new(AtomicUsize::new(0));
    let sold = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..48)
        .map(|w| {
            let (t, next, sold, key, products) = (
                t.clone(),
                next.clone(),
                sold.clone(),
                key.clone(),
                products.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= 20_000 {
                        return;
                    }
                    let p = products[(i + w) % products.len()];
                    let body = pickup_order(&[(p, 1)], store);
                    // A 503 (MySQL or Redis slow on a busy machine) is asked again with the
                    // same key, so every sale counted is one the service holds.
                    let idem = format!("under-fire-{i}");
                    match i % 10 {
                        0 => {
                            let (s, b, _) = until_final(|| {
                                t.request(Method::POST, &format!("/api/stores/{store}/orders"))
                                    .bearer_auth(&key)
                                    .header("Idempotency-Key", &idem)
                                    .json(&pos_sale(&[(p, 1)]))
                            })
                            .await;
                            match s {
                                StatusCode::CREATED => {
                                    sold.fetch_add(1, Ordering::Relaxed);
                                }
                                StatusCode::CONFLICT => {}
                                s => panic!("pos sale: {s} {b}"),
                            }
                        }
                        1 => {
                            let (s, b, _) = until_final(|| {
                                t.request(Method::POST, "/api/redis/orders")
                                    .header("Idempotency-Key", &idem)
                                    .json(&body)
                            })
                            .await;
                            if s == StatusCode::ACCEPTED {
                                let id = b["orderId"].as_str().unwrap();
                                let path = format!("/api/redis/orders/{id}/cancel");
                                let (s, b, _) =
                                    until_final(|| t.request(Method::PATCH, &path)).await;
                                assert_eq!(s, StatusCode::OK, "cancel: {b}");
                            }
                        }
                        _ => {
                            let (s, b, _) = until_final(|| {
                                t.request(Method::POST, "/api/redis/orders")
                                    .header("Idempotency-Key", &idem)
                                    .json(&body)
                            })
                            .await;
                            match s {
                                StatusCode::ACCEPTED => {
                                    sold.fetch_add(1, Ordering::Relaxed);
                                }
                                StatusCode::CONFLICT => {}
                                s => panic!("order: {s} {b}"),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for w in join_all(workers).await {
        w.unwrap();
    }
    t.wait_persisted().await;
    let sold = sold.load(Ordering::Relaxed) as i64;
    let mut available = 0;
    for p in &products {
        let v = t.available(store, *p).await;
        assert!(v >= 0);
        available += v;
    }
    assert_eq!(
        available,
        16_000 - sold,
        "units sold must match the stock taken"
    );
    assert_eq!(
        t.count_orders("CONFIRMED").await,
        sold,
        "every accepted sale is in MySQL once"
    );
    t.assert_converged(InRedis::All).await;
    let final_run = t.run_reconcile().await;
    assert_eq!(final_run["keysRepaired"], 0);
    let runs: Vec<(i64, bool)> =
        sqlx::query_as("SELECT keys_repaired, ok FROM job_runs WHERE job = 'reconcile'")
            .fetch_all(&t.db)
            .await
            .unwrap();
    assert!(
        runs.len() >= 3,
        "reconcile ran only {} times during the run",
        runs.len()
    );
    assert!(
        runs.iter().all(|(r, ok)| *r == 0 && *ok),
        "a run repaired or failed: {runs:?}"
    );
}

/// Two instances: a job runs on one at a time; when the holder dies its lease expires and the
/// other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_lease_passes_to_another_instance_when_the_holder_dies() {
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let store = t.app.as_ref().unwrap().storage.clone();
    let stats = Arc::new(Default::default());
    let runner = |name: &str| {
        Arc::new(JobRunner::new(
            store.clone(),
            name.into(),
            Duration::from_secs(2),
            Default::default(),
            Arc::clone(&stats),
        ))
    };
    let (a, b) = (runner("instance-a"), runner("instance-b"));
    // A takes the lease with a long run, then dies (its task and lease renewal are dropped).
    let holder = {
        let a = a.clone();
        tokio::spawn(async move {
            a.run_named("test-job", |_| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Figures::default())
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quick = || b.run_named("test-job", |_| async { Ok(Figures::default()) });
    assert!(
        matches!(quick().await.unwrap(), RunOutcome::Skipped(_)),
        "B ran while A held the lease"
    );
    holder.abort();
    let mut took_over = None;
    for _ in 0..50 {
        if let RunOutcome::Ran(run) = quick().await.unwrap() {
            took_over = Some(run);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = took_over.expect("B never took over the lease");
    assert_eq!(run.instance, "instance-b");
}

/// Two running apps schedule reconcile on ticks they partly share: every 12 s both fire, and 4 s
/// and 8 s later each fires alone in turn, so both must run the job. Every MySQL reply is delayed,
/// so that a run lasts longer than two schedulers can be apart at a shared tick (each checks every
/// 500 ms): at a shared tick one instance runs and the other finds the lease taken — without the
/// lease, the two runs would overlap. Both instances run the job, and no two runs ever overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_runs_on_two_instances_never_overlap() {
    // The seconds of the minute that are 0 or `alone` modulo 12.
    let ticks = |alone: u32| {
        let seconds: Vec<String> = (0..60u32)
            .filter(|s| s % 12 == 0 || s % 12 == alone)
            .map(|s| s.to_string())
            .collect();
        format!("{} * * * * *", seconds.join(","))
    };
    let mysql = Proxy::start(&host_port(&server_url())).await;
    let t = TestApp::spawn_with(|c| {
        c.storage.database_url = via(c.storage.database_url.expose(), mysql.port).into();
        // Slow is fine here: every run must end, and be recorded.
        c.storage.db_connect_timeout_ms = 10_000;
        c.storage.db_command_timeout_ms = 10_000;
        c.reconcile_schedule = ticks(4);
    })
    .await;
    t.warehouse_with(5, 10).await;
    let second = t.spawn_instance(|c| c.reconcile_schedule = ticks(8)).await;
    let instances = [
        t.app.as_ref().unwrap().instance.clone(),
        second.app().instance.clone(),
    ];
    mysql.set_latency(Duration::from_millis(LATENCY_MS));
    let slow_since = chrono::Utc::now().naive_utc();
    // Runs that started once MySQL was slow: instance, start and duration in ms, and whether it
    // started in the second of a shared tick.
    let slow_runs = || async {
        sqlx::query_as::<_, (String, i64, i64, bool)>(
            "SELECT instance, CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED), duration_ms, \
             SECOND(started_at) % 12 = 0 \
             FROM job_runs WHERE job = 'reconcile' AND started_at >= ? ORDER BY started_at",
        )
        .bind(slow_since)
        .fetch_all(&t.db)
        .await
        .unwrap()
    };
    // A run at a shared tick was seen, and each instance started a run after it: whatever ran
    // at that tick has ended and is recorded (an instance runs a job once at a time, and records
    // a run before it starts the next).
    let enough = |runs: &[(String, i64, i64, bool)]| {
        runs.iter().find(|r| r.3).is_some_and(|shared| {
            instances
                .iter()
                .all(|i| runs.iter().any(|r| &r.0 == i && r.1 > shared.1))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !enough(&slow_runs().await) {
        assert!(
            Instant::now() < deadline,
            "no shared tick with both instances running after it: {:?}",
            slow_runs().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await;
    mysql.set_latency(Duration::ZERO);

    let runs: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT instance, CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED), duration_ms FROM job_runs \
         WHERE job = 'reconcile' ORDER BY started_at",
    )
    .fetch_all(&t.db)
    .await
    .unwrap();
    for pair in runs.windows(2) {
        assert!(pair[0].1 + pair[0].2 <= pair[1].1, "runs overlap: {pair:?}");
    }
    let slow = slow_runs().await;
    eprintln!("runs while MySQL was slow (instance, start ms, duration ms, shared tick): {slow:?}");
    assert!(enough(&slow), "{slow:?}");
    assert!(
        slow.iter().all(|r| r.2 >= 600),
        "a run took less than 600 ms: the overlap check proves little ({slow:?})"
    );
}

/// A job that panics once still runs at its next tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_panics_runs_again_at_its_next_tick() {
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let store = t.app.as_ref().unwrap().storage.clone();
    let runner = Arc::new(JobRunner::new(
        store,
        "i".into(),
        Duration::from_secs(5),
        Default::default(),
        Arc::new(Default::default()),
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let scheduler = tokio_cron_scheduler::JobScheduler::new().await.unwrap();
    let (r, c) = (runner.clone(), calls.clone());
    scheduler
        .add(
            tokio_cron_scheduler::Job::new_async("*/1 * * * * *", move |_, _| {
                let (r, c) = (r.clone(), c.clone());
                Box::pin(async move {
                    let _ = r
                        .run_named("flaky", move |_| async move {
                            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                                panic!("first run fails");
                            }
                            Ok(Figures::default())
                        })
                        .await;
                })
            })
            .unwrap(),
        )
        .await
        .unwrap();
    scheduler.start().await.unwrap();
    for _ in 0..60 {
        if calls.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut s = scheduler;
    s.shutdown().await.unwrap();
    let runs: Vec<(bool, String)> = sqlx::query_as(
        "SELECT ok, COALESCE(details, '') FROM job_runs WHERE job = 'flaky' ORDER BY id",
    )
    .fetch_all(&t.db)
    .await
    .unwrap();
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(!runs[0].0 && runs[0].1.contains("panic"), "{runs:?}");
    assert!(runs[1].0, "{runs:?}");
}
