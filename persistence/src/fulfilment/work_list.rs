//! A store's work list: its orders at one step, oldest first, keyset-paged on the index
//! `ix_orders_work (location_id, fulfillment, accepted_at, id)`. The store never sees a pickup
//! code here: the customer shows it.

use super::Fulfilment;
use crate::error::{Refusal, StorageResult};
use crate::model::{FulfillmentStatus, Order};
use sf_routing::LocationId;

/// The steps a store works from: orders to prepare (or hand to a courier), and pickups waiting
/// to be collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkListStep {
    Unfulfilled,
    ReadyForPickup,
}

impl WorkListStep {
    fn status(self) -> FulfillmentStatus {
        match self {
            Self::Unfulfilled => FulfillmentStatus::Unfulfilled,
            Self::ReadyForPickup => FulfillmentStatus::ReadyForPickup,
        }
    }
}

/// A page of a store's work list.
#[derive(Debug, Clone)]
pub struct WorkList {
    /// Oldest first, without pickup codes.
    pub orders: Vec<Order>,
    /// The `after` of the next page, when there is one.
    pub next: Option<String>,
}

/// The largest page.
pub const MAX_LIMIT: u32 = 100;

impl Fulfilment<'_> {
    /// The store's persisted, not cancelled orders at `step`, oldest first, after the order
    /// `after` (the last of the previous page).
    #[tracing::instrument(skip(self))]
    pub async fn work_list(
        &self,
        store: LocationId,
        step: WorkListStep,
        after: Option<&str>,
        limit: u32,
    ) -> StorageResult<WorkList> {
        let limit = limit.clamp(1, MAX_LIMIT);
        self.in_time(self.db_deadline(), async {
            let from: Option<(chrono::NaiveDateTime, String)> = match after {
                None => None,
                Some(id) => Some(
                    sqlx::query_scalar::<_, chrono::NaiveDateTime>(
                        "SELECT accepted_at FROM orders WHERE id = ? AND location_id = ?",
                    )
                    .bind(id)
                    .bind(store)
                    .fetch_optional(&self.db)
                    .await?
                    .map(|at| (at, id.to_owned()))
                    .ok_or_else(|| {
                        Refusal::Invalid(format!("after: {id} is no order of store {store}"))
                    })?,
                ),
            };
            let mut q = sqlx::QueryBuilder::new("SELECT id FROM orders WHERE location_id = ");
            q.push_bind(store)
                .push(" AND fulfillment = ")
                .push_bind(step.status().as_str())
                .push(" AND status = 'CONFIRMED'");
            if let Some((at, id)) = &from {
                q.push(" AND (accepted_at > ")
                    .push_bind(*at)
                    .push(" OR (accepted_at = ")
                    .push_bind(*at)
                    .push(" AND id > ")
                    .push_bind(id.as_str())
                    .push("))");
            }
            q.push(" ORDER BY accepted_at, id LIMIT ")
                .push_bind(limit + 1);
            let mut ids: Vec<String> = q.build_query_scalar().fetch_all(&self.db).await?;
            let more = ids.len() > limit as usize;
            ids.truncate(limit as usize);
            let mut orders = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(o) = self.order_from_mysql(id).await? {
                    orders.push(Order {
                        fulfillment: o.fulfillment.clone().without_code(),
                        ..o
                    });
                }
            }
            Ok(WorkList {
                next: more.then(|| ids.last().cloned()).flatten(),
                orders,
            })
        })
        .await
    }
}
