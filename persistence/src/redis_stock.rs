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
//! | `<p>idem:<scope>:<key>` | string | idempotency claim: `2\|<fingerprint>\|<order uuid>\|<answer>` |
//! | `<p>idem:<scope>:<key>:lease` | string | held while a request decides the claimed order |
//!
//! Every key one script touches carries the location's hash tag `{L<loc>}`, so the scripts also
//! run on Redis Cluster.

use crate::error::{StorageError, StorageResult};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sf_routing::{LocationId, OrderLines, ProductId};
use std::time::Duration;

/// A bb8 pool of self-healing multiplexed Redis connections.
///
/// Each pooled connection is a `redis::aio::ConnectionManager`: multiplexed (a clone pipelines
/// over the same socket, so a request takes a clone and frees the pool slot at once) and
/// reconnecting by itself after Redis restarts. bb8-redis's stock manager hands out plain
/// multiplexed connections and cannot tell a dead one without a PING on every checkout, which
/// would double the round trips of every order.
pub type RedisPool = bb8::Pool<RedisManager>;

pub struct RedisManager {
    client: redis::Client,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl bb8::ManageConnection for RedisManager {
    type Connection = ConnectionManager;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.command_timeout)
            // One quick retry: the circuit, not the connection, waits out an outage.
            .set_number_of_retries(1)
            .set_max_delay(100);
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

/// The consumer group that persists events to MySQL.
pub const GROUP: &str = "persist";

/// Where Redis is and how long its calls may take.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub pool_size: u32,
    /// Opening a connection.
    pub connect_timeout: Duration,
    /// One command or script, from sending it to its answer.
    pub command_timeout: Duration,
    /// How often an open circuit probes Redis.
    pub probe_every: Duration,
}

impl RedisSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 32,
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(1000),
            probe_every: Duration::from_millis(250),
        }
    }

    /// A new pool. Building one connects nothing: connections open on first use.
    pub async fn pool(&self, client: &redis::Client) -> StorageResult<RedisPool> {
        Ok(bb8::Pool::builder()
            .max_size(self.pool_size)
            .connection_timeout(self.connect_timeout)
            // Connections heal themselves; a PING per checkout would only add a round trip.
            .test_on_check_out(false)
            .build(RedisManager {
                client: client.clone(),
                connect_timeout: self.connect_timeout,
                command_timeout: self.command_timeout,
            })
            .await?)
    }

    /// A connection of its own, outside the pool (the consumer's blocking reads): `block` is the
    /// longest the server may hold a command before it answers.
    pub async fn own_connection(
        &self,
        client: &redis::Client,
        block: Duration,
    ) -> StorageResult<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.command_timeout + block);
        Ok(client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }
}

/// The pool, the client it was built from, and the settings (a pool is built anew after an
/// outage, so that no request meets a connection from before it).
pub struct RedisLink {
    pub pool: RedisPool,
    pub client: redis::Client,
    pub settings: RedisSettings,
}

pub async fn connect(settings: RedisSettings) -> StorageResult<RedisLink> {
    let client = redis::Client::open(settings.url.as_str())?;
    let pool = settings.pool(&client).await?;
    Ok(RedisLink {
        pool,
        client,
        settings,
    })
}

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
    pub fn idempotency(&self, scope: &str, key: &str) -> String {
        format!("{}idem:{}:{}", self.prefix, scope, key)
    }
    /// Present while Redis holds the data this service loaded; its absence means Redis lost it.
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
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
