//! The safety stock Redis decides with, set from MySQL: with every key load and re-sync (and so
//! with every reconciliation pass and every reload after a data loss), and after an operator
//! changes a buffer. MySQL holds the buffers; Redis holds a copy per location
//! ([`crate::Keys::safety`]), version 1: `v` = 1, `*` = the location's default, and a field per
//! product that has a buffer of its own.

use crate::error::StorageResult;
use crate::infra::circuit::GuardedConn;
use crate::infra::mysql::push_list;
use crate::scripts::safety::SafetyCopy;
use crate::Storage;
use sf_routing::{LocationId, ProductId};
use sqlx::{MySqlConnection, QueryBuilder};

/// The version of the hash's layout.
const VERSION: u32 = 1;

/// A product's own buffer, as MySQL keeps it.
#[derive(sqlx::FromRow)]
pub(crate) struct Own {
    pub(crate) product_id: ProductId,
    pub(crate) safety_stock: Option<i64>,
}

impl Storage {
    /// Sets the location's default and `products`' own buffers in Redis from what `conn` reads
    /// (within the caller's transaction: a key sync holds the rows' share locks).
    pub(crate) async fn write_safety(
        &self,
        conn: &mut MySqlConnection,
        redis: &mut GuardedConn,
        loc: LocationId,
        products: &[ProductId],
    ) -> StorageResult<()> {
        let mut own: Vec<Own> = Vec::new();
        for chunk in products.chunks(crate::orders::ledger::ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new(
                "SELECT product_id, safety_stock FROM stock WHERE location_id = ",
            );
            q.push_bind(loc).push(" AND product_id IN ");
            push_list(&mut q, chunk.iter().copied());
            own.extend(q.build_query_as::<Own>().fetch_all(&mut *conn).await?);
        }
        self.write_safety_of(conn, redis, loc, &own).await
    }

    /// Sets the location's default (read on `conn`) and the buffers of `own` (read by the caller
    /// on `conn`) in Redis, writing only what differs there (`safety.lua`).
    pub(crate) async fn write_safety_of(
        &self,
        conn: &mut MySqlConnection,
        redis: &mut GuardedConn,
        loc: LocationId,
        own: &[Own],
    ) -> StorageResult<()> {
        let default = crate::orders::ledger::location_safety(&mut *conn, loc).await?;
        let own: Vec<(ProductId, Option<i64>)> =
            own.iter().map(|o| (o.product_id, o.safety_stock)).collect();
        SafetyCopy {
            key: &self.keys.safety(loc),
            version: VERSION,
            default,
            own: &own,
        }
        .run(redis)
        .await?;
        Ok(())
    }

    /// [`Storage::write_safety`] in a transaction of its own, after an operator's change (best
    /// effort: Redis keeps the old buffer until the next re-sync of these keys, which sets it).
    pub(crate) async fn push_safety(&self, loc: LocationId, products: &[ProductId]) {
        let pushed: StorageResult<()> = async {
            let mut tx = self.begin().await?;
            let mut redis = self.conn().await?;
            self.write_safety(&mut tx, &mut redis, loc, products)
                .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = pushed {
            tracing::warn!(location = %loc, error = %e, "safety stock not copied to redis; the next re-sync of its keys copies it");
        }
    }
}
