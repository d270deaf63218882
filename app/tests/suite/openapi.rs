//! The generated OpenAPI spec is snapshotted, so an API change shows up in review. After an
//! intended change: `UPDATE_SNAPSHOTS=1 cargo test -p stock-flow --test suite openapi` writes the
//! new snapshot (and fails, so that an update never passes unseen); review the diff and run the
//! test again without `UPDATE_SNAPSHOTS`.

use crate::common::*;
use reqwest::StatusCode;

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../openapi/snapshots/openapi.json"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_spec_matches_the_snapshot() {
    let t = TestApp::spawn().await;
    let r = t.get("/api/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let spec: serde_json::Value = r.json().await.unwrap();

    // Every operation is documented, tagged and has an id.
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has no tag"
            );
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
            assert!(
                op["operationId"].is_string(),
                "{method} {path} has no operationId"
            );
        }
    }
    let yaml = t.get("/api/openapi.yaml").await;
    assert_eq!(yaml.status(), StatusCode::OK);
    assert!(yaml.text().await.unwrap().starts_with("openapi: 3"));
    assert_eq!(t.get("/swagger-ui/").await.status(), StatusCode::OK);

    let pretty = serde_json::to_string_pretty(&spec).unwrap() + "\n";
    let expected = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    if expected != pretty {
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(SNAPSHOT, &pretty).unwrap();
            panic!(
                "snapshot updated ({SNAPSHOT}); review the diff and run again without \
                 UPDATE_SNAPSHOTS"
            );
        }
        panic!(
            "the OpenAPI spec differs from the snapshot ({SNAPSHOT}); review it and run \
             UPDATE_SNAPSHOTS=1 cargo test -p stock-flow --test suite openapi"
        );
    }
}
