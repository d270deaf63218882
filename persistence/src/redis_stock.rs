//! Stock, order records and order events in Redis: connections, key names, and running the Lua
//! scripts that change them (each script's keys, arguments and reply live in [`crate::scripts`]).
//!
//! Key layout (the prefix is configurable so tests and instances can share one server):
//!
//! | key | type | what |
//! |---|---|---|
//! | `<p>{L<loc>}:s:<product>` | string | units sellable through Redis at a location |
//! | `<p>{L<loc>}:ev` | stream | order events not yet known persisted to MySQL |
//! | `<p>{L<loc>}:dead` | stream | events that could not be persisted, each with its error |
//! | `<p>{L<loc>}:o:<order>` | hash | a Redis-path order: `st` (`A` accepted, `C` cancelled, `X` rejected), `j` (its JSON), `r` (why rejected) |
//! | `<p>{L<loc>}:w` | string | written before a `WAIT` that must cover the location's slot (expires) |
//! | `<p>{L<loc>}:epoch` | string | when the location's stock was loaded; its absence means Redis lost the location's data |
//! | `<p>idem:{<scope>:<key>}` | string | idempotency claim: `2\|<fingerprint>\|<order uuid>\|<answer>` |
//! | `<p>idem:{<scope>:<key>}:lease` | string | held while a request decides the claimed order |
//! | `<p>lease:<job>` | string | held by the instance running a scheduled job |
//!
//! Every key one script touches shares one hash tag (the location's `{L<loc>}`, or the claim's
//! `{<scope>:<key>}`), so each script runs on one slot of a Redis Cluster, and a location's data
//! lives on one shard.

use crate::error::{StorageError, StorageResult};
use sf_routing::{LocationId, OrderLines, ProductId};

/// The consumer group that persists events to MySQL.
pub const GROUP: &str = "persist";

/// Builds key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn stock(&self, loc: LocationId, product: ProductId) -> String {
        format!("{}{{L{}}}:s:{}", self.prefix, loc, product)
    }
    pub fn stream(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:ev", self.prefix, loc)
    }
    /// Events that could not be persisted, with their errors.
    pub fn dead_letters(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:dead", self.prefix, loc)
    }
    pub fn order(&self, loc: LocationId, order_id: &str) -> String {
        format!("{}{{L{}}}:o:{}", self.prefix, loc, order_id)
    }
    /// Written before a `WAIT` that must cover everything the location's slot holds.
    pub fn replication_witness(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:w", self.prefix, loc)
    }
    /// An idempotency claim; its hash tag keeps the claim and its lease on one slot.
    pub fn idempotency(&self, scope: &str, key: &str) -> String {
        format!("{}idem:{{{}:{}}}", self.prefix, scope, key)
    }
    /// Present while Redis holds the location's data this service loaded (it lives on the
    /// location's slot, so it goes with the shard that holds the data); its absence means Redis
    /// lost it.
    pub fn epoch(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:epoch", self.prefix, loc)
    }
    pub fn lease(&self, job: &str) -> String {
        format!("{}lease:{}", self.prefix, job)
    }
}

/// Runs a script (the wrappers of [`crate::scripts`] call it); `NOSCRIPT` (the server lost its
/// script cache, for example after `SCRIPT FLUSH` or a restart) makes `redis::Script` load the
/// script again, and a flush racing that reload is retried here.
pub async fn invoke<T: redis::FromRedisValue>(
    inv: &redis::ScriptInvocation<'_>,
    conn: &mut crate::circuit::GuardedConn,
) -> StorageResult<T> {
    let mut attempt = 0;
    loop {
        match inv.invoke_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError && attempt < 10 => attempt += 1,
            other => return Ok(other?),
        }
    }
}

/// The source of the reservation script, for the benchmark's ceiling run.
pub const RESERVE_LUA: &str = crate::scripts::reserve::SOURCE;

/// Lines as the events carry them: `"productId:quantity,..."`.
pub fn encode_lines(lines: &OrderLines) -> String {
    let mut s = String::with_capacity(lines.len() * 8);
    for (i, (p, q)) in lines.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&p.to_string());
        s.push(':');
        s.push_str(&q.get().to_string());
    }
    s
}

/// Parses `"productId:quantity,..."`.
pub fn decode_lines(s: &str) -> StorageResult<Vec<(ProductId, u32)>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|pair| {
            let (p, q) = pair
                .split_once(':')
                .ok_or_else(|| StorageError::Internal(format!("bad event line {pair:?}")))?;
            let p = p
                .parse::<u64>()
                .map_err(|_| StorageError::Internal(format!("bad event product {p:?}")))?;
            let q = q
                .parse::<u32>()
                .map_err(|_| StorageError::Internal(format!("bad event quantity {q:?}")))?;
            Ok((ProductId::new_unchecked(p), q))
        })
        .collect()
}
