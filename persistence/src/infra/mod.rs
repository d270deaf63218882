//! What every room stands on: the MySQL pool and its deadlines ([`mysql`]), the Redis link to one
//! server or a cluster ([`redis_link`]), the circuit breaker and the deadline on every Redis
//! command ([`circuit`]), pooled and own connections and the health probes (`connections`), the
//! name of every Redis key ([`Keys`]), and scheduled jobs run under a lease ([`jobs`]).

pub(crate) mod circuit;
mod connections;
pub mod jobs;
pub(crate) mod keys;
pub mod mysql;
pub mod redis_link;

pub use circuit::{Circuit, CircuitState, MysqlHealth};
pub use connections::RedisPersistence;
pub use keys::Keys;
pub use redis_link::{RedisClient, RedisConn, RedisLink, RedisPool, RedisSettings};

crate::handle!(
    /// The state of the connections, as the health endpoints and metrics read it: taken with
    /// [`crate::Storage::health`].
    Health
);
