//! Shared test data: locations with stock, stores with a POS key, and order bodies.

use super::TestApp;
use serde_json::{json, Value};

/// Seoul City Hall: the default delivery address of the tests.
pub const SEOUL: (f64, f64) = (37.5665, 126.9780);

/// Where [`TestApp::add_warehouse`] puts its warehouse (south-east of Seoul, ~24 km from City
/// Hall).
pub const WAREHOUSE_AT: (f64, f64) = (37.4, 127.1);

/// A store holding stock of new products, with a POS key ([`TestApp::store_with`]).
pub struct StockedStore {
    pub store: u64,
    pub products: Vec<u64>,
    pub key: String,
}

/// Three stores on a line north of City Hall and a warehouse far away ([`TestApp::town`]); no
/// stock yet.
#[derive(Clone, Copy)]
pub struct Town {
    pub near: u64,
    pub middle: u64,
    pub far: u64,
    pub out_of_range: u64,
    pub product: u64,
}

impl TestApp {
    /// A warehouse "W" at [`WAREHOUSE_AT`].
    pub async fn add_warehouse(&self) -> u64 {
        self.add_location("WAREHOUSE", "W", WAREHOUSE_AT.0, WAREHOUSE_AT.1)
            .await
    }

    /// A new product priced `price`, with `qty` units at `loc`.
    pub async fn add_stocked_product(&self, loc: u64, price: i64, qty: i64) -> u64 {
        let p = self.add_product(price).await;
        self.stock_row(loc, p, qty).await;
        p
    }

    /// A warehouse holding `qty` units of each of `products` new products priced 1,000.
    pub async fn warehouse_with(&self, products: usize, qty: i64) -> (u64, Vec<u64>) {
        let wh = self.add_warehouse().await;
        let mut ps = Vec::new();
        for _ in 0..products {
            ps.push(self.add_stocked_product(wh, 1_000, qty).await);
        }
        (wh, ps)
    }

    /// A warehouse holding `qty` units of one new product priced `price`.
    pub async fn warehouse_with_product(&self, price: i64, qty: i64) -> (u64, u64) {
        let wh = self.add_warehouse().await;
        (wh, self.add_stocked_product(wh, price, qty).await)
    }

    /// A store "S" at City Hall holding `qty` units of each of `products` new products priced
    /// 1,000, and a POS key of the store.
    pub async fn store_with(&self, products: usize, qty: i64) -> StockedStore {
        let store = self.add_location("STORE", "S", SEOUL.0, SEOUL.1).await;
        let mut ps = Vec::new();
        for _ in 0..products {
            ps.push(self.add_stocked_product(store, 1_000, qty).await);
        }
        StockedStore {
            store,
            products: ps,
            key: self.issue_key(store).await,
        }
    }

    /// Three stores on a line north of City Hall (about 0.4, 3.7 and 8.2 km away, and one 14.8 km
    /// away, out of the same-day radius), a warehouse far away, and one product priced 3,000.
    pub async fn town(&self) -> Town {
        self.add_location("WAREHOUSE", "Icheon", 37.2792, 127.4425)
            .await;
        let near = self.add_location("STORE", "Near", 37.5700, 126.9780).await;
        let middle = self
            .add_location("STORE", "Middle", 37.6000, 126.9780)
            .await;
        let far = self.add_location("STORE", "Far", 37.6400, 126.9780).await;
        let out_of_range = self.add_location("STORE", "Out", 37.7000, 126.9780).await;
        let product = self.add_product(3_000).await;
        Town {
            near,
            middle,
            far,
            out_of_range,
            product,
        }
    }
}

fn lines(items: &[(u64, i64)]) -> Vec<Value> {
    items
        .iter()
        .map(|(p, q)| json!({"productId": p, "quantity": q}))
        .collect()
}

/// An order body for the online paths, delivered to (`lat`, `lon`).
pub fn normal_order(items: &[(u64, i64)], lat: f64, lon: f64) -> Value {
    json!({
        "items": lines(items),
        "deliveryType": "NORMAL",
        "deliveryAddress": {"latitude": lat, "longitude": lon},
    })
}

/// A same-day order to City Hall.
pub fn same_day_order(items: &[(u64, i64)]) -> Value {
    json!({
        "items": lines(items),
        "deliveryType": "SAME_DAY",
        "deliveryAddress": {"latitude": SEOUL.0, "longitude": SEOUL.1},
    })
}

/// A pickup order at `store`.
pub fn pickup_order(items: &[(u64, i64)], store: u64) -> Value {
    json!({"items": lines(items), "deliveryType": "PICKUP", "storeId": store})
}

/// A POS sale body (`POST /api/stores/{storeId}/orders`).
pub fn pos_sale(items: &[(u64, i64)]) -> Value {
    json!({"items": lines(items)})
}
