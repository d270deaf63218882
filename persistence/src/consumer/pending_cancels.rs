//! The cancels still in a location's stream and not in the batch, read for
//! [`super::settle::StreamCancels::restores`]: whether one of them frees units that a short
//! reservation could wait for.

use super::settle::{PendingCancel, Row, StreamCancels};
use crate::error::StorageResult;
use crate::formats::decode_lines;
use crate::Storage;
use redis::AsyncCommands;
use sf_routing::LocationId;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Most stream entries read per location.
const LOOK: usize = 10_000;

/// The cancels still in the streams of `rows`' locations and not in this batch (`handled`), and
/// what MySQL holds of the orders of those that give back units of `rows`. One stream read per
/// location, however many of its orders are short (a batch never holds its row locks through one
/// stream scan per order), and one status read for them all. Read under the batch's row locks:
/// see `apply`.
pub(super) async fn stream_cancels(
    store: &Storage,
    conn: &mut sqlx::MySqlConnection,
    rows: &BTreeSet<Row>,
    handled: &HashSet<(String, LocationId)>,
) -> StorageResult<StreamCancels> {
    let mut products: BTreeMap<LocationId, HashSet<u64>> = BTreeMap::new();
    for (loc, p) in rows {
        products
            .entry(LocationId::new_unchecked(*loc))
            .or_default()
            .insert(*p);
    }
    let mut out = StreamCancels::default();
    for loc in products.keys() {
        out.at.insert(*loc, read(store, *loc, handled).await?);
    }
    let mut ids: Vec<&str> = out
        .at
        .iter()
        .flat_map(|(loc, cancels)| {
            let wanted = &products[loc];
            cancels
                .iter()
                .flatten()
                .filter(|(_, ps)| ps.iter().any(|p| wanted.contains(p)))
                .map(|(o, _)| o.as_str())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let held = crate::orders::statuses(&mut *conn, &ids, false).await?;
    out.held = held;
    Ok(out)
}

/// The order and products of each cancel in the stream of `loc` that is not in this batch;
/// `None` when the stream is too long to read.
async fn read(
    store: &Storage,
    loc: LocationId,
    handled: &HashSet<(String, LocationId)>,
) -> StorageResult<Option<Vec<PendingCancel>>> {
    let entries: redis::streams::StreamRangeReply = {
        let mut redis = store.conn().await?;
        redis
            .xrange_count(store.keys().stream(loc), "-", "+", LOOK)
            .await?
    };
    if entries.ids.len() >= LOOK {
        return Ok(None);
    }
    let mut cancels = Vec::new();
    for entry in &entries.ids {
        if handled.contains(&(entry.id.clone(), loc)) {
            continue;
        }
        let (Some(t), Some(o), Some(l)) = (
            entry.get::<String>("t"),
            entry.get::<String>("o"),
            entry.get::<String>("l"),
        ) else {
            continue;
        };
        if t != "C" {
            continue;
        }
        if let Ok(lines) = decode_lines(&l) {
            cancels.push((o, lines.iter().map(|(p, _)| p.get()).collect()));
        }
    }
    Ok(Some(cancels))
}
