//! Checkout holds as the wire carries them: the hold request (an order request plus
//! `ttlSeconds`), the extension, and the hold's body.

use super::bodies::{rfc3339, DeliveryTypeBody, OrderItemBody};
use super::OrderRequest;
use crate::problem::Problem;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Enum, Object};
use sf_persistence::holds::{Hold, HoldStatus, Ttl};
use std::borrow::Cow;

/// A hold request: the body of an online order, and how long to hold its units.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub order: OrderRequest,
    /// Seconds, 10 to 3600; 600 when left out.
    pub ttl_seconds: Option<i64>,
}

impl HoldRequest {
    /// The hold's TTL (the parse checked its range).
    pub fn ttl(&self) -> Result<Ttl, Problem> {
        match self.ttl_seconds {
            None => Ok(Ttl::default()),
            Some(s) => Ttl::new(s).map_err(|e| Problem::bad_request(e.to_string())),
        }
    }
}

impl Example for HoldRequest {
    fn example() -> Self {
        Self {
            order: OrderRequest::example(),
            ttl_seconds: Some(600),
        }
    }
}

impl Type for HoldRequest {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "HoldRequest".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |registry| {
            OrderRequest::register(registry);
            let ttl = MetaSchema {
                description: Some(
                    "How long the units are held, in seconds: 10 to 3600 (default 600). A hold \
                     lives at most 2 h in all, extensions included.",
                ),
                minimum: Some(10.0),
                maximum: Some(3600.0),
                default: Some(600.into()),
                ..MetaSchema::new_with_format("integer", "int64")
            };
            MetaSchema {
                description: Some(
                    "The body of an online order (`OrderRequest`) and, beside its fields, \
                     `ttlSeconds`.",
                ),
                all_of: vec![
                    OrderRequest::schema_ref(),
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        properties: vec![("ttlSeconds", MetaSchemaRef::Inline(Box::new(ttl)))],
                        ..MetaSchema::new("object")
                    })),
                ],
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

impl ParseFromJSON for HoldRequest {
    /// Takes `ttlSeconds` out, then parses the rest as an order request (with its rules).
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        let mut value = value.unwrap_or_default();
        let Some(fields) = value.as_object_mut() else {
            return Err(ParseError::expected_type(value));
        };
        let ttl_seconds = match fields.remove("ttlSeconds") {
            None | Some(serde_json::Value::Null) => None,
            // Outside the range the schema declares is a schema violation (400), as for any
            // field.
            Some(v) => match v.as_i64().map(Ttl::new) {
                Some(Ok(ttl)) => Some(i64::from(ttl.secs())),
                Some(Err(e)) => return Err(ParseError::custom(e.to_string())),
                None => {
                    return Err(ParseError::custom(format!(
                        "ttlSeconds must be a whole number of seconds, 10 to 3600, not {v}"
                    )))
                }
            },
        };
        let order = OrderRequest::parse_from_json(Some(value)).map_err(ParseError::propagate)?;
        Ok(Self { order, ttl_seconds })
    }
}

impl ToJSON for HoldRequest {
    fn to_json(&self) -> Option<serde_json::Value> {
        let mut v = self.order.to_json()?;
        if let (Some(fields), Some(ttl)) = (v.as_object_mut(), self.ttl_seconds) {
            fields.insert("ttlSeconds".into(), ttl.into());
        }
        Some(v)
    }
}

/// The fingerprint of an `Idempotency-Key`: the order's flat form and the TTL.
impl serde::Serialize for HoldRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Keyed<'a> {
            order: &'a OrderRequest,
            ttl_seconds: Option<i64>,
        }
        Keyed {
            order: &self.order,
            ttl_seconds: self.ttl_seconds,
        }
        .serialize(serializer)
    }
}

/// An extension of a hold.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields, example)]
pub struct ExtendHoldRequest {
    /// The hold's new lifetime from now, in seconds: 10 to 3600. A hold lives at most 2 h in
    /// all.
    #[oai(validator(minimum(value = "10"), maximum(value = "3600")))]
    pub ttl_seconds: i64,
}

impl Example for ExtendHoldRequest {
    fn example() -> Self {
        Self { ttl_seconds: 300 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HoldStatusBody {
    /// Its units are reserved: no one else can buy them.
    Active,
    /// It became an order (`orderId`).
    Converted,
    /// Released by its customer; its units are available again.
    Released,
    /// Past `expiresAt`; its units are available again.
    Expired,
}

impl From<HoldStatus> for HoldStatusBody {
    fn from(s: HoldStatus) -> Self {
        match s {
            HoldStatus::Active => Self::Active,
            HoldStatus::Converted => Self::Converted,
            HoldStatus::Released => Self::Released,
            HoldStatus::Expired => Self::Expired,
        }
    }
}

/// A checkout hold.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct HoldBody {
    /// Opaque id (`<locationId>-<uuid>`).
    pub hold_id: String,
    /// `EXPIRED` as soon as `expiresAt` has passed.
    pub status: HoldStatusBody,
    /// When the hold ends unless extended, released or converted (RFC 3339).
    pub expires_at: String,
    /// The order the hold became (status `CONVERTED`).
    #[oai(skip_serializing_if_is_none)]
    pub order_id: Option<String>,
    pub delivery_type: DeliveryTypeBody,
    /// The warehouse or store that holds the units, and will fulfil the order.
    pub fulfillment_location_id: u64,
    /// Geodesic distance from the delivery address to that location, when known.
    #[oai(skip_serializing_if_is_none)]
    pub distance_km: Option<f64>,
    /// Each line with the price it is held at; the order made from the hold keeps it.
    pub items: Vec<OrderItemBody>,
    pub total_amount: i64,
    /// When the hold was placed (RFC 3339); it lives at most 2 h from then.
    pub created_at: String,
}

impl Example for HoldBody {
    fn example() -> Self {
        Self {
            hold_id: "1-01936f0c2b7e7c3a9d1e5f2a3b4c5d6e".into(),
            status: HoldStatusBody::Active,
            expires_at: "2026-12-07T10:10:00.000Z".into(),
            order_id: None,
            delivery_type: DeliveryTypeBody::Normal,
            fulfillment_location_id: 1,
            distance_km: Some(4.2),
            items: vec![OrderItemBody {
                product_id: 1,
                quantity: 2,
                unit_price: 15_000,
            }],
            total_amount: 30_000,
            created_at: "2026-12-07T10:00:00.000Z".into(),
        }
    }
}

impl From<Hold> for HoldBody {
    fn from(h: Hold) -> Self {
        Self {
            hold_id: h.hold_id,
            status: h.status.into(),
            expires_at: rfc3339(h.expires_at_ms),
            order_id: h.order_id,
            delivery_type: match h.delivery_type {
                sf_routing::DeliveryType::SameDay => DeliveryTypeBody::SameDay,
                sf_routing::DeliveryType::Pickup => DeliveryTypeBody::Pickup,
                sf_routing::DeliveryType::InStore => DeliveryTypeBody::InStore,
                sf_routing::DeliveryType::Normal => DeliveryTypeBody::Normal,
            },
            fulfillment_location_id: h.fulfillment_location_id,
            distance_km: h.distance_km,
            items: h
                .items
                .into_iter()
                .map(|i| OrderItemBody {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect(),
            total_amount: h.total_amount,
            created_at: rfc3339(h.created_at_ms),
        }
    }
}
