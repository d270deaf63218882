//! The store POS API under `/api/stores/{storeId}`.
//!
//! Reads (the store's stock, nearby stores) are open, like the shop's product pages: they show
//! figures the shop shows anyway. Everything that changes stock (a sale, a cancel or return) needs
//! a POS key of that very store: no key or a bad key is `401`, a key of another store `403`, and
//! neither changes anything.

use crate::auth::StoreKey;
use crate::catalog::page_and_size;
use crate::orders::idempotency;
use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use crate::types::{parse_lines, same_day_open_until, OrderBody, PosOrderRequest};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use sf_persistence::db_lock::{DbLockOrder, Placed};
use sf_persistence::model::OrderPath;
use sf_persistence::Refusal;
use sf_routing::{Destination, LocationId, LocationKind, ProductId};
use std::sync::Arc;

#[derive(Tags)]
pub enum StoresTag {
    /// Store terminals: the store's stock, nearby stores, POS sales and returns (per-store keys).
    Stores,
}

pub struct StoresApi {
    pub state: Arc<ApiState>,
}

/// A product and its sellable quantity in one store.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StoreProduct {
    pub product_id: u64,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub quantity: i64,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StoreProductList {
    pub store_id: u64,
    pub products: Vec<StoreProduct>,
    pub page: u32,
    pub size: u32,
    pub total: u64,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct NearbyStore {
    pub store_id: u64,
    pub name: String,
    pub distance_km: f64,
    pub quantity: i64,
    /// Open at the time of the answer (its opening hours and closed dates).
    pub open_now: bool,
    /// When today's same-day window ends (ISO-8601 with the store's offset; the end of the day
    /// for a store open around the clock); absent when same-day is closed for the rest of the
    /// day.
    #[oai(skip_serializing_if_is_none)]
    pub same_day_open_until: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct NearbyStores {
    /// Nearest first.
    pub stores: Vec<NearbyStore>,
}

impl Example for NearbyStores {
    fn example() -> Self {
        Self {
            stores: vec![
                NearbyStore {
                    store_id: 12,
                    name: "Jongno 3-ga".into(),
                    distance_km: 1.214,
                    quantity: 7,
                    open_now: true,
                    same_day_open_until: Some("2026-12-07T20:00:00+09:00".into()),
                },
                NearbyStore {
                    store_id: 14,
                    name: "Seoul Station".into(),
                    distance_km: 1.873,
                    quantity: 2,
                    open_now: false,
                    same_day_open_until: None,
                },
            ],
        }
    }
}

/// A page of the store's products.
#[derive(ApiResponse)]
pub enum StoreProductsPage {
    /// A page of the store's products with their sellable quantity.
    #[oai(status = 200)]
    Ok(
        Json<StoreProductList>,
        /// `redis` (the sellable figure), or `mysql` while the stock cache is unavailable
        /// (on-hand, still counting online orders not yet persisted).
        #[oai(header = "Stock-Source")]
        String,
    ),
}

/// One product's stock in the store.
#[derive(ApiResponse)]
pub enum StoreStockRead {
    /// The product's sellable quantity in the store.
    #[oai(status = 200)]
    Ok(
        Json<crate::admin::StockStatesBody>,
        /// `redis` (the sellable figure), or `mysql` while the stock cache is unavailable
        /// (on-hand, still counting online orders not yet persisted).
        #[oai(header = "Stock-Source")]
        String,
    ),
}

/// Nearby stores that have the product.
#[derive(ApiResponse)]
pub enum NearbyRead {
    /// Other stores that have the product, nearest first.
    #[oai(status = 200)]
    Ok(
        Json<NearbyStores>,
        /// `redis` (the sellable figure), or `mysql` while the stock cache is unavailable
        /// (on-hand, still counting online orders not yet persisted).
        #[oai(header = "Stock-Source")]
        String,
    ),
}

/// A POS sale.
#[derive(ApiResponse)]
pub enum PosSold {
    /// The sale is committed in MySQL and reflected in the store's Redis stock. A repeated
    /// `Idempotency-Key` with the same body gets the first answer, with `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<OrderBody>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

impl From<Placed> for PosSold {
    fn from(placed: Placed) -> Self {
        match placed {
            Placed::New(o) => Self::Created(Json(o.into()), None),
            Placed::Replayed(o) => Self::Created(Json(o.into()), Some("true".into())),
        }
    }
}

impl StoresApi {
    /// The path's store, which must be an active store. (The path validator keeps the id
    /// positive.)
    fn store(&self, id: i64) -> Result<LocationId, Problem> {
        let loc = LocationId::new_unchecked(id as u64);
        let locations = self.state.storage.catalog().locations();
        match locations.index.get(loc) {
            Some(s) if s.kind == LocationKind::Store => Ok(loc),
            _ => Err(Problem::not_found(format!(
                "store {id} does not exist or is closed"
            ))),
        }
    }

    /// The path's product, which must be an active product. (The path validator keeps the id
    /// positive.)
    fn active_product(&self, id: i64) -> Result<ProductId, Problem> {
        let product = ProductId::new_unchecked(id as u64);
        if self
            .state
            .storage
            .catalog()
            .product(product)
            .is_some_and(|p| p.active)
        {
            Ok(product)
        } else {
            Err(Refusal::UnknownProduct(product).into())
        }
    }
}

#[OpenApi]
impl StoresApi {
    /// List the store's products
    ///
    /// Active products by id with their sellable quantity in this store (Redis). No key needed.
    ///
    /// Answers 404 when there is no such store (or it is closed).
    #[oai(
        path = "/api/stores/:storeId/products",
        method = "get",
        tag = "StoresTag::Stores",
        operation_id = "listStoreProducts"
    )]
    async fn products(
        &self,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        /// The page, from 0 (default 0).
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        page: Query<Option<i64>>,
        /// Products per page (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        size: Query<Option<i64>>,
    ) -> ApiResult<StoreProductsPage> {
        let store = self.store(store_id.0)?;
        let (page, size) = page_and_size(page.0, size.0);
        let p = self
            .state
            .storage
            .catalog()
            .products_page(page, size)
            .await?;
        let ids: Vec<ProductId> = p
            .items
            .iter()
            .map(|p| ProductId::new_unchecked(p.product_id))
            .collect();
        let (stock, source) = self
            .state
            .storage
            .redis_path()
            .read_stock(&[store], &ids)
            .await?;
        let list = StoreProductList {
            store_id: store.get(),
            products: p
                .items
                .into_iter()
                .zip(stock.first().cloned().unwrap_or_default())
                .map(|(p, quantity)| StoreProduct {
                    product_id: p.product_id,
                    sku: p.sku,
                    name: p.name,
                    price: p.price,
                    quantity,
                })
                .collect(),
            page,
            size,
            total: p.total,
        };
        Ok(StoreProductsPage::Ok(Json(list), source.as_str().into()))
    }

    /// One product's stock in the store
    ///
    /// The live figure the store can still promise (`quantity`, from the stock cache), and every
    /// state of the product's stock as MySQL holds it: `onHand`, `committed`, `reserved`,
    /// `available`, `safetyStock`, `sellableOnline`. No key needed.
    ///
    /// Answers 404 when there is no such store (or it is closed) or no such active product.
    #[oai(
        path = "/api/stores/:storeId/products/:productId/stock",
        method = "get",
        tag = "StoresTag::Stores",
        operation_id = "getStoreStock"
    )]
    async fn stock(
        &self,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
    ) -> ApiResult<StoreStockRead> {
        let store = self.store(store_id.0)?;
        let product = self.active_product(product_id.0)?;
        let (stock, source) = self
            .state
            .storage
            .redis_path()
            .read_stock(&[store], &[product])
            .await?;
        let states = self
            .state
            .storage
            .db_lock()
            .stock_states(store, product)
            .await?;
        // Every state as MySQL holds it, and the live figure the stock cache decides with.
        let body = crate::admin::StockStatesBody {
            quantity: stock[0][0],
            ..states.into()
        };
        Ok(StoreStockRead::Ok(Json(body), source.as_str().into()))
    }

    /// Nearby stores that have the product
    ///
    /// Other active stores within `radiusKm` (0.1 to 100, default: the same-day radius, at most
    /// 100) that have at least one unit, nearest first, at most `limit` (1 to 50, default 10). No
    /// key needed.
    ///
    /// Answers 404 when there is no such store (or it is closed) or no such active product.
    #[oai(
        path = "/api/stores/:storeId/products/:productId/nearby",
        method = "get",
        tag = "StoresTag::Stores",
        operation_id = "nearbyStores"
    )]
    async fn nearby(
        &self,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
        /// How far to look, in km (default: the same-day radius, at most 100).
        #[oai(
            name = "radiusKm",
            validator(minimum(value = "0.1"), maximum(value = "100"))
        )]
        radius_km: Query<Option<f64>>,
        /// At most this many stores (default 10).
        #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
        limit: Query<Option<i64>>,
    ) -> ApiResult<NearbyRead> {
        let store = self.store(store_id.0)?;
        let product = self.active_product(product_id.0)?;
        // The configured same-day radius may be wider than a client may ask for.
        let radius = radius_km
            .0
            .unwrap_or(self.state.storage.options().same_day_radius_km.min(100.0));
        let limit = limit.0.unwrap_or(10) as usize;
        let now = jiff::Timestamp::now();
        let (nearby, source) = self
            .state
            .storage
            .redis_path()
            .nearby_stock(store, &[product], radius)
            .await?;
        let locations = self.state.storage.catalog().locations();
        let body = NearbyStores {
            stores: nearby
                .into_iter()
                .filter(|(_, _, q)| q[0] > 0)
                .take(limit)
                .map(|(c, name, q)| {
                    let calendar = locations.index.get(c.location).map(|s| s.calendar());
                    NearbyStore {
                        store_id: c.location.get(),
                        name,
                        distance_km: sf_routing::index::to_the_metre(c.distance_km.unwrap_or(0.0)),
                        quantity: q[0],
                        open_now: calendar.is_some_and(|cal| cal.is_open(now)),
                        same_day_open_until: calendar.and_then(|cal| same_day_open_until(cal, now)),
                    }
                })
                .collect(),
        };
        Ok(NearbyRead::Ok(Json(body), source.as_str().into()))
    }

    /// POS sale
    ///
    /// Written to MySQL and committed before the answer, then reflected in the store's Redis
    /// stock as a change (orders in flight are kept). Never sells a unit an online order already
    /// took. Needs a key of this store.
    ///
    /// Answers 401 when there is no key, or the key is unknown or revoked; 403 when the key
    /// belongs to another store; 404 when there is no such store (or it is closed) or no such
    /// product; 409 when the store has not enough sellable stock (units taken by online orders are
    /// not sellable); 422 when the sale breaks a rule beyond the schema (such as lines of one
    /// product summing past the quantity limit, or an `Idempotency-Key` reused with another body).
    #[oai(
        path = "/api/stores/:storeId/orders",
        method = "post",
        tag = "StoresTag::Stores",
        operation_id = "posSale"
    )]
    async fn sale(
        &self,
        auth: StoreKey,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        body: Json<PosOrderRequest>,
        /// Makes retries safe: 1 to 128 visible ASCII characters.
        #[oai(
            name = "Idempotency-Key",
            validator(
                min_length = 1,
                max_length = 128,
                custom = "crate::types::Matches(&crate::types::IDEMPOTENCY_KEY)"
            )
        )]
        key: Header<Option<String>>,
    ) -> ApiResult<PosSold> {
        let store = self.store(store_id.0)?;
        let by = auth.authorize(&self.state, store).await?;
        let lines = parse_lines(&body.items)?;
        let idempotency = idempotency(&format!("POS:{store}"), key.0, &*body)?;
        let order = DbLockOrder {
            lines,
            destination: Destination::InStore { store },
            path: OrderPath::Pos,
            idempotency,
            channel: None,
            by: Some(by),
        };
        Ok(self.state.place_db_lock(order).await?.into())
    }

    /// The store's work list
    ///
    /// The store's persisted, not cancelled orders at one step, oldest first:
    /// `UNFULFILLED` (to prepare, or to hand to a courier) or `READY_FOR_PICKUP` (waiting to be
    /// collected), a page at a time (`after`: the previous page's `next`). Pickup codes are never
    /// shown here. Needs a key of this store.
    #[oai(
        path = "/api/stores/:storeId/orders",
        method = "get",
        tag = "crate::fulfilment::FulfilmentTag::Fulfilment",
        operation_id = "storeWorkList"
    )]
    async fn work_list(
        &self,
        auth: StoreKey,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        /// The step to list.
        fulfillment: Query<crate::fulfilment::WorkListStepParam>,
        /// The `next` of the previous page (the id of its last order).
        after: Query<Option<String>>,
        /// Orders per page (1 to 100; 20 when absent).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<crate::fulfilment::WorkListBody>> {
        let store = self.store(store_id.0)?;
        auth.authorize(&self.state, store).await?;
        crate::fulfilment::work_list(
            &self.state,
            store,
            fulfillment.0,
            after.0.as_deref(),
            limit.0,
        )
        .await
    }

    /// POS cancel or return
    ///
    /// Cancels a sale of this store; its stock comes back exactly once, however often this is
    /// sent: the answer is the cancelled sale (also when it was already cancelled). Needs a key of
    /// this store.
    ///
    /// Answers 401 when there is no key, or the key is unknown or revoked; 403 when the key
    /// belongs to another store; 404 when there is no such store (or it is closed) or no such sale
    /// in this store.
    #[oai(
        path = "/api/stores/:storeId/orders/:orderId/cancel",
        method = "patch",
        tag = "StoresTag::Stores",
        operation_id = "posCancel"
    )]
    async fn cancel(
        &self,
        auth: StoreKey,
        #[oai(name = "storeId", validator(minimum(value = "1")))] store_id: Path<i64>,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let store = self.store(store_id.0)?;
        let by = auth.authorize(&self.state, store).await?;
        let id = order_id.0;
        let order = self
            .state
            .write(|s| async move { s.db_lock().cancel_pos_sale(store, &id, by).await })
            .await?;
        Ok(Json(order.into()))
    }
}
