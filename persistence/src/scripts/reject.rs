//! `reject.lua`: marks Redis-path orders that MySQL cannot take as sold as rejected, before the
//! consumer commits the rejection. Full contract: the header of `persistence/lua/reject.lua`.
//!
//! - KEYS: the order record of each order.
//! - ARGV: the reason of each, in KEYS order.
//! - Reply: one integer per order, `1` rejected, `0` cancelled first, `-1` no record — see
//!   [`Mark`].

use super::{unexpected, Invocation};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use crate::infra::keys::Keys;
use redis::Script;
use sf_routing::LocationId;
use std::sync::LazyLock;

pub const SOURCE: &str = include_str!("../../lua/reject.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// One order to reject, with its reason.
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    pub order_id: &'a str,
    pub reason: &'a str,
}

/// Orders of one location to reject.
#[derive(Debug, Clone, Copy)]
pub struct Reject<'a> {
    pub loc: LocationId,
    pub orders: &'a [Rejection<'a>],
}

/// What became of one order's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Rejected now or before (`st = X`, the reason in field `r`).
    Rejected,
    /// Its customer cancelled it first (`st = C`): the order ends cancelled.
    CancelledFirst,
    /// No record (Redis lost it): rejected in MySQL all the same.
    NoRecord,
}

impl Reject<'_> {
    /// KEYS and ARGV in the order `reject.lua` reads them.
    pub fn invocation(&self, keys: &Keys) -> Invocation {
        let mut inv = Invocation::default();
        for o in self.orders {
            inv.key(keys.order(self.loc, o.order_id)).arg(o.reason);
        }
        inv
    }

    /// Answers one mark per order, in order.
    pub async fn run(&self, keys: &Keys, conn: &mut GuardedConn) -> StorageResult<Vec<Mark>> {
        let reply: Vec<i64> = self.invocation(keys).run(&SCRIPT, conn).await?;
        decode(&reply, self.orders.len())
    }
}

/// Decodes the reply for `orders` orders.
pub fn decode(reply: &[i64], orders: usize) -> StorageResult<Vec<Mark>> {
    if reply.len() != orders {
        return Err(unexpected(
            "reject",
            format_args!("{reply:?} for {orders} orders"),
        ));
    }
    reply
        .iter()
        .map(|m| match m {
            1 => Ok(Mark::Rejected),
            0 => Ok(Mark::CancelledFirst),
            -1 => Ok(Mark::NoRecord),
            _ => Err(unexpected("reject", reply)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let orders = [
            Rejection {
                order_id: "6-a",
                reason: "short of product 1",
            },
            Rejection {
                order_id: "6-b",
                reason: "short of product 2",
            },
        ];
        let inv = Reject {
            loc: LocationId::new_unchecked(6),
            orders: &orders,
        }
        .invocation(&Keys::new("t:"));
        assert_eq!(inv.keys, ["t:{L6}:o:6-a", "t:{L6}:o:6-b"]);
        assert_eq!(inv.args, ["short of product 1", "short of product 2"]);
    }

    #[test]
    fn decodes_one_mark_per_order() {
        assert_eq!(
            decode(&[1, 0, -1], 3).unwrap(),
            [Mark::Rejected, Mark::CancelledFirst, Mark::NoRecord]
        );
        assert!(decode(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn refuses_malformed_replies() {
        for (reply, orders) in [(&[1, 0][..], 3), (&[1, 0, 1], 2), (&[1, 2], 2), (&[-2], 1)] {
            let e = decode(reply, orders).unwrap_err();
            assert!(e.to_string().contains("reject.lua"), "{reply:?}: {e}");
        }
    }
}
