//! `safety.lua`: sets a location's copy of the safety stock, writing only the fields that differ
//! (a re-sync that finds it right writes nothing). Full contract: the header of
//! `persistence/lua/safety.lua`.
//!
//! - KEYS: the location's safety hash ([`crate::Keys::safety`]).
//! - ARGV: the layout's version, the location's default, `<productId>:<units>` of the products
//!   with a buffer of their own, the ids of those without one (each comma separated).
//! - Reply: how many fields were set or removed.

use super::{unexpected, Invocation};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use redis::Script;
use sf_routing::ProductId;
use std::fmt::Write;
use std::sync::LazyLock;

pub const SOURCE: &str = include_str!("../../lua/safety.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// A location's safety stock as MySQL holds it, for its hash in Redis.
#[derive(Debug, Clone, Copy)]
pub struct SafetyCopy<'a> {
    pub key: &'a str,
    pub version: u32,
    /// The location's default.
    pub default: i64,
    /// Each product of the sync and its own buffer (`None`: it has none).
    pub own: &'a [(ProductId, Option<i64>)],
}

impl SafetyCopy<'_> {
    /// KEYS and ARGV in the order `safety.lua` reads them.
    pub fn invocation(&self) -> Invocation {
        let (mut with, mut without) = (String::new(), String::new());
        for (product, units) in self.own {
            let list = if units.is_some() {
                &mut with
            } else {
                &mut without
            };
            if !list.is_empty() {
                list.push(',');
            }
            match units {
                Some(u) => write!(list, "{product}:{u}"),
                None => write!(list, "{product}"),
            }
            .expect("writing to a string");
        }
        let mut inv = Invocation::default();
        inv.key(self.key.to_owned())
            .arg(self.version)
            .arg(self.default)
            .arg(with)
            .arg(without);
        inv
    }

    /// Answers how many fields were set or removed.
    pub async fn run(&self, conn: &mut GuardedConn) -> StorageResult<u64> {
        let reply: i64 = self.invocation().run(&SCRIPT, conn).await?;
        u64::try_from(reply).map_err(|_| unexpected("safety", reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64) -> ProductId {
        ProductId::new_unchecked(id)
    }

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let own = [(p(3), Some(5)), (p(4), None), (p(7), Some(0)), (p(9), None)];
        let inv = SafetyCopy {
            key: "t:{L2}:safety",
            version: 1,
            default: 2,
            own: &own,
        }
        .invocation();
        assert_eq!(inv.keys, ["t:{L2}:safety"]);
        assert_eq!(inv.args, ["1", "2", "3:5,7:0", "4,9"]);
        let none = SafetyCopy {
            key: "t:{L2}:safety",
            version: 1,
            default: 0,
            own: &[],
        }
        .invocation();
        assert_eq!(none.args, ["1", "0", "", ""]);
    }
}
