//! Stock Flow's HTTP surface, built with poem-openapi: the spec and Swagger UI are generated from
//! this code.
//!
//! # Layout
//!
//! One API struct per tag, combined in [`routes`]:
//!
//! - [`catalog`]: products and locations from MySQL;
//! - [`orders`]: the DB-lock order path and order status;
//! - [`redis_api`]: the Redis order path and stock read from Redis;
//! - [`holds`]: checkout holds (placed, extended, released, turned into an order);
//! - [`stores`]: the store POS API (per-store keys);
//! - [`events`]: the event feed, and how events show orders and holds;
//! - [`fulfilment`]: the order's way out: store steps, the store's work list, shipping;
//! - [`admin`]: operators' routes (operator tokens with roles, [`auth`]);
//! - [`health`]: liveness and readiness.
//!
//! Errors are RFC 9457 problems ([`problem`]): every operation returns `Result<T, Problem>`.
//! [`edge`] bounds what reaches the operations (body size, requests in flight); [`request_id`]
//! names every request (`X-Request-Id`, the log span, the access log); metrics are in
//! [`metrics`]. This crate turns HTTP into calls on `sf-persistence` and back; it decides nothing
//! itself.

pub mod admin;
pub mod auth;
pub mod catalog;
pub mod edge;
pub mod events;
pub mod fulfilment;
pub mod health;
pub mod holds;
pub mod metrics;
pub mod orders;
pub mod problem;
pub mod redis_api;
pub mod request_id;
pub mod state;
pub mod stores;
pub mod types;

pub use state::ApiState;

use poem::{get, Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::OpenApiService;
use std::sync::Arc;

pub type Apis = (
    catalog::CatalogApi,
    orders::OrdersApi,
    redis_api::RedisApi,
    holds::HoldsApi,
    stores::StoresApi,
    fulfilment::FulfilmentApi,
    admin::AdminApi,
    admin::RepairApi,
    admin::ChannelsApi,
    admin::AccessApi,
    admin::WebhooksApi,
    events::EventsApi,
    health::HealthApi,
);

/// The OpenAPI service (all operations, one spec).
pub fn api_service(state: &Arc<ApiState>) -> OpenApiService<Apis, ()> {
    let apis = (
        catalog::CatalogApi {
            state: state.clone(),
        },
        orders::OrdersApi {
            state: state.clone(),
        },
        redis_api::RedisApi {
            state: state.clone(),
        },
        holds::HoldsApi {
            state: state.clone(),
        },
        stores::StoresApi {
            state: state.clone(),
        },
        fulfilment::FulfilmentApi {
            state: state.clone(),
        },
        admin::AdminApi {
            state: state.clone(),
        },
        admin::RepairApi {
            state: state.clone(),
        },
        admin::ChannelsApi {
            state: state.clone(),
        },
        admin::AccessApi {
            state: state.clone(),
        },
        admin::WebhooksApi {
            state: state.clone(),
        },
        events::EventsApi {
            state: state.clone(),
        },
        health::HealthApi {
            state: state.clone(),
        },
    );
    OpenApiService::new(apis, "Stock Flow", env!("CARGO_PKG_VERSION"))
        .description(
            "Store-aware inventory and fulfillment. Two order paths side by side: the DB-lock \
             path (one MySQL transaction with row locks) and the Redis path (an atomic Lua \
             script, persisted to MySQL in the background). Errors are \
             application/problem+json (RFC 9457).",
        )
        .server("/")
}

/// The order of the tags in the spec, which is the order of the groups in Swagger UI: the shop's
/// flows first, then the stores', then the operators', health last.
pub const TAG_ORDER: [&str; 10] = [
    "Products",
    "Locations",
    "DbLockOrders",
    "RedisPath",
    "Holds",
    "OrderStatus",
    "Events",
    "Stores",
    "Admin",
    "Health",
];

fn tag_rank(tag: &serde_json::Value) -> usize {
    let name = tag["name"].as_str().unwrap_or("");
    TAG_ORDER
        .iter()
        .position(|t| *t == name)
        .unwrap_or(TAG_ORDER.len())
}

/// A link (OpenAPI `links`): an answer of one operation gives another operation its input.
struct Link {
    /// The operation whose answer carries the value, and the status of that answer.
    from: &'static str,
    status: &'static str,
    /// The operation it feeds, and its parameters as runtime expressions.
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
}

const fn link(
    from: &'static str,
    status: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> Link {
    Link {
        from,
        status,
        to,
        parameters,
    }
}

const ORDER_ID: &[(&str, &str)] = &[("orderId", "$response.body#/orderId")];
const PRODUCT_ID: &[(&str, &str)] = &[("productId", "$response.body#/productId")];
const LOCATION_ID: &[(&str, &str)] = &[("locationId", "$response.body#/locationId")];
const HOLD_ID: &[(&str, &str)] = &[("holdId", "$response.body#/holdId")];

/// Where an operation's answer feeds another's input: a created order to its status and its
/// cancel, a created product or location to the routes that read and change it, an issued key to
/// its revocation. Clients and tools (Swagger UI, schemathesis's stateful phase) follow them.
const LINKS: &[Link] = &[
    link("createOrderDbLock", "201", "getOrder", ORDER_ID),
    link("createOrderDbLock", "201", "cancelOrderDbLock", ORDER_ID),
    link("cancelOrderDbLock", "200", "getOrder", ORDER_ID),
    link("createOrderRedis", "202", "getOrder", ORDER_ID),
    link("createOrderRedis", "202", "cancelOrderRedis", ORDER_ID),
    link("cancelOrderRedis", "200", "getOrder", ORDER_ID),
    link("createHold", "201", "getHold", HOLD_ID),
    link("createHold", "201", "extendHold", HOLD_ID),
    link("createHold", "201", "releaseHold", HOLD_ID),
    link("createHold", "201", "convertHold", HOLD_ID),
    link("convertHold", "201", "getOrder", ORDER_ID),
    link("posSale", "201", "getOrder", ORDER_ID),
    link(
        "posSale",
        "201",
        "posCancel",
        &[
            ("storeId", "$request.path.storeId"),
            ("orderId", "$response.body#/orderId"),
        ],
    ),
    link("createProduct", "201", "getProductAdmin", PRODUCT_ID),
    link("createProduct", "201", "updateProduct", PRODUCT_ID),
    link("createProduct", "201", "getProduct", PRODUCT_ID),
    link("createProduct", "201", "getProductRedis", PRODUCT_ID),
    link("updateProduct", "200", "getProductAdmin", PRODUCT_ID),
    link("createLocation", "201", "getLocationAdmin", LOCATION_ID),
    link("createLocation", "201", "updateLocation", LOCATION_ID),
    link("updateLocation", "200", "getLocationAdmin", LOCATION_ID),
    link(
        "issueChannelKey",
        "201",
        "revokeChannelKey",
        &[
            ("channelId", "$response.body#/channelId"),
            ("keyId", "$response.body#/keyId"),
        ],
    ),
    link(
        "issueStoreKey",
        "201",
        "revokeStoreKey",
        &[
            ("storeId", "$response.body#/storeId"),
            ("keyId", "$response.body#/keyId"),
        ],
    ),
    link(
        "createOperator",
        "201",
        "revokeOperator",
        &[("operatorId", "$response.body#/operatorId")],
    ),
];

/// Writes [`LINKS`] into the answers they start from. poem-openapi has no way to declare links,
/// so this is the one place they are declared; a link naming an operation or answer the document
/// does not have is a bug, caught when the spec is built (at start-up and by the tests).
fn add_links(doc: &mut serde_json::Value) {
    let mut operations = std::collections::HashMap::new();
    for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in ops.as_object().into_iter().flatten() {
            if let Some(id) = op["operationId"].as_str() {
                operations.insert(id.to_owned(), (path.clone(), method.clone()));
            }
        }
    }
    let operation = |id: &str| {
        operations
            .get(id)
            .unwrap_or_else(|| panic!("link to or from unknown operation {id}"))
            .clone()
    };
    for l in LINKS {
        let (path, method) = operation(l.from);
        let (to_path, to_method) = operation(l.to);
        let params = &doc["paths"][&to_path][&to_method]["parameters"];
        for (name, _) in l.parameters {
            assert!(
                params
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == *name)),
                "link {} -> {}: {} takes no parameter {name}",
                l.from,
                l.to,
                l.to
            );
        }
        let answer = &mut doc["paths"][&path][&method]["responses"][l.status];
        assert!(
            answer.is_object(),
            "link {} -> {}: {} has no {} answer",
            l.from,
            l.to,
            l.from,
            l.status
        );
        let parameters: serde_json::Map<String, serde_json::Value> = l
            .parameters
            .iter()
            .map(|(name, expr)| ((*name).to_owned(), (*expr).into()))
            .collect();
        // Link names are the target's operation id with a capital first letter (`GetOrder`).
        let mut name = l.to.to_owned();
        name[..1].make_ascii_uppercase();
        answer["links"][name] = serde_json::json!({
            "operationId": l.to,
            "parameters": parameters,
        });
    }
}

/// Writes the role each operators' route needs ([`auth::role_needed_by`]) into its operation:
/// `x-required-role`, and a line of its description. An operators' route without a role is a
/// bug, caught when the spec is built (at start-up and by the tests).
fn add_required_roles(doc: &mut serde_json::Value) {
    for ops in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for op in ops.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let operator_route = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s.get("OperatorAuth").is_some()));
            if !operator_route {
                continue;
            }
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            let role = auth::role_needed_by(&id)
                .unwrap_or_else(|| panic!("operators' route {id} has no role in role_needed_by"));
            op["x-required-role"] = role.as_str().into();
            let description = op["description"].as_str().unwrap_or_default();
            op["description"] = format!(
                "{description}\n\nNeeds an operator with the role `{role}` or above (admin > stock > viewer)."
            )
            .trim_start()
            .into();
        }
    }
}

/// Declares `X-Request-Id` ([`request_id`]) on every answer of every operation: the middleware
/// sets it on all of them, which poem-openapi's per-operation declarations cannot say once.
fn add_request_id_header(doc: &mut serde_json::Value) {
    doc["components"]["headers"]["X-Request-Id"] = serde_json::json!({
        "description": "This request's id: the caller's `X-Request-Id` when it is 1 to 128 characters of `A-Z a-z 0-9 . _ ~ : -`, else a new UUIDv7. Problems carry it as `instance` (`urn:request:<id>`); the service's log lines of the request carry it as `request_id`.",
        "required": true,
        "schema": { "type": "string", "maxLength": request_id::MAX_LEN },
    });
    let reference = serde_json::json!({ "$ref": "#/components/headers/X-Request-Id" });
    for ops in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for op in ops.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            for answer in op["responses"]
                .as_object_mut()
                .into_iter()
                .flat_map(|r| r.values_mut())
            {
                answer["headers"]["X-Request-Id"] = reference.clone();
            }
        }
    }
}

/// The spec as served: poem-openapi's document with its `tags` in [`TAG_ORDER`], its links
/// ([`LINKS`]), and, on every schema a request body uses, what the server does but poem-openapi
/// does not write into the document: `additionalProperties: false` (they all refuse unknown
/// fields), and `nullable` on optional fields (`null` is taken as absent).
pub fn spec_document(service: &OpenApiService<Apis, ()>) -> serde_json::Value {
    let mut doc: serde_json::Value =
        serde_json::from_str(&service.spec()).expect("the spec is JSON");
    if let Some(tags) = doc["tags"].as_array_mut() {
        tags.sort_by_key(tag_rank);
    }
    add_links(&mut doc);
    add_required_roles(&mut doc);
    add_request_id_header(&mut doc);
    types::add_parameter_patterns(&mut doc);
    // Schemas reachable from a request body.
    let mut pending: Vec<String> = Vec::new();
    for op in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .flat_map(|ops| ops.as_object().into_iter().flat_map(|o| o.values()))
    {
        collect_refs(&op["requestBody"], &mut pending);
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let schema = &mut doc["components"]["schemas"][&name];
        collect_refs(schema, &mut pending);
        if schema["type"] != "object" {
            continue;
        }
        schema["additionalProperties"] = serde_json::Value::Bool(false);
        // An optional field may also be sent as `null`, which means the same as leaving it out.
        let required: Vec<serde_json::Value> =
            schema["required"].as_array().cloned().unwrap_or_default();
        if let Some(props) = schema["properties"].as_object_mut() {
            for (field, prop) in props.iter_mut() {
                if required.contains(&serde_json::Value::String(field.clone())) {
                    continue;
                }
                if let Some(r) = prop.get("$ref").cloned() {
                    // A `$ref` takes no siblings in OpenAPI 3.0: wrap it.
                    prop.as_object_mut().map(|p| p.remove("$ref"));
                    prop["allOf"] = serde_json::json!([{ "$ref": r }]);
                }
                prop["nullable"] = serde_json::Value::Bool(true);
            }
        }
    }
    doc
}

/// Names of the schemas `value` refers to (`#/components/schemas/<name>`).
fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => {
                        if let Some(name) = r.strip_prefix("#/components/schemas/") {
                            out.push(name.to_owned());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The whole route tree: operations, spec (`/api/openapi.json`, `/api/openapi.yaml`), Swagger UI
/// (`/swagger-ui`) and metrics (`/metrics`). Every error leaves as a problem.
pub fn routes(state: Arc<ApiState>) -> impl Endpoint {
    let service = api_service(&state);
    let doc = spec_document(&service);
    let spec_json = serde_json::to_string_pretty(&doc).expect("spec serializes");
    let spec_yaml = serde_yaml::to_string(&doc).expect("spec serializes");
    let methods = Arc::new(edge::Methods::from_spec(&spec_json));
    // Swagger UI shows the document as served.
    let ui_html = service
        .swagger_ui_html()
        .replace(&service.spec(), &spec_json);
    let metrics_state = state.clone();
    let app = Route::new()
        .nest("/", service)
        .nest(
            "/swagger-ui",
            get(poem::endpoint::make_sync(move |_| {
                poem::web::Html(ui_html.clone())
            })),
        )
        .at(
            "/api/openapi.json",
            get(poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json")
                    .body(spec_json.clone())
            })),
        )
        .at(
            "/api/openapi.yaml",
            get(poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/yaml")
                    .body(spec_yaml.clone())
            })),
        )
        .at(
            "/metrics",
            get(poem::endpoint::make(move |_| {
                metrics::render(metrics_state.clone())
            })),
        )
        .data(state.clone())
        .catch_all_error(|err: poem::Error| async move {
            problem::into_response(&problem::from_poem(&err)).into_response()
        });
    request_id::RequestIds {
        inner: metrics::Track {
            inner: edge::Edge {
                inner: auth::OpenShop {
                    inner: app,
                    open: !state.shop_auth,
                },
                shedder: state.shedder.clone(),
                methods: methods.clone(),
            },
            metrics: state.metrics.clone(),
            methods: methods.clone(),
        },
        methods,
        access_log: state.access_log,
    }
}
