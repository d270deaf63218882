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

use sf_routing::{LocationId, ProductId};

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
