//! The consumer: persists Redis order events to MySQL exactly once, in batches.
//!
//! Each location has a stream of events (`R` reservation, `C` cancel) read through the consumer
//! group [`GROUP`], so several instances share the work and an event handed to a consumer that dies
//! stays pending until another one claims it (`XAUTOCLAIM` after `reclaim_idle`). A batch is
//! applied in one MySQL transaction; only after the commit are its events acknowledged and deleted
//! (`ack.lua`). An event delivered twice is recognised in MySQL (the order row exists, or is already
//! cancelled) and only acknowledged, so it is applied once.

use crate::db::with_retry;
use crate::error::{StoreError, StoreResult};
use crate::model::{Order, OrderStatus};
use crate::mysql_first::{insert_movements, insert_orders, Reason};
use crate::redis_stock::{decode_lines, GROUP};
use crate::sync::marks;
use crate::Store;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use sf_routing::{LocationId, ProductId};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// This consumer's name in the group; unique per running instance.
    pub name: String,
    /// Most events read per stream per round.
    pub batch: usize,
    /// How long one read waits for new events.
    pub block: Duration,
    /// Events pending this long with another consumer are taken over.
    pub reclaim_idle: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            name: format!("c-{}", uuid::Uuid::new_v4().simple()),
            batch: 500,
            block: Duration::from_millis(100),
            reclaim_idle: Duration::from_secs(15),
        }
    }
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches: AtomicU64,
    pub errors: AtomicU64,
}

/// One event read from a stream.
#[derive(Debug, Clone)]
struct Event {
    loc: LocationId,
    stream_id: String,
    kind: char,
    order_id: String,
    lines: Vec<(ProductId, u32)>,
    json: Option<String>,
}

fn parse_event(loc: LocationId, entry: &StreamId) -> Option<Event> {
    let t: String = entry.get("t")?;
    let o: String = entry.get("o")?;
    let l: String = entry.get("l")?;
    Some(Event {
        loc,
        stream_id: entry.id.clone(),
        kind: t.chars().next()?,
        order_id: o,
        lines: decode_lines(&l).ok()?,
        json: entry.get("j"),
    })
}

/// Runs the consumer until `shutdown` turns true. Errors are logged and retried after a pause;
/// the consumer never gives up on its own.
pub async fn run(
    store: Arc<Store>,
    config: ConsumerConfig,
    stats: Arc<ConsumerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(consumer = %config.name, "order event consumer started");
    let mut state = State::default();
    while !*shutdown.borrow() {
        let round = tokio::select! {
            r = state.round(&store, &config, &stats) => r,
            _ = shutdown.changed() => break,
        };
        if let Err(e) = round {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(consumer = %config.name, error = %e, "consumer round failed; retrying");
            state.groups.clear();
            state.reader = None;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => break,
            }
        }
    }
    tracing::info!(consumer = %config.name, "order event consumer stopped");
}

#[derive(Default)]
struct State {
    /// Streams whose group is known to exist.
    groups: HashSet<String>,
    /// Whether our own pending events (from before a restart) were read again.
    own_pending_done: bool,
    last_reclaim: Option<Instant>,
    reader: Option<redis::aio::MultiplexedConnection>,
}

impl State {
    async fn round(
        &mut self,
        store: &Store,
        config: &ConsumerConfig,
        stats: &ConsumerStats,
    ) -> StoreResult<()> {
        let locations = store.all_location_ids();
        if locations.is_empty() {
            tokio::time::sleep(config.block).await;
            return Ok(());
        }
        let streams: Vec<String> = locations.iter().map(|l| store.keys.stream(*l)).collect();
        self.ensure_groups(store, &streams).await?;

        let mut events = Vec::new();
        let due = self
            .last_reclaim
            .is_none_or(|t| t.elapsed() >= config.reclaim_idle / 3);
        if due {
            self.last_reclaim = Some(Instant::now());
            events.extend(reclaim(store, config, &locations).await?);
        }
        if events.is_empty() {
            let start = if self.own_pending_done { ">" } else { "0" };
            let opts = StreamReadOptions::default()
                .group(GROUP, &config.name)
                .count(config.batch);
            let opts = if self.own_pending_done {
                opts.block(config.block.as_millis() as usize)
            } else {
                opts
            };
            let ids = vec![start; streams.len()];
            let reply: Option<StreamReadReply> = {
                // A connection of its own: a blocking read must not hold up other commands.
                let redis = match &mut self.reader {
                    Some(c) => c,
                    None => self.reader.insert(
                        store
                            .redis_client
                            .get_multiplexed_async_connection()
                            .await?,
                    ),
                };
                redis.xread_options(&streams, &ids, &opts).await?
            };
            let mut n = 0;
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                let Some(li) = streams.iter().position(|s| *s == key.key) else {
                    continue;
                };
                for entry in &key.ids {
                    n += 1;
                    match parse_event(locations[li], entry) {
                        Some(e) => events.push(e),
                        None => {
                            tracing::error!(stream = %key.key, id = %entry.id, "unreadable event left pending")
                        }
                    }
                }
            }
            if !self.own_pending_done && n == 0 {
                self.own_pending_done = true;
            }
        }
        if !events.is_empty() {
            apply_and_ack(store, config, stats, events).await?;
        }
        Ok(())
    }

    async fn ensure_groups(&mut self, store: &Store, streams: &[String]) -> StoreResult<()> {
        let missing: Vec<&String> = streams
            .iter()
            .filter(|s| !self.groups.contains(*s))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut redis = store.conn().await?;
        for s in missing {
            let created: redis::RedisResult<()> = redis.xgroup_create_mkstream(s, GROUP, "0").await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
            self.groups.insert(s.clone());
        }
        Ok(())
    }
}

/// One reclaim pass: takes over events that a consumer has held for longer than `reclaim_idle`
/// (it died or stalled) and persists them. Answers how many events were taken over.
pub async fn reclaim_pass(
    store: &Store,
    config: &ConsumerConfig,
    stats: &ConsumerStats,
) -> StoreResult<usize> {
    let locations = store.all_location_ids();
    let events = reclaim(store, config, &locations).await?;
    let n = events.len();
    if n > 0 {
        apply_and_ack(store, config, stats, events).await?;
    }
    Ok(n)
}

/// Takes over events that another consumer has held for longer than `reclaim_idle`.
async fn reclaim(
    store: &Store,
    config: &ConsumerConfig,
    locations: &[LocationId],
) -> StoreResult<Vec<Event>> {
    let mut out = Vec::new();
    let mut redis = store.conn().await?;
    for loc in locations {
        let reply: StreamAutoClaimReply = redis
            .xautoclaim_options(
                store.keys.stream(*loc),
                GROUP,
                &config.name,
                config.reclaim_idle.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(config.batch),
            )
            .await?;
        if !reply.claimed.is_empty() {
            tracing::info!(location = %loc, events = reply.claimed.len(), "reclaimed events from a stalled consumer");
        }
        out.extend(reply.claimed.iter().filter_map(|e| parse_event(*loc, e)));
    }
    Ok(out)
}

async fn apply_and_ack(
    store: &Store,
    config: &ConsumerConfig,
    stats: &ConsumerStats,
    events: Vec<Event>,
) -> StoreResult<()> {
    let mut attempts = 0;
    let done = loop {
        attempts += 1;
        match with_retry("persist events", || apply(store, &events)).await {
            Ok(done) => break done,
            // Another consumer applied some of these at the same moment: look again.
            Err(e) if e.is_duplicate_key() && attempts < 5 => continue,
            Err(e) => return Err(e),
        }
    };
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .applied
        .fetch_add(done.applied as u64, Ordering::Relaxed);
    stats
        .duplicates
        .fetch_add(done.duplicates as u64, Ordering::Relaxed);

    // Acknowledge per stream, after the commit.
    let mut by_loc: BTreeMap<LocationId, Vec<&Event>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| done.ackable.contains(&(e.stream_id.clone(), e.loc)))
    {
        by_loc.entry(e.loc).or_default().push(e);
    }
    let mut redis = store.conn().await?;
    for (loc, evs) in by_loc {
        let mut inv = store.scripts.ack.prepare_invoke();
        inv.key(store.keys.stream(loc))
            .arg(GROUP)
            .arg(store.config.record_ttl_secs);
        for e in &evs {
            inv.key(store.keys.order(loc, &e.order_id))
                .arg(format!("{}:{}", e.stream_id, e.kind));
        }
        let acked: i64 = crate::redis_stock::invoke(&inv, &mut redis).await?;
        if acked < evs.len() as i64 {
            // Some events were no longer pending: another consumer took them over, or Redis lost
            // its data (a flush, a restart without persistence) while this batch was on its way
            // to MySQL. In the second case a reload may have counted the stock without this
            // batch; set the touched keys right again, at a consistent point.
            let mut products: Vec<ProductId> = evs
                .iter()
                .flat_map(|e| e.lines.iter().map(|(p, _)| *p))
                .collect();
            products.sort_unstable();
            products.dedup();
            tracing::warn!(location = %loc, acked, events = evs.len(), "events were no longer pending at acknowledgement; re-syncing their stock keys");
            crate::db::with_retry("re-sync after lost events", || async {
                let mut tx = store.db.begin().await?;
                store
                    .sync_keys(&mut tx, loc, &products, crate::sync::SyncMode::Repair)
                    .await?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
        }
    }
    tracing::debug!(consumer = %config.name, applied = done.applied, duplicates = done.duplicates, "batch persisted");
    Ok(())
}

struct Applied {
    applied: usize,
    duplicates: usize,
    /// `(streamId, location)` of events that MySQL now holds.
    ackable: HashSet<(String, LocationId)>,
}

/// Writes the events MySQL does not hold yet in one transaction.
async fn apply(store: &Store, events: &[Event]) -> StoreResult<Applied> {
    let mut tx = store.db.begin().await?;
    let ids: Vec<&str> = {
        let mut v: Vec<&str> = events.iter().map(|e| e.order_id.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut status: HashMap<String, String> = HashMap::new();
    for chunk in ids.chunks(1000) {
        let sql = format!(
            "SELECT id, CAST(status AS CHAR) AS status FROM orders WHERE id IN ({}) FOR UPDATE",
            marks(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *tx).await? {
            status.insert(r.try_get("id")?, r.try_get("status")?);
        }
    }

    let mut new_orders: Vec<Order> = Vec::new();
    let mut inserted: HashSet<&str> = HashSet::new();
    let mut cancels: Vec<&Event> = Vec::new();
    let mut cancelled: HashSet<&str> = HashSet::new();
    let mut ackable = HashSet::new();
    let mut duplicates = 0;
    let mut stock: BTreeMap<(u64, u64), i64> = BTreeMap::new();
    for e in events {
        let known = status.get(&e.order_id).map(String::as_str);
        match e.kind {
            'R' => {
                if known.is_some() || inserted.contains(e.order_id.as_str()) {
                    duplicates += 1;
                } else {
                    let json = e.json.as_deref().ok_or_else(|| {
                        StoreError::Internal(format!(
                            "reservation event of {} has no order",
                            e.order_id
                        ))
                    })?;
                    let mut order: Order = serde_json::from_str(json)?;
                    order.status = OrderStatus::Confirmed;
                    for i in &order.items {
                        *stock
                            .entry((order.fulfillment_location_id, i.product_id))
                            .or_default() -= i64::from(i.quantity);
                    }
                    inserted.insert(e.order_id.as_str());
                    new_orders.push(order);
                }
                ackable.insert((e.stream_id.clone(), e.loc));
            }
            'C' => {
                let persisted =
                    known == Some("CONFIRMED") || inserted.contains(e.order_id.as_str());
                if known == Some("CANCELLED") || cancelled.contains(e.order_id.as_str()) {
                    duplicates += 1;
                    ackable.insert((e.stream_id.clone(), e.loc));
                } else if persisted {
                    for (p, q) in &e.lines {
                        *stock.entry((e.loc.get(), p.get())).or_default() += i64::from(*q);
                    }
                    cancelled.insert(e.order_id.as_str());
                    cancels.push(e);
                    ackable.insert((e.stream_id.clone(), e.loc));
                } else {
                    // Its reservation is pending elsewhere (reclaimed out of order): later.
                    tracing::debug!(order = %e.order_id, "cancel event waits for its reservation");
                }
            }
            other => {
                tracing::error!(order = %e.order_id, kind = %other, "unknown event kind; acknowledged without effect");
                ackable.insert((e.stream_id.clone(), e.loc));
            }
        }
    }

    let refs: Vec<&Order> = new_orders.iter().collect();
    for chunk in refs.chunks(500) {
        insert_orders(&mut tx, chunk, Reason::Order).await?;
    }
    if !cancels.is_empty() {
        let sql = format!(
            "UPDATE orders SET status = 'CANCELLED', cancelled_at = NOW(3) WHERE status = 'CONFIRMED' AND id IN ({})",
            marks(cancels.len())
        );
        let mut q = sqlx::query(&sql);
        for e in &cancels {
            q = q.bind(&e.order_id);
        }
        q.execute(&mut *tx).await?;
        let moves: Vec<(u64, u64, i64, &str)> = cancels
            .iter()
            .flat_map(|e| {
                e.lines
                    .iter()
                    .map(move |(p, q)| (e.loc.get(), p.get(), i64::from(*q), e.order_id.as_str()))
            })
            .collect();
        insert_movements(&mut tx, &moves, Reason::Cancel).await?;
    }
    let changes: Vec<((u64, u64), i64)> = stock.into_iter().filter(|(_, d)| *d != 0).collect();
    for chunk in changes.chunks(500) {
        let rows = vec!["SELECT ? AS l, ? AS p, ? AS d"; chunk.len()].join(" UNION ALL ");
        let sql = format!(
            "UPDATE stock s JOIN ({rows}) x ON s.location_id = x.l AND s.product_id = x.p \
             SET s.on_hand = s.on_hand + x.d"
        );
        let mut q = sqlx::query(&sql);
        for ((l, p), d) in chunk {
            q = q.bind(l).bind(p).bind(d);
        }
        let n = q.execute(&mut *tx).await?.rows_affected();
        if n != chunk.len() as u64 {
            return Err(StoreError::Internal(format!(
                "consumer changed {n} stock rows, expected {}",
                chunk.len()
            )));
        }
    }
    tx.commit().await?;
    Ok(Applied {
        applied: new_orders.len() + cancels.len(),
        duplicates,
        ackable,
    })
}

/// Events accepted in Redis and not yet acknowledged by the consumer, over all locations, and the
/// age of the oldest in milliseconds.
pub async fn backlog(store: &Store) -> StoreResult<(u64, u64)> {
    let locations = store.locations();
    let mut redis = store.conn().await?;
    let mut pipe = redis::pipe();
    for l in &locations.all {
        let key = store.keys.stream(LocationId::new_unchecked(l.location_id));
        pipe.xlen(&key);
        pipe.cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1);
    }
    let replies: Vec<redis::Value> = pipe.query_async(&mut redis).await?;
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut total = 0;
    let mut oldest = 0;
    for pair in replies.chunks(2) {
        total += redis::from_redis_value::<u64>(&pair[0]).unwrap_or(0);
        if let Ok(first) = redis::from_redis_value::<redis::streams::StreamRangeReply>(&pair[1]) {
            if let Some(e) = first.ids.first() {
                let ms: u64 =
                    e.id.split('-')
                        .next()
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(now_ms);
                oldest = oldest.max(now_ms.saturating_sub(ms));
            }
        }
    }
    Ok((total, oldest))
}
