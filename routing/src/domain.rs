//! Domain values that validate once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The largest quantity one order may ask of one product. Anything above is treated as a client
/// mistake (an "absurd" quantity), not as a stock shortage.
pub const MAX_LINE_QUANTITY: u32 = 1_000;
/// The most distinct products one order may carry.
pub const MAX_DISTINCT_LINES: usize = 50;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("{field} must be a positive id, got {value}")]
    BadId { field: &'static str, value: i64 },
    #[error("quantity for product {product} must be between 1 and {max}, got {value}")]
    BadQuantity { product: u64, value: i64, max: u32 },
    #[error("an order needs at least one item")]
    EmptyOrder,
    #[error("an order may carry at most {max} distinct products, got {value}")]
    TooManyLines { value: usize, max: usize },
    #[error("latitude must be within -90..90 and longitude within -180..180, got ({latitude}, {longitude})")]
    BadCoordinates { latitude: f64, longitude: f64 },
}

/// A product id, always positive.
///
/// With the `sqlx` feature it is read from and bound to SQL as its number (`BIGINT UNSIGNED`).
/// Reading does not check that it is positive: a value from the service's own database is trusted
/// as [`ProductId::new_unchecked`] trusts its caller (the column is an `AUTO_INCREMENT` key, or
/// holds one, and every id written there was validated first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
pub struct ProductId(u64);

impl ProductId {
    pub fn parse(value: i64) -> Result<Self, DomainError> {
        positive("productId", value).map(Self)
    }
    /// For a value known to be positive already (one the service stored or made itself);
    /// nothing is checked.
    pub const fn new_unchecked(value: u64) -> Self {
        Self(value)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A location (warehouse or store) id, always positive.
///
/// With the `sqlx` feature it is read from and bound to SQL as its number, trusted when read as
/// [`ProductId`] is (see there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
pub struct LocationId(u64);

impl LocationId {
    pub fn parse(field: &'static str, value: i64) -> Result<Self, DomainError> {
        positive(field, value).map(Self)
    }
    /// For a value known to be positive already (one the service stored or made itself);
    /// nothing is checked.
    pub const fn new_unchecked(value: u64) -> Self {
        Self(value)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for LocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn positive(field: &'static str, value: i64) -> Result<u64, DomainError> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or(DomainError::BadId { field, value })
}

/// A quantity of one product in one order: 1 ..= [`MAX_LINE_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(product: ProductId, value: i64) -> Result<Self, DomainError> {
        if (1..=i64::from(MAX_LINE_QUANTITY)).contains(&value) {
            Ok(Self(value as u32))
        } else {
            Err(DomainError::BadQuantity {
                product: product.get(),
                value,
                max: MAX_LINE_QUANTITY,
            })
        }
    }
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// A point on the earth, validated to lie in range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coordinates {
    latitude: f64,
    longitude: f64,
}

impl Coordinates {
    pub fn new(latitude: f64, longitude: f64) -> Result<Self, DomainError> {
        let ok = latitude.is_finite()
            && longitude.is_finite()
            && (-90.0..=90.0).contains(&latitude)
            && (-180.0..=180.0).contains(&longitude);
        if ok {
            Ok(Self {
                latitude,
                longitude,
            })
        } else {
            Err(DomainError::BadCoordinates {
                latitude,
                longitude,
            })
        }
    }
    pub const fn latitude(self) -> f64 {
        self.latitude
    }
    pub const fn longitude(self) -> f64 {
        self.longitude
    }
}

/// Where an order ships from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LocationKind {
    Warehouse,
    Store,
}

impl LocationKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Warehouse => "WAREHOUSE",
            Self::Store => "STORE",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "WAREHOUSE" => Some(Self::Warehouse),
            "STORE" => Some(Self::Store),
            _ => None,
        }
    }
}

/// How an order reaches the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryType {
    Normal,
    SameDay,
    Pickup,
    InStore,
}

impl DeliveryType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::SameDay => "SAME_DAY",
            Self::Pickup => "PICKUP",
            Self::InStore => "IN_STORE",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NORMAL" => Some(Self::Normal),
            "SAME_DAY" => Some(Self::SameDay),
            "PICKUP" => Some(Self::Pickup),
            "IN_STORE" => Some(Self::InStore),
            _ => None,
        }
    }
}

/// The lines of an order, merged by product (two lines of one product are summed, never
/// under-counted) and sorted by product id, which is also the order in which stock is locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines(Vec<(ProductId, Quantity)>);

impl OrderLines {
    /// Validates raw `(productId, quantity)` pairs as a client sent them.
    pub fn parse(raw: impl IntoIterator<Item = (i64, i64)>) -> Result<Self, DomainError> {
        let mut merged: BTreeMap<ProductId, i64> = BTreeMap::new();
        let mut any = false;
        for (product, quantity) in raw {
            any = true;
            let product = ProductId::parse(product)?;
            // Each line is checked alone first, so a negative line cannot hide inside a sum.
            Quantity::parse(product, quantity)?;
            *merged.entry(product).or_default() += quantity;
        }
        if !any {
            return Err(DomainError::EmptyOrder);
        }
        if merged.len() > MAX_DISTINCT_LINES {
            return Err(DomainError::TooManyLines {
                value: merged.len(),
                max: MAX_DISTINCT_LINES,
            });
        }
        merged
            .into_iter()
            .map(|(p, q)| Quantity::parse(p, q).map(|q| (p, q)))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn iter(&self) -> impl Iterator<Item = (ProductId, Quantity)> + '_ {
        self.0.iter().copied()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn products(&self) -> impl Iterator<Item = ProductId> + '_ {
        self.0.iter().map(|(p, _)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_one_product_are_summed() {
        let lines = OrderLines::parse([(2, 3), (1, 1), (2, 4)]).unwrap();
        let got: Vec<_> = lines.iter().map(|(p, q)| (p.get(), q.get())).collect();
        assert_eq!(got, vec![(1, 1), (2, 7)]);
    }

    #[test]
    fn a_sum_past_the_limit_is_rejected() {
        let err = OrderLines::parse([(1, 600), (1, 600)]).unwrap_err();
        assert_eq!(
            err,
            DomainError::BadQuantity {
                product: 1,
                value: 1200,
                max: MAX_LINE_QUANTITY
            }
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert_eq!(OrderLines::parse([]).unwrap_err(), DomainError::EmptyOrder);
        assert!(matches!(
            OrderLines::parse([(1, 0)]).unwrap_err(),
            DomainError::BadQuantity { value: 0, .. }
        ));
        assert!(matches!(
            OrderLines::parse([(1, 5), (1, -3)]).unwrap_err(),
            DomainError::BadQuantity { value: -3, .. }
        ));
        assert!(matches!(
            OrderLines::parse([(0, 1)]).unwrap_err(),
            DomainError::BadId { value: 0, .. }
        ));
        assert!(Coordinates::new(91.0, 0.0).is_err());
        assert!(Coordinates::new(0.0, f64::NAN).is_err());
        assert!(Coordinates::new(37.5, 127.0).is_ok());
    }
}
