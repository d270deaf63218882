//! The error model of the storage layer: two kinds, and only two.
//!
//! - A [`Refusal`] is a domain answer: the request is refused as asked (out of stock, no such
//!   order, a conflict), nothing was changed, and asking again as it is gets the same answer. It
//!   is `Clone` and carries only what the client may see.
//! - A [`Failure`] is a dependency that could not serve or a fault of the service itself. Its
//!   [`FailureKind`] says what the client is told (a documented sentence, the order it concerns);
//!   its [`Cause`] is for the log, never for the client.
//!
//! Both are `Clone`, so one outcome answers every request that shared it (a read group, an order
//! group) as it is. The HTTP status of each lives in `openapi/src/problem.rs`, and only there.

use sf_routing::{LocationId, ProductId};
use std::borrow::Cow;
use std::sync::Arc;

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
    /// When a pickup ordered now would be ready there (RFC 3339 with the store's offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_by: Option<String>,
}

/// A domain answer: the request cannot be carried out as asked, and nothing was changed. Its text
/// is what the client reads.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("product {0} does not exist or is not for sale")]
    UnknownProduct(ProductId),
    #[error("order {0} does not exist")]
    UnknownOrder(String),
    /// A POS return of an order that is not a sale of this store.
    #[error("store {store} has no sale {order}")]
    NoSuchSale { store: LocationId, order: String },
    /// Accepted in Redis, then lost with Redis's data before it reached MySQL.
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
    /// Stores in the same-day radius have the goods, but none is in its same-day window now.
    #[error("{detail}")]
    SameDayClosed {
        detail: String,
        /// When the first of those stores opens its same-day window again (RFC 3339 with its
        /// offset); `None` when none does within the calendar's search horizon.
        next_same_day_at: Option<String>,
        /// Those stores, nearest first, with when a pickup there would be ready.
        alternatives: Vec<Alternative>,
    },
    /// Valid syntax, but the request cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyInFlight,
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    #[error("hold {0} does not exist")]
    UnknownHold(String),
    /// A hold past its `expiresAt`: its units are available again, nothing can be made of it.
    #[error("{0}")]
    HoldExpired(String),
    /// A hold its customer released: its units are available again.
    #[error("{0}")]
    HoldReleased(String),
    /// A pickup's code did not match (counted), or the order took too many wrong codes.
    #[error("{0}")]
    WrongPickupCode(String),
}

/// What a client is told of a [`Failure`]: each kind is a documented answer, never a driver's
/// text.
#[derive(Debug, Clone)]
pub enum FailureKind {
    /// The store could not be reached; the client may retry shortly.
    Unreachable(Dependency),
    /// A dependency cannot serve now; the client may retry. The sentence is the service's own.
    Unavailable(Cow<'static, str>),
    /// Redis is not trusted now (its circuit is open or recovering): refused at once, nothing
    /// was changed. The sentence says what the client can do instead.
    StockCacheDown(Cow<'static, str>),
    /// A Redis-path order the master holds, but fewer replicas than asked for
    /// (`REDIS_MIN_REPLICA_ACKS`) confirmed it in time: it stands unless that master fails
    /// before replicating it. Not a refusal: the order exists.
    NotReplicated {
        order: Box<crate::model::Order>,
        held: u32,
        wanted: u32,
        waited_ms: u64,
    },
    /// The reservation of a Redis-path order was sent, and Redis did not answer (a timeout, a
    /// cut connection): the order may or may not have been placed.
    OutcomeUnknown { order_id: String },
    /// A MySQL-first write's Redis change, applied on the master and held by fewer replicas than
    /// asked for: never answered, its keys are marked stale before the commit.
    NotReplicatedChange,
    /// A fault of the service, or an answer of a dependency it cannot read.
    Internal,
}

/// Why a [`Failure`] happened: for the log only.
#[derive(Debug, Clone)]
pub enum Cause {
    Mysql(Arc<sqlx::Error>),
    Redis(Arc<redis::RedisError>),
    Message(Cow<'static, str>),
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mysql(e) => write!(f, "database error: {e}"),
            Self::Redis(e) => write!(f, "redis error: {e}"),
            Self::Message(m) => f.write_str(m),
        }
    }
}

/// A dependency that could not serve, or a fault of the service: what the client is told, and
/// why, for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Failure {
    pub kind: FailureKind,
    pub cause: Cause,
}

impl Failure {
    /// A fault of the service itself (500); `why` goes to the log.
    pub fn internal(why: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: FailureKind::Internal,
            cause: Cause::Message(why.into()),
        }
    }

    /// A dependency that cannot serve now (503); `detail` is told to the client and logged.
    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        let detail = detail.into();
        Self {
            cause: Cause::Message(detail.clone()),
            kind: FailureKind::Unavailable(detail),
        }
    }

    /// Redis is not trusted now: refused at once, nothing changed (503); `detail` says what the
    /// client can do instead, `why` goes to the log.
    pub fn stock_cache_down(
        detail: impl Into<Cow<'static, str>>,
        why: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            kind: FailureKind::StockCacheDown(detail.into()),
            cause: Cause::Message(why.into()),
        }
    }

    fn describe(&self) -> String {
        match &self.kind {
            FailureKind::NotReplicated {
                order,
                held,
                wanted,
                waited_ms,
            } => format!(
                "order {} is held by the Redis master, but {held} of the {wanted} replicas asked for confirmed it (waited {waited_ms} ms; 0 when its shard lacked replicas a moment ago): it stands unless that master fails before replicating it",
                order.order_id
            ),
            FailureKind::OutcomeUnknown { order_id } => {
                format!("redis did not answer the reservation of order {order_id} ({})", self.cause)
            }
            FailureKind::StockCacheDown(detail) => format!("{detail} ({})", self.cause),
            FailureKind::NotReplicatedChange => {
                "the redis change is held by fewer replicas than asked for".into()
            }
            FailureKind::Unavailable(_) | FailureKind::Unreachable(_) | FailureKind::Internal => {
                self.cause.to_string()
            }
        }
    }
}

/// Every error of the storage layer: a refusal or a failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        let kind = match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                FailureKind::Unreachable(Dependency::Mysql)
            }
            _ => FailureKind::Internal,
        };
        Self::Failed(Failure {
            kind,
            cause: Cause::Mysql(Arc::new(e)),
        })
    }
}

impl From<redis::RedisError> for StorageError {
    fn from(e: redis::RedisError) -> Self {
        Self::Failed(Failure {
            kind: FailureKind::Unreachable(Dependency::Redis),
            cause: Cause::Redis(Arc::new(e)),
        })
    }
}

impl From<bb8::RunError<redis::RedisError>> for StorageError {
    fn from(e: bb8::RunError<redis::RedisError>) -> Self {
        match e {
            bb8::RunError::User(e) => e.into(),
            bb8::RunError::TimedOut => {
                Failure::unavailable("redis connection pool timed out").into()
            }
        }
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        Failure::internal(format!("json: {e}")).into()
    }
}

impl StorageError {
    /// A fault of the service itself (500); `why` goes to the log.
    pub fn internal(why: impl Into<Cow<'static, str>>) -> Self {
        Failure::internal(why).into()
    }

    /// A dependency that cannot serve now (503); `detail` is told to the client and logged.
    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        Failure::unavailable(detail).into()
    }

    /// The refusal, when this is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(r) => Some(r),
            Self::Failed(_) => None,
        }
    }

    /// The failure's kind, when this is one.
    pub fn failure(&self) -> Option<&FailureKind> {
        match self {
            Self::Refused(_) => None,
            Self::Failed(f) => Some(&f.kind),
        }
    }

    /// The MySQL error behind this failure, if that is its cause.
    pub fn mysql_error(&self) -> Option<&sqlx::Error> {
        match self {
            Self::Failed(Failure {
                cause: Cause::Mysql(e),
                ..
            }) => Some(e),
            _ => None,
        }
    }

    /// The Redis error behind this failure, if that is its cause.
    pub fn redis_error(&self) -> Option<&redis::RedisError> {
        match self {
            Self::Failed(Failure {
                cause: Cause::Redis(e),
                ..
            }) => Some(e),
            _ => None,
        }
    }

    /// The MySQL error number behind this failure, if there is one.
    pub fn mysql_code(&self) -> Option<u16> {
        match self.mysql_error()? {
            sqlx::Error::Database(e) => e
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number()),
            _ => None,
        }
    }

    /// Whether MySQL asks us to run the transaction again (deadlock 1213, lock wait timeout 1205).
    pub fn is_retryable(&self) -> bool {
        matches!(self.mysql_code(), Some(1213 | 1205))
    }

    /// Whether this is a unique-key violation (1062).
    pub fn is_duplicate_key(&self) -> bool {
        self.mysql_code() == Some(1062)
    }

    /// Whether this answer refuses the request for good (nothing was changed, and asking again
    /// as it is gets the same answer), as opposed to a failure whose outcome may be unknown.
    pub fn is_definite_refusal(&self) -> bool {
        matches!(self, Self::Refused(_))
    }

    /// Which store could not be reached, when that is what failed (as opposed to a store's
    /// answer, or a fault of the service itself).
    pub fn unreachable(&self) -> Option<Dependency> {
        match self.failure()? {
            FailureKind::Unreachable(d) => Some(*d),
            FailureKind::StockCacheDown(_) | FailureKind::OutcomeUnknown { .. } => {
                Some(Dependency::Redis)
            }
            _ => None,
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_error_is_a_failure_that_keeps_its_cause() {
        let e = StorageError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(e.unreachable(), Some(Dependency::Mysql));
        assert!(e.mysql_error().is_some());
        assert!(!e.is_definite_refusal());
        let e = StorageError::from(sqlx::Error::RowNotFound);
        assert!(matches!(e.failure(), Some(FailureKind::Internal)));
        assert_eq!(e.unreachable(), None);
    }

    #[test]
    fn a_refusal_is_definite_and_shows_its_text() {
        let e = StorageError::from(Refusal::IdempotencyMismatch);
        assert!(e.is_definite_refusal());
        assert_eq!(
            e.to_string(),
            "this Idempotency-Key was already used with a different request body"
        );
        // The copy another request of the same group receives is the same answer.
        assert_eq!(e.clone().refusal(), e.refusal());
    }

    #[test]
    fn a_failure_logs_its_cause() {
        let e = StorageError::from(redis::RedisError::from((redis::ErrorKind::IoError, "cut")));
        assert_eq!(e.unreachable(), Some(Dependency::Redis));
        assert!(e.to_string().contains("cut"), "{e}");
    }
}
