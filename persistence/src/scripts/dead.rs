//! `dead.lua`: moves one event that cannot be persisted to its location's dead-letter stream,
//! with its error. Full contract: the header of `persistence/lua/dead.lua`.
//!
//! - KEYS: event stream, dead-letter stream, the event's order record (may not exist).
//! - ARGV: consumer group ([`GROUP`]), the event's stream id, the error, and for a reservation
//!   the rejection reason to give its order (`''` for any other event).
//! - Reply: 1 moved, 0 no longer in the stream.

use super::{unexpected, Invocation};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use crate::infra::keys::{Keys, GROUP};
use redis::Script;
use sf_routing::LocationId;
use std::sync::LazyLock;

pub const SOURCE: &str = include_str!("../../lua/dead.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// One event to move to the dead-letter stream.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    pub loc: LocationId,
    pub order_id: &'a str,
    pub stream_id: &'a str,
    pub error: &'a str,
    /// For a reservation, the reason its order is rejected with; `None` for any other event.
    pub reject_reason: Option<&'a str>,
}

impl DeadLetter<'_> {
    /// KEYS and ARGV in the order `dead.lua` reads them.
    pub fn invocation(&self, keys: &Keys) -> Invocation {
        let mut inv = Invocation::default();
        inv.key(keys.stream(self.loc))
            .key(keys.dead_letters(self.loc))
            .key(keys.order(self.loc, self.order_id))
            .arg(GROUP)
            .arg(self.stream_id)
            .arg(self.error)
            .arg(self.reject_reason.unwrap_or(""));
        inv
    }

    /// Answers whether the event was moved (false: it was no longer in the stream).
    pub async fn run(&self, keys: &Keys, conn: &mut GuardedConn) -> StorageResult<bool> {
        let reply: i64 = self.invocation(keys).run(&SCRIPT, conn).await?;
        decode(reply)
    }
}

pub fn decode(reply: i64) -> StorageResult<bool> {
    match reply {
        1 => Ok(true),
        0 => Ok(false),
        _ => Err(unexpected("dead", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let keys = Keys::new("t:");
        let reservation = DeadLetter {
            loc: LocationId::new_unchecked(8),
            order_id: "8-a",
            stream_id: "1700000000000-0",
            error: "boom",
            reject_reason: Some("the order could not be persisted: boom"),
        };
        let inv = reservation.invocation(&keys);
        assert_eq!(inv.keys, ["t:{L8}:ev", "t:{L8}:dead", "t:{L8}:o:8-a"]);
        assert_eq!(
            inv.args,
            [
                GROUP,
                "1700000000000-0",
                "boom",
                "the order could not be persisted: boom"
            ]
        );
        let cancel = DeadLetter {
            reject_reason: None,
            ..reservation
        };
        assert_eq!(
            cancel.invocation(&keys).args,
            [GROUP, "1700000000000-0", "boom", ""]
        );
    }

    #[test]
    fn decodes_moved_or_not() {
        assert!(decode(1).unwrap());
        assert!(!decode(0).unwrap());
        for reply in [-1, 2] {
            let e = decode(reply).unwrap_err();
            assert!(e.to_string().contains("dead.lua"), "{reply}: {e}");
        }
    }
}
