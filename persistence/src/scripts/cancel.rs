//! `cancel.lua`: cancels one Redis-path order that Redis still holds, exactly once, and gives its
//! units back. Full contract: the header of `persistence/lua/cancel.lua`.
//!
//! - KEYS: order record, event stream, then the stock key of each of the order's lines.
//! - ARGV: order id, lines as `"productId:quantity,..."`, then each line's quantity.
//! - Reply: `{1}` cancelled now, `{0}` already cancelled, `{-1}` no record, `{-2}` being
//!   rejected — see [`Cancelled`].

use super::{unexpected, Invocation, Replication};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use crate::infra::keys::Keys;
use crate::model::OrderItem;
use redis::Script;
use sf_routing::{LocationId, ProductId};
use std::sync::LazyLock;

pub const SOURCE: &str = include_str!("../../lua/cancel.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// One order to cancel, with the lines its record holds.
#[derive(Debug, Clone, Copy)]
pub struct Cancel<'a> {
    pub loc: LocationId,
    pub order_id: &'a str,
    pub items: &'a [OrderItem],
}

/// What the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Cancelled now: units given back, cancel event written.
    Now,
    /// Was cancelled before; nothing changed.
    Already,
    /// Redis holds no record of it (it is in MySQL only, or unknown); nothing changed.
    NoRecord,
    /// The consumer is rejecting it (`st = X`): nothing was sold; nothing changed.
    BeingRejected,
}

impl Cancel<'_> {
    /// KEYS and ARGV in the order `cancel.lua` reads them.
    pub fn invocation(&self, keys: &Keys) -> Invocation {
        let mut inv = Invocation::default();
        inv.key(keys.order(self.loc, self.order_id))
            .key(keys.stream(self.loc))
            .arg(self.order_id)
            .arg(
                self.items
                    .iter()
                    .map(|i| format!("{}:{}", i.product_id, i.quantity))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        for i in self.items {
            inv.key(keys.stock(self.loc, ProductId::new_unchecked(i.product_id)))
                .arg(i.quantity);
        }
        inv
    }

    pub async fn run(&self, keys: &Keys, conn: &mut GuardedConn) -> StorageResult<Cancelled> {
        let reply: Vec<i64> = self.invocation(keys).run(&SCRIPT, conn).await?;
        decode(&reply)
    }

    /// Runs the script, then waits for `replication`'s replicas to hold its writes (one
    /// pipeline, one connection). Answers what it did and how many replicas hold it.
    pub async fn run_replicated(
        &self,
        keys: &Keys,
        conn: &mut GuardedConn,
        replication: Replication,
    ) -> StorageResult<(Cancelled, u32)> {
        let (reply, held): (Vec<i64>, u32) = self
            .invocation(keys)
            .run_replicated(&SCRIPT, conn, replication)
            .await?;
        Ok((decode(&reply)?, held))
    }
}

pub fn decode(reply: &[i64]) -> StorageResult<Cancelled> {
    match reply {
        [1] => Ok(Cancelled::Now),
        [0] => Ok(Cancelled::Already),
        [-1] => Ok(Cancelled::NoRecord),
        [-2] => Ok(Cancelled::BeingRejected),
        _ => Err(unexpected("cancel", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let items = [
            OrderItem {
                product_id: 7,
                quantity: 2,
                unit_price: 100,
            },
            OrderItem {
                product_id: 42,
                quantity: 4,
                unit_price: 250,
            },
        ];
        let inv = Cancel {
            loc: LocationId::new_unchecked(5),
            order_id: "5-abc",
            items: &items,
        }
        .invocation(&Keys::new("t:"));
        assert_eq!(
            inv.keys,
            ["t:{L5}:o:5-abc", "t:{L5}:ev", "t:{L5}:s:7", "t:{L5}:s:42"]
        );
        assert_eq!(inv.args, ["5-abc", "7:2,42:4", "2", "4"]);
    }

    #[test]
    fn decodes_every_documented_reply() {
        assert_eq!(decode(&[1]).unwrap(), Cancelled::Now);
        assert_eq!(decode(&[0]).unwrap(), Cancelled::Already);
        assert_eq!(decode(&[-1]).unwrap(), Cancelled::NoRecord);
        assert_eq!(decode(&[-2]).unwrap(), Cancelled::BeingRejected);
    }

    #[test]
    fn refuses_malformed_replies() {
        for reply in [&[][..], &[2], &[-3], &[1, 1], &[0, 0]] {
            let e = decode(reply).unwrap_err();
            assert!(e.to_string().contains("cancel.lua"), "{reply:?}: {e}");
        }
    }
}
