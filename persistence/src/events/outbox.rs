//! Writing events into the outbox, inside the transaction of their change.

use super::EventType;
use crate::error::{StorageError, StorageResult};
use crate::holds::Hold;
use crate::model::{Order, OrderPath, OrderStatus};
use crate::orders::ledger::ROWS_PER_STATEMENT;
use serde_json::value::RawValue;
use sqlx::{MySqlConnection, QueryBuilder};
use std::sync::OnceLock;

/// How an event's `data` shows its resource: as `GET` shows it, rendered to JSON text once. The
/// API layer knows the bodies; it gives them here once at start ([`set_bodies`]).
pub trait Bodies: Send + Sync + 'static {
    fn order(&self, order: &Order) -> Box<RawValue>;
    fn hold(&self, hold: &Hold) -> Box<RawValue>;
}

static BODIES: OnceLock<Box<dyn Bodies>> = OnceLock::new();

/// Sets how events show orders and holds; the first call wins (the bodies are the same for
/// every instance of the service in a process).
pub fn set_bodies(bodies: impl Bodies) {
    let _ = BODIES.set(Box::new(bodies));
}

fn bodies() -> StorageResult<&'static dyn Bodies> {
    BODIES
        .get()
        .map(|b| b.as_ref())
        .ok_or_else(|| StorageError::internal("events: no bodies were set at start"))
}

/// An event to write.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub kind: EventType,
    /// What it is about: the key its deliveries keep the order of.
    pub subject: String,
    pub channel: Option<u64>,
    /// Its `data`, as JSON text.
    pub data: Box<RawValue>,
}

/// An event's payload as it is stored and sent: `{"type", "timestamp", "data"}`.
#[derive(serde::Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: &'a str,
    data: &'a RawValue,
}

impl NewEvent {
    fn of_order(kind: EventType, order: &Order) -> StorageResult<Self> {
        Ok(Self {
            kind,
            subject: order.order_id.clone(),
            channel: order.channel,
            data: bodies()?.order(order),
        })
    }

    pub(crate) fn of_hold(kind: EventType, hold: &Hold) -> StorageResult<Self> {
        Ok(Self {
            kind,
            subject: hold.hold_id.clone(),
            channel: hold.channel,
            data: bodies()?.hold(hold),
        })
    }
}

/// Writes `events` on `conn`, in order, a bounded number per statement.
pub(crate) async fn record(conn: &mut MySqlConnection, events: &[NewEvent]) -> StorageResult<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let rows = chunk
            .iter()
            .map(|e| {
                let payload = serde_json::to_string(&Payload {
                    kind: e.kind.as_str(),
                    timestamp: &now,
                    data: &e.data,
                })?;
                Ok((e, payload))
            })
            .collect::<StorageResult<Vec<_>>>()?;
        QueryBuilder::new("INSERT INTO events (event_id, type, subject, channel_id, payload) ")
            .push_values(rows, |mut row, (e, payload)| {
                row.push_bind(format!("msg_{}", uuid::Uuid::now_v7().simple()))
                    .push_bind(e.kind.as_str())
                    .push_bind(&e.subject)
                    .push_bind(e.channel)
                    .push_bind(payload);
            })
            .build()
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The events of orders as they are first written: a Redis-path order was accepted before it
/// reached MySQL; then its status as written (a DB-lock order, a till sale or a converted hold is
/// confirmed at once).
pub(crate) async fn orders_placed(
    conn: &mut MySqlConnection,
    orders: &[&Order],
) -> StorageResult<()> {
    let mut events = Vec::with_capacity(orders.len() * 2);
    for o in orders {
        if o.path == OrderPath::Redis {
            let accepted = Order {
                status: OrderStatus::Accepted,
                reason: None,
                ..(*o).clone()
            };
            events.push(NewEvent::of_order(EventType::OrderAccepted, &accepted)?);
        }
        let kind = match o.status {
            OrderStatus::Rejected => EventType::OrderRejected,
            OrderStatus::Cancelled => EventType::OrderCancelled,
            _ => EventType::OrderConfirmed,
        };
        events.push(NewEvent::of_order(kind, o)?);
    }
    record(conn, &events).await
}

/// The event of a change of the orders `ids` just written on `conn`: each is read as it now
/// stands in the transaction.
pub(crate) async fn order_changed(
    conn: &mut MySqlConnection,
    kind: EventType,
    ids: &[&str],
) -> StorageResult<()> {
    let mut events = Vec::with_capacity(ids.len());
    for id in ids {
        let order = crate::orders::order_in(&mut *conn, id)
            .await?
            .ok_or_else(|| StorageError::internal(format!("order {id} vanished in its change")))?;
        events.push(NewEvent::of_order(kind, &order)?);
    }
    record(conn, &events).await
}
