//! Events out, as the pull feed shows them (`GET /api/events`): every cause writes its event
//! once, in the transaction of its change; per order the events come in the order they
//! happened, also under many concurrent clients; stock events fire once per crossing; a channel
//! reads only its own, an operator everything, and a cursor is stable.

use crate::common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Every event `read` may see after `after`, page after page (`limit` per page).
async fn feed_from(t: &TestApp, bearer: &str, after: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = after.to_owned();
    loop {
        let r = t
            .client
            .get(format!("{}/api/events?after={after}&limit={limit}", t.base))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        let (s, page) = json_of(r).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            assert_eq!(page["nextCursor"], after.as_str(), "{page}");
            return out;
        }
        assert_eq!(
            page["nextCursor"],
            events.last().unwrap()["cursor"],
            "{page}"
        );
        after = page["nextCursor"].as_str().unwrap().to_owned();
        out.extend(events);
    }
}

/// Every event, as an operator reads them.
async fn all_events(t: &TestApp) -> Vec<Value> {
    feed_from(t, ADMIN, "0", 500).await
}

/// The types of the events about `subject`, in feed order.
fn types_of(events: &[Value], subject: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| subject_of(e) == subject)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// What an event is about: its order, hold, or stock row.
fn subject_of(e: &Value) -> String {
    let d = &e["data"];
    if let Some(id) = d["orderId"].as_str() {
        return id.to_owned();
    }
    if let Some(id) = d["holdId"].as_str() {
        return id.to_owned();
    }
    if d["sellableOnline"].is_i64() {
        return format!("stock:{}:{}", d["locationId"], d["productId"]);
    }
    "loss".into()
}

fn order_id(b: &Value) -> String {
    b["orderId"].as_str().expect("an orderId").to_owned()
}

async fn created(t: &TestApp, path: &str, body: &Value, want: StatusCode) -> Value {
    let (s, b) = json_of(t.post(path, body).await).await;
    assert_eq!(s, want, "{b}");
    b
}

async fn store_step(t: &TestApp, s: &StockedStore, id: &str, what: &str, body: Value) {
    let r = t
        .client
        .post(format!(
            "{}/api/stores/{}/orders/{id}/{what}",
            t.base, s.store
        ))
        .bearer_auth(&s.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (st, b) = json_of(r).await;
    assert_eq!(st, StatusCode::OK, "{what}: {b}");
}

/// Each cause writes its event once, with the resource as `GET` shows it at that moment: an order
/// placed on each path, persisted, rejected, cancelled (by the shop, before and after it was
/// persisted, and by the not-collected job), made ready and collected; a hold expired. Events are
/// written in the transaction of their change: a refused order writes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cause_writes_its_event_once() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = true;
        c.pickup_expiry = Duration::from_secs(1);
        c.not_collected_schedule = "* * * * * *".into();
        c.hold_expiry_schedule = "* * * * * *".into();
    })
    .await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    let s = t.store_with(1, 100).await;
    let sp = s.products[0];
    let home = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);

    // The Redis path: one confirmed, one cancelled before it reached MySQL, one rejected.
    let redis_confirmed = t.place_redis(&home).await;
    let cancelled_early = t.place_redis(&home).await;
    let (st, b) = json_of(
        t.patch(&format!("/api/redis/orders/{cancelled_early}/cancel"))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let rejected = t.place_redis(&home).await;
    t.misdirect_reservation(wh, &rejected).await;
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.order_status(&rejected).await, "REJECTED");
    // Persisted, then cancelled.
    let (st, b) = json_of(
        t.patch(&format!("/api/redis/orders/{redis_confirmed}/cancel"))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");

    // The DB-lock path: placed and cancelled; a pickup made ready and collected; a pickup left
    // ready until the job cancels it; an order refused (no stock) writes nothing.
    let db = order_id(&created(&t, "/api/orders", &home, StatusCode::CREATED).await);
    let (st, _) = json_of(t.patch(&format!("/api/orders/{db}/cancel")).await).await;
    assert_eq!(st, StatusCode::OK);
    let pickup = created(
        &t,
        "/api/orders",
        &pickup_order(&[(sp, 2)], s.store),
        StatusCode::CREATED,
    )
    .await;
    let collected = order_id(&pickup);
    let code = pickup["fulfillment"]["pickupCode"].as_str().unwrap();
    store_step(&t, &s, &collected, "ready", json!({})).await;
    store_step(&t, &s, &collected, "collect", json!({"pickupCode": code})).await;
    let left = order_id(
        &created(
            &t,
            "/api/orders",
            &pickup_order(&[(sp, 1)], s.store),
            StatusCode::CREATED,
        )
        .await,
    );
    store_step(&t, &s, &left, "ready", json!({})).await;
    let (st, _) = json_of(
        t.post(
            "/api/orders",
            &normal_order(&[(p, 1_000)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // A hold, expired by the job.
    let mut hold = home.clone();
    hold["ttlSeconds"] = json!(10);
    let hold = created(&t, "/api/holds", &hold, StatusCode::CREATED).await;
    let hold_id = hold["holdId"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE holds SET expires_at = NOW(3) WHERE id = ?")
        .bind(&hold_id)
        .execute(&t.db)
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = all_events(&t).await;
        if types_of(&events, &left).len() == 3 && types_of(&events, &hold_id).len() == 1 {
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the jobs' events did not come: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expect: BTreeMap<&str, Vec<&str>> = [
        (
            redis_confirmed.as_str(),
            vec!["order.accepted", "order.confirmed", "order.cancelled"],
        ),
        (
            cancelled_early.as_str(),
            vec!["order.accepted", "order.cancelled"],
        ),
        (rejected.as_str(), vec!["order.accepted", "order.rejected"]),
        (db.as_str(), vec!["order.confirmed", "order.cancelled"]),
        (
            collected.as_str(),
            vec![
                "order.confirmed",
                "order.fulfillment_changed",
                "order.fulfillment_changed",
            ],
        ),
        (
            left.as_str(),
            vec![
                "order.confirmed",
                "order.fulfillment_changed",
                "order.cancelled",
            ],
        ),
        (hold_id.as_str(), vec!["hold.expired"]),
    ]
    .into_iter()
    .collect();
    for (subject, want) in &expect {
        assert_eq!(&types_of(&events, subject), want, "{subject}");
    }
    // Nothing else but stock crossings (none here: the threshold is 0 and nothing sold out).
    let others: Vec<&Value> = events
        .iter()
        .filter(|e| !expect.contains_key(subject_of(e).as_str()))
        .collect();
    assert!(others.is_empty(), "{others:#?}");

    // Each shows its resource as GET showed it then.
    let of = |subject: &str, kind: &str| -> Value {
        events
            .iter()
            .find(|e| subject_of(e) == subject && e["type"] == kind)
            .unwrap()["data"]
            .clone()
    };
    assert_eq!(of(&redis_confirmed, "order.accepted")["status"], "ACCEPTED");
    assert_eq!(
        of(&redis_confirmed, "order.confirmed")["status"],
        "CONFIRMED"
    );
    assert_eq!(
        of(&redis_confirmed, "order.cancelled")["status"],
        "CANCELLED"
    );
    assert_eq!(of(&rejected, "order.rejected")["status"], "REJECTED");
    assert!(of(&rejected, "order.rejected")["rejectReason"].is_string());
    assert_eq!(
        of(&left, "order.cancelled")["cancelReason"],
        "NOT_COLLECTED"
    );
    let steps: Vec<Value> = events
        .iter()
        .filter(|e| subject_of(e) == collected && e["type"] == "order.fulfillment_changed")
        .map(|e| e["data"]["fulfillment"]["status"].clone())
        .collect();
    assert_eq!(steps, vec![json!("READY_FOR_PICKUP"), json!("COLLECTED")]);
    assert_eq!(of(&hold_id, "hold.expired")["status"], "EXPIRED");
    let (_, now) = json_of(t.get(&format!("/api/orders/{db}")).await).await;
    assert_eq!(of(&db, "order.cancelled"), now);
    // Ids are unique, timestamps are RFC 3339.
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len());
    for e in &events {
        let ts = e["timestamp"].as_str().unwrap();
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
    }
}

/// `sellableOnline` crossing the location's threshold or zero writes one event per crossing,
/// whatever writes the stock (orders on both paths, many at once, the till, an operator), never
/// one per order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_events_fire_once_per_crossing() {
    let t = Arc::new(TestApp::spawn().await);
    let s = t.store_with(2, 20).await;
    let (a, b) = (s.products[0], s.products[1]);
    let (st, body) = json_of(
        t.admin()
            .patch(
                &format!("/api/admin/locations/{}", s.store),
                &json!({"lowStockThreshold": 5}),
            )
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["lowStockThreshold"], 5);

    // 20 units of `a`, 20 concurrent one-unit orders split over both paths: low once (at 5), out
    // once (at 0), and the orders past it refused.
    let order = pickup_order(&[(a, 1)], s.store);
    let answers = join_all((0..24).map(|i| {
        let t = t.clone();
        let order = order.clone();
        async move {
            let path = if i % 2 == 0 {
                "/api/orders"
            } else {
                "/api/redis/orders"
            };
            t.post(path, &order).await.status()
        }
    }))
    .await;
    let sold = answers.iter().filter(|s| s.is_success()).count();
    assert_eq!(sold, 20, "{answers:?}");
    settle(&t).await;
    // The till sells `b` down to 3 (low); an operator restocks `a` (back) and counts `b` at 0
    // (out).
    let r = t
        .client
        .post(format!("{}/api/stores/{}/orders", t.base, s.store))
        .bearer_auth(&s.key)
        .json(&pos_sale(&[(b, 17)]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(t.admin_adjust(s.store, a, 3).await.status(), StatusCode::OK);
    assert_eq!(
        t.admin_set_stock(s.store, b, 0).await.status(),
        StatusCode::OK
    );

    let events = all_events(&t).await;
    let stock_a = format!("stock:{}:{a}", s.store);
    let stock_b = format!("stock:{}:{b}", s.store);
    assert_eq!(
        types_of(&events, &stock_a),
        vec!["stock.low", "stock.out", "stock.back"]
    );
    assert_eq!(types_of(&events, &stock_b), vec!["stock.low", "stock.out"]);
    let figures: Vec<Value> = events
        .iter()
        .filter(|e| subject_of(e) == stock_a)
        .map(|e| e["data"]["sellableOnline"].clone())
        .collect();
    // A consumer batch persists several orders in one change: low is met at 5 or below (at 0
    // when one change crosses both).
    let low = figures[0].as_i64().unwrap();
    assert!((0..=5).contains(&low), "{figures:?}");
    assert_eq!(figures[1..], [json!(0), json!(3)]);
}

/// 64 clients place and cancel orders on both paths at once: every order's events come in the
/// order they happened (accepted, then confirmed, then cancelled), each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_order_events_keep_their_order_under_64_clients() {
    let t = Arc::new(TestApp::spawn().await);
    let (_, p) = t.warehouse_with_product(1_000, 10_000).await;
    let order = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let placed = join_all((0..64).map(|i| {
        let t = t.clone();
        let order = order.clone();
        async move {
            let mut mine = Vec::new();
            for j in 0..6 {
                let redis = (i + j) % 2 == 0;
                let path = if redis {
                    "/api/redis/orders"
                } else {
                    "/api/orders"
                };
                let (s, b) = json_of(t.post(path, &order).await).await;
                assert!(s.is_success(), "{b}");
                let id = order_id(&b);
                let cancel = j % 3 == 0;
                if cancel {
                    let (s, b) = json_of(t.patch(&format!("{path}/{id}/cancel")).await).await;
                    assert_eq!(s, StatusCode::OK, "{b}");
                }
                mine.push((id, redis, cancel));
            }
            mine
        }
    }))
    .await;
    settle(&t).await;
    let events = all_events(&t).await;
    for (id, redis, cancel) in placed.into_iter().flatten() {
        let got = types_of(&events, &id);
        let mut want: Vec<&str> = Vec::new();
        if redis {
            want.push("order.accepted");
        }
        // A Redis-path order cancelled before it reached MySQL is written cancelled at once.
        let early = redis && cancel && got.len() == 2;
        if !early {
            want.push("order.confirmed");
        }
        if cancel {
            want.push("order.cancelled");
        }
        assert_eq!(got, want, "{id}");
    }
    // The feed's places follow one another.
    let cursors: Vec<u64> = events
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[1] == w[0] + 1), "{cursors:?}");
}

/// A channel reads its own orders' events, an operator every event; pages of any size walk the
/// feed once, the same cursor gives the same page, and a cursor the feed never gave is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_reads_its_own_events_and_an_operator_all() {
    let t = TestApp::spawn().await;
    let other = shop_channel_named(t.storage(), "other-shop").await;
    let (_, p) = t.warehouse_with_product(1_000, 100).await;
    let order = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let other_client = shop_client(&other.key);
    for _ in 0..3 {
        ours.push(order_id(
            &created(&t, "/api/orders", &order, StatusCode::CREATED).await,
        ));
        let r = other_client
            .post(format!("{}/api/orders", t.base))
            .json(&order)
            .send()
            .await
            .unwrap();
        let (s, b) = json_of(r).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        theirs.push(order_id(&b));
    }
    let mine = feed_from(&t, &t.shop.key, "0", 100).await;
    let subjects: Vec<String> = mine.iter().map(subject_of).collect();
    assert_eq!(subjects, ours);
    let all = all_events(&t).await;
    assert_eq!(all.len(), 6);
    // Pages of 1, 2 and 5 see the same events in the same order.
    for limit in [1, 2, 5] {
        assert_eq!(feed_from(&t, ADMIN, "0", limit).await, all);
    }
    let after = all[1]["cursor"].as_str().unwrap();
    assert_eq!(feed_from(&t, ADMIN, after, 500).await, all[2..].to_vec());
    assert_eq!(feed_from(&t, ADMIN, after, 500).await, all[2..].to_vec());
    // Unknown keys and bad cursors.
    let r = t
        .client
        .get(format!("{}/api/events", t.base))
        .bearer_auth("sfc_unknown")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t
        .client
        .get(format!("{}/api/events?after=x1", t.base))
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("after"), "{b}");
    let _ = theirs;
}

/// Redis losing its data writes one `order.lost` naming where and since when, which every
/// channel reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_loss_writes_one_order_lost_every_channel_reads() {
    let t = TestApp::spawn_with(|c| c.health_check_ms = 100).await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    t.place_redis(&normal_order(&[(p, 1)], SEOUL.0, SEOUL.1))
        .await;
    settle(&t).await;
    t.lose_redis_data().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let lost = loop {
        let mine = feed_from(&t, &t.shop.key, "0", 100).await;
        let lost: Vec<Value> = mine
            .into_iter()
            .filter(|e| e["type"] == "order.lost")
            .collect();
        if !lost.is_empty() {
            break lost;
        }
        assert!(tokio::time::Instant::now() < deadline, "no order.lost");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(lost.len(), 1, "{lost:#?}");
    let locations = lost[0]["data"]["locations"].as_array().unwrap();
    assert!(locations.contains(&json!(wh)), "{lost:#?}");
    assert!(lost[0]["data"]["lostSince"].is_string());
    // Noticed again (another instance, another check): still one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = all_events(&t).await;
    assert_eq!(all.iter().filter(|e| e["type"] == "order.lost").count(), 1);
}

/// The outbox check the fault tests end with finds each kind of mismatch: a change without its
/// event, an event without its change, a duplicate, and a stock event that disagrees with the
/// row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_check_finds_every_kind_of_mismatch() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 3).await;
    let order = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(order_id(
                &created(&t, "/api/orders", &order, StatusCode::CREATED).await,
            ));
        }
        ids
    };
    t.assert_outbox().await;
    let tamper = |sql: &'static str, id: String| {
        let t = &t;
        async move {
            sqlx::query(sql).bind(id).execute(&t.db).await.unwrap();
            outbox_violations(t).await
        }
    };
    // A change without its event.
    let v = tamper("DELETE FROM events WHERE subject = ?", ids[0].clone()).await;
    assert!(v.iter().any(|e| e.contains(&ids[0])), "{v:?}");
    // A duplicate.
    let v = tamper(
        "INSERT INTO events (event_id, type, subject, payload) \
         SELECT CONCAT(event_id, 'x'), type, subject, payload FROM events WHERE subject = ?",
        ids[1].clone(),
    )
    .await;
    assert!(
        v.iter().any(|e| e.contains(&ids[1]) && e.contains("twice")),
        "{v:?}"
    );
    // An event without its change.
    let v = tamper("DELETE FROM order_lines WHERE order_id = ?", ids[2].clone()).await;
    let _ = v;
    let v = tamper("DELETE FROM orders WHERE id = ?", ids[2].clone()).await;
    assert!(
        v.iter()
            .any(|e| e.contains(&ids[2]) && e.contains("no MySQL row")),
        "{v:?}"
    );
    // The row sold out (its event says so); a stock.back that never happened.
    let subject = format!("stock:{wh}:{p}");
    let v = tamper(
        "INSERT INTO events (event_id, type, subject, payload) \
         SELECT CONCAT(event_id, 'y'), 'stock.back', subject, \
         JSON_SET(payload, '$.data.sellableOnline', 2) FROM events WHERE subject = ?",
        subject.clone(),
    )
    .await;
    assert!(v.iter().any(|e| e.contains(&subject)), "{v:?}");
}

/// Housekeeping removes events past their 30 days, unless a delivery still waits for them; the
/// feed goes on from the events kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_their_retention_are_removed() {
    let t = TestApp::spawn_with(|c| {
        c.jobs_enabled = true;
        c.housekeeping_schedule = "* * * * * *".into();
    })
    .await;
    let (_, p) = t.warehouse_with_product(1_000, 100).await;
    let order = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(order_id(
            &created(&t, "/api/orders", &order, StatusCode::CREATED).await,
        ));
    }
    let before = all_events(&t).await;
    assert_eq!(before.len(), 3);
    sqlx::query("UPDATE events SET created_at = NOW(3) - INTERVAL 31 DAY WHERE subject IN (?, ?)")
        .bind(&ids[0])
        .bind(&ids[1])
        .execute(&t.db)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = all_events(&t).await;
        if left.len() == 1 {
            assert_eq!(left[0], before[2]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sequencer finds the events without a place through a key in (place, id) order, never by
/// sorting them all: after a burst of orders thousands wait, and a pass that sorted every one of
/// them each time ran past its deadline (found by `ops/bench --scale retail`). 3,000 events wait
/// here; the plan of the sequencer's read must name the key and no sort, and the passes place
/// every one in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequencer_reads_unplaced_events_in_order_without_a_sort() {
    // The instance's own dispatcher would sequence these events too; the passes counted here
    // are this test's alone.
    let t = TestApp::spawn_with(|c| c.webhook_dispatcher = false).await;
    sqlx::query(
        "INSERT INTO events (event_id, type, subject, payload) \
         SELECT CONCAT('msg_t', seq), 'order.accepted', CONCAT('o', seq), '{}' FROM seq_1_to_3000",
    )
    .execute(&t.db)
    .await
    .unwrap();
    sqlx::query("ANALYZE TABLE events")
        .execute(&t.db)
        .await
        .unwrap();
    let plan: String = sqlx::query_scalar(&format!(
        "EXPLAIN FORMAT=JSON {}",
        sf_persistence::events::UNPLACED
    ))
    .bind(1000)
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert!(plan.contains("\"ix_events_seq_id\""), "{plan}");
    assert!(!plan.contains("filesort"), "{plan}");

    let mut placed = 0;
    loop {
        let n = t.storage().events().sequence().await.unwrap();
        if n == 0 {
            break;
        }
        placed += n;
    }
    assert_eq!(placed, 3000);
    let out_of_order: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events a JOIN events b ON b.id > a.id WHERE b.seq < a.seq",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    let (unplaced, first, last): (i64, Option<u64>, Option<u64>) =
        sqlx::query_as("SELECT CAST(SUM(seq IS NULL) AS SIGNED), MIN(seq), MAX(seq) FROM events")
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert_eq!(
        (out_of_order, unplaced, first, last),
        (0, 0, Some(1), Some(3000))
    );
}
