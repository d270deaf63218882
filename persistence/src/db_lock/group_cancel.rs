//! Cancels in the group-commit lanes: a cancel of an order MySQL holds waits in its location's
//! lane ([`crate::db_lock::group_commit`]) and is done in one transaction with the cancels that
//! wait beside it (each order locked and marked, one refused alone; each stock row changed once;
//! one commit step), before the lane's waiting orders.

use super::group_commit::{Answer, Work};
use crate::access::Actor;
use crate::db_lock::cancel_order_in;
use crate::error::{StorageError, StorageResult};
use crate::events::{order_changed, EventType};
use crate::infra::mysql::with_retry;
use crate::orders::ledger::{change_mysql_stock, insert_movements, Move, Reason};
use crate::Storage;
use sf_routing::{LocationId, ProductId};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// A cancel of an order the lane's location sold.
pub(crate) struct Cancelling {
    pub order_id: String,
    /// Who cancels, when not the order's own channel.
    pub by: Option<Actor>,
    pub deadline: Instant,
}

impl Storage {
    /// Cancels an order of `loc` in one transaction with the cancels that wait beside it.
    pub(crate) async fn cancel_in_group(
        &self,
        loc: LocationId,
        cancel: Cancelling,
    ) -> StorageResult<()> {
        match self.through_lane(loc, Work::Cancel(cancel)).await? {
            Answer::Cancelled(r) => r,
            _ => Err(StorageError::internal("a cancel was answered as an order")),
        }
    }

    /// Cancels a group of orders of `loc` in one transaction (retried whole when MySQL aborts
    /// it); a refused cancel is that member's answer alone.
    pub(super) async fn cancel_group(
        &self,
        loc: LocationId,
        members: &[Cancelling],
    ) -> Vec<StorageResult<()>> {
        let deadline = members
            .iter()
            .map(|m| m.deadline)
            .min()
            .unwrap_or_else(Instant::now);
        let tried = with_retry("mysql-first cancel group", || {
            self.try_cancel_group(loc, members, deadline)
        })
        .await;
        match tried {
            Ok(answers) => {
                self.groups.cancel_groups.fetch_add(1, Ordering::Relaxed);
                self.groups
                    .cancels
                    .fetch_add(members.len() as u64, Ordering::Relaxed);
                answers
            }
            // One failure answers every member as it is; each request logs it with its id.
            Err(e) => members.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// One try at a cancel group: each order's row, then the group's stock rows (in product
    /// order, like every writer), ledger entries and events, then the commit step.
    async fn try_cancel_group(
        &self,
        loc: LocationId,
        members: &[Cancelling],
        deadline: Instant,
    ) -> StorageResult<Vec<StorageResult<()>>> {
        let statements = async {
            let mut tx = self.begin().await?;
            let mut answers = Vec::with_capacity(members.len());
            let mut changes = Vec::new();
            for m in members {
                match cancel_order_in(&mut tx, &m.order_id, m.by).await {
                    Ok(change) => {
                        answers.push(Ok(()));
                        changes.extend(change);
                    }
                    Err(e @ StorageError::Refused(_)) => answers.push(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            if let Some(other) = changes.iter().find(|c| c.loc != loc) {
                return Err(StorageError::internal(format!(
                    "order {} of location {} cancelled in the lane of {loc}",
                    other.order_id, other.loc
                )));
            }
            // Per product, what each reason gives back; written in product order.
            let mut back: BTreeMap<ProductId, BTreeMap<Reason, i64>> = BTreeMap::new();
            for c in &changes {
                for (p, d) in &c.deltas {
                    *back.entry(*p).or_default().entry(c.reason).or_default() += d;
                }
            }
            for (p, by_reason) in &back {
                for (reason, d) in by_reason {
                    change_mysql_stock(&mut tx, loc, &[(*p, *d)], *reason).await?;
                }
            }
            for reason in [Reason::Cancel, Reason::PosReturn] {
                let moves: Vec<_> = changes
                    .iter()
                    .filter(|c| c.reason == reason)
                    .flat_map(|c| Move::all(loc, &c.deltas, &c.order_id, &c.by))
                    .collect();
                if !moves.is_empty() {
                    insert_movements(&mut tx, &moves, reason).await?;
                }
            }
            let ids: Vec<&str> = changes.iter().map(|c| c.order_id.as_str()).collect();
            if !ids.is_empty() {
                order_changed(&mut tx, EventType::OrderCancelled, &ids).await?;
            }
            let deltas: Vec<(ProductId, i64)> = back
                .iter()
                .map(|(p, by_reason)| (*p, by_reason.values().sum()))
                .collect();
            Ok((tx, answers, deltas))
        };
        let (tx, answers, deltas) = self.in_time(deadline, statements).await?;
        if deltas.is_empty() {
            self.commit_in_time(tx).await?;
        } else {
            // Increments are never refused, so this never answers a short product.
            self.commit_with_redis(tx, loc, &deltas).await?;
        }
        Ok(answers)
    }
}
