//! The rows a batch locks (orders, then stock, in the order every writer locks them), and the
//! check that Redis still holds the batch's events.

use super::*;

use crate::error::StorageResult;
use crate::infra::mysql::push_list;
use crate::orders::ledger::ROWS_PER_STATEMENT;
use crate::Storage;
use sf_routing::LocationId;
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Locks the stock rows of `keys` (sorted by location and product: the order every writer locks
/// in) and answers their on-hand figures; a missing row is absent from the answer. One statement
/// for up to [`ROWS_PER_STATEMENT`] rows, whatever the number of locations: point ranges of the
/// (location, product) key, read (so locked) in its order. One statement per location made a
/// batch of orders spread over 1,310 locations cost a statement per order.
pub(super) async fn lock_stock(
    conn: &mut sqlx::MySqlConnection,
    keys: &BTreeSet<(u64, u64)>,
) -> StorageResult<HashMap<(u64, u64), i64>> {
    #[derive(sqlx::FromRow)]
    struct Locked {
        location_id: u64,
        product_id: u64,
        available: i64,
    }
    let keys: Vec<(u64, u64)> = keys.iter().copied().collect();
    let mut available = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(
            "SELECT location_id, product_id, available FROM stock \
             FORCE INDEX (uq_stock_location_product) WHERE ",
        );
        for (i, at) in chunk.chunk_by(|a, b| a.0 == b.0).enumerate() {
            if i > 0 {
                q.push(" OR ");
            }
            q.push("(location_id = ")
                .push_bind(at[0].0)
                .push(" AND product_id IN ");
            push_list(&mut q, at.iter().map(|(_, p)| *p));
            q.push(")");
        }
        q.push(" ORDER BY location_id, product_id FOR UPDATE");
        for row in q.build_query_as::<Locked>().fetch_all(&mut *conn).await? {
            available.insert((row.location_id, row.product_id), row.available);
        }
    }
    Ok(available)
}

/// One entry of `XPENDING`'s extended form: id, consumer, idle ms, deliveries.
pub(super) type PendingEntry = (String, String, u64, u64);

/// A stream id as its two numbers, for ordering (`"<ms>-<seq>"`).
pub(super) fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The locations some of whose `events` Redis no longer holds (it lost them): each event must
/// still be pending in its stream's group. One `XPENDING` per location, over the range the events
/// span; a range longer than the reply can hold counts as lost (a re-sync too many, never one too
/// few).
pub(super) async fn vanished(
    store: &Storage,
    events: &[&Event],
) -> StorageResult<BTreeSet<LocationId>> {
    let mut by_loc: BTreeMap<LocationId, Vec<&str>> = BTreeMap::new();
    for e in events {
        by_loc.entry(e.loc).or_default().push(e.stream_id.as_str());
    }
    if by_loc.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut pipe = redis::pipe();
    let mut limits = Vec::new();
    for (loc, ids) in &by_loc {
        let first = ids.iter().min_by_key(|i| id_key(i)).copied().unwrap_or("-");
        let last = ids.iter().max_by_key(|i| id_key(i)).copied().unwrap_or("+");
        let limit = (ids.len() * 4).max(1000);
        limits.push(limit);
        pipe.cmd("XPENDING")
            .arg(store.keys().stream(*loc))
            .arg(GROUP)
            .arg(first)
            .arg(last)
            .arg(limit);
    }
    let replies: Vec<redis::RedisResult<Vec<PendingEntry>>> = {
        let mut redis = store.conn().await?;
        match pipe.query_async::<Vec<redis::Value>>(&mut redis).await {
            Ok(values) => values
                .into_iter()
                .map(|v| redis::from_redis_value(&v))
                .collect(),
            // NOGROUP: the stream and its group are gone with the data.
            Err(e) if e.code() == Some("NOGROUP") => {
                return Ok(by_loc.into_keys().collect());
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut lost = BTreeSet::new();
    for (((loc, ids), reply), limit) in by_loc.iter().zip(replies).zip(limits) {
        let pending: HashSet<String> = match reply {
            Ok(entries) if entries.len() < limit => entries.into_iter().map(|e| e.0).collect(),
            _ => {
                lost.insert(*loc);
                continue;
            }
        };
        if ids.iter().any(|id| !pending.contains(*id)) {
            lost.insert(*loc);
        }
    }
    Ok(lost)
}
