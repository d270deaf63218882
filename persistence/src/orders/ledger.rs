//! The MySQL rows every writer shares: orders with their lines and ledger rows, ledger rows
//! alone, and the conditional stock change. The DB-lock path, operators' stock changes and the
//! consumer all write through these, so a row is shaped one way whoever writes it.

use crate::error::StorageResult;
use crate::infra::mysql::push_list;
use crate::model::{Order, OrderStatus};
use sf_routing::{LocationId, ProductId};
use sqlx::{MySqlConnection, QueryBuilder};

/// Why a stock change was made, as the ledger names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Order,
    Cancel,
    PosSale,
    PosReturn,
    Restock,
    Adjust,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "ORDER",
            Self::Cancel => "CANCEL",
            Self::PosSale => "POS_SALE",
            Self::PosReturn => "POS_RETURN",
            Self::Restock => "RESTOCK",
            Self::Adjust => "ADJUST",
        }
    }
}

/// Rows per multi-row statement. MariaDB refuses a statement with more than 65,535 placeholders;
/// the widest row here has 10, so no statement comes near the limit (or the packet size).
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;

/// A stock row's on-hand figure, as the reads of one location's rows return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OnHand {
    pub product_id: ProductId,
    pub on_hand: i64,
}

/// Inserts orders, their lines and their ledger rows (no stock change), a bounded number of rows
/// per statement. Only `CONFIRMED` orders get ledger rows: the others took no stock.
pub(crate) async fn insert_orders(
    conn: &mut MySqlConnection,
    orders: &[&Order],
    reason: Reason,
) -> StorageResult<()> {
    for chunk in orders.chunks(ROWS_PER_STATEMENT) {
        // What a row's status decides is written into the statement (`NOW(3)` or `NULL`), and the
        // acceptance time is bound as a time: MariaDB then evaluates no expression per row. A
        // chunk of confirmed orders, the usual one, is one text per size for the statement cache.
        let accepted = chunk
            .iter()
            .map(|o| accepted_at(o.accepted_at_ms))
            .collect::<StorageResult<Vec<_>>>()?;
        QueryBuilder::new(
            "INSERT INTO orders (id, path, delivery_type, status, location_id, distance_km, \
             delivery_latitude, delivery_longitude, total_amount, accepted_at, cancelled_at, \
             reject_reason, rejected_at) ",
        )
        .push_values(chunk.iter().zip(accepted), |mut row, (o, accepted)| {
            let (status, cancelled_at, rejected_at) = match o.status {
                OrderStatus::Cancelled => ("'CANCELLED'", "NOW(3)", "NULL"),
                OrderStatus::Rejected => ("'REJECTED'", "NULL", "NOW(3)"),
                _ => ("'CONFIRMED'", "NULL", "NULL"),
            };
            row.push_bind(&o.order_id)
                .push_bind(o.path.as_str())
                .push_bind(o.delivery_type.as_str())
                .push(status)
                .push_bind(o.fulfillment_location_id)
                .push_bind(o.distance_km)
                .push_bind(o.delivery_address.map(|a| a.latitude))
                .push_bind(o.delivery_address.map(|a| a.longitude))
                .push_bind(o.total_amount)
                .push_bind(accepted)
                .push(cancelled_at)
                .push_bind(o.reason.as_deref())
                .push(rejected_at);
        })
        .build()
        .execute(&mut *conn)
        .await?;
    }

    let lines: Vec<(&str, &crate::model::OrderItem)> = orders
        .iter()
        .flat_map(|o| o.items.iter().map(move |i| (o.order_id.as_str(), i)))
        .collect();
    for chunk in lines.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::new("INSERT INTO order_lines (order_id, product_id, quantity, unit_price) ")
            .push_values(chunk, |mut row, (id, i)| {
                row.push_bind(*id)
                    .push_bind(i.product_id)
                    .push_bind(i.quantity)
                    .push_bind(i.unit_price);
            })
            .build()
            .execute(&mut *conn)
            .await?;
    }

    let moves: Vec<(u64, u64, i64, &str)> = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Confirmed)
        .flat_map(|o| {
            o.items.iter().map(move |i| {
                (
                    o.fulfillment_location_id,
                    i.product_id,
                    -i64::from(i.quantity),
                    o.order_id.as_str(),
                )
            })
        })
        .collect();
    insert_movements(conn, &moves, reason).await
}

/// The `DATETIME(3)` of an order's acceptance, from its milliseconds since the epoch (the
/// connection's time zone is UTC, as for `FROM_UNIXTIME`).
fn accepted_at(ms: i64) -> StorageResult<chrono::NaiveDateTime> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.naive_utc())
        .ok_or_else(|| {
            crate::error::StorageError::internal(format!("acceptance time {ms} ms is out of range"))
        })
}

/// Appends ledger rows `(location, product, delta, ref)`, a bounded number per statement.
pub(crate) async fn insert_movements(
    conn: &mut MySqlConnection,
    moves: &[(u64, u64, i64, &str)],
    reason: Reason,
) -> StorageResult<()> {
    // The reason is the statement's own (one of a few fixed words), not a value per row.
    let reason_literal = format!("'{}'", reason.as_str());
    for chunk in moves.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::new(
            "INSERT INTO stock_movements (location_id, product_id, delta, reason, ref_id) ",
        )
        .push_values(chunk, |mut row, (l, p, d, r)| {
            row.push_bind(l)
                .push_bind(p)
                .push_bind(d)
                .push(&reason_literal)
                .push_bind(*r);
        })
        .build()
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Locks one location's stock rows of `products` for update, in product order (the order every
/// writer locks in). A writer that changes Redis stock without changing these rows in MySQL takes
/// them so that it is serialised with every re-sync, which share-locks the rows it computes from.
pub(crate) async fn lock_stock_rows(
    conn: &mut MySqlConnection,
    loc: LocationId,
    products: &[ProductId],
) -> StorageResult<()> {
    let mut products = products.to_vec();
    products.sort_unstable();
    products.dedup();
    for chunk in products.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new("SELECT product_id FROM stock WHERE location_id = ");
        q.push_bind(loc).push(" AND product_id IN ");
        push_list(&mut q, chunk.iter().copied());
        q.push(" ORDER BY product_id FOR UPDATE");
        q.build().fetch_all(&mut *conn).await?;
    }
    Ok(())
}

/// Changes one location's stock in MySQL: each row is locked, checked and changed by one
/// conditional `UPDATE`, in product order (the order every writer uses, so writers never deadlock
/// on each other's rows). Answers the first product that is short (with what it has), leaving the
/// transaction to be rolled back.
pub(crate) async fn change_mysql_stock(
    conn: &mut MySqlConnection,
    loc: LocationId,
    deltas: &[(ProductId, i64)],
) -> StorageResult<Option<(ProductId, i64)>> {
    for (p, d) in deltas {
        let changed = sqlx::query(
            "UPDATE stock SET on_hand = on_hand + ? \
             WHERE location_id = ? AND product_id = ? AND on_hand + ? >= 0",
        )
        .bind(d)
        .bind(loc)
        .bind(p)
        .bind(d)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed == 0 {
            let have: Option<i64> = sqlx::query_scalar(
                "SELECT on_hand FROM stock WHERE location_id = ? AND product_id = ?",
            )
            .bind(loc)
            .bind(p)
            .fetch_optional(&mut *conn)
            .await?;
            return Ok(Some((*p, have.unwrap_or(0))));
        }
    }
    Ok(None)
}
