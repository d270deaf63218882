//! Reading an order of any path: MySQL first, then the Redis record of an order not yet
//! persisted. A Redis-path cancel that MySQL has not seen yet shows as `CANCELLED` at once, a
//! rejection as `REJECTED`. An order Redis accepted and then lost with its data (before it reached
//! MySQL) is reported as lost, not as unknown.

pub(crate) mod applied;
pub(crate) mod build;
pub(crate) mod idempotency;
pub(crate) mod ledger;

pub use idempotency::IdempotencyRequest;
pub use ledger::Reason;

use crate::error::{Refusal, StorageError, StorageResult};
use crate::events::{EventType, NewEvent};
use crate::formats::EventKind;
use crate::infra::mysql::push_list;
use crate::model::{
    Address, Fulfillment, FulfillmentStatus, Order, OrderItem, OrderPath, OrderStatus,
};
use crate::Storage;
use applied::{Held, Standing};
use sf_routing::{DeliveryType, LocationId};
use sqlx::QueryBuilder;

/// A row of `orders`, its enums read as text.
#[derive(sqlx::FromRow)]
struct OrderRow {
    id: String,
    path: OrderPath,
    delivery_type: DeliveryType,
    status: OrderStatus,
    location_id: u64,
    distance_km: Option<f64>,
    delivery_latitude: Option<f64>,
    delivery_longitude: Option<f64>,
    total_amount: i64,
    reject_reason: Option<String>,
    accepted_ms: i64,
    fulfillment: FulfillmentStatus,
    pickup_code: Option<String>,
    ready_by: Option<String>,
    ready_ms: Option<i64>,
    handed_over_ms: Option<i64>,
    cancel_reason: Option<String>,
    channel_id: Option<u64>,
}

impl OrderRow {
    fn into_order(self, items: Vec<OrderItem>) -> Order {
        Order {
            order_id: self.id,
            status: self.status,
            path: self.path,
            delivery_type: self.delivery_type,
            fulfillment_location_id: self.location_id,
            distance_km: self.distance_km,
            delivery_address: self.delivery_latitude.zip(self.delivery_longitude).map(
                |(latitude, longitude)| Address {
                    latitude,
                    longitude,
                },
            ),
            items,
            total_amount: self.total_amount,
            accepted_at_ms: self.accepted_ms,
            reason: self.reject_reason,
            fulfillment: Fulfillment {
                status: self.fulfillment,
                pickup_code: self.pickup_code,
                ready_by: self.ready_by,
                ready_at_ms: self.ready_ms,
                handed_over_at_ms: self.handed_over_ms,
                cancel_reason: self.cancel_reason,
            },
            channel: self.channel_id,
        }
    }
}

/// An order as MySQL holds it, read on `conn` (inside its transaction, if it has one).
pub(crate) async fn order_in(
    conn: &mut sqlx::MySqlConnection,
    order_id: &str,
) -> StorageResult<Option<Order>> {
    let Some(row) = sqlx::query_as::<_, OrderRow>(
        "SELECT id, CAST(path AS CHAR) AS path, CAST(delivery_type AS CHAR) AS delivery_type, \
         CAST(status AS CHAR) AS status, location_id, distance_km, delivery_latitude, \
         delivery_longitude, total_amount, reject_reason, \
         CAST(UNIX_TIMESTAMP(accepted_at) * 1000 AS SIGNED) AS accepted_ms, \
         CAST(fulfillment AS CHAR) AS fulfillment, pickup_code, ready_by, \
         CAST(UNIX_TIMESTAMP(ready_at) * 1000 AS SIGNED) AS ready_ms, \
         CAST(UNIX_TIMESTAMP(handed_over_at) * 1000 AS SIGNED) AS handed_over_ms, \
         cancel_reason, channel_id \
         FROM orders WHERE id = ?",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let items: Vec<OrderItem> = sqlx::query_as(
        "SELECT product_id, quantity, unit_price FROM order_lines WHERE order_id = ? \
         ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(row.into_order(items)))
}

crate::handle!(
    /// Orders of any path, as callers read them: taken with [`crate::Storage::orders`].
    Orders
);

impl Storage {
    pub(crate) async fn order_from_mysql(&self, order_id: &str) -> StorageResult<Option<Order>> {
        self.in_time(self.db_deadline(), async {
            let mut conn = self.db.acquire().await?;
            order_in(&mut conn, order_id).await
        })
        .await
    }

    /// Why an order is in neither store: lost with Redis's data, or unknown.
    ///
    /// An order id carries the time its request began, not the time Redis took its units: a
    /// request may wait for its stock keys to load (into the data set loaded after its id was
    /// made), and a retry with the same `Idempotency-Key` decides under the id its first attempt
    /// made. So an id made before any loss noticed since at its location was lost with Redis's
    /// data (which one is the latest of them that can still be settling); an id made after every
    /// such loss is unknown.
    pub(crate) async fn missing_order(&self, order_id: &str) -> StorageError {
        let Some(made_ms) = Order::id_time_ms(order_id) else {
            return Refusal::UnknownOrder(order_id.to_owned()).into();
        };
        // Its location is the id's prefix; a loss lists the locations it hit (none listed: all).
        let location = order_id.split_once('-').map(|(l, _)| l).unwrap_or("");
        let loss = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT CAST(UNIX_TIMESTAMP(MAX(detected_at)) * 1000 AS SIGNED) FROM redis_data_losses \
             WHERE detected_at >= FROM_UNIXTIME(? / 1000) \
             AND (locations = '' OR FIND_IN_SET(?, locations) > 0)",
        )
        .bind(made_ms)
        .bind(location)
        .fetch_one(&self.db)
        .await;
        let detected_ms: i64 = match loss {
            Ok(Some(v)) => v,
            Ok(None) => return Refusal::UnknownOrder(order_id.to_owned()).into(),
            Err(e) => return e.into(),
        };
        let at = chrono::DateTime::from_timestamp_millis(detected_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if crate::orders::build::now_ms() - detected_ms < LOSS_SETTLE_MS {
            // A consumer batch that was on its way to MySQL at the loss may still bring it in.
            return StorageError::unavailable(format!(
                "redis lost its data at {at}; whether order {order_id} reached MySQL is known within seconds; retry shortly"
            ));
        }
        Refusal::Lost(format!(
            "order {order_id} was accepted, but Redis lost its data at {at} before the order reached MySQL: it was not persisted, no stock was taken for it, and it will not be delivered; place it again"
        ))
        .into()
    }
}

impl Orders<'_> {
    /// An order of any path, with its current status.
    pub async fn get(&self, order_id: &str) -> StorageResult<Order> {
        let loc = Order::location_of(order_id)
            .ok_or_else(|| Refusal::UnknownOrder(order_id.to_owned()))?;
        let persisted = self.order_from_mysql(order_id).await?;
        match persisted {
            // MySQL has the last word, unless a cancel Redis holds is still due to reach it.
            Some(order)
                if order.path != OrderPath::Redis
                    || Standing::of(EventKind::Cancel, Some(Held::of(&order))) != Standing::Due =>
            {
                Ok(order)
            }
            persisted => {
                let record = self.redis_record(loc, order_id).await?;
                match (persisted, record) {
                    (Some(order), Some(r)) if r.state == "C" => Ok(Order {
                        status: OrderStatus::Cancelled,
                        ..order
                    }),
                    (Some(order), _) => Ok(order),
                    (None, Some(r)) => Ok(r.order()?),
                    (None, None) => Err(self.missing_order(order_id).await),
                }
            }
        }
    }

    /// The sales channel that placed an order (`None`: none did), read where it costs least: the
    /// order's Redis record while Redis holds one (so a Redis-path order's owner is known while
    /// MySQL is down), else its MySQL row. An order in neither store answers as
    /// [`Orders::get`] does (404, or 410 when lost with Redis's data), and 503 while Redis could
    /// not be asked.
    pub async fn channel_of(&self, order_id: &str) -> StorageResult<Option<u64>> {
        let loc = Order::location_of(order_id)
            .ok_or_else(|| Refusal::UnknownOrder(order_id.to_owned()))?;
        let from_redis = self.redis_record(loc, order_id).await;
        if let Ok(Some(r)) = &from_redis {
            if let Ok(order) = r.order() {
                return Ok(order.channel);
            }
        }
        let row: Option<(Option<u64>,)> = self
            .in_time(self.db_deadline(), async {
                Ok(sqlx::query_as("SELECT channel_id FROM orders WHERE id = ?")
                    .bind(order_id)
                    .fetch_optional(&self.db)
                    .await?)
            })
            .await?;
        match row {
            Some((channel,)) => Ok(channel),
            // Redis may hold its record but could not say (down, failing over): as a cancel
            // would, answer that it is unknown for now, never that there is no such order.
            None if from_redis.is_err() || !self.circuit.trusted() => Err(self.redis_down_error()),
            None => Err(self.missing_order(order_id).await),
        }
    }

    /// The most recent orders in MySQL with `status`, newest first.
    pub async fn by_status(&self, status: OrderStatus, limit: u32) -> StorageResult<Vec<Order>> {
        self.in_time(self.db_deadline(), async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM orders WHERE status = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            )
            .bind(status.as_str())
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(o) = self.order_from_mysql(&id).await? {
                    out.push(o);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Records that Redis lost the data set it loaded at `since` (once per data set, however many
    /// instances notice).
    pub async fn record_data_loss(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        locations: &[LocationId],
    ) -> StorageResult<()> {
        let list = locations
            .iter()
            .map(|l| l.get().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let sha = <sha2::Sha256 as sha2::Digest>::digest(list.as_bytes());
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT IGNORE INTO redis_data_losses (since, locations, locations_sha, detected_at) \
             VALUES (?, ?, ?, NOW(3))",
        )
        .bind(since.naive_utc())
        .bind(&list)
        .bind(sha.as_slice())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            // The orders lost are not known one by one (their records went with Redis's data):
            // the event names where and since when.
            let event = NewEvent {
                kind: EventType::OrderLost,
                subject: format!("loss:{}", inserted.last_insert_id()),
                channel: None,
                data: serde_json::value::to_raw_value(&serde_json::json!({
                    "lostSince": since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "detectedAt": chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "locations": locations.iter().map(|l| l.get()).collect::<Vec<_>>(),
                }))?,
            };
            crate::events::record(&mut tx, &[event]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A time Redis was found to have lost the data the service had loaded into it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataLoss {
    /// When the lost data set had been loaded, in ms since the Unix epoch.
    pub since_ms: i64,
    /// When the loss was noticed, in ms since the Unix epoch.
    pub detected_ms: i64,
    /// The locations whose data was lost (on a cluster, those the failed shard held).
    pub locations: Vec<u64>,
}

/// A row of `redis_data_losses`: its times in ms, its locations as MySQL keeps them (a
/// comma-separated list).
#[derive(sqlx::FromRow)]
struct DataLossRow {
    since_ms: i64,
    detected_ms: i64,
    locations: String,
}

impl From<DataLossRow> for DataLoss {
    fn from(row: DataLossRow) -> Self {
        Self {
            since_ms: row.since_ms,
            detected_ms: row.detected_ms,
            locations: row
                .locations
                .split(',')
                .filter_map(|l| l.parse().ok())
                .collect(),
        }
    }
}

impl Orders<'_> {
    /// The most recent data losses, newest first.
    pub async fn data_losses(&self, limit: u32) -> StorageResult<Vec<DataLoss>> {
        self.in_time(self.db_deadline(), async {
            let rows: Vec<DataLossRow> = sqlx::query_as(
                "SELECT CAST(UNIX_TIMESTAMP(since) * 1000 AS SIGNED) AS since_ms, \
             CAST(UNIX_TIMESTAMP(detected_at) * 1000 AS SIGNED) AS detected_ms, locations \
             FROM redis_data_losses ORDER BY detected_at DESC, id DESC LIMIT ?",
            )
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
            Ok(rows.into_iter().map(DataLoss::from).collect())
        })
        .await
    }
}

/// How long after a detected data loss a missing order is still "being settled" (503) rather than
/// lost (410): a consumer batch that was on its way to MySQL commits well within this.
pub const LOSS_SETTLE_MS: i64 = 30_000;

/// The Redis record of a Redis-path order.
#[derive(Debug, Clone)]
pub struct RedisRecord {
    /// `A` accepted, `C` cancelled, `X` rejected.
    pub state: String,
    pub json: Option<String>,
    pub reason: Option<String>,
}

impl RedisRecord {
    /// The command that reads a record at `key` (decode its answer with [`Self::from_fields`]).
    pub(crate) fn read(key: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key).arg("st").arg("j").arg("r");
        cmd
    }

    /// The record an `HMGET st j r` answer describes; `None` when there is none.
    pub(crate) fn from_fields((st, json, reason): RecordFields) -> Option<Self> {
        st.map(|state| Self {
            state,
            json,
            reason,
        })
    }

    /// The order with the status its record gives.
    pub fn order(&self) -> StorageResult<Order> {
        let json = self
            .json
            .as_deref()
            .ok_or_else(|| StorageError::internal("order record without its order"))?;
        let order: Order = crate::formats::OrderRecord::decode(json)?;
        Ok(match self.state.as_str() {
            "C" => Order {
                status: OrderStatus::Cancelled,
                ..order
            },
            "X" => Order {
                status: OrderStatus::Rejected,
                reason: self.reason.clone(),
                ..order
            },
            _ => Order {
                status: OrderStatus::Accepted,
                ..order
            },
        })
    }
}

impl Storage {
    /// The Redis record of an order, if Redis still has it.
    pub(crate) async fn redis_record(
        &self,
        loc: LocationId,
        order_id: &str,
    ) -> StorageResult<Option<RedisRecord>> {
        let mut redis = self.conn().await?;
        let fields: RecordFields = RedisRecord::read(&self.keys.order(loc, order_id))
            .query_async(&mut redis)
            .await?;
        Ok(RedisRecord::from_fields(fields))
    }
}

/// The fields `HMGET st j r` answers for an order record.
pub(crate) type RecordFields = (Option<String>, Option<String>, Option<String>);

/// What MySQL holds of the orders `ids` (absent: no row), read in statements of at most
/// [`ledger::ROWS_PER_STATEMENT`] ids; with `lock`, the rows stay locked (`FOR UPDATE`) until the
/// transaction ends.
pub(crate) async fn statuses(
    conn: &mut sqlx::MySqlConnection,
    ids: &[&str],
    lock: bool,
) -> StorageResult<std::collections::HashMap<String, applied::Held>> {
    let mut held = std::collections::HashMap::new();
    for chunk in ids.chunks(ledger::ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(
            "SELECT id, CAST(status AS CHAR) AS status, CAST(fulfillment AS CHAR) AS fulfillment \
             FROM orders WHERE id IN ",
        );
        push_list(&mut q, chunk.iter().copied());
        if lock {
            q.push(" FOR UPDATE");
        }
        let rows: Vec<(String, OrderStatus, FulfillmentStatus)> =
            q.build_query_as().fetch_all(&mut *conn).await?;
        held.extend(
            rows.into_iter()
                .map(|(id, status, f)| (id, applied::Held::new(status, f))),
        );
    }
    Ok(held)
}
