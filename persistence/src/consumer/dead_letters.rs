//! A batch that fails because of its own events is split until the culprit is alone; that event
//! goes to its location's dead-letter stream with its error, and its order is rejected.

use super::*;

use crate::access::Actor;
use crate::error::{FailureKind, StorageError, StorageResult};
use crate::formats::EventKind;
use crate::model::{Order, OrderStatus};
use crate::orders::ledger::{insert_orders, Reason};
use crate::scripts::dead::DeadLetter;
use crate::Storage;
use sf_routing::ProductId;
use std::sync::atomic::Ordering;

/// Whether a failed batch failed because of one of its own events (so splitting it finds the
/// culprit), rather than because MySQL or Redis cannot serve right now (then the whole batch is
/// tried again later, and nothing is dead-lettered).
pub(super) fn caused_by_an_event(e: &StorageError) -> bool {
    match e.mysql_error() {
        // Data that does not fit the schema: bad values, missing references, failed CHECKs, a
        // statement too large.
        Some(sqlx::Error::Database(_)) => matches!(
            e.mysql_code(),
            Some(
                1048 | 1054
                    | 1062
                    | 1264
                    | 1265
                    | 1292
                    | 1366
                    | 1390
                    | 1406
                    | 1452
                    | 3819
                    | 4025
                    | 1153
                    | 1301
            )
        ),
        Some(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => true,
        Some(_) => false,
        // An event the service cannot read or carry out.
        None => matches!(e.failure(), Some(FailureKind::Internal)),
    }
}

/// Persists events; a batch that fails because of its own events is split until the culprit is
/// alone, and that one is dead-lettered.
pub(super) async fn persist(
    store: &Storage,
    config: &ConsumerConfig,
    stats: &ConsumerStats,
    events: Vec<Event>,
) -> StorageResult<()> {
    let (unreadable, events): (Vec<Event>, Vec<Event>) =
        events.into_iter().partition(|e| e.unreadable.is_some());
    for e in unreadable {
        let why = e.unreadable.clone().unwrap_or_default();
        dead_letter(store, stats, &e, &why).await?;
    }
    let mut work = vec![events];
    while let Some(batch) = work.pop() {
        if batch.is_empty() {
            continue;
        }
        match apply_and_ack(store, config, stats, &batch).await {
            Ok(()) => {}
            Err(e) if caused_by_an_event(&e) => {
                if batch.len() == 1 {
                    dead_letter(store, stats, &batch[0], &e.to_string()).await?;
                } else {
                    tracing::warn!(events = batch.len(), error = %e, "a batch failed because of one of its events; splitting it");
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    work.push(second);
                    work.push(first);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves an event that cannot be persisted to its location's dead-letter stream, rejects its
/// order (in MySQL too when the order can be read), and sets the touched stock keys from MySQL:
/// the units it reserved are free again.
pub(super) async fn dead_letter(
    store: &Storage,
    stats: &ConsumerStats,
    event: &Event,
    error: &str,
) -> StorageResult<()> {
    let reason = format!("the order could not be persisted: {error}");
    let dead = DeadLetter {
        loc: event.loc,
        order_id: &event.order_id,
        stream_id: &event.stream_id,
        error,
        reject_reason: (event.kind == EventKind::Reservation).then_some(reason.as_str()),
    };
    let moved = {
        let mut redis = store.conn().await?;
        dead.run(store.keys(), &mut redis).await?
    };
    if !moved {
        return Ok(());
    }
    stats.dead_letters.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        location = %event.loc, stream_id = %event.stream_id, order = %event.order_id, kind = %event.kind, error,
        "event {} of order {} cannot be persisted; moved to the dead-letter stream", event.stream_id, event.order_id
    );
    // Best effort: the order is also listed in MySQL for operators, as its Redis record — the
    // answer its client was given — now has it: REJECTED (dead.lua just marked it so), or
    // CANCELLED when its customer had cancelled it in Redis. Without a record, the event's own
    // order is listed only if it names this order at this location.
    if event.kind == EventKind::Reservation {
        let from_record = match store.redis_record(event.loc, &event.order_id).await {
            Ok(Some(record)) => record.order().ok(),
            _ => None,
        };
        let listed = from_record.or_else(|| {
            event
                .json
                .as_deref()
                .and_then(|j| crate::formats::OrderRecord::decode(j).ok())
                .filter(|o| {
                    o.order_id == event.order_id && o.fulfillment_location_id == event.loc.get()
                })
                .map(|o| Order {
                    status: OrderStatus::Rejected,
                    ..o
                })
        });
        if let Some(order) = listed {
            let order = match order.status {
                OrderStatus::Cancelled => Order {
                    reason: None,
                    ..order
                },
                _ => Order {
                    status: OrderStatus::Rejected,
                    reason: Some(truncate(&reason, 500)),
                    ..order
                },
            };
            let written: StorageResult<()> = async {
                let mut tx = store.begin().await?;
                insert_orders(&mut tx, &[(&order, Actor::of_order(&order))], Reason::Order).await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            if let Err(e) = written {
                tracing::warn!(order = %event.order_id, error = %e, "dead-lettered order could not be listed in MySQL; its Redis record says {}", order.status.as_str());
            }
        }
    }
    let mut products: Vec<ProductId> = event.lines.iter().map(|(p, _)| *p).collect();
    products.sort_unstable();
    products.dedup();
    if !products.is_empty() {
        store.resync_or_queue(event.loc, &products).await;
    }
    Ok(())
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
