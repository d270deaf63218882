//! The stock mirror: the product pages' copy of the Redis stock keys, kept exact by Redis
//! (`CLIENT TRACKING`).

use super::*;

use crate::error::{StorageError, StorageResult};
use crate::Storage;
use sf_routing::{LocationId, ProductId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The product pages' copy of the Redis stock keys they read, which Redis itself keeps exact
/// (server-assisted client-side caching: `CLIENT TRACKING` in broadcasting mode).
///
/// A product page shows a product's stock at every location: 50 keys, each lying anywhere in
/// Redis's memory, so reading them cost Redis more than everything else the page does (30-40 µs
/// per page on the bench data). The mirror holds the figures it read, on a connection of its own
/// on which Redis reports every change to a stock key of every location
/// (`BCAST PREFIX <prefix>{L`, every key of every location, so a location opened later is
/// covered too; Redis keeps nothing per key for it): an order, a cancel, a stock change, a
/// re-sync, a flush. The mirror forgets each stock key it hears of, and passes over the other
/// keys of a location (its stream, its order records). One prefix, not one per location: Redis
/// matches every key written against each prefix it tracks in turn, which with a prefix per
/// location cost each write about 40 µs of Redis's one thread at 1,310 locations.
///
/// Why a figure it holds is never older than the request: Redis queues these reports before it
/// writes any reply, so by the time a writer has its answer, the report of its change is on the
/// mirror's connection. Before answering, a request waits for a `PING` on that connection sent
/// after the request arrived (shared, like any read: [`ReadGroups`]); its answer comes after
/// every report queued before it, and the connection applies each report as it arrives, before
/// it hands out any later answer. Keys the mirror does not hold are read on the same connection
/// (one `MGET`) and kept, unless a report of them arrived since that `MGET` was sent.
///
/// Whenever the connection fails or is replaced, the mirror forgets everything, and requests read
/// through the pooled connections (behind the circuit) meanwhile. One server only (RESP3): on a
/// Redis Cluster the pages read Redis directly.
pub(crate) struct StockMirror {
    /// Shared with the connection's push handler, which applies the invalidations in the order
    /// Redis sent them, before any later reply on the connection is handed out.
    copy: Arc<Mutex<Mirrored>>,
    conn: Mutex<Option<Tracked>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// After a failed attempt, none before this.
    retry_at: Mutex<Option<std::time::Instant>>,
    /// The `PING`s that requests share, by connection.
    barriers: ReadGroups<u64, ()>,
}

/// The tracked connection and its number.
#[derive(Clone)]
struct Tracked {
    conn: redis::aio::MultiplexedConnection,
    generation: u64,
}

#[derive(Default)]
struct Mirrored {
    /// By product, then by location id: a product page reads one product at every location,
    /// which then lies together in memory.
    /// (Hashed with `FxHash`, a multiply per word: the standard hasher, built against hostile keys
    /// these are not, took a tenth of a product page's time.)
    values: HashMap<u64, Vec<(u64, Slot)>, rustc_hash::FxBuildHasher>,
    /// Slots in `values`; past [`SLOTS_MOST`] everything is forgotten.
    slots: usize,
    /// `MGET`s of keys not held, in flight ([`Mirrored::start_read`]): only while one is does
    /// an invalidation of a key not held need a slot (the figure on its way may be the old one).
    /// Otherwise a write to a key no page reads costs nothing here, and a warm-up's millions of
    /// writes fill nothing.
    reading: usize,
    /// The key names of the storage it mirrors (parses the stock keys Redis reports).
    keys: crate::infra::Keys,
    /// Counts invalidations (a key, or everything).
    seq: u64,
    /// When everything was last forgotten.
    flushed: u64,
    /// The connection whose messages count; `None` while there is none.
    live: Option<u64>,
    generations: u64,
}

/// The most (location, product) slots the mirror holds, about 40 bytes each: 80 MB at most. A
/// national chain's 13 million stock keys would take half a gigabyte; the pages the shop asks
/// for most fit many times over.
const SLOTS_MOST: usize = 2_000_000;

/// A key's figure, if the mirror holds one, and when it was last invalidated.
struct Slot {
    value: Option<i64>,
    invalidated: u64,
}

impl Mirrored {
    fn invalidate(&mut self, key: &[u8]) {
        // Only stock keys are held; another key of a location (a stream, an order record) holds
        // nothing here. Anything else is not understood, and everything is forgotten.
        let Some(id) = self.keys.parse_stock(key) else {
            if !self.keys.is_location_key(key) {
                self.forget_all();
            }
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        if self.reading == 0 && self.held_slot(id).is_none() {
            return;
        }
        let slot = self.slot(id);
        slot.value = None;
        slot.invalidated = seq;
        self.bound();
    }

    /// The slot of (location, product), if there is one.
    fn held_slot(&mut self, (loc, product): (u64, u64)) -> Option<&mut Slot> {
        let at = self.values.get_mut(&product)?;
        let i = at.binary_search_by_key(&loc, |(l, _)| *l).ok()?;
        Some(&mut at[i].1)
    }

    /// An `MGET` of keys not held is about to be sent: answers the count of invalidations it
    /// goes by ([`Mirrored::keep`]'s `sent_at`). [`Mirrored::end_read`] when its answer is kept,
    /// or lost.
    fn start_read(&mut self) -> u64 {
        self.reading += 1;
        self.seq
    }

    fn end_read(&mut self) {
        self.reading -= 1;
    }

    /// The slot of (location, product), made when there is none.
    fn slot(&mut self, (loc, product): (u64, u64)) -> &mut Slot {
        let at = self.values.entry(product).or_default();
        let i = match at.binary_search_by_key(&loc, |(l, _)| *l) {
            Ok(i) => i,
            Err(i) => {
                let empty = Slot {
                    value: None,
                    invalidated: 0,
                };
                at.insert(i, (loc, empty));
                self.slots += 1;
                i
            }
        };
        &mut at[i].1
    }

    /// Forgets everything once the mirror holds more than [`SLOTS_MOST`] slots: forgetting is
    /// always safe (a figure not held is read from Redis), so memory stays bounded whatever the
    /// catalogue's size, at the price of a round of reads.
    fn bound(&mut self) {
        if self.slots > SLOTS_MOST {
            tracing::debug!(slots = self.slots, "stock mirror full; forgetting it");
            self.forget_all();
        }
    }

    fn forget_all(&mut self) {
        self.seq += 1;
        self.flushed = self.seq;
        self.values.clear();
        self.slots = 0;
    }

    /// Keeps `value`, read by an `MGET` sent when the count of invalidations was `sent_at`,
    /// unless the key (or everything) was invalidated since: then `value` may be older than
    /// Redis's.
    fn keep(&mut self, id: (u64, u64), value: i64, sent_at: u64) {
        if self.flushed > sent_at {
            return;
        }
        let slot = self.slot(id);
        if slot.invalidated <= sent_at {
            slot.value = Some(value);
        }
        self.bound();
    }

    /// What Redis says on connection `generation`.
    fn apply(&mut self, generation: u64, push: redis::PushInfo) {
        if self.live != Some(generation) {
            return;
        }
        match push.kind {
            redis::PushKind::Invalidate => match push.data.first() {
                Some(redis::Value::Array(keys)) => {
                    for key in keys {
                        match key {
                            redis::Value::BulkString(k) => self.invalidate(k),
                            redis::Value::SimpleString(k) => self.invalidate(k.as_bytes()),
                            _ => self.forget_all(),
                        }
                    }
                }
                // A flush: every key.
                _ => self.forget_all(),
            },
            redis::PushKind::Disconnection => {
                self.forget_all();
                self.live = None;
            }
            _ => {}
        }
    }
}

impl Default for StockMirror {
    fn default() -> Self {
        Self {
            copy: Arc::default(),
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            retry_at: Mutex::new(None),
            barriers: ReadGroups::default(),
        }
    }
}

impl std::fmt::Debug for StockMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let copy = self.copy.lock().expect("stock mirror");
        f.debug_struct("StockMirror")
            .field("keys", &copy.values.len())
            .field("live", &copy.live)
            .finish()
    }
}

/// How many of `held` (in location id order) lie before location `l`: probes 1, 2, 4, …
/// places on, then a binary search of the last step.
fn gallop(held: &[(u64, Slot)], l: u64) -> usize {
    let mut end = 1;
    while end < held.len() && held[end - 1].0 < l {
        end *= 2;
    }
    let start = end / 2;
    let end = end.min(held.len());
    start + held[start..end].partition_point(|(at, _)| *at < l)
}

/// An `MGET` of the mirror in flight ([`Mirrored::start_read`]), counted out when dropped.
struct Reading<'a>(&'a Mutex<Mirrored>);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("stock mirror").end_read();
    }
}

/// How long the mirror waits before it tries to connect again after a failure.
const MIRROR_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl StockMirror {
    /// The figures of `keys` (`None`: not in Redis, not loaded), each as Redis had it after this
    /// call began.
    pub(crate) async fn read(
        &self,
        storage: &Storage,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StorageResult<Vec<Option<i64>>> {
        let tracked = self.tracked(storage).await?;
        let result = self.read_on(storage, &tracked, locations, products).await;
        if result.is_err() {
            self.retire(tracked.generation);
        }
        result
    }

    /// The figures location by location, products in order.
    async fn read_on(
        &self,
        storage: &Storage,
        tracked: &Tracked,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StorageResult<Vec<Option<i64>>> {
        self.barriers
            .read(tracked.generation, || async {
                let mut conn = tracked.conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                Ok(())
            })
            .await?;
        let mut out = vec![None; locations.len() * products.len()];
        let mut missing = Vec::new();
        let sent_at = {
            let mut copy = self.copy.lock().expect("stock mirror");
            if copy.live != Some(tracked.generation) {
                return Err(StorageError::unavailable(
                    "the stock mirror's connection was lost",
                ));
            }
            // Product by product: each one's figures lie together, by location id, and are
            // walked once in that order (the locations asked for, sorted by id, each found by a
            // galloping search from the last one found: a few probes near each other, where a
            // binary search of the whole product per location was a twentieth of a page).
            let mut by_id: Vec<(u64, usize)> = locations
                .iter()
                .enumerate()
                .map(|(li, l)| (l.get(), li))
                .collect();
            by_id.sort_unstable();
            for (pi, p) in products.iter().enumerate() {
                let held = copy.values.get(&p.get()).map_or(&[][..], Vec::as_slice);
                let mut next = 0;
                for &(l, li) in &by_id {
                    next += gallop(&held[next..], l);
                    let value = match held.get(next) {
                        Some((at, slot)) if *at == l => slot.value,
                        _ => None,
                    };
                    let i = li * products.len() + pi;
                    match value {
                        Some(v) => out[i] = Some(v),
                        None => missing.push((i, (locations[li], *p))),
                    }
                }
            }
            if missing.is_empty() {
                return Ok(out);
            }
            copy.start_read()
        };
        // Counted out whatever happens to the read (an error, or the request dropped).
        let reading = Reading(&self.copy);
        let mut mget = redis::cmd("MGET");
        for (_, (l, p)) in &missing {
            mget.arg(storage.keys.stock(*l, *p));
        }
        let values: Vec<Option<i64>> = mget.query_async(&mut tracked.conn.clone()).await?;
        {
            let mut copy = self.copy.lock().expect("stock mirror");
            for ((i, (l, p)), v) in missing.into_iter().zip(values) {
                out[i] = v;
                if let Some(v) = v {
                    copy.keep((l.get(), p.get()), v, sent_at);
                }
            }
        }
        drop(reading);
        Ok(out)
    }

    /// The tracked connection, opened when there is none.
    async fn tracked(&self, storage: &Storage) -> StorageResult<Tracked> {
        if let Some(t) = self.live_conn() {
            return Ok(t);
        }
        let _one = self.connecting.lock().await;
        if let Some(t) = self.live_conn() {
            return Ok(t);
        }
        if self
            .retry_at
            .lock()
            .expect("stock mirror")
            .is_some_and(|at| std::time::Instant::now() < at)
        {
            return Err(StorageError::unavailable(
                "the stock mirror is waiting to reconnect",
            ));
        }
        match self.connect(storage).await {
            Ok(t) => {
                *self.conn.lock().expect("stock mirror") = Some(t.clone());
                Ok(t)
            }
            Err(e) => {
                *self.retry_at.lock().expect("stock mirror") =
                    Some(std::time::Instant::now() + MIRROR_RETRY);
                tracing::info!(error = %e, "the stock mirror could not connect; product pages read redis directly");
                Err(e)
            }
        }
    }

    /// Whether the mirror's connection is up: its pages read no other connection.
    pub(crate) fn is_live(&self) -> bool {
        self.live_conn().is_some()
    }

    fn live_conn(&self) -> Option<Tracked> {
        let conn = self.conn.lock().expect("stock mirror").clone()?;
        let live = self.copy.lock().expect("stock mirror").live;
        (live == Some(conn.generation)).then_some(conn)
    }

    async fn connect(&self, storage: &Storage) -> StorageResult<Tracked> {
        let crate::infra::redis_link::RedisClient::Single(client) = &storage.redis_client else {
            return Err(StorageError::unavailable(
                "the stock mirror serves one redis server only",
            ));
        };
        let mut info = client.get_connection_info().clone();
        info.redis.protocol = redis::ProtocolVersion::RESP3;
        let generation = {
            let mut copy = self.copy.lock().expect("stock mirror");
            copy.forget_all();
            copy.keys = storage.keys.clone();
            copy.generations += 1;
            copy.live = Some(copy.generations);
            copy.generations
        };
        let copy = self.copy.clone();
        let settings = &storage.redis_settings;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(settings.connect_timeout)
            .set_response_timeout(settings.command_timeout)
            .set_push_sender(move |push: redis::PushInfo| {
                copy.lock().expect("stock mirror").apply(generation, push);
                Ok::<(), std::convert::Infallible>(())
            });
        let opened = async {
            let client = redis::Client::open(info)?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // Redis reports every change to a key of any location on this connection.
            let _: () = redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(storage.keys.locations_prefix())
                .query_async(&mut conn)
                .await?;
            Ok::<_, StorageError>(conn)
        }
        .await;
        match opened {
            Ok(conn) => Ok(Tracked { conn, generation }),
            Err(e) => {
                self.retire(generation);
                Err(e)
            }
        }
    }

    /// Drops connection `generation` after a failure on it: whatever Redis said since is unknown,
    /// so the mirror forgets everything.
    fn retire(&self, generation: u64) {
        let mut copy = self.copy.lock().expect("stock mirror");
        if copy.live == Some(generation) {
            copy.forget_all();
            copy.live = None;
        }
        drop(copy);
        let mut conn = self.conn.lock().expect("stock mirror");
        if conn.as_ref().is_some_and(|c| c.generation == generation) {
            *conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrored(generation: u64) -> Mirrored {
        Mirrored {
            keys: crate::infra::Keys::new("sf:"),
            live: Some(generation),
            ..Mirrored::default()
        }
    }

    fn invalidation(keys: &[&str]) -> redis::PushInfo {
        redis::PushInfo {
            kind: redis::PushKind::Invalidate,
            data: vec![redis::Value::Array(
                keys.iter()
                    .map(|k| redis::Value::BulkString(k.as_bytes().to_vec()))
                    .collect(),
            )],
        }
    }

    fn held(m: &Mirrored, id: (u64, u64)) -> Option<i64> {
        let at = m.values.get(&id.1)?;
        let i = at.binary_search_by_key(&id.0, |(l, _)| *l).ok()?;
        at[i].1.value
    }

    #[test]
    fn a_galloping_search_finds_what_a_binary_search_does() {
        let slot = || Slot {
            value: None,
            invalidated: 0,
        };
        for len in [0usize, 1, 2, 3, 7, 8, 9, 100, 1_310] {
            let held: Vec<(u64, Slot)> = (0..len as u64).map(|i| (i * 3 + 1, slot())).collect();
            for l in 0..=(len as u64 * 3 + 2) {
                assert_eq!(
                    gallop(&held, l),
                    held.partition_point(|(at, _)| *at < l),
                    "{l} in {len}"
                );
            }
        }
    }

    #[test]
    fn the_mirror_forgets_a_key_redis_says_changed() {
        let mut m = mirrored(1);
        m.keep((1, 2), 5, m.seq);
        m.keep((1, 3), 7, m.seq);
        m.apply(1, invalidation(&["sf:{L1}:s:2"]));
        assert_eq!((held(&m, (1, 2)), held(&m, (1, 3))), (None, Some(7)));
        // A figure read before that invalidation is not kept: it may be the old one.
        let sent_before = m.seq - 1;
        m.keep((1, 2), 5, sent_before);
        assert_eq!(held(&m, (1, 2)), None);
        // Read after it, it is.
        m.keep((1, 2), 4, m.seq);
        assert_eq!(held(&m, (1, 2)), Some(4));
        // Nor is a figure of a key invalidated while it was being read, before it was held.
        let sent_at = m.start_read();
        m.apply(1, invalidation(&["sf:{L9}:s:9"]));
        m.keep((9, 9), 1, sent_at);
        m.end_read();
        assert_eq!(held(&m, (9, 9)), None);
    }

    #[test]
    fn writes_to_keys_not_held_fill_nothing_while_no_read_is_in_flight() {
        let mut m = mirrored(1);
        m.keep((1, 2), 5, m.seq);
        let keys: Vec<String> = (1..=1_000).map(|p| format!("sf:{{L3}}:s:{p}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        m.apply(1, invalidation(&keys));
        assert_eq!((m.slots, held(&m, (1, 2))), (1, Some(5)));
        // A held key is still forgotten.
        m.apply(1, invalidation(&["sf:{L1}:s:2"]));
        assert_eq!((m.slots, held(&m, (1, 2))), (1, None));
        // With a read in flight, a key not held is noted, and its figure on the way not kept.
        let sent_at = m.start_read();
        m.apply(1, invalidation(&["sf:{L3}:s:7"]));
        m.keep((3, 7), 9, sent_at);
        m.keep((3, 8), 4, sent_at);
        m.end_read();
        assert_eq!((held(&m, (3, 7)), held(&m, (3, 8))), (None, Some(4)));
    }

    #[test]
    fn another_key_of_a_location_changes_nothing_held() {
        let mut m = mirrored(1);
        m.keep((1, 2), 5, m.seq);
        let sent_at = m.seq;
        m.apply(
            1,
            invalidation(&[
                "sf:{L1}:ev",
                "sf:{L1}:o:1-abc",
                "sf:{L7}:epoch",
                "sf:{L1}:s:x",
            ]),
        );
        assert_eq!(held(&m, (1, 2)), Some(5));
        // A figure read meanwhile is kept: nothing it holds was invalidated.
        m.keep((1, 3), 6, sent_at);
        assert_eq!(held(&m, (1, 3)), Some(6));
    }

    #[test]
    fn a_flush_a_lost_connection_or_a_key_not_understood_forgets_everything() {
        for push in [
            redis::PushInfo {
                kind: redis::PushKind::Invalidate,
                data: vec![redis::Value::Nil],
            },
            redis::PushInfo {
                kind: redis::PushKind::Disconnection,
                data: vec![],
            },
            invalidation(&["sf:lease:reconcile"]),
        ] {
            let mut m = mirrored(1);
            let sent_at = m.seq;
            m.keep((1, 2), 5, sent_at);
            let disconnection = push.kind == redis::PushKind::Disconnection;
            m.apply(1, push);
            assert_eq!(held(&m, (1, 2)), None);
            // Reads sent before are not kept either.
            m.keep((1, 2), 5, sent_at);
            assert_eq!(held(&m, (1, 2)), None);
            assert_eq!(m.live, if disconnection { None } else { Some(1) });
        }
        // A message of a connection replaced since changes nothing.
        let mut m = mirrored(2);
        m.keep((1, 2), 5, m.seq);
        m.apply(1, invalidation(&["sf:{L1}:s:2"]));
        assert_eq!(held(&m, (1, 2)), Some(5));
    }
}
