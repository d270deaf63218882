//! The SQL of a hold: its row and lines read (optionally under the row's lock), and written.

use super::decide::{effective, not_active, HoldStatus};
use super::Hold;
use crate::error::{Refusal, StorageResult};
use crate::model::{Address, OrderItem};
use sf_routing::{DeliveryType, LocationId, ProductId};
use sqlx::MySqlConnection;

/// A hold's row as read, with MySQL's clock at the read (the one clock every expiry decision
/// uses).
#[derive(sqlx::FromRow)]
pub(crate) struct HoldRow {
    pub id: String,
    pub delivery_type: String,
    pub status: String,
    pub location_id: LocationId,
    pub distance_km: Option<f64>,
    pub delivery_latitude: Option<f64>,
    pub delivery_longitude: Option<f64>,
    pub total_amount: i64,
    pub order_id: Option<String>,
    pub expires_ms: i64,
    pub created_ms: i64,
    pub now_ms: i64,
    pub channel_id: Option<u64>,
}

impl HoldRow {
    /// Its state as last written.
    pub fn stored(&self) -> StorageResult<HoldStatus> {
        HoldStatus::parse(&self.status).ok_or_else(|| {
            crate::error::StorageError::internal(format!(
                "hold {} has an unknown status {}",
                self.id, self.status
            ))
        })
    }

    /// Its state at the read ([`effective`]).
    pub fn now(&self) -> StorageResult<HoldStatus> {
        Ok(effective(self.stored()?, self.expires_ms, self.now_ms))
    }

    /// Refuses acting on it unless it is active at the read, as a conversion or an extension
    /// sees it ([`not_active`]).
    pub fn refuse_inactive(&self) -> StorageResult<()> {
        match not_active(&self.id, self.now()?, self.order_id.as_deref()) {
            Some(refused) => Err(refused.into()),
            None => Ok(()),
        }
    }

    pub fn delivery(&self) -> DeliveryType {
        match self.delivery_type.as_str() {
            "SAME_DAY" => DeliveryType::SameDay,
            "PICKUP" => DeliveryType::Pickup,
            _ => DeliveryType::Normal,
        }
    }

    pub fn address(&self) -> Option<Address> {
        Some(Address {
            latitude: self.delivery_latitude?,
            longitude: self.delivery_longitude?,
        })
    }
}

/// Reads a hold's row; `lock` takes its row lock (`FOR UPDATE`) for the caller's transaction.
pub(crate) async fn row(
    conn: &mut MySqlConnection,
    hold_id: &str,
    lock: bool,
) -> StorageResult<HoldRow> {
    let sql = format!(
        "SELECT id, CAST(delivery_type AS CHAR) AS delivery_type, CAST(status AS CHAR) AS status, \
         location_id, distance_km, delivery_latitude, delivery_longitude, total_amount, order_id, \
         CAST(UNIX_TIMESTAMP(expires_at) * 1000 AS SIGNED) AS expires_ms, \
         CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) AS created_ms, \
         CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS now_ms, channel_id \
         FROM holds WHERE id = ?{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(&sql)
        .bind(hold_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Refusal::UnknownHold(hold_id.to_owned()).into())
}

/// A hold's lines, in product order.
pub(crate) async fn lines(
    conn: &mut MySqlConnection,
    hold_id: &str,
) -> StorageResult<Vec<OrderItem>> {
    Ok(sqlx::query_as(
        "SELECT product_id, quantity, unit_price FROM hold_lines WHERE hold_id = ? \
         ORDER BY product_id",
    )
    .bind(hold_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// The hold as callers read it.
pub(crate) fn hold_of(row: &HoldRow, items: Vec<OrderItem>) -> StorageResult<Hold> {
    Ok(Hold {
        hold_id: row.id.clone(),
        status: row.now()?,
        order_id: row.order_id.clone(),
        delivery_type: row.delivery(),
        fulfillment_location_id: row.location_id.get(),
        distance_km: row.distance_km,
        delivery_address: row.address(),
        items,
        total_amount: row.total_amount,
        expires_at_ms: row.expires_ms,
        created_at_ms: row.created_ms,
        channel: row.channel_id,
    })
}

/// Reads a hold with its lines.
pub(crate) async fn read(
    conn: &mut MySqlConnection,
    hold_id: &str,
    lock: bool,
) -> StorageResult<Hold> {
    let r = row(&mut *conn, hold_id, lock).await?;
    let items = lines(&mut *conn, hold_id).await?;
    hold_of(&r, items)
}

/// The units of a hold's lines as signed stock deltas (`sign` 1 gives them back to `available`,
/// -1 takes them), in product order.
pub(crate) fn deltas(items: &[OrderItem], sign: i64) -> Vec<(ProductId, i64)> {
    items
        .iter()
        .map(|i| {
            (
                ProductId::new_unchecked(i.product_id),
                sign * i64::from(i.quantity),
            )
        })
        .collect()
}

/// Writes a hold's new state, and when it leaves `ACTIVE`.
pub(crate) async fn set_status(
    conn: &mut MySqlConnection,
    hold_id: &str,
    status: HoldStatus,
    order_id: Option<&str>,
) -> StorageResult<()> {
    sqlx::query(
        "UPDATE holds SET status = ?, order_id = COALESCE(?, order_id), \
         ended_at = IF(? = 'ACTIVE', NULL, NOW(3)) WHERE id = ?",
    )
    .bind(status.as_str())
    .bind(order_id)
    .bind(status.as_str())
    .bind(hold_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
