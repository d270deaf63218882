//! Request and response bodies of the wire contract (camelCase JSON), and the one place where a
//! request becomes validated domain values.

use crate::problem::Problem;
use poem_openapi::registry::{MetaDiscriminatorObject, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Enum, Object};
use sf_persistence::catalog::{ProductStock, ProductsAfter};
use sf_persistence::model::{self, OrderPath, OrderStatus};
use sf_routing::{Coordinates, Destination, LocationId, LocationKind, OrderLines};
use std::borrow::Cow;

/// One line of an order request.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemRequest {
    /// The product to buy.
    #[oai(validator(minimum(value = "1")))]
    pub product_id: i64,
    /// How many, 1 to 1000. Two lines of one product are summed (the sum must stay within 1000).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub quantity: i64,
}

/// The delivery types an online order may name. Only the fingerprint of an `Idempotency-Key`
/// ([`OrderRequest`]'s `Serialize`) spells it; the spec states each type in its own schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryTypeRequest {
    Normal,
    SameDay,
    Pickup,
}

/// A point on the map (WGS 84 degrees).
#[derive(Debug, Clone, Copy, Object, serde::Serialize)]
#[oai(deny_unknown_fields)]
pub struct GeoPoint {
    /// -90 to 90.
    #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
    pub latitude: f64,
    /// -180 to 180.
    #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
    pub longitude: f64,
}

/// The `deliveryType` of a `NORMAL` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NormalDelivery {
    Normal,
}

/// The `deliveryType` of a `SAME_DAY` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SameDayDelivery {
    SameDay,
}

/// The `deliveryType` of a `PICKUP` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PickupDelivery {
    Pickup,
}

const STORE_ID_ONLY_FOR_PICKUP: &str =
    "storeId is only for PICKUP orders; NORMAL and SAME_DAY are routed by deliveryAddress";

/// `storeId` on an order that is routed by its address: absent, or `null` (which means the
/// same). The schema says so (`enum: [null]`); any other value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoStore;

impl Type for NoStore {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "NoStore".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some("Only for `PICKUP` orders: leave it out (or send `null`)."),
            enum_items: vec![serde_json::Value::Null],
            nullable: true,
            ..MetaSchema::ANY
        }))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromJSON for NoStore {
    // `Option<NoStore>` takes `null` as absent before this is called: any value here is one.
    fn parse_from_json(_: Option<serde_json::Value>) -> ParseResult<Self> {
        Err(ParseError::custom(STORE_ID_ONLY_FOR_PICKUP))
    }
}

impl ToJSON for NoStore {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::Null)
    }
}

/// A `NORMAL` order: shipped from the nearest warehouse that has everything.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct NormalOrderRequest {
    /// The lines: 1 to 50.
    #[oai(validator(min_items = 1, max_items = 50))]
    pub items: Vec<OrderItemRequest>,
    pub delivery_type: NormalDelivery,
    /// Where the order goes; the nearest warehouse that has everything ships it.
    pub delivery_address: GeoPoint,
    #[oai(skip_serializing_if_is_none)]
    pub store_id: Option<NoStore>,
}

/// A `SAME_DAY` order: delivered today by the nearest store within the same-day radius that has
/// everything.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct SameDayOrderRequest {
    /// The lines: 1 to 50.
    #[oai(validator(min_items = 1, max_items = 50))]
    pub items: Vec<OrderItemRequest>,
    pub delivery_type: SameDayDelivery,
    /// Where the order goes; a store within the same-day radius of it delivers.
    pub delivery_address: GeoPoint,
    #[oai(skip_serializing_if_is_none)]
    pub store_id: Option<NoStore>,
}

/// A `PICKUP` order: collected by the customer at the chosen store.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct PickupOrderRequest {
    /// The lines: 1 to 50.
    #[oai(validator(min_items = 1, max_items = 50))]
    pub items: Vec<OrderItemRequest>,
    pub delivery_type: PickupDelivery,
    /// Optional: fills in the distance to the store.
    #[oai(skip_serializing_if_is_none)]
    pub delivery_address: Option<GeoPoint>,
    /// The store the customer collects at.
    #[oai(validator(minimum(value = "1")))]
    pub store_id: i64,
}

/// An online order: one schema per delivery type, told apart by `deliveryType` (`oneOf` with a
/// discriminator). So the rules that tie fields to the delivery type (`deliveryAddress` for
/// `NORMAL` and `SAME_DAY`, `storeId` for `PICKUP` only) are part of the schema: a body that
/// matches it is never refused for them, and one that breaks them is refused like any schema
/// violation (400), with a `detail` that names the rule.
///
/// On the wire it is one flat object, as it always was:
/// `{"items": [...], "deliveryType": "NORMAL", "deliveryAddress": {...}}`.
#[derive(Debug, Clone)]
pub enum OrderRequest {
    Normal(NormalOrderRequest),
    SameDay(SameDayOrderRequest),
    Pickup(PickupOrderRequest),
}

impl OrderRequest {
    /// Each `deliveryType` and the schema of its orders.
    fn variants() -> [(&'static str, Cow<'static, str>); 3] {
        [
            ("NORMAL", NormalOrderRequest::name()),
            ("SAME_DAY", SameDayOrderRequest::name()),
            ("PICKUP", PickupOrderRequest::name()),
        ]
    }

    pub fn items(&self) -> &[OrderItemRequest] {
        match self {
            Self::Normal(o) => &o.items,
            Self::SameDay(o) => &o.items,
            Self::Pickup(o) => &o.items,
        }
    }
}

impl Example for OrderRequest {
    fn example() -> Self {
        Self::Normal(NormalOrderRequest {
            items: vec![OrderItemRequest {
                product_id: 1,
                quantity: 2,
            }],
            delivery_type: NormalDelivery::Normal,
            delivery_address: GeoPoint {
                latitude: 37.5665,
                longitude: 126.978,
            },
            store_id: None,
        })
    }
}

impl Type for OrderRequest {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "OrderRequest".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |registry| {
            NormalOrderRequest::register(registry);
            SameDayOrderRequest::register(registry);
            PickupOrderRequest::register(registry);
            let variants = Self::variants();
            MetaSchema {
                description: Some(
                    "An online order: the schema of its `deliveryType` (`NORMAL` and `SAME_DAY` \
                     need `deliveryAddress` and take no `storeId`; `PICKUP` needs `storeId`).",
                ),
                one_of: variants
                    .iter()
                    .map(|(_, schema)| MetaSchemaRef::Reference(schema.to_string()))
                    .collect(),
                discriminator: Some(MetaDiscriminatorObject {
                    property_name: "deliveryType",
                    mapping: variants
                        .iter()
                        .map(|(tag, schema)| {
                            (tag.to_string(), format!("#/components/schemas/{schema}"))
                        })
                        .collect(),
                }),
                example: Self::example().to_json(),
                ..MetaSchema::ANY
            }
        });
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromJSON for OrderRequest {
    /// Picks the schema by `deliveryType` and parses the body with it. The rules of the delivery
    /// type are checked first, so that breaking one is answered with the rule rather than with
    /// the field the schema misses.
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        let value = value.unwrap_or_default();
        let Some(fields) = value.as_object() else {
            return Err(ParseError::expected_type(value));
        };
        // `null` means the same as leaving a field out.
        let given = |name: &str| fields.get(name).is_some_and(|v| !v.is_null());
        let kind = fields
            .get("deliveryType")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let broken = match kind.as_deref() {
            Some("NORMAL" | "SAME_DAY") if given("storeId") => {
                Some(STORE_ID_ONLY_FOR_PICKUP.into())
            }
            Some(k @ ("NORMAL" | "SAME_DAY")) if !given("deliveryAddress") => {
                Some(format!("deliveryAddress is required for {k} delivery"))
            }
            Some("PICKUP") if !given("storeId") => {
                Some("storeId is required for PICKUP orders".into())
            }
            Some("NORMAL" | "SAME_DAY" | "PICKUP") => None,
            _ => Some(match fields.get("deliveryType") {
                None | Some(serde_json::Value::Null) => {
                    "deliveryType is required: NORMAL, SAME_DAY or PICKUP".to_owned()
                }
                Some(other) => {
                    format!("deliveryType must be NORMAL, SAME_DAY or PICKUP, not {other}")
                }
            }),
        };
        if let Some(rule) = broken {
            return Err(ParseError::custom(rule));
        }
        let value = Some(value);
        match kind.as_deref() {
            Some("NORMAL") => NormalOrderRequest::parse_from_json(value)
                .map(Self::Normal)
                .map_err(ParseError::propagate),
            Some("SAME_DAY") => SameDayOrderRequest::parse_from_json(value)
                .map(Self::SameDay)
                .map_err(ParseError::propagate),
            _ => PickupOrderRequest::parse_from_json(value)
                .map(Self::Pickup)
                .map_err(ParseError::propagate),
        }
    }
}

impl ToJSON for OrderRequest {
    fn to_json(&self) -> Option<serde_json::Value> {
        match self {
            Self::Normal(o) => o.to_json(),
            Self::SameDay(o) => o.to_json(),
            Self::Pickup(o) => o.to_json(),
        }
    }
}

/// The fingerprint of an `Idempotency-Key` is taken of this: the flat object every order request
/// was before the schema was split by delivery type (absent fields as `null`), so that keys
/// stored before still match their retries.
impl serde::Serialize for OrderRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Flat<'a> {
            items: &'a [OrderItemRequest],
            delivery_type: DeliveryTypeRequest,
            delivery_address: Option<GeoPoint>,
            store_id: Option<i64>,
        }
        let flat = match self {
            Self::Normal(o) => Flat {
                items: &o.items,
                delivery_type: DeliveryTypeRequest::Normal,
                delivery_address: Some(o.delivery_address),
                store_id: None,
            },
            Self::SameDay(o) => Flat {
                items: &o.items,
                delivery_type: DeliveryTypeRequest::SameDay,
                delivery_address: Some(o.delivery_address),
                store_id: None,
            },
            Self::Pickup(o) => Flat {
                items: &o.items,
                delivery_type: DeliveryTypeRequest::Pickup,
                delivery_address: o.delivery_address,
                store_id: Some(o.store_id),
            },
        };
        flat.serialize(serializer)
    }
}

/// A POS sale: the store comes from the path.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase", deny_unknown_fields, example)]
pub struct PosOrderRequest {
    /// The lines: 1 to 50.
    #[oai(validator(min_items = 1, max_items = 50))]
    pub items: Vec<OrderItemRequest>,
}

impl Example for PosOrderRequest {
    fn example() -> Self {
        Self {
            items: vec![OrderItemRequest {
                product_id: 1,
                quantity: 1,
            }],
        }
    }
}

pub fn parse_lines(items: &[OrderItemRequest]) -> Result<OrderLines, Problem> {
    OrderLines::parse(items.iter().map(|i| (i.product_id, i.quantity))).map_err(Problem::from)
}

fn coordinates(p: GeoPoint) -> Result<Coordinates, Problem> {
    Coordinates::new(p.latitude, p.longitude)
        .map_err(|e| Problem::validation(format!("deliveryAddress: {e}")))
}

impl OrderRequest {
    /// Validates the request once; everything past here works on domain values. The schema has
    /// already tied the fields to the delivery type.
    pub fn validate(&self, same_day_radius_km: f64) -> Result<(OrderLines, Destination), Problem> {
        let lines = parse_lines(self.items())?;
        let destination = match self {
            Self::Normal(o) => Destination::Normal {
                address: coordinates(o.delivery_address)?,
            },
            Self::SameDay(o) => Destination::SameDay {
                address: coordinates(o.delivery_address)?,
                radius_km: same_day_radius_km,
            },
            Self::Pickup(o) => Destination::Pickup {
                store: LocationId::parse("storeId", o.store_id)?,
                address: o.delivery_address.map(coordinates).transpose()?,
            },
        };
        Ok((lines, destination))
    }
}

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
    pub path: OrderPathBody,
    pub delivery_type: DeliveryTypeBody,
    /// The warehouse or store that fulfils the order.
    pub fulfillment_location_id: u64,
    /// Geodesic distance from the delivery address to that location, when known.
    pub distance_km: Option<f64>,
    pub delivery_address: Option<GeoPoint>,
    pub items: Vec<OrderItemBody>,
    pub total_amount: i64,
    /// When the order was decided (RFC 3339).
    pub accepted_at: String,
    /// Why a `REJECTED` order could not be persisted as sold.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
}

impl Example for OrderBody {
    fn example() -> Self {
        Self {
            order_id: "1-01936f0c2b7e7c3a9d1e5f2a3b4c5d6e".into(),
            status: OrderStatusBody::Accepted,
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
        }
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp.
fn rfc3339(ms: i64) -> String {
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
}

impl From<&model::StockLevel> for StockBody {
    fn from(s: &model::StockLevel) -> Self {
        Self {
            location_id: s.location_id,
            location_type: s.location_type.into(),
            quantity: s.quantity,
        }
    }
}

/// A product with its stock at every active location (the product page).
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase", example)]
#[serde(rename_all = "camelCase")]
pub struct ProductBody {
    pub product_id: u64,
    pub sku: String,
    pub name: String,
    /// The price of one unit, in won.
    pub price: i64,
    /// The sum of `quantity` over `stock` (a figure below 0 counts as 0), as the list shows it.
    pub total_quantity: i64,
    /// One entry per active location, by location id.
    pub stock: Vec<StockBody>,
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
                },
                StockBody {
                    location_id: 3,
                    location_type: LocationTypeBody::Store,
                    quantity: 17,
                },
            ],
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

/// A warehouse or store.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct LocationBody {
    pub location_id: u64,
    pub location_type: LocationTypeBody,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub active: bool,
}

impl From<model::Location> for LocationBody {
    fn from(l: model::Location) -> Self {
        Self {
            location_id: l.location_id,
            location_type: l.location_type.into(),
            name: l.name,
            latitude: l.latitude,
            longitude: l.longitude,
            active: l.active,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct LocationList {
    pub locations: Vec<LocationBody>,
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::{Example, ToJSON};

    /// The serde rendering the product pages send is the JSON the spec describes.
    #[test]
    fn product_bodies_render_as_the_spec_describes() {
        fn same<T: ToJSON + serde::Serialize>(v: &T) {
            assert_eq!(serde_json::to_value(v).unwrap(), v.to_json().unwrap());
        }
        same(&super::ProductBody::example());
        let mut list = super::ProductList::example();
        same(&list);
        list.next = None;
        same(&list);
        assert!(!serde_json::to_string(&list).unwrap().contains("next"));
    }

    #[test]
    fn order_bodies_render_as_the_spec_describes() {
        use super::{DeliveryTypeBody, OrderPathBody, OrderStatusBody};
        fn same<T: ToJSON + serde::Serialize>(v: &T) {
            assert_eq!(serde_json::to_value(v).unwrap(), v.to_json().unwrap());
        }
        let mut order = super::OrderBody::example();
        same(&order);
        // Every status, path and delivery type; no distance or address; a rejection's reason.
        for (status, path, delivery) in [
            (
                OrderStatusBody::Confirmed,
                OrderPathBody::DbLock,
                DeliveryTypeBody::SameDay,
            ),
            (
                OrderStatusBody::Cancelled,
                OrderPathBody::Pos,
                DeliveryTypeBody::InStore,
            ),
            (
                OrderStatusBody::Rejected,
                OrderPathBody::Redis,
                DeliveryTypeBody::Pickup,
            ),
        ] {
            order.status = status;
            order.path = path;
            order.delivery_type = delivery;
            order.distance_km = None;
            order.delivery_address = None;
            order.reject_reason = Some("MySQL did not have the units".into());
            same(&order);
        }
        let json = serde_json::to_value(&order).unwrap();
        assert_eq!(json["status"], "REJECTED");
        assert_eq!(json["deliveryType"], "PICKUP");
        assert_eq!(json["distanceKm"], serde_json::Value::Null);
        order.reject_reason = None;
        same(&order);
        assert!(serde_json::to_value(&order)
            .unwrap()
            .get("rejectReason")
            .is_none());
    }

    /// The `Idempotency-Key` fingerprint is taken of the flat body every order request was before
    /// the schema was split by delivery type, byte for byte, so keys stored before still match.
    #[test]
    fn order_requests_are_fingerprinted_as_the_flat_body_they_always_were() {
        use super::OrderRequest;
        use poem_openapi::types::ParseFromJSON;
        let fingerprinted = |body: serde_json::Value| {
            serde_json::to_string(&OrderRequest::parse_from_json(Some(body)).unwrap()).unwrap()
        };
        let items = serde_json::json!([{"productId": 1, "quantity": 2}]);
        let at = serde_json::json!({"latitude": 37.5665, "longitude": 126.978});
        assert_eq!(
            fingerprinted(
                serde_json::json!({"items": items, "deliveryType": "NORMAL", "deliveryAddress": at, "storeId": null})
            ),
            r#"{"items":[{"productId":1,"quantity":2}],"deliveryType":"NORMAL","deliveryAddress":{"latitude":37.5665,"longitude":126.978},"storeId":null}"#
        );
        assert_eq!(
            fingerprinted(
                serde_json::json!({"storeId": 7, "deliveryType": "PICKUP", "items": items})
            ),
            r#"{"items":[{"productId":1,"quantity":2}],"deliveryType":"PICKUP","deliveryAddress":null,"storeId":7}"#
        );
        assert_eq!(
            fingerprinted(
                serde_json::json!({"items": items, "deliveryType": "SAME_DAY", "deliveryAddress": at})
            ),
            r#"{"items":[{"productId":1,"quantity":2}],"deliveryType":"SAME_DAY","deliveryAddress":{"latitude":37.5665,"longitude":126.978},"storeId":null}"#
        );
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_795_510_800_123),
            "2026-11-24T09:00:00.123Z"
        );
    }
}

/// A JSON string, and only a string: poem-openapi's `String` also takes a number or a boolean
/// (`false` would become the name "false"), which the schema (`type: string`) does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl poem_openapi::types::Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> std::borrow::Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        <String as poem_openapi::types::Type>::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl poem_openapi::types::ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(s) => Ok(Self(s)),
            other => Err(poem_openapi::types::ParseError::expected_type(other)),
        }
    }
}

impl poem_openapi::types::ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}
