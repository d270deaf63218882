//! The bodies of the webhook routes (`/api/admin/webhooks`).

use crate::types::{rfc3339, Text};
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object};
use sf_persistence::events::deliveries::{Attempt, Delivery, DeliveryStatus};
use sf_persistence::events::webhooks::Endpoint;
use sf_persistence::events::EventType;

/// An event type (`docs/events.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum EventTypeBody {
    #[oai(rename = "order.accepted")]
    OrderAccepted,
    #[oai(rename = "order.confirmed")]
    OrderConfirmed,
    #[oai(rename = "order.rejected")]
    OrderRejected,
    #[oai(rename = "order.cancelled")]
    OrderCancelled,
    #[oai(rename = "order.lost")]
    OrderLost,
    #[oai(rename = "order.fulfillment_changed")]
    OrderFulfillmentChanged,
    #[oai(rename = "hold.expired")]
    HoldExpired,
    #[oai(rename = "stock.low")]
    StockLow,
    #[oai(rename = "stock.out")]
    StockOut,
    #[oai(rename = "stock.back")]
    StockBack,
}

impl From<EventTypeBody> for EventType {
    fn from(t: EventTypeBody) -> Self {
        match t {
            EventTypeBody::OrderAccepted => Self::OrderAccepted,
            EventTypeBody::OrderConfirmed => Self::OrderConfirmed,
            EventTypeBody::OrderRejected => Self::OrderRejected,
            EventTypeBody::OrderCancelled => Self::OrderCancelled,
            EventTypeBody::OrderLost => Self::OrderLost,
            EventTypeBody::OrderFulfillmentChanged => Self::OrderFulfillmentChanged,
            EventTypeBody::HoldExpired => Self::HoldExpired,
            EventTypeBody::StockLow => Self::StockLow,
            EventTypeBody::StockOut => Self::StockOut,
            EventTypeBody::StockBack => Self::StockBack,
        }
    }
}

/// A new webhook endpoint.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct CreateWebhookRequest {
    /// Where events are sent: an absolute `http` or `https` URL (with `WEBHOOK_ALLOWED_HOSTS`
    /// set, on one of those hosts). Redirects are not followed.
    #[oai(validator(min_length = 1, max_length = 2000))]
    pub url: Text,
    /// The event types it receives, at least one: `order.accepted`, `order.confirmed`,
    /// `order.rejected`, `order.cancelled`, `order.lost`, `order.fulfillment_changed`,
    /// `hold.expired`, `stock.low`, `stock.out`, `stock.back`.
    #[oai(validator(min_items = 1, max_items = 20))]
    pub events: Vec<EventTypeBody>,
    /// A note for operators; at most 500 characters.
    #[oai(validator(max_length = 500))]
    pub description: Option<Text>,
}

impl Example for CreateWebhookRequest {
    fn example() -> Self {
        Self {
            url: Text("https://shop.example.com/hooks/stock-flow".into()),
            events: vec![
                EventTypeBody::OrderConfirmed,
                EventTypeBody::OrderRejected,
                EventTypeBody::OrderFulfillmentChanged,
            ],
            description: Some(Text("order updates for the web shop".into())),
        }
    }
}

/// A change of a webhook endpoint; a field not sent stays as it is.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct WebhookPatch {
    #[oai(validator(min_length = 1, max_length = 2000))]
    pub url: Option<Text>,
    #[oai(validator(min_items = 1, max_items = 20))]
    pub events: Option<Vec<EventTypeBody>>,
    #[oai(validator(max_length = 500))]
    pub description: Option<Text>,
    /// `false` stops deliveries; `true` resumes them and clears why it was disabled. Events of
    /// the time it was off are not sent (redeliver them with `…/redeliver`).
    pub enabled: Option<bool>,
}

impl Example for WebhookPatch {
    fn example() -> Self {
        Self {
            url: None,
            events: None,
            description: None,
            enabled: Some(true),
        }
    }
}

/// A webhook endpoint (never with its secret).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct WebhookBody {
    pub webhook_id: u64,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    /// Whether it receives deliveries.
    pub enabled: bool,
    /// Why it was disabled: by an operator, or because every delivery failed for 24 h (with the
    /// last error).
    #[oai(skip_serializing_if_is_none)]
    pub disabled_reason: Option<String>,
    /// RFC 3339, UTC.
    #[oai(skip_serializing_if_is_none)]
    pub disabled_at: Option<String>,
    /// Since when every attempt has failed (RFC 3339, UTC); absent when the last one succeeded.
    #[oai(skip_serializing_if_is_none)]
    pub failing_since: Option<String>,
    /// After a rotation: until when the previous secret still signs (RFC 3339, UTC).
    #[oai(skip_serializing_if_is_none)]
    pub previous_secret_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Example for WebhookBody {
    fn example() -> Self {
        Self {
            webhook_id: 1,
            url: "https://shop.example.com/hooks/stock-flow".into(),
            description: "order updates for the web shop".into(),
            events: vec!["order.confirmed".into(), "order.rejected".into()],
            enabled: true,
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            previous_secret_until: None,
            created_at: "2026-12-07T09:00:00.000Z".into(),
            updated_at: "2026-12-07T09:00:00.000Z".into(),
        }
    }
}

impl From<Endpoint> for WebhookBody {
    fn from(e: Endpoint) -> Self {
        Self {
            webhook_id: e.id,
            events: e.events(),
            url: e.url,
            description: e.description,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_ms.map(rfc3339),
            failing_since: e.failing_since_ms.map(rfc3339),
            previous_secret_until: e.previous_secret_until_ms.map(rfc3339),
            created_at: rfc3339(e.created_ms),
            updated_at: rfc3339(e.updated_ms),
        }
    }
}

/// A webhook endpoint, as reads show it, with its signing secret, shown this once.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct WebhookWithSecretBody {
    pub webhook: WebhookBody,
    /// The signing secret, `whsec_<base64>`: verify each delivery's `webhook-signature` with it
    /// (any Standard Webhooks library does). Shown once; keep it.
    pub secret: String,
}

impl Example for WebhookWithSecretBody {
    fn example() -> Self {
        Self {
            webhook: WebhookBody::example(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwEXAMPLE0000=".into(),
        }
    }
}

/// Every webhook endpoint.
#[derive(Debug, Clone, Object)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookBody>,
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum DeliveryStatusBody {
    /// Not delivered yet: being tried, or waiting for its next attempt.
    Pending,
    Delivered,
    /// Given up after its retry window (24 h).
    Failed,
}

impl From<DeliveryStatus> for DeliveryStatusBody {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

impl From<DeliveryStatusBody> for DeliveryStatus {
    fn from(s: DeliveryStatusBody) -> Self {
        match s {
            DeliveryStatusBody::Pending => Self::Pending,
            DeliveryStatusBody::Delivered => Self::Delivered,
            DeliveryStatusBody::Failed => Self::Failed,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AttemptBody {
    /// RFC 3339, UTC: when it was made.
    pub at: String,
    /// The receiver's HTTP status; absent when there was no answer.
    #[oai(skip_serializing_if_is_none)]
    pub status_code: Option<u16>,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    pub duration_ms: u32,
}

impl From<Attempt> for AttemptBody {
    fn from(a: Attempt) -> Self {
        Self {
            at: rfc3339(a.at_ms),
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

/// One event's delivery to an endpoint.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct DeliveryBody {
    /// The event's `webhook-id`.
    pub event_id: String,
    #[oai(rename = "type")]
    pub kind: String,
    /// What the event is about: an order id, a hold id, `stock:<location>:<product>`.
    pub subject: String,
    pub status: DeliveryStatusBody,
    pub attempts: u32,
    #[oai(skip_serializing_if_is_none)]
    pub last_status_code: Option<u16>,
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub last_attempt_at: Option<String>,
    /// When it is tried next (pending only).
    #[oai(skip_serializing_if_is_none)]
    pub next_attempt_at: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub delivered_at: Option<String>,
    pub created_at: String,
    /// Its attempts, oldest first.
    pub attempt_log: Vec<AttemptBody>,
}

impl Example for DeliveryBody {
    fn example() -> Self {
        Self {
            event_id: "msg_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".into(),
            kind: "order.confirmed".into(),
            subject: "1-0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".into(),
            status: DeliveryStatusBody::Pending,
            attempts: 1,
            last_status_code: Some(500),
            last_error: Some("answered 500 Internal Server Error".into()),
            last_attempt_at: Some("2026-12-07T09:00:00.120Z".into()),
            next_attempt_at: Some("2026-12-07T09:00:05.120Z".into()),
            delivered_at: None,
            created_at: "2026-12-07T09:00:00.100Z".into(),
            attempt_log: vec![AttemptBody {
                at: "2026-12-07T09:00:00.120Z".into(),
                status_code: Some(500),
                error: Some("answered 500 Internal Server Error".into()),
                duration_ms: 31,
            }],
        }
    }
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        Self {
            event_id: d.event_id,
            kind: d.kind,
            subject: d.subject,
            status: d.status.into(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            last_attempt_at: d.last_attempt_ms.map(rfc3339),
            next_attempt_at: d.next_attempt_ms.map(rfc3339),
            delivered_at: d.delivered_ms.map(rfc3339),
            created_at: rfc3339(d.created_ms),
            attempt_log: d.attempt_log.into_iter().map(Into::into).collect(),
        }
    }
}

/// An endpoint's deliveries, newest first.
#[derive(Debug, Clone, Object)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryBody>,
}

/// Which events to send again.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct RedeliverSinceRequest {
    /// RFC 3339 (`format: date-time`): every event of the endpoint's types written since then.
    pub since: chrono::DateTime<chrono::FixedOffset>,
}

impl Example for RedeliverSinceRequest {
    fn example() -> Self {
        Self {
            since: chrono::DateTime::parse_from_rfc3339("2026-12-07T08:00:00Z")
                .expect("an RFC 3339 time"),
        }
    }
}

/// Events queued for delivery again.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct RedeliveryBody {
    /// How many events were queued.
    pub queued: u64,
}

impl Example for RedeliveryBody {
    fn example() -> Self {
        Self { queued: 12 }
    }
}

#[derive(ApiResponse)]
pub enum WebhookCreated {
    /// Created; the answer shows the signing secret once.
    #[oai(status = 201)]
    Created(poem_openapi::payload::Json<WebhookWithSecretBody>),
}

#[derive(ApiResponse)]
pub enum WebhookDeleted {
    /// Deleted, with its deliveries.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum RedeliveryQueued {
    /// Queued: the deliveries are pending and due now.
    #[oai(status = 202)]
    Queued(poem_openapi::payload::Json<RedeliveryBody>),
}

#[cfg(test)]
mod tests {
    use super::EventTypeBody;
    use poem_openapi::types::{ParseFromJSON, ToJSON};
    use sf_persistence::events::EventType;

    /// The spec's names of the event types are the ones events carry, each once.
    #[test]
    fn every_event_type_has_its_name_in_the_spec() {
        for t in EventType::ALL {
            let body = EventTypeBody::parse_from_json(Some(serde_json::json!(t.as_str())))
                .unwrap_or_else(|_| panic!("{} is not in the spec", t.as_str()));
            assert_eq!(EventType::from(body), t);
            assert_eq!(body.to_json(), Some(serde_json::json!(t.as_str())));
        }
    }
}
