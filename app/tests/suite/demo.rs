//! The demo: `stock-flow seed --profile demo` prints the keys it made, and those keys work — the
//! channel key for the shop's orders and holds, a store key at its till — while a request without
//! a key is refused.

use crate::common::*;
use reqwest::{Client, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_the_demo_prints_work() {
    let t = TestApp::spawn().await;
    let printed = run_seed(
        &["--profile", "demo"],
        &t.database_url,
        &t.redis_url,
        &t.prefix,
    );
    let channel_key = printed
        .lines()
        .find(|l| l.starts_with("demo channel key"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("the channel key is printed")
        .to_owned();
    let (store, store_key) = printed
        .lines()
        .find_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("store ")?;
            let id: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((id, rest.rsplit(' ').next()?.to_owned()))
        })
        .expect("a store key is printed");
    assert_eq!(channel_key, "sfc_demo_web");
    assert_eq!(store_key, format!("sfk_demo_{store}"));
    t.storage().catalog().refresh_locations().await.unwrap();
    t.storage().catalog().refresh_catalog().await.unwrap();

    let http = Client::new();
    let order = json!({
        "items": [{"productId": 1, "quantity": 1}],
        "deliveryType": "NORMAL",
        "deliveryAddress": {"latitude": 37.5665, "longitude": 126.978}
    });
    let r = http
        .post(format!("{}/api/orders", t.base))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for path in ["/api/orders", "/api/redis/orders"] {
        let (s, b) = json_of(
            http.post(format!("{}{path}", t.base))
                .bearer_auth(&channel_key)
                .json(&order)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(s.is_success(), "{path}: {s} {b}");
    }
    let mut hold = order.clone();
    hold["ttlSeconds"] = json!(60);
    let (s, b) = json_of(
        http.post(format!("{}/api/holds", t.base))
            .bearer_auth(&channel_key)
            .json(&hold)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = json_of(
        http.post(format!("{}/api/stores/{store}/orders", t.base))
            .bearer_auth(&store_key)
            .json(&pos_sale(&[(1, 1)]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(s.is_success(), "{s} {b}");
    t.wait_persisted().await;
    t.assert_ledger_identities().await;
}
