//! Replication on the Redis path: how many replicas an order must reach (`WAIT`), refusing
//! orders on a shard known short of them, and confirming a replayed order.

use super::*;

use crate::error::{Cause, Failure, FailureKind, Refusal, StorageError, StorageResult};
use crate::model::Order;
use crate::scripts::Replication;
use crate::Storage;
use sf_routing::LocationId;
use std::sync::atomic::Ordering;

impl Storage {
    /// The replicas a Redis-path order must reach before it is answered, if any.
    pub(crate) fn replication(&self) -> Option<Replication> {
        let s = &self.redis_settings;
        (s.min_replica_acks > 0).then_some(Replication {
            replicas: s.min_replica_acks,
            timeout: s.wait_timeout,
        })
    }

    /// Whether to `WAIT` after a write to the slot of `key`: not while the slot's node was short
    /// of replicas a moment ago ([`REPLICA_RECHECK`]). A `WAIT` that cannot be met holds its
    /// connection — and every request multiplexed on it — for the whole timeout, so one shard
    /// without its replica would slow every write; until the recheck, MySQL-first writes mark
    /// their keys stale instead, and replays are answered at once as not replicated. (New orders
    /// are refused before they take stock: [`Storage::replication_for_order`].)
    pub(crate) fn replication_at(&self, key: &str) -> Option<Replication> {
        let r = self.replication()?;
        let slot = crate::infra::redis_link::slot(key.as_bytes());
        let short = self.replicas_short.lock().expect("replicas short");
        match short.get(&slot) {
            Some(since) if since.elapsed() < REPLICA_RECHECK => None,
            _ => Some(r),
        }
    }

    /// A `WAIT` on the slot of `key` came back short: the slot skips it until the recheck.
    pub(crate) fn note_replicas_short(&self, key: &str) {
        let slot = crate::infra::redis_link::slot(key.as_bytes());
        self.replicas_short
            .lock()
            .expect("replicas short")
            .insert(slot, std::time::Instant::now());
    }

    /// The replicas an order writing to the slot of `key` must reach, checked before it takes
    /// anything: none asked for (`None`); the slot is not known to be short of replicas; or it was
    /// short a while ago ([`REPLICA_RECHECK`]) and a write to `witness` (a key of the same slot,
    /// no stock) followed by `WAIT` shows that it has them again. While the slot is short, the
    /// order is refused before it touches stock (503, nothing changed), as Redis's own
    /// `min-replicas-to-write` refuses writes; 504 is left for a `WAIT` that times out where no
    /// shortage was known. One request per recheck probes; the others meanwhile are refused.
    pub(crate) async fn replication_for_order(
        &self,
        key: &str,
        witness: &str,
    ) -> StorageResult<Option<Replication>> {
        let Some(r) = self.replication() else {
            return Ok(None);
        };
        let slot = crate::infra::redis_link::slot(key.as_bytes());
        let probe = {
            let mut short = self.replicas_short.lock().expect("replicas short");
            match short.get(&slot) {
                None => return Ok(Some(r)),
                Some(since) if since.elapsed() < REPLICA_RECHECK => false,
                // This request probes; until it is done, the others see the slot as short.
                Some(_) => {
                    short.insert(slot, std::time::Instant::now());
                    true
                }
            }
        };
        if probe {
            let mut pipe = redis::pipe();
            r.witness(&mut pipe, witness);
            let mut redis = self.conn().await?.with_extra_time(r.timeout);
            let (held,): (u32,) = pipe.query_async(&mut redis).await?;
            if held >= r.replicas {
                self.replicas_short
                    .lock()
                    .expect("replicas short")
                    .remove(&slot);
                return Ok(Some(r));
            }
        }
        Err(self.short_of_replicas(r))
    }

    /// The refusal of an order whose shard has fewer replicas than every order must reach.
    pub(super) fn short_of_replicas(&self, r: Replication) -> StorageError {
        self.circuit.shed_orders.fetch_add(1, Ordering::Relaxed);
        Failure::stock_cache_down(
            format!(
                "the stock cache's shard for this order has fewer than the {} replica(s) every order must reach (REDIS_MIN_REPLICA_ACKS); nothing was changed: retry shortly, or order through POST /api/orders",
                r.replicas
            ),
            "shard short of replicas",
        )
        .into()
    }

    /// `result`, unless replication is asked for and the order reached fewer replicas: then
    /// [`FailureKind::NotReplicated`]. `waited` says whether `held` is a `WAIT`'s count (else
    /// none was asked, see [`Storage::replication_at`]); a short count starts the recheck delay
    /// of the slot of `key`.
    pub(super) fn replicated(
        &self,
        result: StorageResult<Order>,
        key: &str,
        held: Option<u32>,
    ) -> StorageResult<Order> {
        let Some(r) = self.replication() else {
            return result;
        };
        match result {
            Ok(order) if held.is_none_or(|h| h < r.replicas) => {
                if held.is_some() {
                    self.note_replicas_short(key);
                }
                self.circuit.unreplicated.fetch_add(1, Ordering::Relaxed);
                Err(Failure {
                    kind: FailureKind::NotReplicated {
                        order: Box::new(order),
                        held: held.unwrap_or(0),
                        wanted: r.replicas,
                        waited_ms: if held.is_some() {
                            r.timeout.as_millis() as u64
                        } else {
                            0
                        },
                    },
                    cause: Cause::Message("fewer replicas than asked for held the order".into()),
                }
                .into())
            }
            other => other,
        }
    }

    /// Before an idempotent retry replays an order under [`Storage::replication`]: the order
    /// must still exist (in Redis, else in MySQL) and, while Redis holds it, be held by enough
    /// replicas, as must the claim. A write to each slot followed by `WAIT` on the same
    /// connection proves that the replicas hold everything before it.
    ///
    /// Like an order's own `WAIT`, none is run while either slot was short of replicas a moment
    /// ago ([`Storage::replication_at`]): the order still must exist, and is answered at once as
    /// not replicated. (A `WAIT` that cannot be met holds its connection, and every call
    /// multiplexed behind it, for its whole timeout.)
    pub(super) async fn confirm_replay(
        &self,
        order: Order,
        claim_key: &str,
    ) -> StorageResult<Order> {
        let Some(r) = self.replication() else {
            return Ok(order);
        };
        let loc = LocationId::new_unchecked(order.fulfillment_location_id);
        let stream = self.keys.stream(loc);
        if self.replication_at(&stream).is_none() || self.replication_at(claim_key).is_none() {
            let in_redis: bool = {
                let mut redis = self.conn().await?;
                redis::cmd("EXISTS")
                    .arg(self.keys.order(loc, &order.order_id))
                    .query_async(&mut redis)
                    .await?
            };
            if !in_redis {
                return self.persisted_or_lost(order).await;
            }
            return self.replicated(Ok(order), &stream, None);
        }
        let mut at_location = redis::pipe();
        at_location
            .cmd("EXISTS")
            .arg(self.keys.order(loc, &order.order_id));
        r.witness(&mut at_location, &self.keys.replication_witness(loc));
        let mut at_claim = redis::pipe();
        r.witness(&mut at_claim, &format!("{claim_key}:w"));
        let redis = self.conn().await?.with_extra_time(r.timeout);
        let (held_here, held_claim) = futures::future::try_join(
            {
                let mut c = redis.clone();
                async move { at_location.query_async::<(bool, u32)>(&mut c).await }
            },
            {
                let mut c = redis.clone();
                async move { at_claim.query_async::<(u32,)>(&mut c).await }
            },
        )
        .await?;
        let (in_redis, held) = held_here;
        if !in_redis {
            return self.persisted_or_lost(order).await;
        }
        self.replicated(Ok(order), &stream, Some(held.min(held_claim.0)))
    }

    /// A replayed order Redis no longer holds: persisted (its record expired), or lost with a
    /// master that failed before replicating it — decided as for any missing order
    /// ([`Storage::missing_order`]): lost only once a recorded loss has settled, since a consumer
    /// batch on its way to MySQL may still bring it in. Until then, and while no loss is recorded
    /// yet (the checks record it within seconds), the retry is asked to come back (503).
    pub(super) async fn persisted_or_lost(&self, order: Order) -> StorageResult<Order> {
        if let Some(persisted) = self.order_from_mysql(&order.order_id).await? {
            return Ok(persisted);
        }
        Err(match self.missing_order(&order.order_id).await {
            StorageError::Refused(Refusal::UnknownOrder(_)) => StorageError::unavailable(format!(
                "Redis no longer holds order {}, and MySQL does not hold it yet; whether it was lost with Redis's data is known within seconds: retry with the same Idempotency-Key",
                order.order_id
            )),
            known => known,
        })
    }
}
