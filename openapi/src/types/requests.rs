//! Order requests as the wire carries them, and where a request becomes validated domain values.

use crate::problem::Problem;
use poem_openapi::registry::{MetaDiscriminatorObject, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Enum, Object};
use sf_routing::{Coordinates, Destination, LocationId, OrderLines};
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
