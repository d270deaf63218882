//! Who did what: every ledger row names its actor. Each writer of `stock_movements` writes its
//! rows here — operators, the shop on both paths and the consumer, checkout holds, the till,
//! the store's and the operators' hand-overs, and the jobs — and every row is read back with its
//! exact actor; no row keeps the column's default.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// A ledger row as the test compares it: reason, ref id (an operator's change: `op`), actor,
/// note, reference, request id.
type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn row(reason: &str, ref_id: &str, actor: &str) -> Row {
    (reason.into(), ref_id.into(), actor.into(), None, None, None)
}

async fn ledger(t: &TestApp) -> Vec<Row> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT CAST(reason AS CHAR), ref_id, actor, note, reference, request_id \
         FROM stock_movements ORDER BY id",
    )
    .fetch_all(&t.db)
    .await
    .unwrap();
    rows.into_iter()
        .map(|mut r| {
            if r.1.starts_with("op-") {
                r.1 = "op".into();
            }
            r
        })
        .collect()
}

/// An operator's stock change with a request id of the test's choosing.
async fn operator_change(
    t: &TestApp,
    method: reqwest::Method,
    path: &str,
    request_id: &str,
    body: &Value,
) -> (StatusCode, Value) {
    json_of(
        t.admin()
            .request(method, path)
            .header("X-Request-Id", request_id)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A store step (`ready`, `collect`) with the store's key; must succeed.
async fn store_step(t: &TestApp, key: &str, store: u64, id: &str, what: &str, body: &Value) {
    let r = t
        .client
        .post(format!("{}/api/stores/{store}/orders/{id}/{what}", t.base))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(r).await;
    assert_eq!(s, StatusCode::OK, "{what}: {b}");
}

async fn created(t: &TestApp, path: &str, body: &Value) -> Value {
    let (s, b) = json_of(t.post(path, body).await).await;
    assert_eq!(s, StatusCode::CREATED, "{path}: {b}");
    b
}

fn str_of(b: &Value, field: &str) -> String {
    b[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {b}"))
        .to_owned()
}

/// Every writer of the ledger names itself: operators (with their note, reference and request
/// id), the shop's orders, cancels and holds (the order's or hold's channel), the consumer persisting a Redis-path order and a cancel, the till and the
/// store's hand-overs (the store key), an operator's shipment, and the jobs (`system:<job>`).
/// No row keeps `system:before-actors`, and the operator's change shows its actor, note,
/// reference and request id in the ledger route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ledger_row_names_its_actor() {
    let t = TestApp::spawn().await;
    let s = t.store_with(2, 20).await;
    let (p, q) = (s.products[0], s.products[1]);
    let key_id: u64 = sqlx::query_scalar("SELECT id FROM store_keys WHERE store_id = ?")
        .bind(s.store)
        .fetch_one(&t.db)
        .await
        .unwrap();
    let key_actor = format!("store-key:{key_id}");
    // `ADMIN_TOKEN` acts as the operator `bootstrap`; the harness's shop as its channel.
    let bootstrap: u64 = sqlx::query_scalar("SELECT id FROM operators WHERE name = 'bootstrap'")
        .fetch_one(&t.db)
        .await
        .unwrap();
    let operator = format!("operator:{bootstrap}");
    let shop = format!("channel:{}", t.shop.channel_id);
    let (_, wp) = t.warehouse_with_product(1_000, 10).await;
    let mut want: Vec<Row> = Vec::new();

    // Operators: a set with a note and a reference, an adjustment with a note; too long a note
    // or reference is a 422 that writes nothing.
    let stock = format!("/api/admin/locations/{}/products/{p}/stock", s.store);
    let (st, b) = operator_change(
        &t,
        reqwest::Method::PUT,
        &stock,
        "req-set-1",
        &json!({"quantity": 25, "reason": "RESTOCK", "note": "  pallet 4  ",
                "reference": "DN-2026-0042"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    want.push((
        "RESTOCK".into(),
        "op".into(),
        operator.clone(),
        Some("pallet 4".into()),
        Some("DN-2026-0042".into()),
        Some("req-set-1".into()),
    ));
    let adjust = format!("{stock}/adjustments");
    let (st, b) = operator_change(
        &t,
        reqwest::Method::POST,
        &adjust,
        "req-adjust-1",
        &json!({"delta": -1, "reason": "DAMAGED", "note": "dropped"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    want.push((
        "DAMAGED".into(),
        "op".into(),
        operator.clone(),
        Some("dropped".into()),
        None,
        Some("req-adjust-1".into()),
    ));
    for (body, field) in [
        (
            json!({"delta": 1, "reason": "ADJUST", "note": "n".repeat(501)}),
            "note",
        ),
        (
            json!({"delta": 1, "reason": "ADJUST", "reference": "r".repeat(101)}),
            "reference",
        ),
    ] {
        let (st, b) =
            operator_change(&t, reqwest::Method::POST, &adjust, "req-too-long", &body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["type"], "/problems/validation-error", "{b}");
        assert!(str_of(&b, "detail").starts_with(field), "{b}");
    }
    // 500 and 100 characters are kept.
    let (st, b) = operator_change(
        &t,
        reqwest::Method::POST,
        &adjust,
        "req-adjust-2",
        &json!({"delta": 1, "reason": "ADJUST", "note": "é".repeat(500),
                "reference": "r".repeat(100)}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    want.push((
        "ADJUST".into(),
        "op".into(),
        operator.clone(),
        Some("é".repeat(500)),
        Some("r".repeat(100)),
        Some("req-adjust-2".into()),
    ));

    // A DB-lock pickup, made ready and collected by the store's key.
    let b = created(&t, "/api/orders", &pickup_order(&[(p, 2)], s.store)).await;
    let picked = str_of(&b, "orderId");
    let code = b["fulfillment"]["pickupCode"].as_str().unwrap().to_owned();
    want.push(row("ORDER", &picked, shop.as_str()));
    store_step(&t, &s.key, s.store, &picked, "ready", &json!({})).await;
    store_step(
        &t,
        &s.key,
        s.store,
        &picked,
        "collect",
        &json!({ "pickupCode": code }),
    )
    .await;
    want.push(row("FULFILLED", &picked, &key_actor));

    // A DB-lock order cancelled by the shop.
    let b = created(&t, "/api/orders", &pickup_order(&[(q, 1)], s.store)).await;
    let cancelled = str_of(&b, "orderId");
    let (st, b) = json_of(t.patch(&format!("/api/orders/{cancelled}/cancel")).await).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    want.push(row("ORDER", &cancelled, shop.as_str()));
    want.push(row("CANCEL", &cancelled, shop.as_str()));

    // A Redis-path order persisted by the consumer, then cancelled in Redis alone (as when the
    // cancel's MySQL commit is lost after its script ran): the consumer writes the cancel too.
    let redis_order = t.place_redis(&pickup_order(&[(q, 2)], s.store)).await;
    t.wait_persisted().await;
    want.push(row("ORDER", &redis_order, shop.as_str()));
    cancel_in_redis_alone(&t, s.store, &redis_order, q, 2).await;
    t.wait_persisted().await;
    want.push(row("CANCEL", &redis_order, shop.as_str()));
    // And one cancelled through the shop's route once persisted (MySQL-first).
    let redis_cancelled = t.place_redis(&pickup_order(&[(q, 1)], s.store)).await;
    t.wait_persisted().await;
    let (st, b) = json_of(
        t.patch(&format!("/api/redis/orders/{redis_cancelled}/cancel"))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    want.push(row("ORDER", &redis_cancelled, shop.as_str()));
    want.push(row("CANCEL", &redis_cancelled, shop.as_str()));

    // Holds: one released, one converted, one expired by the job.
    let hold = |lines: &[(u64, i64)]| {
        let mut body = pickup_order(lines, s.store);
        body["ttlSeconds"] = json!(600);
        body
    };
    let h = created(&t, "/api/holds", &hold(&[(q, 1)])).await;
    let released = str_of(&h, "holdId");
    let (st, b) = json_of(
        t.post(&format!("/api/holds/{released}/release"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    want.push(row("HOLD", &released, shop.as_str()));
    want.push(row("HOLD_RELEASED", &released, shop.as_str()));
    let h = created(&t, "/api/holds", &hold(&[(q, 1)])).await;
    let converted = str_of(&h, "holdId");
    let (st, b) = json_of(
        t.post(&format!("/api/holds/{converted}/order"), &json!({}))
            .await,
    )
    .await;
    assert!(st.is_success(), "{b}");
    want.push(row("HOLD", &converted, shop.as_str()));
    want.push(row("HOLD_CONVERTED", &str_of(&b, "orderId"), shop.as_str()));
    let h = created(&t, "/api/holds", &hold(&[(q, 1)])).await;
    let expired = str_of(&h, "holdId");
    sqlx::query("UPDATE holds SET expires_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?")
        .bind(&expired)
        .execute(&t.db)
        .await
        .unwrap();
    assert_eq!(t.storage().holds().expire_due().await.unwrap(), 1);
    want.push(row("HOLD", &expired, shop.as_str()));
    want.push(row("HOLD_EXPIRED", &expired, "system:hold-expiry"));

    // The till: a sale and its return, by the store's key.
    let till = format!("/api/stores/{}/orders", s.store);
    let (st, b) = json_of(t.post_with_key(&till, &s.key, &pos_sale(&[(p, 1)])).await).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let sale = str_of(&b, "orderId");
    let r = t
        .client
        .patch(format!("{}{till}/{sale}/cancel", t.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    want.push(row("POS_SALE", &sale, &key_actor));
    want.push(row("POS_RETURN", &sale, &key_actor));

    // A warehouse order shipped by an operator.
    let b = created(
        &t,
        "/api/orders",
        &normal_order(&[(wp, 2)], SEOUL.0, SEOUL.1),
    )
    .await;
    let shipped = str_of(&b, "orderId");
    let (st, b) = json_of(
        t.admin()
            .post_empty(&format!("/api/admin/orders/{shipped}/ship"))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    want.push(row("ORDER", &shipped, shop.as_str()));
    want.push(row("FULFILLED", &shipped, &operator));

    // A pickup nobody came for, cancelled by the not-collected job.
    let b = created(&t, "/api/orders", &pickup_order(&[(p, 1)], s.store)).await;
    let forgotten = str_of(&b, "orderId");
    store_step(&t, &s.key, s.store, &forgotten, "ready", &json!({})).await;
    sqlx::query("UPDATE orders SET ready_at = NOW(3) - INTERVAL 1 HOUR WHERE id = ?")
        .bind(&forgotten)
        .execute(&t.db)
        .await
        .unwrap();
    let n = t
        .storage()
        .fulfilment()
        .cancel_not_collected(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(n, 1);
    want.push(row("ORDER", &forgotten, shop.as_str()));
    want.push(row("NOT_COLLECTED", &forgotten, "system:not-collected"));

    // Reconciliation repairs Redis and only reports the ledger: it writes no ledger row.
    t.set_redis_stock(s.store, p, 999).await;
    let report = t.run_reconcile().await;
    assert_eq!(report["keysRepaired"], 1, "{report}");
    assert_eq!(
        t.redis_stock(s.store, p).await,
        Some(t.available(s.store, p).await)
    );

    assert_eq!(ledger(&t).await, want);
    let defaults: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stock_movements WHERE actor = 'system:before-actors'",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(defaults, 0);

    // The ledger route shows who did it.
    let (st, page) = json_of(
        t.admin()
            .get(&format!(
                "/api/admin/locations/{}/products/{p}/movements",
                s.store
            ))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let rows = page["movements"].as_array().unwrap();
    let set = rows
        .iter()
        .find(|m| m["reason"] == "RESTOCK")
        .expect("the operator's set");
    assert_eq!(
        (
            &set["actor"],
            &set["note"],
            &set["reference"],
            &set["requestId"]
        ),
        (
            &json!(operator),
            &json!("pallet 4"),
            &json!("DN-2026-0042"),
            &json!("req-set-1")
        ),
        "{set}"
    );
    let sale_row = rows
        .iter()
        .find(|m| m["reason"] == "POS_SALE")
        .expect("the sale");
    assert_eq!(sale_row["actor"], key_actor.as_str(), "{sale_row}");
    assert!(sale_row.get("note").is_none(), "{sale_row}");
    assert!(sale_row.get("requestId").is_none(), "{sale_row}");
    t.assert_ledger_identities().await;
}

/// Cancels Redis-path order `id` (one line: `units` of `product` at `loc`) with `cancel.lua`
/// alone, as the shop's cancel does before its MySQL commit: Redis gives the units back and
/// writes the cancel event, which the consumer then persists.
async fn cancel_in_redis_alone(t: &TestApp, loc: u64, id: &str, product: u64, units: i64) {
    let keys = t.keys();
    let l = sf_routing::LocationId::new_unchecked(loc);
    let reply: Vec<i64> = redis::Script::new(sf_persistence::scripts::cancel::SOURCE)
        .key(keys.order(l, id))
        .key(keys.stream(l))
        .key(keys.stock(l, sf_routing::ProductId::new_unchecked(product)))
        .arg(id)
        .arg(format!("{product}:{units}"))
        .arg(units)
        .invoke_async(&mut t.redis().await)
        .await
        .unwrap();
    assert_eq!(reply, vec![1], "cancel.lua cancelled the order now");
}
