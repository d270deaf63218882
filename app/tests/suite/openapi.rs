//! The generated OpenAPI spec is snapshotted (`insta`), so an API change shows up in review. After
//! an intended change: `INSTA_UPDATE=always cargo test -p stock-flow --test suite openapi` writes
//! the new snapshot (`openapi/snapshots/openapi.snap`) and the test passes once it is written;
//! review the diff (`git diff`, or `cargo insta review` with `INSTA_UPDATE=new`). In CI
//! (`CI` set) nothing is written: a differing spec fails.

use crate::common::*;
use reqwest::StatusCode;

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
            // Every operation is in a load-shedding class (or named as never shed).
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                sf_openapi::edge::Kind::of_operation(id).is_some(),
                "{method} {path} ({id}) has no class in edge::Kind::of_operation"
            );
            // Every operators' route names the role it needs (auth::role_needed_by).
            let operators = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s.get("OperatorAuth").is_some()));
            assert_eq!(
                operators,
                op["x-required-role"].is_string(),
                "{method} {path} ({id}): OperatorAuth and x-required-role go together"
            );
            // Routes for operators alone are under /api/admin; a route others may also use
            // (the event feed: channels too) is where its other users look.
            let operators_only = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|s| s.get("OperatorAuth").is_some() && s.as_object().unwrap().len() == 1)
            });
            assert_eq!(
                operators_only,
                path.starts_with("/api/admin/"),
                "{method} {path}: the routes for operators alone are those under /api/admin"
            );
        }
    }
    let yaml = t.get("/api/openapi.yaml").await;
    assert_eq!(yaml.status(), StatusCode::OK);
    assert!(yaml.text().await.unwrap().starts_with("openapi: 3"));
    assert_eq!(t.get("/swagger-ui/").await.status(), StatusCode::OK);

    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_json_snapshot!("openapi", spec);
    });
}
