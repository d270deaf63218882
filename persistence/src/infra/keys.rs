//! Stock, order records and order events in Redis: connections, key names, and running the Lua
//! scripts that change them (each script's keys, arguments and reply live in [`crate::scripts`]).
//!
//! Key layout (the prefix is configurable so tests and instances can share one server):
//!
//! | key | type | what |
//! |---|---|---|
//! | `<p>{L<loc>}:s:<product>` | string | units sellable through Redis at a location |
//! | `<p>{L<loc>}:ev` | stream | order events not yet known persisted to MySQL |
//! | `<p>{L<loc>}:dead` | stream | events that could not be persisted, each with its error |
//! | `<p>{L<loc>}:o:<order>` | hash | a Redis-path order: `st` (`A` accepted, `C` cancelled, `X` rejected), `j` (its JSON), `r` (why rejected) |
//! | `<p>{L<loc>}:w` | string | written before a `WAIT` that must cover the location's slot (expires) |
//! | `<p>{L<loc>}:epoch` | string | when the location's stock was loaded; its absence means Redis lost the location's data |
//! | `<p>idem:{<scope>:<key>}` | string | idempotency claim: `2\|<fingerprint>\|<order uuid>\|<answer>` |
//! | `<p>idem:{<scope>:<key>}:lease` | string | held while a request decides the claimed order |
//! | `<p>lease:<job>` | string | held by the instance running a scheduled job |
//! | `<p>{cred}:ck:<hash>` | string | a checked channel key: `<keyId>:<channelId>` |
//! | `<p>{cred}:ckr:<hash>` | string | a revoked channel key's hash: never kept again |
//!
//! Every key one script touches shares one hash tag (the location's `{L<loc>}`, or the claim's
//! `{<scope>:<key>}`), so each script runs on one slot of a Redis Cluster, and a location's data
//! lives on one shard.

use sf_routing::{LocationId, ProductId};

/// The consumer group that persists events to MySQL.
pub const GROUP: &str = "persist";

/// Builds key names under one prefix, and parses the ones the service reads back (stock keys
/// Redis reports as changed). Every key's format is written here and nowhere else.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn stock(&self, loc: LocationId, product: ProductId) -> String {
        format!("{}{}", self.stock_prefix(loc), product)
    }
    /// What every stock key of `loc` starts with (its product id follows).
    pub fn stock_prefix(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:s:", self.prefix, loc)
    }
    /// What every key of every location starts with (`<p>{L`): the one prefix the stock mirror
    /// asks Redis to report changes under. (One prefix, not one per location: Redis matches
    /// each written key against every prefix it tracks, one by one.)
    pub fn locations_prefix(&self) -> String {
        format!("{}{{L", self.prefix)
    }
    /// Whether `key` is a key of a location (starts with [`Keys::locations_prefix`]).
    pub fn is_location_key(&self, key: &[u8]) -> bool {
        key.strip_prefix(self.prefix.as_bytes())
            .is_some_and(|rest| rest.starts_with(b"{L"))
    }
    /// (location, product) of a stock key under this prefix; `None` for any other key.
    pub fn parse_stock(&self, key: &[u8]) -> Option<(u64, u64)> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b"{L")?;
        let rest = std::str::from_utf8(rest).ok()?;
        let (loc, product) = rest.split_once("}:s:")?;
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        Some((number(loc)?, number(product)?))
    }
    /// The stock keys of `products` at each of `locations`, built into one buffer.
    pub fn stock_table(&self, locations: &[LocationId], products: &[ProductId]) -> StockKeyTable {
        StockKeyTable::new(self, locations, products)
    }
    /// The safety stock Redis decides with (hash: `v` = 1, `*` = the location's default, and a
    /// field per product with a buffer of its own), set from MySQL with the location's keys.
    pub fn safety(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:safety", self.prefix, loc)
    }
    pub fn stream(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:ev", self.prefix, loc)
    }
    /// Events that could not be persisted, with their errors.
    pub fn dead_letters(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:dead", self.prefix, loc)
    }
    pub fn order(&self, loc: LocationId, order_id: &str) -> String {
        format!("{}{{L{}}}:o:{}", self.prefix, loc, order_id)
    }
    /// Written before a `WAIT` that must cover everything the location's slot holds.
    pub fn replication_witness(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:w", self.prefix, loc)
    }
    /// An idempotency claim; its hash tag keeps the claim and its lease on one slot.
    pub fn idempotency(&self, scope: &str, key: &str) -> String {
        format!("{}idem:{{{}:{}}}", self.prefix, scope, key)
    }
    /// Present while Redis holds the location's data this service loaded (it lives on the
    /// location's slot, so it goes with the shard that holds the data); its absence means Redis
    /// lost it.
    pub fn epoch(&self, loc: LocationId) -> String {
        format!("{}{{L{}}}:epoch", self.prefix, loc)
    }
    /// A channel key kept for checks that must not need MySQL, by the key's hash.
    pub fn channel_key(&self, hash: &str) -> String {
        format!("{}{{cred}}:ck:{}", self.prefix, hash)
    }
    /// Marks a channel key's hash revoked, so that no check keeps it again.
    pub fn revoked_channel_key(&self, hash: &str) -> String {
        format!("{}{{cred}}:ckr:{}", self.prefix, hash)
    }
    pub fn lease(&self, job: &str) -> String {
        format!("{}lease:{}", self.prefix, job)
    }
}

/// The stock keys of some products at some locations, built into one buffer: a page reads up to
/// thousands of keys per request, and formatting each on its own was a tenth of a read's time.
/// Keys of one location differ only in the product id at their end ([`Keys::stock_prefix`]), so
/// the rest is written once per location.
pub struct StockKeyTable {
    bytes: Vec<u8>,
    /// Where each key ends in `bytes`, location by location, products in order.
    ends: Vec<usize>,
    per_location: usize,
}

impl StockKeyTable {
    fn new(keys: &Keys, locations: &[LocationId], products: &[ProductId]) -> Self {
        let mut bytes = Vec::with_capacity(locations.len() * products.len() * 32);
        let mut ends = Vec::with_capacity(locations.len() * products.len());
        let mut number = itoa::Buffer::new();
        for loc in locations {
            let prefix = keys.stock_prefix(*loc);
            for p in products {
                bytes.extend_from_slice(prefix.as_bytes());
                bytes.extend_from_slice(number.format(p.get()).as_bytes());
                ends.push(bytes.len());
            }
        }
        Self {
            bytes,
            ends,
            per_location: products.len(),
        }
    }

    /// The keys at the `li`-th location.
    pub fn at(&self, li: usize) -> impl Iterator<Item = &[u8]> {
        let first = li * self.per_location;
        (first..first + self.per_location).map(move |i| self.key(i))
    }

    /// The `i`-th key, location by location, products in order.
    pub fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_location_is_under_the_locations_prefix_and_no_other() {
        let keys = Keys::new("sf:");
        let loc = LocationId::new_unchecked(12);
        let stock = keys.stock(loc, ProductId::new_unchecked(3));
        for key in [
            stock.as_str(),
            "sf:{L12}:ev",
            "sf:{L12}:o:12-x",
            "sf:{L12}:epoch",
        ] {
            assert!(key.starts_with(&keys.locations_prefix()), "{key}");
            assert!(keys.is_location_key(key.as_bytes()), "{key}");
        }
        for key in [
            "sf:lease:reconcile",
            "sf:idem:{1:k}",
            "sf:{cred}:ck:x",
            "other:{L12}:ev",
        ] {
            assert!(!keys.is_location_key(key.as_bytes()), "{key}");
        }
    }

    #[test]
    fn a_stock_key_parses_back_to_its_location_and_product() {
        let keys = Keys::new("sf:");
        let built = keys.stock(LocationId::new_unchecked(12), ProductId::new_unchecked(345));
        assert_eq!(keys.parse_stock(built.as_bytes()), Some((12, 345)));
        for other in [
            &b"sf:{L12}:ev"[..],
            b"sf:{L12}:s:",
            b"sf:{L}:s:3",
            b"sf:{L1}:s:+3",
            b"other:{L1}:s:3",
            b"sf:{L1}:o:3",
        ] {
            assert_eq!(
                keys.parse_stock(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn a_key_table_holds_the_keys_of_its_locations_and_products() {
        let keys = Keys::new("t:");
        let locations = [LocationId::new_unchecked(1), LocationId::new_unchecked(42)];
        let products = [
            ProductId::new_unchecked(1),
            ProductId::new_unchecked(10),
            ProductId::new_unchecked(u64::MAX),
        ];
        let built = keys.stock_table(&locations, &products);
        for (li, loc) in locations.iter().enumerate() {
            let want: Vec<String> = products.iter().map(|p| keys.stock(*loc, *p)).collect();
            let got: Vec<String> = built
                .at(li)
                .map(|k| String::from_utf8(k.to_vec()).unwrap())
                .collect();
            assert_eq!(got, want);
        }
    }
}
