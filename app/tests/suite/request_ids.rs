//! Request ids and the access log: every answer names its request in `X-Request-Id` (the caller's
//! id when it is sane, else a new one), every problem names it as its `instance`, and the access
//! log has one line per request with that id, its route template and its status.

use crate::common::*;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The `X-Request-Id` of an answer.
fn id_of(r: &Response) -> String {
    r.headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on {r:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// A new id is a UUIDv7.
fn assert_fresh(id: &str) {
    let parsed = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(parsed.get_version_num(), 7, "{id}");
}

/// `GET path` with `X-Request-Id: id`.
async fn get_as(t: &TestApp, base: &str, path: &str, id: &str) -> Response {
    t.client
        .get(format!("{base}{path}"))
        .header("x-request-id", id)
        .send()
        .await
        .unwrap()
}

/// A sane id sent in comes back in the header, and in a problem's `instance`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_sent_in_comes_back_in_the_header_and_the_problem() {
    let t = TestApp::spawn().await;
    let sent = "client-42.retry_1~a:b";
    let r = get_as(&t, &t.base, "/api/orders/1-unknown", sent).await;
    assert_eq!(id_of(&r), sent);
    let (s, b) = json_of(r).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(b["instance"], format!("urn:request:{sent}"), "{b}");

    let r = get_as(&t, &t.base, "/health/live", sent).await;
    assert_eq!((r.status(), id_of(&r)), (StatusCode::OK, sent.to_owned()));
}

/// An id that is too long, empty or has characters outside `A-Z a-z 0-9 . _ ~ : -` is replaced by
/// a new one, in the header and in the problem alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_id_is_replaced_by_a_fresh_one() {
    let t = TestApp::spawn().await;
    let too_long = "x".repeat(129);
    for bad in [
        too_long.as_str(),
        "",
        "has space",
        "quo\"te",
        "a/b",
        "semi;colon",
    ] {
        let r = get_as(&t, &t.base, "/api/no-such-route", bad).await;
        let id = id_of(&r);
        assert_ne!(id, bad);
        assert_fresh(&id);
        let (s, b) = json_of(r).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(b["instance"], format!("urn:request:{id}"), "{b}");
    }
    // The longest id that is kept.
    let longest = "y".repeat(128);
    let r = get_as(&t, &t.base, "/health/live", &longest).await;
    assert_eq!(id_of(&r), longest);
}

/// Every answer has an id of its own: a success, an unknown route's 404, a malformed body's 400,
/// a missing credential's 401; and every problem among them names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_an_id_of_its_own() {
    let t = TestApp::spawn().await;
    let malformed = t
        .client
        .post(format!("{}/api/orders", t.base))
        .header("content-type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    let answers = [
        (t.get("/health/live").await, StatusCode::OK),
        (t.get("/api/products").await, StatusCode::OK),
        (t.get("/api/no-such-route").await, StatusCode::NOT_FOUND),
        (malformed, StatusCode::BAD_REQUEST),
        (
            t.get("/api/admin/redis-data-losses").await,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    let mut ids = BTreeSet::new();
    for (r, status) in answers {
        let id = id_of(&r);
        assert_fresh(&id);
        assert!(ids.insert(id.clone()), "{id} answered twice");
        assert_eq!(r.status(), status, "{r:?}");
        if !status.is_success() {
            let (_, b) = json_of(r).await;
            assert_eq!(b["instance"], format!("urn:request:{id}"), "{b}");
        }
    }
    assert_eq!(ids.len(), 5);
}

/// Two requests, even with no id sent, get different ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_get_different_ids() {
    let t = TestApp::spawn().await;
    let a = id_of(&t.get("/health/live").await);
    let b = id_of(&t.get("/health/live").await);
    assert_ne!(a, b);
    assert_fresh(&a);
    assert_fresh(&b);
}

/// The JSON lines of a process's log whose `request_id` is `id`, within 5 s of being written.
async fn access_lines(p: &ServiceProcess, id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<Value> = p
            .log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["request_id"] == id)
            .collect();
        if !lines.is_empty() || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The access log (`LOG_FORMAT=json`, the service as a process of its own): one `info` line per
/// request with its method, its route template (not the path with its ids), its status, its
/// duration and its request id. With `ACCESS_LOG=off` there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_line_per_request_with_its_id() {
    let t = TestApp::spawn().await;
    let p = t.spawn_process_logged(&[("LOG_FORMAT", "json"), ("RUST_LOG", "info,sqlx=warn")]);
    p.wait_for(&t.client, "/health/live", Duration::from_secs(60))
        .await;

    let r = get_as(&t, &p.base, "/api/orders/1-unknown", "access-log-1").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let lines = access_lines(&p, "access-log-1").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["route"], "/api/orders/{orderId}", "{line}");
    assert_eq!(line["status"], 404, "{line}");
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{line}"
    );

    // An unknown route is logged by its path; a malformed body by its route.
    let r = get_as(&t, &p.base, "/api/no-such-route", "access-log-2").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let lines = access_lines(&p, "access-log-2").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (&lines[0]["route"], &lines[0]["status"]),
        (&json!("/api/no-such-route"), &json!(404))
    );
    let r = t
        .client
        .post(format!("{}/api/orders", p.base))
        .header("x-request-id", "access-log-3")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let lines = access_lines(&p, "access-log-3").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (&lines[0]["method"], &lines[0]["route"], &lines[0]["status"]),
        (&json!("POST"), &json!("/api/orders"), &json!(400))
    );
    drop(p);

    let quiet = t.spawn_process_logged(&[
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,sqlx=warn"),
        ("ACCESS_LOG", "off"),
    ]);
    quiet
        .wait_for(&t.client, "/health/live", Duration::from_secs(60))
        .await;
    let r = get_as(&t, &quiet.base, "/api/orders/1-unknown", "access-log-4").await;
    assert_eq!(id_of(&r), "access-log-4");
    // The line would have been written before the answer left; `access_lines` waits 5 s anyway.
    assert!(
        access_lines(&quiet, "access-log-4").await.is_empty(),
        "{:?}",
        quiet.log_lines()
    );
}

/// A failure's log line names the request it failed: MySQL cut off from the service (a fault
/// proxy), a read answers a problem, and the line that logs its cause carries the same id, in the
/// request's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_logged_with_its_request_id() {
    let t = TestApp::spawn().await;
    let proxy = proxy::Proxy::start(&host_port(&t.database_url)).await;
    let database_url = via(&t.database_url, proxy.port);
    let p = t.spawn_process_logged(&[
        ("DATABASE_URL", &database_url),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,sqlx=warn"),
    ]);
    p.wait_for(&t.client, "/health/live", Duration::from_secs(60))
        .await;
    proxy.refuse(true);
    proxy.cut_all();

    let r = get_as(&t, &p.base, "/api/orders/1-unknown", "failure-1").await;
    assert_eq!(id_of(&r), "failure-1");
    let (s, b) = json_of(r).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["instance"], "urn:request:failure-1", "{b}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let cause = loop {
        let found = p
            .log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| {
                l["span"]["request_id"] == "failure-1"
                    && matches!(l["level"].as_str(), Some("WARN" | "ERROR"))
            });
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "{:#?}", p.log_lines());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cause["span"]["name"], "request", "{cause}");
    assert!(cause["error"].is_string(), "{cause}");
}
