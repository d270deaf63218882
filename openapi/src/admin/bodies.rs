//! The bodies of the operators' routes for stock, keys, locations and products, each with its
//! Swagger example. What the repair routes answer is in `repair_bodies.rs`.

use crate::problem::Problem;
use crate::types::{LocationBody, LocationTypeBody, OpeningHoursBody, Text, WeekdayBody};
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{ApiResponse, Enum, Object};
use sf_persistence::catalog::CalendarChange;
use sf_persistence::orders::Reason;
use sf_routing::{CalendarSpec, LocationId};

/// Why an operator changes stock; recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockReason {
    /// Goods arrived.
    Restock,
    /// A correction (a loss, a mistake).
    Adjust,
    /// A physical count: the on-hand figure set to what was counted.
    Count,
    /// Units damaged and taken off the shelf.
    Damaged,
}

impl From<StockReason> for Reason {
    fn from(r: StockReason) -> Self {
        match r {
            StockReason::Restock => Reason::Restock,
            StockReason::Adjust => Reason::Adjust,
            StockReason::Count => Reason::Count,
            StockReason::Damaged => Reason::Damaged,
        }
    }
}

/// Set the on-hand stock to a quantity (usually a count: units committed to orders stay
/// committed, so a count below them leaves `available` negative — a real shortage that refuses
/// new orders — rather than failing).
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct SetStockRequest {
    /// The new on-hand quantity, 0 to 1,000,000,000.
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
    pub quantity: i64,
    pub reason: StockReason,
    /// Why, in the operator's words; at most 500 characters (more: 422). Kept in the ledger row.
    #[oai(skip_serializing_if_is_none)]
    pub note: Option<Text>,
    /// A document the change refers to, such as a delivery note's number; at most 100
    /// characters (more: 422). Kept in the ledger row.
    #[oai(skip_serializing_if_is_none)]
    pub reference: Option<Text>,
}

impl Example for SetStockRequest {
    fn example() -> Self {
        Self {
            quantity: 50,
            reason: StockReason::Count,
            note: Some(Text("shelf counted after the inventory".into())),
            reference: Some(Text("INV-2026-12".into())),
        }
    }
}

/// Change the on-hand stock by a signed amount.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct AdjustStockRequest {
    /// Units to add (negative to remove), -1,000,000,000 to 1,000,000,000; zero changes nothing.
    #[oai(validator(minimum(value = "-1000000000"), maximum(value = "1000000000")))]
    pub delta: i64,
    pub reason: StockReason,
    /// Why, in the operator's words; at most 500 characters (more: 422). Kept in the ledger row.
    #[oai(skip_serializing_if_is_none)]
    pub note: Option<Text>,
    /// A document the change refers to, such as a delivery note's number; at most 100
    /// characters (more: 422). Kept in the ledger row.
    #[oai(skip_serializing_if_is_none)]
    pub reference: Option<Text>,
}

impl Example for AdjustStockRequest {
    fn example() -> Self {
        Self {
            delta: -2,
            reason: StockReason::Adjust,
            note: Some(Text("two broken in the back room".into())),
            reference: None,
        }
    }
}

/// The longest note an operator's stock change keeps (the ledger's `note` column).
pub const NOTE_MAX_CHARS: usize = 500;
/// The longest reference an operator's stock change keeps (the ledger's `reference` column).
pub const REFERENCE_MAX_CHARS: usize = 100;

/// Who made an operator's stock change and what they added to it: the operator, the body's
/// `note` and `reference` (trimmed; blank is none; too long is a 422 naming the field), and the
/// request's id.
pub fn stock_change_by(
    auth: &crate::auth::OperatorAuth,
    request_id: &crate::request_id::RequestId,
    note: &Option<Text>,
    reference: &Option<Text>,
) -> Result<sf_persistence::access::Attribution, Problem> {
    let field = |name: &str, value: &Option<Text>, max: usize| {
        let value = value.as_ref().map(|t| t.0.trim()).filter(|t| !t.is_empty());
        match value {
            Some(v) if v.chars().count() > max => Err(Problem::validation(format!(
                "{name}: at most {max} characters, got {}",
                v.chars().count()
            ))),
            v => Ok(v.map(str::to_owned)),
        }
    };
    Ok(sf_persistence::access::Attribution {
        actor: auth.0.actor(),
        note: field("note", note, NOTE_MAX_CHARS)?,
        reference: field("reference", reference, REFERENCE_MAX_CHARS)?,
        request_id: Some(request_id.as_str().to_owned()),
    })
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StockChangeBody {
    pub location_id: u64,
    pub product_id: u64,
    /// On-hand before the change.
    pub before: i64,
    /// On-hand after the change.
    pub after: i64,
}

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct IssueKeyRequest {
    /// A note for operators, such as the terminal's name; at most 100 characters.
    #[oai(validator(max_length = 100))]
    pub label: Option<Text>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct IssuedKeyBody {
    pub key_id: u64,
    pub store_id: u64,
    /// The key itself. Shown this once; only its hash is kept.
    pub key: String,
}

/// An issued key.
#[derive(ApiResponse)]
pub enum KeyIssued {
    /// Issued.
    #[oai(status = 201)]
    Created(Json<IssuedKeyBody>),
}

/// A revoked key.
#[derive(ApiResponse)]
pub enum KeyRevoked {
    /// Revoked; it stops working at once.
    #[oai(status = 204)]
    Revoked,
}

// Names and SKUs must hold a character that is not white space. The pattern says so in a form
// that means the same in ECMA-262 (the spec's regex dialect), Rust's regex (the validator's) and
// Python's `re` (clients' tools): their `\s` differ by U+001C-U+001F, U+0085 and U+FEFF, so those
// are named too. A plain `\S` let a name of only U+FEFF through, and refused U+0085 the spec
// allows.

/// A new warehouse or store, with its calendar. Send no calendar field and it is open around the
/// clock in `Asia/Seoul` (as every warehouse); send any, and the others take their defaults.
/// Times are local wall-clock times in `timeZone`; a calendar that breaks a rule (an unknown
/// zone, a time that is not `HH:MM`, `closes` not after `opens`, two ranges of one day that
/// overlap, a date that is not `YYYY-MM-DD`) is a 422 whose `detail` names the field.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields, example)]
pub struct NewLocation {
    pub location_type: LocationTypeBody,
    /// 1 to 200 characters, not only white space.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\s\x1C-\x1F\u0085\uFEFF]"
    ))]
    pub name: Text,
    /// -90 to 90.
    #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
    pub latitude: f64,
    /// -180 to 180.
    #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
    pub longitude: f64,
    /// An IANA time zone name (default `Asia/Seoul`).
    #[oai(validator(max_length = 64))]
    pub time_zone: Option<String>,
    /// Weekly opening ranges (at most 70); a day without a range is closed. None or empty: open
    /// around the clock.
    #[oai(validator(max_items = 70))]
    pub opening_hours: Option<Vec<OpeningHoursBody>>,
    /// Civil dates `YYYY-MM-DD` (in `timeZone`, at most 400) on which it is closed all day.
    #[oai(validator(max_items = 400))]
    pub closed_dates: Option<Vec<String>>,
    /// Same-day orders are routed here only before this local time, `HH:MM` (default: the end
    /// of the current opening minus `pickupPreparationMinutes`).
    #[oai(validator(max_length = 16))]
    pub same_day_cutoff: Option<String>,
    /// How long a pickup takes to prepare, 0 to 1440 minutes (default 30).
    #[oai(validator(minimum(value = "0"), maximum(value = "1440")))]
    pub pickup_preparation_minutes: Option<i64>,
}

impl NewLocation {
    /// The calendar sent, or `None` when no calendar field was.
    pub fn calendar(&self) -> Option<CalendarSpec> {
        let none = self.time_zone.is_none()
            && self.opening_hours.is_none()
            && self.closed_dates.is_none()
            && self.same_day_cutoff.is_none()
            && self.pickup_preparation_minutes.is_none();
        (!none).then(|| CalendarSpec {
            time_zone: self.time_zone.clone(),
            opening_hours: self
                .opening_hours
                .iter()
                .flatten()
                .cloned()
                .map(Into::into)
                .collect(),
            closed_dates: self.closed_dates.clone().unwrap_or_default(),
            same_day_cutoff: self.same_day_cutoff.clone(),
            pickup_preparation_minutes: self.pickup_preparation_minutes,
        })
    }
}

impl Example for NewLocation {
    fn example() -> Self {
        Self {
            location_type: LocationTypeBody::Store,
            name: Text("Euljiro".into()),
            latitude: 37.566,
            longitude: 126.991,
            time_zone: Some("Asia/Seoul".into()),
            opening_hours: Some(
                [
                    WeekdayBody::Mon,
                    WeekdayBody::Tue,
                    WeekdayBody::Wed,
                    WeekdayBody::Thu,
                ]
                .into_iter()
                .chain([WeekdayBody::Fri, WeekdayBody::Sat])
                .map(|day| OpeningHoursBody::new(day, "10:00", "22:00"))
                .collect(),
            ),
            closed_dates: Some(vec!["2026-12-25".into()]),
            same_day_cutoff: Some("18:00".into()),
            pickup_preparation_minutes: Some(30),
        }
    }
}

/// Changes to a location; absent fields stay as they are. `active: false` closes it: routing
/// never chooses it again and the store routes answer 404 for it; `active: true` reopens it.
///
/// Calendar fields replace what they name and keep the others: `openingHours: []` makes the
/// location open around the clock again, `closedDates: []` clears its dates, `sameDayCutoff:
/// null` removes the cut-off. The calendar that results is checked whole, like a new location's
/// (a 422 names the field), and a refused change changes nothing.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields, example)]
pub struct LocationPatch {
    /// 1 to 200 characters, not only white space.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\s\x1C-\x1F\u0085\uFEFF]"
    ))]
    pub name: Option<Text>,
    /// -90 to 90 (the longitude stays as it is when not sent).
    #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
    pub latitude: Option<f64>,
    /// -180 to 180 (the latitude stays as it is when not sent).
    #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
    pub longitude: Option<f64>,
    pub active: Option<bool>,
    /// The default safety stock of the location's products (0 to 1,000,000,000): units online
    /// orders may not take, for products without a buffer of their own.
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
    pub safety_stock: Option<i64>,
    /// At or below this many sellable units a product is low here: `stock.low` fires once as it
    /// crosses (0 to 1,000,000,000; 0: no low events, only `stock.out` and `stock.back`).
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
    pub low_stock_threshold: Option<i64>,
    /// An IANA time zone name; the hours and dates keep their wall-clock values in it.
    #[oai(validator(max_length = 64))]
    pub time_zone: Option<String>,
    /// Replaces every opening range (at most 70); `[]`: open around the clock.
    #[oai(validator(max_items = 70))]
    pub opening_hours: Option<Vec<OpeningHoursBody>>,
    /// Replaces every closed date (`YYYY-MM-DD`, at most 400); `[]`: none.
    #[oai(validator(max_items = 400))]
    pub closed_dates: Option<Vec<String>>,
    /// The same-day cut-off, `HH:MM`; `null` removes it (same-day then ends at closing time minus
    /// `pickupPreparationMinutes`).
    #[oai(validator(max_length = 16))]
    pub same_day_cutoff: MaybeUndefined<String>,
    /// How long a pickup takes to prepare, 0 to 1440 minutes.
    #[oai(validator(minimum(value = "0"), maximum(value = "1440")))]
    pub pickup_preparation_minutes: Option<i64>,
}

impl LocationPatch {
    /// The calendar fields sent.
    pub fn calendar(&self) -> CalendarChange {
        CalendarChange {
            time_zone: self.time_zone.clone(),
            opening_hours: self
                .opening_hours
                .clone()
                .map(|hours| hours.into_iter().map(Into::into).collect()),
            closed_dates: self.closed_dates.clone(),
            same_day_cutoff: match &self.same_day_cutoff {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(cutoff) => Some(Some(cutoff.clone())),
            },
            pickup_preparation_minutes: self.pickup_preparation_minutes,
        }
    }
}

impl Example for LocationPatch {
    fn example() -> Self {
        Self {
            name: None,
            latitude: None,
            longitude: None,
            active: None,
            safety_stock: None,
            low_stock_threshold: Some(5),
            time_zone: None,
            opening_hours: None,
            closed_dates: Some(vec!["2026-12-25".into(), "2027-01-01".into()]),
            same_day_cutoff: MaybeUndefined::Value("17:00".into()),
            pickup_preparation_minutes: None,
        }
    }
}

/// A new product.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct NewProduct {
    /// Unique, 1 to 64 characters, not only white space.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"[^\s\x1C-\x1F\u0085\uFEFF]"
    ))]
    pub sku: Text,
    /// 1 to 200 characters, not only white space.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\s\x1C-\x1F\u0085\uFEFF]"
    ))]
    pub name: Text,
    /// Price of one unit in won, 0 to 100,000,000.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000000")))]
    pub price: i64,
}

/// Changes to a product; absent fields stay as they are. `active: false` stops its sale: it
/// cannot be ordered and the shop's pages answer 404 for it; `active: true` resumes it.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct ProductPatch {
    /// 1 to 200 characters, not only white space.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\s\x1C-\x1F\u0085\uFEFF]"
    ))]
    pub name: Option<Text>,
    /// Price of one unit in won, 0 to 100,000,000.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000000")))]
    pub price: Option<i64>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AdminProductBody {
    pub product_id: u64,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub active: bool,
}

impl From<sf_persistence::model::Product> for AdminProductBody {
    fn from(p: sf_persistence::model::Product) -> Self {
        Self {
            product_id: p.product_id,
            sku: p.sku,
            name: p.name,
            price: p.price,
            active: p.active,
        }
    }
}

/// Products as operators see them, active or not.
#[derive(Debug, Clone, Object)]
pub struct AdminProductList {
    /// In id order.
    pub products: Vec<AdminProductBody>,
    /// The most products a page holds, as asked (`limit`).
    pub limit: u32,
    /// Pass as `after` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<u64>,
}

/// An opened location.
#[derive(ApiResponse)]
pub enum LocationCreated {
    /// Opened.
    #[oai(status = 201)]
    Created(Json<LocationBody>),
}

/// A created product.
#[derive(ApiResponse)]
pub enum ProductCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<AdminProductBody>),
}

/// One row of a stock row's ledger.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct MovementBody {
    /// Its place in the ledger: later rows have greater ids.
    pub id: u64,
    /// `ORDER`, `CANCEL`, `FULFILLED`, `NOT_COLLECTED`, `POS_SALE`, `POS_RETURN`, `RESTOCK`,
    /// `ADJUST`, `COUNT`, `DAMAGED`, `RECONCILE`, `HOLD`, `HOLD_RELEASED`, `HOLD_EXPIRED`,
    /// `HOLD_CONVERTED`.
    pub reason: String,
    /// The order, sale or operator's change that caused it.
    pub ref_id: String,
    pub available_delta: i64,
    pub committed_delta: i64,
    /// Units held for checkouts: `HOLD` takes them from `available`, the hold's end gives them
    /// back (`HOLD_RELEASED`, `HOLD_EXPIRED`) or to `committed` (`HOLD_CONVERTED`).
    pub reserved_delta: i64,
    pub on_hand_delta: i64,
    /// Who made it: `operator:<id>`, `store-key:<id>` (a till or a store's hand-over),
    /// `channel:<id>` (a sales channel's order, cancel or hold; `channel:none` without one),
    /// `system:<job>` (`not-collected`, `hold-expiry`, …), or `system:before-actors` for rows
    /// written before actors were recorded.
    pub actor: String,
    /// An operator's note.
    #[oai(skip_serializing_if_is_none)]
    pub note: Option<String>,
    /// An operator's reference (a delivery note's number).
    #[oai(skip_serializing_if_is_none)]
    pub reference: Option<String>,
    /// The `X-Request-Id` of the request that made it (an operator's stock change).
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    /// When it was written (RFC 3339).
    pub at: String,
}

impl Example for MovementBody {
    fn example() -> Self {
        Self {
            id: 4812,
            reason: "FULFILLED".into(),
            ref_id: "3-01936f0c2b7e7c3a9d1e5f2a3b4c5d6e".into(),
            available_delta: 0,
            committed_delta: -2,
            reserved_delta: 0,
            on_hand_delta: -2,
            actor: "store-key:12".into(),
            note: None,
            reference: None,
            request_id: None,
            at: "2026-12-07T09:00:00.000Z".into(),
        }
    }
}

impl From<sf_persistence::model::Movement> for MovementBody {
    fn from(m: sf_persistence::model::Movement) -> Self {
        Self {
            id: m.id,
            reason: m.reason,
            ref_id: m.ref_id,
            available_delta: m.available_delta,
            committed_delta: m.committed_delta,
            reserved_delta: m.reserved_delta,
            on_hand_delta: m.on_hand_delta,
            actor: m.actor,
            note: m.note,
            reference: m.reference,
            request_id: m.request_id,
            at: crate::types::rfc3339(m.at_ms),
        }
    }
}

/// A page of a stock row's ledger, newest first.
#[derive(Debug, Clone, Object)]
pub struct MovementPage {
    pub movements: Vec<MovementBody>,
    /// The `after` of the next page (older rows); absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<u64>,
}

pub fn location_in_path(id: i64) -> Result<LocationId, Problem> {
    LocationId::parse("locationId", id)
        .map_err(|_| Problem::not_found(format!("location {id} does not exist")))
}

/// Set a product's safety stock at a location: units online channels may not take (the till
/// may). `null` falls back to the location's default.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct SafetyStockRequest {
    /// The buffer, 0 to 1,000,000,000; `null`: the location's default.
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
    pub quantity: Option<i64>,
}

impl Example for SafetyStockRequest {
    fn example() -> Self {
        Self { quantity: Some(3) }
    }
}

/// Every state of a product's stock at a location, as MySQL holds it.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct StockStatesBody {
    pub store_id: u64,
    pub product_id: u64,
    /// Units physically at the location.
    pub on_hand: i64,
    /// Units of online orders persisted and not yet handed over.
    pub committed: i64,
    /// Units held for checkouts.
    pub reserved: i64,
    /// `onHand − committed − reserved`: what the location can still promise (negative after a
    /// count found fewer units than are committed).
    pub available: i64,
    /// The buffer online channels may not take (the product's own, else the location's default).
    pub safety_stock: i64,
    /// `max(0, available − safetyStock)`: what the shop may sell.
    pub sellable_online: i64,
    /// One figure for clients that read one: `available` on the operators' route; on the store's
    /// route the live figure from the stock cache, which counts online orders accepted and not
    /// yet persisted (`Stock-Source` says where it came from).
    pub quantity: i64,
}

impl Example for StockStatesBody {
    fn example() -> Self {
        Self {
            store_id: 3,
            product_id: 1,
            on_hand: 12,
            committed: 4,
            reserved: 0,
            available: 8,
            safety_stock: 2,
            sellable_online: 6,
            quantity: 8,
        }
    }
}

impl From<sf_persistence::model::StockStates> for StockStatesBody {
    fn from(s: sf_persistence::model::StockStates) -> Self {
        Self {
            store_id: s.location_id,
            product_id: s.product_id,
            on_hand: s.on_hand(),
            committed: s.committed,
            reserved: s.reserved,
            available: s.available,
            safety_stock: s.safety_stock,
            sellable_online: s.sellable_online(),
            quantity: s.available,
        }
    }
}
