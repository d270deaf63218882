//! `Idempotency-Key` bookkeeping. A key belongs to a scope (`DB_LOCK`, `REDIS`, `POS:<store>`);
//! the same key with the same body replays the first answer, with another body it is refused.
//! Only successful creations are remembered: a refused order leaves the key free for a retry.

use crate::error::{Refusal, StorageError, StorageResult};
use crate::model::Order;
use sha2::{Digest, Sha256};
use sqlx::{MySqlConnection, QueryBuilder};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRequest {
    pub scope: String,
    pub key: String,
    /// SHA-256 of the canonical request body.
    pub fingerprint: String,
}

impl IdempotencyRequest {
    pub fn new(
        scope: impl Into<String>,
        key: impl Into<String>,
        body: &impl serde::Serialize,
    ) -> Self {
        let canonical = serde_json::to_vec(body).unwrap_or_default();
        Self {
            scope: scope.into(),
            key: key.into(),
            fingerprint: hex::encode(Sha256::digest(&canonical)),
        }
    }
}

/// What a claim found.
pub enum Claim {
    /// The key is ours: go on and create the order.
    Fresh,
    /// The key was used before with this body: here is the first answer.
    Replay(Box<Order>),
}

/// Claims `req` inside `conn`'s transaction. A concurrent request with the same key waits on the
/// row until this transaction ends, then sees its answer (or, if it rolled back, claims it itself).
pub async fn claim_mysql(
    conn: &mut MySqlConnection,
    req: &IdempotencyRequest,
    ttl_secs: u64,
) -> StorageResult<Claim> {
    match claim_row(conn, req, ttl_secs).await? {
        None => Ok(Claim::Fresh),
        Some(held) => match (held.response, held.order_id) {
            (Some(json), _) => Ok(Claim::Replay(Box::new(
                crate::formats::OrderRecord::decode(&json)?,
            ))),
            // Kept by the consumer with a Redis-path order (the scope is the channel's, shared
            // by both order paths): the order as MySQL holds it is the answer.
            (None, Some(id)) => match crate::orders::order_in(&mut *conn, &id).await? {
                Some(order) => Ok(Claim::Replay(Box::new(order))),
                None => Err(Refusal::IdempotencyInFlight.into()),
            },
            (None, None) => Err(Refusal::IdempotencyInFlight.into()),
        },
    }
}

/// The claim itself, for any kind of first answer: `None` when the key is ours now, else what
/// the key holds (claimed with this body; another body is [`Refusal::IdempotencyMismatch`]).
pub(crate) async fn claim_row(
    conn: &mut MySqlConnection,
    req: &IdempotencyRequest,
    ttl_secs: u64,
) -> StorageResult<Option<HeldAnswer>> {
    // An expired key is as good as absent.
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE scope = ? AND idem_key = ? AND expires_at < NOW(3)",
    )
    .bind(&req.scope)
    .bind(&req.key)
    .execute(&mut *conn)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, expires_at) \
         VALUES (?, ?, ?, NOW(3) + INTERVAL ? SECOND)",
    )
    .bind(&req.scope)
    .bind(&req.key)
    .bind(&req.fingerprint)
    .bind(ttl_secs)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(None),
        Err(e) => {
            let e = StorageError::from(e);
            if !e.is_duplicate_key() {
                return Err(e);
            }
            let held: HeldAnswer = sqlx::query_as(
                "SELECT fingerprint, order_id, response FROM idempotency_keys \
                 WHERE scope = ? AND idem_key = ?",
            )
            .bind(&req.scope)
            .bind(&req.key)
            .fetch_one(&mut *conn)
            .await?;
            if held.fingerprint != req.fingerprint {
                return Err(Refusal::IdempotencyMismatch.into());
            }
            Ok(Some(held))
        }
    }
}

/// What a claimed key holds: the body it was claimed with, and the first answer once there is
/// one (the id it created, and the answer as stored).
#[derive(sqlx::FromRow)]
pub(crate) struct HeldAnswer {
    fingerprint: String,
    pub order_id: Option<String>,
    pub response: Option<String>,
}

/// Stores the answer of a claimed key, in the same transaction as the order.
pub async fn complete_mysql(
    conn: &mut MySqlConnection,
    req: &IdempotencyRequest,
    order: &Order,
) -> StorageResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET order_id = ?, response = ? WHERE scope = ? AND idem_key = ?",
    )
    .bind(&order.order_id)
    .bind(crate::formats::OrderRecord::encode(order))
    .bind(&req.scope)
    .bind(&req.key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Keeps the `Idempotency-Key`s of Redis-path orders in MySQL, in the transaction that persists
/// the orders, and answers which of these orders their key does not stand for: MySQL is where
/// one order per key is kept for good.
///
/// The key's claim lives in Redis. After Redis lost it (its data, or a failover to a replica
/// that lacked it) a retry finds the order here ([`find_mysql`]) — unless the first order was
/// still on its way to MySQL then: the retry places a second order, and the first of the two to
/// reach this point holds the key. The answer maps each other order's id to the order its key
/// stands for (an order of this batch, or one persisted before); the caller persists it as
/// rejected. The key rows stay locked until the transaction ends.
pub(crate) async fn keep_redis_keys(
    conn: &mut MySqlConnection,
    keyed: &[(&IdempotencyRequest, &Order)],
    ttl_secs: u64,
) -> StorageResult<HashMap<String, String>> {
    record_redis_keys(conn, keyed, ttl_secs).await?;
    let mut held: HashMap<(String, String), String> = HashMap::new();
    for chunk in keyed.chunks(crate::orders::ledger::ROWS_PER_STATEMENT) {
        // A locking read: it sees the row as committed last, not as of the transaction's start.
        let mut q =
            QueryBuilder::new("SELECT scope, idem_key, order_id FROM idempotency_keys WHERE ");
        let mut keys = q.separated(" OR ");
        for (key, _) in chunk {
            keys.push("(scope = ")
                .push_bind_unseparated(&key.scope)
                .push_unseparated(" AND idem_key = ")
                .push_bind_unseparated(&key.key)
                .push_unseparated(")");
        }
        q.push(" FOR UPDATE");
        for row in q.build_query_as::<HeldKey>().fetch_all(&mut *conn).await? {
            if let Some(order) = row.order_id {
                held.insert((row.scope, row.idem_key), order);
            }
        }
    }
    Ok(keyed
        .iter()
        .filter_map(|(k, o)| {
            let holder = held.get(&(k.scope.clone(), k.key.clone()))?;
            (*holder != o.order_id).then(|| (o.order_id.clone(), holder.clone()))
        })
        .collect())
}

/// A key row as [`keep_redis_keys`] reads it back.
#[derive(sqlx::FromRow)]
struct HeldKey {
    scope: String,
    idem_key: String,
    order_id: Option<String>,
}

/// The upsert of [`keep_redis_keys`]: a row of the same key that has not expired is kept as it
/// is (`expires_at` is set last: MariaDB applies the assignments in order, and the ones before
/// it read the old value).
async fn record_redis_keys(
    conn: &mut MySqlConnection,
    keyed: &[(&IdempotencyRequest, &Order)],
    ttl_secs: u64,
) -> StorageResult<()> {
    for chunk in keyed.chunks(crate::orders::ledger::ROWS_PER_STATEMENT) {
        QueryBuilder::new(
            "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, order_id, expires_at) ",
        )
        .push_values(chunk, |mut row, (key, order)| {
            row.push_bind(&key.scope)
                .push_bind(&key.key)
                .push_bind(&key.fingerprint)
                .push_bind(&order.order_id)
                .push("NOW(3) + INTERVAL ")
                .push_bind_unseparated(ttl_secs)
                .push_unseparated(" SECOND");
        })
        .push(
            " ON DUPLICATE KEY UPDATE \
             fingerprint = IF(expires_at < NOW(3), VALUES(fingerprint), fingerprint), \
             order_id = IF(expires_at < NOW(3), VALUES(order_id), order_id), \
             response = IF(expires_at < NOW(3), NULL, response), \
             expires_at = IF(expires_at < NOW(3), VALUES(expires_at), expires_at)",
        )
        .build()
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The order MySQL holds for an unexpired key, if any; a key held with another body is
/// [`Refusal::IdempotencyMismatch`].
pub(crate) async fn find_mysql(
    pool: &sqlx::MySqlPool,
    req: &IdempotencyRequest,
) -> StorageResult<Option<String>> {
    let row: Option<HeldOrder> = sqlx::query_as(
        "SELECT fingerprint, order_id FROM idempotency_keys \
         WHERE scope = ? AND idem_key = ? AND expires_at >= NOW(3)",
    )
    .bind(&req.scope)
    .bind(&req.key)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.fingerprint != req.fingerprint {
        return Err(Refusal::IdempotencyMismatch.into());
    }
    Ok(row.order_id)
}

/// What [`find_mysql`] reads of a key: the body it was claimed with, and its order.
#[derive(sqlx::FromRow)]
struct HeldOrder {
    fingerprint: String,
    order_id: Option<String>,
}
