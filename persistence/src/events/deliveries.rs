//! Webhook deliveries, the SQL only: one row per event and endpoint, created when the event is
//! fanned out to the endpoint, claimed when it is due, and updated with each attempt's outcome.
//! The backlog lives here, in MySQL, never in memory: the dispatcher reads a bounded number of
//! due deliveries at a time. When to try again and when to give up is decided by the caller.
//!
//! Order per subject: a delivery is due only when no earlier delivery of its endpoint and
//! subject (an order, a hold, a location's product) is still pending, so a receiver sees an
//! order's events in the order they happened. A delivery given up (`FAILED`) no longer blocks.

use super::Events;
use crate::error::{Refusal, StorageError, StorageResult};
use sqlx::{QueryBuilder, Row};
use std::time::Duration;

/// Events one fan-out pass gives one endpoint; the next pass gives the rest.
const FAN_OUT_PER_PASS: u64 = 2000;
/// The longest error text kept (the column's width).
const MAX_ERROR: usize = 500;

/// An enabled endpoint, as the dispatcher needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActiveEndpoint {
    pub id: u64,
    pub url: String,
    secret: String,
    /// The previous secret while it still signs.
    previous_secret: Option<String>,
    pub fanned_to_seq: u64,
}

impl ActiveEndpoint {
    /// The secrets its deliveries are signed with: the current one, then the previous one while
    /// its overlap lasts.
    pub fn secrets(&self) -> Vec<&str> {
        std::iter::once(self.secret.as_str())
            .chain(self.previous_secret.as_deref())
            .collect()
    }
}

/// A delivery to make now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub seq: u64,
    /// The `webhook-id`.
    pub event_id: String,
    pub subject: String,
    /// The body, exactly as stored.
    pub payload: String,
    /// Attempts made before this one.
    #[sqlx(try_from = "i32")]
    pub attempts: u32,
    /// When it was first tried, in ms since the Unix epoch; `None`: this is the first try.
    pub first_attempt_ms: Option<i64>,
    /// MySQL's clock when it was claimed, in ms since the Unix epoch.
    pub now_ms: i64,
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// A 2xx answer.
    Delivered { status_code: u16 },
    /// Any other answer, or none (`status_code: None`: a timeout, a refused connection).
    Failed {
        status_code: Option<u16>,
        error: String,
        then: AfterFailure,
    },
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryIn(Duration),
    /// Its retry window is over: `FAILED`.
    GiveUp,
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Failed => "FAILED",
        }
    }

    fn parse(s: &str) -> StorageResult<Self> {
        match s {
            "PENDING" => Ok(Self::Pending),
            "DELIVERED" => Ok(Self::Delivered),
            "FAILED" => Ok(Self::Failed),
            other => Err(StorageError::internal(format!(
                "webhook_deliveries has the unknown status {other}"
            ))),
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u32,
    pub at_ms: i64,
}

/// A delivery as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    pub event_id: String,
    pub kind: String,
    pub subject: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_ms: Option<i64>,
    /// When it is tried next (pending ones only).
    pub next_attempt_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    pub created_ms: i64,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<Attempt>,
}

/// What the metrics show of the deliveries, over every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryFigures {
    /// Deliveries not made yet.
    pub pending: i64,
    /// How long ago the oldest of them was created, in ms (0: none).
    pub oldest_pending_ms: i64,
    /// Endpoints disabled (by an operator, or after failing for their window).
    pub disabled_endpoints: i64,
}

fn status_code(raw: Option<i16>) -> Option<u16> {
    raw.and_then(|c| u16::try_from(c).ok())
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_ERROR).collect()
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// `d` for a person: `24 h`, `90 s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s % 3600 == 0 {
        format!("{} h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// Which events a redelivery picks.
#[derive(Debug, Clone, Copy)]
enum Pick<'a> {
    Event(&'a str),
    /// Those written since then, in ms since the Unix epoch.
    Since(i64),
}

impl<'a> Pick<'a> {
    /// The `FROM … WHERE …` of the endpoint's events this picks.
    fn from(self, q: &mut QueryBuilder<'a, sqlx::MySql>, endpoint_id: u64) {
        q.push(" FROM events e JOIN webhook_endpoints w ON w.id = ")
            .push_bind(endpoint_id)
            .push(" WHERE e.seq IS NOT NULL AND FIND_IN_SET(e.type, w.event_types) AND ");
        match self {
            Self::Event(id) => q.push("e.event_id = ").push_bind(id),
            Self::Since(ms) => q
                .push("e.created_at >= FROM_UNIXTIME(")
                .push_bind(ms)
                .push(" / 1000)"),
        };
    }
}

fn no_endpoint(id: u64) -> StorageError {
    Refusal::NotFound(format!("there is no webhook endpoint {id}")).into()
}

impl Events<'_> {
    /// The figures of [`DeliveryFigures`].
    pub async fn delivery_figures(&self) -> StorageResult<DeliveryFigures> {
        self.in_time(self.db_deadline(), async {
            let row = sqlx::query(
                "SELECT COUNT(*) AS pending, \
                 CAST(COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), NOW(3)) DIV 1000, 0) \
                     AS SIGNED) AS oldest_ms, \
                 (SELECT COUNT(*) FROM webhook_endpoints WHERE enabled = 0) AS disabled \
                 FROM webhook_deliveries WHERE status = 'PENDING'",
            )
            .fetch_one(&self.db)
            .await?;
            Ok(DeliveryFigures {
                pending: row.try_get("pending")?,
                oldest_pending_ms: row.try_get("oldest_ms")?,
                disabled_endpoints: row.try_get("disabled")?,
            })
        })
        .await
    }

    /// The enabled endpoints, with the secrets that sign for them now.
    pub async fn active_endpoints(&self) -> StorageResult<Vec<ActiveEndpoint>> {
        self.in_time(self.db_deadline(), async {
            Ok(sqlx::query_as(
                "SELECT id, url, secret, \
                 IF(previous_until > NOW(3), previous_secret, NULL) AS previous_secret, \
                 fanned_to_seq FROM webhook_endpoints WHERE enabled = 1 ORDER BY id",
            )
            .fetch_all(&self.db)
            .await?)
        })
        .await
    }

    /// Creates the endpoint's deliveries of the events placed since its last pass (those of
    /// its types), and moves its mark on; answers how many it created. Harmless to repeat.
    pub async fn fan_out(&self, endpoint: &ActiveEndpoint) -> StorageResult<u64> {
        self.in_time(self.db_deadline(), async {
            let mut tx = self.begin().await?;
            let row = sqlx::query(
                "SELECT fanned_to_seq, event_types, \
                 (SELECT CAST(COALESCE(MAX(seq), 0) AS UNSIGNED) FROM events) AS last \
                 FROM webhook_endpoints WHERE id = ? AND enabled = 1 FOR UPDATE",
            )
            .bind(endpoint.id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(0);
            };
            let from: u64 = row.try_get("fanned_to_seq")?;
            let types: String = row.try_get("event_types")?;
            let last: u64 = row.try_get("last")?;
            if last <= from {
                return Ok(0);
            }
            let to = last.min(from + FAN_OUT_PER_PASS);
            let created = sqlx::query(
                "INSERT IGNORE INTO webhook_deliveries (endpoint_id, seq, subject) \
                 SELECT ?, seq, subject FROM events \
                 WHERE seq > ? AND seq <= ? AND FIND_IN_SET(type, ?) ORDER BY seq",
            )
            .bind(endpoint.id)
            .bind(from)
            .bind(to)
            .bind(types)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("UPDATE webhook_endpoints SET fanned_to_seq = ? WHERE id = ?")
                .bind(to)
                .bind(endpoint.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(created)
        })
        .await
    }

    /// Up to `limit` deliveries of the endpoint that are due, each the first pending one of its
    /// subject, in feed order; each is claimed for `claim` (not due again meanwhile, so it is
    /// sent once; if the sender dies, it is due again when the claim lapses).
    pub async fn claim_due(
        &self,
        endpoint_id: u64,
        limit: u32,
        claim: Duration,
    ) -> StorageResult<Vec<DueDelivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.in_time(self.db_deadline(), async {
            // A healthy endpoint's pending deliveries are mostly due: walked in feed order, a
            // claim stops after the few it takes. A failing endpoint's are mostly waiting for
            // their retry: the few due ones are found by their time instead.
            let failing: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT CAST(UNIX_TIMESTAMP(failing_since) AS SIGNED) FROM webhook_endpoints \
                 WHERE id = ?",
            )
            .bind(endpoint_id)
            .fetch_optional(&self.db)
            .await?;
            let index = match failing.flatten() {
                None => "ix_webhook_deliveries_pending_seq",
                Some(_) => "ix_webhook_deliveries_due",
            };
            let due: Vec<DueDelivery> = sqlx::query_as(&format!(
                "SELECT d.seq, e.event_id, d.subject, e.payload, d.attempts, \
                 CAST(UNIX_TIMESTAMP(d.first_attempt_at) * 1000 AS SIGNED) AS first_attempt_ms, \
                 CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS now_ms \
                 FROM webhook_deliveries d FORCE INDEX ({index}) \
                 JOIN events e ON e.seq = d.seq \
                 WHERE d.endpoint_id = ? AND d.status = 'PENDING' AND d.next_attempt_at <= NOW(3) \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p \
                     WHERE p.endpoint_id = d.endpoint_id AND p.subject = d.subject \
                     AND p.status = 'PENDING' AND p.seq < d.seq) \
                 ORDER BY d.seq LIMIT ?"
            ))
            .bind(endpoint_id)
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
            if due.is_empty() {
                return Ok(due);
            }
            let mut q = QueryBuilder::new(
                "UPDATE webhook_deliveries SET next_attempt_at = NOW(3) + INTERVAL ",
            );
            q.push_bind(micros(claim))
                .push(" MICROSECOND WHERE status = 'PENDING' AND endpoint_id = ")
                .push_bind(endpoint_id)
                .push(" AND seq IN ");
            crate::infra::mysql::push_list(&mut q, due.iter().map(|d| d.seq));
            q.build().execute(&self.db).await?;
            Ok(due)
        })
        .await
    }

    /// Records an attempt that took `took`, and its outcome: delivered, tried again later, or
    /// given up. A success ends the endpoint's failing streak; a failure starts it, and an
    /// endpoint whose streak has lasted `disable_after` is disabled: answers the reason then.
    /// A deadlock with another attempt's record is retried.
    pub async fn record_attempt(
        &self,
        endpoint_id: u64,
        seq: u64,
        outcome: &Attempted,
        took: Duration,
        disable_after: Duration,
    ) -> StorageResult<Option<String>> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .try_record_attempt(endpoint_id, seq, outcome, took, disable_after)
                .await
            {
                Err(e) if e.is_retryable() && tries < 5 => continue,
                // The endpoint was deleted meanwhile (its attempt's foreign key fails): there is
                // nothing left to record.
                Err(e) if e.mysql_code() == Some(1452) => return Ok(None),
                other => return other,
            }
        }
    }

    async fn try_record_attempt(
        &self,
        endpoint_id: u64,
        seq: u64,
        outcome: &Attempted,
        took: Duration,
        disable_after: Duration,
    ) -> StorageResult<Option<String>> {
        let took_us = micros(took);
        let (code, error) = match outcome {
            Attempted::Delivered { status_code } => (Some(*status_code), None),
            Attempted::Failed {
                status_code, error, ..
            } => (*status_code, Some(clip(error))),
        };
        const TRIED: &str = "attempts = attempts + 1, \
             first_attempt_at = COALESCE(first_attempt_at, NOW(3) - INTERVAL ? MICROSECOND), \
             last_attempt_at = NOW(3) - INTERVAL ? MICROSECOND, last_status_code = ?";
        self.in_time(self.db_deadline(), async {
            // The delivery and its attempt together; the endpoint's streak after, in statements
            // of their own (in the same transaction, two attempts' records would deadlock on the
            // endpoint's row, which the attempt's foreign key locks).
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO webhook_attempts (endpoint_id, seq, status_code, error, duration_ms, \
                 created_at) VALUES (?, ?, ?, ?, ?, NOW(3) - INTERVAL ? MICROSECOND)",
            )
            .bind(endpoint_id)
            .bind(seq)
            .bind(code)
            .bind(error.as_deref())
            .bind(took.as_millis().min(i32::MAX as u128) as i32)
            .bind(took_us)
            .execute(&mut *tx)
            .await?;
            match outcome {
                Attempted::Delivered { .. } => {
                    sqlx::query(&format!(
                        "UPDATE webhook_deliveries SET status = 'DELIVERED', {TRIED}, \
                         last_error = NULL, delivered_at = NOW(3) \
                         WHERE endpoint_id = ? AND seq = ? AND status = 'PENDING'"
                    ))
                    .bind(took_us)
                    .bind(took_us)
                    .bind(code)
                    .bind(endpoint_id)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Attempted::Failed { then, error, .. } => {
                    let (status, retry_in) = match then {
                        AfterFailure::RetryIn(d) => ("PENDING", *d),
                        AfterFailure::GiveUp => ("FAILED", Duration::ZERO),
                    };
                    sqlx::query(&format!(
                        "UPDATE webhook_deliveries SET status = ?, {TRIED}, last_error = ?, \
                         next_attempt_at = NOW(3) + INTERVAL ? MICROSECOND \
                         WHERE endpoint_id = ? AND seq = ? AND status = 'PENDING'"
                    ))
                    .bind(status)
                    .bind(took_us)
                    .bind(took_us)
                    .bind(code)
                    .bind(clip(error))
                    .bind(micros(retry_in))
                    .bind(endpoint_id)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            let Attempted::Failed { error, .. } = outcome else {
                sqlx::query(
                    "UPDATE webhook_endpoints SET failing_since = NULL \
                     WHERE id = ? AND failing_since IS NOT NULL",
                )
                .bind(endpoint_id)
                .execute(&self.db)
                .await?;
                return Ok(None);
            };
            sqlx::query(
                "UPDATE webhook_endpoints \
                 SET failing_since = COALESCE(failing_since, NOW(3) - INTERVAL ? MICROSECOND) \
                 WHERE id = ? AND failing_since IS NULL",
            )
            .bind(took_us)
            .bind(endpoint_id)
            .execute(&self.db)
            .await?;
            let last = match code {
                Some(c) => format!("HTTP {c}: {error}"),
                None => error.clone(),
            };
            let reason = clip(&format!(
                "every delivery failed for {}; last: {last}",
                human(disable_after)
            ));
            let off = sqlx::query(
                "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?, \
                 disabled_at = NOW(3) WHERE id = ? AND enabled = 1 \
                 AND failing_since <= NOW(3) - INTERVAL ? MICROSECOND",
            )
            .bind(&reason)
            .bind(endpoint_id)
            .bind(micros(disable_after))
            .execute(&self.db)
            .await?
            .rows_affected();
            Ok((off > 0).then_some(reason))
        })
        .await
    }

    /// The endpoint's deliveries, newest first, with their attempts; only those in `status`
    /// when given.
    pub async fn deliveries(
        &self,
        endpoint_id: u64,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> StorageResult<Vec<Delivery>> {
        self.in_time(self.db_deadline(), async {
            self.read_endpoint_id(endpoint_id).await?;
            let mut q = QueryBuilder::new(
                "SELECT d.seq, e.event_id, e.type, d.subject, CAST(d.status AS CHAR) AS status, \
                 d.attempts, d.last_status_code, d.last_error, \
                 CAST(UNIX_TIMESTAMP(d.last_attempt_at) * 1000 AS SIGNED) AS last_attempt_ms, \
                 CAST(UNIX_TIMESTAMP(IF(d.status = 'PENDING', d.next_attempt_at, NULL)) * 1000 \
                     AS SIGNED) AS next_attempt_ms, \
                 CAST(UNIX_TIMESTAMP(d.delivered_at) * 1000 AS SIGNED) AS delivered_ms, \
                 CAST(UNIX_TIMESTAMP(d.created_at) * 1000 AS SIGNED) AS created_ms \
                 FROM webhook_deliveries d JOIN events e ON e.seq = d.seq WHERE d.endpoint_id = ",
            );
            q.push_bind(endpoint_id);
            if let Some(s) = status {
                q.push(" AND d.status = ").push_bind(s.as_str());
            }
            q.push(" ORDER BY d.seq DESC LIMIT ").push_bind(limit);
            let rows = q.build().fetch_all(&self.db).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let status: String = r.try_get("status")?;
                let attempts: i32 = r.try_get("attempts")?;
                out.push(Delivery {
                    seq: r.try_get("seq")?,
                    event_id: r.try_get("event_id")?,
                    kind: r.try_get("type")?,
                    subject: r.try_get("subject")?,
                    status: DeliveryStatus::parse(&status)?,
                    attempts: attempts.max(0) as u32,
                    last_status_code: status_code(r.try_get("last_status_code")?),
                    last_error: r.try_get("last_error")?,
                    last_attempt_ms: r.try_get("last_attempt_ms")?,
                    next_attempt_ms: r.try_get("next_attempt_ms")?,
                    delivered_ms: r.try_get("delivered_ms")?,
                    created_ms: r.try_get("created_ms")?,
                    attempt_log: Vec::new(),
                });
            }
            if out.is_empty() {
                return Ok(out);
            }
            let mut q = QueryBuilder::new(
                "SELECT seq, status_code, error, duration_ms, \
                 CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) AS at_ms \
                 FROM webhook_attempts WHERE endpoint_id = ",
            );
            q.push_bind(endpoint_id).push(" AND seq IN ");
            crate::infra::mysql::push_list(&mut q, out.iter().map(|d| d.seq));
            q.push(" ORDER BY id");
            for r in q.build().fetch_all(&self.db).await? {
                let seq: u64 = r.try_get("seq")?;
                let duration_ms: i32 = r.try_get("duration_ms")?;
                let attempt = Attempt {
                    status_code: status_code(r.try_get("status_code")?),
                    error: r.try_get("error")?,
                    duration_ms: duration_ms.max(0) as u32,
                    at_ms: r.try_get("at_ms")?,
                };
                if let Some(d) = out.iter_mut().find(|d| d.seq == seq) {
                    d.attempt_log.push(attempt);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn read_endpoint_id(&self, endpoint_id: u64) -> StorageResult<()> {
        let found: Option<u64> =
            sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE id = ?")
                .bind(endpoint_id)
                .fetch_optional(&self.db)
                .await?;
        found.map(|_| ()).ok_or_else(|| no_endpoint(endpoint_id))
    }

    /// Sends the event `event_id` to the endpoint again: its delivery is pending and due now,
    /// with a fresh retry window (its attempts so far stay in its log). An event of the
    /// endpoint's types that it never got a delivery of gets one.
    pub async fn redeliver(&self, endpoint_id: u64, event_id: &str) -> StorageResult<()> {
        self.in_time(self.db_deadline(), async {
            self.read_endpoint_id(endpoint_id).await?;
            let queued = self.requeue(endpoint_id, Pick::Event(event_id)).await?;
            if queued == 0 {
                return Err(Refusal::NotFound(format!(
                    "webhook endpoint {endpoint_id} has no event {event_id} of its types"
                ))
                .into());
            }
            Ok(())
        })
        .await
    }

    /// Sends every event of the endpoint's types written since `since_ms` again (or for the
    /// first time); answers how many.
    pub async fn redeliver_since(&self, endpoint_id: u64, since_ms: i64) -> StorageResult<u64> {
        while self.sequence().await? > 0 {}
        self.in_time(self.db_deadline(), async {
            self.read_endpoint_id(endpoint_id).await?;
            self.requeue(endpoint_id, Pick::Since(since_ms)).await
        })
        .await
    }

    /// Makes the deliveries of the events `filter` picks (and the endpoint's types) pending and
    /// due now; answers how many events it picked.
    async fn requeue(&self, endpoint_id: u64, pick: Pick<'_>) -> StorageResult<u64> {
        let mut tx = self.begin().await?;
        let mut count = QueryBuilder::new("SELECT COUNT(*)");
        pick.from(&mut count, endpoint_id);
        let picked: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;
        let mut q = QueryBuilder::new(
            "INSERT INTO webhook_deliveries (endpoint_id, seq, subject) SELECT w.id, e.seq, e.subject",
        );
        pick.from(&mut q, endpoint_id);
        q.push(
            " ON DUPLICATE KEY UPDATE status = 'PENDING', attempts = 0, \
             first_attempt_at = NULL, next_attempt_at = NOW(3), delivered_at = NULL",
        );
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(picked.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::human;
    use std::time::Duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(86_400)), "24 h");
        assert_eq!(human(Duration::from_secs(120)), "2 min");
        assert_eq!(human(Duration::from_secs(3)), "3 s");
    }
}
