//! Turning a hold into an order: under the hold's row lock, a `CONFIRMED` order on the DB-lock
//! path is created from the hold's lines, location and prices, in the transaction that moves
//! the units from `reserved` to `committed`. Nothing frees them in between, and `available` does
//! not move, so neither does Redis.

use super::decide::HoldStatus;
use super::{rows, Holds};
use crate::access::{Actor, Attribution};
use crate::db_lock::Placed;
use crate::error::{StorageError, StorageResult};
use crate::infra::mysql::with_retry;
use crate::model::{Order, OrderPath, OrderStatus};
use crate::orders::build::{build_order, ready_by};
use crate::orders::idempotency::{claim_mysql, complete_mysql, Claim, IdempotencyRequest};
use crate::orders::ledger::{convert_reserved, insert_order_rows};
use crate::Storage;
use sf_routing::{Candidate, Coordinates, DeliveryType, Destination, OrderLines};

impl Holds<'_> {
    /// Converts an active hold into its order (`CONFIRMED`, committed before the answer). The
    /// same hold converted again, by anyone, answers the same order; an expired or released
    /// hold is refused (409) and nothing is created.
    #[tracing::instrument(skip(self, idempotency))]
    pub async fn convert(
        &self,
        hold_id: &str,
        idempotency: Option<&IdempotencyRequest>,
    ) -> StorageResult<Placed> {
        let deadline = self.db_deadline();
        let converted = with_retry("convert hold", || {
            self.try_convert(hold_id, idempotency, deadline)
        })
        .await?;
        match converted {
            Ok(placed) => Ok(placed),
            Err(order_id) => match self.order_from_mysql(&order_id).await? {
                Some(order) => Ok(Placed::Replayed(order)),
                None => Err(StorageError::internal(format!(
                    "hold {hold_id} names order {order_id}, which MySQL does not hold"
                ))),
            },
        }
    }
}

impl Storage {
    /// One attempt: the order created, or the id of the order the hold became before.
    async fn try_convert(
        &self,
        hold_id: &str,
        idempotency: Option<&IdempotencyRequest>,
        deadline: tokio::time::Instant,
    ) -> StorageResult<Result<Placed, String>> {
        let statements = async {
            let mut tx = self.begin().await?;
            if let Some(idem) = idempotency {
                if let Claim::Replay(order) =
                    claim_mysql(&mut tx, idem, self.config.idempotency_ttl_secs).await?
                {
                    tx.rollback().await?;
                    return Ok(Err(Ok(Placed::Replayed(*order))));
                }
            }
            let row = rows::row(&mut tx, hold_id, true).await?;
            if row.stored()? == HoldStatus::Converted {
                tx.rollback().await?;
                return Ok(Err(Err(row.order_id.clone().unwrap_or_default())));
            }
            row.refuse_inactive()?;
            let items = rows::lines(&mut tx, hold_id).await?;
            let order = self.order_of(&row, &items)?;
            insert_order_rows(&mut tx, &[&order]).await?;
            let units: Vec<_> = rows::deltas(&items, 1);
            // Converted by the hold's channel, whoever sent the request.
            let by = Attribution::of(Actor::of_channel(row.channel_id));
            convert_reserved(&mut tx, row.location_id, &units, &order.order_id, &by).await?;
            rows::set_status(
                &mut tx,
                hold_id,
                HoldStatus::Converted,
                Some(&order.order_id),
            )
            .await?;
            if let Some(idem) = idempotency {
                complete_mysql(&mut tx, idem, &order).await?;
            }
            Ok(Ok((tx, order)))
        };
        match self.in_time(deadline, statements).await? {
            Ok((tx, order)) => {
                // `available` does not move: Redis has nothing to learn.
                self.commit_in_time(tx).await?;
                Ok(Ok(Placed::New(order)))
            }
            Err(done) => Ok(done),
        }
    }

    /// The order a hold becomes: its lines, location, destination and prices, shaped as any
    /// DB-lock order placed now (a pickup gets its code and today's `readyBy`).
    fn order_of(
        &self,
        row: &rows::HoldRow,
        items: &[crate::model::OrderItem],
    ) -> StorageResult<Order> {
        let bad = |e: sf_routing::DomainError| {
            StorageError::internal(format!("hold {} cannot be read back: {e}", row.id))
        };
        let address = row
            .address()
            .map(|a| Coordinates::new(a.latitude, a.longitude))
            .transpose()
            .map_err(bad)?;
        let loc = row.location_id;
        let destination = match (row.delivery(), address) {
            (DeliveryType::Pickup, address) => Destination::Pickup {
                store: loc,
                address,
            },
            (DeliveryType::SameDay, Some(address)) => Destination::SameDay {
                address,
                radius_km: self.config.same_day_radius_km,
            },
            (_, Some(address)) => Destination::Normal { address },
            (_, None) => {
                return Err(StorageError::internal(format!(
                    "{} hold {} has no address",
                    row.delivery_type, row.id
                )))
            }
        };
        let lines = OrderLines::parse(
            items
                .iter()
                .map(|i| (i.product_id as i64, i64::from(i.quantity))),
        )
        .map_err(bad)?;
        let prices: Vec<i64> = items.iter().map(|i| i.unit_price).collect();
        let mut order = build_order(
            Order::new_id(loc.get()),
            OrderStatus::Confirmed,
            OrderPath::DbLock,
            &destination,
            Candidate {
                location: loc,
                distance_km: row.distance_km,
            },
            &lines,
            &prices,
            row.channel_id,
        );
        let locations = self.catalog().locations();
        order.fulfillment.ready_by =
            ready_by(&locations.index, &destination, jiff::Timestamp::now());
        Ok(order)
    }
}
