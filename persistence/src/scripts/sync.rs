//! `sync.lua`: sets stock keys from MySQL at a consistent point (load missing keys, or repair
//! keys that drifted). Full contract: the header of `persistence/lua/sync.lua`.
//!
//! - KEYS: event stream, the stock key of each product, then the location's epoch marker.
//! - ARGV: the mode (`load` or `repair`, see [`SyncMode`]), the product ids, their MySQL on-hand
//!   values (both comma separated, in KEYS order), the events MySQL already applied as
//!   `"<orderId>:<R|C>"` comma separated, and the marker's value (now) if it is missing.
//! - Reply: four integers per key — present (1/0), before (0 when missing), expected, changed
//!   (1/0) — decoded into one [`SyncedKey`] per product; then the location's epoch marker.

use super::{unexpected, Invocation};
use crate::circuit::GuardedConn;
use crate::error::StorageResult;
use crate::redis_stock::Keys;
use crate::sync::{SyncMode, SyncedKey};
use redis::Script;
use sf_routing::{LocationId, ProductId};
use std::sync::LazyLock;

pub const SOURCE: &str = include_str!("../../lua/sync.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// Stock keys of one location to set from MySQL.
#[derive(Debug, Clone, Copy)]
pub struct SyncKeys<'a> {
    pub loc: LocationId,
    pub mode: SyncMode,
    /// Each product with its MySQL on-hand value.
    pub stock: &'a [(ProductId, i64)],
    /// `(orderId, kind)` of the events still in the stream that MySQL already applied.
    pub applied: &'a [(String, String)],
    /// The epoch marker's value if the location has none yet (now, RFC 3339).
    pub loaded_at: &'a str,
}

impl SyncKeys<'_> {
    /// KEYS and ARGV in the order `sync.lua` reads them.
    pub fn invocation(&self, keys: &Keys) -> Invocation {
        let join = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>().join(",");
        let mut inv = Invocation::default();
        inv.key(keys.stream(self.loc));
        for (p, _) in self.stock {
            inv.key(keys.stock(self.loc, *p));
        }
        inv.key(keys.epoch(self.loc));
        inv.arg(match self.mode {
            SyncMode::Load => "load",
            SyncMode::Repair => "repair",
        })
        .arg(join(&mut self.stock.iter().map(|(p, _)| p.to_string())))
        .arg(join(&mut self.stock.iter().map(|(_, v)| v.to_string())))
        .arg(join(
            &mut self.applied.iter().map(|(o, t)| format!("{o}:{t}")),
        ))
        .arg(self.loaded_at);
        inv
    }

    /// Answers the keys, and the location's epoch marker.
    pub async fn run(
        &self,
        keys: &Keys,
        conn: &mut GuardedConn,
    ) -> StorageResult<(Vec<SyncedKey>, String)> {
        let (reply, marker): (Vec<i64>, String) = self.invocation(keys).run(&SCRIPT, conn).await?;
        Ok((decode(&reply, self.stock.iter().map(|(p, _)| *p))?, marker))
    }

    /// [`SyncKeys::run`], then `WAIT` on the same connection: also answers how many replicas
    /// hold the keys it set.
    pub async fn run_replicated(
        &self,
        keys: &Keys,
        conn: &mut GuardedConn,
        replication: super::Replication,
    ) -> StorageResult<(Vec<SyncedKey>, String, u32)> {
        let ((reply, marker), held): ((Vec<i64>, String), u32) = self
            .invocation(keys)
            .run_replicated(&SCRIPT, conn, replication)
            .await?;
        Ok((
            decode(&reply, self.stock.iter().map(|(p, _)| *p))?,
            marker,
            held,
        ))
    }
}

/// Decodes the reply for `products` (in KEYS order).
pub fn decode(
    reply: &[i64],
    products: impl ExactSizeIterator<Item = ProductId>,
) -> StorageResult<Vec<SyncedKey>> {
    if reply.len() != products.len() * 4 {
        return Err(unexpected(
            "sync",
            format_args!(
                "{} values for {} keys: {reply:?}",
                reply.len(),
                products.len()
            ),
        ));
    }
    products
        .zip(reply.chunks_exact(4))
        .map(|(product, c)| match *c {
            [present @ (0 | 1), before, expected, changed @ (0 | 1)]
                if present == 1 || before == 0 =>
            {
                Ok(SyncedKey {
                    product,
                    before: (present == 1).then_some(before),
                    expected,
                    changed: changed == 1,
                })
            }
            _ => Err(unexpected(
                "sync",
                format_args!("{c:?} for product {product}"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64) -> ProductId {
        ProductId::new_unchecked(id)
    }

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let stock = [(p(3), 10), (p(9), 0), (p(12), -1)];
        let applied = [
            ("4-a".to_owned(), "R".to_owned()),
            ("4-b".to_owned(), "C".to_owned()),
        ];
        let keys = Keys::new("t:");
        for (mode, arg) in [(SyncMode::Load, "load"), (SyncMode::Repair, "repair")] {
            let inv = SyncKeys {
                loc: LocationId::new_unchecked(4),
                mode,
                stock: &stock,
                applied: &applied,
                loaded_at: "2026-01-02T03:04:05.006Z",
            }
            .invocation(&keys);
            assert_eq!(
                inv.keys,
                [
                    "t:{L4}:ev",
                    "t:{L4}:s:3",
                    "t:{L4}:s:9",
                    "t:{L4}:s:12",
                    "t:{L4}:epoch"
                ]
            );
            assert_eq!(
                inv.args,
                [
                    arg,
                    "3,9,12",
                    "10,0,-1",
                    "4-a:R,4-b:C",
                    "2026-01-02T03:04:05.006Z"
                ]
            );
        }
    }

    #[test]
    fn no_applied_events_is_an_empty_argument() {
        let inv = SyncKeys {
            loc: LocationId::new_unchecked(4),
            mode: SyncMode::Load,
            stock: &[(p(3), 10)],
            applied: &[],
            loaded_at: "t",
        }
        .invocation(&Keys::new("t:"));
        assert_eq!(inv.args, ["load", "3", "10", "", "t"]);
    }

    #[test]
    fn decodes_one_key_per_four_values() {
        let reply = [0, 0, 8, 1, 1, 5, 5, 0, 1, 7, 4, 1];
        let keys = decode(&reply, [p(3), p(9), p(12)].into_iter()).unwrap();
        assert_eq!(
            keys,
            [
                SyncedKey {
                    product: p(3),
                    before: None,
                    expected: 8,
                    changed: true
                },
                SyncedKey {
                    product: p(9),
                    before: Some(5),
                    expected: 5,
                    changed: false
                },
                SyncedKey {
                    product: p(12),
                    before: Some(7),
                    expected: 4,
                    changed: true
                },
            ]
        );
        assert!(decode(&[], std::iter::empty()).unwrap().is_empty());
    }

    #[test]
    fn refuses_malformed_replies() {
        for reply in [
            &[][..],
            &[1, 5, 5],
            &[1, 5, 5, 0, 1],
            &[2, 5, 5, 0],
            &[1, 5, 5, 2],
            &[-1, 5, 5, 0],
            &[0, 3, 5, 1],
        ] {
            let e = decode(reply, [p(3)].into_iter()).unwrap_err();
            assert!(e.to_string().contains("sync.lua"), "{reply:?}: {e}");
        }
    }
}
