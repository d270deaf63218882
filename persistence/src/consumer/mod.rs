//! The consumer: persists Redis order events to MySQL exactly once, in batches.
//!
//! Each location has a stream of events (`R` reservation, `C` cancel) read through the consumer
//! group [`GROUP`], so several instances share the work and an event handed to a consumer that dies
//! stays pending until another one claims it (`XAUTOCLAIM` after `reclaim_idle`). A batch is
//! applied in one MySQL transaction; only after the commit are its events acknowledged and deleted
//! (`ack.lua`). An event delivered twice is recognised in MySQL (the order row exists, or is already
//! cancelled) and only acknowledged, so it is applied once.
//!
//! Every accepted order gets a defined end:
//!
//! - MySQL takes it as sold (`CONFIRMED`) when the location has the units under the batch's row
//!   locks; otherwise it is `REJECTED` with the reason, takes no stock, and Redis is set from
//!   MySQL again (it had sold units MySQL did not have). MySQL must cover the batch as a whole —
//!   not each prefix of the stream, since writes decided in MySQL first are not in the stream —
//!   and where it cannot, the batch's latest reservations give way (or wait, while a cancel that
//!   MySQL has not seen yet could have freed the units they need).
//! - A batch that fails for a reason of its own events (not because MySQL or Redis is down) is
//!   split until the failing event is alone; that event goes to the dead-letter stream with its
//!   error and its order is rejected, and everything else flows on.
//! - If Redis lost the batch's events while the batch was on its way (a flush, a restart without
//!   data, a failover to a replica that lacked them), the batch still commits — its orders were
//!   accepted — and its stock keys are set from MySQL inside the same transaction, under its row
//!   locks, before any new order can use the figures a reload computed without it.

pub use crate::infra::keys::GROUP;

use crate::infra::mysql::with_retry;
use crate::error::{StorageError, StorageResult};
use crate::formats::{EventKind, StreamEvent};
use crate::orders::ledger::{insert_movements, insert_orders, Reason, ROWS_PER_STATEMENT};
use crate::model::{Order, OrderStatus};
use crate::formats::decode_lines;
use crate::scripts::ack::{Ack, AckEvent};
use crate::scripts::dead::DeadLetter;
use crate::scripts::reject::{Reject, Rejection};
use crate::recovery::sync::{marks, SyncMode};
use crate::Storage;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use sf_routing::{LocationId, ProductId};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
    /// The longest the consumer waits before reading again while no new event comes: after an
    /// empty round it waits 1 ms, doubling up to this (each location's stream is read on its own,
    /// so an idle consumer reads every stream once per wait).
    pub idle: Duration,
    /// Events pending this long with another consumer are taken over.
    pub reclaim_idle: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            name: format!("c-{}", uuid::Uuid::new_v4().simple()),
            batch: 500,
            idle: Duration::from_millis(50),
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
    /// Orders MySQL could not take as sold.
    pub rejected: AtomicU64,
    /// Events moved to a dead-letter stream.
    pub dead_letters: AtomicU64,
}

/// One event read from a stream.
#[derive(Debug, Clone)]
struct Event {
    loc: LocationId,
    stream_id: String,
    kind: EventKind,
    order_id: String,
    lines: Vec<(ProductId, u32)>,
    json: Option<String>,
    /// Why the entry could not be read as an event, if it could not.
    unreadable: Option<String>,
}

fn parse_event(loc: LocationId, entry: &StreamId) -> Event {
    let field = |name: &str| entry.get::<String>(name);
    match StreamEvent::read(field) {
        Ok(e) => Event {
            loc,
            stream_id: entry.id.clone(),
            kind: e.kind,
            order_id: e.order_id,
            lines: e.lines,
            json: e.record,
            unreadable: None,
        },
        Err(why) => Event {
            loc,
            stream_id: entry.id.clone(),
            kind: EventKind::Other('?'),
            order_id: field("o").unwrap_or_default(),
            lines: Vec::new(),
            json: field("j"),
            unreadable: Some(why),
        },
    }
}

/// Runs the consumer until `shutdown` turns true. A round under way is finished first: its batch
/// is committed and acknowledged, or fails as a whole and stays pending for the next consumer —
/// never dropped between its Redis and MySQL steps. Errors are logged and retried after a pause;
/// the consumer never gives up on its own.
pub async fn run(
    store: Arc<Storage>,
    config: ConsumerConfig,
    stats: Arc<ConsumerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(consumer = %config.name, "order event consumer started");
    let mut state = State::default();
    while !*shutdown.borrow() {
        if !store.circuit.passes() {
            // Redis is unreachable: nothing to read; the circuit's probe tells when it is back.
            tokio::select! {
                _ = tokio::time::sleep(store.redis_settings.probe_every) => continue,
                _ = shutdown.changed() => break,
            }
        }
        // Not raced against the shutdown: a round ends within its MySQL and Redis deadlines.
        let round = state.round(&store, &config, &stats).await;
        if let Err(e) = round {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            match &e {
                StorageError::Redis(re) if crate::Circuit::unreachable(re) => {
                    // The call opened the circuit already (every call goes through it).
                    tracing::debug!(consumer = %config.name, error = %e, "consumer round failed: redis unreachable");
                }
                _ => {
                    tracing::error!(consumer = %config.name, error = %e, "consumer round failed; retrying")
                }
            }
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
    /// Where the one pass over our own pending events (from before a restart) has got to, per
    /// stream; `None` once the pass is over and only new events are read.
    own_pending: Option<HashMap<String, String>>,
    own_pending_done: bool,
    last_reclaim: Option<Instant>,
    /// The current wait between reads while no new event comes.
    idle: Duration,
    /// The consumer's own connection for its reads, and the circuit's trip count when opened.
    reader: Option<(crate::infra::circuit::GuardedConn, u64)>,
}

impl State {
    async fn round(
        &mut self,
        store: &Storage,
        config: &ConsumerConfig,
        stats: &ConsumerStats,
    ) -> StorageResult<()> {
        let locations = store.all_location_ids();
        if locations.is_empty() {
            tokio::time::sleep(config.idle).await;
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
            // First one pass over our own pending events, each stream from where the pass has
            // got to (so an event that fails again is not read again and again), then new ones.
            let pending_pass = !self.own_pending_done;
            let cursors = self.own_pending.get_or_insert_with(HashMap::new);
            let ids: Vec<String> = if pending_pass {
                streams
                    .iter()
                    .map(|s| cursors.get(s).cloned().unwrap_or_else(|| "0".into()))
                    .collect()
            } else {
                vec![">".to_owned(); streams.len()]
            };
            let opts = StreamReadOptions::default()
                .group(GROUP, &config.name)
                .count(config.batch);
            // One read per stream (each location's stream lives on its own slot of a cluster),
            // all at once over the consumer's multiplexed connection; none blocks.
            let replies: Vec<Option<StreamReadReply>> = {
                // A connection of its own: its large replies must not hold up the requests.
                // Opened anew after the circuit opened since (it may be bound to a dead server).
                let trips = store.circuit.trips();
                let redis = match &self.reader {
                    Some((c, at)) if *at == trips => c.clone(),
                    _ => {
                        self.reader = Some((store.own_conn().await?, trips));
                        self.reader.as_ref().expect("reader").0.clone()
                    }
                };
                futures::future::try_join_all(streams.iter().zip(&ids).map(|(stream, id)| {
                    let mut redis = redis.clone();
                    let opts = &opts;
                    async move { redis.xread_options(&[stream], &[id], opts).await }
                }))
                .await?
            };
            let reply = replies.into_iter().flatten().flat_map(|r| r.keys);
            let mut n = 0;
            for key in reply {
                let Some(li) = streams.iter().position(|s| *s == key.key) else {
                    continue;
                };
                for entry in &key.ids {
                    n += 1;
                    if pending_pass {
                        cursors.insert(key.key.clone(), entry.id.clone());
                    }
                    events.push(parse_event(locations[li], entry));
                }
            }
            if pending_pass && n == 0 {
                self.own_pending_done = true;
            }
            if n == 0 && !pending_pass {
                // Nothing new anywhere: wait a little before asking again, longer each time.
                self.idle = (self.idle * 2).clamp(Duration::from_millis(1), config.idle);
                tokio::time::sleep(self.idle).await;
            } else {
                self.idle = Duration::ZERO;
            }
        }
        if !events.is_empty() {
            persist(store, config, stats, events).await?;
        }
        Ok(())
    }

    async fn ensure_groups(&mut self, store: &Storage, streams: &[String]) -> StorageResult<()> {
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
    store: &Storage,
    config: &ConsumerConfig,
    stats: &ConsumerStats,
) -> StorageResult<usize> {
    let locations = store.all_location_ids();
    let events = reclaim(store, config, &locations).await?;
    let n = events.len();
    if n > 0 {
        persist(store, config, stats, events).await?;
    }
    Ok(n)
}

/// Takes over events that another consumer has held for longer than `reclaim_idle`.
async fn reclaim(
    store: &Storage,
    config: &ConsumerConfig,
    locations: &[LocationId],
) -> StorageResult<Vec<Event>> {
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
        out.extend(reply.claimed.iter().map(|e| parse_event(*loc, e)));
    }
    Ok(out)
}

/// Whether a failed batch failed because of one of its own events (so splitting it finds the
/// culprit), rather than because MySQL or Redis cannot serve right now (then the whole batch is
/// tried again later, and nothing is dead-lettered).
fn caused_by_an_event(e: &StorageError) -> bool {
    match e {
        StorageError::Internal(_) => true,
        StorageError::Db(sqlx::Error::Database(db)) => {
            let code = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number());
            // Data that does not fit the schema: bad values, missing references, failed CHECKs,
            // a statement too large.
            matches!(
                code,
                Some(
                    1048 | 1054
                        | 1062
                        | 1264
                        | 1265
                        | 1292
                        | 1366
                        | 1390
                        | 1406
                        | 1452
                        | 3819
                        | 4025
                        | 1153
                        | 1301
                )
            )
        }
        StorageError::Db(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => true,
        _ => false,
    }
}

/// Persists events; a batch that fails because of its own events is split until the culprit is
/// alone, and that one is dead-lettered.
async fn persist(
    store: &Storage,
    config: &ConsumerConfig,
    stats: &ConsumerStats,
    events: Vec<Event>,
) -> StorageResult<()> {
    let (unreadable, events): (Vec<Event>, Vec<Event>) =
        events.into_iter().partition(|e| e.unreadable.is_some());
    for e in unreadable {
        let why = e.unreadable.clone().unwrap_or_default();
        dead_letter(store, stats, &e, &why).await?;
    }
    let mut work = vec![events];
    while let Some(batch) = work.pop() {
        if batch.is_empty() {
            continue;
        }
        match apply_and_ack(store, config, stats, &batch).await {
            Ok(()) => {}
            Err(e) if caused_by_an_event(&e) => {
                if batch.len() == 1 {
                    dead_letter(store, stats, &batch[0], &e.to_string()).await?;
                } else {
                    tracing::warn!(events = batch.len(), error = %e, "a batch failed because of one of its events; splitting it");
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    work.push(second);
                    work.push(first);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves an event that cannot be persisted to its location's dead-letter stream, rejects its
/// order (in MySQL too when the order can be read), and sets the touched stock keys from MySQL:
/// the units it reserved are free again.
async fn dead_letter(
    store: &Storage,
    stats: &ConsumerStats,
    event: &Event,
    error: &str,
) -> StorageResult<()> {
    let reason = format!("the order could not be persisted: {error}");
    let dead = DeadLetter {
        loc: event.loc,
        order_id: &event.order_id,
        stream_id: &event.stream_id,
        error,
        reject_reason: (event.kind == EventKind::Reservation).then_some(reason.as_str()),
    };
    let moved = {
        let mut redis = store.conn().await?;
        dead.run(&store.keys, &mut redis).await?
    };
    if !moved {
        return Ok(());
    }
    stats.dead_letters.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        location = %event.loc, stream_id = %event.stream_id, order = %event.order_id, kind = %event.kind, error,
        "event {} of order {} cannot be persisted; moved to the dead-letter stream", event.stream_id, event.order_id
    );
    // Best effort: the order is also listed in MySQL for operators, as its Redis record — the
    // answer its client was given — now has it: REJECTED (dead.lua just marked it so), or
    // CANCELLED when its customer had cancelled it in Redis. Without a record, the event's own
    // order is listed only if it names this order at this location.
    if event.kind == EventKind::Reservation {
        let from_record = match store.redis_record(event.loc, &event.order_id).await {
            Ok(Some(record)) => record.order().ok(),
            _ => None,
        };
        let listed = from_record.or_else(|| {
            event
                .json
                .as_deref()
                .and_then(|j| crate::formats::OrderRecord::decode(j).ok())
                .filter(|o| {
                    o.order_id == event.order_id && o.fulfillment_location_id == event.loc.get()
                })
                .map(|o| Order {
                    status: OrderStatus::Rejected,
                    ..o
                })
        });
        if let Some(order) = listed {
            let order = match order.status {
                OrderStatus::Cancelled => Order {
                    reason: None,
                    ..order
                },
                _ => Order {
                    status: OrderStatus::Rejected,
                    reason: Some(truncate(&reason, 500)),
                    ..order
                },
            };
            let written: StorageResult<()> = async {
                let mut tx = store.db.begin().await?;
                insert_orders(&mut tx, &[&order], Reason::Order).await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            if let Err(e) = written {
                tracing::warn!(order = %event.order_id, error = %e, "dead-lettered order could not be listed in MySQL; its Redis record says {}", order.status.as_str());
            }
        }
    }
    let mut products: Vec<ProductId> = event.lines.iter().map(|(p, _)| *p).collect();
    products.sort_unstable();
    products.dedup();
    if !products.is_empty() {
        store.resync_or_queue(event.loc, &products).await;
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

async fn apply_and_ack(
    store: &Storage,
    config: &ConsumerConfig,
    stats: &ConsumerStats,
    events: &[Event],
) -> StorageResult<()> {
    let mut attempts = 0;
    let done = loop {
        attempts += 1;
        match with_retry("persist events", || apply(store, events)).await {
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
    stats
        .rejected
        .fetch_add(done.rejected as u64, Ordering::Relaxed);

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
        let events: Vec<AckEvent> = evs
            .iter()
            .map(|e| AckEvent {
                order_id: &e.order_id,
                stream_id: &e.stream_id,
                kind: e.kind.as_char(),
            })
            .collect();
        let ack = Ack {
            loc,
            record_ttl_secs: store.config.record_ttl_secs,
            events: &events,
        };
        let acked = ack.run(&store.keys, &mut redis).await?;
        if acked < evs.len() {
            // Another consumer took some over, or Redis lost them; either way MySQL has them and
            // the keys were set right under the batch's locks.
            tracing::debug!(location = %loc, acked, events = evs.len(), "some events were no longer pending at acknowledgement");
        }
    }
    tracing::debug!(consumer = %config.name, applied = done.applied, rejected = done.rejected, duplicates = done.duplicates, "batch persisted");
    Ok(())
}

struct Applied {
    applied: usize,
    rejected: usize,
    duplicates: usize,
    /// `(streamId, location)` of events that MySQL now holds.
    ackable: HashSet<(String, LocationId)>,
}

/// Locks the order rows of `ids` and answers their statuses.
async fn lock_orders(
    conn: &mut sqlx::MySqlConnection,
    ids: &[&str],
) -> StorageResult<HashMap<String, OrderStatus>> {
    let mut status = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT id, CAST(status AS CHAR) AS status FROM orders WHERE id IN ({}) FOR UPDATE",
            marks(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            status.insert(r.try_get("id")?, r.try_get("status")?);
        }
    }
    Ok(status)
}

/// Locks the stock rows of `keys` (sorted by location and product: the order every writer locks
/// in) and answers their on-hand figures; a missing row is absent from the answer.
async fn lock_stock(
    conn: &mut sqlx::MySqlConnection,
    keys: &BTreeSet<(u64, u64)>,
) -> StorageResult<HashMap<(u64, u64), i64>> {
    let mut by_loc: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (l, p) in keys {
        by_loc.entry(*l).or_default().push(*p);
    }
    let mut on_hand = HashMap::new();
    for (loc, products) in by_loc {
        for chunk in products.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT product_id, on_hand FROM stock WHERE location_id = ? AND product_id IN ({}) \
                 ORDER BY product_id FOR UPDATE",
                marks(chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(loc);
            for p in chunk {
                q = q.bind(*p);
            }
            for r in q.fetch_all(&mut *conn).await? {
                on_hand.insert(
                    (loc, r.try_get::<u64, _>("product_id")?),
                    r.try_get("on_hand")?,
                );
            }
        }
    }
    Ok(on_hand)
}

/// The cancels still in a location's stream and not in this batch, read once per batch and
/// location (a shortage among many orders asks about many products: one stream read serves them
/// all, so a batch never holds its row locks through one stream scan per order), and, per
/// product, whether one of them restores units to MySQL.
/// The order and products of each cancel still in a stream; `None` when the stream was too long
/// to read (then every product counts as having one).
type StreamCancels = Option<Vec<(String, Vec<u64>)>>;

#[derive(Default)]
struct PendingCancels {
    /// Per location.
    at: HashMap<LocationId, StreamCancels>,
    /// Per (location, product): the answer, once asked.
    answers: HashMap<(LocationId, u64), bool>,
}

impl PendingCancels {
    /// Most stream entries read per location.
    const LOOK: usize = 10_000;

    /// Whether a cancel that gives back units of `product` at `loc` is still in the stream, not
    /// in this batch (`handled`), for an order MySQL holds as sold. Then a shortage may only be
    /// the order of work: Redis counted that cancel's units before later orders (and MySQL-first
    /// sales, which MySQL already holds) took them, and MySQL has not seen it yet. A stream too
    /// long to read counts as having one.
    async fn restore(
        &mut self,
        store: &Storage,
        conn: &mut sqlx::MySqlConnection,
        loc: LocationId,
        product: u64,
        handled: &HashSet<(String, LocationId)>,
    ) -> StorageResult<bool> {
        if let Some(known) = self.answers.get(&(loc, product)) {
            return Ok(*known);
        }
        let cancels = match self.at.entry(loc) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Self::read(store, loc, handled).await?)
            }
        };
        let answer = match cancels {
            None => true,
            Some(cancels) => {
                // Only the cancel of an order MySQL holds as sold gives MySQL units back; one
                // whose order is not persisted yet nets to nothing (and waits for it), so waiting
                // on it could go in circles.
                let ids: Vec<&str> = cancels
                    .iter()
                    .filter(|(_, products)| products.contains(&product))
                    .map(|(o, _)| o.as_str())
                    .collect();
                let mut restores = false;
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let sql = format!(
                        "SELECT COUNT(*) FROM orders WHERE status = 'CONFIRMED' AND id IN ({})",
                        marks(chunk.len())
                    );
                    let mut q = sqlx::query_scalar::<_, i64>(&sql);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    if q.fetch_one(&mut *conn).await? > 0 {
                        restores = true;
                        break;
                    }
                }
                restores
            }
        };
        self.answers.insert((loc, product), answer);
        Ok(answer)
    }

    async fn read(
        store: &Storage,
        loc: LocationId,
        handled: &HashSet<(String, LocationId)>,
    ) -> StorageResult<StreamCancels> {
        let entries: redis::streams::StreamRangeReply = {
            let mut redis = store.conn().await?;
            redis
                .xrange_count(store.keys.stream(loc), "-", "+", Self::LOOK)
                .await?
        };
        if entries.ids.len() >= Self::LOOK {
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
}

/// One entry of `XPENDING`'s extended form: id, consumer, idle ms, deliveries.
type PendingEntry = (String, String, u64, u64);

/// A stream id as its two numbers, for ordering (`"<ms>-<seq>"`).
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The locations some of whose `events` Redis no longer holds (it lost them): each event must
/// still be pending in its stream's group. One `XPENDING` per location, over the range the events
/// span; a range longer than the reply can hold counts as lost (a re-sync too many, never one too
/// few).
async fn vanished(store: &Storage, events: &[&Event]) -> StorageResult<BTreeSet<LocationId>> {
    let mut by_loc: BTreeMap<LocationId, Vec<&str>> = BTreeMap::new();
    for e in events {
        by_loc.entry(e.loc).or_default().push(e.stream_id.as_str());
    }
    if by_loc.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut pipe = redis::pipe();
    let mut limits = Vec::new();
    for (loc, ids) in &by_loc {
        let first = ids.iter().min_by_key(|i| id_key(i)).copied().unwrap_or("-");
        let last = ids.iter().max_by_key(|i| id_key(i)).copied().unwrap_or("+");
        let limit = (ids.len() * 4).max(1000);
        limits.push(limit);
        pipe.cmd("XPENDING")
            .arg(store.keys.stream(*loc))
            .arg(GROUP)
            .arg(first)
            .arg(last)
            .arg(limit);
    }
    let replies: Vec<redis::RedisResult<Vec<PendingEntry>>> = {
        let mut redis = store.conn().await?;
        match pipe.query_async::<Vec<redis::Value>>(&mut redis).await {
            Ok(values) => values
                .into_iter()
                .map(|v| redis::from_redis_value(&v))
                .collect(),
            // NOGROUP: the stream and its group are gone with the data.
            Err(e) if e.code() == Some("NOGROUP") => {
                return Ok(by_loc.into_keys().collect());
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut lost = BTreeSet::new();
    for (((loc, ids), reply), limit) in by_loc.iter().zip(replies).zip(limits) {
        let pending: HashSet<String> = match reply {
            Ok(entries) if entries.len() < limit => entries.into_iter().map(|e| e.0).collect(),
            _ => {
                lost.insert(*loc);
                continue;
            }
        };
        if ids.iter().any(|id| !pending.contains(*id)) {
            lost.insert(*loc);
        }
    }
    Ok(lost)
}

/// What the events of a batch are, given the status MySQL holds for their orders: new
/// reservations (as orders to insert), cancels of persisted orders, cancels that must wait for
/// their reservation, duplicates — and which events may be acknowledged once the batch commits.
/// Pure: it reads nothing but its arguments.
struct Classified<'a> {
    new_orders: Vec<(Order, LocationId)>,
    /// The `Idempotency-Key` of new orders placed with one, by order id.
    keys: HashMap<String, crate::orders::idempotency::IdempotencyRequest>,
    cancels: Vec<&'a Event>,
    /// The events that change MySQL, in stream order.
    fresh: Vec<&'a Event>,
    waiting: Vec<&'a Event>,
    ackable: HashSet<(String, LocationId)>,
    duplicates: usize,
}

fn classify<'a>(
    events: &'a [Event],
    status: &HashMap<String, OrderStatus>,
) -> StorageResult<Classified<'a>> {
    let mut new_orders: Vec<(Order, LocationId)> = Vec::new();
    let mut keys = HashMap::new();
    let mut inserted: HashSet<&str> = HashSet::new();
    let mut cancels: Vec<&Event> = Vec::new();
    let mut cancelled: HashSet<&str> = HashSet::new();
    let mut fresh: Vec<&Event> = Vec::new();
    let mut waiting: Vec<&Event> = Vec::new();
    let mut ackable = HashSet::new();
    let mut duplicates = 0;
    for e in events {
        let known = status.get(&e.order_id).copied();
        match e.kind {
            EventKind::Reservation => {
                if known.is_some() || inserted.contains(e.order_id.as_str()) {
                    duplicates += 1;
                } else {
                    let json = e.json.as_deref().ok_or_else(|| {
                        StorageError::Internal(format!(
                            "reservation event of {} has no order",
                            e.order_id
                        ))
                    })?;
                    let (mut order, key) = crate::formats::OrderRecord::decode_keyed(json)?;
                    if order.order_id != e.order_id || order.fulfillment_location_id != e.loc.get()
                    {
                        return Err(StorageError::Internal(format!(
                            "reservation event of {} carries order {} at location {}",
                            e.order_id, order.order_id, order.fulfillment_location_id
                        )));
                    }
                    order.status = OrderStatus::Confirmed;
                    if let Some(key) = key {
                        keys.insert(e.order_id.clone(), key);
                    }
                    inserted.insert(e.order_id.as_str());
                    new_orders.push((order, e.loc));
                    fresh.push(e);
                }
                ackable.insert((e.stream_id.clone(), e.loc));
            }
            EventKind::Cancel => {
                let persisted =
                    known == Some(OrderStatus::Confirmed) || inserted.contains(e.order_id.as_str());
                if matches!(known, Some(OrderStatus::Cancelled | OrderStatus::Rejected))
                    || cancelled.contains(e.order_id.as_str())
                {
                    duplicates += 1;
                    ackable.insert((e.stream_id.clone(), e.loc));
                } else if persisted {
                    cancelled.insert(e.order_id.as_str());
                    cancels.push(e);
                    fresh.push(e);
                    ackable.insert((e.stream_id.clone(), e.loc));
                } else {
                    // Its reservation is pending elsewhere (reclaimed out of order): later —
                    // unless it will never come (see below).
                    waiting.push(e);
                }
            }
            EventKind::Other(other) => {
                tracing::error!(order = %e.order_id, kind = %other, "unknown event kind; acknowledged without effect");
                ackable.insert((e.stream_id.clone(), e.loc));
            }
        }
    }

    Ok(Classified {
        new_orders,
        keys,
        cancels,
        fresh,
        waiting,
        ackable,
        duplicates,
    })
}

/// Writes the events MySQL does not hold yet in one transaction.
async fn apply(store: &Storage, events: &[Event]) -> StorageResult<Applied> {
    let mut tx = store.db.begin().await?;
    let ids: Vec<&str> = {
        let mut v: Vec<&str> = events.iter().map(|e| e.order_id.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let status = lock_orders(&mut tx, &ids).await?;

    let Classified {
        mut new_orders,
        keys,
        cancels,
        fresh,
        waiting,
        mut ackable,
        duplicates,
    } = classify(events, &status)?;

    // A cancel whose reservation was dead-lettered, or whose record Redis lost (with the
    // reservation), waits for nothing: it is acknowledged without effect.
    if !waiting.is_empty() {
        let mut pipe = redis::pipe();
        for e in &waiting {
            pipe.cmd("HMGET")
                .arg(store.keys.order(e.loc, &e.order_id))
                .arg("st")
                .arg("d");
        }
        let records: Vec<(Option<String>, Option<String>)> = {
            let mut redis = store.conn().await?;
            pipe.query_async(&mut redis).await?
        };
        for (e, (st, dead)) in waiting.iter().zip(records) {
            if st.is_none() || dead.is_some() {
                tracing::warn!(order = %e.order_id, "cancel event of an order whose reservation will never be persisted; acknowledged without effect");
                ackable.insert((e.stream_id.clone(), e.loc));
            } else {
                tracing::debug!(order = %e.order_id, "cancel event waits for its reservation");
            }
        }
    }

    // Lock every stock row the batch touches, then decide in stream order what MySQL can take.
    let mut touched: BTreeSet<(u64, u64)> = BTreeSet::new();
    for (o, _) in &new_orders {
        touched.extend(
            o.items
                .iter()
                .map(|i| (o.fulfillment_location_id, i.product_id)),
        );
    }
    for e in &cancels {
        touched.extend(e.lines.iter().map(|(p, _)| (e.loc.get(), p.get())));
    }
    // One order per Idempotency-Key: an order whose key MySQL holds for another order (Redis lost
    // the key's claim while that one was on its way here) is persisted as rejected. The key rows
    // are locked before the stock rows, as on every path.
    let keyed: Vec<(&crate::orders::idempotency::IdempotencyRequest, &Order)> = new_orders
        .iter()
        .filter_map(|(o, _)| keys.get(&o.order_id).map(|k| (k, o)))
        .collect();
    let held_by_another =
        crate::orders::idempotency::keep_redis_keys(&mut tx, &keyed, store.config.idempotency_ttl_secs)
            .await?;
    let start = lock_stock(&mut tx, &touched).await?;
    // What MySQL holds must cover the batch as a whole. Not each prefix of the stream: the writes
    // decided in MySQL first (POS sales, DB-lock orders) are not in the stream, and MySQL already
    // holds those that came after some of the batch's events.
    let mut on_hand = start.clone();
    let index: HashMap<&str, usize> = new_orders
        .iter()
        .enumerate()
        .map(|(i, (o, _))| (o.order_id.as_str(), i))
        .collect();
    let mut short: BTreeMap<usize, String> = BTreeMap::new();
    for (i, (order, _)) in new_orders.iter().enumerate() {
        if let Some(holder) = held_by_another.get(&order.order_id) {
            short.insert(
                i,
                format!("the same Idempotency-Key stands for order {holder}: Redis lost the key while that order was on its way to MySQL, and this retry was accepted as a second order; it was not persisted as sold"),
            );
            continue;
        }
        let loc = order.fulfillment_location_id;
        if let Some(it) = order
            .items
            .iter()
            .find(|it| !start.contains_key(&(loc, it.product_id)))
        {
            short.insert(
                i,
                format!(
                    "location {loc} carries no stock of product {}",
                    it.product_id
                ),
            );
            continue;
        }
        for it in &order.items {
            *on_hand.get_mut(&(loc, it.product_id)).expect("locked row") -= i64::from(it.quantity);
        }
    }
    for e in &cancels {
        // A cancel of an order that takes no stock here gives nothing back.
        if index
            .get(e.order_id.as_str())
            .is_some_and(|i| short.contains_key(i))
        {
            continue;
        }
        for (p, q) in &e.lines {
            if let Some(v) = on_hand.get_mut(&(e.loc.get(), p.get())) {
                *v += i64::from(*q);
            }
        }
    }
    // Where MySQL does not have enough, the latest reservations give way, until it does. An
    // order cancelled in the same batch takes nothing net, so it is kept.
    let cancelled_here: HashSet<&str> = cancels.iter().map(|e| e.order_id.as_str()).collect();
    let mut deferred: HashSet<usize> = HashSet::new();
    let mut pending_cancels = PendingCancels::default();
    // First the orders their customers cancelled after this batch was read: they give way as
    // CANCELLED (their cancel, still in the stream, gives MySQL nothing back then), which is
    // their end anyway.
    if on_hand.values().any(|v| *v < 0) {
        let all: Vec<usize> = (0..new_orders.len()).collect();
        let states = record_states(store, &new_orders, &all).await?;
        for i in (0..new_orders.len()).rev() {
            if on_hand.values().all(|v| *v >= 0) {
                break;
            }
            let order = &new_orders[i].0;
            let loc = order.fulfillment_location_id;
            if states[i].as_deref() != Some("C")
                || short.contains_key(&i)
                || cancelled_here.contains(order.order_id.as_str())
                || !order
                    .items
                    .iter()
                    .any(|it| on_hand[&(loc, it.product_id)] < 0)
            {
                continue;
            }
            short.insert(i, "cancelled before it was persisted".to_owned());
            for it in &order.items {
                *on_hand.get_mut(&(loc, it.product_id)).expect("locked row") +=
                    i64::from(it.quantity);
            }
        }
    }
    for i in (0..new_orders.len()).rev() {
        if on_hand.values().all(|v| *v >= 0) {
            break;
        }
        let order = &new_orders[i].0;
        let loc = order.fulfillment_location_id;
        if short.contains_key(&i) || cancelled_here.contains(order.order_id.as_str()) {
            continue;
        }
        let Some(it) = order
            .items
            .iter()
            .find(|it| on_hand[&(loc, it.product_id)] < 0)
        else {
            continue;
        };
        let missing = -on_hand[&(loc, it.product_id)];
        let event = fresh
            .iter()
            .find(|e| e.kind == EventKind::Reservation && e.order_id == order.order_id)
            .copied();
        // A cancel MySQL has not seen yet may have freed the units others took meanwhile: then
        // this order waits for a later batch instead.
        let wait = event.is_some()
            && pending_cancels
                .restore(store, &mut tx, new_orders[i].1, it.product_id, &ackable)
                .await?;
        if wait {
            deferred.insert(i);
            if let Some(e) = event {
                ackable.remove(&(e.stream_id.clone(), e.loc));
            }
        } else {
            short.insert(
                i,
                format!(
                    "MySQL did not have the units: product {} at location {loc} was {missing} short when the order was persisted (Redis had sold units that MySQL did not have)",
                    it.product_id
                ),
            );
        }
        for it in &order.items {
            *on_hand.get_mut(&(loc, it.product_id)).expect("locked row") += i64::from(it.quantity);
        }
    }
    let restored: Vec<&Event> = cancels
        .iter()
        .filter(|e| {
            index
                .get(e.order_id.as_str())
                .is_none_or(|i| !short.contains_key(i) && !deferred.contains(i))
        })
        .copied()
        .collect();
    if !deferred.is_empty() {
        tracing::debug!(
            orders = deferred.len(),
            "reservations wait for earlier events of their stream"
        );
        let mut i = 0;
        new_orders.retain(|_| {
            i += 1;
            !deferred.contains(&(i - 1))
        });
    }

    // `short` indexes the vector before deferred orders left it.
    let short: BTreeMap<usize, String> = short
        .into_iter()
        .map(|(i, r)| (i - deferred.iter().filter(|d| **d < i).count(), r))
        .collect();
    // Rejections. An order its customer cancelled in Redis alone before this moment (a cancel
    // whose own MySQL commit failed after its script ran) ends CANCELLED instead: nothing was
    // sold, nothing comes back. The records are only read here; they are marked rejected after
    // the commit (a mark before it would show REJECTED for a batch that may still roll back and
    // confirm the order later). A cancel meanwhile finds the order's row locked by this batch,
    // and after the commit cancels it MySQL-first, giving nothing back.
    let mut resync: BTreeSet<LocationId> = BTreeSet::new();
    let mut to_mark: BTreeMap<LocationId, Vec<usize>> = BTreeMap::new();
    if !short.is_empty() {
        let idx: Vec<usize> = short.keys().copied().collect();
        let states = record_states(store, &new_orders, &idx).await?;
        for (i, st) in idx.iter().zip(states) {
            let reason = short[i].clone();
            let (order, loc) = &mut new_orders[*i];
            if st.as_deref() == Some("C") {
                order.status = OrderStatus::Cancelled;
            } else {
                order.status = OrderStatus::Rejected;
                order.reason = Some(reason);
                to_mark.entry(*loc).or_default().push(*i);
            }
            resync.insert(*loc);
        }
    }
    let rejected = new_orders
        .iter()
        .filter(|(o, _)| o.status == OrderStatus::Rejected)
        .count();
    for (o, _) in &new_orders {
        if o.status == OrderStatus::Rejected {
            tracing::warn!(order = %o.order_id, reason = o.reason.as_deref().unwrap_or(""), "order {} rejected", o.order_id);
        }
    }

    // The writes, and (on Redis, at the same time) the check that Redis still holds the batch's
    // events: the row locks are held already, so the check is as good now as at the commit.
    let writes = async {
        let refs: Vec<&Order> = new_orders.iter().map(|(o, _)| o).collect();
        insert_orders(&mut tx, &refs, Reason::Order).await?;
        for chunk in restored.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE orders SET status = 'CANCELLED', cancelled_at = NOW(3) WHERE status = 'CONFIRMED' AND id IN ({})",
                marks(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q.bind(&e.order_id);
            }
            q.execute(&mut *tx).await?;
        }
        let moves: Vec<(u64, u64, i64, &str)> = restored
            .iter()
            .flat_map(|e| {
                e.lines
                    .iter()
                    .map(move |(p, q)| (e.loc.get(), p.get(), i64::from(*q), e.order_id.as_str()))
            })
            .collect();
        insert_movements(&mut tx, &moves, Reason::Cancel).await?;
        let changes: Vec<((u64, u64), i64)> = on_hand
            .iter()
            .map(|(k, v)| (*k, v - start[k]))
            .filter(|(_, d)| *d != 0)
            .collect();
        for chunk in changes.chunks(ROWS_PER_STATEMENT) {
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
                return Err(StorageError::Internal(format!(
                    "consumer changed {n} stock rows, expected {}",
                    chunk.len()
                )));
            }
        }
        Ok::<_, StorageError>(())
    };
    let (written, lost) = tokio::join!(writes, vanished(store, &fresh));
    written?;
    let lost = lost?;

    // Still under the row locks: if Redis lost any of these events while the batch was on its
    // way, a reload may already have counted these rows without the batch; set the keys from
    // MySQL (with the batch) before the commit lets anyone else use them.
    if !lost.is_empty() {
        tracing::warn!(locations = ?lost, "redis lost events of a batch on its way to MySQL; setting the touched stock keys from MySQL under the batch's locks");
    }
    resync.extend(lost);
    let products_at = |loc: LocationId| -> Vec<ProductId> {
        touched
            .iter()
            .filter(|(l, _)| *l == loc.get())
            .map(|(_, p)| ProductId::new_unchecked(*p))
            .collect()
    };
    let committed = async {
        for loc in &resync {
            store
                .sync_keys(&mut tx, *loc, &products_at(*loc), SyncMode::Repair)
                .await?;
        }
        Ok::<_, StorageError>(tx.commit().await?)
    }
    .await;
    if let Err(e) = committed {
        // The keys were set as if the batch committed; its outcome is unknown now (or it rolled
        // back): set them from what MySQL holds, now or by the background re-sync.
        for loc in &resync {
            store.resync_or_queue(*loc, &products_at(*loc)).await;
        }
        return Err(e);
    }
    // The rejections are in MySQL: now their records say so too (a reader already sees them in
    // MySQL, which has the last word). Best effort: a record that is not marked expires.
    for (loc, idx) in to_mark {
        let orders: Vec<Rejection> = idx
            .iter()
            .map(|i| Rejection {
                order_id: &new_orders[*i].0.order_id,
                reason: new_orders[*i].0.reason.as_deref().unwrap_or(""),
            })
            .collect();
        let marked = async {
            let mut redis = store.conn().await?;
            Reject {
                loc,
                orders: &orders,
            }
            .run(&store.keys, &mut redis)
            .await
        }
        .await;
        if let Err(e) = marked {
            tracing::warn!(location = %loc, error = %e, "could not mark rejected orders in redis; MySQL holds them as rejected");
        }
    }
    Ok(Applied {
        applied: new_orders.len() - rejected + restored.len(),
        rejected,
        duplicates,
        ackable,
    })
}

/// The state (`st`: `A`, `C`, `X`) of the Redis records of the orders at `idx`, in that order;
/// `None` where Redis holds no record.
async fn record_states(
    store: &Storage,
    orders: &[(Order, LocationId)],
    idx: &[usize],
) -> StorageResult<Vec<Option<String>>> {
    let mut pipe = redis::pipe();
    for i in idx {
        let (o, loc) = &orders[*i];
        pipe.cmd("HGET")
            .arg(store.keys.order(*loc, &o.order_id))
            .arg("st");
    }
    let mut redis = store.conn().await?;
    Ok(pipe.query_async(&mut redis).await?)
}

/// Events accepted in Redis and not yet acknowledged by the consumer, over all locations, and the
/// age of the oldest in milliseconds.
pub async fn backlog(store: &Storage) -> StorageResult<(u64, u64)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderItem, OrderPath};

    const LOC: LocationId = LocationId::new_unchecked(4);

    fn reservation(id: &str, stream_id: &str) -> Event {
        let order = Order {
            order_id: id.into(),
            status: OrderStatus::Accepted,
            path: OrderPath::Redis,
            delivery_type: sf_routing::DeliveryType::Normal,
            fulfillment_location_id: LOC.get(),
            distance_km: None,
            delivery_address: None,
            items: vec![OrderItem {
                product_id: 9,
                quantity: 2,
                unit_price: 100,
            }],
            total_amount: 200,
            accepted_at_ms: 0,
            reason: None,
        };
        Event {
            loc: LOC,
            stream_id: stream_id.into(),
            kind: EventKind::Reservation,
            order_id: id.into(),
            lines: vec![(ProductId::new_unchecked(9), 2)],
            json: Some(crate::formats::OrderRecord::encode(&order)),
            unreadable: None,
        }
    }

    fn cancel(id: &str, stream_id: &str) -> Event {
        Event {
            kind: EventKind::Cancel,
            json: None,
            ..reservation(id, stream_id)
        }
    }

    fn status(pairs: &[(&str, &str)]) -> HashMap<String, OrderStatus> {
        pairs
            .iter()
            .map(|(o, s)| (o.to_string(), OrderStatus::parse(s).unwrap()))
            .collect()
    }

    fn acked(c: &Classified) -> BTreeSet<String> {
        c.ackable.iter().map(|(id, _)| id.clone()).collect()
    }

    #[test]
    fn a_new_reservation_becomes_a_confirmed_order() {
        let events = [reservation("4-a", "1-0")];
        let c = classify(&events, &status(&[])).unwrap();
        assert_eq!(c.new_orders.len(), 1);
        assert_eq!(c.new_orders[0].0.status, OrderStatus::Confirmed);
        assert_eq!((c.fresh.len(), c.duplicates), (1, 0));
        assert_eq!(acked(&c), BTreeSet::from(["1-0".to_owned()]));
    }

    #[test]
    fn what_mysql_holds_or_the_batch_repeats_is_a_duplicate() {
        let events = [
            reservation("4-a", "1-0"),
            reservation("4-b", "1-1"),
            reservation("4-b", "1-2"),
            cancel("4-c", "1-3"),
        ];
        let c = classify(
            &events,
            &status(&[("4-a", "CONFIRMED"), ("4-c", "CANCELLED")]),
        )
        .unwrap();
        assert_eq!(c.new_orders.len(), 1);
        assert_eq!(c.duplicates, 3);
        assert_eq!(acked(&c).len(), 4);
    }

    #[test]
    fn a_cancel_applies_to_a_persisted_order_or_one_of_the_same_batch() {
        let events = [
            cancel("4-a", "1-0"),
            reservation("4-b", "1-1"),
            cancel("4-b", "1-2"),
            cancel("4-b", "1-3"),
        ];
        let c = classify(&events, &status(&[("4-a", "CONFIRMED")])).unwrap();
        assert_eq!(c.cancels.len(), 2);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.fresh.len(), 3);
        assert!(c.waiting.is_empty());
    }

    #[test]
    fn a_cancel_before_its_reservation_waits_and_is_not_acknowledged() {
        let events = [cancel("4-a", "1-0")];
        let c = classify(&events, &status(&[])).unwrap();
        assert_eq!(c.waiting.len(), 1);
        assert!(c.ackable.is_empty());
        // A rejected order took nothing: its cancel has nothing to give back.
        let c = classify(&events, &status(&[("4-a", "REJECTED")])).unwrap();
        assert_eq!((c.waiting.len(), c.duplicates), (0, 1));
    }

    #[test]
    fn an_unknown_kind_is_acknowledged_without_effect() {
        let events = [Event {
            kind: EventKind::Other('Z'),
            ..cancel("4-a", "1-0")
        }];
        let c = classify(&events, &status(&[])).unwrap();
        assert!(c.fresh.is_empty() && c.new_orders.is_empty());
        assert_eq!(acked(&c).len(), 1);
    }

    #[test]
    fn a_reservation_that_carries_another_order_or_none_is_an_error() {
        let mut wrong = reservation("4-b", "1-0");
        wrong.order_id = "4-a".into();
        assert!(classify(&[wrong], &status(&[])).is_err());
        let mut empty = reservation("4-a", "1-0");
        empty.json = None;
        assert!(classify(&[empty], &status(&[])).is_err());
    }
}
