//! Stock reads for the Redis path's routes: per location from Redis or MySQL, nearby stores
//! for same-day delivery, and pickup alternatives.

use super::RedisPath;
use crate::error::{Refusal, StorageError, StorageResult};
use crate::infra::mysql::push_list;
use crate::model::StockSource;
use crate::Storage;
use sf_routing::{eligible, Coordinates, LocationId, LocationKind, OrderLines, ProductId};
use sqlx::QueryBuilder;

impl Storage {
    /// [`crate::redis_path::RedisPath::read_stock`], taking the Redis figures from `mirror` when it can give them
    /// (the product pages, see [`crate::catalog::StockMirror`]).
    pub(crate) async fn read_stock_with(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
        mirror: Option<&crate::catalog::StockMirror>,
    ) -> StorageResult<(Vec<Vec<i64>>, StockSource)> {
        if products.is_empty() || locations.is_empty() {
            return Ok((vec![Vec::new(); locations.len()], StockSource::Redis));
        }
        if self.circuit.trusted() {
            match self.read_redis_stock(locations, products, mirror).await {
                Ok(v) => return Ok((v, StockSource::Redis)),
                Err(e) if e.redis_error().is_some_and(crate::Circuit::unreachable) => {}
                Err(e) => return Err(e),
            }
        }
        self.circuit
            .mysql_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((
            self.read_mysql_stock(locations, products).await?,
            StockSource::Mysql,
        ))
    }

    /// MySQL's on-hand stock of every (location, product), indexed `[location][product]`, within
    /// the MySQL deadline.
    pub(super) async fn read_mysql_stock(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StorageResult<Vec<Vec<i64>>> {
        /// A stock row of the read.
        #[derive(sqlx::FromRow)]
        struct StockRow {
            location_id: LocationId,
            product_id: ProductId,
            available: i64,
        }
        let mut q = QueryBuilder::new(
            "SELECT location_id, product_id, available FROM stock WHERE location_id IN ",
        );
        push_list(&mut q, locations.iter().copied());
        q.push(" AND product_id IN ");
        push_list(&mut q, products.iter().copied());
        let rows: Vec<StockRow> = self
            .in_time(self.db_deadline(), async {
                Ok(q.build_query_as().fetch_all(&self.db).await?)
            })
            .await?;
        let mut out = vec![vec![0; products.len()]; locations.len()];
        for r in rows {
            let (Some(li), Some(pi)) = (
                locations.iter().position(|x| *x == r.location_id),
                products.iter().position(|x| *x == r.product_id),
            ) else {
                continue;
            };
            out[li][pi] = r.available;
        }
        Ok(out)
    }

    /// Redis stock of every (location, product), loading the locations where a key is missing.
    pub(super) async fn read_redis_stock(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
        mut mirror: Option<&crate::catalog::StockMirror>,
    ) -> StorageResult<Vec<Vec<i64>>> {
        let mut pipe = None;
        for _ in 0..3 {
            let mirrored = match mirror {
                Some(m) => match m.read(self, locations, products).await {
                    Ok(values) => Some(values),
                    // Redis is slow: asking again through the pool would only double the wait,
                    // so the caller answers from MySQL now.
                    Err(e) if e.redis_error().is_some_and(|re| re.is_timeout()) => return Err(e),
                    Err(e) => {
                        // The pooled connections, behind the circuit, read this one.
                        tracing::debug!(error = %e, "stock mirror unavailable; reading redis");
                        mirror = None;
                        None
                    }
                },
                None => None,
            };
            let flat: Vec<Option<i64>> = match mirrored {
                Some(values) => values,
                None => {
                    let pipe = pipe.get_or_insert_with(|| self.stock_pipeline(locations, products));
                    let per_location: Vec<Vec<Option<i64>>> = {
                        let mut redis = self.conn().await?;
                        pipe.query_async(&mut redis).await?
                    };
                    per_location.into_iter().flatten().collect()
                }
            };
            let mut missing = Vec::new();
            for (li, loc) in locations.iter().enumerate() {
                let row = &flat[li * products.len()..(li + 1) * products.len()];
                if row.iter().any(Option::is_none) {
                    missing.push(*loc);
                }
            }
            if missing.is_empty() {
                return Ok(flat
                    .chunks(products.len().max(1))
                    .map(|c| c.iter().map(|v| v.unwrap_or(0)).collect())
                    .collect());
            }
            for loc in missing {
                self.load_keys(loc, products, self.db_deadline()).await?;
            }
        }
        Err(StorageError::unavailable(
            "stock could not be loaded into redis",
        ))
    }

    /// Reads the stock keys of `products` at `locations`, location by location: one MGET of
    /// every key, one command for Redis to run whatever the number of locations. A cluster
    /// refuses keys of several slots in one command, so there it is one MGET per location (its
    /// keys share a hash tag), sent to each shard at once.
    pub(super) fn stock_pipeline(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> redis::Pipeline {
        let keys = self.keys.stock_table(locations, products);
        let mut pipe = redis::pipe();
        if self.redis_settings.is_cluster() {
            for li in 0..locations.len() {
                let mget = pipe.cmd("MGET");
                for key in keys.at(li) {
                    mget.arg(key);
                }
            }
        } else {
            let mget = pipe.cmd("MGET");
            for li in 0..locations.len() {
                for key in keys.at(li) {
                    mget.arg(key);
                }
            }
        }
        pipe
    }

    /// Nearby stores (within the same-day radius of `store`) that can fill every line, nearest
    /// first, by their Redis stock.
    pub(crate) async fn pickup_alternatives(
        &self,
        lines: &OrderLines,
        store: LocationId,
        now: jiff::Timestamp,
    ) -> StorageResult<Vec<crate::Alternative>> {
        let index = &self.catalog().locations().index;
        let products: Vec<ProductId> = lines.products().collect();
        let (nearby, _) = self
            .redis_path()
            .nearby_stock(store, &products, self.config.same_day_radius_km)
            .await?;
        let candidates: Vec<_> = nearby.iter().map(|(c, _, _)| *c).collect();
        let good = eligible(&candidates, lines, |loc, p| {
            let (_, _, stock) = nearby.iter().find(|(c, _, _)| c.location == loc)?;
            Some(stock[products.iter().position(|x| *x == p)?])
        });
        Ok(good
            .into_iter()
            .map(|c| crate::Alternative {
                store_id: c.location.get(),
                name: nearby
                    .iter()
                    .find(|(x, _, _)| x.location == c.location)
                    .map(|(_, n, _)| n.clone())
                    .unwrap_or_default(),
                distance_km: c.distance_km.map(sf_routing::index::to_the_metre),
                ready_by: sf_routing::ready_by(index, c.location, now)
                    .ok()
                    .flatten()
                    .map(|at| sf_routing::rfc3339(&at)),
            })
            .collect())
    }

    /// The refusal of a same-day order at `now` when stores within `radius_km` of `address` could
    /// fill it but none is in its same-day window ([`sf_routing::same_day_closed`]): when the
    /// first of them opens its window again, and each of them for a pickup. `None` when no store
    /// outside its window has the goods either (then the order is simply short).
    pub(crate) async fn same_day_closed(
        &self,
        lines: &OrderLines,
        address: Coordinates,
        radius_km: f64,
        now: jiff::Timestamp,
    ) -> StorageResult<Option<Refusal>> {
        let locations = self.catalog().locations();
        let outside =
            sf_routing::same_day(&locations.index, address, radius_km, now).outside_window;
        if outside.is_empty() {
            return Ok(None);
        }
        let products: Vec<ProductId> = lines.products().collect();
        let locs: Vec<LocationId> = outside.iter().map(|c| c.location).collect();
        let (stock, _) = self.redis_path().read_stock(&locs, &products).await?;
        let good = eligible(&outside, lines, |loc, p| {
            let at = locs.iter().position(|l| *l == loc)?;
            Some(stock[at][products.iter().position(|x| *x == p)?])
        });
        let Some(closed) = sf_routing::same_day_closed(&locations.index, &good, now) else {
            return Ok(None);
        };
        let next_same_day_at = closed.next_same_day_at.as_ref().map(sf_routing::rfc3339);
        let stores = closed.alternatives.len();
        let detail = format!(
            "same-day delivery is closed now at the {stores} store{} within {radius_km} km that have the goods: {}; or pick the order up at one of them (alternatives, with readyBy)",
            if stores == 1 { "" } else { "s" },
            match &next_same_day_at {
                Some(at) => format!("it opens again at {at} (nextSameDayAt)"),
                None => format!(
                    "none opens for same-day in the next {} days",
                    sf_routing::calendar::SEARCH_DAYS
                ),
            }
        );
        let alternatives = closed
            .alternatives
            .into_iter()
            .map(|a| crate::Alternative {
                store_id: a.candidate.location.get(),
                name: locations
                    .index
                    .get(a.candidate.location)
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                distance_km: a.candidate.distance_km.map(sf_routing::index::to_the_metre),
                ready_by: a.ready_by.as_ref().map(sf_routing::rfc3339),
            })
            .collect();
        Ok(Some(Refusal::SameDayClosed {
            detail,
            next_same_day_at,
            alternatives,
        }))
    }
}

impl RedisPath<'_> {
    /// Sellable stock of every (location, product), indexed `[location][product]`: from Redis
    /// (loading the locations where a key is missing), or, while Redis is not trusted or does
    /// not answer, MySQL's on-hand figures (which still count units of Redis-path orders not yet
    /// persisted), and the answer says which.
    pub async fn read_stock(
        &self,
        locations: &[LocationId],
        products: &[ProductId],
    ) -> StorageResult<(Vec<Vec<i64>>, StockSource)> {
        self.read_stock_with(locations, products, None).await
    }

    /// Other active stores within `radius_km` of `store`, nearest first, each with its Redis
    /// stock of `products` (in that order).
    pub async fn nearby_stock(
        &self,
        store: LocationId,
        products: &[ProductId],
        radius_km: f64,
    ) -> StorageResult<(Vec<(sf_routing::Candidate, String, Vec<i64>)>, StockSource)> {
        let locations = self.catalog().locations();
        let Some(site) = locations.index.get(store) else {
            return Ok((Vec::new(), StockSource::Redis));
        };
        let nearby: Vec<_> = locations
            .index
            .within(LocationKind::Store, site.coordinates, radius_km)
            .into_iter()
            .filter(|c| c.location != store)
            .collect();
        let locs: Vec<LocationId> = nearby.iter().map(|c| c.location).collect();
        let (stock, source) = self.read_stock(&locs, products).await?;
        Ok((
            nearby
                .into_iter()
                .zip(stock)
                .map(|(c, s)| {
                    let name = locations
                        .index
                        .get(c.location)
                        .map(|x| x.name.clone())
                        .unwrap_or_default();
                    (c, name, s)
                })
                .collect(),
            source,
        ))
    }
}
