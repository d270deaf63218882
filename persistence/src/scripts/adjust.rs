//! `adjust.lua`: applies a MySQL-first change to Redis as a change, never as an absolute value.
//! Full contract: the header of `persistence/lua/adjust.lua`.
//!
//! - KEYS: the stock key of each changed product.
//! - ARGV: the mode (`check` or `force`, see [`AdjustMode`]), each key's signed delta, then (in
//!   `check` mode, when given) each key's floor.
//! - Reply: `{1}` applied, `{0, i, have}` short (`check` mode only), `{-1, i}` not loaded (`check`
//!   and `fact` modes; `i` 1-based) — see [`Adjusted`].

use super::{line_index, unexpected, Invocation, Replication};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use crate::infra::keys::Keys;
use redis::Script;
use sf_routing::{LocationId, ProductId};
use std::sync::LazyLock;

pub const SOURCE: &str = include_str!("../../lua/adjust.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// How `adjust.lua` applies a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustMode {
    /// Refuse a decrement the key cannot cover (the caller holds the row locks).
    Check,
    /// An operator's change of what is on the shelf: a missing key is loaded first (as with
    /// `Check`), and the change is never refused, even below zero.
    Fact,
    /// Apply as it is: taking back a change whose commit is unknown.
    Force,
}

impl AdjustMode {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Fact => "fact",
            Self::Force => "force",
        }
    }
}

/// Signed deltas to the stock of products at one location.
#[derive(Debug, Clone, Copy)]
pub struct Adjust<'a> {
    pub loc: LocationId,
    pub mode: AdjustMode,
    pub deltas: &'a [(ProductId, i64)],
    /// (`check`) What each decrement must leave, in `deltas` order (an online order's safety
    /// stock); empty: zero for every key.
    pub floors: &'a [i64],
}

/// What the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjusted {
    /// Applied to every key (a missing key is left missing).
    Applied,
    /// (`check`) The key of delta `index` (0-based) holds `have`, too little for its decrement
    /// and its floor; nothing changed.
    Short { index: usize, have: i64 },
    /// (`check`) The key of delta `index` (0-based) is missing and its delta is negative; nothing
    /// changed.
    NotLoaded { index: usize },
}

impl Adjust<'_> {
    /// KEYS and ARGV in the order `adjust.lua` reads them.
    pub fn invocation(&self, keys: &Keys) -> Invocation {
        let mut inv = Invocation::default();
        inv.arg(self.mode.as_arg());
        for (p, d) in self.deltas {
            inv.key(keys.stock(self.loc, *p)).arg(*d);
        }
        if self.mode == AdjustMode::Check {
            for f in self.floors {
                inv.arg(*f);
            }
        }
        inv
    }

    pub async fn run(&self, keys: &Keys, conn: &mut GuardedConn) -> StorageResult<Adjusted> {
        let reply: Vec<i64> = self.invocation(keys).run(&SCRIPT, conn).await?;
        decode(&reply, self.deltas.len())
    }

    /// Runs the script, then waits for `replication`'s replicas to hold its writes (one
    /// pipeline, one connection). Answers the outcome and how many replicas hold it.
    pub async fn run_replicated(
        &self,
        keys: &Keys,
        conn: &mut GuardedConn,
        replication: Replication,
    ) -> StorageResult<(Adjusted, u32)> {
        let (reply, held): (Vec<i64>, u32) = self
            .invocation(keys)
            .run_replicated(&SCRIPT, conn, replication)
            .await?;
        Ok((decode(&reply, self.deltas.len())?, held))
    }
}

/// Decodes the reply to a change of `deltas` keys.
pub fn decode(reply: &[i64], deltas: usize) -> StorageResult<Adjusted> {
    match reply {
        [1] => Ok(Adjusted::Applied),
        [0, _, have] => Ok(Adjusted::Short {
            index: line_index("adjust", reply, deltas)?,
            have: *have,
        }),
        [-1, _] => Ok(Adjusted::NotLoaded {
            index: line_index("adjust", reply, deltas)?,
        }),
        _ => Err(unexpected("adjust", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let deltas = [
            (ProductId::new_unchecked(3), -2),
            (ProductId::new_unchecked(9), 5),
        ];
        let keys = Keys::new("t:");
        for (mode, arg) in [(AdjustMode::Check, "check"), (AdjustMode::Force, "force")] {
            let inv = Adjust {
                loc: LocationId::new_unchecked(1),
                mode,
                deltas: &deltas,
                floors: &[],
            }
            .invocation(&keys);
            assert_eq!(inv.keys, ["t:{L1}:s:3", "t:{L1}:s:9"]);
            assert_eq!(inv.args, [arg, "-2", "5"]);
        }
    }

    #[test]
    fn decodes_every_documented_reply() {
        assert_eq!(decode(&[1], 2).unwrap(), Adjusted::Applied);
        assert_eq!(
            decode(&[0, 2, 1], 2).unwrap(),
            Adjusted::Short { index: 1, have: 1 }
        );
        assert_eq!(
            decode(&[-1, 1], 2).unwrap(),
            Adjusted::NotLoaded { index: 0 }
        );
    }

    #[test]
    fn refuses_malformed_replies() {
        // `{2}` (a duplicate) is reserve.lua's answer, never adjust.lua's.
        for reply in [
            &[][..],
            &[2],
            &[1, 0],
            &[0, 1],
            &[0, 3, 1],
            &[0, 0, 1],
            &[-1],
            &[-1, 3],
            &[-1, 1, 1],
        ] {
            let e = decode(reply, 2).unwrap_err();
            assert!(e.to_string().contains("adjust.lua"), "{reply:?}: {e}");
        }
    }
}
