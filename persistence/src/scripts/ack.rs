//! `ack.lua`: after the consumer committed a batch to MySQL, acknowledges and removes its events
//! of one location's stream. Full contract: the header of `persistence/lua/ack.lua`.
//!
//! - KEYS: event stream, then the order record of each event.
//! - ARGV: consumer group ([`GROUP`]), seconds a persisted order's record stays, the kinds of the
//!   events as one string (a character each), then the stream id of each event, in the order of
//!   its record's key.
//! - Reply: the number of events acknowledged (fewer than given when some were no longer pending).

use super::{unexpected, Invocation};
use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use crate::infra::keys::{Keys, GROUP};
use redis::Script;
use sf_routing::LocationId;
use std::sync::LazyLock;

pub const SOURCE: &str = include_str!("../../lua/ack.lua");

/// The most events one `ack.lua` call acknowledges.
pub const ACK_CHUNK: usize = 64;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// One event to acknowledge.
#[derive(Debug, Clone, Copy)]
pub struct AckEvent<'a> {
    pub order_id: &'a str,
    pub stream_id: &'a str,
    /// `R` reservation, `C` cancel; any other kind is acknowledged without touching the record.
    pub kind: char,
}

/// The events of one location's stream that MySQL now holds.
#[derive(Debug, Clone, Copy)]
pub struct Ack<'a> {
    pub loc: LocationId,
    /// How long an order record stays for status look-ups once persisted.
    pub record_ttl_secs: u64,
    pub events: &'a [AckEvent<'a>],
}

impl Ack<'_> {
    /// KEYS and ARGV in the order `ack.lua` reads them.
    pub fn invocation(&self, keys: &Keys) -> Invocation {
        let mut inv = Invocation::default();
        // One byte per event: a kind the script does not act on is sent as `-`.
        let kinds: String = self
            .events
            .iter()
            .map(|e| match e.kind {
                k @ ('R' | 'C') => k,
                _ => '-',
            })
            .collect();
        inv.key(keys.stream(self.loc))
            .arg(GROUP)
            .arg(self.record_ttl_secs)
            .arg(kinds);
        for e in self.events {
            inv.key(keys.order(self.loc, e.order_id)).arg(e.stream_id);
        }
        inv
    }

    /// Answers how many of the events were acknowledged. The events go in calls of at most
    /// [`ACK_CHUNK`], one after the other: a script holds Redis while it runs, and a batch of
    /// hundreds in one call would hold up every order for milliseconds.
    pub async fn run(&self, keys: &Keys, conn: &mut GuardedConn) -> StorageResult<usize> {
        let mut acked = 0;
        for events in self.events.chunks(ACK_CHUNK) {
            let part = Ack { events, ..*self };
            let reply: i64 = part.invocation(keys).run(&SCRIPT, conn).await?;
            acked += decode(reply, events.len())?;
        }
        Ok(acked)
    }
}

/// Decodes the reply to an acknowledgement of `events` events.
pub fn decode(reply: i64, events: usize) -> StorageResult<usize> {
    usize::try_from(reply)
        .ok()
        .filter(|n| *n <= events)
        .ok_or_else(|| unexpected("ack", format_args!("{reply} for {events} events")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arguments_follow_the_header() {
        let events = [
            AckEvent {
                order_id: "2-a",
                stream_id: "1700000000000-0",
                kind: 'R',
            },
            AckEvent {
                order_id: "2-b",
                stream_id: "1700000000001-3",
                kind: 'C',
            },
            AckEvent {
                order_id: "2-c",
                stream_id: "1700000000002-0",
                kind: 'é',
            },
        ];
        let inv = Ack {
            loc: LocationId::new_unchecked(2),
            record_ttl_secs: 60,
            events: &events,
        }
        .invocation(&Keys::new("t:"));
        assert_eq!(
            inv.keys,
            ["t:{L2}:ev", "t:{L2}:o:2-a", "t:{L2}:o:2-b", "t:{L2}:o:2-c"]
        );
        assert_eq!(
            inv.args,
            [
                GROUP,
                "60",
                "RC-",
                "1700000000000-0",
                "1700000000001-3",
                "1700000000002-0"
            ]
        );
    }

    #[test]
    fn decodes_the_count() {
        assert_eq!(decode(2, 2).unwrap(), 2);
        assert_eq!(decode(0, 2).unwrap(), 0);
        assert_eq!(decode(0, 0).unwrap(), 0);
    }

    #[test]
    fn refuses_malformed_replies() {
        for (reply, events) in [(-1, 2), (3, 2), (1, 0)] {
            let e = decode(reply, events).unwrap_err();
            assert!(e.to_string().contains("ack.lua"), "{reply}: {e}");
        }
    }
}
