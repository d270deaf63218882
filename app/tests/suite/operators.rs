//! Named operators with roles, and the audit trail: each role reaches exactly its routes (the
//! others answer 403 naming the role they need), a revoked or unknown token nothing (401), a
//! revoke holds at once on every instance, and every operator's action is in the audit trail with
//! its actor and its request's id. The access log names each request's actor.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Creates an operator as the admin token; answers its id and token.
async fn create_operator(t: &TestApp, name: &str, role: &str) -> (u64, String) {
    let (s, b) = json_of(
        t.admin()
            .post("/api/admin/operators", &json!({"name": name, "role": role}))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (
        b["operatorId"].as_u64().unwrap(),
        b["token"].as_str().unwrap().to_owned(),
    )
}

/// The id of the operator `bootstrap` (the admin token).
async fn bootstrap_id(t: &TestApp) -> u64 {
    sqlx::query_scalar("SELECT id FROM operators WHERE name = 'bootstrap'")
        .fetch_one(&t.db)
        .await
        .unwrap()
}

/// Each role on a route of each class — a read (`viewer`), a stock change (`stock`), a key's and
/// an operator's creation (`admin`) — answers exactly: the role's own and those below it pass,
/// the others get 403 with the role needed, a revoked or unknown token 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_exactly_its_routes() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let store = t.add_location("STORE", "S", SEOUL.0, SEOUL.1).await;
    let (_, admin) = create_operator(&t, "ada", "admin").await;
    let (_, stock) = create_operator(&t, "sam", "stock").await;
    let (_, viewer) = create_operator(&t, "vic", "viewer").await;
    let (rex, revoked) = create_operator(&t, "rex", "admin").await;
    let r = t
        .admin()
        .delete(&format!("/api/admin/operators/{rex}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let read = (Method::GET, "/api/admin/locations".to_owned(), Value::Null);
    let change = (
        Method::PUT,
        format!("/api/admin/locations/{wh}/products/{p}/stock"),
        json!({"quantity": 10, "reason": "COUNT"}),
    );
    let key = (
        Method::POST,
        format!("/api/admin/stores/{store}/keys"),
        json!({"label": "till"}),
    );
    let operators = (Method::POST, "/api/admin/operators".to_owned(), Value::Null);
    use StatusCode as S;
    let (ok, created, forbidden, unauthorized) = (S::OK, S::CREATED, S::FORBIDDEN, S::UNAUTHORIZED);
    let cases: [(&str, &str, [StatusCode; 4]); 6] = [
        ("admin token", ADMIN, [ok, ok, created, created]),
        ("admin", admin.as_str(), [ok, ok, created, created]),
        ("stock", stock.as_str(), [ok, ok, forbidden, forbidden]),
        (
            "viewer",
            viewer.as_str(),
            [ok, forbidden, forbidden, forbidden],
        ),
        ("revoked", revoked.as_str(), [unauthorized; 4]),
        ("unknown", "sfo_0123456789abcdef", [unauthorized; 4]),
    ];
    let needs = ["viewer", "stock", "admin", "admin"];
    let mut n = 0;
    for (who, token, expected) in cases {
        for (i, (method, path, body)) in [&read, &change, &key, &operators].into_iter().enumerate()
        {
            n += 1;
            let body = if i == 3 {
                json!({"name": format!("op-{n}"), "role": "viewer"})
            } else {
                body.clone()
            };
            let mut req = t.operator(token).request(method.clone(), path);
            if !body.is_null() {
                req = req.json(&body);
            }
            let (s, b) = json_of(req.send().await.unwrap()).await;
            assert_eq!(s, expected[i], "{who} on {method} {path}: {b}");
            match s {
                S::FORBIDDEN => {
                    assert_eq!(b["type"], "/problems/forbidden", "{b}");
                    assert_eq!(b["requiredRole"], needs[i], "{who} on {path}: {b}");
                    let name = if who == "stock" { "sam" } else { "vic" };
                    assert_eq!(
                        b["detail"],
                        format!(
                            "this route needs the role {}; operator '{name}' has {who}",
                            needs[i]
                        ),
                        "{b}"
                    );
                }
                S::UNAUTHORIZED => {
                    assert_eq!(b["type"], "/problems/unauthorized", "{b}");
                    assert_eq!(b["detail"], "this operator token is unknown or revoked");
                    assert!(b.get("requiredRole").is_none(), "{b}");
                }
                _ => {}
            }
        }
    }
    // No token at all: 401, as before.
    let r = t.get("/api/admin/locations").await;
    assert_eq!(r.status(), S::UNAUTHORIZED);
    // Nothing the refused requests asked for was done: the keys issued are the two admins'.
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM store_keys")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(keys, 2);
}

/// Operators are created with a token shown once, listed without tokens, and revoked at once on
/// every instance; `bootstrap` cannot be revoked; names are unique; a bad name or role is a 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_are_created_listed_and_revoked_everywhere_at_once() {
    let t = TestApp::spawn().await;
    let bootstrap = bootstrap_id(&t).await;
    let (s, ana) = json_of(
        t.admin()
            .post(
                "/api/admin/operators",
                &json!({"name": "  ana ", "role": "stock"}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{ana}");
    assert_eq!(
        (&ana["name"], &ana["role"]),
        (&json!("ana"), &json!("stock"))
    );
    let token = ana["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sfo_") && token.len() == 52, "{token}");
    let ana_id = ana["operatorId"].as_u64().unwrap();
    // Only its hash is kept.
    let kept: Option<String> = sqlx::query_scalar("SELECT token_hash FROM operators WHERE id = ?")
        .bind(ana_id)
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(kept.as_deref().map(str::len), Some(64));
    assert_ne!(kept.as_deref(), Some(token.as_str()));

    for (body, status, kind) in [
        (
            json!({"name": "ana", "role": "viewer"}),
            409,
            "/problems/conflict",
        ),
        (
            json!({"name": "bootstrap", "role": "viewer"}),
            409,
            "/problems/conflict",
        ),
        (
            json!({"name": "bob", "role": "root"}),
            422,
            "/problems/validation-error",
        ),
        (
            json!({"name": "bob", "role": "Admin"}),
            422,
            "/problems/validation-error",
        ),
        (
            json!({"name": "   ", "role": "viewer"}),
            422,
            "/problems/validation-error",
        ),
        (
            json!({"name": "x".repeat(101), "role": "viewer"}),
            422,
            "/problems/validation-error",
        ),
        // Not a string at all: the schema refuses it (the fuzzer's case).
        (
            json!({"name": false, "role": "stock"}),
            400,
            "/problems/bad-request",
        ),
        (
            json!({"name": "bob", "role": 7}),
            400,
            "/problems/bad-request",
        ),
    ] {
        let (s, b) = json_of(t.admin().post("/api/admin/operators", &body).await).await;
        assert_eq!(
            (s.as_u16(), b["type"].as_str()),
            (status, Some(kind)),
            "{body}: {b}"
        );
    }

    let (s, list) = json_of(t.admin().get("/api/admin/operators").await).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let listed: Vec<(u64, &str, &str)> = list["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert!(
                o.get("token").is_none() && o.get("revokedAt").is_none(),
                "{o}"
            );
            assert!(o["createdAt"].as_str().unwrap().ends_with('Z'), "{o}");
            (
                o["operatorId"].as_u64().unwrap(),
                o["name"].as_str().unwrap(),
                o["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![(bootstrap, "bootstrap", "admin"), (ana_id, "ana", "stock")]
    );

    // A second instance on the same database takes the token, until it is revoked here.
    let other = t.spawn_instance(|_| {}).await;
    let on_other = |token: String| {
        let url = format!("{}/api/admin/locations", other.base());
        let client = t.client.clone();
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(on_other(token.clone()).await, StatusCode::OK);
    let (s, revoked) = json_of(
        t.admin()
            .delete(&format!("/api/admin/operators/{ana_id}"))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{revoked}");
    assert!(revoked["revokedAt"].is_string(), "{revoked}");
    assert_eq!(on_other(token.clone()).await, StatusCode::UNAUTHORIZED);
    let r = t.operator(&token).get("/api/admin/locations").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Revoking twice answers the same; its name stays taken.
    let (s, again) = json_of(
        t.admin()
            .delete(&format!("/api/admin/operators/{ana_id}"))
            .await,
    )
    .await;
    assert_eq!(
        (s, &again["revokedAt"]),
        (StatusCode::OK, &revoked["revokedAt"])
    );
    let (s, _) = json_of(
        t.admin()
            .post(
                "/api/admin/operators",
                &json!({"name": "ana", "role": "stock"}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    let (s, b) = json_of(
        t.admin()
            .delete(&format!("/api/admin/operators/{bootstrap}"))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("ADMIN_TOKEN"), "{b}");
    let (s, _) = json_of(t.admin().delete("/api/admin/operators/999999").await).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The admin token still works: bootstrap is untouched.
    assert_eq!(
        t.admin().get("/api/admin/operators").await.status(),
        StatusCode::OK
    );
    other.stop().await;
}

/// After a sequence of operators' actions, the audit trail lists exactly those that changed
/// something, newest first, each with its actor, its subject, its detail and the id of the
/// request that made it; refused requests leave nothing. Pages follow `after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_trail_names_who_did_what_and_in_which_request() {
    let mut t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let boot = bootstrap_id(&t).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let store = t.add_location("STORE", "S", SEOUL.0, SEOUL.1).await;
    // A rejected order, to retry, and its dead letter, to replay.
    let order = t
        .place_redis(&normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
        .await;
    t.misdirect_reservation(wh, &order).await;
    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.order_status(&order).await, "REJECTED");

    let send = |token: String, method: Method, path: String, body: Value, id: &'static str| {
        let t = &t;
        async move {
            let mut req = t
                .operator(&token)
                .request(method, &path)
                .header("x-request-id", id);
            if !body.is_null() {
                req = req.json(&body);
            }
            json_of(req.send().await.unwrap()).await
        }
    };
    let admin = ADMIN.to_owned();
    let (s, ana) = send(
        admin.clone(),
        Method::POST,
        "/api/admin/operators".into(),
        json!({"name": "ana", "role": "stock"}),
        "req-1",
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let ana_id = ana["operatorId"].as_u64().unwrap();
    let ana_token = ana["token"].as_str().unwrap().to_owned();
    let (s, key) = send(
        admin.clone(),
        Method::POST,
        format!("/api/admin/stores/{store}/keys"),
        json!({"label": "till 1"}),
        "req-2",
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let key_id = key["keyId"].as_u64().unwrap();
    let steps: Vec<(String, Method, String, Value, &'static str, StatusCode)> = vec![
        (
            admin.clone(),
            Method::DELETE,
            format!("/api/admin/stores/{store}/keys/{key_id}"),
            Value::Null,
            "req-3",
            StatusCode::NO_CONTENT,
        ),
        (
            ana_token.clone(),
            Method::PUT,
            format!("/api/admin/locations/{wh}/products/{p}/safety-stock"),
            json!({"quantity": 3}),
            "req-4",
            StatusCode::OK,
        ),
        // Refused (a stock operator may not change a product): not in the trail.
        (
            ana_token.clone(),
            Method::PATCH,
            format!("/api/admin/products/{p}"),
            json!({"price": 900}),
            "req-x",
            StatusCode::FORBIDDEN,
        ),
        (
            admin.clone(),
            Method::PATCH,
            format!("/api/admin/products/{p}"),
            json!({"price": 900}),
            "req-5",
            StatusCode::OK,
        ),
        (
            ana_token.clone(),
            Method::POST,
            format!("/api/admin/orders/{order}/retry"),
            Value::Null,
            "req-6",
            StatusCode::OK,
        ),
        (
            admin.clone(),
            Method::POST,
            "/api/admin/reconciliation/runs".into(),
            Value::Null,
            "req-7",
            StatusCode::OK,
        ),
        (
            admin.clone(),
            Method::DELETE,
            format!("/api/admin/operators/{ana_id}"),
            Value::Null,
            "req-8",
            StatusCode::OK,
        ),
    ];
    for (token, method, path, body, id, status) in steps {
        let (s, b) = send(token, method.clone(), path.clone(), body, id).await;
        assert_eq!(s, status, "{method} {path}: {b}");
    }
    let (s, created) = send(
        admin.clone(),
        Method::POST,
        "/api/admin/locations".into(),
        json!({"locationType": "WAREHOUSE", "name": "East", "latitude": 37.5, "longitude": 127.2}),
        "req-9",
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let loc = created["locationId"].as_u64().unwrap();

    // A viewer reads the trail.
    let (_, vic) = create_operator(&t, "vic", "viewer").await;
    let (s, page) = json_of(t.operator(&vic).get("/api/admin/audit").await).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let entries = page["entries"].as_array().unwrap();
    let seen: Vec<(String, &str, String, Option<&str>)> = entries
        .iter()
        .map(|e| {
            assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap().to_owned(),
                e["requestId"].as_str(),
            )
        })
        .collect();
    let (boot, ana) = (format!("operator:{boot}"), format!("operator:{ana_id}"));
    let expected: Vec<(String, &str, String, Option<&str>)> = vec![
        (
            boot.clone(),
            "operator.created",
            "operator:".to_owned(),
            None,
        ),
        (
            boot.clone(),
            "location.created",
            format!("location:{loc}"),
            Some("req-9"),
        ),
        (
            boot.clone(),
            "operator.revoked",
            format!("operator:{ana_id}"),
            Some("req-8"),
        ),
        (
            boot.clone(),
            "job.run",
            "job:reconcile".into(),
            Some("req-7"),
        ),
        (
            ana.clone(),
            "order.retried",
            format!("order:{order}"),
            Some("req-6"),
        ),
        (
            boot.clone(),
            "product.changed",
            format!("product:{p}"),
            Some("req-5"),
        ),
        (
            ana.clone(),
            "safety-stock.set",
            format!("location:{wh}/product:{p}"),
            Some("req-4"),
        ),
        (
            boot.clone(),
            "store-key.revoked",
            format!("store-key:{key_id}"),
            Some("req-3"),
        ),
        (
            boot.clone(),
            "store-key.issued",
            format!("store-key:{key_id}"),
            Some("req-2"),
        ),
        (
            boot.clone(),
            "operator.created",
            format!("operator:{ana_id}"),
            Some("req-1"),
        ),
    ];
    assert_eq!(seen.len(), expected.len(), "{page}");
    // The first (vic's creation, through the harness) has a fresh request id of its own.
    assert!(
        seen[0].2.starts_with("operator:") && seen[0].3.is_some(),
        "{page}"
    );
    assert_eq!(seen[1..], expected[1..], "{page}");
    let detail = |i: usize| entries[i]["detail"].as_str().unwrap_or("").to_owned();
    assert_eq!(detail(9), r#"{"name":"ana","role":"stock"}"#);
    assert_eq!(detail(8), format!("store {store}, label \"till 1\""));
    assert_eq!(detail(6), r#"{"quantity":3}"#);
    assert_eq!(detail(5), r#"{"price":900}"#);
    assert_eq!(detail(4), "now CONFIRMED");
    assert!(entries[3].get("detail").is_none(), "{}", entries[3]);

    // Keyset pages, newest first.
    let (_, first) = json_of(t.operator(&vic).get("/api/admin/audit?limit=4").await).await;
    let next = first["next"].as_u64().unwrap();
    assert_eq!(first["entries"].as_array().unwrap().len(), 4);
    assert_eq!(first["entries"][3]["id"].as_u64(), Some(next));
    let (_, second) = json_of(
        t.operator(&vic)
            .get(&format!("/api/admin/audit?limit=4&after={next}"))
            .await,
    )
    .await;
    // The first page ended with the reconciliation run (req-7); the next starts after it.
    assert_eq!(first["entries"][3]["requestId"], "req-7", "{first}");
    assert_eq!(second["entries"][0]["action"], "order.retried", "{second}");
    assert_eq!(second["entries"][0]["requestId"], "req-6", "{second}");
    assert_eq!(second["next"].as_u64(), second["entries"][3]["id"].as_u64());

    // The dead letter's replay, after the retry, answers the order as it is and is recorded.
    let (_, dead) = json_of(t.admin().get("/api/admin/dead-letters").await).await;
    let dl = dead["deadLetters"][0]["id"].as_str().unwrap().to_owned();
    let (s, b) = send(
        admin,
        Method::POST,
        format!("/api/admin/dead-letters/{dl}/replay"),
        Value::Null,
        "req-10",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, latest) = json_of(t.operator(&vic).get("/api/admin/audit?limit=1").await).await;
    let e = &latest["entries"][0];
    assert_eq!(
        (&e["actor"], &e["action"], &e["subject"], &e["requestId"]),
        (
            &json!(boot),
            &json!("dead-letter.replayed"),
            &json!(format!("dead-letter:{dl}")),
            &json!("req-10")
        ),
        "{latest}"
    );
}

/// The access log names each request's actor: the operator a token resolves to, the store key
/// used, `-` for none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_actor() {
    let t = TestApp::spawn().await;
    let store = t.add_location("STORE", "S", SEOUL.0, SEOUL.1).await;
    let key = t.issue_key(store).await;
    let key_id: u64 = sqlx::query_scalar("SELECT MAX(id) FROM store_keys")
        .fetch_one(&t.db)
        .await
        .unwrap();
    let (vic_id, vic) = create_operator(&t, "vic", "viewer").await;
    let boot = bootstrap_id(&t).await;
    let p = t.spawn_process_logged(&[("LOG_FORMAT", "json"), ("RUST_LOG", "info,sqlx=warn")]);
    p.wait_for(&t.client, "/health/live", Duration::from_secs(60))
        .await;
    let send = |path: &str, token: Option<&str>, id: &str| {
        let mut req = t
            .client
            .get(format!("{}{path}", p.base))
            .header("x-request-id", id);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let work_list = format!("/api/stores/{store}/orders?fulfillment=UNFULFILLED");
    let cases = [
        (
            "/api/admin/operators",
            Some(ADMIN),
            "actor-1",
            200,
            format!("operator:{boot}"),
        ),
        (
            "/api/admin/locations",
            Some(vic.as_str()),
            "actor-2",
            200,
            format!("operator:{vic_id}"),
        ),
        // Refused for its role: still named.
        (
            "/api/admin/operators",
            Some(vic.as_str()),
            "actor-3",
            403,
            format!("operator:{vic_id}"),
        ),
        (
            work_list.as_str(),
            Some(key.as_str()),
            "actor-4",
            200,
            format!("store-key:{key_id}"),
        ),
        (
            "/api/admin/locations",
            Some("nobody"),
            "actor-5",
            401,
            "-".to_owned(),
        ),
        ("/health/live", None, "actor-6", 200, "-".to_owned()),
    ];
    for (path, token, id, status, actor) in cases {
        let r = send(path, token, id).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path} as {actor}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let line = loop {
            let found = p
                .log_lines()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["request_id"] == id && l["route"].is_string());
            if let Some(l) = found {
                break l;
            }
            assert!(Instant::now() < deadline, "no access line for {id}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(line["actor"], actor, "{line}");
    }
}
