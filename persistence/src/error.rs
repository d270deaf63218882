//! The one error type of the storage layer. The HTTP layer maps each kind to a status and a
//! problem type; server-side kinds carry their cause for the log, never for the client.

use sf_routing::{LocationId, ProductId};

/// A store the service depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Mysql,
    Redis,
}

impl Dependency {
    /// What a client is told when this store cannot be reached (the cause goes to the log).
    pub fn retry_shortly(self) -> &'static str {
        match self {
            Self::Mysql => "the database cannot be reached; retry shortly",
            Self::Redis => "the stock cache cannot be reached; retry shortly",
        }
    }
}

/// A nearby store that could fill an order another location could not.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alternative {
    pub store_id: u64,
    pub name: String,
    pub distance_km: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("product {0} does not exist or is not for sale")]
    UnknownProduct(ProductId),
    #[error("order {0} does not exist")]
    UnknownOrder(String),
    /// A POS return of an order that is not a sale of this store.
    #[error("store {store} has no sale {order}")]
    NoSuchSale { store: LocationId, order: String },
    /// Accepted in Redis, then lost with Redis's data before it reached MySQL (410).
    #[error("{0}")]
    Lost(String),
    #[error("location {0} does not exist")]
    UnknownLocation(LocationId),
    #[error("{0}")]
    NotFound(String),
    /// No candidate location can fill the order.
    #[error("{detail}")]
    OutOfStock {
        detail: String,
        product: Option<ProductId>,
        alternatives: Option<Vec<Alternative>>,
    },
    /// Valid syntax, but the request cannot be carried out as asked (422).
    #[error("{0}")]
    Invalid(String),
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyInFlight,
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// A dependency cannot serve now; the client may retry (503 with Retry-After).
    #[error("{0}")]
    Unavailable(String),
    /// Redis is not trusted now (its circuit is open or recovering): refused at once, nothing
    /// was changed (503 with Retry-After).
    #[error("{0}")]
    RedisDown(String),
    /// A Redis-path order the master holds, but fewer replicas than asked for
    /// (`REDIS_MIN_REPLICA_ACKS`) confirmed it in time (504): it stands unless that master fails
    /// before replicating it. Not a refusal: the order exists.
    #[error("order {} is held by the Redis master, but {held} of the {wanted} replicas asked for confirmed it (waited {waited_ms} ms; 0 when its shard lacked replicas a moment ago): it stands unless that master fails before replicating it", order.order_id)]
    NotReplicated {
        order: Box<crate::model::Order>,
        held: u32,
        wanted: u32,
        waited_ms: u64,
    },
    /// The reservation of a Redis-path order was sent, and Redis did not answer (a timeout, a
    /// cut connection): the order may or may not have been placed (503, naming the order).
    #[error("redis did not answer the reservation of order {order_id} ({cause})")]
    OutcomeUnknown { order_id: String, cause: String },
    /// A MySQL-first write's Redis change, applied on the master and held by fewer replicas than
    /// asked for: never answered, its keys are marked stale before the commit.
    #[error("the redis change is held by fewer replicas than asked for")]
    NotReplicatedChange,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<bb8::RunError<redis::RedisError>> for StorageError {
    fn from(e: bb8::RunError<redis::RedisError>) -> Self {
        match e {
            bb8::RunError::User(e) => Self::Redis(e),
            bb8::RunError::TimedOut => Self::Unavailable("redis connection pool timed out".into()),
        }
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("json: {e}"))
    }
}

impl StorageError {
    /// Whether MySQL asks us to run the transaction again (deadlock 1213, lock wait timeout 1205).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Db(sqlx::Error::Database(e)) => {
                matches!(mysql_code(e.as_ref()), Some(1213 | 1205))
            }
            _ => false,
        }
    }

    /// Whether this is a unique-key violation (1062).
    pub fn is_duplicate_key(&self) -> bool {
        match self {
            Self::Db(sqlx::Error::Database(e)) => mysql_code(e.as_ref()) == Some(1062),
            _ => false,
        }
    }

    /// Whether this answer refuses the request for good (nothing was changed, and asking again
    /// as it is gets the same answer), as opposed to a failure whose outcome is unknown.
    pub fn is_definite_refusal(&self) -> bool {
        !self.is_server_error()
    }

    /// Which store could not be reached, when that is what failed (as opposed to a store's
    /// answer, or a fault of the service itself).
    pub fn unreachable(&self) -> Option<Dependency> {
        match self {
            Self::Db(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
                Some(Dependency::Mysql)
            }
            Self::Redis(_) | Self::RedisDown(_) | Self::OutcomeUnknown { .. } => {
                Some(Dependency::Redis)
            }
            _ => None,
        }
    }

    /// Whether the failure is on the server's side (logged with cause; shown without internals).
    pub fn is_server_error(&self) -> bool {
        matches!(
            self,
            Self::Db(_)
                | Self::Redis(_)
                | Self::Internal(_)
                | Self::Unavailable(_)
                | Self::RedisDown(_)
                | Self::NotReplicated { .. }
                | Self::OutcomeUnknown { .. }
        )
    }
}

fn mysql_code(e: &dyn sqlx::error::DatabaseError) -> Option<u16> {
    e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number())
}

pub type StorageResult<T> = Result<T, StorageError>;
