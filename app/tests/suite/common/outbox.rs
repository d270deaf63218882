//! The outbox against what MySQL holds: no event without its change, no change without its event,
//! each order's events in the order its changes were made. Used after runs with faults.

use super::TestApp;
use serde_json::Value;
use sqlx::Row;
use std::collections::HashMap;

/// The status an order event shows, by its type (`None`: any).
fn status_of_type(kind: &str) -> Option<&'static str> {
    match kind {
        "order.accepted" => Some("ACCEPTED"),
        "order.confirmed" | "order.fulfillment_changed" => Some("CONFIRMED"),
        "order.rejected" => Some("REJECTED"),
        "order.cancelled" => Some("CANCELLED"),
        _ => None,
    }
}

/// The fulfilment steps in the order they are taken.
fn step_rank(status: &str) -> usize {
    match status {
        "UNFULFILLED" => 0,
        "READY_FOR_PICKUP" => 1,
        _ => 2,
    }
}

/// Every violation of the outbox's rules, after every event has its place in the feed:
/// - every order MySQL holds has its events, and only orders MySQL holds have any;
/// - an order's events start with `order.accepted` exactly when it took the Redis path, each
///   shows the status its type says, statuses follow the order's life (no second confirmation
///   without a rejection between, one cancellation, nothing after it), fulfilment only moves
///   forward, and the last status and step shown are those MySQL holds;
/// - each expired hold has one `hold.expired`, no other hold has any;
/// - per stock row, `stock.out` and `stock.back` alternate, and the last agrees with the row's
///   `sellableOnline` now; a `stock.low` shows at most its threshold.
pub async fn outbox_violations(t: &TestApp) -> Vec<String> {
    while t.storage().events().sequence().await.unwrap() > 0 {}
    let mut v = Vec::new();
    let mut by_subject: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for r in sqlx::query("SELECT subject, type, payload FROM events ORDER BY seq")
        .fetch_all(&t.db)
        .await
        .unwrap()
    {
        let payload: String = r.get("payload");
        let payload: Value = serde_json::from_str(&payload).unwrap();
        by_subject
            .entry(r.get("subject"))
            .or_default()
            .push((r.get("type"), payload["data"].clone()));
    }
    let unsequenced: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE seq IS NULL")
        .fetch_one(&t.db)
        .await
        .unwrap();
    if unsequenced > 0 {
        v.push(format!(
            "events: {unsequenced} committed events have no place"
        ));
    }

    let mut orders = 0;
    for r in sqlx::query(
        "SELECT id, CAST(path AS CHAR) AS path, CAST(status AS CHAR) AS status, \
         CAST(fulfillment AS CHAR) AS fulfillment FROM orders",
    )
    .fetch_all(&t.db)
    .await
    .unwrap()
    {
        orders += 1;
        let (id, path, status, fulfillment): (String, String, String, String) = (
            r.get("id"),
            r.get("path"),
            r.get("status"),
            r.get("fulfillment"),
        );
        let events = by_subject.remove(&id).unwrap_or_default();
        v.extend(order_violations(&id, &path, &status, &fulfillment, &events));
    }

    for r in sqlx::query("SELECT id, CAST(status AS CHAR) AS status FROM holds")
        .fetch_all(&t.db)
        .await
        .unwrap()
    {
        let (id, status): (String, String) = (r.get("id"), r.get("status"));
        let events = by_subject.remove(&id).unwrap_or_default();
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        let want: &[&str] = if status == "EXPIRED" {
            &["hold.expired"]
        } else {
            &[]
        };
        if kinds != want {
            v.push(format!(
                "events: hold {id} is {status} with events {kinds:?}"
            ));
        }
    }

    let mut sellable: HashMap<String, i64> = HashMap::new();
    for r in sqlx::query(
        "SELECT s.location_id, s.product_id, CAST(GREATEST(s.available - \
         COALESCE(s.safety_stock, l.safety_stock), 0) AS SIGNED) AS sellable \
         FROM stock s JOIN locations l ON l.id = s.location_id",
    )
    .fetch_all(&t.db)
    .await
    .unwrap()
    {
        let (l, p): (u64, u64) = (r.get("location_id"), r.get("product_id"));
        sellable.insert(format!("stock:{l}:{p}"), r.get("sellable"));
    }
    for (subject, events) in by_subject {
        if let Some(now) = sellable.get(&subject) {
            v.extend(stock_violations(&subject, *now, &events));
        } else if !subject.starts_with("loss:") {
            let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
            v.push(format!(
                "events: {subject} is in no MySQL row, yet has events {kinds:?}"
            ));
        }
    }
    if orders > 0 && v.is_empty() {
        eprintln!("outbox: the events of {orders} orders agree with MySQL");
    }
    v
}

fn order_violations(
    id: &str,
    path: &str,
    status: &str,
    fulfillment: &str,
    events: &[(String, Value)],
) -> Vec<String> {
    let mut v = Vec::new();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    let bad = |why: &str| {
        format!("events: order {id} ({path}, {status}, {fulfillment}): {why}: {kinds:?}")
    };
    if (kinds.first() == Some(&"order.accepted")) != (path == "REDIS") {
        v.push(bad("accepted exactly when on the Redis path"));
    }
    if kinds.iter().filter(|k| **k == "order.accepted").count() > 1 {
        v.push(bad("accepted more than once"));
    }
    let mut last_status: Option<&str> = None;
    let mut step = 0;
    for (kind, data) in events {
        let shown = data["status"].as_str().unwrap_or("");
        if data["orderId"] != id {
            v.push(bad(&format!("{kind} shows another order: {data}")));
        }
        match status_of_type(kind) {
            Some(want) if want != shown => v.push(bad(&format!("{kind} shows {shown}"))),
            None => v.push(bad(&format!("{kind} is no order event"))),
            _ => {}
        }
        if last_status == Some("CANCELLED") {
            v.push(bad(&format!("{kind} after the cancellation")));
        }
        match kind.as_str() {
            "order.confirmed" if last_status == Some("CONFIRMED") => v.push(bad("confirmed twice")),
            "order.fulfillment_changed" => {
                let now = step_rank(data["fulfillment"]["status"].as_str().unwrap_or(""));
                if now <= step {
                    v.push(bad("a step that does not move forward"));
                }
                step = now;
            }
            _ => {}
        }
        if kind != "order.fulfillment_changed" && kind != "order.accepted" {
            last_status = Some(status_of_type(kind).unwrap_or(""));
        }
    }
    if last_status != Some(status) {
        v.push(bad("the last status shown is not MySQL's"));
    }
    // A till sale is handed over as it is made: its steps write no events.
    let want_step = if path == "POS" {
        0
    } else {
        step_rank(fulfillment)
    };
    if step != want_step {
        v.push(bad("the last step shown is not MySQL's"));
    }
    v
}

fn stock_violations(subject: &str, now: i64, events: &[(String, Value)]) -> Vec<String> {
    let mut v = Vec::new();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    let mut out: Option<bool> = None;
    for (kind, data) in events {
        let units = data["sellableOnline"].as_i64().unwrap_or(-1);
        let threshold = data["lowStockThreshold"].as_i64().unwrap_or(-1);
        let ok = match kind.as_str() {
            "stock.out" => out != Some(true) && units == 0,
            "stock.back" => out != Some(false) && units > 0,
            "stock.low" => threshold > 0 && units <= threshold,
            _ => false,
        };
        if !ok {
            v.push(format!("events: {subject}: {kind} {data} in {kinds:?}"));
        }
        match kind.as_str() {
            "stock.out" => out = Some(true),
            "stock.back" => out = Some(false),
            _ => {}
        }
    }
    if out.is_some_and(|out| out != (now == 0)) {
        v.push(format!(
            "events: {subject}: sells {now} now, the last event says otherwise: {kinds:?}"
        ));
    }
    v
}

impl TestApp {
    /// Fails on any [`outbox_violations`].
    pub async fn assert_outbox(&self) {
        let v = outbox_violations(self).await;
        assert!(v.is_empty(), "{}", v.join("\n"));
    }
}
