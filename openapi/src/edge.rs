//! The HTTP edge, in front of every operation: the body limit (413), `Allow` on 405, the
//! `Idempotency-Key` syntax, and load shedding (a bound on the requests in flight per kind of
//! work; beyond it, 503 at once).

use crate::problem::{into_response, Problem};
use poem::http::{header, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Kinds of work with a bound of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Orders and cancels on the DB-lock path (`/api/orders`).
    DbLock,
    /// Orders and cancels on the Redis path (`/api/redis/orders`).
    Redis,
    /// POS sales and returns (`/api/stores/{id}/orders`).
    Pos,
    /// Every other `GET` of the shop and store routes.
    Reads,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::DbLock, Kind::Redis, Kind::Pos, Kind::Reads];

    pub fn name(self) -> &'static str {
        match self {
            Self::DbLock => "db_lock",
            Self::Redis => "redis",
            Self::Pos => "pos",
            Self::Reads => "reads",
        }
    }

    /// The class of an operation, by its `operationId`: `Some(Some(kind))` is shed as `kind`,
    /// `Some(None)` is never shed (health, the operators' routes), and `None` means the operation
    /// has no class yet — the spec's test fails for it, so a new or renamed route cannot slip out
    /// of its class.
    pub fn of_operation(operation_id: &str) -> Option<Option<Self>> {
        Some(match operation_id {
            "createOrderDbLock" | "cancelOrderDbLock" => Some(Self::DbLock),
            // Holds are MySQL-first writes, as DB-lock orders are.
            "createHold" | "extendHold" | "releaseHold" | "convertHold" => Some(Self::DbLock),
            "createOrderRedis" | "cancelOrderRedis" => Some(Self::Redis),
            "posSale" | "posCancel" => Some(Self::Pos),
            "markReadyForPickup" | "collectPickup" | "dispatchOrder" => Some(Self::Pos),
            "storeWorkList" => Some(Self::Reads),
            "shipOrder" | "collectPickupAdmin" => None,
            "listProducts" | "getProduct" | "listLocations" | "getOrder" | "listProductsRedis"
            | "getProductRedis" | "listStoreProducts" | "getStoreStock" | "nearbyStores"
            | "getHold" | "listEvents" => Some(Self::Reads),
            "live"
            | "ready"
            | "setStock"
            | "adjustStock"
            | "getStockStates"
            | "listMovements"
            | "setSafetyStock"
            | "issueStoreKey"
            | "createChannel"
            | "listChannels"
            | "issueChannelKey"
            | "revokeChannelKey"
            | "revokeStoreKey"
            | "createLocation"
            | "listLocationsAdmin"
            | "updateLocation"
            | "getLocationAdmin"
            | "createProduct"
            | "listProductsAdmin"
            | "updateProduct"
            | "getProductAdmin"
            | "listJobRuns"
            | "listOrdersByStatus"
            | "listRedisDataLosses"
            | "listStaleKeys"
            | "listDeadLetters"
            | "replayDeadLetter"
            | "retryRejectedOrder"
            | "runReconciliation"
            | "createOperator"
            | "listOperators"
            | "revokeOperator"
            | "listAudit"
            | "createWebhook"
            | "listWebhooks"
            | "getWebhook"
            | "updateWebhook"
            | "deleteWebhook"
            | "rotateWebhookSecret"
            | "listWebhookDeliveries"
            | "redeliverWebhookEvent"
            | "redeliverWebhookSince" => None,
            _ => return None,
        })
    }
}

/// How many requests of each kind may be in flight at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// How long a request that finds its kind at the bound waits for a slot before it is refused.
    /// A short wait absorbs bursts, and keeps clients that retry at once (ignoring `Retry-After`)
    /// from spending the CPU the admitted requests need on refusals.
    pub shed_wait: std::time::Duration,
    pub db_lock: usize,
    pub redis: usize,
    pub pos: usize,
    pub reads: usize,
}

impl Limits {
    fn of(&self, kind: Kind) -> usize {
        match kind {
            Kind::DbLock => self.db_lock,
            Kind::Redis => self.redis,
            Kind::Pos => self.pos,
            Kind::Reads => self.reads,
        }
    }
}

/// The bounds in force and what they refused.
pub struct Shedder {
    limits: Limits,
    permits: [Arc<Semaphore>; 4],
    shed: [AtomicU64; 4],
}

impl Shedder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            permits: Kind::ALL.map(|k| Arc::new(Semaphore::new(limits.of(k).max(1)))),
            shed: Default::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A slot for a request of `kind`: at once when one is free (no timer on the common path),
    /// else the first one to free up within `shed_wait`.
    async fn admit(&self, kind: Kind) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permits = &self.permits[kind as usize];
        if let Ok(p) = permits.clone().try_acquire_owned() {
            return Some(p);
        }
        tokio::time::timeout(self.limits.shed_wait, permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Requests of `kind` refused so far.
    pub fn shed(&self, kind: Kind) -> u64 {
        self.shed[kind as usize].load(Ordering::Relaxed)
    }

    /// Requests of `kind` in flight now.
    pub fn in_flight(&self, kind: Kind) -> usize {
        self.limits.of(kind).max(1) - self.permits[kind as usize].available_permits()
    }
}

/// A route of the spec: its path template, the template's segments, and per method its
/// operation's id and the class it is shed in.
type Route = (
    String,
    Vec<String>,
    BTreeMap<String, (Operation, Option<Kind>)>,
);

/// The operation a request names (its `operationId`): what the operators' auth looks up the role
/// a route needs by ([`crate::auth::role_needed_by`]). Empty for a route outside the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation(pub Arc<str>);

/// Paths and their methods, from the spec: the `Allow` header of a 405, and the class each
/// operation is shed in ([`Kind::of_operation`]).
pub struct Methods(Vec<Route>);

impl Methods {
    /// Reads the operations of an OpenAPI document, plus the routes outside it.
    pub fn from_spec(spec: &str) -> Self {
        let doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let mut routes: Vec<Route> = Vec::new();
        let mut add = |path: &str, methods: BTreeMap<String, (Operation, Option<Kind>)>| {
            routes.push((
                path.to_owned(),
                path.split('/').map(str::to_owned).collect(),
                methods,
            ));
        };
        if let Some(paths) = doc["paths"].as_object() {
            for (path, ops) in paths {
                let methods = ops
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(m, op)| {
                                let id = op["operationId"].as_str().unwrap_or_default();
                                (
                                    m.to_uppercase(),
                                    (Operation(id.into()), Kind::of_operation(id).flatten()),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                add(path, methods);
            }
        }
        for path in ["/metrics", "/api/openapi.json", "/api/openapi.yaml"] {
            add(
                path,
                BTreeMap::from([("GET".to_owned(), (Operation("".into()), None))]),
            );
        }
        Self(routes)
    }

    /// The route `path` names, if any.
    fn route(&self, path: &str) -> Option<&Route> {
        // Compared segment by segment as the path is split: no list of segments is built (this
        // runs a few times for every request).
        let count = path.split('/').count();
        self.0.iter().find(|(_, pattern, _)| {
            pattern.len() == count
                && pattern.iter().zip(path.split('/')).all(|(p, s)| {
                    p == s || (p.starts_with('{') && p.ends_with('}') && !s.is_empty())
                })
        })
    }

    /// The template of the route `path` names (`/api/orders/{orderId}`), if any: what the access
    /// log shows instead of a path full of ids.
    pub fn template(&self, path: &str) -> Option<&str> {
        self.route(path).map(|(template, _, _)| template.as_str())
    }

    /// The class a request is shed in: its operation's, or none for a route outside the spec.
    fn kind(&self, method: &Method, path: &str) -> Option<Kind> {
        self.route(path)?.2.get(method.as_str())?.1
    }

    /// The operation a request names, if it names one of the spec's.
    pub fn operation(&self, method: &Method, path: &str) -> Option<Operation> {
        let (op, _) = self.route(path)?.2.get(method.as_str())?;
        (!op.0.is_empty()).then(|| op.clone())
    }

    /// The methods `path` answers, as an `Allow` value (`HEAD` with every `GET`).
    fn allow(&self, path: &str) -> Option<String> {
        let (_, _, methods) = self.route(path)?;
        let mut all: Vec<&str> = methods.keys().map(String::as_str).collect();
        if methods.contains_key("GET") {
            all.push("HEAD");
        }
        Some(all.join(", "))
    }
}

/// The middleware.
pub struct Edge<E> {
    pub inner: E,
    pub shedder: Arc<Shedder>,
    pub methods: Arc<Methods>,
}

impl<E: Endpoint> Endpoint for Edge<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let limit = self.shedder.limits.max_body_bytes;
        let too_large = || {
            Problem::new(
                413,
                "payload-too-large",
                "Request body too large",
                format!("the body may have at most {limit} bytes (MAX_BODY_BYTES)"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Ok(into_response(&too_large()));
        }
        // An empty header would read as no header at all further in: refused here instead.
        if let Some(key) = req.headers().get("idempotency-key") {
            let b = key.as_bytes();
            if b.is_empty() || b.len() > 128 || !b.iter().all(u8::is_ascii_graphic) {
                return Ok(into_response(&Problem::bad_request(
                    "Idempotency-Key must be 1 to 128 visible ASCII characters",
                )));
            }
        }
        let permit = match self.methods.kind(req.method(), req.uri().path()) {
            None => None,
            Some(kind) => match self.shedder.admit(kind).await {
                Some(p) => Some(p),
                None => {
                    self.shedder.shed[kind as usize].fetch_add(1, Ordering::Relaxed);
                    return Ok(into_response(&Problem::new(
                        503,
                        "overloaded",
                        "Too many requests in flight",
                        format!(
                            "{} {} requests are in flight, the most this instance takes at once, and none ended within {} ms; retry after 1 s",
                            self.shedder.limits.of(kind),
                            kind.name(),
                            self.shedder.limits.shed_wait.as_millis()
                        ),
                    )));
                }
            },
        };
        // A body without a length (chunked) is read here, up to the limit.
        if declared.is_none() && req.method() != Method::GET && req.method() != Method::HEAD {
            match req.take_body().into_bytes_limit(limit).await {
                Ok(bytes) => req.set_body(bytes),
                Err(poem::error::ReadBodyError::PayloadTooLarge) => {
                    return Ok(into_response(&too_large()))
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Kept for a 405's `Allow` (a clone shares the URI's bytes; nothing is copied).
        let uri = req.uri().clone();
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        drop(permit);
        let status = match &result {
            Ok(r) => r.status(),
            Err(e) => e.status(),
        };
        if status != StatusCode::METHOD_NOT_ALLOWED {
            return result;
        }
        let Some(allow) = self.methods.allow(uri.path()) else {
            return result;
        };
        let mut resp = into_response(&Problem::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            format!("this route answers {allow}"),
        ));
        if let Ok(v) = allow.parse() {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_reads_as_its_route_template() {
        let spec = r#"{"paths": {
            "/api/orders/{orderId}": {"get": {"operationId": "getOrder"}},
            "/api/orders/{orderId}/cancel": {"post": {"operationId": "cancelOrderDbLock"}}
        }}"#;
        let m = Methods::from_spec(spec);
        assert_eq!(
            m.template("/api/orders/7-abc"),
            Some("/api/orders/{orderId}")
        );
        assert_eq!(
            m.template("/api/orders/7-abc/cancel"),
            Some("/api/orders/{orderId}/cancel")
        );
        assert_eq!(m.template("/metrics"), Some("/metrics"));
        assert_eq!(
            m.template("/api/orders/"),
            None,
            "an empty id names nothing"
        );
        assert_eq!(m.template("/api/nothing"), None);
    }

    #[test]
    fn a_request_names_its_operation() {
        let spec = r#"{"paths": {
            "/api/admin/operators/{operatorId}": {"delete": {"operationId": "revokeOperator"}}
        }}"#;
        let m = Methods::from_spec(spec);
        assert_eq!(
            m.operation(&Method::DELETE, "/api/admin/operators/7"),
            Some(Operation("revokeOperator".into()))
        );
        assert_eq!(m.operation(&Method::GET, "/api/admin/operators/7"), None);
        assert_eq!(
            m.operation(&Method::GET, "/metrics"),
            None,
            "outside the spec"
        );
    }
}
