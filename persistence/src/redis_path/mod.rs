//! The Redis path: an order is decided by `reserve.lua` in one atomic step (check every line,
//! decrement all or none, write the order record and its event) and answered at once; the
//! consumer persists it to MySQL afterwards.

use crate::orders::build::build_order;
use crate::db_lock::Placed;
use crate::error::{StorageError, StorageResult};
use crate::formats::ClaimRecord;
use crate::orders::idempotency::IdempotencyRequest;
use crate::orders::ledger::{insert_orders, lock_stock_rows, Reason};
use crate::model::{Order, OrderPath, OrderStatus, StockSource};
use crate::orders::RedisRecord;
use crate::scripts::cancel::{Cancel, Cancelled};
use crate::scripts::claim::{Claim, ClaimKey};
use crate::scripts::lease::{Lease, LeaseOp};
use crate::scripts::reserve::{Decision, Reserve};
use crate::scripts::Replication;
use crate::Storage;
use redis::AsyncCommands;
use sf_routing::{
    candidates, eligible, Destination, LocationId, LocationKind, OrderLines, ProductId,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// An order for the Redis path.
#[derive(Debug, Clone)]
pub struct RedisOrder {
    pub lines: OrderLines,
    pub destination: Destination,
    pub idempotency: Option<IdempotencyRequest>,
}

/// How long after a `WAIT` came back short the slot's orders skip it ([`Storage::replication_at`]).
const REPLICA_RECHECK: Duration = Duration::from_secs(1);
/// How long a repeated `Idempotency-Key` waits for the first request's answer.
const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(5);
/// How long a request may decide a claimed order before a retry may take the claim over.
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// The request that holds a claim tries no further candidate this close to its lease's end (more
/// than one Redis call may take), so a retry that takes over never races it.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);

/// What claiming an `Idempotency-Key` gave.
enum Claimed {
    /// This request decides the order, under this uuid, holding the claim's lease.
    Owner { uuid: String, token: String },
    /// The order was placed before: its first answer (or, after a lost answer, the order itself).
    Replay(Order),
}

impl Storage {
    /// Decides an order in Redis, trying candidate locations nearest first.
    ///
    /// With an `Idempotency-Key`, the order's id is fixed by the key's claim before anything is
    /// decided (`<location>-<uuid>`), and the reservation script refuses an id it has seen. So a
    /// retry after a lost answer, or after the first request died between the reservation and
    /// storing the answer, finds the order the first attempt placed instead of placing another.
    #[tracing::instrument(level = "debug", skip(self, req), fields(lines = req.lines.len()))]
    pub async fn place_redis(&self, req: &RedisOrder) -> StorageResult<Placed> {
        self.redis_decides()?;
        let started = tokio::time::Instant::now();
        let claim = match &req.idempotency {
            None => None,
            Some(idem) => match self.claim_redis(idem).await? {
                Claimed::Replay(order) => {
                    let claim_key = self.keys.idempotency(&idem.scope, &idem.key);
                    return Ok(Placed::Replayed(
                        self.confirm_replay(order, &claim_key).await?,
                    ));
                }
                Claimed::Owner { uuid, token } => Some((idem, uuid, token)),
            },
        };
        let uuid = match &claim {
            Some((_, uuid, _)) => uuid.clone(),
            None => uuid::Uuid::now_v7().simple().to_string(),
        };
        let deadline = started + CLAIM_LEASE - CLAIM_MARGIN;
        let mut result = self.decide_redis(req, &uuid, deadline).await;
        if let Some((idem, uuid, token)) = claim {
            let claim_key = self.keys.idempotency(&idem.scope, &idem.key);
            match self.settle_claim(idem, &uuid, &token, &result).await {
                Ok(held @ Some(_)) => result = self.replicated(result, &claim_key, held),
                // Replication asked for, and no WAIT run: the claim's slot was short a moment ago.
                Ok(None) if result.is_ok() && self.replication().is_some() => {
                    result = self.replicated(result, &claim_key, None)
                }
                Ok(None) => {}
                // The claim stays open; its lease expires and a retry finds the order.
                Err(e) => {
                    tracing::warn!(error = %e, "could not store the answer of an idempotent order")
                }
            }
        }
        result.map(Placed::New)
    }

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
    fn short_of_replicas(&self, r: Replication) -> StorageError {
        self.circuit.shed_orders.fetch_add(1, Ordering::Relaxed);
        StorageError::RedisDown(format!(
            "the stock cache's shard for this order has fewer than the {} replica(s) every order must reach (REDIS_MIN_REPLICA_ACKS); nothing was changed: retry shortly, or order through POST /api/orders",
            r.replicas
        ))
    }

    /// `result`, unless replication is asked for and the order reached fewer replicas: then
    /// [`StorageError::NotReplicated`]. `waited` says whether `held` is a `WAIT`'s count (else
    /// none was asked, see [`Storage::replication_at`]); a short count starts the recheck delay
    /// of the slot of `key`.
    fn replicated(
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
                Err(StorageError::NotReplicated {
                    order: Box::new(order),
                    held: held.unwrap_or(0),
                    wanted: r.replicas,
                    waited_ms: if held.is_some() {
                        r.timeout.as_millis() as u64
                    } else {
                        0
                    },
                })
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
    async fn confirm_replay(&self, order: Order, claim_key: &str) -> StorageResult<Order> {
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
    async fn persisted_or_lost(&self, order: Order) -> StorageResult<Order> {
        if let Some(persisted) = self.order_from_mysql(&order.order_id).await? {
            return Ok(persisted);
        }
        Err(match self.missing_order(&order.order_id).await {
            StorageError::UnknownOrder(_) => StorageError::Unavailable(format!(
                "Redis no longer holds order {}, and MySQL does not hold it yet; whether it was lost with Redis's data is known within seconds: retry with the same Idempotency-Key",
                order.order_id
            )),
            known => known,
        })
    }

    async fn decide_redis(
        &self,
        req: &RedisOrder,
        uuid: &str,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Order> {
        let prices = self.prices(&req.lines).await?;
        let ranked = candidates(&self.locations().index, &req.destination)
            .map_err(|e| StorageError::NotFound(e.to_string()))?;
        let mut shortest = None;
        for candidate in ranked {
            let loc = candidate.location;
            let order = build_order(
                Order::id_at(loc.get(), uuid),
                OrderStatus::Accepted,
                OrderPath::Redis,
                &req.destination,
                candidate,
                &req.lines,
                &prices,
            );
            // The record carries the key, which the consumer keeps in MySQL with the order.
            let json = crate::formats::OrderRecord::encode_keyed(&order, req.idempotency.as_ref());
            let mut loads = 0;
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(StorageError::Unavailable(
                        "the order could not be decided in time; retry with the same Idempotency-Key".into(),
                    ));
                }
                let reserve = Reserve {
                    loc,
                    order_id: &order.order_id,
                    json: &json,
                    lines: &req.lines,
                };
                let slot_key = self.keys.stream(loc);
                let replication = self
                    .replication_for_order(&slot_key, &self.keys.replication_witness(loc))
                    .await?;
                let (decided, held) = {
                    // Checked again at the moment of deciding: the circuit may have opened since
                    // the order began, and while it recovers a key may still be stale. The
                    // recovery's barrier is held from the check through the decision, so a
                    // recovery re-syncs stale keys only after every decision that passed it.
                    let _deciding = self.circuit.write_in_flight().await;
                    self.redis_decides()?;
                    let mut redis = self.conn().await?;
                    let ran = match replication {
                        None => reserve.run(&self.keys, &mut redis).await.map(|d| (d, None)),
                        Some(r) => reserve
                            .run_replicated(&self.keys, &mut redis, r)
                            .await
                            .map(|(d, held)| (d, Some(held))),
                    };
                    ran.map_err(|e| sent_without_answer(&order.order_id, e))?
                };
                match decided {
                    Decision::Applied => return self.replicated(Ok(order), &slot_key, held),
                    // An earlier attempt under the same claim placed it here (its answer was lost).
                    Decision::Duplicate => {
                        return match self.redis_record(loc, &order.order_id).await? {
                            Some(r) => r.order(),
                            None => Ok(order),
                        }
                    }
                    Decision::Short { index, have } => {
                        let product = req.lines.iter().nth(index).map(|(p, _)| p);
                        if let Some(product) = product {
                            shortest.get_or_insert((loc, product, have));
                        }
                        break;
                    }
                    Decision::NotLoaded { .. } if loads < 3 => {
                        loads += 1;
                        let products: Vec<ProductId> = req.lines.products().collect();
                        // Never past the attempt's deadline: the claim's lease outlives it.
                        self.load_keys(loc, &products, deadline.min(self.db_deadline()))
                            .await?;
                    }
                    Decision::NotLoaded { index } => {
                        return Err(StorageError::Unavailable(format!(
                            "stock of product {} at location {loc} is not loaded into redis yet",
                            req.lines
                                .iter()
                                .nth(index)
                                .map(|(p, _)| p.get())
                                .unwrap_or(0)
                        )))
                    }
                }
            }
        }
        Err(self
            .no_location(req.lines.clone(), &req.destination, shortest)
            .await)
    }

    /// Claims an idempotency key in Redis, or finds what it stands for. The claim and its lease
    /// are taken in one step (`claim.lua`), and so is a takeover: two requests never both hold a
    /// claim, so one key never decides two orders.
    ///
    /// Under [`Storage::replication`], a claim this request takes must be held by the replicas
    /// before anything is decided under it (a claim only the master holds is gone after a
    /// failover, and the key's retry would place a second order): else it is freed and the
    /// order refused, nothing changed, as on a slot known short of replicas.
    async fn claim_redis(&self, idem: &IdempotencyRequest) -> StorageResult<Claimed> {
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
                        return Ok(Claimed::Replay(order));
                    }
                    return Ok(Claimed::Owner { uuid, token });
                }
                // Whoever claimed it died or lost its answer: look for the order it may have placed.
                Claim::TakenOver { uuid } => {
                    if let Some(order) = self.find_placed(&uuid).await? {
                        tracing::info!(order = %order.order_id, "idempotent retry found the order an earlier attempt placed");
                        self.answer_claim(idem, &key, &token, &order).await?;
                        return Ok(Claimed::Replay(order));
                    }
                    return Ok(Claimed::Owner { uuid, token });
                }
                Claim::Held(record) => {
                    if record.fingerprint != idem.fingerprint {
                        return Err(StorageError::IdempotencyMismatch);
                    }
                    if let Some(answer) = &record.answer {
                        return Ok(Claimed::Replay(crate::formats::OrderRecord::decode(
                            answer,
                        )?));
                    }
                }
            }
            // Another request works on it: wait for its answer.
            if tokio::time::Instant::now() >= deadline {
                return Err(StorageError::IdempotencyInFlight);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The order MySQL holds for the key of a claim just made new in Redis: Redis lost the key's
    /// earlier claim, and the consumer kept the key with the order. The claim then records that
    /// order as its answer. MySQL not answering leaves the claim new (the key's rare loss in
    /// Redis must not make keyed orders depend on MySQL); a key MySQL holds for another body
    /// frees the claim and is refused.
    async fn keyed_in_mysql(
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
            Err(StorageError::IdempotencyMismatch) => {
                let mut redis = self.settling_conn().await?;
                let _: () = redis.del(claim_key).await?;
                self.release_claim_lease(&ClaimKey::lease_key(claim_key), token)
                    .await;
                return Err(StorageError::IdempotencyMismatch);
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
    async fn answer_claim(
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
    async fn settle_claim(
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
            Err(StorageError::NotReplicated { order, .. }) => Some(&**order),
            Err(_) => None,
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

    async fn release_claim_lease(&self, lease: &str, token: &str) {
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
    async fn find_placed(&self, uuid: &str) -> StorageResult<Option<Order>> {
        let ids: Vec<(LocationId, String)> = self
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
            let sql = format!(
                "SELECT id FROM orders WHERE id IN ({}) LIMIT 1",
                crate::recovery::sync::marks(chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for (_, id) in chunk {
                q = q.bind(id);
            }
            if let Some(id) = q.fetch_optional(&self.db).await? {
                return self.order_from_mysql(&id).await;
            }
        }
        Ok(None)
    }

    /// Cancels an order through the shop's routes. Every `CANCELLED` it answers is held by MySQL
    /// before it is answered, so no later failure of Redis (a restart without its data, a
    /// failover to a replica that lacked the cancel) can take it back:
    ///
    /// - an order MySQL holds — a DB-lock order, or a Redis-path order the consumer persisted —
    ///   is cancelled MySQL-first: its row is locked, its units come back in MySQL and, under
    ///   that lock, in Redis ([`Storage::cancel_db_lock`]). This needs no trusted Redis;
    /// - a Redis-path order not yet persisted is written to MySQL as `CANCELLED` (it took no stock
    ///   there), `cancel.lua` gives its units back in Redis while that new row and the order's
    ///   stock rows are locked, and then the transaction commits. The consumer later finds the order in MySQL and applies neither
    ///   its reservation nor its cancel event. Should the commit fail after the script ran, the
    ///   order still ends `CANCELLED`: the consumer persists its reservation and then its cancel.
    ///
    /// Either way the stock comes back exactly once. A POS sale is not the shop's to cancel: here
    /// it is an unknown order (its store returns it through the store's route).
    #[tracing::instrument(skip(self))]
    pub async fn cancel_order(&self, order_id: &str) -> StorageResult<Order> {
        let loc = Order::location_of(order_id)
            .map(LocationId::new_unchecked)
            .ok_or_else(|| StorageError::UnknownOrder(order_id.to_owned()))?;
        let deadline = self.db_deadline();
        crate::infra::mysql::with_retry("cancel", || self.try_cancel_order(order_id, loc, deadline)).await
    }

    async fn try_cancel_order(
        &self,
        order_id: &str,
        loc: LocationId,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Order> {
        if let Some(persisted) = self.order_from_mysql(order_id).await? {
            return self.cancel_persisted(persisted, deadline).await;
        }
        if !self.circuit.trusted() {
            return Err(self.redis_down_error());
        }
        let Some(record) = self.redis_record(loc, order_id).await? else {
            // Persisted (and its record expired) since MySQL was asked, or lost, or unknown.
            return match self.order_from_mysql(order_id).await? {
                Some(persisted) => self.cancel_persisted(persisted, deadline).await,
                None => Err(self.missing_order(order_id).await),
            };
        };
        let order = Order {
            status: OrderStatus::Cancelled,
            reason: None,
            ..record.order()?
        };
        // The stock rows are locked too, although MySQL's figures do not change: a re-sync
        // computing these keys (under its share locks) then sees either neither the cancel's row
        // nor its script's effect, or both.
        let statements = async {
            let mut tx = self.db.begin().await?;
            insert_orders(&mut tx, &[&order], Reason::Cancel).await?;
            let products: Vec<ProductId> = order
                .items
                .iter()
                .map(|i| ProductId::new_unchecked(i.product_id))
                .collect();
            lock_stock_rows(&mut tx, loc, &products).await?;
            Ok(tx)
        };
        let tx = match self.in_time(deadline, statements).await {
            Ok(tx) => tx,
            // The consumer persisted it meanwhile: MySQL-first, like any persisted order.
            Err(e) if e.is_duplicate_key() => {
                let persisted = self
                    .order_from_mysql(order_id)
                    .await?
                    .ok_or_else(|| StorageError::UnknownOrder(order_id.to_owned()))?;
                return self.cancel_persisted(persisted, deadline).await;
            }
            Err(e) => return Err(e),
        };
        let cancel = Cancel {
            loc,
            order_id,
            items: &order.items,
        };
        let cancelled = async {
            let mut redis = self.conn().await?;
            cancel.run(&self.keys, &mut redis).await
        }
        .await;
        match cancelled {
            Ok(Cancelled::Now | Cancelled::Already) => {
                self.commit_in_time(tx).await?;
                Ok(order)
            }
            Ok(Cancelled::BeingRejected) => {
                let _ = tx.rollback().await;
                Err(StorageError::Unavailable(format!(
                    "order {order_id} is being rejected (MySQL does not have its units); retry shortly"
                )))
            }
            // The record went between the two reads: Redis lost it with its data.
            Ok(Cancelled::NoRecord) => {
                let _ = tx.rollback().await;
                Err(self.missing_order(order_id).await)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// The MySQL-first cancel of an order MySQL holds, unless it is a POS sale.
    async fn cancel_persisted(
        &self,
        persisted: Order,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Order> {
        if persisted.path == OrderPath::Pos {
            return Err(StorageError::UnknownOrder(persisted.order_id));
        }
        self.try_cancel_db_lock(&persisted.order_id, deadline).await
    }

    /// Refuses at once (503) while Redis is not trusted to decide orders: its circuit is open,
    /// or it is recovering and its stale keys are not yet set from MySQL.
    pub(crate) fn redis_decides(&self) -> StorageResult<()> {
        if self.circuit.trusted() {
            return Ok(());
        }
        self.circuit
            .shed_orders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(self.redis_down_error())
    }

    fn redis_down_error(&self) -> StorageError {
        StorageError::RedisDown(match self.circuit.state() {
            crate::CircuitState::Recovering => {
                "the stock cache is back and being re-synced from MySQL; retry in a moment, or order through POST /api/orders"
            }
            _ => "the stock cache cannot be reached; retry shortly, or order through POST /api/orders (it does not need the cache)",
        }
        .to_owned())
    }

    /// Sellable stock of every (location, product), indexed `[location][product]`: from Redis
    /// (loading the locations where a key is missing), or, while Redis is not trusted or does
    /// not answer, MySQL's on-hand figures (which still count units of Redis-path orders not yet
    /// persisted), and the answer says which.
    pub async fn read_stock(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StorageResult<(Vec<Vec<i64>>, StockSource)> {
        self.read_stock_with(locations, products, None).await
    }

    /// [`Storage::read_stock`], taking the Redis figures from `mirror` when it can give them
    /// (the product pages, see [`crate::catalog::StockMirror`]).
    pub(crate) async fn read_stock_with(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
        mirror: Option<&crate::catalog::StockMirror>,
    ) -> StorageResult<(Vec<Vec<i64>>, StockSource)> {
        if products.is_empty() || locations.is_empty() {
            return Ok((vec![Vec::new(); locations.len()], StockSource::Redis));
        }
        if self.circuit.trusted() {
            match self.read_redis_stock(locations, products, mirror).await {
                Ok(v) => return Ok((v, StockSource::Redis)),
                Err(StorageError::Redis(e)) if crate::Circuit::unreachable(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.circuit
            .mysql_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((
            self.read_mysql_stock(locations, products).await?,
            StockSource::Mysql,
        ))
    }

    /// MySQL's on-hand stock of every (location, product), indexed `[location][product]`, within
    /// the MySQL deadline.
    async fn read_mysql_stock(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StorageResult<Vec<Vec<i64>>> {
        let sql = format!(
            "SELECT location_id, product_id, on_hand FROM stock \
             WHERE location_id IN ({}) AND product_id IN ({})",
            crate::recovery::sync::marks(locations.len()),
            crate::recovery::sync::marks(products.len())
        );
        let mut q = sqlx::query(&sql);
        for l in locations {
            q = q.bind(l.get());
        }
        for p in products {
            q = q.bind(p.get());
        }
        let rows = self
            .in_time(self.db_deadline(), async {
                Ok(q.fetch_all(&self.db).await?)
            })
            .await?;
        let mut out = vec![vec![0; products.len()]; locations.len()];
        for r in rows {
            use sqlx::Row;
            let l: u64 = r.try_get("location_id")?;
            let p: u64 = r.try_get("product_id")?;
            let (Some(li), Some(pi)) = (
                locations.iter().position(|x| x.get() == l),
                products.iter().position(|x| x.get() == p),
            ) else {
                continue;
            };
            out[li][pi] = r.try_get("on_hand")?;
        }
        Ok(out)
    }

    /// Redis stock of every (location, product), loading the locations where a key is missing.
    async fn read_redis_stock(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
        mut mirror: Option<&crate::catalog::StockMirror>,
    ) -> StorageResult<Vec<Vec<i64>>> {
        let mut pipe = None;
        for _ in 0..3 {
            let mirrored = match mirror {
                Some(m) => match m.read(self, locations, products).await {
                    Ok(values) => Some(values),
                    // Redis is slow: asking again through the pool would only double the wait,
                    // so the caller answers from MySQL now.
                    Err(StorageError::Redis(e)) if e.is_timeout() => {
                        return Err(StorageError::Redis(e))
                    }
                    Err(e) => {
                        // The pooled connections, behind the circuit, read this one.
                        tracing::debug!(error = %e, "stock mirror unavailable; reading redis");
                        mirror = None;
                        None
                    }
                },
                None => None,
            };
            let flat: Vec<Option<i64>> = match mirrored {
                Some(values) => values,
                None => {
                    let pipe = pipe.get_or_insert_with(|| self.stock_pipeline(locations, products));
                    let per_location: Vec<Vec<Option<i64>>> = {
                        let mut redis = self.conn().await?;
                        pipe.query_async(&mut redis).await?
                    };
                    per_location.into_iter().flatten().collect()
                }
            };
            let mut missing = Vec::new();
            for (li, loc) in locations.iter().enumerate() {
                let row = &flat[li * products.len()..(li + 1) * products.len()];
                if row.iter().any(Option::is_none) {
                    missing.push(*loc);
                }
            }
            if missing.is_empty() {
                return Ok(flat
                    .chunks(products.len().max(1))
                    .map(|c| c.iter().map(|v| v.unwrap_or(0)).collect())
                    .collect());
            }
            for loc in missing {
                self.load_keys(loc, products, self.db_deadline()).await?;
            }
        }
        Err(StorageError::Unavailable(
            "stock could not be loaded into redis".into(),
        ))
    }

    /// Reads the stock keys of `products` at `locations`, location by location: one MGET of
    /// every key, one command for Redis to run whatever the number of locations. A cluster
    /// refuses keys of several slots in one command, so there it is one MGET per location (its
    /// keys share a hash tag), sent to each shard at once.
    fn stock_pipeline(&self, locations: &[LocationId], products: &[ProductId]) -> redis::Pipeline {
        let keys = StockKeys::new(&self.keys, locations, products);
        let mut pipe = redis::pipe();
        if self.redis_settings.is_cluster() {
            for li in 0..locations.len() {
                let mget = pipe.cmd("MGET");
                for key in keys.at(li) {
                    mget.arg(key);
                }
            }
        } else {
            let mget = pipe.cmd("MGET");
            for li in 0..locations.len() {
                for key in keys.at(li) {
                    mget.arg(key);
                }
            }
        }
        pipe
    }

    /// Other active stores within `radius_km` of `store`, nearest first, each with its Redis
    /// stock of `products` (in that order).
    pub async fn nearby_stock(
        &self,
        store: LocationId,
        products: &[ProductId],
        radius_km: f64,
    ) -> StorageResult<(Vec<(sf_routing::Candidate, String, Vec<i64>)>, StockSource)> {
        let locations = self.locations();
        let Some(site) = locations.index.get(store) else {
            return Ok((Vec::new(), StockSource::Redis));
        };
        let nearby: Vec<_> = locations
            .index
            .within(LocationKind::Store, site.coordinates, radius_km)
            .into_iter()
            .filter(|c| c.location != store)
            .collect();
        let locs: Vec<LocationId> = nearby.iter().map(|c| c.location).collect();
        let (stock, source) = self.read_stock(&locs, products).await?;
        Ok((
            nearby
                .into_iter()
                .zip(stock)
                .map(|(c, s)| {
                    let name = locations
                        .index
                        .get(c.location)
                        .map(|x| x.name.clone())
                        .unwrap_or_default();
                    (c, name, s)
                })
                .collect(),
            source,
        ))
    }

    /// Nearby stores (within the same-day radius of `store`) that can fill every line, nearest
    /// first, by their Redis stock.
    pub async fn pickup_alternatives(
        &self,
        lines: &OrderLines,
        store: LocationId,
    ) -> StorageResult<Vec<crate::Alternative>> {
        let products: Vec<ProductId> = lines.products().collect();
        let (nearby, _) = self
            .nearby_stock(store, &products, self.config.same_day_radius_km)
            .await?;
        let candidates: Vec<_> = nearby.iter().map(|(c, _, _)| *c).collect();
        let good = eligible(&candidates, lines, |loc, p| {
            let (_, _, stock) = nearby.iter().find(|(c, _, _)| c.location == loc)?;
            Some(stock[products.iter().position(|x| *x == p)?])
        });
        Ok(good
            .into_iter()
            .map(|c| crate::Alternative {
                store_id: c.location.get(),
                name: nearby
                    .iter()
                    .find(|(x, _, _)| x.location == c.location)
                    .map(|(_, n, _)| n.clone())
                    .unwrap_or_default(),
                distance_km: c.distance_km.map(|d| (d * 1000.0).round() / 1000.0),
            })
            .collect())
    }
}

/// The stock keys of some products at some locations, built into one buffer: a page reads up to
/// thousands of keys per request, and formatting each on its own was a tenth of a read's time.
/// Keys of one location differ only in the product id at their end
/// ([`crate::infra::keys::Keys::stock`]), so the rest is formatted once per location.
struct StockKeys {
    bytes: Vec<u8>,
    /// Where each key ends in `bytes`, location by location, products in order.
    ends: Vec<usize>,
    per_location: usize,
}

impl StockKeys {
    fn new(
        keys: &crate::infra::keys::Keys,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> Self {
        let mut bytes = Vec::with_capacity(locations.len() * products.len() * 32);
        let mut ends = Vec::with_capacity(locations.len() * products.len());
        let one = ProductId::new_unchecked(1);
        for loc in locations {
            let sample = keys.stock(*loc, one);
            let prefix = sample
                .strip_suffix('1')
                .expect("a stock key ends with its product id");
            for p in products {
                let start = bytes.len();
                bytes.extend_from_slice(prefix.as_bytes());
                push_decimal(&mut bytes, p.get());
                ends.push(bytes.len());
                debug_assert_eq!(&bytes[start..], keys.stock(*loc, *p).as_bytes());
            }
        }
        Self {
            bytes,
            ends,
            per_location: products.len(),
        }
    }

    /// The keys at the `li`-th location.
    fn at(&self, li: usize) -> impl Iterator<Item = &[u8]> {
        let first = li * self.per_location;
        (first..first + self.per_location).map(move |i| self.key(i))
    }

    /// The `i`-th key, location by location, products in order.
    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A reservation that may have been sent and got no answer (a timeout, a cut connection) may
/// have been placed: its error names the order. A refusal before sending (the circuit open, the
/// connection refused) or an error reply stays as it is.
fn sent_without_answer(order_id: &str, e: StorageError) -> StorageError {
    match e {
        StorageError::Redis(re)
            if (re.is_timeout() || re.is_io_error() || re.is_connection_dropped())
                && !re.is_connection_refusal()
                && !crate::Circuit::is_open_error(&re) =>
        {
            StorageError::OutcomeUnknown {
                order_id: order_id.to_owned(),
                cause: re.to_string(),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod stock_key_tests {
    use super::*;

    #[test]
    fn stock_keys_are_the_keys_of_their_locations_and_products() {
        let keys = crate::infra::keys::Keys::new("t:");
        let locations = [LocationId::new_unchecked(1), LocationId::new_unchecked(42)];
        let products = [
            ProductId::new_unchecked(1),
            ProductId::new_unchecked(10),
            ProductId::new_unchecked(u64::MAX),
        ];
        let built = StockKeys::new(&keys, &locations, &products);
        for (li, loc) in locations.iter().enumerate() {
            let want: Vec<String> = products.iter().map(|p| keys.stock(*loc, *p)).collect();
            let got: Vec<String> = built
                .at(li)
                .map(|k| String::from_utf8(k.to_vec()).unwrap())
                .collect();
            assert_eq!(got, want);
        }
    }
}
