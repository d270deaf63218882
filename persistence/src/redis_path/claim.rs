//! `Idempotency-Key` claims on the Redis path: claiming a key with its lease, taking over a
//! claim whose request died, finding the order a claim stands for, and storing its answer.

use super::*;

use crate::error::{FailureKind, Refusal, StorageError, StorageResult};
use crate::formats::ClaimRecord;
use crate::infra::mysql::push_list;
use crate::model::Order;
use crate::orders::idempotency::IdempotencyRequest;
use crate::orders::RedisRecord;
use crate::scripts::claim::{Claim, ClaimKey};
use crate::scripts::lease::{Lease, LeaseOp};
use crate::Storage;
use redis::AsyncCommands;
use sf_routing::LocationId;
use sqlx::QueryBuilder;
use std::time::Duration;

impl Storage {
    /// Claims an idempotency key in Redis, or finds what it stands for. The claim and its lease
    /// are taken in one step (`claim.lua`), and so is a takeover: two requests never both hold a
    /// claim, so one key never decides two orders.
    ///
    /// Under [`Storage::replication`], a claim this request takes must be held by the replicas
    /// before anything is decided under it (a claim only the master holds is gone after a
    /// failover, and the key's retry would place a second order): else it is freed and the
    /// order refused, nothing changed, as on a slot known short of replicas.
    pub(super) async fn claim_redis(&self, idem: &IdempotencyRequest) -> StorageResult<Claimed> {
        let key = self.keys.idempotency(&idem.scope, &idem.key);
        let replication = self
            .replication_for_order(&key, &format!("{key}:w"))
            .await?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let deadline = tokio::time::Instant::now() + IDEMPOTENCY_WAIT;
        loop {
            let uuid = uuid::Uuid::now_v7().simple().to_string();
            let attempt = ClaimKey {
                key: &key,
                fingerprint: &idem.fingerprint,
                uuid: &uuid,
                ttl_secs: self.config.idempotency_ttl_secs,
                token: &token,
                lease: CLAIM_LEASE,
            };
            let claim = {
                let mut redis = self.conn().await?;
                match replication {
                    None => attempt.run(&mut redis).await?,
                    Some(r) => {
                        let (claim, held) = attempt.run_replicated(&mut redis, r).await?;
                        let ours = matches!(claim, Claim::New | Claim::TakenOver { .. });
                        if ours && held < r.replicas {
                            self.note_replicas_short(&key);
                            if claim == Claim::New {
                                let _: () = redis.del(&key).await?;
                            }
                            self.release_claim_lease(&ClaimKey::lease_key(&key), &token)
                                .await;
                            return Err(self.short_of_replicas(r));
                        }
                        claim
                    }
                }
            };
            match claim {
                Claim::New => {
                    // A new claim, unless Redis lost an earlier one (its data, or a failover to a
                    // replica that lacked it) whose order MySQL holds by now.
                    if let Some(order) = self.keyed_in_mysql(idem, &key, &token).await? {
                        return Ok(Claimed::Replay(Box::new(order)));
                    }
                    return Ok(Claimed::Owner { uuid, token });
                }
                // Whoever claimed it died or lost its answer: look for the order it may have placed.
                Claim::TakenOver { uuid } => {
                    if let Some(order) = self.find_placed(&uuid).await? {
                        tracing::info!(order = %order.order_id, "idempotent retry found the order an earlier attempt placed");
                        self.answer_claim(idem, &key, &token, &order).await?;
                        return Ok(Claimed::Replay(Box::new(order)));
                    }
                    // The earlier attempt may have been a DB-lock order (its id is not the
                    // claim's): MySQL holds its key if it committed.
                    if let Some(order) = self.keyed_in_mysql(idem, &key, &token).await? {
                        return Ok(Claimed::Replay(Box::new(order)));
                    }
                    return Ok(Claimed::Owner { uuid, token });
                }
                Claim::Held(record) => {
                    if record.fingerprint != idem.fingerprint {
                        return Err(Refusal::IdempotencyMismatch.into());
                    }
                    if let Some(answer) = &record.answer {
                        return Ok(Claimed::Replay(Box::new(
                            crate::formats::OrderRecord::decode(answer)?,
                        )));
                    }
                }
            }
            // Another request works on it: wait for its answer.
            if tokio::time::Instant::now() >= deadline {
                return Err(Refusal::IdempotencyInFlight.into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Places a DB-lock order under the Redis claim of its `Idempotency-Key`. Both order paths
    /// share a channel's keys, so a key is one order whichever path a retry takes: the claim
    /// keeps a Redis-path request with the same key from deciding while this one does, and
    /// stores this order as the key's answer. When Redis cannot give a claim (down, or short of
    /// replicas), MySQL's claim, taken in the order's own transaction, is the only one: the
    /// Redis path takes no orders then.
    pub(crate) async fn place_claimed<F>(
        &self,
        idem: &IdempotencyRequest,
        place: F,
    ) -> StorageResult<crate::db_lock::Placed>
    where
        F: std::future::Future<Output = StorageResult<crate::db_lock::Placed>>,
    {
        use crate::db_lock::Placed;
        let (uuid, token) = match self.claim_redis(idem).await {
            Ok(Claimed::Replay(order)) => return Ok(Placed::Replayed(*order)),
            Ok(Claimed::Owner { uuid, token }) => (uuid, token),
            Err(e) if e.is_definite_refusal() => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "no Redis claim for a DB-lock order; MySQL's alone");
                return place.await;
            }
        };
        let placed = place.await;
        let outcome = placed
            .as_ref()
            .map(|p| p.order().clone())
            .map_err(Clone::clone);
        if let Err(e) = self.settle_claim(idem, &uuid, &token, &outcome).await {
            // The claim stays open; its lease expires, and a retry finds the order in MySQL.
            tracing::warn!(error = %e, "could not store the answer of an idempotent order");
        }
        placed
    }

    /// The order MySQL holds for the key of a claim just made new in Redis: Redis lost the key's
    /// earlier claim, and the consumer kept the key with the order. The claim then records that
    /// order as its answer. MySQL not answering leaves the claim new (the key's rare loss in
    /// Redis must not make keyed orders depend on MySQL); a key MySQL holds for another body
    /// frees the claim and is refused.
    pub(super) async fn keyed_in_mysql(
        &self,
        idem: &IdempotencyRequest,
        claim_key: &str,
        token: &str,
    ) -> StorageResult<Option<Order>> {
        let found = self
            .in_time(
                self.db_deadline(),
                crate::orders::idempotency::find_mysql(&self.db, idem),
            )
            .await;
        let order_id = match found {
            Ok(Some(id)) => id,
            Ok(None) => return Ok(None),
            Err(StorageError::Refused(Refusal::IdempotencyMismatch)) => {
                let mut redis = self.settling_conn().await?;
                let _: () = redis.del(claim_key).await?;
                self.release_claim_lease(&ClaimKey::lease_key(claim_key), token)
                    .await;
                return Err(Refusal::IdempotencyMismatch.into());
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not look the key up in MySQL; the claim stays new");
                return Ok(None);
            }
        };
        let Some(order) = self.order_from_mysql(&order_id).await.ok().flatten() else {
            return Ok(None);
        };
        tracing::info!(order = %order.order_id, "idempotent retry found in MySQL the order a claim Redis lost had placed");
        self.answer_claim(idem, claim_key, token, &order).await?;
        Ok(Some(order))
    }

    /// A claim this request holds names an order placed before (found after its answer was
    /// lost): the order becomes the claim's answer, and the claim's lease is released.
    pub(super) async fn answer_claim(
        &self,
        idem: &IdempotencyRequest,
        claim_key: &str,
        token: &str,
        order: &Order,
    ) -> StorageResult<()> {
        let answer = crate::formats::OrderRecord::encode(order);
        let uuid = Order::uuid_of(&order.order_id);
        let mut redis = self.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(claim_key)
            .arg(ClaimRecord::encode(&idem.fingerprint, uuid, &answer))
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut redis)
            .await?;
        self.release_claim_lease(&ClaimKey::lease_key(claim_key), token)
            .await;
        Ok(())
    }

    /// Stores the outcome of a claimed order: the answer to replay (also for an order that is
    /// held by too few replicas: it exists), or, for a definite refusal, frees the key for a
    /// retry. When the outcome is unknown (Redis did not answer) the claim stays open and only
    /// its lease is released, so a retry can find the order if it was placed. Under
    /// [`Storage::replication`], answers how many replicas hold the stored answer.
    pub(super) async fn settle_claim(
        &self,
        idem: &IdempotencyRequest,
        uuid: &str,
        token: &str,
        result: &StorageResult<Order>,
    ) -> StorageResult<Option<u32>> {
        let key = self.keys.idempotency(&idem.scope, &idem.key);
        let lease = ClaimKey::lease_key(&key);
        let placed = match result {
            Ok(order) => Some(order),
            Err(e) => match e.failure() {
                Some(FailureKind::NotReplicated { order, .. }) => Some(&**order),
                _ => None,
            },
        };
        let stored: StorageResult<Option<u32>> = async {
            match placed {
                Some(order) => {
                    let answer = crate::formats::OrderRecord::encode(order);
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET")
                        .arg(&key)
                        .arg(ClaimRecord::encode(&idem.fingerprint, uuid, &answer))
                        .arg("XX")
                        .arg("KEEPTTL")
                        .ignore();
                    let replication = self.replication_at(&key);
                    if let Some(r) = replication {
                        // On the same connection: it counts the replicas holding this answer.
                        r.wait(&mut pipe);
                    }
                    let redis = self.settling_conn().await?;
                    let mut redis = match replication {
                        Some(r) => redis.with_extra_time(r.timeout),
                        None => redis,
                    };
                    let held: Vec<u32> = pipe.query_async(&mut redis).await?;
                    Ok(held.first().copied())
                }
                None if result.as_ref().is_err_and(|e| e.is_definite_refusal()) => {
                    let mut redis = self.settling_conn().await?;
                    let _: () = redis.del(&key).await?;
                    Ok(None)
                }
                None => Ok(None),
            }
        }
        .await;
        // Released whatever happened above, so that a retry can take over at once.
        self.release_claim_lease(&lease, token).await;
        stored
    }

    pub(super) async fn release_claim_lease(&self, lease: &str, token: &str) {
        let released: StorageResult<bool> = async {
            let release = Lease {
                key: lease,
                holder: token,
                op: LeaseOp::Release,
            };
            let mut c = self.settling_conn().await?;
            release.run(&mut c).await
        }
        .await;
        if let Err(e) = released {
            tracing::debug!(error = %e, "could not release an idempotency lease; it expires on its own");
        }
    }

    /// The order an earlier attempt placed under `uuid` at any location: in Redis while it is
    /// not yet persisted (or its record has not expired), else in MySQL.
    pub(super) async fn find_placed(&self, uuid: &str) -> StorageResult<Option<Order>> {
        let ids: Vec<(LocationId, String)> = self
            .catalog()
            .all_location_ids()
            .into_iter()
            .map(|l| (l, Order::id_at(l.get(), uuid)))
            .collect();
        let mut pipe = redis::pipe();
        for (loc, id) in &ids {
            pipe.add_command(RedisRecord::read(&self.keys.order(*loc, id)));
        }
        let records: Vec<crate::orders::RecordFields> = {
            let mut redis = self.conn().await?;
            pipe.query_async(&mut redis).await?
        };
        if let Some(record) = records.into_iter().find_map(RedisRecord::from_fields) {
            return record.order().map(Some);
        }
        for chunk in ids.chunks(crate::orders::ledger::ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new("SELECT id FROM orders WHERE id IN ");
            push_list(&mut q, chunk.iter().map(|(_, id)| id.as_str()));
            q.push(" LIMIT 1");
            let found: Option<String> = q.build_query_scalar().fetch_optional(&self.db).await?;
            if let Some(id) = found {
                return self.order_from_mysql(&id).await;
            }
        }
        Ok(None)
    }
}
