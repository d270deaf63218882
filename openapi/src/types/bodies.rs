//! Response bodies: orders, stock, products and locations as the wire shows them.

use super::calendar::{same_day_open_until, OpeningHoursBody, WeekdayBody};
use super::GeoPoint;
use poem_openapi::types::Example;
use poem_openapi::{Enum, Object};
use sf_persistence::catalog::{ProductStock, ProductsAfter};
use sf_persistence::model::{self, OrderPath, OrderStatus};
use sf_routing::LocationKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatusBody {
    /// Decided in Redis, not yet in MySQL.
    Accepted,
    /// In MySQL.
    Confirmed,
    Cancelled,
    /// Accepted in Redis, but MySQL could not take it as sold (`rejectReason` says why); no stock
    /// was taken. Operators may retry it after a restock.
    Rejected,
}

/// Where an order is on its way out of the building; steps only go forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FulfillmentStatusBody {
    /// Not yet handed over (a pickup not yet ready, an order not yet dispatched or shipped).
    Unfulfilled,
    /// A pickup waiting at its store.
    ReadyForPickup,
    /// A pickup collected (or a POS sale).
    Collected,
    /// A same-day order handed to a courier.
    Dispatched,
    /// A warehouse order shipped.
    Shipped,
}

impl From<model::FulfillmentStatus> for FulfillmentStatusBody {
    fn from(s: model::FulfillmentStatus) -> Self {
        match s {
            model::FulfillmentStatus::Unfulfilled => Self::Unfulfilled,
            model::FulfillmentStatus::ReadyForPickup => Self::ReadyForPickup,
            model::FulfillmentStatus::Collected => Self::Collected,
            model::FulfillmentStatus::Dispatched => Self::Dispatched,
            model::FulfillmentStatus::Shipped => Self::Shipped,
        }
    }
}

/// An order's way out of the building.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase", example)]
#[serde(rename_all = "camelCase")]
pub struct FulfillmentBody {
    pub status: FulfillmentStatusBody,
    /// A pickup's code (6 digits), which the customer shows at the store: in the shop's answers
    /// only, never in the store's.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup_code: Option<String>,
    /// When the pickup was made ready (RFC 3339).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<String>,
    /// When the order was handed over (RFC 3339).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handed_over_at: Option<String>,
}

impl Example for FulfillmentBody {
    fn example() -> Self {
        Self {
            status: FulfillmentStatusBody::ReadyForPickup,
            pickup_code: Some("482913".into()),
            ready_at: Some("2026-11-24T10:30:00.000Z".into()),
            handed_over_at: None,
        }
    }
}

impl From<model::Fulfillment> for FulfillmentBody {
    fn from(f: model::Fulfillment) -> Self {
        Self {
            status: f.status.into(),
            pickup_code: f.pickup_code,
            ready_at: f.ready_at_ms.map(rfc3339),
            handed_over_at: f.handed_over_at_ms.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderPathBody {
    DbLock,
    Redis,
    Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryTypeBody {
    Normal,
    SameDay,
    Pickup,
    InStore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LocationTypeBody {
    Warehouse,
    Store,
}

impl From<LocationKind> for LocationTypeBody {
    fn from(k: LocationKind) -> Self {
        match k {
            LocationKind::Warehouse => Self::Warehouse,
            LocationKind::Store => Self::Store,
        }
    }
}

/// One line of an order, with the server's price.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct OrderItemBody {
    pub product_id: u64,
    pub quantity: u32,
    /// The server's price of one unit when the order was placed.
    pub unit_price: i64,
}

// Rendered with serde where an order is placed (`Rendered`), with poem-openapi elsewhere; both
// give the same JSON (`order_bodies_render_as_the_spec_describes`).
/// An order of any path.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase", example)]
#[serde(rename_all = "camelCase")]
pub struct OrderBody {
    /// Opaque id (`<locationId>-<uuid>`).
    pub order_id: String,
    pub status: OrderStatusBody,
    /// Its way out of the building (`UNFULFILLED` while a Redis-path order is not yet in MySQL).
    pub fulfillment: FulfillmentBody,
    pub path: OrderPathBody,
    pub delivery_type: DeliveryTypeBody,
    /// The warehouse or store that fulfils the order.
    pub fulfillment_location_id: u64,
    /// Geodesic distance from the delivery address to that location, when known.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_address: Option<GeoPoint>,
    pub items: Vec<OrderItemBody>,
    pub total_amount: i64,
    /// When the order was decided (RFC 3339).
    pub accepted_at: String,
    /// Why a `REJECTED` order could not be persisted as sold.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// Why the service itself cancelled the order: `NOT_COLLECTED` (a pickup left ready longer
    /// than the store keeps it).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// For a pickup: when it will be ready at the store (RFC 3339 with the store's offset), as
    /// promised when the order was placed — now plus the store's preparation time while it is
    /// open, else its next opening plus that time (closed dates skipped).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_by: Option<String>,
}

impl Example for OrderBody {
    fn example() -> Self {
        Self {
            order_id: "1-01936f0c2b7e7c3a9d1e5f2a3b4c5d6e".into(),
            status: OrderStatusBody::Accepted,
            fulfillment: FulfillmentBody {
                status: FulfillmentStatusBody::Unfulfilled,
                pickup_code: None,
                ready_at: None,
                handed_over_at: None,
            },
            path: OrderPathBody::Redis,
            delivery_type: DeliveryTypeBody::Normal,
            fulfillment_location_id: 1,
            distance_km: Some(4.2),
            delivery_address: Some(GeoPoint {
                latitude: 37.5665,
                longitude: 126.978,
            }),
            items: vec![OrderItemBody {
                product_id: 1,
                quantity: 2,
                unit_price: 12000,
            }],
            total_amount: 24000,
            accepted_at: "2026-11-24T09:00:00.000Z".into(),
            reject_reason: None,
            cancel_reason: None,
            ready_by: None,
        }
    }
}

impl From<model::Order> for OrderBody {
    fn from(o: model::Order) -> Self {
        Self {
            order_id: o.order_id,
            status: match o.status {
                OrderStatus::Accepted => OrderStatusBody::Accepted,
                OrderStatus::Confirmed => OrderStatusBody::Confirmed,
                OrderStatus::Cancelled => OrderStatusBody::Cancelled,
                OrderStatus::Rejected => OrderStatusBody::Rejected,
            },
            path: match o.path {
                OrderPath::DbLock => OrderPathBody::DbLock,
                OrderPath::Redis => OrderPathBody::Redis,
                OrderPath::Pos => OrderPathBody::Pos,
            },
            delivery_type: match o.delivery_type {
                sf_routing::DeliveryType::Normal => DeliveryTypeBody::Normal,
                sf_routing::DeliveryType::SameDay => DeliveryTypeBody::SameDay,
                sf_routing::DeliveryType::Pickup => DeliveryTypeBody::Pickup,
                sf_routing::DeliveryType::InStore => DeliveryTypeBody::InStore,
            },
            fulfillment_location_id: o.fulfillment_location_id,
            distance_km: o.distance_km,
            delivery_address: o.delivery_address.map(|a| GeoPoint {
                latitude: a.latitude,
                longitude: a.longitude,
            }),
            items: o
                .items
                .into_iter()
                .map(|i| OrderItemBody {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect(),
            total_amount: o.total_amount,
            accepted_at: rfc3339(o.accepted_at_ms),
            reject_reason: o.reason,
            cancel_reason: o.fulfillment.cancel_reason.clone(),
            ready_by: o.fulfillment.ready_by.clone(),
            fulfillment: o.fulfillment.into(),
        }
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp.
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// The product pages render their bodies with serde (`Serialize`), straight into bytes, and the
// spec describes them with poem-openapi (`Object`): both derive the same camelCase names, and
// `product_bodies_render_as_the_spec_describes` below keeps them equal.

/// Stock of a product at one location.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct StockBody {
    pub location_id: u64,
    pub location_type: LocationTypeBody,
    /// Units: on-hand (MySQL) or sellable (Redis), see `Stock-Source`.
    pub quantity: i64,
    /// Kilometres from the `near` point, when the page was asked with one.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
}

impl From<&model::StockLevel> for StockBody {
    fn from(s: &model::StockLevel) -> Self {
        Self {
            location_id: s.location_id,
            location_type: s.location_type.into(),
            quantity: s.quantity,
            distance_km: s.distance_km.map(sf_routing::index::to_the_metre),
        }
    }
}

/// A product with its stock at the active locations the page asked about (the product page).
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase", example)]
#[serde(rename_all = "camelCase")]
pub struct ProductBody {
    pub product_id: u64,
    pub sku: String,
    pub name: String,
    /// The price of one unit, in won.
    pub price: i64,
    /// The sum of `quantity` over `stock` (a figure below 0 counts as 0). It equals the list's
    /// figure when `stock` holds every active location (no `near`, no `next`).
    pub total_quantity: i64,
    /// Without `near`: one entry per active location by location id, at most `limit` (default
    /// 100), from the first after `after`. With `near`: the active locations within `radiusKm`,
    /// nearest first, each with its `distanceKm`, at most `limit`.
    pub stock: Vec<StockBody>,
    /// Without `near`, when more locations follow: the `after` of the next page.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

impl ProductBody {
    pub fn new(p: &ProductStock) -> Self {
        Self {
            product_id: p.product.product_id,
            sku: p.product.sku.clone(),
            name: p.product.name.clone(),
            price: p.product.price,
            total_quantity: p.total_quantity(),
            stock: p.stock.iter().map(Into::into).collect(),
            next: p.next,
        }
    }
}

impl Example for ProductBody {
    fn example() -> Self {
        Self {
            product_id: 1,
            sku: "SF-00001".into(),
            name: "Wireless Earbuds".into(),
            price: 12000,
            total_quantity: 57,
            stock: vec![
                StockBody {
                    location_id: 1,
                    location_type: LocationTypeBody::Warehouse,
                    quantity: 40,
                    distance_km: None,
                },
                StockBody {
                    location_id: 3,
                    location_type: LocationTypeBody::Store,
                    quantity: 17,
                    distance_km: None,
                },
            ],
            next: None,
        }
    }
}

/// A product as a list shows it: its stock summed over the active locations; the stock per
/// location is on the product page.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ProductListItem {
    pub product_id: u64,
    pub name: String,
    /// The price of one unit, in won.
    pub price: i64,
    /// Units summed over the active locations (a figure below 0 counts as 0): on-hand (MySQL) or
    /// sellable (Redis), see `Stock-Source`.
    pub total_quantity: i64,
}

/// A page of active products, by id.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase", example)]
#[serde(rename_all = "camelCase")]
pub struct ProductList {
    pub products: Vec<ProductListItem>,
    /// The most products a page holds, as asked (`limit`).
    pub limit: u32,
    /// Pass as `after` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

impl ProductList {
    pub fn new(p: &ProductsAfter, limit: u32) -> Self {
        Self {
            products: p
                .items
                .iter()
                .map(|i| ProductListItem {
                    product_id: i.product_id,
                    name: i.name.clone(),
                    price: i.price,
                    total_quantity: i.total_quantity,
                })
                .collect(),
            limit,
            next: p.next,
        }
    }
}

impl Example for ProductList {
    fn example() -> Self {
        Self {
            products: vec![
                ProductListItem {
                    product_id: 1,
                    name: "Wireless Earbuds".into(),
                    price: 12000,
                    total_quantity: 57,
                },
                ProductListItem {
                    product_id: 2,
                    name: "Phone Case".into(),
                    price: 9000,
                    total_quantity: 0,
                },
            ],
            limit: 2,
            next: Some(2),
        }
    }
}

/// A warehouse or store, with its calendar (every default filled in) and what the calendar says
/// at the time of the answer.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct LocationBody {
    pub location_id: u64,
    pub location_type: LocationTypeBody,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub active: bool,
    /// The default safety stock of the location's products.
    pub safety_stock: i64,
    /// At or below this many sellable units a product is low here (`stock.low`); 0: never.
    pub low_stock_threshold: i64,
    /// The IANA time zone of its hours and dates (`Asia/Seoul` unless set).
    pub time_zone: String,
    /// Weekly opening ranges, by day and opening time; a day without a range is closed. Empty:
    /// open around the clock (every warehouse, and every location without hours of its own).
    pub opening_hours: Vec<OpeningHoursBody>,
    /// Civil dates (`YYYY-MM-DD`, in `timeZone`) on which it is closed all day, in order.
    pub closed_dates: Vec<String>,
    /// Same-day orders are routed here only before this local time (`HH:MM`). Absent: until the
    /// end of the current opening minus `pickupPreparationMinutes`.
    #[oai(skip_serializing_if_is_none)]
    pub same_day_cutoff: Option<String>,
    /// How long a pickup takes to prepare, in minutes (30 unless set).
    pub pickup_preparation_minutes: i64,
    /// Open at the time of the answer: inside an opening range, not on a closed date, and
    /// `active`.
    pub open_now: bool,
    /// Stores only: when today's same-day window ends (ISO-8601 with the zone's offset; the end
    /// of the day for a store open around the clock). Absent when same-day is closed for the rest
    /// of the day (a closed date, past the cut-off, no opening left today, or not `active`), and
    /// for warehouses.
    #[oai(skip_serializing_if_is_none)]
    pub same_day_open_until: Option<String>,
}

impl LocationBody {
    /// The location as seen at `now` (read once per request).
    pub fn new(l: &model::Location, now: jiff::Timestamp) -> Self {
        let calendar = l.calendar();
        let spec = calendar.spec();
        let store = l.location_type == LocationKind::Store;
        Self {
            location_id: l.location_id,
            location_type: l.location_type.into(),
            name: l.name.clone(),
            latitude: l.latitude,
            longitude: l.longitude,
            active: l.active,
            safety_stock: l.safety_stock,
            low_stock_threshold: l.low_stock_threshold,
            time_zone: calendar.time_zone_name().to_owned(),
            opening_hours: spec.opening_hours.into_iter().map(Into::into).collect(),
            closed_dates: spec.closed_dates,
            same_day_cutoff: spec.same_day_cutoff,
            pickup_preparation_minutes: calendar.pickup_preparation().as_mins(),
            open_now: l.active && calendar.is_open(now),
            same_day_open_until: (store && l.active)
                .then(|| same_day_open_until(calendar, now))
                .flatten(),
        }
    }
}

impl Example for LocationBody {
    fn example() -> Self {
        let hours = |day| OpeningHoursBody::new(day, "10:00", "22:00");
        Self {
            location_id: 5,
            location_type: LocationTypeBody::Store,
            name: "Myeongdong".into(),
            latitude: 37.5636,
            longitude: 126.9826,
            active: true,
            safety_stock: 0,
            low_stock_threshold: 5,
            time_zone: "Asia/Seoul".into(),
            opening_hours: [
                WeekdayBody::Mon,
                WeekdayBody::Tue,
                WeekdayBody::Wed,
                WeekdayBody::Thu,
                WeekdayBody::Fri,
                WeekdayBody::Sat,
            ]
            .into_iter()
            .map(hours)
            .chain([OpeningHoursBody::new(WeekdayBody::Sun, "11:00", "18:00")])
            .collect(),
            closed_dates: vec!["2026-12-25".into()],
            same_day_cutoff: Some("18:00".into()),
            pickup_preparation_minutes: 30,
            open_now: true,
            same_day_open_until: Some("2026-12-07T18:00:00+09:00".into()),
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct LocationList {
    pub locations: Vec<LocationBody>,
}
