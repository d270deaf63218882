//! How the service reaches Redis: one server (`REDIS_URL`) or a Redis Cluster
//! (`REDIS_CLUSTER_NODES`), through a bb8 pool of self-healing multiplexed connections.
//!
//! Both modes hand out the same [`RedisConn`], so every caller is written once:
//!
//! - **one server**: each pooled connection is a `redis::aio::ConnectionManager`, multiplexed (a
//!   clone pipelines over the same socket, so a request takes a clone and frees the pool slot at
//!   once) and reconnecting by itself after Redis restarts. bb8-redis's stock manager hands out
//!   plain multiplexed connections and cannot tell a dead one without a PING on every checkout,
//!   which would double the round trips of every order.
//! - **cluster**: each pooled connection is redis-rs's cluster connection: multiplexed over one
//!   socket per node, routing each command to the master of its key's slot, and following the
//!   topology by itself (it reloads the slot map on `MOVED` and after a node stops answering, so a
//!   replica promoted by a failover is used without a restart). A pipeline whose commands live
//!   on several slots is sent as separate commands, concurrently, and its replies are put back in
//!   order: every key of one location shares a hash tag, and callers need not know where the
//!   locations live.
//!
//! A pipeline whose commands share one slot goes to that slot's node on one connection, in
//! order: a write followed by `WAIT` in one pipeline waits for that write's replication
//! (`REDIS_MIN_REPLICA_ACKS`), whichever node serves the slot by then.

use crate::error::StorageResult;
use futures::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// Where Redis is and how long its calls may take.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The one server, when `cluster_nodes` is empty.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port`); non-empty switches to cluster mode.
    pub cluster_nodes: Vec<String>,
    pub pool_size: u32,
    /// Opening a connection.
    pub connect_timeout: Duration,
    /// One command or script, from sending it to its answer.
    pub command_timeout: Duration,
    /// How often an open circuit probes Redis.
    pub probe_every: Duration,
    /// Replicas that must hold a Redis-path order before it is answered (0: do not wait).
    pub min_replica_acks: u32,
    /// How long the Redis path waits for those replicas.
    pub wait_timeout: Duration,
}

impl RedisSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster_nodes: Vec::new(),
            pool_size: 32,
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(1000),
            probe_every: Duration::from_millis(250),
            min_replica_acks: 0,
            wait_timeout: Duration::from_millis(100),
        }
    }

    /// Whether the service talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }

    /// How long the client itself lets a command take: the command deadline, plus the `WAIT`
    /// for replicas that some calls append (the circuit's deadline governs each call).
    fn response_timeout(&self) -> Duration {
        self.command_timeout
            + if self.min_replica_acks > 0 {
                self.wait_timeout
            } else {
                Duration::ZERO
            }
    }

    /// The client for these settings (connects nothing yet).
    pub fn client(&self) -> StorageResult<RedisClient> {
        Ok(if self.is_cluster() {
            RedisClient::Cluster(
                ClusterClient::builder(self.cluster_nodes.clone())
                    .connection_timeout(self.connect_timeout)
                    .response_timeout(self.response_timeout())
                    // A few quick retries while the slot map is reloaded (a `MOVED`, a node that
                    // stopped answering); the circuit, not the connection, waits out an outage.
                    .retries(2)
                    .min_retry_wait(20)
                    .max_retry_wait(200)
                    .build()?,
            )
        } else {
            RedisClient::Single(redis::Client::open(self.url.as_str())?)
        })
    }

    /// A new pool. Building one connects nothing: connections open on first use.
    pub async fn pool(&self, client: &RedisClient) -> StorageResult<RedisPool> {
        Ok(bb8::Pool::builder()
            .max_size(self.pool_size)
            .connection_timeout(self.connect_timeout)
            // Connections heal themselves; a PING per checkout would only add a round trip.
            .test_on_check_out(false)
            .build(RedisManager {
                client: client.clone(),
                connect_timeout: self.connect_timeout,
                command_timeout: self.response_timeout(),
            })
            .await?)
    }

    /// A connection of its own, outside the pool (the circuit's probe).
    pub async fn own_connection(&self, client: &RedisClient) -> StorageResult<RedisConn> {
        self.own_connection_waiting(client, Duration::ZERO).await
    }

    /// [`RedisSettings::own_connection`] whose calls may take `extra` beyond the command deadline
    /// (one server: a blocking read's wait).
    pub async fn own_connection_waiting(
        &self,
        client: &RedisClient,
        extra: Duration,
    ) -> StorageResult<RedisConn> {
        Ok(match client {
            RedisClient::Single(c) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(self.connect_timeout)
                    .set_response_timeout(self.command_timeout + extra);
                RedisConn::Plain(
                    c.get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            RedisClient::Cluster(c) => RedisConn::Cluster(c.get_async_connection().await?),
        })
    }
}

/// A client for one server or for a cluster.
#[derive(Clone)]
pub enum RedisClient {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// One Redis connection, whichever the mode.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnecting by itself.
    Single(ConnectionManager),
    /// One server, a plain multiplexed connection (the probe's).
    Plain(redis::aio::MultiplexedConnection),
    /// A cluster: routes by slot, follows failovers.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Plain(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => {
                if pipeline.is_transaction() || one_slot(pipeline) {
                    return c.req_packed_commands(pipeline, offset, count);
                }
                // Several slots: each command to its own node, all at once, replies in order.
                let c = c.clone();
                Box::pin(async move {
                    try_join_all(pipeline.cmd_iter().map(|cmd| {
                        let mut c = c.clone();
                        async move { c.req_packed_command(cmd).await }
                    }))
                    .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Plain(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Whether every keyed command of `pipeline` hashes to one slot (then the cluster client sends
/// it to that slot's node as one pipeline, on one connection).
fn one_slot(pipeline: &Pipeline) -> bool {
    let mut slots = pipeline.cmd_iter().filter_map(first_key).map(slot);
    match slots.next() {
        None => true,
        Some(first) => slots.all(|s| s == first),
    }
}

/// The first key of one of the commands this service sends, if it has one.
fn first_key(cmd: &Cmd) -> Option<&[u8]> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(a) => Some(a),
            redis::Arg::Cursor => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    match name.as_slice() {
        b"EVAL" | b"EVALSHA" => match args.get(2) {
            Some(n) if *n != b"0" => args.get(3).copied(),
            _ => None,
        },
        b"XREAD" | b"XREADGROUP" => {
            let at = args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            args.get(at + 1).copied()
        }
        b"XGROUP" | b"XINFO" => args.get(2).copied(),
        b"WAIT" | b"PING" | b"SCRIPT" | b"INFO" | b"CONFIG" | b"CLUSTER" | b"ROLE" => None,
        _ => args.get(1).copied(),
    }
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key when it
/// has none, modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|b| *b == b'}')
                .filter(|close| *close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16384
}

/// A bb8 pool of [`RedisConn`]s.
pub type RedisPool = bb8::Pool<RedisManager>;

pub struct RedisManager {
    client: RedisClient,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl bb8::ManageConnection for RedisManager {
    type Connection = RedisConn;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        Ok(match &self.client {
            RedisClient::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.connect_timeout)
                    .set_response_timeout(self.command_timeout)
                    // One quick retry: the circuit, not the connection, waits out an outage.
                    .set_number_of_retries(1)
                    .set_max_delay(100);
                RedisConn::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            RedisClient::Cluster(client) => {
                RedisConn::Cluster(client.get_async_connection().await?)
            }
        })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

/// The pool, the client it was built from, and the settings (a pool is built anew after an
/// outage, so that no request meets a connection from before it).
pub struct RedisLink {
    pub pool: RedisPool,
    pub client: RedisClient,
    pub settings: RedisSettings,
}

pub async fn connect(settings: RedisSettings) -> StorageResult<RedisLink> {
    let client = settings.client()?;
    let pool = settings.pool(&client).await?;
    Ok(RedisLink {
        pool,
        client,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_slot_spec() {
        // The reference value of the Redis Cluster specification (0x31C3, below 16384).
        assert_eq!(slot(b"123456789"), 0x31C3);
        // Keys with one hash tag share its slot.
        assert_eq!(slot(b"sf:{L7}:s:1"), slot(b"L7"));
        assert_eq!(slot(b"other{L7}:ev"), slot(b"sf:{L7}:s:1"));
        // An empty tag is no tag; only the first `{` counts.
        assert_eq!(
            slot(b"a{}b"),
            crc16::State::<crc16::XMODEM>::calculate(b"a{}b") % 16384
        );
        assert_eq!(slot(b"{a}{b}"), slot(b"a"));
        assert_eq!(slot(b"foo"), 12182);
    }

    #[test]
    fn a_pipeline_is_one_slot_when_its_keys_share_a_tag() {
        let mut same = redis::pipe();
        same.cmd("GET").arg("p{L1}:s:1").cmd("GET").arg("p{L1}:s:2");
        assert!(one_slot(&same));
        let mut spread = redis::pipe();
        spread
            .cmd("GET")
            .arg("p{L1}:s:1")
            .cmd("GET")
            .arg("p{L2}:s:1");
        assert!(!one_slot(&spread));
        // A script's keys follow its key count; WAIT has none.
        let mut replicated = redis::pipe();
        replicated
            .cmd("EVALSHA")
            .arg("abc")
            .arg(2)
            .arg("p{L1}:o:9")
            .arg("p{L1}:ev")
            .arg("x")
            .cmd("WAIT")
            .arg(1)
            .arg(100)
            .cmd("SET")
            .arg("p{L1}:w")
            .arg(1);
        assert!(one_slot(&replicated));
        let mut reads = redis::pipe();
        reads
            .cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("STREAMS")
            .arg("p{L1}:ev")
            .arg(">")
            .cmd("GET")
            .arg("p{L1}:epoch");
        assert!(one_slot(&reads));
    }
}
