//! What waits for repair, as operators see it: stock keys marked stale (written on MySQL alone,
//! to be set from MySQL before Redis decides on them again) and events in the dead-letter streams
//! (events the consumer could not persist, whatever it tried).

use super::Recovery;
use crate::error::StorageResult;
use sf_routing::{LocationId, ProductId};

/// A stock key marked stale.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StaleKey {
    pub location_id: LocationId,
    pub product_id: ProductId,
    /// The latest write on MySQL alone, in ms since the Unix epoch.
    pub marked_at_ms: i64,
}

/// An event of a location's dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterEntry {
    pub location_id: LocationId,
    /// Its id in the dead-letter stream (when it was moved there).
    pub id: String,
    /// Its id in the event stream it came from.
    pub event_id: Option<String>,
    /// The event's kind (`R` reservation, `C` cancel, or what an unreadable event said).
    pub kind: Option<String>,
    pub order_id: Option<String>,
    /// Its lines as the stream holds them (`productId:quantity,…`).
    pub lines: Option<String>,
    /// Why it could not be persisted.
    pub error: Option<String>,
}

impl Recovery<'_> {
    /// The stock keys marked stale, the oldest mark first, at most `limit`.
    pub async fn stale_keys(&self, limit: u32) -> StorageResult<Vec<StaleKey>> {
        self.in_time(self.db_deadline(), async {
            Ok(sqlx::query_as(
                "SELECT location_id, product_id, \
                 CAST(UNIX_TIMESTAMP(marked_at) * 1000 AS SIGNED) AS marked_at_ms \
                 FROM redis_stale_keys ORDER BY marked_at, location_id, product_id LIMIT ?",
            )
            .bind(limit)
            .fetch_all(&self.db)
            .await?)
        })
        .await
    }

    /// The events of every location's dead-letter stream, the latest moved there first, at most
    /// `limit`.
    pub async fn dead_letters(&self, limit: usize) -> StorageResult<Vec<DeadLetterEntry>> {
        let mut all = Vec::new();
        let mut redis = self.conn().await?;
        for loc in self.catalog().all_location_ids() {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
                .arg(self.keys.dead_letters(loc))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut redis)
                .await?;
            all.extend(reply.ids.into_iter().map(|e| DeadLetterEntry {
                location_id: loc,
                event_id: e.get("id"),
                kind: e.get("t"),
                order_id: e.get("o"),
                lines: e.get("l"),
                error: e.get("error"),
                id: e.id,
            }));
        }
        // Stream ids start with their time in ms: the latest first, across locations.
        all.sort_by_key(|d| std::cmp::Reverse(stream_order(&d.id)));
        all.truncate(limit);
        Ok(all)
    }
}

/// A stream id (`<ms>-<seq>`) as a sortable pair.
fn stream_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_ids_sort_by_time_then_sequence() {
        let mut ids = ["1700000000001-0", "1700000000000-5", "1700000000001-2"];
        ids.sort_by_key(|id| super::stream_order(id));
        assert_eq!(
            ids,
            ["1700000000000-5", "1700000000001-0", "1700000000001-2"]
        );
    }
}
