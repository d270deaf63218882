//! `claim.lua`: claims an `Idempotency-Key` together with its lease, or takes over an open claim
//! whose lease nobody holds, in one atomic step. Full contract: the header of
//! `persistence/lua/claim.lua`.
//!
//! - KEYS: the claim key, its lease key.
//! - ARGV: fingerprint, uuid for a new claim, claim time to live (s), holder token, lease (ms).
//! - Reply: `{1, uuid}` claimed anew, `{2, record}` taken over, `{0, record}` nothing changed —
//!   see [`Claim`].

use super::{unexpected, Invocation};
use crate::error::StorageResult;
use crate::formats::ClaimRecord;
use crate::infra::circuit::GuardedConn;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

pub const SOURCE: &str = include_str!("../../lua/claim.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// One request's attempt at a key.
#[derive(Debug, Clone, Copy)]
pub struct ClaimKey<'a> {
    /// [`crate::Keys::idempotency`]; its lease is `<key>:lease` (the same slot).
    pub key: &'a str,
    pub fingerprint: &'a str,
    /// The uuid a new claim fixes the order's id with.
    pub uuid: &'a str,
    pub ttl_secs: u64,
    /// This request's lease token.
    pub token: &'a str,
    pub lease: Duration,
}

/// What the script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The key was free: it now stands for this request's uuid, and the lease is its.
    New,
    /// An open claim (same fingerprint, no answer) whose lease nobody held: the lease is now this
    /// request's, and the order the claim's uuid stands for may have been placed.
    TakenOver { uuid: String },
    /// Nothing changed: answered, another fingerprint, or someone else works on it.
    Held(ClaimRecord),
}

impl ClaimKey<'_> {
    pub fn lease_key(key: &str) -> String {
        format!("{key}:lease")
    }

    /// KEYS and ARGV in the order `claim.lua` reads them.
    pub fn invocation(&self) -> Invocation {
        let mut inv = Invocation::default();
        inv.key(self.key.to_owned())
            .key(Self::lease_key(self.key))
            .arg(self.fingerprint)
            .arg(self.uuid)
            .arg(self.ttl_secs)
            .arg(self.token)
            .arg(self.lease.as_millis() as u64);
        inv
    }

    pub(crate) async fn run(&self, conn: &mut GuardedConn) -> StorageResult<Claim> {
        let reply: (i64, String) = self.invocation().run(&SCRIPT, conn).await?;
        decode(reply, self.uuid)
    }

    /// [`ClaimKey::run`], then `WAIT` on the same connection: also answers how many replicas
    /// hold the claim as it now is.
    pub(crate) async fn run_replicated(
        &self,
        conn: &mut GuardedConn,
        replication: super::Replication,
    ) -> StorageResult<(Claim, u32)> {
        let (reply, held): ((i64, String), u32) = self
            .invocation()
            .run_replicated(&SCRIPT, conn, replication)
            .await?;
        Ok((decode(reply, self.uuid)?, held))
    }
}

pub(crate) fn decode((code, text): (i64, String), uuid: &str) -> StorageResult<Claim> {
    match code {
        1 if text == uuid => Ok(Claim::New),
        2 => match ClaimRecord::decode(&text) {
            ClaimRecord {
                uuid: Some(uuid),
                answer: None,
                ..
            } => Ok(Claim::TakenOver { uuid }),
            _ => Err(unexpected("claim", (code, text))),
        },
        0 => Ok(Claim::Held(ClaimRecord::decode(&text))),
        _ => Err(unexpected("claim", (code, text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let inv = ClaimKey {
            key: "t:idem:{s:k}",
            fingerprint: "fp",
            uuid: "u1",
            ttl_secs: 172_800,
            token: "tok",
            lease: Duration::from_secs(30),
        }
        .invocation();
        assert_eq!(inv.keys, ["t:idem:{s:k}", "t:idem:{s:k}:lease"]);
        assert_eq!(inv.args, ["fp", "u1", "172800", "tok", "30000"]);
    }

    #[test]
    fn decodes_every_documented_reply() {
        assert_eq!(decode((1, "u1".into()), "u1").unwrap(), Claim::New);
        assert_eq!(
            decode((2, "2|fp|u0|".into()), "u1").unwrap(),
            Claim::TakenOver { uuid: "u0".into() }
        );
        assert_eq!(
            decode((0, r#"2|fp|u0|{"v":1}"#.into()), "u1").unwrap(),
            Claim::Held(ClaimRecord::decode(r#"2|fp|u0|{"v":1}"#))
        );
        for bad in [(1, "u0"), (2, r#"2|fp|u0|{"v":1}"#), (2, "fp|"), (3, "x")] {
            let e = decode((bad.0, bad.1.into()), "u1").unwrap_err();
            assert!(e.to_string().contains("claim.lua"), "{bad:?}: {e}");
        }
    }
}
