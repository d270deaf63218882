//! The events' places in the feed, and the pull feed read by them.

use super::Events;
use crate::error::StorageResult;
use sqlx::QueryBuilder;

/// Events one sequencing pass places; the next pass places the rest.
const PER_PASS: u32 = 1000;

/// The oldest events without a place, at most `?`: the first entries of the NULL range of a key
/// in (place, id) order (migration 0016), not a sort of every event without one.
pub const UNPLACED: &str =
    "SELECT id FROM events FORCE INDEX (ix_events_seq_id) WHERE seq IS NULL ORDER BY id LIMIT ?";

/// How long events stay in the feed (and can be redelivered): well past the 24 h of retries.
pub const RETENTION_DAYS: u32 = 30;

/// One event as the feed and the deliveries show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedEvent {
    /// Its place in the feed.
    pub seq: u64,
    /// Its `webhook-id`.
    pub event_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    /// `{"type", "timestamp", "data"}`, as it is sent.
    pub payload: String,
    /// When it was written, in ms since the Unix epoch.
    pub created_ms: i64,
}

/// A page of the feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub events: Vec<FeedEvent>,
    /// Where the next page starts: the last event's place, or where this page started.
    pub next: u64,
}

/// Who reads the feed, and so what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedReader {
    /// A sales channel: the events of its own orders and holds, and every `order.lost` (which
    /// names no order).
    Channel(u64),
    /// An operator, or the shop with `SHOP_AUTH=off`: every event.
    All,
}

impl Events<'_> {
    /// Gives each committed event without a place the next place, in the order they are found
    /// committed (one pass at a time across every instance: a row lock of `leases` serialises
    /// them). Answers how many it placed. Read committed, and by id: an order's transaction that
    /// is still open is neither waited for nor blocked, and its event is placed by a later pass.
    pub async fn sequence(&self) -> StorageResult<u64> {
        self.in_time(self.db_deadline(), async {
            // Read committed: every connection of the pool runs at that level.
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO leases (name, holder, until) VALUES ('events-sequence', '', NOW(3)) \
                 ON DUPLICATE KEY UPDATE name = name",
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query("SELECT name FROM leases WHERE name = 'events-sequence' FOR UPDATE")
                .execute(&mut *tx)
                .await?;
            let ids: Vec<u64> = sqlx::query_scalar(UNPLACED)
                .bind(PER_PASS)
                .fetch_all(&mut *tx)
                .await?;
            if ids.is_empty() {
                tx.rollback().await?;
                return Ok(0);
            }
            let last: Option<u64> =
                sqlx::query_scalar("SELECT CAST(MAX(seq) AS UNSIGNED) FROM events")
                    .fetch_one(&mut *tx)
                    .await?;
            let mut q = QueryBuilder::new("UPDATE events SET seq = CASE id");
            for (i, id) in ids.iter().enumerate() {
                q.push(" WHEN ")
                    .push_bind(id)
                    .push(" THEN ")
                    .push_bind(last.unwrap_or(0) + 1 + i as u64);
            }
            q.push(" END WHERE seq IS NULL AND id IN ");
            crate::infra::mysql::push_list(&mut q, ids.iter().copied());
            q.build().execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(ids.len() as u64)
        })
        .await
    }

    /// Up to `limit` events placed after `after`, that `reader` may see, in feed order. Events
    /// committed before the call are placed first, so a page shows everything that had happened.
    pub async fn feed(
        &self,
        reader: FeedReader,
        after: u64,
        limit: u32,
    ) -> StorageResult<FeedPage> {
        while self.sequence().await? == u64::from(PER_PASS) {}
        const COLUMNS: &str = "SELECT seq, event_id, type, payload, \
             CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) AS created_ms FROM events";
        let events: Vec<FeedEvent> = self
            .in_time(self.db_deadline(), async {
                let rows = match reader {
                    FeedReader::All => {
                        sqlx::query_as(&format!("{COLUMNS} WHERE seq > ? ORDER BY seq LIMIT ?"))
                            .bind(after)
                            .bind(limit)
                            .fetch_all(&self.db)
                            .await?
                    }
                    FeedReader::Channel(channel) => {
                        sqlx::query_as(&format!(
                            "SELECT * FROM ( \
                             ({COLUMNS} WHERE channel_id = ? AND seq > ? ORDER BY seq LIMIT ?) \
                             UNION ALL \
                             ({COLUMNS} WHERE channel_id IS NULL AND type = 'order.lost' \
                              AND seq > ? ORDER BY seq LIMIT ?) \
                             ) e ORDER BY seq LIMIT ?"
                        ))
                        .bind(channel)
                        .bind(after)
                        .bind(limit)
                        .bind(after)
                        .bind(limit)
                        .bind(limit)
                        .fetch_all(&self.db)
                        .await?
                    }
                };
                Ok(rows)
            })
            .await?;
        let next = events.last().map_or(after, |e| e.seq);
        Ok(FeedPage { events, next })
    }
}

impl Events<'_> {
    /// Removes events older than [`RETENTION_DAYS`] that no delivery still waits for, with
    /// their deliveries and attempts. Answers how many events went.
    pub(crate) async fn remove_old(&self) -> StorageResult<u64> {
        let mut removed = 0;
        loop {
            let seqs: Vec<u64> = sqlx::query_scalar(
                "SELECT e.seq FROM events e WHERE e.seq IS NOT NULL \
                 AND e.created_at < NOW(3) - INTERVAL ? DAY AND NOT EXISTS ( \
                 SELECT 1 FROM webhook_deliveries d WHERE d.seq = e.seq AND d.status = 'PENDING') \
                 ORDER BY e.seq LIMIT 1000",
            )
            .bind(RETENTION_DAYS)
            .fetch_all(&self.db)
            .await?;
            if seqs.is_empty() {
                return Ok(removed);
            }
            let mut tx = self.begin().await?;
            for table in ["webhook_attempts", "webhook_deliveries", "events"] {
                let mut q = QueryBuilder::new(format!("DELETE FROM {table} WHERE seq IN "));
                crate::infra::mysql::push_list(&mut q, seqs.iter().copied());
                let n = q.build().execute(&mut *tx).await?.rows_affected();
                if table == "events" {
                    removed += n;
                }
            }
            tx.commit().await?;
        }
    }
}
