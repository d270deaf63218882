//! Events out, pulled: `GET /api/events`, the feed for consumers that cannot receive webhook calls,
//! with the payloads the webhooks send. And how events show orders and holds ([`EventBodies`]):
//! as `GET` shows them.

use crate::auth::{OperatorAuth, ShopKey};
use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use crate::types::{HoldBody, OrderBody};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, ToJSON};
use poem_openapi::{Object, OpenApi, SecurityScheme, Tags};
use serde_json::value::RawValue;
use sf_persistence::access::KeyLookup;
use sf_persistence::events::{Bodies, FeedEvent, FeedReader};
use sf_persistence::holds::Hold;
use sf_persistence::model::Order;
use std::sync::Arc;

/// Orders and holds in events, exactly as `GET /api/orders/{orderId}` and
/// `GET /api/holds/{holdId}` show them.
pub struct EventBodies;

impl Bodies for EventBodies {
    /// Rendered with serde, which writes what `ToJSON` does
    /// (`order_bodies_render_as_the_spec_describes`) without building a JSON tree first.
    fn order(&self, order: &Order) -> Box<RawValue> {
        raw(serde_json::value::to_raw_value(&OrderBody::from(
            order.clone(),
        )))
    }

    fn hold(&self, hold: &Hold) -> Box<RawValue> {
        raw(serde_json::value::to_raw_value(
            &HoldBody::from(hold.clone()).to_json(),
        ))
    }
}

/// A rendered body, or `null` if it could not be rendered (a body of plain fields always can).
fn raw(rendered: serde_json::Result<Box<RawValue>>) -> Box<RawValue> {
    rendered.unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[derive(Tags)]
pub enum EventsTag {
    /// What happened to orders, holds and stock: pulled here, or pushed to webhook endpoints
    /// (`/api/admin/webhooks`).
    Events,
}

pub struct EventsApi {
    pub state: Arc<ApiState>,
}

/// Who reads the feed: an operator (every event) or a sales channel (its own orders' and holds'
/// events, and every `order.lost`).
#[derive(SecurityScheme)]
pub enum EventsAuth {
    Operator(OperatorAuth),
    Shop(ShopKey),
}

/// One event: the payload webhooks send (`type`, `timestamp`, `data`), with its id and its place
/// in the feed.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct EventBody {
    /// The `webhook-id` its deliveries carry: the same on every delivery and in the feed.
    pub id: String,
    /// Its place in the feed: pass it as `after` to read what follows.
    pub cursor: String,
    /// `order.accepted`, `order.confirmed`, `order.rejected`, `order.cancelled`, `order.lost`,
    /// `order.fulfillment_changed`, `hold.expired`, `stock.low`, `stock.out` or `stock.back`.
    #[oai(rename = "type")]
    pub kind: String,
    /// When it happened, RFC 3339, UTC.
    pub timestamp: String,
    /// The resource as `GET` shows it at the event (an order, a hold), or the stock figures.
    pub data: serde_json::Value,
}

impl Example for EventBody {
    fn example() -> Self {
        Self {
            id: "msg_01938a7c5e1f7a3b9c2d4e6f8a0b1c2d".into(),
            cursor: "42".into(),
            kind: "stock.out".into(),
            timestamp: "2026-12-07T09:00:00.000Z".into(),
            data: serde_json::json!({
                "locationId": 1, "productId": 7, "sellableOnline": 0, "lowStockThreshold": 5
            }),
        }
    }
}

impl TryFrom<FeedEvent> for EventBody {
    type Error = Problem;

    fn try_from(e: FeedEvent) -> Result<Self, Problem> {
        let payload: serde_json::Value = serde_json::from_str(&e.payload).map_err(|err| {
            tracing::error!(event = %e.event_id, error = %err, "an event's payload is not JSON");
            Problem::internal()
        })?;
        Ok(Self {
            id: e.event_id,
            cursor: e.seq.to_string(),
            kind: e.kind,
            timestamp: payload["timestamp"].as_str().unwrap_or_default().to_owned(),
            data: payload["data"].clone(),
        })
    }
}

/// A page of the feed.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<EventBody>,
    /// Pass it as `after` for the next page; the same as `after` when nothing new happened.
    pub next_cursor: String,
}

#[OpenApi(prefix_path = "/api", tag = "EventsTag::Events")]
impl EventsApi {
    /// Read the event feed
    ///
    /// Events in the order they happened (per order, always), from the one after `after`
    /// (omitted: from the start). A cursor is stable: the same `after` gives the same events,
    /// and an event committed later always comes after every cursor already answered. A sales
    /// channel (`Authorization: Bearer <channel key>`) reads its own orders' and holds' events
    /// and every `order.lost`; an operator (role viewer) reads everything.
    #[oai(path = "/events", method = "get", operation_id = "listEvents")]
    async fn list(
        &self,
        auth: EventsAuth,
        /// The `cursor` of the last event read (or a page's `nextCursor`).
        #[oai(validator(max_length = 19, pattern = r"^[0-9]+$"))]
        after: Query<Option<String>>,
        /// At most this many events, 1 to 500 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<EventPage>> {
        let reader = match &auth {
            EventsAuth::Operator(_) => FeedReader::All,
            EventsAuth::Shop(key) => match key.shop(&self.state, KeyLookup::Mysql).await?.channel {
                Some(channel) => FeedReader::Channel(channel),
                None => FeedReader::All,
            },
        };
        let after = match after.0.as_deref() {
            None => 0,
            Some(a) => a.parse::<u64>().map_err(|_| {
                Problem::bad_request(format!("after: {a} is not a cursor this feed gave"))
            })?,
        };
        let page = self
            .state
            .storage
            .events()
            .feed(reader, after, limit.0.unwrap_or(100))
            .await?;
        Ok(Json(EventPage {
            events: page
                .events
                .into_iter()
                .map(EventBody::try_from)
                .collect::<Result<_, _>>()?,
            next_cursor: page.next.to_string(),
        }))
    }
}
