//! `reserve.lua`: decides one online order at one location, all lines or none, and records its
//! event in the same atomic step. Full contract: the header of `persistence/lua/reserve.lua`.
//!
//! - KEYS: order record, event stream, one stock key per line (in the lines' product order), then
//!   the location's safety stock hash.
//! - ARGV: order id, order JSON, lines as `"productId:quantity,..."`, then each line's quantity.
//! - Reply: `{1}` accepted, `{0, i, have}` short, `{-1, i}` not loaded, `{2}` duplicate
//!   (`i` 1-based) — see [`Decision`].

use super::{line_index, unexpected, Invocation, Replication};
use crate::error::StorageResult;
use crate::formats::encode_lines;
use crate::infra::circuit::GuardedConn;
use crate::infra::keys::Keys;
use redis::Script;
use sf_routing::{LocationId, OrderLines};
use std::sync::LazyLock;

/// The source of `reserve.lua` (the benchmark's ceiling run and the tests load it themselves).
pub const SOURCE: &str = include_str!("../../lua/reserve.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// One order to decide at one location.
#[derive(Debug, Clone, Copy)]
pub struct Reserve<'a> {
    pub loc: LocationId,
    pub order_id: &'a str,
    /// The order as JSON: the answer, and what the consumer persists.
    pub json: &'a str,
    pub lines: &'a OrderLines,
}

/// What the script answered about the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every line decremented; the record and the event are written.
    Applied,
    /// Line `index` (0-based) has only `have` units sellable online; nothing changed.
    Short { index: usize, have: i64 },
    /// The stock key of line `index` (0-based), or the location's safety stock, is not loaded;
    /// nothing changed.
    NotLoaded { index: usize },
    /// This order id was decided before; nothing changed.
    Duplicate,
}

impl Reserve<'_> {
    /// KEYS and ARGV in the order `reserve.lua` reads them.
    pub fn invocation(&self, keys: &Keys) -> Invocation {
        let mut inv = Invocation::default();
        inv.key(keys.order(self.loc, self.order_id))
            .key(keys.stream(self.loc))
            .arg(self.order_id)
            .arg(self.json)
            .arg(encode_lines(self.lines));
        for (p, q) in self.lines.iter() {
            inv.key(keys.stock(self.loc, p)).arg(q.get());
        }
        inv.key(keys.safety(self.loc));
        inv
    }

    pub async fn run(&self, keys: &Keys, conn: &mut GuardedConn) -> StorageResult<Decision> {
        let reply: Vec<i64> = self.invocation(keys).run(&SCRIPT, conn).await?;
        decode(&reply, self.lines.len())
    }

    /// Runs the script, then waits for `replication`'s replicas to hold its writes (one
    /// pipeline, one connection). Answers the decision and how many replicas hold it.
    pub async fn run_replicated(
        &self,
        keys: &Keys,
        conn: &mut GuardedConn,
        replication: Replication,
    ) -> StorageResult<(Decision, u32)> {
        let (reply, held): (Vec<i64>, u32) = self
            .invocation(keys)
            .run_replicated(&SCRIPT, conn, replication)
            .await?;
        Ok((decode(&reply, self.lines.len())?, held))
    }
}

/// Decodes the reply to an order of `lines` lines.
pub fn decode(reply: &[i64], lines: usize) -> StorageResult<Decision> {
    match reply {
        [1] => Ok(Decision::Applied),
        [2] => Ok(Decision::Duplicate),
        [0, _, have] => Ok(Decision::Short {
            index: line_index("reserve", reply, lines)?,
            have: *have,
        }),
        [-1, _] => Ok(Decision::NotLoaded {
            index: line_index("reserve", reply, lines)?,
        }),
        _ => Err(unexpected("reserve", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> OrderLines {
        OrderLines::parse([(42, 3), (7, 2), (42, 1)]).unwrap()
    }

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let lines = lines();
        let inv = Reserve {
            loc: LocationId::new_unchecked(5),
            order_id: "5-abc",
            json: r#"{"orderId":"5-abc"}"#,
            lines: &lines,
        }
        .invocation(&Keys::new("t:"));
        assert_eq!(
            inv.keys,
            [
                "t:{L5}:o:5-abc",
                "t:{L5}:ev",
                "t:{L5}:s:7",
                "t:{L5}:s:42",
                "t:{L5}:safety"
            ]
        );
        assert_eq!(
            inv.args,
            ["5-abc", r#"{"orderId":"5-abc"}"#, "7:2,42:4", "2", "4"]
        );
    }

    #[test]
    fn decodes_every_documented_reply() {
        assert_eq!(decode(&[1], 2).unwrap(), Decision::Applied);
        assert_eq!(decode(&[2], 2).unwrap(), Decision::Duplicate);
        assert_eq!(
            decode(&[0, 2, 1], 2).unwrap(),
            Decision::Short { index: 1, have: 1 }
        );
        assert_eq!(
            decode(&[0, 1, -3], 2).unwrap(),
            Decision::Short { index: 0, have: -3 }
        );
        assert_eq!(
            decode(&[-1, 1], 2).unwrap(),
            Decision::NotLoaded { index: 0 }
        );
    }

    #[test]
    fn refuses_malformed_replies() {
        for reply in [
            &[][..],
            &[3],
            &[1, 1],
            &[2, 0],
            &[0, 1],
            &[0, 1, 2, 3],
            &[0, 3, 1],
            &[0, 0, 1],
            &[-1],
            &[-1, 3],
            &[-1, 0],
            &[-1, 1, 0],
            &[-2],
        ] {
            let e = decode(reply, 2).unwrap_err();
            assert!(e.to_string().contains("reserve.lua"), "{reply:?}: {e}");
        }
    }
}
