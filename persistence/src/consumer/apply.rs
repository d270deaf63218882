//! Applying a batch: one MySQL transaction that inserts the new orders, applies the cancels and
//! rejects what MySQL cannot cover, then acknowledges the events in Redis after the commit.

use super::*;

use crate::error::{StorageError, StorageResult};
use crate::formats::EventKind;
use crate::infra::mysql::{push_list, with_retry};
use crate::model::{Order, OrderStatus};
use crate::orders::ledger::{insert_movements, insert_orders, Reason, ROWS_PER_STATEMENT};
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
    let mut redis = store.conn().await?;
    for (loc, evs) in by_loc {
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
            record_ttl_secs: store.config.record_ttl_secs,
            events: &events,
        };
        let acked = ack.run(&store.keys, &mut redis).await?;
        if acked < evs.len() {
            // Another consumer took some over, or Redis lost them; either way MySQL has them and
            // the keys were set right under the batch's locks.
            tracing::debug!(location = %loc, acked, events = evs.len(), "some events were no longer pending at acknowledgement");
        }
    }
    tracing::debug!(consumer = %config.name, applied = done.applied, rejected = done.rejected, duplicates = done.duplicates, "batch persisted");
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
    let mut tx = store.db.begin().await?;
    let ids: Vec<&str> = {
        let mut v: Vec<&str> = events.iter().map(|e| e.order_id.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    // The order rows are locked first, as on every path.
    let status = crate::orders::statuses(&mut tx, &ids, true).await?;

    let Classified {
        mut new_orders,
        keys,
        cancels,
        fresh,
        waiting,
        mut ackable,
        duplicates,
    } = classify(events, &status)?;

    // A cancel whose reservation was dead-lettered, or whose record Redis lost (with the
    // reservation), waits for nothing: it is acknowledged without effect.
    if !waiting.is_empty() {
        let mut pipe = redis::pipe();
        for e in &waiting {
            pipe.cmd("HMGET")
                .arg(store.keys.order(e.loc, &e.order_id))
                .arg("st")
                .arg("d");
        }
        let records: Vec<(Option<String>, Option<String>)> = {
            let mut redis = store.conn().await?;
            pipe.query_async(&mut redis).await?
        };
        for (e, (st, dead)) in waiting.iter().zip(records) {
            if st.is_none() || dead.is_some() {
                tracing::warn!(order = %e.order_id, "cancel event of an order whose reservation will never be persisted; acknowledged without effect");
                ackable.insert((e.stream_id.clone(), e.loc));
            } else {
                tracing::debug!(order = %e.order_id, "cancel event waits for its reservation");
            }
        }
    }

    // Lock every stock row the batch touches, then decide in stream order what MySQL can take.
    let mut touched: BTreeSet<(u64, u64)> = BTreeSet::new();
    for (o, _) in &new_orders {
        touched.extend(
            o.items
                .iter()
                .map(|i| (o.fulfillment_location_id, i.product_id)),
        );
    }
    for e in &cancels {
        touched.extend(e.lines.iter().map(|(p, _)| (e.loc.get(), p.get())));
    }
    // One order per Idempotency-Key: an order whose key MySQL holds for another order (Redis lost
    // the key's claim while that one was on its way here) is persisted as rejected. The key rows
    // are locked before the stock rows, as on every path.
    let keyed: Vec<(&crate::orders::idempotency::IdempotencyRequest, &Order)> = new_orders
        .iter()
        .filter_map(|(o, _)| keys.get(&o.order_id).map(|k| (k, o)))
        .collect();
    let held_by_another = crate::orders::idempotency::keep_redis_keys(
        &mut tx,
        &keyed,
        store.config.idempotency_ttl_secs,
    )
    .await?;
    let start = lock_stock(&mut tx, &touched).await?;
    // What MySQL holds must cover the batch as a whole. Not each prefix of the stream: the writes
    // decided in MySQL first (POS sales, DB-lock orders) are not in the stream, and MySQL already
    // holds those that came after some of the batch's events.
    let mut on_hand = start.clone();
    let index: HashMap<&str, usize> = new_orders
        .iter()
        .enumerate()
        .map(|(i, (o, _))| (o.order_id.as_str(), i))
        .collect();
    let mut short: BTreeMap<usize, String> = BTreeMap::new();
    for (i, (order, _)) in new_orders.iter().enumerate() {
        if let Some(holder) = held_by_another.get(&order.order_id) {
            short.insert(
                i,
                format!("the same Idempotency-Key stands for order {holder}: Redis lost the key while that order was on its way to MySQL, and this retry was accepted as a second order; it was not persisted as sold"),
            );
            continue;
        }
        let loc = order.fulfillment_location_id;
        if let Some(it) = order
            .items
            .iter()
            .find(|it| !start.contains_key(&(loc, it.product_id)))
        {
            short.insert(
                i,
                format!(
                    "location {loc} carries no stock of product {}",
                    it.product_id
                ),
            );
            continue;
        }
        for it in &order.items {
            *on_hand.get_mut(&(loc, it.product_id)).expect("locked row") -= i64::from(it.quantity);
        }
    }
    for e in &cancels {
        // A cancel of an order that takes no stock here gives nothing back.
        if index
            .get(e.order_id.as_str())
            .is_some_and(|i| short.contains_key(i))
        {
            continue;
        }
        for (p, q) in &e.lines {
            if let Some(v) = on_hand.get_mut(&(e.loc.get(), p.get())) {
                *v += i64::from(*q);
            }
        }
    }
    // Where MySQL does not have enough, the latest reservations give way, until it does. An
    // order cancelled in the same batch takes nothing net, so it is kept.
    let cancelled_here: HashSet<&str> = cancels.iter().map(|e| e.order_id.as_str()).collect();
    let mut deferred: HashSet<usize> = HashSet::new();
    let mut pending_cancels = PendingCancels::default();
    // First the orders their customers cancelled after this batch was read: they give way as
    // CANCELLED (their cancel, still in the stream, gives MySQL nothing back then), which is
    // their end anyway.
    if on_hand.values().any(|v| *v < 0) {
        let all: Vec<usize> = (0..new_orders.len()).collect();
        let states = record_states(store, &new_orders, &all).await?;
        for i in (0..new_orders.len()).rev() {
            if on_hand.values().all(|v| *v >= 0) {
                break;
            }
            let order = &new_orders[i].0;
            let loc = order.fulfillment_location_id;
            if states[i].as_deref() != Some("C")
                || short.contains_key(&i)
                || cancelled_here.contains(order.order_id.as_str())
                || !order
                    .items
                    .iter()
                    .any(|it| on_hand[&(loc, it.product_id)] < 0)
            {
                continue;
            }
            short.insert(i, "cancelled before it was persisted".to_owned());
            for it in &order.items {
                *on_hand.get_mut(&(loc, it.product_id)).expect("locked row") +=
                    i64::from(it.quantity);
            }
        }
    }
    for i in (0..new_orders.len()).rev() {
        if on_hand.values().all(|v| *v >= 0) {
            break;
        }
        let order = &new_orders[i].0;
        let loc = order.fulfillment_location_id;
        if short.contains_key(&i) || cancelled_here.contains(order.order_id.as_str()) {
            continue;
        }
        let Some(it) = order
            .items
            .iter()
            .find(|it| on_hand[&(loc, it.product_id)] < 0)
        else {
            continue;
        };
        let missing = -on_hand[&(loc, it.product_id)];
        let event = fresh
            .iter()
            .find(|e| e.kind == EventKind::Reservation && e.order_id == order.order_id)
            .copied();
        // A cancel MySQL has not seen yet may have freed the units others took meanwhile: then
        // this order waits for a later batch instead.
        let wait = event.is_some()
            && pending_cancels
                .restore(store, &mut tx, new_orders[i].1, it.product_id, &ackable)
                .await?;
        if wait {
            deferred.insert(i);
            if let Some(e) = event {
                ackable.remove(&(e.stream_id.clone(), e.loc));
            }
        } else {
            short.insert(
                i,
                format!(
                    "MySQL did not have the units: product {} at location {loc} was {missing} short when the order was persisted (Redis had sold units that MySQL did not have)",
                    it.product_id
                ),
            );
        }
        for it in &order.items {
            *on_hand.get_mut(&(loc, it.product_id)).expect("locked row") += i64::from(it.quantity);
        }
    }
    let restored: Vec<&Event> = cancels
        .iter()
        .filter(|e| {
            index
                .get(e.order_id.as_str())
                .is_none_or(|i| !short.contains_key(i) && !deferred.contains(i))
        })
        .copied()
        .collect();
    if !deferred.is_empty() {
        tracing::debug!(
            orders = deferred.len(),
            "reservations wait for earlier events of their stream"
        );
        let mut i = 0;
        new_orders.retain(|_| {
            i += 1;
            !deferred.contains(&(i - 1))
        });
    }

    // `short` indexes the vector before deferred orders left it.
    let short: BTreeMap<usize, String> = short
        .into_iter()
        .map(|(i, r)| (i - deferred.iter().filter(|d| **d < i).count(), r))
        .collect();
    // Rejections. An order its customer cancelled in Redis alone before this moment (a cancel
    // whose own MySQL commit failed after its script ran) ends CANCELLED instead: nothing was
    // sold, nothing comes back. The records are only read here; they are marked rejected after
    // the commit (a mark before it would show REJECTED for a batch that may still roll back and
    // confirm the order later). A cancel meanwhile finds the order's row locked by this batch,
    // and after the commit cancels it MySQL-first, giving nothing back.
    let mut resync: BTreeSet<LocationId> = BTreeSet::new();
    let mut to_mark: BTreeMap<LocationId, Vec<usize>> = BTreeMap::new();
    if !short.is_empty() {
        let idx: Vec<usize> = short.keys().copied().collect();
        let states = record_states(store, &new_orders, &idx).await?;
        for (i, st) in idx.iter().zip(states) {
            let reason = short[i].clone();
            let (order, loc) = &mut new_orders[*i];
            if st.as_deref() == Some("C") {
                order.status = OrderStatus::Cancelled;
            } else {
                order.status = OrderStatus::Rejected;
                order.reason = Some(reason);
                to_mark.entry(*loc).or_default().push(*i);
            }
            resync.insert(*loc);
        }
    }
    let rejected = new_orders
        .iter()
        .filter(|(o, _)| o.status == OrderStatus::Rejected)
        .count();
    for (o, _) in &new_orders {
        if o.status == OrderStatus::Rejected {
            tracing::warn!(order = %o.order_id, reason = o.reason.as_deref().unwrap_or(""), "order {} rejected", o.order_id);
        }
    }

    // The writes, and (on Redis, at the same time) the check that Redis still holds the batch's
    // events: the row locks are held already, so the check is as good now as at the commit.
    let writes = async {
        let refs: Vec<&Order> = new_orders.iter().map(|(o, _)| o).collect();
        insert_orders(&mut tx, &refs, Reason::Order).await?;
        for chunk in restored.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new(
                "UPDATE orders SET status = 'CANCELLED', cancelled_at = NOW(3) WHERE status = 'CONFIRMED' AND id IN ",
            );
            push_list(&mut q, chunk.iter().map(|e| e.order_id.as_str()));
            q.build().execute(&mut *tx).await?;
        }
        let moves: Vec<(u64, u64, i64, &str)> = restored
            .iter()
            .flat_map(|e| {
                e.lines
                    .iter()
                    .map(move |(p, q)| (e.loc.get(), p.get(), i64::from(*q), e.order_id.as_str()))
            })
            .collect();
        insert_movements(&mut tx, &moves, Reason::Cancel).await?;
        let changes: Vec<((u64, u64), i64)> = on_hand
            .iter()
            .map(|(k, v)| (*k, v - start[k]))
            .filter(|(_, d)| *d != 0)
            .collect();
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
            q.push(
                ") x ON s.location_id = x.l AND s.product_id = x.p \
                 SET s.on_hand = s.on_hand + x.d",
            );
            let n = q.build().execute(&mut *tx).await?.rows_affected();
            if n != chunk.len() as u64 {
                return Err(StorageError::Internal(format!(
                    "consumer changed {n} stock rows, expected {}",
                    chunk.len()
                )));
            }
        }
        Ok::<_, StorageError>(())
    };
    let (written, lost) = tokio::join!(writes, vanished(store, &fresh));
    written?;
    let lost = lost?;

    // Still under the row locks: if Redis lost any of these events while the batch was on its
    // way, a reload may already have counted these rows without the batch; set the keys from
    // MySQL (with the batch) before the commit lets anyone else use them.
    if !lost.is_empty() {
        tracing::warn!(locations = ?lost, "redis lost events of a batch on its way to MySQL; setting the touched stock keys from MySQL under the batch's locks");
    }
    resync.extend(lost);
    let products_at = |loc: LocationId| -> Vec<ProductId> {
        touched
            .iter()
            .filter(|(l, _)| *l == loc.get())
            .map(|(_, p)| ProductId::new_unchecked(*p))
            .collect()
    };
    let committed = async {
        for loc in &resync {
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
        for loc in &resync {
            store.resync_or_queue(*loc, &products_at(*loc)).await;
        }
        return Err(e);
    }
    // The rejections are in MySQL: now their records say so too (a reader already sees them in
    // MySQL, which has the last word). Best effort: a record that is not marked expires.
    for (loc, idx) in to_mark {
        let orders: Vec<Rejection> = idx
            .iter()
            .map(|i| Rejection {
                order_id: &new_orders[*i].0.order_id,
                reason: new_orders[*i].0.reason.as_deref().unwrap_or(""),
            })
            .collect();
        let marked = async {
            let mut redis = store.conn().await?;
            Reject {
                loc,
                orders: &orders,
            }
            .run(&store.keys, &mut redis)
            .await
        }
        .await;
        if let Err(e) = marked {
            tracing::warn!(location = %loc, error = %e, "could not mark rejected orders in redis; MySQL holds them as rejected");
        }
    }
    Ok(Applied {
        applied: new_orders.len() - rejected + restored.len(),
        rejected,
        duplicates,
        ackable,
    })
}

/// The state (`st`: `A`, `C`, `X`) of the Redis records of the orders at `idx`, in that order;
/// `None` where Redis holds no record.
pub(super) async fn record_states(
    store: &Storage,
    orders: &[(Order, LocationId)],
    idx: &[usize],
) -> StorageResult<Vec<Option<String>>> {
    let mut pipe = redis::pipe();
    for i in idx {
        let (o, loc) = &orders[*i];
        pipe.cmd("HGET")
            .arg(store.keys.order(*loc, &o.order_id))
            .arg("st");
    }
    let mut redis = store.conn().await?;
    Ok(pipe.query_async(&mut redis).await?)
}
