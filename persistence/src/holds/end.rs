//! A hold's units back to `available`: released by its customer, or expired. Each under the
//! hold's row lock, MySQL-first, so a release, the expiry job on any instance and a conversion
//! racing each other end the hold once.

use super::decide::{ending, Ending, HoldStatus};
use super::{rows, Hold, Holds};
use crate::access::{Actor, Attribution, SystemJob};
use crate::error::StorageResult;
use crate::events::{record, EventType, NewEvent};
use crate::infra::mysql::with_retry;
use crate::orders::ledger::{change_mysql_stock, insert_movements, Move, Reason};
use crate::Storage;

impl Holds<'_> {
    /// Releases an active hold: its units are available again, in MySQL and Redis, before the
    /// answer. A hold released or expired before answers as it is; one that became an order is
    /// refused (409: cancel the order instead).
    #[tracing::instrument(skip(self))]
    pub async fn release(&self, hold_id: &str) -> StorageResult<Hold> {
        let deadline = self.db_deadline();
        let (hold, _) = with_retry("release hold", || {
            self.end_hold(hold_id, Ending::Release, deadline)
        })
        .await?;
        match hold.status {
            HoldStatus::Converted => Err(crate::error::Refusal::Conflict(format!(
                "hold {hold_id} was turned into order {}; cancel that order to give its units back",
                hold.order_id.as_deref().unwrap_or("?")
            ))
            .into()),
            _ => Ok(hold),
        }
    }
}

impl Storage {
    /// Ends one hold as `want` asks, if it may ([`ending`]): under its row lock, its status is
    /// written and its units moved from `reserved` to `available`, and Redis's figure moves with
    /// them under the stock rows' locks. Answers the hold as it stands after, and whether this
    /// call ended it.
    pub(crate) async fn end_hold(
        &self,
        hold_id: &str,
        want: Ending,
        deadline: tokio::time::Instant,
    ) -> StorageResult<(Hold, bool)> {
        let statements = async {
            let mut tx = self.begin().await?;
            let row = rows::row(&mut tx, hold_id, true).await?;
            let items = rows::lines(&mut tx, hold_id).await?;
            let Some(to) = ending(row.stored()?, row.expires_ms, row.now_ms, want) else {
                tx.rollback().await?;
                return Ok((None, rows::hold_of(&row, items)?));
            };
            // A release is its channel's (the customer's); an expiry is the job's.
            let (reason, by) = match to {
                HoldStatus::Released => (Reason::HoldReleased, Actor::of_channel(row.channel_id)),
                _ => (Reason::HoldExpired, Actor::System(SystemJob::HoldExpiry)),
            };
            let by = Attribution::of(by);
            rows::set_status(&mut tx, hold_id, to, None).await?;
            let loc = row.location_id;
            let deltas = rows::deltas(&items, 1);
            change_mysql_stock(&mut tx, loc, &deltas, reason).await?;
            let moves: Vec<_> = Move::all(loc, &deltas, hold_id, &by).collect();
            insert_movements(&mut tx, &moves, reason).await?;
            let mut hold = rows::hold_of(&row, items)?;
            hold.status = to;
            if to == HoldStatus::Expired {
                let event = NewEvent::of_hold(EventType::HoldExpired, &hold)?;
                record(&mut tx, &[event]).await?;
            }
            Ok((Some((tx, loc, deltas)), hold))
        };
        let (change, hold) = self.in_time(deadline, statements).await?;
        match change {
            None => Ok((hold, false)),
            Some((tx, loc, deltas)) => {
                // Increments are never refused, so this never answers a short product.
                self.commit_with_redis(tx, loc, &deltas).await?;
                Ok((hold, true))
            }
        }
    }
}
