//! `lease.lua`: renews or releases a lease (a job's, or an idempotency claim's), only if its
//! holder still holds it. Full contract: the header of `persistence/lua/lease.lua`. Taking a job's
//! lease is a plain `SET NX PX`; a claim's is taken by [`super::claim`].
//!
//! - KEYS: the lease key.
//! - ARGV: holder, `renew` or `release` (see [`LeaseOp`]), lease time in milliseconds (`0` for a
//!   release).
//! - Reply: 1 done, 0 held by someone else or expired.

use super::{unexpected, Invocation};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

pub const SOURCE: &str = include_str!("../../lua/lease.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// What to do with the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOp {
    /// Keep it for this long from now.
    Renew(Duration),
    Release,
}

/// A lease and the holder that acts on it.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The lease key: [`crate::Keys::lease`] for a job, `<idempotency key>:lease` for a claim.
    pub key: &'a str,
    pub holder: &'a str,
    pub op: LeaseOp,
}

impl Lease<'_> {
    /// KEYS and ARGV in the order `lease.lua` reads them.
    pub fn invocation(&self) -> Invocation {
        let mut inv = Invocation::default();
        inv.key(self.key.to_owned()).arg(self.holder);
        match self.op {
            LeaseOp::Renew(lease) => inv.arg("renew").arg(lease.as_millis() as u64),
            LeaseOp::Release => inv.arg("release").arg(0),
        };
        inv
    }

    /// Answers whether it was done (false: the lease is someone else's, or expired).
    pub async fn run(&self, conn: &mut GuardedConn) -> StorageResult<bool> {
        let reply: i64 = self.invocation().run(&SCRIPT, conn).await?;
        decode(reply)
    }
}

pub fn decode(reply: i64) -> StorageResult<bool> {
    match reply {
        1 => Ok(true),
        0 => Ok(false),
        _ => Err(unexpected("lease", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let renew = Lease {
            key: "t:lease:reconcile",
            holder: "i-1",
            op: LeaseOp::Renew(Duration::from_secs(30)),
        }
        .invocation();
        assert_eq!(renew.keys, ["t:lease:reconcile"]);
        assert_eq!(renew.args, ["i-1", "renew", "30000"]);
        let release = Lease {
            key: "t:idem:s:k:lease",
            holder: "tok",
            op: LeaseOp::Release,
        }
        .invocation();
        assert_eq!(release.keys, ["t:idem:s:k:lease"]);
        assert_eq!(release.args, ["tok", "release", "0"]);
    }

    #[test]
    fn decodes_done_or_not() {
        assert!(decode(1).unwrap());
        assert!(!decode(0).unwrap());
        for reply in [-1, 2] {
            let e = decode(reply).unwrap_err();
            assert!(e.to_string().contains("lease.lua"), "{reply}: {e}");
        }
    }
}
