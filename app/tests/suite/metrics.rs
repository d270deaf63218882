//! `/metrics`: the names follow Prometheus's conventions on a real scrape, a request counts under
//! its route template, and the example alert rules and dashboard (`ops/monitoring/`) and the list
//! in docs/operations.md name only metrics the service exports, and every one of them.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/monitoring/alerts.yml");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ops/monitoring/dashboard.json"
);
const OPERATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");

/// Every family of a scrape, by name, with its type (`# TYPE` lines).
fn families(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// The series names a query can name: a histogram's are its `_bucket`, `_sum` and `_count`.
fn series_names(families: &BTreeMap<String, String>) -> BTreeSet<String> {
    families
        .iter()
        .flat_map(|(name, kind)| match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect::<Vec<_>>(),
            _ => vec![name.clone()],
        })
        .collect()
}

/// The metric names in a PromQL expression: every `stockflow_[a-z0-9_]+` that is not the tail of
/// a longer identifier.
fn metric_names(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("stockflow_").map(|at| at + i) {
        let end = at
            + expr[at..]
                .bytes()
                .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
                .count();
        if at == 0 || !word(bytes[at - 1]) {
            out.push(expr[at..end].to_owned());
        }
        i = end;
    }
    out
}

/// Every string under an `expr` key of a JSON document (a dashboard's targets).
fn exprs_of(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("expr", Some(e)) => out.push(e.to_owned()),
                    _ => exprs_of(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs_of(v, out)),
        _ => {}
    }
}

/// The expressions of the alert rules, with their alerts' names.
fn alert_exprs() -> Vec<(String, String)> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(ALERTS).unwrap()).unwrap();
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            for key in ["summary", "description"] {
                assert!(
                    rule["annotations"][key].as_str().is_some(),
                    "{name} has no {key}"
                );
            }
            out.push((name.to_owned(), expr.to_owned()));
        }
    }
    out
}

fn dashboard_exprs() -> Vec<String> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut out = Vec::new();
    exprs_of(&doc, &mut out);
    out
}

/// Traffic that makes every family appear (a vector shows only once it has a series): orders on
/// both paths, reads by id, a path of no route, a run of reconciliation, the first background
/// refresh. Answers the scrape.
async fn scrape_after_traffic(t: &TestApp) -> String {
    let wh = t.add_warehouse().await;
    let p = t.add_stocked_product(wh, 1_000, 40).await;
    let id = t
        .place_redis(&normal_order(&[(p, 2)], SEOUL.0, SEOUL.1))
        .await;
    let (s, b) = json_of(
        t.post("/api/orders", &normal_order(&[(p, 1)], SEOUL.0, SEOUL.1))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    t.wait_persisted().await;
    assert_eq!(
        t.get(&format!("/api/orders/{id}")).await.status(),
        StatusCode::OK
    );
    assert!(t
        .get("/api/orders/9-nothing")
        .await
        .status()
        .is_client_error());
    assert_eq!(
        t.get("/api/nothing/here").await.status(),
        StatusCode::NOT_FOUND
    );
    t.run_reconcile().await;
    t.wait_for_metrics(&[
        "stockflow_cluster_job_last_run_success{job=\"reconcile\"} 1",
        "stockflow_cluster_consumer_backlog_events 0",
        "stockflow_cluster_holds_active 0",
        "stockflow_cluster_dead_letters 0",
        "stockflow_cluster_stale_keys 0",
    ])
    .await
}

/// The naming rules, on what the service exports: one `stockflow_` prefix, seconds and not
/// milliseconds, `_total` on counters and only there; a request counts under its route template
/// and status class, never under its raw path or exact status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_follows_the_naming_rules() {
    let t = TestApp::spawn().await;
    let scrape = scrape_after_traffic(&t).await;
    let families = families(&scrape);
    assert!(families.len() > 20, "{scrape}");
    for (name, kind) in &families {
        assert!(
            name.starts_with("stockflow_"),
            "{name}: no stockflow_ prefix"
        );
        assert!(
            !name.starts_with("stockflow_stockflow_"),
            "{name}: the prefix twice"
        );
        assert!(
            !name.ends_with("_ms") && !name.contains("_ms_") && !name.contains("millis"),
            "{name}: a time in milliseconds"
        );
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}: _total on counters and only there"
        );
        if kind != "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                assert!(!name.ends_with(suffix), "{name}: {suffix} on a {kind}");
            }
        }
    }
    // Every sample belongs to a declared family.
    let series = series_names(&families);
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(series.contains(name), "{line}: no # TYPE for it");
    }
    // The figures this instance cannot know alone say so.
    for name in families
        .keys()
        .filter(|n| n.starts_with("stockflow_cluster_"))
    {
        let help = scrape
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# HELP {name} ")))
            .unwrap();
        assert!(
            help.contains("the same figure on every instance; aggregate with max, not sum"),
            "{name}: {help}"
        );
    }
    let version = format!(
        "stockflow_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(scrape.contains(&version), "{scrape}");
    for family in [
        "stockflow_process_cpu_seconds_total",
        "stockflow_process_resident_memory_bytes",
        "stockflow_process_start_time_seconds",
    ] {
        assert!(families.contains_key(family), "{family} missing");
    }

    // Requests by route template and status class.
    let requests: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("stockflow_http_request_duration_seconds_count{"))
        .collect();
    for line in [
        "{method=\"GET\",route=\"/api/orders/{orderId}\",status=\"2xx\"} 1",
        "{method=\"GET\",route=\"/api/orders/{orderId}\",status=\"4xx\"} 1",
        "{method=\"POST\",route=\"/api/redis/orders\",status=\"2xx\"} 1",
        "{method=\"POST\",route=\"/api/orders\",status=\"2xx\"} 1",
        "{method=\"GET\",route=\"other\",status=\"4xx\"} 1",
    ] {
        let want = format!("stockflow_http_request_duration_seconds_count{line}");
        assert!(requests.contains(&want.as_str()), "{want} in {requests:#?}");
    }
    for line in &requests {
        let route = line.split("route=\"").nth(1).unwrap();
        let route = &route[..route.find('"').unwrap()];
        assert!(
            route == "other" || !route.contains("9-nothing"),
            "{line}: a raw path"
        );
        assert!(
            ["\"2xx\"", "\"3xx\"", "\"4xx\"", "\"5xx\""]
                .iter()
                .any(|c| line.contains(&format!("status={c}"))),
            "{line}: not a status class"
        );
    }
}

/// The example alert rules and dashboard name only series the service exports (a rename that
/// forgets them fails here), every expression names at least one, and docs/operations.md lists
/// every family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_name_only_exported_metrics() {
    let t = TestApp::spawn().await;
    let scrape = scrape_after_traffic(&t).await;
    let families = families(&scrape);
    let series = series_names(&families);

    let alerts = alert_exprs();
    assert!(alerts.len() >= 10, "{alerts:?}");
    let panels = dashboard_exprs();
    assert!(panels.len() >= 10, "{panels:?}");
    let mut unknown = Vec::new();
    for (source, expr) in alerts
        .iter()
        .map(|(name, e)| (format!("alert {name}"), e.clone()))
        .chain(panels.iter().map(|e| ("dashboard".to_owned(), e.clone())))
    {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{source}: {expr} names no metric");
        for name in names {
            if !series.contains(&name) {
                unknown.push(format!("{source}: {name}"));
            }
        }
    }
    assert!(unknown.is_empty(), "not exported: {unknown:#?}");

    let docs = std::fs::read_to_string(OPERATIONS).unwrap();
    let undocumented: Vec<&String> = families
        .keys()
        .filter(|name| !docs.contains(&format!("`{name}")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/operations.md: {undocumented:?}"
    );
}

#[test]
fn names_are_read_out_of_promql() {
    assert_eq!(
        metric_names(
            "sum(rate(stockflow_http_request_duration_seconds_count{status=\"5xx\"}[5m])) \
             / ignoring(x) max(stockflow_cluster_dead_letters) and not_stockflow_x"
        ),
        vec![
            "stockflow_http_request_duration_seconds_count",
            "stockflow_cluster_dead_letters"
        ]
    );
}
