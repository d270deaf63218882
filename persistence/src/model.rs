//! Records this layer hands to callers. They serialise to the wire contract's camelCase JSON, which
//! is also how Redis keeps order records and events.

use serde::{Deserialize, Serialize};
use sf_routing::{DeliveryType, LocationKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Decided in Redis, not yet in MySQL.
    Accepted,
    /// In MySQL.
    Confirmed,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: u64,
    pub quantity: u32,
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
}

impl Order {
    /// The location an order id names: ids are `<locationId>-<uuid>`, so a Redis-path order can be
    /// found before it reaches MySQL.
    pub fn location_of(order_id: &str) -> Option<u64> {
        let (loc, rest) = order_id.split_once('-')?;
        (!rest.is_empty()).then_some(())?;
        loc.parse().ok().filter(|l| *l > 0)
    }

    pub fn new_id(location: u64) -> String {
        format!("{location}-{}", uuid::Uuid::now_v7().simple())
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub location_id: u64,
    pub location_type: LocationKind,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub active: bool,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}
