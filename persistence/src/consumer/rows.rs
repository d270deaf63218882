//! The rows a batch locks (orders, then stock, in the order every writer locks them), and the
//! check that Redis still holds the batch's events.

use super::*;

use crate::error::StorageResult;
use crate::infra::mysql::push_list;
use crate::orders::ledger::{Available, ROWS_PER_STATEMENT};
use crate::Storage;
use sf_routing::LocationId;
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Locks the stock rows of `keys` (sorted by location and product: the order every writer locks
/// in) and answers their on-hand figures; a missing row is absent from the answer.
pub(super) async fn lock_stock(
    conn: &mut sqlx::MySqlConnection,
    keys: &BTreeSet<(u64, u64)>,
) -> StorageResult<HashMap<(u64, u64), i64>> {
    let mut by_loc: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (l, p) in keys {
        by_loc.entry(*l).or_default().push(*p);
    }
    let mut available = HashMap::new();
    for (loc, products) in by_loc {
        for chunk in products.chunks(ROWS_PER_STATEMENT) {
            let mut q =
                QueryBuilder::new("SELECT product_id, available FROM stock WHERE location_id = ");
            q.push_bind(loc).push(" AND product_id IN ");
            push_list(&mut q, chunk.iter().copied());
            q.push(" ORDER BY product_id FOR UPDATE");
            for row in q
                .build_query_as::<Available>()
                .fetch_all(&mut *conn)
                .await?
            {
                available.insert((loc, row.product_id.get()), row.available);
            }
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
