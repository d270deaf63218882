//! Products and locations as MySQL has them, and what every product page (these and the Redis
//! path's) answers with: a body rendered once, its `ETag`, and its caching rule.
//!
//! # Product pages and HTTP caching
//!
//! Each product page (the two lists and the two product reads) sends:
//!
//! - `ETag`: a hash of the body and of `Stock-Source`, so it changes whenever anything the answer
//!   shows changes (a stock figure after an order, a name, a price, the next cursor) and never
//!   otherwise;
//! - `Cache-Control: no-cache`: a browser or a CDN may keep the answer, but must ask again before
//!   every use. Stock moves with every order, so a copy reused without asking could show units
//!   that are gone; asking again with `If-None-Match` costs a `304` without a body while nothing
//!   changed.

use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use crate::types::{LocationBody, LocationList, ProductBody, ProductList};
use bytes::Bytes;
use poem::{IntoResponse, Response};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use sf_persistence::catalog::{ProductStock, ScopeKey, StockScope};
use sf_persistence::model::StockSource;
use sf_routing::{Coordinates, ProductId};
use std::marker::PhantomData;
use std::sync::Arc;

#[derive(Tags)]
pub enum CatalogTag {
    /// Products and their on-hand stock, read from MySQL (the system of record).
    Products,
    /// Warehouses and stores.
    Locations,
}

pub struct CatalogApi {
    pub state: Arc<ApiState>,
}

/// The caching rule of every product page (see the module's documentation).
pub const CACHE_CONTROL: &str = "no-cache";

/// A JSON body rendered with serde straight into bytes, without the `serde_json::Value` tree
/// poem-openapi's `Json` builds on the way; the spec describes it as `T`. The bytes are shared:
/// a kept answer ([`ProductPages`]) is sent again without a copy.
pub struct Rendered<T> {
    body: Bytes,
    schema: PhantomData<fn() -> T>,
}

impl<T: Type> Payload for Rendered<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: serde::Serialize> Rendered<T> {
    /// `value` rendered.
    pub fn of(value: &T) -> ApiResult<Self> {
        Ok(Self {
            body: render(value)?,
            schema: PhantomData,
        })
    }
}

impl<T> IntoResponse for Rendered<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(self.body)
    }
}

/// A product page's answer: a fresh body, or `304` when the client's copy is current.
pub enum Answer<T> {
    Fresh(Rendered<T>, Validators),
    Current(Validators),
}

/// The headers both a `200` and a `304` carry.
pub struct Validators {
    pub etag: String,
    pub source: &'static str,
}

impl<T: serde::Serialize> Answer<T> {
    /// Renders `value`, and answers `304` instead when `if_none_match` names its `ETag`.
    pub fn new(value: &T, source: StockSource, if_none_match: Option<&str>) -> ApiResult<Self> {
        let source = source.as_str();
        let body = render(value)?;
        let etag = etag(&body, source);
        Ok(Self::of(body, etag, source, if_none_match))
    }
}

impl<T> Answer<T> {
    /// The answer with a body rendered before, and its `ETag`.
    fn of(body: Bytes, etag: String, source: &'static str, if_none_match: Option<&str>) -> Self {
        let validators = Validators { etag, source };
        match if_none_match {
            Some(tags) if names(tags, &validators.etag) => Self::Current(validators),
            _ => Self::Fresh(
                Rendered {
                    body,
                    schema: PhantomData,
                },
                validators,
            ),
        }
    }
}

fn render<T: serde::Serialize>(value: &T) -> ApiResult<Bytes> {
    // Room for a product page with its stock at ~50 locations, so the body grows rarely.
    let mut body = Vec::with_capacity(4096);
    serde_json::to_writer(&mut body, value).map_err(|e| {
        tracing::error!(error = %e, "an answer failed to render");
        Problem::internal()
    })?;
    Ok(body.into())
}

/// The rendered answers of one product read (MySQL's or Redis's), kept by product and scope
/// (the locations shown: a page of them, or those near a point) while what they show stays the
/// same.
///
/// Each request still reads the product's stock as of its own arrival; only when that reading
/// equals the one an answer was rendered from (the product, every location's figure and the
/// stock source) is the kept body and `ETag` sent again, instead of rendering and hashing the
/// same bytes once more. A figure that moved renders anew, so no answer is older than its
/// request. At most `most` answers are kept (`PRODUCT_PAGES_KEPT`), in a bounded cache that
/// keeps the ones asked for most (`quick_cache`'s CLOCK-Pro eviction).
pub struct ProductPages {
    kept: Option<quick_cache::sync::Cache<(u64, ScopeKey), Arc<Kept>>>,
}

struct Kept {
    stock: Arc<ProductStock>,
    body: Bytes,
    etag: String,
}

impl ProductPages {
    /// Keeps at most `most` answers (0: none).
    pub fn new(most: usize) -> Self {
        Self {
            kept: (most > 0).then(|| quick_cache::sync::Cache::new(most)),
        }
    }

    /// The answer to a read of product `p`: the kept one when `p` shows what it showed.
    pub fn answer(
        &self,
        p: Arc<ProductStock>,
        if_none_match: Option<&str>,
    ) -> ApiResult<Answer<ProductBody>> {
        let id = (p.product.product_id, p.scope);
        let source = p.source.as_str();
        let hit = self.kept.as_ref().and_then(|kept| {
            kept.get(&id)
                .filter(|k| Arc::ptr_eq(&k.stock, &p) || *k.stock == *p)
                .map(|k| (k.body.clone(), k.etag.clone()))
        });
        let (body, etag) = match hit {
            Some(hit) => hit,
            None => {
                let body = render(&ProductBody::new(&p))?;
                let etag = etag(&body, source);
                if let Some(kept) = &self.kept {
                    kept.insert(
                        id,
                        Arc::new(Kept {
                            stock: p,
                            body: body.clone(),
                            etag: etag.clone(),
                        }),
                    );
                }
                (body, etag)
            }
        };
        Ok(Answer::of(body, etag, source, if_none_match))
    }

    /// How many answers are kept now.
    pub fn len(&self) -> usize {
        self.kept.as_ref().map_or(0, |k| k.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A strong `ETag` of an answer: a 64-bit hash (XXH3, stable across builds and platforms, so
/// every instance of a rolling deploy computes the same tag) of its body and `Stock-Source`, the
/// two things it shows.
fn etag(body: &[u8], source: &str) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(source.as_bytes());
    h.update(&[0]);
    h.update(body);
    format!("\"{:016x}\"", h.digest())
}

/// Whether an `If-None-Match` value names `etag`: `*`, or a list holding it, compared weakly
/// (RFC 9110, 13.1.2: `W/"x"` names `"x"`).
fn names(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim())
            .any(|t| t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// A page of products (also the answer of the Redis-path product list).
#[derive(ApiResponse)]
pub enum ProductPage {
    /// A page of products, each with its stock summed over the active locations.
    #[oai(status = 200)]
    Ok(
        Rendered<ProductList>,
        /// Changes whenever anything this answer shows changes; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// `no-cache`: a copy may be kept, but must be revalidated (`If-None-Match`) before use.
        #[oai(header = "Cache-Control")]
        String,
        /// Where the stock figures come from: `redis` (the sellable figure), or `mysql`
        /// (on-hand: `GET /api/products` always, and the Redis-path reads while the stock cache
        /// is unavailable).
        #[oai(header = "Stock-Source")]
        String,
    ),
    /// Not modified: `If-None-Match` named this answer's `ETag`, so the client's copy is
    /// current. No body.
    #[oai(status = 304)]
    NotModified(
        #[oai(header = "ETag")] String,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Stock-Source")] String,
    ),
}

impl From<Answer<ProductList>> for ProductPage {
    fn from(a: Answer<ProductList>) -> Self {
        match a {
            Answer::Fresh(body, v) => Self::Ok(body, v.etag, CACHE_CONTROL.into(), v.source.into()),
            Answer::Current(v) => Self::NotModified(v.etag, CACHE_CONTROL.into(), v.source.into()),
        }
    }
}

/// One product with its stock (also the answer of the Redis-path product read).
#[derive(ApiResponse)]
pub enum ProductWithStock {
    /// The product with its stock at every active location.
    #[oai(status = 200)]
    Ok(
        Rendered<ProductBody>,
        /// Changes whenever anything this answer shows changes; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// `no-cache`: a copy may be kept, but must be revalidated (`If-None-Match`) before use.
        #[oai(header = "Cache-Control")]
        String,
        /// Where the stock figures come from: `redis` (the sellable figure), or `mysql`
        /// (on-hand: `GET /api/products/{productId}` always, and the Redis-path read while the
        /// stock cache is unavailable).
        #[oai(header = "Stock-Source")]
        String,
    ),
    /// Not modified: `If-None-Match` named this answer's `ETag`, so the client's copy is
    /// current. No body.
    #[oai(status = 304)]
    NotModified(
        #[oai(header = "ETag")] String,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Stock-Source")] String,
    ),
}

impl From<Answer<ProductBody>> for ProductWithStock {
    fn from(a: Answer<ProductBody>) -> Self {
        match a {
            Answer::Fresh(body, v) => Self::Ok(body, v.etag, CACHE_CONTROL.into(), v.source.into()),
            Answer::Current(v) => Self::NotModified(v.etag, CACHE_CONTROL.into(), v.source.into()),
        }
    }
}

#[derive(ApiResponse)]
pub enum LocationsResponse {
    /// Every warehouse and store, active or not.
    #[oai(status = 200)]
    Ok(Json<LocationList>),
}

/// The page parameters once their validators passed (`page` 0 to 1,000,000, `size` 1 to 100),
/// with their defaults applied: page 0, 20 per page (the store's product list).
pub(crate) fn page_and_size(page: Option<i64>, size: Option<i64>) -> (u32, u32) {
    (page.unwrap_or(0) as u32, size.unwrap_or(20) as u32)
}

/// The cursor parameters of a product list once their validators passed (`after` 0 or more,
/// `limit` 1 to 100), with their defaults applied: from the first product, 20 per page.
pub(crate) fn after_and_limit(after: Option<i64>, limit: Option<i64>) -> (u64, u32) {
    (after.unwrap_or(0) as u64, limit.unwrap_or(20) as u32)
}

/// Locations a product page shows when the request names no `limit`.
pub const STOCK_ENTRIES_DEFAULT: u32 = 100;
/// The radius of `near` when the request names none, in kilometres.
pub const NEAR_RADIUS_KM_DEFAULT: f64 = 10.0;
/// The widest `radiusKm`.
pub const NEAR_RADIUS_KM_MAX: f64 = 500.0;

/// Which locations a product page shows, from its query parameters once their validators passed
/// (`near` two numbers, `radiusKm` more than 0 and at most 500, `limit` 1 to 500, `after` 0 or
/// more). What the schema cannot say is 422: a `near` off the globe, `radiusKm` without `near`,
/// `after` with it.
pub(crate) fn stock_scope(
    near: Option<&str>,
    radius_km: Option<f64>,
    limit: Option<i64>,
    after: Option<i64>,
) -> Result<StockScope, Problem> {
    let limit = limit.map_or(STOCK_ENTRIES_DEFAULT, |l| l as u32);
    let Some(near) = near else {
        if radius_km.is_some() {
            return Err(Problem::validation(
                "radiusKm goes with near=latitude,longitude",
            ));
        }
        return Ok(StockScope::ById {
            after: after.unwrap_or(0) as u64,
            limit,
        });
    };
    if after.is_some() {
        return Err(Problem::validation(
            "after pages the locations by id; with near they come nearest first, at most limit",
        ));
    }
    let from = near
        .split_once(',')
        .and_then(|(lat, lon)| {
            Some((
                lat.trim().parse::<f64>().ok()?,
                lon.trim().parse::<f64>().ok()?,
            ))
        })
        .and_then(|(lat, lon)| Coordinates::new(lat, lon).ok())
        .ok_or_else(|| {
            Problem::validation(format!(
                "near must be latitude,longitude in degrees (latitude -90 to 90, longitude -180 \
                 to 180), e.g. 37.5665,126.9780; got {near:?}"
            ))
        })?;
    let radius_km = radius_km.unwrap_or(NEAR_RADIUS_KM_DEFAULT);
    // The schema bounds it; a NaN passes no bound.
    if !(radius_km > 0.0 && radius_km <= NEAR_RADIUS_KM_MAX) {
        return Err(Problem::bad_request(format!(
            "radiusKm must be more than 0 and at most {NEAR_RADIUS_KM_MAX}; got {radius_km}"
        )));
    }
    Ok(StockScope::Near {
        from,
        radius_km,
        limit,
    })
}

/// A path id that cannot name a product is simply not found.
pub fn product_in_path(id: i64) -> Result<ProductId, Problem> {
    ProductId::parse(id).map_err(|_| {
        Problem::new(
            404,
            "unknown-product",
            "Unknown product",
            format!("product {id} does not exist"),
        )
    })
}

#[OpenApi]
impl CatalogApi {
    /// List products
    ///
    /// Active products by id, `limit` per page (1 to 100, default 20), each with its on-hand
    /// stock summed over the active locations (`totalQuantity`; the stock per location is on
    /// `GET /api/products/{productId}`). Pages follow each other by cursor: the answer's `next`
    /// is the `after` of the next page; the last page has none.
    ///
    /// Sends an `ETag`, and `Cache-Control: no-cache`; with `If-None-Match` naming the current
    /// `ETag` the answer is `304` without a body.
    #[oai(
        path = "/api/products",
        method = "get",
        tag = "CatalogTag::Products",
        operation_id = "listProducts"
    )]
    async fn list(
        &self,
        /// Start after this product id: the `next` of the previous page (leave it out for the
        /// first page).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Products per page, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
        /// The `ETag` of a copy the client holds.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> ApiResult<ProductPage> {
        let (after, limit) = after_and_limit(after.0, limit.0);
        let page = self
            .state
            .storage
            .catalog()
            .products_after(after, limit)
            .await?;
        Ok(Answer::new(
            &ProductList::new(&page, limit),
            page.source,
            if_none_match.0.as_deref(),
        )?
        .into())
    }

    /// Get a product with its stock
    ///
    /// The on-hand quantity at the active locations, as MySQL has it, and their sum. Without
    /// `near`, the locations by id, `limit` at a time (default 100), the next ones from `after`
    /// (the answer's `next`); with `near=latitude,longitude`, those within `radiusKm` (default
    /// 10), nearest first.
    ///
    /// Sends an `ETag`, and `Cache-Control: no-cache`; with `If-None-Match` naming the current
    /// `ETag` the answer is `304` without a body. Answers 404 when there is no such active
    /// product.
    #[oai(
        path = "/api/products/:productId",
        method = "get",
        tag = "CatalogTag::Products",
        operation_id = "getProduct"
    )]
    async fn get(
        &self,
        #[oai(name = "productId", validator(minimum(value = "1")))] product_id: Path<i64>,
        /// The `ETag` of a copy the client holds.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
        /// `latitude,longitude` (WGS 84 degrees, e.g. `37.5665,126.9780`): only the locations
        /// within `radiusKm` of this point, nearest first, each with its `distanceKm`. A
        /// latitude beyond ±90 or a longitude beyond ±180 is 422.
        #[oai(validator(custom = "crate::types::Matches(&crate::types::NEAR)"))]
        near: Query<Option<String>>,
        /// With `near` only (422 without it): how far to look, in kilometres (more than 0, at
        /// most 500; default 10).
        #[oai(
            name = "radiusKm",
            validator(minimum(value = "0", exclusive), maximum(value = "500"))
        )]
        radius_km: Query<Option<f64>>,
        /// Locations per answer: 1 to 500 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<i64>>,
        /// Without `near` only (422 with it): the locations after this location id (the previous
        /// answer's `next`).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
    ) -> ApiResult<ProductWithStock> {
        let scope = stock_scope(near.0.as_deref(), radius_km.0, limit.0, after.0)?;
        // The validator keeps the id positive, so it always names a possible product.
        let id = ProductId::new_unchecked(product_id.0 as u64);
        let p = self
            .state
            .storage
            .catalog()
            .product_with_stock(id, scope)
            .await?;
        Ok(self
            .state
            .pages
            .mysql
            .answer(p, if_none_match.0.as_deref())?
            .into())
    }

    /// List locations
    ///
    /// Warehouses and stores with their coordinates and calendars: opening hours, closed dates,
    /// same-day cut-off and pickup preparation time, whether each is open now, and for stores
    /// until when today same-day orders are routed there (`sameDayOpenUntil`).
    #[oai(
        path = "/api/locations",
        method = "get",
        tag = "CatalogTag::Locations",
        operation_id = "listLocations"
    )]
    async fn locations(&self) -> ApiResult<LocationsResponse> {
        let locations = self.state.storage.catalog().locations();
        let now = jiff::Timestamp::now();
        Ok(LocationsResponse::Ok(Json(LocationList {
            locations: locations
                .all
                .iter()
                .map(|l| LocationBody::new(l, now))
                .collect(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_names_a_tag_in_its_list_weakly_or_everything_with_a_star() {
        let tag = etag(b"{}", "redis");
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 18);
        assert!(names(&tag, &tag));
        assert!(names(&format!("W/{tag}"), &tag));
        assert!(names(&format!("\"x\", {tag}"), &tag));
        assert!(names(" * ", &tag));
        assert!(!names("\"x\"", &tag));
        assert!(!names("", &tag));
        assert!(!names(tag.trim_matches('"'), &tag));
    }

    /// The first page of locations by id.
    const FIRST: StockScope = StockScope::ById {
        after: 0,
        limit: 100,
    };

    fn stock(id: u64, quantities: &[i64], source: StockSource) -> Arc<ProductStock> {
        stock_in(FIRST, id, quantities, source)
    }

    fn stock_in(
        scope: StockScope,
        id: u64,
        quantities: &[i64],
        source: StockSource,
    ) -> Arc<ProductStock> {
        use sf_persistence::model::{Product, StockLevel};
        use sf_routing::LocationKind;
        Arc::new(ProductStock {
            product: Product {
                product_id: id,
                sku: format!("SKU-{id}"),
                name: format!("Product {id}"),
                price: 1000,
                active: true,
            },
            stock: quantities
                .iter()
                .enumerate()
                .map(|(i, q)| StockLevel {
                    location_id: i as u64 + 1,
                    location_type: LocationKind::Warehouse,
                    quantity: *q,
                    distance_km: None,
                })
                .collect(),
            source,
            next: None,
            scope: scope.into(),
        })
    }

    fn fresh(a: Answer<ProductBody>) -> (Bytes, String) {
        match a {
            Answer::Fresh(body, v) => (body.body, v.etag),
            Answer::Current(_) => panic!("a 304 where a body was due"),
        }
    }

    #[test]
    fn a_kept_answer_is_sent_again_only_while_the_reading_shows_the_same() {
        let pages = ProductPages::new(16);
        let (first, tag) = fresh(
            pages
                .answer(stock(7, &[5, 3], StockSource::Redis), None)
                .unwrap(),
        );
        let body: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(body["totalQuantity"], 8);
        assert_eq!(body["stock"][1]["quantity"], 3);
        assert_eq!(tag, etag(&first, "redis"));

        // An equal reading (another Arc) sends the very same bytes, not a copy rendered again.
        let (again, tag2) = fresh(
            pages
                .answer(stock(7, &[5, 3], StockSource::Redis), None)
                .unwrap(),
        );
        assert_eq!(again.as_ptr(), first.as_ptr());
        assert_eq!(tag2, tag);
        let current = pages
            .answer(stock(7, &[5, 3], StockSource::Redis), Some(&tag))
            .unwrap();
        assert!(matches!(current, Answer::Current(v) if v.etag == tag));

        // One figure, or the source, moved: rendered anew, with a new tag, and kept in its place.
        let (moved, tag3) = fresh(
            pages
                .answer(stock(7, &[5, 2], StockSource::Redis), None)
                .unwrap(),
        );
        assert_ne!(tag3, tag);
        let body: serde_json::Value = serde_json::from_slice(&moved).unwrap();
        assert_eq!(body["totalQuantity"], 7);
        assert!(matches!(
            pages
                .answer(stock(7, &[5, 2], StockSource::Redis), Some(&tag))
                .unwrap(),
            Answer::Fresh(..)
        ));
        let (mysql, tag4) = fresh(
            pages
                .answer(stock(7, &[5, 2], StockSource::Mysql), None)
                .unwrap(),
        );
        assert_eq!(mysql, moved);
        assert_ne!(tag4, tag3);
        assert_eq!(pages.len(), 1);
    }

    #[test]
    fn a_product_read_in_two_scopes_keeps_an_answer_for_each() {
        let pages = ProductPages::new(16);
        let near = |latitude| StockScope::Near {
            from: Coordinates::new(latitude, 126.978).unwrap(),
            radius_km: 10.0,
            limit: 100,
        };
        let read = |scope, quantities: &[i64]| {
            fresh(
                pages
                    .answer(stock_in(scope, 7, quantities, StockSource::Redis), None)
                    .unwrap(),
            )
        };
        let (seoul, _) = read(near(37.5665), &[5, 3]);
        let (busan, _) = read(near(35.1796), &[4]);
        let (first, _) = read(FIRST, &[5, 3, 4]);
        assert_eq!(pages.len(), 3);
        // Each scope's answer is sent again while its reading is the same, whatever the others
        // showed in between.
        assert_eq!(read(near(37.5665), &[5, 3]).0.as_ptr(), seoul.as_ptr());
        assert_eq!(read(near(35.1796), &[4]).0.as_ptr(), busan.as_ptr());
        assert_eq!(read(FIRST, &[5, 3, 4]).0.as_ptr(), first.as_ptr());
        // A figure that moved in one scope renders that one anew, and only it.
        let (moved, _) = read(near(37.5665), &[5, 2]);
        assert_ne!(moved.as_ptr(), seoul.as_ptr());
        assert_eq!(read(near(35.1796), &[4]).0.as_ptr(), busan.as_ptr());
        assert_eq!(pages.len(), 3);
    }

    #[test]
    fn the_kept_answers_stay_bounded() {
        const MOST: usize = 100;
        let pages = ProductPages::new(MOST);
        for id in 1..=10 * MOST as u64 {
            pages
                .answer(stock(id, &[1], StockSource::Redis), None)
                .unwrap();
            assert!(pages.len() <= MOST, "{} kept after {id}", pages.len());
        }
        // The cache evicts ahead of its bound, in shards: it holds most of it, not all.
        assert!(pages.len() >= MOST / 2, "{} kept", pages.len());
        // An answer it keeps is sent again for the same reading: the same bytes.
        let (first, tag) = fresh(
            pages
                .answer(stock(5_000, &[4], StockSource::Redis), None)
                .unwrap(),
        );
        let (again, tag_again) = fresh(
            pages
                .answer(stock(5_000, &[4], StockSource::Redis), None)
                .unwrap(),
        );
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the kept body, not a new one"
        );
        assert_eq!(tag, tag_again);
    }

    #[test]
    fn with_none_kept_every_answer_is_rendered_anew() {
        let pages = ProductPages::new(0);
        let (a, tag_a) = fresh(
            pages
                .answer(stock(3, &[2], StockSource::Redis), None)
                .unwrap(),
        );
        let (b, tag_b) = fresh(
            pages
                .answer(stock(3, &[2], StockSource::Redis), None)
                .unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(tag_a, tag_b);
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert!(pages.is_empty());
    }

    #[test]
    fn the_etag_follows_the_body_and_the_stock_source() {
        let a = etag(br#"{"quantity":5}"#, "redis");
        assert_eq!(a, etag(br#"{"quantity":5}"#, "redis"));
        assert_ne!(a, etag(br#"{"quantity":4}"#, "redis"));
        assert_ne!(a, etag(br#"{"quantity":5}"#, "mysql"));
    }
}
