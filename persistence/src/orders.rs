//! Reading an order of any path: MySQL first, then the Redis record of an order not yet
//! persisted. A Redis-path cancel that MySQL has not seen yet shows as `CANCELLED` at once.

use crate::error::{StoreError, StoreResult};
use crate::model::{Address, Order, OrderItem, OrderPath, OrderStatus};
use crate::Store;
use sf_routing::{DeliveryType, LocationId};
use sqlx::Row;

impl Store {
    pub async fn order_from_mysql(&self, order_id: &str) -> StoreResult<Option<Order>> {
        let Some(r) = sqlx::query(
            "SELECT id, CAST(path AS CHAR) AS path, CAST(delivery_type AS CHAR) AS delivery_type, \
             CAST(status AS CHAR) AS status, location_id, distance_km, delivery_latitude, \
             delivery_longitude, total_amount, \
             CAST(UNIX_TIMESTAMP(accepted_at) * 1000 AS SIGNED) AS accepted_ms \
             FROM orders WHERE id = ?",
        )
        .bind(order_id)
        .fetch_optional(&self.db)
        .await?
        else {
            return Ok(None);
        };
        let bad = |what: &str| StoreError::Internal(format!("bad {what} in order {order_id}"));
        let lat: Option<f64> = r.try_get("delivery_latitude")?;
        let lon: Option<f64> = r.try_get("delivery_longitude")?;
        let items = sqlx::query(
            "SELECT product_id, quantity, unit_price FROM order_lines WHERE order_id = ? ORDER BY product_id",
        )
        .bind(order_id)
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|l| {
            Ok(OrderItem {
                product_id: l.try_get("product_id")?,
                quantity: l.try_get::<i32, _>("quantity")? as u32,
                unit_price: l.try_get("unit_price")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(Order {
            order_id: r.try_get("id")?,
            status: match r.try_get::<String, _>("status")?.as_str() {
                "CANCELLED" => OrderStatus::Cancelled,
                _ => OrderStatus::Confirmed,
            },
            path: OrderPath::parse(&r.try_get::<String, _>("path")?).ok_or_else(|| bad("path"))?,
            delivery_type: DeliveryType::parse(&r.try_get::<String, _>("delivery_type")?)
                .ok_or_else(|| bad("delivery type"))?,
            fulfillment_location_id: r.try_get("location_id")?,
            distance_km: r.try_get("distance_km")?,
            delivery_address: lat.zip(lon).map(|(latitude, longitude)| Address {
                latitude,
                longitude,
            }),
            items,
            total_amount: r.try_get("total_amount")?,
            accepted_at_ms: r.try_get("accepted_ms")?,
        }))
    }

    /// An order of any path, with its current status.
    pub async fn get_order(&self, order_id: &str) -> StoreResult<Order> {
        let loc = Order::location_of(order_id)
            .map(LocationId::new_unchecked)
            .ok_or_else(|| StoreError::UnknownOrder(order_id.to_owned()))?;
        let persisted = self.order_from_mysql(order_id).await?;
        match persisted {
            Some(order)
                if order.path != OrderPath::Redis || order.status == OrderStatus::Cancelled =>
            {
                Ok(order)
            }
            persisted => {
                let (state, json) = self.redis_record(loc, order_id).await?;
                match (persisted, state.as_deref(), json) {
                    (Some(order), Some("C"), _) => Ok(Order {
                        status: OrderStatus::Cancelled,
                        ..order
                    }),
                    (Some(order), _, _) => Ok(order),
                    (None, state, Some(json)) => {
                        let order: Order = serde_json::from_str(&json)?;
                        Ok(Order {
                            status: if state == Some("C") {
                                OrderStatus::Cancelled
                            } else {
                                OrderStatus::Accepted
                            },
                            ..order
                        })
                    }
                    (None, _, None) => Err(StoreError::UnknownOrder(order_id.to_owned())),
                }
            }
        }
    }
}
