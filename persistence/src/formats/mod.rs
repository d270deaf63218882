//! Storage formats: what Redis and MySQL keep, apart from the types this layer hands to callers
//! ([`crate::model`]), each with a version so that a record written by an older release is still
//! read after an upgrade.
//!
//! | format | where | version |
//! |---|---|---|
//! | [`OrderRecord`] | an order's Redis record (field `j`), its reservation event (field `j`), the answer an idempotency key replays (Redis claim, MySQL `idempotency_keys.response`) | `v` field; absent = 1 (the optional `idempotency`, the key a Redis-path order was placed with, and the optional `pickupCode` and `readyBy` of a pickup are additive: version 1 still) |
//! | [`StreamEvent`] | `<p>{L<loc>}:ev` entries: `v`, `t` (kind), `o` (order id), `l` (lines `p:q,…`), `j` (an [`OrderRecord`], reservations only) | `v` field; absent = 1; a kind a reader does not know is acknowledged without effect |
//! | the idempotency claim | `<p>idem:{<scope>:<key>}` | its `2\|` prefix (version 1, `<fingerprint>\|<answer>`, is still read) |

use crate::error::{StorageError, StorageResult};
use crate::model::{Address, Order, OrderItem, OrderPath, OrderStatus};
use serde::{Deserialize, Serialize};
use sf_routing::{DeliveryType, OrderLines, ProductId};

/// An order as it is stored. Version 1 is the camelCase JSON the first releases wrote, without a
/// `v` field; a record with a `v` greater than [`OrderRecord::VERSION`] was written by a newer
/// release and is refused rather than misread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecord {
    #[serde(default = "version_one")]
    pub v: u8,
    pub order_id: String,
    pub status: OrderStatus,
    pub path: OrderPath,
    pub delivery_type: DeliveryType,
    pub fulfillment_location_id: u64,
    pub distance_km: Option<f64>,
    pub delivery_address: Option<AddressRecord>,
    pub items: Vec<ItemRecord>,
    pub total_amount: i64,
    /// Milliseconds since the Unix epoch.
    pub accepted_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `Idempotency-Key` the order was placed with (Redis-path orders): the consumer keeps it
    /// in MySQL with the order, so the key still names the order after Redis lost its claim.
    /// Optional and additive: a reader that does not know it ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<KeyRecord>,
    /// A pickup's code (6 digits), made when the order is built; the consumer writes it to
    /// MySQL with the order. Optional and additive: a record without it (written before pickup
    /// codes, or of another delivery type) has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_code: Option<String>,
    /// When a pickup will be ready (RFC 3339 with the store's offset), as the order promised it.
    /// Optional and additive, like `pickupCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_by: Option<String>,
    /// The sales channel that placed the order. Optional and additive: a record without it was
    /// placed without a channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u64>,
}

/// The `Idempotency-Key` of an order record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

fn version_one() -> u8 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AddressRecord {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemRecord {
    pub product_id: u64,
    pub quantity: u32,
    pub unit_price: i64,
}

impl OrderRecord {
    /// The version this release writes.
    pub const VERSION: u8 = 1;

    /// The stored JSON of an order.
    pub fn encode(order: &Order) -> String {
        Self::encode_keyed(order, None)
    }

    /// The stored JSON of an order placed with an `Idempotency-Key`.
    pub fn encode_keyed(
        order: &Order,
        key: Option<&crate::orders::idempotency::IdempotencyRequest>,
    ) -> String {
        let record = Self {
            v: Self::VERSION,
            order_id: order.order_id.clone(),
            status: order.status,
            path: order.path,
            delivery_type: order.delivery_type,
            fulfillment_location_id: order.fulfillment_location_id,
            distance_km: order.distance_km,
            delivery_address: order.delivery_address.map(|a| AddressRecord {
                latitude: a.latitude,
                longitude: a.longitude,
            }),
            items: order
                .items
                .iter()
                .map(|i| ItemRecord {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect(),
            total_amount: order.total_amount,
            accepted_at_ms: order.accepted_at_ms,
            reason: order.reason.clone(),
            idempotency: key.map(|k| KeyRecord {
                scope: k.scope.clone(),
                key: k.key.clone(),
                fingerprint: k.fingerprint.clone(),
            }),
            pickup_code: order.fulfillment.pickup_code.clone(),
            ready_by: order.fulfillment.ready_by.clone(),
            channel: order.channel,
        };
        serde_json::to_string(&record).expect("an order record serializes")
    }

    /// Reads a stored order, of this version or an older one.
    pub fn decode(json: &str) -> StorageResult<Order> {
        Self::decode_keyed(json).map(|(order, _)| order)
    }

    /// Reads a stored order and the `Idempotency-Key` it was placed with, if the record has one.
    pub fn decode_keyed(
        json: &str,
    ) -> StorageResult<(
        Order,
        Option<crate::orders::idempotency::IdempotencyRequest>,
    )> {
        let r: Self = serde_json::from_str(json)
            .map_err(|e| StorageError::internal(format!("unreadable order record: {e}")))?;
        if r.v > Self::VERSION {
            return Err(StorageError::internal(format!(
                "order record {} has version {}, newer than this release reads ({})",
                r.order_id,
                r.v,
                Self::VERSION
            )));
        }
        let key = r
            .idempotency
            .map(|k| crate::orders::idempotency::IdempotencyRequest {
                scope: k.scope,
                key: k.key,
                fingerprint: k.fingerprint,
            });
        let order = Order {
            order_id: r.order_id,
            status: r.status,
            path: r.path,
            delivery_type: r.delivery_type,
            fulfillment_location_id: r.fulfillment_location_id,
            distance_km: r.distance_km,
            delivery_address: r.delivery_address.map(|a| Address {
                latitude: a.latitude,
                longitude: a.longitude,
            }),
            items: r
                .items
                .into_iter()
                .map(|i| OrderItem {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect(),
            total_amount: r.total_amount,
            accepted_at_ms: r.accepted_at_ms,
            reason: r.reason,
            // Not yet persisted: not yet on its way out.
            fulfillment: crate::model::Fulfillment {
                pickup_code: r.pickup_code,
                ready_by: r.ready_by,
                ..Default::default()
            },
            channel: r.channel,
        };
        Ok((order, key))
    }
}

/// The kind of a stream event (its `t` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `R`: a reservation; the event carries the order (`j`).
    Reservation,
    /// `C`: a cancel of the order.
    Cancel,
    /// A kind this release does not know (a newer writer's): acknowledged without effect.
    Other(char),
}

impl EventKind {
    pub fn from_char(c: char) -> Self {
        match c {
            'R' => Self::Reservation,
            'C' => Self::Cancel,
            other => Self::Other(other),
        }
    }

    pub fn as_char(self) -> char {
        match self {
            Self::Reservation => 'R',
            Self::Cancel => 'C',
            Self::Other(c) => c,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// An order event in a location's stream, as the scripts write it: `v` (format version; absent
/// in events written before versioning, read as 1), `t` ([`EventKind`]), `o` (the order id), `l`
/// (its lines, `p:q,…`), and for a reservation `j` (its [`OrderRecord`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub kind: EventKind,
    pub order_id: String,
    pub lines: Vec<(sf_routing::ProductId, u32)>,
    pub record: Option<String>,
}

impl StreamEvent {
    /// The version the scripts write.
    pub const VERSION: u8 = 1;

    /// Reads an event from its fields; the error says why it cannot be read.
    pub fn read(field: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let version = match field("v") {
            None => 1,
            Some(v) => v
                .parse::<u8>()
                .map_err(|_| format!("bad event version {v:?}"))?,
        };
        if version > Self::VERSION {
            return Err(format!(
                "event version {version} is newer than this release reads ({})",
                Self::VERSION
            ));
        }
        let (Some(t), Some(o), Some(l)) = (field("t"), field("o"), field("l")) else {
            return Err("event lacks a field t, o or l".to_owned());
        };
        let kind = t
            .chars()
            .next()
            .map(EventKind::from_char)
            .ok_or("empty event kind")?;
        let lines = crate::formats::decode_lines(&l).map_err(|e| e.to_string())?;
        Ok(Self {
            kind,
            order_id: o,
            lines,
            record: field("j"),
        })
    }
}

/// Lines as the events carry them: `"productId:quantity,..."`.
pub fn encode_lines(lines: &OrderLines) -> String {
    let mut s = String::with_capacity(lines.len() * 8);
    for (i, (p, q)) in lines.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&p.to_string());
        s.push(':');
        s.push_str(&q.get().to_string());
    }
    s
}

/// Parses `"productId:quantity,..."`; a product id that is not a positive number is refused,
/// like any malformed line.
pub fn decode_lines(s: &str) -> StorageResult<Vec<(ProductId, u32)>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|pair| {
            let (p, q) = pair
                .split_once(':')
                .ok_or_else(|| StorageError::internal(format!("bad event line {pair:?}")))?;
            let p = p
                .parse::<i64>()
                .ok()
                .and_then(|p| ProductId::parse(p).ok())
                .ok_or_else(|| StorageError::internal(format!("bad event product {p:?}")))?;
            let q = q
                .parse::<u32>()
                .map_err(|_| StorageError::internal(format!("bad event quantity {q:?}")))?;
            Ok((p, q))
        })
        .collect()
}

#[cfg(test)]
mod event_tests {
    use super::*;

    fn fields<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn an_event_without_a_version_is_read_as_version_one() {
        let e = StreamEvent::read(fields(&[("t", "C"), ("o", "4-a"), ("l", "9:2,11:1")])).unwrap();
        assert_eq!(e.kind, EventKind::Cancel);
        assert_eq!(e.order_id, "4-a");
        assert_eq!(e.lines.len(), 2);
        assert_eq!(e.record, None);
        let e = StreamEvent::read(fields(&[
            ("v", "1"),
            ("t", "R"),
            ("o", "4-a"),
            ("l", "9:2"),
            ("j", "{}"),
        ]))
        .unwrap();
        assert_eq!(
            (e.kind, e.record.as_deref()),
            (EventKind::Reservation, Some("{}"))
        );
    }

    #[test]
    fn event_lines_with_a_product_id_below_one_are_refused() {
        assert_eq!(
            decode_lines("9:2,11:1").unwrap(),
            [
                (ProductId::parse(9).unwrap(), 2),
                (ProductId::parse(11).unwrap(), 1)
            ]
        );
        assert!(decode_lines("0:1").is_err());
        assert!(decode_lines("-3:1").is_err());
    }

    #[test]
    fn a_newer_or_broken_event_says_why() {
        let newer = StreamEvent::read(fields(&[("v", "2"), ("t", "R"), ("o", "x"), ("l", "")]));
        assert!(newer.unwrap_err().contains("newer"));
        let missing = StreamEvent::read(fields(&[("t", "R"), ("o", "x")]));
        assert!(missing.unwrap_err().contains("lacks"));
        let lines = StreamEvent::read(fields(&[("t", "R"), ("o", "x"), ("l", "9:x")]));
        assert!(lines.is_err());
        let other = StreamEvent::read(fields(&[("t", "Z"), ("o", "x"), ("l", "")])).unwrap();
        assert_eq!(other.kind, EventKind::Other('Z'));
    }
}

/// An idempotency claim in Redis: which order uuid the key stands for, and the answer once known.
/// Stored as `2|<fingerprint>|<uuid>|<answer>`; the first version, `<fingerprint>|<answer>`, still
/// decodes (it has no uuid, so such a claim cannot be taken over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimRecord {
    pub fingerprint: String,
    pub uuid: Option<String>,
    pub answer: Option<String>,
}

impl ClaimRecord {
    pub fn encode(fingerprint: &str, uuid: &str, answer: &str) -> String {
        format!("2|{fingerprint}|{uuid}|{answer}")
    }

    pub fn decode(value: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        match value.strip_prefix("2|") {
            Some(rest) => {
                let mut parts = rest.splitn(3, '|');
                let fingerprint = parts.next().unwrap_or_default().to_owned();
                let uuid = parts.next().and_then(opt);
                let answer = parts.next().and_then(opt);
                Self {
                    fingerprint,
                    uuid,
                    answer,
                }
            }
            None => {
                let (fingerprint, answer) = value.split_once('|').unwrap_or((value, ""));
                Self {
                    fingerprint: fingerprint.to_owned(),
                    uuid: None,
                    answer: opt(answer),
                }
            }
        }
    }
}

#[cfg(test)]
mod claim_tests {
    use super::ClaimRecord;

    #[test]
    fn a_claim_of_either_version_decodes() {
        let now = ClaimRecord::encode("fp", "0193abc", r#"{"v":1}"#);
        assert_eq!(now, r#"2|fp|0193abc|{"v":1}"#);
        assert_eq!(
            ClaimRecord::decode(&now),
            ClaimRecord {
                fingerprint: "fp".into(),
                uuid: Some("0193abc".into()),
                answer: Some(r#"{"v":1}"#.into()),
            }
        );
        // Claimed, not yet answered.
        assert_eq!(ClaimRecord::decode("2|fp|0193abc|").answer, None);
        // The first version: `<fingerprint>|<answer>`, no uuid.
        assert_eq!(
            ClaimRecord::decode(r#"fp|{"orderId":"1-x"}"#),
            ClaimRecord {
                fingerprint: "fp".into(),
                uuid: None,
                answer: Some(r#"{"orderId":"1-x"}"#.into()),
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Order {
        Order {
            order_id: "3-01936f0c2b7e7c3a9d1e5f2a3b4c5d6e".into(),
            status: OrderStatus::Accepted,
            path: OrderPath::Redis,
            delivery_type: DeliveryType::SameDay,
            fulfillment_location_id: 3,
            distance_km: Some(1.25),
            delivery_address: Some(Address {
                latitude: 37.5665,
                longitude: 126.978,
            }),
            items: vec![OrderItem {
                product_id: 7,
                quantity: 2,
                unit_price: 12_000,
            }],
            total_amount: 24_000,
            accepted_at_ms: 1_795_510_800_123,
            reason: None,
            fulfillment: Default::default(),
            channel: None,
        }
    }

    /// A record as the releases before versioning wrote it (no `v`), byte for byte.
    const VERSION_ONE_WITHOUT_V: &str = r#"{"orderId":"3-01936f0c2b7e7c3a9d1e5f2a3b4c5d6e","status":"ACCEPTED","path":"REDIS","deliveryType":"SAME_DAY","fulfillmentLocationId":3,"distanceKm":1.25,"deliveryAddress":{"latitude":37.5665,"longitude":126.978},"items":[{"productId":7,"quantity":2,"unitPrice":12000}],"totalAmount":24000,"acceptedAtMs":1795510800123}"#;

    #[test]
    fn a_record_without_a_version_is_read_as_version_one() {
        assert_eq!(OrderRecord::decode(VERSION_ONE_WITHOUT_V).unwrap(), order());
    }

    #[test]
    fn what_is_written_reads_back_and_carries_its_version() {
        let mut o = order();
        o.status = OrderStatus::Rejected;
        o.reason = Some("no units".into());
        o.delivery_address = None;
        let json = OrderRecord::encode(&o);
        assert!(json.starts_with(r#"{"v":1,"#), "{json}");
        assert_eq!(OrderRecord::decode(&json).unwrap(), o);
    }

    #[test]
    fn the_key_of_an_order_reads_back_and_an_unkeyed_record_has_none() {
        let o = order();
        let key = crate::orders::idempotency::IdempotencyRequest {
            scope: "REDIS".into(),
            key: "k-1".into(),
            fingerprint: "ab".repeat(32),
        };
        let json = OrderRecord::encode_keyed(&o, Some(&key));
        assert_eq!(
            OrderRecord::decode_keyed(&json).unwrap(),
            (o.clone(), Some(key))
        );
        assert_eq!(OrderRecord::decode(&json).unwrap(), o);
        assert_eq!(
            OrderRecord::decode_keyed(VERSION_ONE_WITHOUT_V).unwrap().1,
            None
        );
        assert!(!OrderRecord::encode(&o).contains("idempotency"));
    }

    #[test]
    fn a_pickup_code_travels_with_the_record_and_an_old_record_has_none() {
        let mut o = order();
        o.delivery_type = DeliveryType::Pickup;
        o.fulfillment.pickup_code = Some("042917".into());
        o.fulfillment.ready_by = Some("2026-12-07T18:30:00+09:00".into());
        let json = OrderRecord::encode(&o);
        assert!(json.contains(r#""pickupCode":"042917""#), "{json}");
        assert!(
            json.contains(r#""readyBy":"2026-12-07T18:30:00+09:00""#),
            "{json}"
        );
        assert_eq!(OrderRecord::decode(&json).unwrap(), o);
        let old = OrderRecord::decode(VERSION_ONE_WITHOUT_V).unwrap();
        assert_eq!(old.fulfillment, crate::model::Fulfillment::default());
        assert!(!OrderRecord::encode(&order()).contains("pickupCode"));
        assert!(!OrderRecord::encode(&order()).contains("readyBy"));
    }

    #[test]
    fn a_newer_version_is_refused_not_misread() {
        let newer = VERSION_ONE_WITHOUT_V.replacen('{', r#"{"v":2,"#, 1);
        let e = OrderRecord::decode(&newer).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn an_unreadable_record_is_an_error() {
        assert!(OrderRecord::decode("{").is_err());
        assert!(OrderRecord::decode(r#"{"orderId":"1-x"}"#).is_err());
    }
}
