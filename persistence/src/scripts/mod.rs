//! One typed wrapper per Lua script under `persistence/lua/`, in the manner of one command per
//! file.
//!
//! Each module holds its script (`include_str!` of the `.lua` file), is the only place that builds
//! that script's KEYS and ARGV (from typed inputs, in the order the script's header documents), and
//! decodes its reply into a typed result; a reply outside the documented contract is an
//! [`crate::error::FailureKind::Internal`] failure that names the script. The `.lua` headers hold the full contract;
//! each module repeats it briefly next to the code.
//!
//! A wrapper takes the connection to run on: the caller chooses between the storage's ordinary
//! connection (behind the circuit) and its settling connection (tried even while the circuit is
//! open) for the step it takes. Every call goes through [`crate::scripts::invoke`],
//! which reloads the script after `NOSCRIPT`.
//!
//! | script | wrapper | reply |
//! |---|---|---|
//! | `reserve.lua` | [`reserve::Reserve`] | [`reserve::Decision`] |
//! | `cancel.lua` | [`cancel::Cancel`] | [`cancel::Cancelled`] |
//! | `adjust.lua` | [`adjust::Adjust`] | [`adjust::Adjusted`] |
//! | `sync.lua` | [`sync::SyncKeys`] | one [`crate::recovery::sync::SyncedKey`] per product |
//! | `ack.lua` | [`ack::Ack`] | events acknowledged |
//! | `lease.lua` | [`lease::Lease`] | whether it was done |
//! | `claim.lua` | [`claim::ClaimKey`] | [`claim::Claim`] |
//! | `reject.lua` | [`reject::Reject`] | one [`reject::Mark`] per order |
//! | `dead.lua` | [`dead::DeadLetter`] | whether the event was moved |
//! | `credential.lua` | [`credential::Credential`] | whether it was done |
//! | `safety.lua` | [`safety::SafetyCopy`] | fields set or removed |

pub mod ack;
pub mod adjust;
pub mod cancel;
pub mod claim;
pub mod credential;
pub mod dead;
pub mod lease;
pub mod reject;
pub mod reserve;
pub mod safety;
pub mod sync;

use crate::error::{StorageError, StorageResult};
use crate::infra::circuit::GuardedConn;
use backon::Retryable;
use redis::Script;
use std::fmt::Debug;

/// The KEYS and ARGV of one script call, in the order the script reads them. Arguments are sent
/// as their decimal or textual form, exactly as `redis::ToRedisArgs` writes numbers and strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

impl Invocation {
    fn key(&mut self, key: String) -> &mut Self {
        self.keys.push(key);
        self
    }

    fn arg(&mut self, arg: impl ToString) -> &mut Self {
        self.args.push(arg.to_string());
        self
    }

    /// Runs `script` with these keys and arguments (reloading it after `NOSCRIPT`).
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        conn: &mut GuardedConn,
    ) -> StorageResult<T> {
        let mut inv = script.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        for a in &self.args {
            inv.arg(a);
        }
        crate::scripts::invoke(&inv, conn).await
    }
}

/// How many replicas must hold a write before it is answered, and how long to wait for them
/// (`REDIS_MIN_REPLICA_ACKS`, `REDIS_WAIT_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    pub replicas: u32,
    pub timeout: std::time::Duration,
}

impl Replication {
    /// Appends `WAIT replicas timeout` to `pipe`: sent on the connection of the writes before it,
    /// it answers how many replicas hold them.
    pub fn wait(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("WAIT")
            .arg(self.replicas)
            .arg(self.timeout.as_millis() as u64);
    }

    /// Appends a write to `witness` (a key of the slot in question, no stock; it expires) and
    /// `WAIT`: the count says how many replicas hold everything the connection wrote to that
    /// slot, the witness included.
    pub fn witness(&self, pipe: &mut redis::Pipeline, witness: &str) {
        pipe.cmd("SET")
            .arg(witness)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg("PX")
            .arg(60_000)
            .ignore();
        self.wait(pipe);
    }
}

impl Invocation {
    /// Runs `script`, then `WAIT` for `replication.replicas` replicas, in one pipeline on one
    /// connection to the node serving the script's slot (reloading the script after
    /// `NOSCRIPT`). `WAIT` counts the replicas that hold everything this connection wrote, so
    /// the count covers the script's writes, whichever node serves the slot. Answers the reply
    /// and that count.
    async fn run_replicated<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        conn: &mut GuardedConn,
        replication: Replication,
    ) -> StorageResult<(T, u32)> {
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        replication.wait(&mut pipe);
        let conn = conn.with_extra_time(replication.timeout);
        let once = || async {
            let mut conn = conn.clone();
            match pipe.query_async::<(T, u32)>(&mut conn).await {
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                    // Loaded again, then the pipeline is sent again.
                    script.prepare_invoke().load_async(&mut conn).await?;
                    Err(e)
                }
                other => other,
            }
        };
        Ok(once
            .retry(after_noscript())
            .sleep(tokio::time::sleep)
            .when(is_noscript)
            .await?)
    }
}

/// A reply outside the script's documented contract.
fn unexpected(script: &str, reply: impl Debug) -> StorageError {
    StorageError::internal(format!(
        "{script}.lua answered {reply:?}, which it never should"
    ))
}

/// A 1-based line index of a reply, as a 0-based index below `lines`.
fn line_index(script: &str, reply: &[i64], lines: usize) -> StorageResult<usize> {
    reply
        .get(1)
        .and_then(|v| usize::try_from(v.checked_sub(1)?).ok())
        .filter(|i| *i < lines)
        .ok_or_else(|| unexpected(script, reply))
}

/// Runs a script (the wrappers of this module call it); `NOSCRIPT` (the server lost its
/// script cache, for example after `SCRIPT FLUSH` or a restart) makes `redis::Script` load the
/// script again, and a flush racing that reload is retried here.
pub async fn invoke<T: redis::FromRedisValue>(
    inv: &redis::ScriptInvocation<'_>,
    conn: &mut crate::infra::circuit::GuardedConn,
) -> StorageResult<T> {
    let conn: &crate::infra::circuit::GuardedConn = conn;
    let once = || async {
        let mut conn = conn.clone();
        inv.invoke_async(&mut conn).await
    };
    Ok(once
        .retry(after_noscript())
        .sleep(tokio::time::sleep)
        .when(is_noscript)
        .await?)
}

/// How a script is run again after `NOSCRIPT`: at once (the script was just loaded), up to ten
/// times (each a flush racing the load).
fn after_noscript() -> backon::ConstantBuilder {
    backon::ConstantBuilder::default()
        .with_delay(std::time::Duration::ZERO)
        .with_max_times(10)
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::NoScriptError
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_written_as_redis_writes_them() {
        let mut inv = Invocation::default();
        inv.arg(-3i64).arg(7u32).arg(u64::MAX).arg("check").arg(0);
        assert_eq!(inv.args, ["-3", "7", "18446744073709551615", "check", "0"]);
        for (sent, written) in inv.args.iter().zip([
            redis::ToRedisArgs::to_redis_args(&-3i64),
            redis::ToRedisArgs::to_redis_args(&7u32),
            redis::ToRedisArgs::to_redis_args(&u64::MAX),
            redis::ToRedisArgs::to_redis_args(&"check"),
            redis::ToRedisArgs::to_redis_args(&0),
        ]) {
            assert_eq!(vec![sent.as_bytes().to_vec()], written);
        }
    }

    #[test]
    fn line_indexes_are_one_based_and_within_the_lines() {
        assert_eq!(line_index("t", &[0, 1], 2).unwrap(), 0);
        assert_eq!(line_index("t", &[0, 2], 2).unwrap(), 1);
        assert!(line_index("t", &[0, 3], 2).is_err());
        assert!(line_index("t", &[0, 0], 2).is_err());
        assert!(line_index("t", &[0, -4], 2).is_err());
        assert!(line_index("t", &[0, i64::MIN], 2).is_err());
        assert!(line_index("t", &[0], 2).is_err());
    }

    #[test]
    fn every_script_is_its_file() {
        for (source, name) in [
            (reserve::SOURCE, "reserve.lua"),
            (cancel::SOURCE, "cancel.lua"),
            (adjust::SOURCE, "adjust.lua"),
            (sync::SOURCE, "sync.lua"),
            (ack::SOURCE, "ack.lua"),
            (lease::SOURCE, "lease.lua"),
            (claim::SOURCE, "claim.lua"),
            (reject::SOURCE, "reject.lua"),
            (dead::SOURCE, "dead.lua"),
            (credential::SOURCE, "credential.lua"),
        ] {
            assert!(source.starts_with(&format!("-- {name}:")), "{name}");
        }
    }
}
