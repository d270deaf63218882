//! Routing by the clock, over the HTTP API on both order paths: same-day orders go only to stores
//! in their same-day window (open, before the cut-off, not on a closed date), a same-day order
//! that only closed stores could fill is a 409 that says when same-day opens again and where a
//! pickup would be ready, and every pickup answer carries `readyBy`.
//!
//! The hours are set relative to the real current time, in a fixed-offset zone (`Etc/GMT…`)
//! where it is mid-morning to mid-afternoon now, so each test holds whenever it runs.

use crate::common::*;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A zone where the local hour is between 9 and 14 now, its IANA name, and now in it.
fn midday_zone() -> (String, Zoned) {
    let utc_hour = i32::from(Timestamp::now().to_zoned(TimeZone::UTC).hour());
    // UTC+k with local hour 11 ± 2; `Etc/GMT-k` is UTC+k (the sign is POSIX's).
    let k = (11 - utc_hour).rem_euclid(24);
    let k = if k > 14 { k - 24 } else { k };
    let name = match k {
        0 => "Etc/GMT".to_owned(),
        k if k > 0 => format!("Etc/GMT-{k}"),
        k => format!("Etc/GMT+{}", -k),
    };
    let now = Timestamp::now().to_zoned(TimeZone::get(&name).unwrap());
    assert!((9..=14).contains(&now.hour()), "{name} {now}");
    (name, now)
}

fn hhmm(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// Every day 06:00–23:00.
fn daily() -> Value {
    json!(["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
        .iter()
        .map(|d| json!({"day": d, "opens": "06:00", "closes": "23:00"}))
        .collect::<Vec<_>>())
}

/// RFC 3339 of a local date and time in the zone of `now`.
fn at(now: &Zoned, date: Date, time: &str) -> String {
    let t: Time = time.parse().unwrap();
    let z = date
        .to_datetime(t)
        .to_zoned(now.time_zone().clone())
        .unwrap();
    sf_routing::rfc3339(&z)
}

/// `readyBy` of `b` is 30 minutes after a moment between `before` and `after` (to the second).
fn assert_ready_in_half_an_hour(b: &Value, before: Timestamp, after: Timestamp) {
    let ready: Timestamp = b["readyBy"].as_str().unwrap().parse().unwrap();
    let half_an_hour = SignedDuration::from_mins(30);
    assert!(
        ready.duration_since(before) >= half_an_hour - SignedDuration::from_secs(1)
            && ready.duration_since(after) <= half_an_hour,
        "{b}"
    );
}

/// Sets a store's calendar through the operators' route.
async fn set_hours(t: &TestApp, store: u64, calendar: Value) {
    let (s, b) = json_of(
        t.admin()
            .patch(&format!("/api/admin/locations/{store}"), &calendar)
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// The town's stores, with hours in a zone where it is midday: `near` is past its same-day
/// cut-off, `middle` is closed today, `far` takes same-day orders for two more hours.
async fn town_with_hours(t: &TestApp) -> (Town, Zoned) {
    let town = t.town().await;
    let (zone, now) = midday_zone();
    let cutoff_passed = hhmm(now.time() - 1.hour());
    let cutoff_ahead = hhmm(now.time() + 2.hours());
    set_hours(
        t,
        town.near,
        json!({"timeZone": zone, "openingHours": daily(), "sameDayCutoff": cutoff_passed}),
    )
    .await;
    set_hours(
        t,
        town.middle,
        json!({"timeZone": zone, "openingHours": daily(), "closedDates": [now.date().to_string()]}),
    )
    .await;
    set_hours(
        t,
        town.far,
        json!({"timeZone": zone, "openingHours": daily(), "sameDayCutoff": cutoff_ahead}),
    )
    .await;
    (town, now)
}

/// Places an order on one path; answers (status, body).
async fn place(t: &TestApp, path: &str, body: &Value) -> (StatusCode, Value) {
    json_of(t.post(path, body).await).await
}

const PATHS: [&str; 2] = ["/api/orders", "/api/redis/orders"];

/// The nearest store in its same-day window takes a same-day order: not the nearer one past its
/// cut-off, nor the one closed today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_day_skips_stores_past_their_cut_off_or_closed_today() {
    let t = TestApp::spawn().await;
    let (town, _) = town_with_hours(&t).await;
    for s in [town.near, town.middle, town.far] {
        t.stock_row(s, town.product, 10).await;
    }
    for path in PATHS {
        let (s, b) = place(&t, path, &same_day_order(&[(town.product, 1)])).await;
        assert!(s == StatusCode::CREATED || s == StatusCode::ACCEPTED, "{b}");
        assert_eq!(b["fulfillmentLocationId"], town.far, "{path}: {b}");
        assert!(b.get("readyBy").is_none(), "{b}");
    }
    settle(&t).await;
    assert_eq!(t.stock_states(town.far, town.product).await, (8, 2, 10));
    assert_eq!(t.stock_states(town.near, town.product).await, (10, 0, 10));
    t.assert_ledger_identities().await;
}

/// When only stores outside their window have the goods, a same-day order is a 409
/// `same-day-closed`: when the first of them opens again, and each as a pickup with its
/// `readyBy`. Nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_day_closed_says_when_it_opens_and_where_to_pick_up() {
    let t = TestApp::spawn().await;
    let (town, now) = town_with_hours(&t).await;
    t.stock_row(town.near, town.product, 5).await;
    t.stock_row(town.middle, town.product, 5).await;
    t.stock_row(town.far, town.product, 0).await;
    let tomorrow = now.date().tomorrow().unwrap();
    for path in PATHS {
        let before = Timestamp::now();
        let (s, b) = place(&t, path, &same_day_order(&[(town.product, 2)])).await;
        let after = Timestamp::now();
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["type"], "/problems/same-day-closed", "{b}");
        assert_eq!(b["nextSameDayAt"], at(&now, tomorrow, "06:00"), "{b}");
        let alts = b["alternatives"].as_array().unwrap();
        let ids: Vec<u64> = alts
            .iter()
            .map(|a| a["storeId"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [town.near, town.middle], "{b}");
        // Open now: ready after the 30 minutes of preparation.
        assert_ready_in_half_an_hour(&alts[0], before, after);
        // Closed today: ready after tomorrow's opening.
        assert_eq!(alts[1]["readyBy"], at(&now, tomorrow, "06:30"), "{b}");
    }
    assert_eq!(t.count_orders("CONFIRMED").await, 0);
    assert_eq!(t.stock_states(town.near, town.product).await, (5, 0, 5));
    assert_eq!(t.stock_states(town.middle, town.product).await, (5, 0, 5));
}

/// Stores in the radius without the goods at all: still out of stock, as before hours existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_day_with_no_goods_anywhere_is_out_of_stock() {
    let t = TestApp::spawn().await;
    let (town, _) = town_with_hours(&t).await;
    for s in [town.near, town.middle, town.far] {
        t.stock_row(s, town.product, 1).await;
    }
    for path in PATHS {
        let (s, b) = place(&t, path, &same_day_order(&[(town.product, 2)])).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["type"], "/problems/out-of-stock", "{path}: {b}");
    }
}

/// A pickup at a store closed today is accepted, ready after its next opening plus preparation;
/// at an open store (and at one without hours) after the preparation. `readyBy` is stored with
/// the order and read back as it was promised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pickup_answer_carries_ready_by_and_keeps_it() {
    let t = TestApp::spawn().await;
    let (town, now) = town_with_hours(&t).await;
    let plain = t.add_location("STORE", "No hours", 37.58, 126.98).await;
    for s in [town.near, town.middle, plain] {
        t.stock_row(s, town.product, 10).await;
    }
    let tomorrow = now.date().tomorrow().unwrap();
    for path in PATHS {
        let (s, b) = place(&t, path, &pickup_order(&[(town.product, 1)], town.middle)).await;
        assert!(s == StatusCode::CREATED || s == StatusCode::ACCEPTED, "{b}");
        assert_eq!(b["readyBy"], at(&now, tomorrow, "06:30"), "{b}");
        let id = b["orderId"].as_str().unwrap().to_owned();
        settle(&t).await;
        let (_, got) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
        assert_eq!(got["status"], "CONFIRMED", "{got}");
        assert_eq!(got["readyBy"], b["readyBy"], "{got}");

        for store in [town.near, plain] {
            let before = Timestamp::now();
            let (s, b) = place(&t, path, &pickup_order(&[(town.product, 1)], store)).await;
            let after = Timestamp::now();
            assert!(s == StatusCode::CREATED || s == StatusCode::ACCEPTED, "{b}");
            assert_ready_in_half_an_hour(&b, before, after);
        }
    }
    settle(&t).await;
    assert_eq!(t.stock_states(town.middle, town.product).await, (8, 2, 10));
    t.assert_ledger_identities().await;
}
