//! Request ids and the access log: the outermost layer of the route tree.
//!
//! Every request gets an id: the caller's `X-Request-Id` when it is a sane token
//! ([`is_acceptable`]), else a new UUIDv7. The id goes back in the answer's `X-Request-Id`, into
//! every problem's `instance` (`urn:request:<id>`), and into a `tracing` span (`request`, field
//! `request_id`) around the whole request, so every log line of the request carries it. Handlers
//! read it as request data ([`RequestId`]) or with [`current`]. When the access log is on, each
//! request ends with one `info` line (target `access`): method, route template, status, duration,
//! request id and actor.
//!
//! The actor is whoever the request's credentials named (`operator:4`, `store-key:9`,
//! `channel:2`; `-` for none): each request carries an empty [`ActorSlot`] as request data, and
//! whichever auth accepts the request fills it with [`set_actor`] (or [`ActorSlot::set`]).
//!
//! This layer decides nothing about the request itself; it only names it and reports it.

use crate::edge::Methods;
use crate::problem;
use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The header that carries the id both ways.
pub const HEADER: &str = "x-request-id";

/// The longest id taken from a caller.
pub const MAX_LEN: usize = 128;

/// A request's id, as request data (`poem::web::Data<&RequestId>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// A new id: a UUIDv7, so that ids sort by the time they were made.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string().into())
    }

    /// The caller's id when it is acceptable, else a new one.
    pub fn from_header(value: Option<&HeaderValue>) -> Self {
        match value.and_then(|v| v.to_str().ok()) {
            Some(v) if is_acceptable(v) => Self(v.into()),
            _ => Self::new(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a problem's `instance`: a URN, since `instance` is a URI reference and a bare
    /// token would read as a path relative to the request's URI.
    pub fn instance(&self) -> String {
        format!("urn:request:{}", self.0)
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a caller's id is kept: 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 . _ ~ : -`. These
/// are safe in a header, a log line and a URN without escaping; anything else (spaces, quotes,
/// control characters, non-ASCII) could forge or break a log line, so it is replaced.
pub fn is_acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b':' | b'-'))
}

/// Where an auth reports the actor of the current request, for the access log. Set once: a
/// second report is ignored (the first credentials checked named the request).
#[derive(Debug, Clone, Default)]
pub struct ActorSlot(Arc<std::sync::OnceLock<String>>);

impl ActorSlot {
    pub fn set(&self, actor: &sf_persistence::access::Actor) {
        let _ = self.0.set(actor.to_string());
    }

    /// The actor reported, if any.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Reports the actor of request `req` for its access log line; any auth calls this once it has
/// accepted the request's credentials.
pub fn set_actor(req: &Request, actor: &sf_persistence::access::Actor) {
    if let Some(slot) = req.data::<ActorSlot>() {
        slot.set(actor);
    }
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being handled by this task, if any (problems read it for `instance`).
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` as part of request `id` (a task spawned for a request does not inherit its id).
pub async fn scope<F: std::future::Future>(id: RequestId, f: F) -> F::Output {
    CURRENT.scope(id, f).await
}

/// The middleware: names the request, wraps it in its span, answers with its id and writes the
/// access log line.
pub struct RequestIds<E> {
    pub inner: E,
    /// Route templates, for the access log (the spec's paths, as the edge matches them).
    pub methods: Arc<Methods>,
    pub access_log: bool,
}

impl<E: Endpoint> Endpoint for RequestIds<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let id = RequestId::from_header(req.headers().get(HEADER));
        req.set_data(id.clone());
        let actor = ActorSlot::default();
        req.set_data(actor.clone());
        // The route table, for whoever needs a request's operation (the operators' auth).
        req.set_data(self.methods.clone());
        let method = req.method().clone();
        // Under a filter that drops the line (`RUST_LOG=warn`), nothing is prepared for it.
        let logged = self.access_log && tracing::enabled!(target: "access", tracing::Level::INFO);
        let route = logged.then(|| self.route(req.uri().path()));
        let span = tracing::info_span!("request", request_id = %id);
        let inner = async {
            match self.inner.call(req).await {
                Ok(resp) => resp.into_response(),
                // Rendered here, in the request's scope, so the problem names the request.
                Err(err) => problem::into_response(&problem::from_poem(&err)),
            }
        };
        let mut resp = scope(id.clone(), inner.instrument(span)).await;
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            resp.headers_mut().insert(HEADER, v);
        }
        if let Some(route) = route {
            let status = resp.status().as_u16();
            // In ms, to the µs.
            let duration_ms = started.elapsed().as_micros() as f64 / 1000.0;
            let actor = actor.get().unwrap_or("-");
            tracing::info!(
                target: "access",
                method = %method,
                route = %route,
                status,
                duration_ms,
                request_id = %id,
                actor = %actor,
                "{method} {route} {status} {duration_ms:.1} ms {id} {actor}"
            );
        }
        Ok(resp)
    }
}

impl<E> RequestIds<E> {
    /// The route template of a request (`/api/orders/{orderId}`), or its path when it names no
    /// route of the service (an unknown route, Swagger UI's files).
    fn route(&self, path: &str) -> String {
        self.methods
            .template(path)
            .map_or_else(|| path.to_owned(), str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        for kept in ["a", "req-1", "0190a1b2.c3_d4~e5:f6", &"x".repeat(MAX_LEN)] {
            assert!(is_acceptable(kept), "{kept}");
            let v = HeaderValue::from_str(kept).unwrap();
            assert_eq!(RequestId::from_header(Some(&v)).as_str(), kept);
        }
        for replaced in [
            "",
            &"x".repeat(MAX_LEN + 1),
            "with space",
            "quote\"d",
            "semi;colon",
            "slash/ed",
            "ünï",
        ] {
            assert!(!is_acceptable(replaced), "{replaced}");
        }
    }

    #[test]
    fn the_first_actor_reported_names_the_request() {
        use sf_persistence::access::Actor;
        let mut req = Request::builder().finish();
        let slot = ActorSlot::default();
        req.set_data(slot.clone());
        assert_eq!(slot.get(), None);
        set_actor(&req, &Actor::StoreKey(9));
        set_actor(&req, &Actor::Operator(1));
        assert_eq!(slot.get(), Some("store-key:9"));
        // A request without a slot (outside the layer) is left alone.
        set_actor(&Request::builder().finish(), &Actor::Operator(1));
    }

    #[test]
    fn new_ids_are_uuid_v7_and_differ() {
        let (a, b) = (RequestId::new(), RequestId::new());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert!(is_acceptable(a.as_str()));
        assert_eq!(a.instance(), format!("urn:request:{a}"));
    }

    #[test]
    fn the_current_id_is_seen_inside_its_scope_only() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let id = RequestId(Arc::from("abc"));
        let seen = rt.block_on(scope(id.clone(), async { current() }));
        assert_eq!(seen, Some(id));
        assert_eq!(current(), None);
    }
}
