//! What waits for repair, as operators see it: stock keys marked stale (written on MySQL alone,
//! to be set from MySQL before Redis decides on them again) and events in the dead-letter streams
//! (events the consumer could not persist, whatever it tried).

use super::Recovery;
use crate::error::{Refusal, StorageResult};
use crate::model::Order;
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
    /// `<locationId>:<its id in the location's dead-letter stream>` (when it was moved there):
    /// what [`Recovery::replay_dead_letter`] takes.
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
                id: format!("{loc}:{}", e.id),
            }));
        }
        // Stream ids start with their time in ms: the latest first, across locations.
        all.sort_by_key(|d| std::cmp::Reverse(stream_order(stream_id_of(&d.id))));
        all.truncate(limit);
        Ok(all)
    }

    /// How many stock keys are marked stale, and how long ago the oldest mark was written, in
    /// ms (0 when none is): for `/metrics`.
    pub async fn stale_key_figures(&self) -> StorageResult<(u64, u64)> {
        self.in_time(self.db_deadline(), async {
            let (n, age_us): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(marked_at), NOW(3)), 0) \
                 FROM redis_stale_keys",
            )
            .fetch_one(&self.db)
            .await?;
            Ok((n.max(0) as u64, age_us.max(0) as u64 / 1000))
        })
        .await
    }

    /// The events in every location's dead-letter stream: for `/metrics`.
    pub async fn dead_letter_count(&self) -> StorageResult<u64> {
        let mut redis = self.conn().await?;
        let mut pipe = redis::pipe();
        for loc in self.catalog().all_location_ids() {
            pipe.xlen(self.keys.dead_letters(loc));
        }
        let lengths: Vec<u64> = pipe.query_async(&mut redis).await?;
        Ok(lengths.iter().sum())
    }
}

impl Recovery<'_> {
    /// Replays a dead letter after a fix: a reservation's order, which the consumer listed as
    /// `REJECTED`, is taken as sold if its location has the units now (as the operators' retry
    /// does); a cancel is carried out MySQL-first. Once it took effect (or had, before), the
    /// entry leaves the dead-letter stream; otherwise the answer says why and the entry stays.
    /// `by`: the operator replaying it, whom the ledger names.
    pub async fn replay_dead_letter(
        &self,
        id: &str,
        by: crate::access::Actor,
    ) -> StorageResult<Order> {
        let unknown = || Refusal::NotFound(format!("no dead letter {id}"));
        let (loc, stream_id) = id.split_once(':').ok_or_else(unknown)?;
        let loc = loc
            .parse::<u64>()
            .ok()
            .and_then(|l| LocationId::parse("locationId", l as i64).ok())
            .filter(|l| self.catalog().all_location_ids().contains(l))
            .ok_or_else(unknown)?;
        let dead_key = self.keys.dead_letters(loc);
        let entry: redis::streams::StreamRangeReply = {
            let mut redis = self.conn().await?;
            redis::cmd("XRANGE")
                .arg(&dead_key)
                .arg(stream_id)
                .arg(stream_id)
                .query_async(&mut redis)
                .await
                .map_err(|_| unknown())?
        };
        let entry = entry.ids.into_iter().next().ok_or_else(unknown)?;
        let order_id: Option<String> = entry.get("o");
        let kind: Option<String> = entry.get("t");
        let order_id = order_id
            .filter(|o| Order::location_of(o) == Some(loc))
            .ok_or_else(|| {
                Refusal::Conflict(format!(
                    "dead letter {id} names no order of location {loc}: there is nothing to replay"
                ))
            })?;
        let order = match kind.as_deref() {
            Some("R") => match self.db_lock().retry_rejected(&order_id, by).await {
                Ok(order) => order,
                // Taken as sold before (a replay whose answer was lost, or an operator's retry).
                Err(e) if is_not_rejected(&e) => self.orders().get(&order_id).await?,
                Err(e) if matches!(e.refusal(), Some(Refusal::UnknownOrder(_))) => {
                    return Err(Refusal::Conflict(format!(
                        "the order of dead letter {id}, {order_id}, was never persisted (its event could not be read): there is nothing to replay"
                    ))
                    .into())
                }
                Err(e) => return Err(e),
            },
            Some("C") => self.db_lock().cancel(&order_id, Some(by)).await?,
            other => {
                return Err(Refusal::Conflict(format!(
                    "dead letter {id} is an event of kind {}, which changes nothing: there is nothing to replay",
                    other.unwrap_or("(none)")
                ))
                .into())
            }
        };
        let mut redis = self.conn().await?;
        let _: i64 = redis::cmd("XDEL")
            .arg(&dead_key)
            .arg(stream_id)
            .query_async(&mut redis)
            .await?;
        Ok(order)
    }
}

/// Whether a retry was refused because its order is not `REJECTED` (any more).
fn is_not_rejected(e: &crate::error::StorageError) -> bool {
    matches!(e.refusal(), Some(Refusal::Conflict(_)))
}

/// The stream id of a dead letter's id (`<locationId>:<streamId>`).
fn stream_id_of(id: &str) -> &str {
    id.split_once(':').map_or(id, |(_, s)| s)
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
        assert_eq!(super::stream_id_of("4:1700000000001-2"), "1700000000001-2");
        assert_eq!(
            ids,
            ["1700000000000-5", "1700000000001-0", "1700000000001-2"]
        );
    }
}
