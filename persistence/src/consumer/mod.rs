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
//!
//! # Layout
//!
//! The decisions are pure and apart from the I/O: `classify.rs` tells what each event of a batch
//! is, given what MySQL holds of its order (by the one definition of an applied event,
//! `orders/applied.rs`), and `settle.rs` decides what the batch comes to. `apply.rs` reads what
//! they ask for, calls them, and writes what they answer, with its Redis reads in `records.rs` and
//! `pending_cancels.rs` and its row locks in `rows.rs`; `dead_letters.rs` splits a failing batch
//! and moves the culprit aside.

mod apply;
mod classify;
mod dead_letters;
mod pending_cancels;
mod records;
mod reply;
mod rows;
mod settle;

use apply::*;
use classify::*;
use dead_letters::*;
use pending_cancels::*;
use records::*;
use rows::*;
use settle::*;

pub use crate::infra::keys::GROUP;

use crate::error::StorageResult;
use crate::formats::{EventKind, StreamEvent};
use crate::Storage;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions};
use redis::AsyncCommands;
use reply::ReadReply;
use sf_routing::{LocationId, ProductId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// This consumer's name in the group; unique per running instance.
    pub name: String,
    /// Most events read per stream per round.
    pub batch: usize,
    /// On a Redis Cluster, the longest the consumer waits before reading again while no new event
    /// comes: after an empty round it waits 1 ms, doubling up to this (each location's stream is
    /// read on its own there, so an idle consumer reads every stream once per wait). On one
    /// server the read itself waits for events ([`READ_WAIT`]).
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

/// On one server, how long one read of every location's stream waits on the server for a new
/// event; it answers as soon as one comes. Bounds how late the consumer notices a new location,
/// a due reclaim or a shutdown.
pub const READ_WAIT: Duration = Duration::from_millis(500);

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
pub(super) struct Event {
    pub(super) loc: LocationId,
    pub(super) stream_id: String,
    pub(super) kind: EventKind,
    pub(super) order_id: String,
    pub(super) lines: Vec<(ProductId, u32)>,
    pub(super) json: Option<String>,
    /// Why the entry could not be read as an event, if it could not.
    pub(super) unreadable: Option<String>,
}

/// The event of stream entry `id` at `loc`, whose fields `field` gives by name.
pub(super) fn parse_event(
    loc: LocationId,
    id: &str,
    field: impl Fn(&str) -> Option<String>,
) -> Event {
    match StreamEvent::read(&field) {
        Ok(e) => Event {
            loc,
            stream_id: id.to_owned(),
            kind: e.kind,
            order_id: e.order_id,
            lines: e.lines,
            json: e.record,
            unreadable: None,
        },
        Err(why) => Event {
            loc,
            stream_id: id.to_owned(),
            kind: EventKind::Other('?'),
            order_id: field("o").unwrap_or_default(),
            lines: Vec::new(),
            json: field("j"),
            unreadable: Some(why),
        },
    }
}

/// Runs the consumer until `shutdown` is cancelled. A round under way is finished first: its batch
/// is committed and acknowledged, or fails as a whole and stays pending for the next consumer —
/// never dropped between its Redis and MySQL steps. Errors are logged and retried after a pause;
/// the consumer never gives up on its own.
pub async fn run(
    store: Arc<Storage>,
    config: ConsumerConfig,
    stats: Arc<ConsumerStats>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tracing::info!(consumer = %config.name, "order event consumer started");
    let mut state = State::default();
    while !shutdown.is_cancelled() {
        if !store.health().circuit().passes() {
            // Redis is unreachable: nothing to read; the circuit's probe tells when it is back.
            tokio::select! {
                _ = tokio::time::sleep(store.probe_every()) => continue,
                _ = shutdown.cancelled() => break,
            }
        }
        // Not raced against the shutdown: a round ends within its MySQL and Redis deadlines.
        let round = state.round(&store, &config, &stats).await;
        if let Err(e) = round {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            match &e {
                e if e.redis_error().is_some_and(crate::Circuit::unreachable) => {
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
                _ = shutdown.cancelled() => break,
            }
        }
    }
    tracing::info!(consumer = %config.name, "order event consumer stopped");
}

#[derive(Default)]
pub(super) struct State {
    /// Streams whose group is known to exist.
    pub(super) groups: HashSet<String>,
    /// Where the one pass over our own pending events (from before a restart) has got to, per
    /// stream; `None` once the pass is over and only new events are read.
    pub(super) own_pending: Option<HashMap<String, String>>,
    pub(super) own_pending_done: bool,
    pub(super) last_reclaim: Option<Instant>,
    /// The current wait between reads while no new event comes.
    pub(super) idle: Duration,
    /// The consumer's own connection for its reads, and the circuit's trip count when opened.
    pub(super) reader: Option<(crate::infra::circuit::GuardedConn, u64)>,
}

impl State {
    async fn round(
        &mut self,
        store: &Storage,
        config: &ConsumerConfig,
        stats: &ConsumerStats,
    ) -> StorageResult<()> {
        let locations = store.catalog().all_location_ids();
        if locations.is_empty() {
            tokio::time::sleep(config.idle).await;
            return Ok(());
        }
        let streams: Vec<String> = locations.iter().map(|l| store.keys().stream(*l)).collect();
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
            // On one server, one read of every stream that waits on the server until any of them
            // has a new event ([`READ_WAIT`]): an idle consumer costs one call per wait, however
            // many locations there are. On a cluster each location's stream lives on its own
            // slot, so each is read on its own, all at once; none blocks, and an idle consumer
            // reads them all once per `idle`.
            let blocking = !store.redis_settings.is_cluster();
            let replies: Vec<ReadReply> = {
                // A connection of its own: its large replies must not hold up the requests, and
                // its reads wait. Opened anew after the circuit opened since (it may be bound to
                // a dead server).
                let trips = store.health().circuit().trips();
                let redis = match &self.reader {
                    Some((c, at)) if *at == trips => c.clone(),
                    _ => {
                        let wait = if blocking { READ_WAIT } else { Duration::ZERO };
                        self.reader = Some((store.own_conn_waiting(wait).await?, trips));
                        self.reader.as_ref().expect("reader").0.clone()
                    }
                };
                if blocking {
                    // A pass over pending events reads what is there; only new ones are waited
                    // for.
                    let opts = if pending_pass {
                        opts
                    } else {
                        opts.block(READ_WAIT.as_millis() as usize)
                    };
                    let mut redis = redis;
                    vec![redis.xread_options(&streams, &ids, &opts).await?]
                } else {
                    futures::future::try_join_all(streams.iter().zip(&ids).map(|(stream, id)| {
                        let mut redis = redis.clone();
                        let opts = &opts;
                        async move { redis.xread_options(&[stream], &[id], opts).await }
                    }))
                    .await?
                }
            };
            let reply = replies.into_iter().flat_map(|r| r.0);
            let mut n = 0;
            // Redis answers the streams in the order asked for: each is looked for from where
            // the last one was found (in any other order each would still be found).
            let mut at = 0;
            for key in reply {
                let Some(li) = (at..streams.len())
                    .chain(0..at)
                    .find(|i| streams[*i] == key.key)
                else {
                    continue;
                };
                at = li;
                for entry in &key.entries {
                    n += 1;
                    if pending_pass {
                        cursors.insert(key.key.clone(), entry.id.clone());
                    }
                    events.push(parse_event(locations[li], &entry.id, |f| entry.get(f)));
                }
            }
            if pending_pass && n == 0 {
                self.own_pending_done = true;
            }
            if n == 0 && !pending_pass && !blocking {
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
    let locations = store.catalog().all_location_ids();
    let events = reclaim(store, config, &locations).await?;
    let n = events.len();
    if n > 0 {
        persist(store, config, stats, events).await?;
    }
    Ok(n)
}

/// Takes over events that another consumer has held for longer than `reclaim_idle`.
pub(super) async fn reclaim(
    store: &Storage,
    config: &ConsumerConfig,
    locations: &[LocationId],
) -> StorageResult<Vec<Event>> {
    let mut out = Vec::new();
    let mut redis = store.conn().await?;
    for loc in locations {
        let reply: StreamAutoClaimReply = redis
            .xautoclaim_options(
                store.keys().stream(*loc),
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
        out.extend(
            reply
                .claimed
                .iter()
                .map(|e| parse_event(*loc, &e.id, |f| e.get(f))),
        );
    }
    Ok(out)
}

/// Events accepted in Redis and not yet acknowledged by the consumer, over all locations, and the
/// age of the oldest in milliseconds.
pub async fn backlog(store: &Storage) -> StorageResult<(u64, u64)> {
    let mut redis = store.conn().await?;
    let mut pipe = redis::pipe();
    for loc in store.catalog().all_location_ids() {
        let key = store.keys().stream(loc);
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

    fn entry(fields: &[(&str, &str)]) -> reply::Entry {
        reply::Entry {
            id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn parse(loc: LocationId, e: &reply::Entry) -> Event {
        parse_event(loc, &e.id, |f| e.get(f))
    }

    /// A poison entry that lacks a field is read as unreadable, so that `persist` dead-letters it
    /// before any batch is tried (`a_poison_event_is_dead_lettered_and_the_rest_flows`).
    #[test]
    fn an_entry_that_lacks_a_field_is_unreadable() {
        let loc = LocationId::new_unchecked(4);
        let e = parse(loc, &entry(&[("t", "R"), ("o", "4-bad")]));
        assert_eq!(e.kind, EventKind::Other('?'));
        assert_eq!(e.order_id, "4-bad");
        assert!(e.unreadable.is_some());
        let e = parse(loc, &entry(&[("t", "C"), ("o", "4-a"), ("l", "9:2")]));
        assert_eq!((e.kind, e.unreadable), (EventKind::Cancel, None));
        assert_eq!(e.lines, [(ProductId::new_unchecked(9), 2)]);
        // An unknown kind is readable: `classify` acknowledges it without effect.
        let e = parse(loc, &entry(&[("t", "Z"), ("o", "4-a"), ("l", "9:1")]));
        assert_eq!((e.kind, e.unreadable), (EventKind::Other('Z'), None));
    }
}
