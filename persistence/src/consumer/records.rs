//! What a batch reads of its orders' Redis records, and when: before the row locks, whether a
//! cancel's reservation will never come; under them, which orders their customers cancelled in
//! Redis alone.

use super::classify::NewOrder;
use super::Event;
use crate::error::StorageResult;
use crate::formats::EventKind;
use crate::Storage;
use std::collections::HashSet;

/// The orders of `events`' cancels whose reservations will never reach MySQL: Redis holds no
/// record of the order (it lost it with its data), or its reservation went to the dead letters
/// (`d`). A cancel that comes after its order's reservation in the batch never waits for it, so
/// only the others are asked about.
///
/// Read before the batch's row locks, which is safe: a cancel event exists only once its order's
/// record did; the record goes only with Redis's data, or by expiry once MySQL holds the order
/// (which `classify` then finds, under the lock); and a dead-letter mark is never taken back. A
/// mark set after this read makes the cancel wait one batch more, as one set just after the
/// commit would.
pub(super) async fn never_persisted(
    store: &Storage,
    events: &[Event],
) -> StorageResult<HashSet<String>> {
    let mut reserved: HashSet<&str> = HashSet::new();
    let mut asked: Vec<&Event> = Vec::new();
    for e in events {
        match e.kind {
            EventKind::Reservation => {
                reserved.insert(&e.order_id);
            }
            EventKind::Cancel if !reserved.contains(e.order_id.as_str()) => asked.push(e),
            _ => {}
        }
    }
    if asked.is_empty() {
        return Ok(HashSet::new());
    }
    let mut pipe = redis::pipe();
    for e in &asked {
        pipe.cmd("HMGET")
            .arg(store.keys().order(e.loc, &e.order_id))
            .arg("st")
            .arg("d");
    }
    let records: Vec<(Option<String>, Option<String>)> = {
        let mut redis = store.conn().await?;
        pipe.query_async(&mut redis).await?
    };
    Ok(asked
        .iter()
        .zip(records)
        .filter(|(_, (st, dead))| st.is_none() || dead.is_some())
        .map(|(e, _)| e.order_id.clone())
        .collect())
}

/// The orders among `asked` whose Redis records say their customers cancelled them (`st` = `C`).
/// Read under the batch's row locks: see `apply`.
pub(super) async fn cancelled_in_redis(
    store: &Storage,
    asked: &[&NewOrder<'_>],
) -> StorageResult<HashSet<String>> {
    if asked.is_empty() {
        return Ok(HashSet::new());
    }
    let mut pipe = redis::pipe();
    for n in asked {
        pipe.cmd("HGET")
            .arg(store.keys().order(n.event.loc, &n.order.order_id))
            .arg("st");
    }
    let states: Vec<Option<String>> = {
        let mut redis = store.conn().await?;
        pipe.query_async(&mut redis).await?
    };
    Ok(asked
        .iter()
        .zip(states)
        .filter(|(_, st)| st.as_deref() == Some("C"))
        .map(|(n, _)| n.order.order_id.clone())
        .collect())
}
