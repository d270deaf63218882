//! The store POS: a sale is a DB-lock order with path `POS` at the store itself (see
//! [`crate::db_lock`]); a return cancels it. A terminal acts for its own store only, so a store
//! can return only its own sales.

use super::DbLock;
use crate::access::Actor;
use crate::error::{Refusal, StorageResult};
use crate::model::{Order, OrderPath};
use sf_routing::LocationId;

impl DbLock<'_> {
    /// Cancels (returns) a POS sale of `store`. A sale of another store, an order of another
    /// path, or no order at all is "no such sale" here (404), so a store learns nothing about
    /// other stores' orders. The stock comes back exactly once, however often this is called.
    /// `by`: the store key returning it, whom the ledger names.
    pub async fn cancel_pos_sale(
        &self,
        store: LocationId,
        order_id: &str,
        by: Actor,
    ) -> StorageResult<Order> {
        let ours = self
            .order_from_mysql(order_id)
            .await?
            .is_some_and(|o| o.path == OrderPath::Pos && o.fulfillment_location_id == store.get());
        if !ours {
            return Err(Refusal::NoSuchSale {
                store,
                order: order_id.to_owned(),
            }
            .into());
        }
        self.cancel(order_id, Some(by)).await
    }
}
