//! RFC 9457 problem details: the one error body of the API.
//!
//! Every error the service answers, including the ones poem-openapi raises itself (malformed JSON,
//! wrong types, unknown enum values, missing credentials, unknown routes), leaves as
//! `application/problem+json` with a stable `type` per kind of error.

use poem::http::StatusCode;
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use sf_persistence::{Alternative, Failure, FailureKind, Refusal, StorageError};
use sf_routing::DomainError;

/// A problem detail (RFC 9457).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Problem {
    /// A URI reference naming the kind of problem; stable, so clients can branch on it.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a human.
    pub detail: String,
    /// This occurrence: the request's id as `urn:request:<id>`, the same id as the answer's
    /// `X-Request-Id` header. Quote it when reporting a problem; the service's log lines of the
    /// request carry it.
    #[oai(skip_serializing_if_is_none)]
    pub instance: Option<Box<String>>,
    // Boxed, like the optional fields below: the problem is every operation's error, and stays
    // small.
    /// The product the problem is about, when there is one.
    #[oai(skip_serializing_if_is_none)]
    pub product_id: Option<Box<u64>>,
    /// The order the problem is about, when there is one (an order accepted but not yet
    /// replicated: `/problems/order-not-replicated`; an order whose reservation got no answer:
    /// `/problems/order-outcome-unknown`).
    #[oai(skip_serializing_if_is_none)]
    pub order_id: Option<Box<String>>,
    /// For a pickup that the chosen store cannot fill: nearby stores that can, nearest first.
    /// For a same-day order when same-day is closed (`/problems/same-day-closed`): the stores in
    /// the radius that have the goods, with when a pickup there would be ready.
    /// (Boxed, like `orderId`: the problem is every operation's error, and stays small.)
    #[oai(skip_serializing_if_is_none)]
    pub alternatives: Option<Box<Vec<AlternativeStore>>>,
    /// For `/problems/same-day-closed`: the earliest time a store in the radius opens its
    /// same-day window again (RFC 3339 with that store's offset).
    #[oai(skip_serializing_if_is_none)]
    pub next_same_day_at: Option<Box<String>>,
    /// For a 403 on an operators' route: the role the route needs.
    #[oai(skip_serializing_if_is_none)]
    pub required_role: Option<crate::auth::RoleBody>,
}

/// A store that could fill the order instead.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AlternativeStore {
    pub store_id: u64,
    pub name: String,
    pub distance_km: Option<f64>,
    /// When a pickup ordered now would be ready there (RFC 3339 with the store's offset).
    #[oai(skip_serializing_if_is_none)]
    pub ready_by: Option<String>,
}

impl From<Alternative> for AlternativeStore {
    fn from(a: Alternative) -> Self {
        Self {
            store_id: a.store_id,
            name: a.name,
            distance_km: a.distance_km,
            ready_by: a.ready_by,
        }
    }
}

pub const CONTENT_TYPE: &str = "application/problem+json";

impl Problem {
    pub fn new(status: u16, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{kind}"),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            instance: crate::request_id::current().map(|id| Box::new(id.instance())),
            product_id: None,
            order_id: None,
            alternatives: None,
            next_same_day_at: None,
            required_role: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "bad-request", "The request is malformed", detail)
    }
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(422, "validation-error", "The request is not valid", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            401,
            "unauthorized",
            "Missing or invalid credentials",
            detail,
        )
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            403,
            "forbidden",
            "These credentials may not do this",
            detail,
        )
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not-found", "Not found", detail)
    }
    /// A server error: the cause is logged (with the request id), and the client is given only
    /// the id to quote.
    pub fn internal() -> Self {
        let detail = "the service failed to handle this request; it has been logged";
        Self::new(
            500,
            "internal",
            "Internal error",
            match crate::request_id::current() {
                Some(id) => format!("{detail}; quote request id {id}"),
                None => detail.to_owned(),
            },
        )
    }
}

impl From<DomainError> for Problem {
    fn from(e: DomainError) -> Self {
        Self::validation(e.to_string())
    }
}

impl From<StorageError> for Problem {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Refused(r) => r.into(),
            StorageError::Failed(f) => f.into(),
        }
    }
}

/// A failure: what the client is told is the kind's documented sentence; the cause goes to the
/// log (with the request id, from the request's span), never to the client.
impl From<Failure> for Problem {
    fn from(f: Failure) -> Self {
        match &f.kind {
            FailureKind::NotReplicated { order, .. } => {
                tracing::warn!(error = %f, "order answered before enough replicas held it");
                Self {
                    order_id: Some(Box::new(order.order_id.clone())),
                    ..Self::new(
                        504,
                        "order-not-replicated",
                        "Accepted, not yet replicated",
                        format!(
                            "{f}. Retry with the same Idempotency-Key: the retry answers 202 with this same order once the replicas hold it (or 410 if it was lost). Without a key, look the order up (GET /api/orders/{}) before placing it again.",
                            order.order_id
                        ),
                    )
                }
            }
            FailureKind::OutcomeUnknown { order_id } => {
                tracing::warn!(error = %f, "order outcome unknown");
                Self {
                    order_id: Some(Box::new(order_id.clone())),
                    ..Self::new(
                        503,
                        "order-outcome-unknown",
                        "Order outcome unknown",
                        format!(
                            "the stock cache did not answer the reservation of order {order_id}: it may or may not have been placed. Look it up (GET /api/orders/{order_id}): once placed it is ACCEPTED or CONFIRMED; if it was not, the lookup answers 404. Retry with the same Idempotency-Key to get its answer; without a key, look it up before placing it again"
                        ),
                    )
                }
            }
            FailureKind::StockCacheDown(detail) => {
                // Expected while Redis is down, once per shed request: not worth a log line each.
                tracing::debug!(error = %f, "refused: stock cache not trusted");
                Self::new(
                    503,
                    "stock-cache-unavailable",
                    "Stock cache unavailable",
                    detail.clone(),
                )
            }
            FailureKind::Unavailable(detail) => {
                tracing::warn!(error = %f, "dependency unavailable");
                Self::new(
                    503,
                    "unavailable",
                    "Temporarily unavailable",
                    detail.clone(),
                )
            }
            FailureKind::Unreachable(dependency) => {
                tracing::error!(error = %f, "request failed");
                Self::new(
                    503,
                    "unavailable",
                    "Temporarily unavailable",
                    dependency.retry_shortly(),
                )
            }
            FailureKind::NotReplicatedChange | FailureKind::Internal => {
                tracing::error!(error = %f, "request failed");
                Self::internal()
            }
        }
    }
}

/// A refusal: its text is the detail the client reads.
impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Self {
        let detail = r.to_string();
        match r {
            Refusal::UnknownProduct(p) => Self {
                product_id: Some(Box::new(p.get())),
                ..Self::new(404, "unknown-product", "Unknown product", detail)
            },
            Refusal::UnknownOrder(_) | Refusal::NoSuchSale { .. } => {
                Self::new(404, "unknown-order", "Unknown order", detail)
            }
            Refusal::Lost(_) => Self::new(
                410,
                "order-lost",
                "Order lost with the stock cache's data",
                detail,
            ),
            Refusal::UnknownLocation(_) | Refusal::NotFound(_) => Self::not_found(detail),
            Refusal::OutOfStock {
                product,
                alternatives,
                ..
            } => Self {
                product_id: product.map(|p| Box::new(p.get())),
                alternatives: alternatives
                    .map(|a| Box::new(a.into_iter().map(Into::into).collect())),
                ..Self::new(409, "out-of-stock", "Not enough stock", detail)
            },
            Refusal::SameDayClosed {
                next_same_day_at,
                alternatives,
                ..
            } => Self {
                next_same_day_at: next_same_day_at.map(Box::new),
                alternatives: Some(Box::new(alternatives.into_iter().map(Into::into).collect())),
                ..Self::new(
                    409,
                    "same-day-closed",
                    "Same-day delivery is closed",
                    detail,
                )
            },
            Refusal::Invalid(_) => Self::validation(detail),
            Refusal::IdempotencyMismatch => Self::new(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused with another request",
                detail,
            ),
            Refusal::IdempotencyInFlight => Self::new(
                409,
                "idempotency-key-in-flight",
                "Request with this Idempotency-Key still running",
                detail,
            ),
            Refusal::Conflict(_) => Self::new(409, "conflict", "Conflict", detail),
            Refusal::WrongPickupCode(_) => {
                Self::new(403, "wrong-pickup-code", "Wrong pickup code", detail)
            }
            Refusal::UnknownHold(_) => Self::new(404, "unknown-hold", "Unknown hold", detail),
            Refusal::HoldExpired(_) => Self::new(409, "hold-expired", "Hold expired", detail),
            Refusal::HoldReleased(_) => Self::new(409, "hold-released", "Hold released", detail),
        }
    }
}

/// Turns any error poem or poem-openapi raised into a problem (used by `bad_request_handler`s and
/// by the catch-all at the top of the route tree).
pub fn from_poem(err: &poem::Error) -> Problem {
    if let Some(p) = err.downcast_ref::<Problem>() {
        return p.clone();
    }
    let status = err.status();
    let detail = err.to_string();
    match status {
        StatusCode::BAD_REQUEST => Problem::bad_request(detail),
        StatusCode::UNAUTHORIZED => Problem::unauthorized(if detail.is_empty() {
            "send Authorization: Bearer <token>".into()
        } else {
            detail
        }),
        StatusCode::NOT_FOUND => {
            Problem::not_found(if detail.is_empty() || detail == "not found" {
                "no such route".to_owned()
            } else {
                detail
            })
        }
        StatusCode::METHOD_NOT_ALLOWED => Problem::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            "this route does not accept this method",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            format!("{detail}; send Content-Type: application/json"),
        ),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled server error");
            Problem::internal()
        }
        s => Problem::new(
            s.as_u16(),
            "http-error",
            s.canonical_reason().unwrap_or("Error"),
            detail,
        ),
    }
}

/// Renders a problem as a plain poem response (outside typed operations). A problem made outside
/// the request's scope (none should be) still names the request it answers.
pub fn into_response(p: &Problem) -> poem::Response {
    use poem_openapi::types::ToJSON;
    let named;
    let p = match (&p.instance, crate::request_id::current()) {
        (None, Some(id)) => {
            named = Problem {
                instance: Some(Box::new(id.instance())),
                ..p.clone()
            };
            &named
        }
        _ => p,
    };
    let mut resp = poem::Response::builder()
        .status(StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type(CONTENT_TYPE);
    if p.status == 503 || p.status == 504 {
        resp = resp.header("Retry-After", "1");
    }
    resp.body(p.to_json_string())
}

/// The statuses a problem can carry, with what each means. Every operation declares them all
/// (the error side of its `Result`), so a client generated from the spec knows every answer.
const STATUSES: &[(u16, &str)] = &[
    (400, "The request does not match the schema: malformed JSON, a wrong type, a value outside its declared range or pattern, an unknown field or enum value, or a bad parameter or header."),
    (401, "Missing or invalid credentials (an operator token or a store key that is unknown or revoked)."),
    (403, "These credentials may not do this (another store's key; an operator whose role does not cover the route: `requiredRole` names the role it needs), or a pickup code is wrong (`/problems/wrong-pickup-code`; after 5 wrong codes only an operator can collect the order)."),
    (404, "No such resource (`/problems/not-found`, `/problems/unknown-product`, `/problems/unknown-order`, `/problems/unknown-hold`)."),
    (409, "Conflicts with the current state: not enough stock (`/problems/out-of-stock`, naming the product and, for a pickup, nearby stores that have it), same-day closed at every store in range that has the goods (`/problems/same-day-closed`, with `nextSameDayAt` and the stores as pickup `alternatives` with `readyBy`), a hold that expired (`/problems/hold-expired`) or was released (`/problems/hold-released`), an `Idempotency-Key` still in flight, a duplicate, a job already running, a stock change that would make the stock negative, or an order or hold whose state does not allow this."),
    (410, "Accepted on the Redis path, then lost with Redis's data before it reached MySQL (`/problems/order-lost`): no stock was taken for it."),
    (413, "The body is larger than the configured limit (`MAX_BODY_BYTES`)."),
    (415, "Missing or wrong `Content-Type`: send `application/json`."),
    (422, "Valid against the schema, but breaks a rule that spans fields or needs the current data (an address missing for its delivery type, `storeId` on a non-pickup order, two lines of one product summing over 1000, an `Idempotency-Key` reused with another body)."),
    (500, "The service failed; the cause is logged, never shown. The `detail` ends with the request id to quote (also in `instance` and the `X-Request-Id` header)."),
    (503, "Temporarily unavailable (a store is down or slow, the stock cache is recovering) or overloaded: nothing was changed, unless the `detail` says the outcome is unknown — as `/problems/order-outcome-unknown` does, with the `orderId` of a Redis-path order whose reservation got no answer: look it up before placing it again. Retry after `Retry-After` seconds (with the same `Idempotency-Key`)."),
    (504, "A Redis-path order the Redis master holds, but fewer replicas than `REDIS_MIN_REPLICA_ACKS` confirmed it within `REDIS_WAIT_TIMEOUT_MS` (`/problems/order-not-replicated`, with its `orderId`): it stands unless that master fails before replicating it. Retry after `Retry-After` seconds with the same `Idempotency-Key`: the retry answers 202 with the same order once replicas hold it, or 410 if it was lost."),
];

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.detail)
    }
}

impl std::error::Error for Problem {}

/// A problem is the error side of every operation: `Result<T, Problem>`. It leaves with its own
/// status, so the HTTP status always equals the body's `status`.
impl ApiResponse for Problem {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: STATUSES
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: CONTENT_TYPE,
                        schema: <Problem as Type>::schema_ref(),
                    }],
                    headers: if *status == 503 || *status == 504 {
                        vec![MetaHeader {
                            name: "Retry-After".into(),
                            description: Some("Seconds to wait before retrying.".into()),
                            required: true,
                            deprecated: false,
                            schema: <u32 as Type>::schema_ref(),
                        }]
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <Problem as Type>::register(registry);
        <u32 as Type>::register(registry);
    }
}

impl From<Problem> for poem::Error {
    fn from(p: Problem) -> Self {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        poem::Error::new(p, status)
    }
}

/// What an operation answers.
pub type ApiResult<T> = Result<T, Problem>;

#[cfg(test)]
mod tests {
    use super::*;
    use sf_persistence::Cause;
    use sf_routing::{LocationId, ProductId};

    fn of(e: StorageError) -> (u16, String, String) {
        let p = Problem::from(e);
        (p.status, p.kind, p.detail)
    }

    #[test]
    fn each_refusal_has_its_status_and_type() {
        let p = ProductId::new_unchecked(7);
        let cases = [
            (Refusal::UnknownProduct(p), 404, "/problems/unknown-product"),
            (
                Refusal::UnknownOrder("1-x".into()),
                404,
                "/problems/unknown-order",
            ),
            (
                Refusal::NoSuchSale {
                    store: LocationId::new_unchecked(3),
                    order: "1-x".into(),
                },
                404,
                "/problems/unknown-order",
            ),
            (Refusal::Lost("gone".into()), 410, "/problems/order-lost"),
            (
                Refusal::SameDayClosed {
                    detail: "closed".into(),
                    next_same_day_at: Some("2026-12-08T10:00:00+09:00".into()),
                    alternatives: Vec::new(),
                },
                409,
                "/problems/same-day-closed",
            ),
            (
                Refusal::OutOfStock {
                    detail: "short".into(),
                    product: Some(p),
                    alternatives: None,
                },
                409,
                "/problems/out-of-stock",
            ),
            (
                Refusal::IdempotencyMismatch,
                422,
                "/problems/idempotency-key-reused",
            ),
            (
                Refusal::IdempotencyInFlight,
                409,
                "/problems/idempotency-key-in-flight",
            ),
            (Refusal::Conflict("taken".into()), 409, "/problems/conflict"),
            (
                Refusal::WrongPickupCode("no".into()),
                403,
                "/problems/wrong-pickup-code",
            ),
            (
                Refusal::Invalid("bad".into()),
                422,
                "/problems/validation-error",
            ),
            (
                Refusal::UnknownHold("1-h".into()),
                404,
                "/problems/unknown-hold",
            ),
            (
                Refusal::HoldExpired("late".into()),
                409,
                "/problems/hold-expired",
            ),
            (
                Refusal::HoldReleased("gone".into()),
                409,
                "/problems/hold-released",
            ),
        ];
        for (r, status, kind) in cases {
            let shown = r.to_string();
            let (s, k, detail) = of(r.into());
            assert_eq!((s, k.as_str()), (status, kind), "{shown}");
            assert_eq!(detail, shown, "a refusal says what it is");
        }
    }

    #[test]
    fn each_failure_kind_has_its_status_and_says_only_its_sentence() {
        let cases = [
            (
                Failure::stock_cache_down("order elsewhere", "circuit open on 10.0.0.9"),
                503,
                "/problems/stock-cache-unavailable",
                "order elsewhere",
            ),
            (
                Failure::unavailable("retry"),
                503,
                "/problems/unavailable",
                "retry",
            ),
            (
                Failure {
                    kind: FailureKind::NotReplicatedChange,
                    cause: Cause::Message("10.0.0.9".into()),
                },
                500,
                "/problems/internal",
                "the service failed to handle this request; it has been logged",
            ),
        ];
        for (f, status, kind, told) in cases {
            let (s, k, detail) = of(f.into());
            assert_eq!((s, k.as_str(), detail.as_str()), (status, kind, told));
        }
    }

    #[test]
    fn a_problem_names_its_request_and_a_500_gives_its_id_to_quote() {
        use crate::request_id::{scope, RequestId};
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let id = RequestId("req-7".into());
        let (internal, refused) = rt.block_on(scope(id, async {
            (
                Problem::from(StorageError::internal("password=hunter2")),
                Problem::from(Refusal::UnknownOrder("1-x".into())),
            )
        }));
        assert_eq!(
            internal.instance.as_deref().map(String::as_str),
            Some("urn:request:req-7")
        );
        assert_eq!(
            internal.detail,
            "the service failed to handle this request; it has been logged; quote request id req-7"
        );
        assert_eq!(
            refused.instance.as_deref().map(String::as_str),
            Some("urn:request:req-7")
        );
        assert_eq!(Problem::internal().instance, None, "outside a request");
    }

    #[test]
    fn an_unknown_product_names_it() {
        let p = Problem::from(Refusal::UnknownProduct(ProductId::new_unchecked(42)));
        assert_eq!(p.product_id.as_deref(), Some(&42));
    }

    #[test]
    fn internal_text_never_reaches_the_client() {
        let secret = "pool timed out on 10.0.0.7:3306 with password=hunter2";
        let internal = of(StorageError::internal(secret));
        assert_eq!(internal.0, 500);
        assert!(!internal.2.contains("hunter2"), "{}", internal.2);
        let redis = of(StorageError::from(redis::RedisError::from(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, secret),
        )));
        assert_eq!((redis.0, redis.1.as_str()), (503, "/problems/unavailable"));
        assert_eq!(redis.2, sf_persistence::Dependency::Redis.retry_shortly());
    }

    #[test]
    fn an_unknown_outcome_names_its_order_not_its_cause() {
        let p = Problem::from(Failure {
            kind: FailureKind::OutcomeUnknown {
                order_id: "4-abc".into(),
            },
            cause: Cause::Message("read timed out on 10.0.0.9".into()),
        });
        assert_eq!(
            (p.status, p.kind.as_str()),
            (503, "/problems/order-outcome-unknown")
        );
        assert_eq!(p.order_id.as_deref().map(String::as_str), Some("4-abc"));
        assert!(p.detail.contains("GET /api/orders/4-abc"), "{}", p.detail);
        assert!(!p.detail.contains("10.0.0.9"), "{}", p.detail);
    }
}
