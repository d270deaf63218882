//! Reads shared by requests that arrive together, each still answered with figures read after
//! it arrived. Hand-written: its rule (never take a read that started before you) differs from
//! single-flight crates.

use crate::error::{StorageError, StorageResult};
use rustc_hash::FxHashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Requests for the same read that arrive together share it, and every one of them still gets
/// figures read after it arrived — like a group commit, for reads.
///
/// A request that finds no read of its key running starts one. A request that finds one running
/// does not take its result (that read may have started before a change the request must see):
/// it waits for it to end and then takes the next read, which starts after it arrived and
/// answers every request that waited meanwhile. So under load each key is read at most twice at
/// a time (one running, one about to start), whatever the number of requests; alone, a request
/// reads as it would without this.
pub(crate) struct ReadGroups<K, V> {
    /// Hashed with `FxHash`: the keys are the service's own, not a client's to choose freely.
    running: Mutex<FxHashMap<K, Running<V>>>,
    /// Numbers the reads in the order they start; never reused, so a request can tell a read
    /// that started after it arrived.
    started: AtomicU64,
}

struct Running<V> {
    seq: u64,
    outcome: watch::Receiver<Outcome<V>>,
}

/// What a request finds for its key.
enum Found<V> {
    /// A read is running: its number and its outcome to come.
    Running {
        seq: u64,
        outcome: watch::Receiver<Outcome<V>>,
    },
    /// None was: this request runs one, numbered `seq`, and sends its outcome.
    Nothing {
        seq: u64,
        tx: watch::Sender<Outcome<V>>,
    },
}

enum Outcome<V> {
    Pending,
    Read(Arc<V>),
    Failed(StorageError),
    /// The request that ran the read went away before it ended (a client that hung up): those
    /// that waited for it read again.
    Abandoned,
}

impl<V> Clone for Outcome<V> {
    fn clone(&self) -> Self {
        match self {
            Self::Pending => Self::Pending,
            Self::Read(v) => Self::Read(v.clone()),
            Self::Failed(e) => Self::Failed(e.clone()),
            Self::Abandoned => Self::Abandoned,
        }
    }
}

impl<K, V> Default for ReadGroups<K, V> {
    fn default() -> Self {
        Self {
            running: Mutex::new(FxHashMap::default()),
            started: AtomicU64::new(0),
        }
    }
}

impl<K, V> std::fmt::Debug for ReadGroups<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self.running.lock().map(|r| r.len()).unwrap_or(0);
        f.debug_struct("ReadGroups")
            .field("running", &running)
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V> ReadGroups<K, V> {
    /// What `read` gives for `key`, from a read that started after this call.
    pub(crate) async fn read<F, Fut>(&self, key: K, read: F) -> StorageResult<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StorageResult<V>>,
    {
        // The read that was running when this request arrived: its figures may be too old.
        let mut arrived_during: Option<u64> = None;
        loop {
            let (seq, mut outcome) = match self.join_or_start(&key) {
                Found::Running { seq, outcome } => (seq, outcome),
                // Boxed: the read's state (a page's reads of Redis or MySQL) is large, and the web
                // framework moves each request's future into a box of its own at every routing
                // level; held inline, all of it was copied each time (a twentieth of a page's CPU).
                Found::Nothing { seq, tx } => {
                    return Box::pin(self.lead(key, seq, tx, read)).await;
                }
            };
            let joins = arrived_during.is_some_and(|before| seq > before);
            arrived_during.get_or_insert(seq);
            let ended = match outcome.wait_for(|o| !matches!(o, Outcome::Pending)).await {
                Ok(o) => o.clone(),
                // The sender is only dropped after sending.
                Err(_) => Outcome::Abandoned,
            };
            match ended {
                Outcome::Read(v) if joins => return Ok(v),
                Outcome::Failed(e) if joins => return Err(e),
                // Started before this request arrived, or abandoned: wait for the next one.
                _ => {}
            }
        }
    }

    /// The read of `key` running now, or, when none is, a new one this request runs.
    fn join_or_start(&self, key: &K) -> Found<V> {
        let mut running = self.running.lock().expect("read groups");
        if let Some(r) = running.get(key) {
            return Found::Running {
                seq: r.seq,
                outcome: r.outcome.clone(),
            };
        }
        let seq = self.started.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Outcome::Pending);
        running.insert(key.clone(), Running { seq, outcome: rx });
        Found::Nothing { seq, tx }
    }

    /// Runs the read for everyone who joins it, and hands its outcome over.
    async fn lead<Fut>(
        &self,
        key: K,
        seq: u64,
        tx: watch::Sender<Outcome<V>>,
        read: impl FnOnce() -> Fut,
    ) -> StorageResult<Arc<V>>
    where
        Fut: Future<Output = StorageResult<V>>,
    {
        let mut lead = Lead {
            groups: self,
            key: Some(key),
            seq,
            tx,
        };
        let result = read().await.map(Arc::new);
        lead.end(match &result {
            Ok(v) => Outcome::Read(v.clone()),
            Err(e) => Outcome::Failed(e.clone()),
        });
        result
    }

    fn finish(&self, key: &K, seq: u64) {
        let mut running = self.running.lock().expect("read groups");
        if running.get(key).is_some_and(|r| r.seq == seq) {
            running.remove(key);
        }
    }
}

/// The request running a read. Dropped before the read ended (its request went away), it tells
/// the requests that joined to read again.
struct Lead<'a, K: Eq + Hash + Clone, V> {
    groups: &'a ReadGroups<K, V>,
    key: Option<K>,
    seq: u64,
    tx: watch::Sender<Outcome<V>>,
}

impl<K: Eq + Hash + Clone, V> Lead<'_, K, V> {
    fn end(&mut self, outcome: Outcome<V>) {
        if let Some(key) = self.key.take() {
            // Out of the map first: a request woken by the outcome must not find this read again.
            self.groups.finish(&key, self.seq);
            self.tx.send_replace(outcome);
        }
    }
}

impl<K: Eq + Hash + Clone, V> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        self.end(Outcome::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Refusal;
    use sf_routing::ProductId;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;

    /// Reads that count their calls and wait at a gate, so that requests pile up behind them.
    struct Reads {
        calls: AtomicUsize,
        gate: watch::Sender<bool>,
    }

    impl Reads {
        fn new() -> Self {
            Self {
                calls: AtomicUsize::new(0),
                gate: watch::channel(false).0,
            }
        }

        async fn read(&self) -> StorageResult<usize> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let mut gate = self.gate.subscribe();
            gate.wait_for(|open| *open).await.expect("gate");
            // A real read waits for its answer at least once.
            tokio::task::yield_now().await;
            Ok(n)
        }

        async fn fail(&self) -> StorageResult<usize> {
            self.read().await?;
            Err(StorageError::unavailable("down"))
        }

        fn open(&self) {
            self.gate.send_replace(true);
        }
    }

    #[tokio::test]
    async fn requests_that_arrive_during_a_read_share_the_next_one() {
        let groups = ReadGroups::<u8, usize>::default();
        let reads = Reads::new();
        let mut first = pin!(groups.read(1, || reads.read()));
        assert!(futures::poll!(&mut first).is_pending());
        let mut late = pin!(futures::future::join_all(
            (0..10).map(|_| groups.read(1, || reads.read()))
        ));
        assert!(futures::poll!(&mut late).is_pending());
        reads.open();
        let (first, late) = tokio::join!(first, late);
        // The first read answers its request; the ten that came while it ran share the second.
        assert_eq!(*first.unwrap(), 1);
        for r in late {
            assert_eq!(*r.unwrap(), 2);
        }
        assert_eq!(reads.calls.load(Ordering::SeqCst), 2);
        // Other keys read on their own, and nothing stays behind.
        assert_eq!(*groups.read(2, || reads.read()).await.unwrap(), 3);
        assert!(groups.running.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_request_never_takes_a_read_that_started_before_it() {
        let groups = ReadGroups::<u8, usize>::default();
        let reads = Reads::new();
        let mut first = pin!(groups.read(1, || reads.read()));
        assert!(futures::poll!(&mut first).is_pending());
        let second = groups.read(1, || reads.read());
        reads.open();
        let (first, second) = tokio::join!(first, second);
        assert_eq!((*first.unwrap(), *second.unwrap()), (1, 2));
    }

    #[tokio::test]
    async fn a_failed_read_fails_everyone_who_shared_it() {
        let groups = ReadGroups::<u8, usize>::default();
        let reads = Reads::new();
        let mut first = pin!(groups.read(1, || async {
            reads.read().await?;
            Err::<usize, _>(Refusal::UnknownProduct(ProductId::new_unchecked(7)).into())
        }));
        assert!(futures::poll!(&mut first).is_pending());
        let mut late = pin!(futures::future::join(
            groups.read(1, || reads.fail()),
            groups.read(1, || reads.fail()),
        ));
        assert!(futures::poll!(&mut late).is_pending());
        reads.open();
        let (first, (a, b)) = tokio::join!(first, late);
        assert!(matches!(
            first,
            Err(StorageError::Refused(Refusal::UnknownProduct(_)))
        ));
        assert!(matches!(a, Err(ref e) if e.to_string() == "down"), "{a:?}");
        assert!(matches!(b, Err(ref e) if e.to_string() == "down"), "{b:?}");
        assert_eq!(reads.calls.load(Ordering::SeqCst), 2);
        assert!(groups.running.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn when_the_request_running_a_read_goes_away_those_waiting_read_again() {
        let groups = ReadGroups::<u8, usize>::default();
        let reads = Reads::new();
        let mut gone = Box::pin(groups.read(1, || reads.read()));
        assert!(futures::poll!(&mut gone).is_pending());
        let mut waiting = pin!(groups.read(1, || reads.read()));
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(gone);
        reads.open();
        assert_eq!(*waiting.await.unwrap(), 2);
        assert!(groups.running.lock().unwrap().is_empty());
    }
}
