//! `credential.lua`: keeps a checked channel key in Redis unless its hash is marked revoked, or
//! revokes it there (marks the hash, drops the kept key) in one step. Full contract: the header
//! of `persistence/lua/credential.lua`.
//!
//! - KEYS: the kept key ([`crate::Keys::channel_key`]), the revoked mark
//!   ([`crate::Keys::revoked_channel_key`]).
//! - ARGV: `keep` with `<keyId>:<channelId>`, or `revoke`.
//! - Reply: 1 done, 0 a `keep` that found the hash revoked.

use super::{unexpected, Invocation};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use redis::Script;
use std::sync::LazyLock;

pub const SOURCE: &str = include_str!("../../lua/credential.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// What to do with a channel key's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialOp {
    /// Keep the key for checks: it acts for this channel, under this key id.
    Keep {
        key_id: u64,
        channel_id: u64,
    },
    Revoke,
}

/// A channel key's hash and what to do with it.
#[derive(Debug, Clone, Copy)]
pub struct Credential<'a> {
    pub kept: &'a str,
    pub revoked: &'a str,
    pub op: CredentialOp,
}

impl Credential<'_> {
    /// KEYS and ARGV in the order `credential.lua` reads them.
    pub fn invocation(&self) -> Invocation {
        let mut inv = Invocation::default();
        inv.key(self.kept.to_owned()).key(self.revoked.to_owned());
        match self.op {
            CredentialOp::Keep { key_id, channel_id } => {
                inv.arg("keep").arg(format!("{key_id}:{channel_id}"))
            }
            CredentialOp::Revoke => inv.arg("revoke"),
        };
        inv
    }

    /// Answers whether it was done (false: a keep that found the hash revoked).
    pub async fn run(&self, conn: &mut GuardedConn) -> StorageResult<bool> {
        let reply: i64 = self.invocation().run(&SCRIPT, conn).await?;
        match reply {
            1 => Ok(true),
            0 => Ok(false),
            other => Err(unexpected("credential", other)),
        }
    }
}

/// Reads what a `keep` stored: `(key id, channel id)`.
pub fn parse_kept(v: &str) -> Option<(u64, u64)> {
    let (k, c) = v.split_once(':')?;
    Some((k.parse().ok()?, c.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arguments_in_the_scripts_order() {
        let keep = Credential {
            kept: "t:{cred}:ck:h",
            revoked: "t:{cred}:ckr:h",
            op: CredentialOp::Keep {
                key_id: 3,
                channel_id: 7,
            },
        }
        .invocation();
        assert_eq!(keep.keys, ["t:{cred}:ck:h", "t:{cred}:ckr:h"]);
        assert_eq!(keep.args, ["keep", "3:7"]);
        assert_eq!(parse_kept("3:7"), Some((3, 7)));
        assert_eq!(parse_kept("3"), None);
        let revoke = Credential {
            kept: "k",
            revoked: "r",
            op: CredentialOp::Revoke,
        }
        .invocation();
        assert_eq!(revoke.args, ["revoke"]);
    }
}
