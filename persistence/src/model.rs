//! Records this layer hands to callers. How orders are kept in Redis and MySQL is a format of its
//! own, versioned: [`crate::formats`].

use serde::{Deserialize, Serialize};
use sf_routing::{Calendar, DeliveryType, LocationId, LocationKind};
use std::sync::Arc;

/// Also read from MySQL as it is, from the text of the `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Decided in Redis, not yet in MySQL.
    Accepted,
    /// In MySQL.
    Confirmed,
    Cancelled,
    /// Accepted in Redis, but MySQL could not take it as sold (see `Order::reason`).
    Rejected,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
            Self::Rejected => "REJECTED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACCEPTED" => Some(Self::Accepted),
            "CONFIRMED" => Some(Self::Confirmed),
            "CANCELLED" => Some(Self::Cancelled),
            "REJECTED" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// Also read from MySQL as it is, from the text of the `path` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderPath {
    DbLock,
    Redis,
    Pos,
}

impl OrderPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DbLock => "DB_LOCK",
            Self::Redis => "REDIS",
            Self::Pos => "POS",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DB_LOCK" => Some(Self::DbLock),
            "REDIS" => Some(Self::Redis),
            "POS" => Some(Self::Pos),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub latitude: f64,
    pub longitude: f64,
}

/// Also read from MySQL as it is, from a row of `order_lines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: u64,
    /// `INT` in MySQL, always above 0.
    #[sqlx(try_from = "i32")]
    pub quantity: u32,
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: String,
    pub status: OrderStatus,
    pub path: OrderPath,
    pub delivery_type: DeliveryType,
    pub fulfillment_location_id: u64,
    pub distance_km: Option<f64>,
    pub delivery_address: Option<Address>,
    pub items: Vec<OrderItem>,
    pub total_amount: i64,
    /// When the order was decided, in milliseconds since the Unix epoch.
    pub accepted_at_ms: i64,
    /// Why a `REJECTED` order could not be persisted as sold.
    pub reason: Option<String>,
    /// Its way out of the building.
    pub fulfillment: Fulfillment,
    /// The sales channel that placed it (`None`: placed with `SHOP_AUTH=off`, or at the till).
    pub channel: Option<u64>,
}

/// Where an order is on its way out of the building. Steps only go forward:
/// `UNFULFILLED` → (`READY_FOR_PICKUP` →) a hand-over (`COLLECTED`, `DISPATCHED`, `SHIPPED`).
/// Also read from MySQL as it is, from the text of the `fulfillment` column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FulfillmentStatus {
    #[default]
    Unfulfilled,
    ReadyForPickup,
    Collected,
    Dispatched,
    Shipped,
}

impl FulfillmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unfulfilled => "UNFULFILLED",
            Self::ReadyForPickup => "READY_FOR_PICKUP",
            Self::Collected => "COLLECTED",
            Self::Dispatched => "DISPATCHED",
            Self::Shipped => "SHIPPED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "UNFULFILLED" => Some(Self::Unfulfilled),
            "READY_FOR_PICKUP" => Some(Self::ReadyForPickup),
            "COLLECTED" => Some(Self::Collected),
            "DISPATCHED" => Some(Self::Dispatched),
            "SHIPPED" => Some(Self::Shipped),
            _ => None,
        }
    }

    /// Whether the order's units have left the building (collected, dispatched, shipped): they
    /// are no longer `committed`, and the order can no longer be cancelled. The one definition of
    /// *handed over*; every step, cancel and job asks it.
    pub fn is_handed_over(self) -> bool {
        matches!(self, Self::Collected | Self::Dispatched | Self::Shipped)
    }
}

/// An order's fulfilment, as callers read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fulfillment {
    pub status: FulfillmentStatus,
    /// The code a pickup's customer shows at the store (6 digits): for the shop's answers only.
    pub pickup_code: Option<String>,
    /// When a pickup will be ready, as the order promised it: RFC 3339 with the store's offset
    /// (`2026-12-07T18:30:00+09:00`), from the store's calendar when the order was decided.
    pub ready_by: Option<String>,
    /// When a pickup was made ready, in ms since the Unix epoch.
    pub ready_at_ms: Option<i64>,
    /// When the order was handed over, in ms since the Unix epoch.
    pub handed_over_at_ms: Option<i64>,
    /// Why the service itself cancelled the order (`NOT_COLLECTED`), when it did.
    pub cancel_reason: Option<String>,
}

impl Fulfillment {
    /// The fulfilment an order starts with: a pickup gets its code.
    pub fn new(delivery_type: DeliveryType) -> Self {
        Self {
            pickup_code: (delivery_type == DeliveryType::Pickup).then(new_pickup_code),
            ..Self::default()
        }
    }

    /// The same, without the pickup code: what a store's answers show.
    pub fn without_code(self) -> Self {
        Self {
            pickup_code: None,
            ..self
        }
    }
}

/// A random 6-digit pickup code.
fn new_pickup_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32))
}

impl Order {
    /// The location an order id names: ids are `<locationId>-<uuid>`, so a Redis-path order can be
    /// found before it reaches MySQL.
    pub fn location_of(order_id: &str) -> Option<LocationId> {
        let (loc, rest) = order_id.split_once('-')?;
        (!rest.is_empty()).then_some(())?;
        loc.parse()
            .ok()
            .filter(|l| *l > 0)
            .map(LocationId::new_unchecked)
    }

    pub fn new_id(location: u64) -> String {
        Self::id_at(location, &uuid::Uuid::now_v7().simple().to_string())
    }

    /// The id an order with this `<uuid>` part has at `location`. An order keeps its uuid part at
    /// whichever location it is tried, so a retry can find an order an earlier attempt placed.
    pub fn id_at(location: u64, uuid: &str) -> String {
        format!("{location}-{uuid}")
    }

    /// The uuid part of an order id ([`Order::id_at`]): the one an idempotency claim records.
    pub fn uuid_of(order_id: &str) -> &str {
        order_id.split_once('-').map_or(order_id, |(_, uuid)| uuid)
    }

    /// When an order id was made (its uuid v7 carries the time), in ms since the Unix epoch.
    pub fn id_time_ms(order_id: &str) -> Option<i64> {
        let (_, rest) = order_id.split_once('-')?;
        let id = uuid::Uuid::try_parse(rest).ok()?;
        if id.get_version_num() != 7 {
            return None;
        }
        let (secs, nanos) = id.get_timestamp()?.to_unix();
        Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub product_id: u64,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    pub location_id: u64,
    pub location_type: LocationKind,
    pub quantity: i64,
    /// From the point a page asked about (`near`), when it asked about one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub distance_km: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub location_id: u64,
    pub location_type: LocationKind,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub active: bool,
    /// The safety stock of its products that have none of their own.
    pub safety_stock: i64,
    /// At or below this many sellable units a product is low here (`stock.low`); 0: never.
    pub low_stock_threshold: i64,
    /// Its own calendar; `None`: open around the clock (see [`Location::calendar`]). The same
    /// `Arc` as the routing index's site.
    pub calendar: Option<Arc<Calendar>>,
}

impl Location {
    /// The calendar this location follows: its own, or the always-open default.
    pub fn calendar(&self) -> &Calendar {
        self.calendar
            .as_deref()
            .unwrap_or_else(|| sf_routing::calendar::always_open())
    }
}

/// One row of a stock row's ledger: what it moved, why, and what caused it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Movement {
    /// Its place in the ledger: later rows have greater ids.
    pub id: u64,
    /// `ORDER`, `CANCEL`, `FULFILLED`, `COUNT`, … (see [`crate::orders::ledger::Reason`]).
    pub reason: String,
    /// The order, sale or operator's change that caused it.
    pub ref_id: String,
    pub available_delta: i64,
    pub committed_delta: i64,
    pub reserved_delta: i64,
    pub on_hand_delta: i64,
    /// Who made it, as [`crate::access::Actor`] names it (`system:before-actors` for rows
    /// written before actors were recorded).
    pub actor: String,
    /// An operator's free-text note.
    pub note: Option<String>,
    /// An operator's reference (a delivery note number).
    pub reference: Option<String>,
    /// The request that made it (an operator's change).
    pub request_id: Option<String>,
    /// When it was written, in ms since the Unix epoch.
    pub at_ms: i64,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Where a stock figure was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockSource {
    /// Redis: the sellable figure (reservations not yet in MySQL already taken off).
    Redis,
    /// MySQL's on-hand figure, while Redis is not trusted or does not answer.
    Mysql,
}

impl StockSource {
    /// The value of the `Stock-Source` response header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Mysql => "mysql",
        }
    }
}

/// Reads an enum from MySQL through its text (the queries read ENUM columns as `CAST(x AS CHAR)`),
/// so code compares variants, never strings.
macro_rules! read_as_text {
    ($t:ty) => {
        impl sqlx::Type<sqlx::MySql> for $t {
            fn type_info() -> sqlx::mysql::MySqlTypeInfo {
                <str as sqlx::Type<sqlx::MySql>>::type_info()
            }
            fn compatible(ty: &sqlx::mysql::MySqlTypeInfo) -> bool {
                <str as sqlx::Type<sqlx::MySql>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::MySql> for $t {
            fn decode(
                value: sqlx::mysql::MySqlValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::MySql>>::decode(value)?;
                Self::parse(text)
                    .ok_or_else(|| format!("unknown {} {text:?}", stringify!($t)).into())
            }
        }
    };
}
read_as_text!(OrderStatus);
read_as_text!(OrderPath);
read_as_text!(FulfillmentStatus);

/// Every state of one product's stock at one location, as MySQL holds it. onHand is not stored:
/// it is `available + committed + reserved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct StockStates {
    pub location_id: u64,
    pub product_id: u64,
    /// `onHand − committed − reserved`: what the location can still promise.
    pub available: i64,
    /// Units of online orders persisted and not yet handed over.
    pub committed: i64,
    /// Units held for checkouts.
    pub reserved: i64,
    /// The buffer online channels may not take: the product's own, else the location's default.
    pub safety_stock: i64,
}

impl StockStates {
    /// Units physically at the location.
    pub fn on_hand(&self) -> i64 {
        self.available + self.committed + self.reserved
    }

    /// What online channels may still take (the figure the shop sees).
    pub fn sellable_online(&self) -> i64 {
        (self.available - self.safety_stock).max(0)
    }
}
