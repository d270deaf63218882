//! `sync.lua`: sets stock keys from MySQL at a consistent point (load missing keys, or repair
//! keys that drifted). Full contract: the header of `persistence/lua/sync.lua`.
//!
//! - KEYS: event stream, the stock key of each product, then the location's epoch marker.
//! - ARGV: the mode (`load` or `repair`, see [`SyncMode`]), the product ids, their values counted
//!   so far (MySQL's on-hand net of the unapplied events the caller read; both comma separated,
//!   in KEYS order), the last stream id the caller read, the marker's value (now) if it is
//!   missing, the marker as the caller saw it, and the stock effect of each event kind MySQL has
//!   not applied ([`effects_arg`]). What counts as applied is decided in Rust alone
//!   (`orders/applied.rs`): the script is handed its results.
//! - Reply: four integers per key — present (1/0), before (0 when missing), expected, changed
//!   (1/0) — decoded into one [`SyncedKey`] per product; then the location's epoch marker. Or
//!   [`Synced::Moved`]: the marker changed while the caller read, and nothing was set.

use super::{unexpected, Invocation};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use crate::infra::keys::Keys;
use crate::orders::applied::effects_arg;
use crate::recovery::sync::{SyncMode, SyncedKey};
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
    /// Each product with its value counted so far: MySQL's on-hand, minus the units of the
    /// reservations MySQL has not applied among the stream entries up to `read_to`, plus those of
    /// such cancels.
    pub counted: &'a [(ProductId, i64)],
    /// The id of the last stream entry the caller read (`0-0`: none); the script counts the
    /// entries after it.
    pub read_to: &'a str,
    /// The epoch marker's value if the location has none yet (now, RFC 3339).
    pub loaded_at: &'a str,
    /// The marker as the caller saw it before reading the stream (`None`: missing).
    pub marker_seen: Option<&'a str>,
}

/// What `sync.lua` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The keys, and the location's epoch marker.
    Set(Vec<SyncedKey>, String),
    /// The marker is not the one the caller saw (now this, `None`: missing): Redis lost the
    /// location's data while the caller read the stream, or another instance loaded it. Nothing
    /// was set; read again.
    Moved(Option<String>),
}

impl SyncKeys<'_> {
    /// KEYS and ARGV in the order `sync.lua` reads them.
    pub fn invocation(&self, keys: &Keys) -> Invocation {
        let join = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>().join(",");
        let mut inv = Invocation::default();
        inv.key(keys.stream(self.loc));
        for (p, _) in self.counted {
            inv.key(keys.stock(self.loc, *p));
        }
        inv.key(keys.epoch(self.loc));
        inv.arg(match self.mode {
            SyncMode::Load => "load",
            SyncMode::Repair => "repair",
        })
        .arg(join(&mut self.counted.iter().map(|(p, _)| p.to_string())))
        .arg(join(&mut self.counted.iter().map(|(_, v)| v.to_string())))
        .arg(self.read_to)
        .arg(self.loaded_at)
        .arg(self.marker_seen.unwrap_or(""))
        .arg(effects_arg());
        inv
    }

    pub async fn run(&self, keys: &Keys, conn: &mut GuardedConn) -> StorageResult<Synced> {
        let reply: (i64, Vec<i64>, String) = self.invocation(keys).run(&SCRIPT, conn).await?;
        self.decode(reply)
    }

    /// [`SyncKeys::run`], then `WAIT` on the same connection: also answers how many replicas
    /// hold the keys it set.
    pub async fn run_replicated(
        &self,
        keys: &Keys,
        conn: &mut GuardedConn,
        replication: super::Replication,
    ) -> StorageResult<(Synced, u32)> {
        let (reply, held): ((i64, Vec<i64>, String), u32) = self
            .invocation(keys)
            .run_replicated(&SCRIPT, conn, replication)
            .await?;
        Ok((self.decode(reply)?, held))
    }

    fn decode(&self, (code, reply, marker): (i64, Vec<i64>, String)) -> StorageResult<Synced> {
        match code {
            1 => Ok(Synced::Set(
                decode(&reply, self.counted.iter().map(|(p, _)| *p))?,
                marker,
            )),
            0 if reply.is_empty() => Ok(Synced::Moved((!marker.is_empty()).then_some(marker))),
            _ => Err(unexpected("sync", (code, reply, marker))),
        }
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
        let counted = [(p(3), 10), (p(9), 0), (p(12), -1)];
        let keys = Keys::new("t:");
        for (mode, arg) in [(SyncMode::Load, "load"), (SyncMode::Repair, "repair")] {
            let inv = SyncKeys {
                loc: LocationId::new_unchecked(4),
                mode,
                counted: &counted,
                read_to: "1700000000000-3",
                loaded_at: "2026-01-02T03:04:05.006Z",
                marker_seen: Some("2026-01-01T00:00:00.000Z"),
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
                    "1700000000000-3",
                    "2026-01-02T03:04:05.006Z",
                    "2026-01-01T00:00:00.000Z",
                    "R:-1,C:1"
                ]
            );
        }
    }

    /// Product 3 counted at 10.
    static THREE: [(ProductId, i64); 1] = [(ProductId::new_unchecked(3), 10)];

    /// A first load of product 3 at location 4, the location's marker not there yet.
    fn first_load() -> SyncKeys<'static> {
        SyncKeys {
            loc: LocationId::new_unchecked(4),
            mode: SyncMode::Load,
            counted: &THREE,
            read_to: "0-0",
            loaded_at: "t",
            marker_seen: None,
        }
    }

    #[test]
    fn a_missing_marker_is_an_empty_argument() {
        let inv = first_load().invocation(&Keys::new("t:"));
        assert_eq!(inv.args, ["load", "3", "10", "0-0", "t", "", "R:-1,C:1"]);
    }

    #[test]
    fn a_moved_marker_sets_nothing() {
        let sync = first_load();
        assert_eq!(
            sync.decode((0, vec![], "m".into())).unwrap(),
            Synced::Moved(Some("m".into()))
        );
        assert_eq!(
            sync.decode((0, vec![], String::new())).unwrap(),
            Synced::Moved(None)
        );
        assert_eq!(
            sync.decode((1, vec![1, 5, 5, 0], "m".into())).unwrap(),
            Synced::Set(
                vec![SyncedKey {
                    product: p(3),
                    before: Some(5),
                    expected: 5,
                    changed: false
                }],
                "m".into()
            )
        );
        assert!(sync.decode((0, vec![1], "m".into())).is_err());
        assert!(sync.decode((2, vec![], "m".into())).is_err());
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
