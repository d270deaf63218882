//! The MySQL pool, embedded migrations, and the retry loop for transactions that MySQL aborts
//! (deadlock, lock wait timeout).

use crate::error::{StorageError, StorageResult};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{ConnectOptions, MySql, MySqlPool, QueryBuilder};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Connects to `url`, creating the database if it does not exist yet. Getting a pooled
/// connection (opening one included) takes at most `connect_timeout`; a row-lock wait ends after
/// `command_timeout` (MariaDB counts whole seconds, at least one).
///
/// A transaction that stays idle — no statement running — for `idle_transaction` is ended by the
/// server, which closes its connection (MariaDB's `idle_transaction_timeout`): an instance frozen
/// mid-transaction (a paused VM, a partition, `SIGSTOP`) then holds its row locks for seconds,
/// not until `wait_timeout` (hours). It must exceed the longest pause a healthy transaction makes
/// between two statements (one Redis step: see [`idle_transaction_bound`]).
pub async fn connect(
    url: &str,
    max_connections: u32,
    connect_timeout: Duration,
    command_timeout: Duration,
    idle_transaction: Duration,
) -> StorageResult<MySqlPool> {
    let lock_wait_secs = command_timeout.as_secs_f64().ceil().max(1.0) as u64;
    let idle_secs = idle_transaction.as_secs_f64().ceil().max(1.0) as u64;
    let options = MySqlConnectOptions::from_str(url)?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
    if let Some(name) = options.get_database().map(str::to_owned) {
        // A fresh server has no database yet: create it through a connection without one.
        let mut admin =
            tokio::time::timeout(connect_timeout, options.clone().database("").connect())
                .await
                .map_err(|_| {
                    StorageError::unavailable(format!(
                        "MySQL did not accept a connection within {} ms",
                        connect_timeout.as_millis()
                    ))
                })??;
        sqlx::query(&format!(
            "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4",
            name.replace('`', "")
        ))
        .execute(&mut admin)
        .await?;
    }
    let pool = MySqlPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(connect_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::query(&format!(
                    "SET SESSION innodb_lock_wait_timeout = {lock_wait_secs}"
                ))
                .execute(&mut *conn)
                .await?;
                // Locking reads must see the latest committed rows; snapshots of REPEATABLE READ
                // would make the stock checks reason about stale figures.
                sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(&mut *conn)
                    .await?;
                let idle = format!("SET SESSION idle_transaction_timeout = {idle_secs}");
                if let Err(e) = sqlx::query(&idle).execute(&mut *conn).await {
                    tracing::warn!(error = %e, "the MySQL server does not end idle transactions (MariaDB 10.3+ does): an instance frozen mid-transaction keeps its row locks until wait_timeout");
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Opens a transaction on `pool`: the one way this service begins one.
///
/// `BEGIN` runs to its end in a task of its own, so a caller that gives up halfway (a deadline, a
/// dropped request) never leaves a pooled connection inside a transaction the pool does not know
/// of: such a connection would run the next user's plain statements inside it, uncommitted, and
/// lose them when it closes. Given up, the transaction is dropped (rolled back) when `BEGIN` ends.
pub async fn begin(pool: &MySqlPool) -> StorageResult<sqlx::Transaction<'static, MySql>> {
    let pool = pool.clone();
    #[allow(clippy::disallowed_methods)] // the one place a transaction is begun
    let begun = tokio::spawn(async move { pool.begin().await });
    match begun.await {
        Ok(tx) => Ok(tx?),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StorageError::unavailable(
            "MySQL did not begin a transaction",
        )),
    }
}

/// How long a transaction of this service may stay idle between two statements before the
/// server ends it: twice its longest Redis step (`command` plus a replication `wait`), and at
/// least 5 s.
pub fn idle_transaction_bound(command: Duration, wait: Duration) -> Duration {
    (2 * (command + wait)).max(Duration::from_secs(5))
}

/// Appends `(?, ?, …)` to `query`, binding `values` in turn: the list of an `IN`, which the caller
/// makes sure is not empty.
pub(crate) fn push_list<'a, T>(
    query: &mut QueryBuilder<'a, MySql>,
    values: impl IntoIterator<Item = T>,
) where
    T: 'a + sqlx::Encode<'a, MySql> + sqlx::Type<MySql>,
{
    query.push("(");
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    list.push_unseparated(")");
}

pub async fn migrate(pool: &MySqlPool) -> StorageResult<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StorageError::internal(format!("migration failed: {e}")))
}

/// Runs `attempt` again when MySQL aborted it for a deadlock or a lock wait timeout, so those never
/// reach the client: up to 20 attempts, a few milliseconds apart (growing, with jitter). Other
/// errors are returned as they are.
pub async fn with_retry<T, F, Fut>(what: &str, attempt: F) -> StorageResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StorageResult<T>>,
{
    use backon::{ExponentialBuilder, Retryable};
    const ATTEMPTS: usize = 20;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(Duration::from_millis(40))
        .with_factor(1.5)
        .with_jitter()
        .with_max_times(ATTEMPTS - 1);
    let result = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &StorageError| e.is_retryable())
        .notify(|e: &StorageError, after: Duration| {
            tracing::debug!(what, ?after, "transaction aborted by MySQL ({e}); retrying")
        })
        .await;
    if let Err(e) = &result {
        if e.is_retryable() {
            tracing::warn!(
                what,
                attempts = ATTEMPTS,
                "transaction still aborted after {ATTEMPTS} attempts: {e}"
            );
        }
    }
    result
}
