//! Applying a batch: one MySQL transaction that inserts the new orders, applies the cancels and
//! rejects what MySQL cannot cover, then acknowledges the events in Redis after the commit. What
//! the batch comes to is [`settle`]'s decision: this file reads what it asks for and writes what
//! it answers.

use super::*;
use crate::events::{order_changed, EventType};

use crate::access::{Actor, Attribution};
use crate::error::{StorageError, StorageResult};
use crate::infra::mysql::{push_list, with_retry};
use crate::model::{Order, OrderStatus};
use crate::orders::idempotency::{keep_redis_keys, IdempotencyRequest};
use crate::orders::ledger::{insert_movements, insert_orders, Move, Reason, ROWS_PER_STATEMENT};
use crate::recovery::sync::SyncMode;
use crate::scripts::ack::{Ack, AckEvent};
use crate::scripts::reject::{Reject, Rejection};
use crate::Storage;
use sf_routing::{LocationId, ProductId};
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;

pub(super) async fn apply_and_ack(
    store: &Storage,
    config: &ConsumerConfig,
    stats: &ConsumerStats,
    events: &[Event],
) -> StorageResult<()> {
    let mut attempts = 0;
    let done = loop {
        attempts += 1;
        match with_retry("persist events", || apply(store, events)).await {
            Ok(done) => break done,
            // Another consumer applied some of these at the same moment: look again.
            Err(e) if e.is_duplicate_key() && attempts < 5 => continue,
            Err(e) => return Err(e),
        }
    };
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .applied
        .fetch_add(done.applied as u64, Ordering::Relaxed);
    stats
        .duplicates
        .fetch_add(done.duplicates as u64, Ordering::Relaxed);
    stats
        .rejected
        .fetch_add(done.rejected as u64, Ordering::Relaxed);

    // Acknowledge per stream, after the commit.
    let mut by_loc: BTreeMap<LocationId, Vec<&Event>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| done.ackable.contains(&(e.stream_id.clone(), e.loc)))
    {
        by_loc.entry(e.loc).or_default().push(e);
    }
    // One script per location (each stream has a slot of its own on a cluster), all at once: a
    // batch of orders spread over many locations would otherwise wait one round trip per
    // location.
    let redis = store.conn().await?;
    let acks = by_loc.into_iter().map(|(loc, evs)| {
        let mut redis = redis.clone();
        async move {
            let events: Vec<AckEvent> = evs
                .iter()
                .map(|e| AckEvent {
                    order_id: &e.order_id,
                    stream_id: &e.stream_id,
                    kind: e.kind.as_char(),
                })
                .collect();
            let ack = Ack {
                loc,
                record_ttl_secs: store.options().record_ttl_secs,
                events: &events,
            };
            let acked = ack.run(store.keys(), &mut redis).await?;
            if acked < evs.len() {
                // Another consumer took some over, or Redis lost them; either way MySQL has them
                // and the keys were set right under the batch's locks.
                tracing::debug!(location = %loc, acked, events = evs.len(), "some events were no longer pending at acknowledgement");
            }
            Ok::<_, StorageError>(())
        }
    });
    futures::future::try_join_all(acks).await?;
    tracing::debug!(
        consumer = %config.name,
        applied = done.applied,
        rejected = done.rejected,
        duplicates = done.duplicates,
        orders = ?events.iter().map(|e| e.order_id.as_str()).collect::<Vec<_>>(),
        "batch persisted"
    );
    Ok(())
}

pub(super) struct Applied {
    pub(super) applied: usize,
    pub(super) rejected: usize,
    pub(super) duplicates: usize,
    /// `(streamId, location)` of events that MySQL now holds.
    pub(super) ackable: HashSet<(String, LocationId)>,
}

/// Writes the events MySQL does not hold yet in one transaction.
pub(super) async fn apply(store: &Storage, events: &[Event]) -> StorageResult<Applied> {
    // Before any row lock: see `never_persisted` for why that is safe.
    let never = never_persisted(store, events).await?;
    let mut tx = store.begin().await?;
    let ids: Vec<&str> = {
        let mut v: Vec<&str> = events.iter().map(|e| e.order_id.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    // The order rows are locked first, as on every path.
    let status = crate::orders::statuses(&mut tx, &ids, true).await?;
    let Classified {
        orders,
        cancels,
        late,
        mut ackable,
        duplicates,
    } = classify(events, &status, &never)?;

    // A late cancel changes no row, but its rows are locked and its keys set from MySQL with
    // the batch: its script gave units back in Redis that left the building.
    let giving_back: Vec<&Event> = cancels.iter().chain(&late).copied().collect();
    let touched = touched_rows(&orders, &giving_back);
    // One order per Idempotency-Key: MySQL records the batch's keys, and names the orders whose
    // key it holds for another order (Redis lost the key's claim while that one was on its way
    // here). The key rows are locked before the stock rows, as on every path.
    let keyed: Vec<(&IdempotencyRequest, &Order)> = orders
        .iter()
        .filter_map(|n| n.key.as_ref().map(|k| (k, &n.order)))
        .collect();
    let key_held_by =
        keep_redis_keys(&mut tx, &keyed, store.options().idempotency_ttl_secs).await?;
    let available = lock_stock(&mut tx, &touched).await?;
    let batch = Batch {
        available: &available,
        orders: &orders,
        cancels: &cancels,
        key_held_by: &key_held_by,
    };
    // What settling asks of Redis, only when the batch does not fit, is read here under the row
    // locks, not before them: a cancel marks its order's record cancelled and appends its event
    // to the stream only while it holds the order's row and stock rows (`cancel.lua` runs under
    // them), so only under this batch's locks do the records and the streams stay as read until
    // the commit. Read earlier, a cancel in between could make an order that its customer
    // cancelled look standing, or hide a cancel a short order could wait for.
    let cancelled_in_redis = cancelled_in_redis(store, &batch.asks_states()).await?;
    let short_rows = batch.short_rows(&cancelled_in_redis);
    let pending = stream_cancels(store, &mut tx, &short_rows, &ackable).await?;
    let settled = settle(&batch, &cancelled_in_redis, &pending);

    if !settled.defer.is_empty() {
        tracing::debug!(
            orders = ?settled.defer,
            "reservations wait for earlier events of their stream"
        );
    }
    for (order, reason) in &settled.reject {
        tracing::warn!(order = %order, reason = %reason, "order {order} rejected");
    }
    // The events that change MySQL: the check below asks whether Redis still holds them.
    let fresh: Vec<&Event> = orders
        .iter()
        .map(|n| n.event)
        .chain(cancels.iter().copied())
        .collect();
    for n in orders
        .iter()
        .filter(|n| settled.defer.contains(&n.order.order_id))
    {
        ackable.remove(&(n.event.stream_id.clone(), n.event.loc));
    }
    let restored: Vec<&Event> = cancels
        .iter()
        .filter(|e| settled.restore.contains(&e.order_id))
        .copied()
        .collect();
    let written: Vec<Order> = orders
        .into_iter()
        .filter_map(|n| settled.ends(n.order))
        .collect();

    // The writes, and (on Redis, at the same time) the check that Redis still holds the batch's
    // events: the row locks are held already, so the check is as good now as at the commit.
    let writes = write(&mut tx, &written, &restored, &settled.stock);
    let (written_ok, lost) = tokio::join!(writes, vanished(store, &fresh));
    written_ok?;
    let lost = lost?;

    if !lost.is_empty() {
        tracing::warn!(locations = ?lost, "redis lost events of a batch on its way to MySQL; setting the touched stock keys from MySQL under the batch's locks");
    }
    let mut resync = settled.resync.clone();
    resync.extend(lost);
    resync.extend(late.iter().map(|e| e.loc));
    commit(store, tx, &resync, &touched).await?;
    mark_rejected(store, &written).await;
    let rejected = settled.reject.len();
    Ok(Applied {
        applied: written.len() - rejected + restored.len(),
        rejected,
        duplicates,
        ackable,
    })
}

/// Sets the touched stock keys of `resync`'s locations from MySQL (with the batch), still under
/// the row locks, then commits. Those are the locations where Redis sold units that MySQL did not
/// take, and those where Redis lost some of the batch's events while it was on its way (a reload
/// may already have counted these rows without the batch): their keys are right before the commit
/// lets anyone else use them.
async fn commit(
    store: &Storage,
    mut tx: sqlx::Transaction<'_, sqlx::MySql>,
    resync: &BTreeSet<LocationId>,
    touched: &BTreeSet<Row>,
) -> StorageResult<()> {
    let products_at = |loc: LocationId| -> Vec<ProductId> {
        touched
            .iter()
            .filter(|(l, _)| *l == loc.get())
            .map(|(_, p)| ProductId::new_unchecked(*p))
            .collect()
    };
    let committed = async {
        for loc in resync {
            store
                .sync_keys(&mut tx, *loc, &products_at(*loc), SyncMode::Repair)
                .await?;
        }
        Ok::<_, StorageError>(tx.commit().await?)
    }
    .await;
    if let Err(e) = committed {
        // The keys were set as if the batch committed; its outcome is unknown now (or it rolled
        // back): set them from what MySQL holds, now or by the background re-sync.
        for loc in resync {
            store.resync_or_queue(*loc, &products_at(*loc)).await;
        }
        return Err(e);
    }
    Ok(())
}

/// The stock rows the batch touches, sorted as every writer locks them.
fn touched_rows(orders: &[NewOrder], cancels: &[&Event]) -> BTreeSet<Row> {
    let mut touched = BTreeSet::new();
    for n in orders {
        let loc = n.order.fulfillment_location_id;
        touched.extend(n.order.items.iter().map(|i| (loc, i.product_id)));
    }
    for e in cancels {
        touched.extend(e.lines.iter().map(|(p, _)| (e.loc.get(), p.get())));
    }
    touched
}

/// The batch's writes: its orders as settled, its cancels that give units back (and their
/// ledger rows), and the change of each stock row. Every change here is an online order's or its
/// cancel's, so `committed` moves opposite to `available` ([`Reason::committed_delta`]).
async fn write(
    tx: &mut sqlx::MySqlConnection,
    orders: &[Order],
    restored: &[&Event],
    stock: &BTreeMap<Row, i64>,
) -> StorageResult<()> {
    let refs: Vec<(&Order, Actor)> = orders.iter().map(|o| (o, Actor::of_order(o))).collect();
    insert_orders(&mut *tx, &refs, Reason::Order).await?;
    // A cancel event carries no record: its rows name the channel MySQL holds for its order
    // (persisted before, or just now with this batch).
    let mut channels: HashMap<String, Option<u64>> = HashMap::new();
    // The orders this batch cancels, each of which writes its event.
    let mut cancelled: Vec<String> = Vec::new();
    for chunk in restored.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::new("SELECT id FROM orders WHERE status = 'CONFIRMED' AND id IN ");
        push_list(&mut q, chunk.iter().map(|e| e.order_id.as_str()));
        cancelled.extend(q.build_query_scalar::<String>().fetch_all(&mut *tx).await?);
        let mut q = QueryBuilder::new(
            "UPDATE orders SET status = 'CANCELLED', cancelled_at = NOW(3) WHERE status = 'CONFIRMED' AND id IN ",
        );
        push_list(&mut q, chunk.iter().map(|e| e.order_id.as_str()));
        q.build().execute(&mut *tx).await?;
        let mut q = QueryBuilder::new("SELECT id, channel_id FROM orders WHERE id IN ");
        push_list(&mut q, chunk.iter().map(|e| e.order_id.as_str()));
        let rows: Vec<(String, Option<u64>)> = q.build_query_as().fetch_all(&mut *tx).await?;
        channels.extend(rows);
    }
    let by: Vec<Attribution> = restored
        .iter()
        .map(|e| {
            Attribution::of(Actor::of_channel(
                channels.get(&e.order_id).copied().flatten(),
            ))
        })
        .collect();
    let moves: Vec<Move> = restored
        .iter()
        .zip(&by)
        .flat_map(|(e, by)| {
            e.lines
                .iter()
                .map(move |(p, q)| Move::new(e.loc, *p, i64::from(*q), e.order_id.as_str(), by))
        })
        .collect();
    insert_movements(&mut *tx, &moves, Reason::Cancel).await?;
    let cancelled: Vec<&str> = cancelled.iter().map(String::as_str).collect();
    order_changed(&mut *tx, EventType::OrderCancelled, &cancelled).await?;
    let changes: Vec<(Row, i64)> = stock.iter().map(|(r, d)| (*r, *d)).collect();
    for chunk in changes.chunks(ROWS_PER_STATEMENT) {
        // The changes as a derived table, one row each.
        let mut q = QueryBuilder::new("UPDATE stock s JOIN (");
        let mut rows = q.separated(" UNION ALL ");
        for ((l, p), d) in chunk {
            rows.push("SELECT ")
                .push_bind_unseparated(l)
                .push_unseparated(" AS l, ")
                .push_bind_unseparated(p)
                .push_unseparated(" AS p, ")
                .push_bind_unseparated(d)
                .push_unseparated(" AS d");
        }
        // Orders and cancels move committed the same way per unit of available.
        let per_unit = Reason::Order.committed_delta(1);
        debug_assert_eq!(per_unit, Reason::Cancel.committed_delta(1));
        q.push(format_args!(
            ") x ON s.location_id = x.l AND s.product_id = x.p \
             SET s.available = s.available + x.d, s.committed = s.committed + {per_unit} * x.d"
        ));
        let n = q.build().execute(&mut *tx).await?.rows_affected();
        if n != chunk.len() as u64 {
            return Err(StorageError::internal(format!(
                "consumer changed {n} stock rows, expected {}",
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// The rejections are in MySQL: now their records say so too (a reader already sees them in
/// MySQL, which has the last word). Not before the commit: a mark would show `REJECTED` for a
/// batch that may still roll back and confirm the order later. A cancel meanwhile finds the
/// order's row locked by the batch, and after the commit cancels it MySQL-first, giving nothing
/// back. Best effort: a record that is not marked expires.
async fn mark_rejected(store: &Storage, written: &[Order]) {
    let mut by_loc: BTreeMap<LocationId, Vec<Rejection>> = BTreeMap::new();
    for o in written.iter().filter(|o| o.status == OrderStatus::Rejected) {
        by_loc
            .entry(LocationId::new_unchecked(o.fulfillment_location_id))
            .or_default()
            .push(Rejection {
                order_id: &o.order_id,
                reason: o.reason.as_deref().unwrap_or(""),
            });
    }
    for (loc, orders) in by_loc {
        let marked = async {
            let mut redis = store.conn().await?;
            Reject {
                loc,
                orders: &orders,
            }
            .run(store.keys(), &mut redis)
            .await
        }
        .await;
        if let Err(e) = marked {
            tracing::warn!(location = %loc, error = %e, "could not mark rejected orders in redis; MySQL holds them as rejected");
        }
    }
}
