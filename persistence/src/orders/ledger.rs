//! The MySQL rows every writer shares: orders with their lines and ledger rows, ledger rows
//! alone, and the conditional stock change. The DB-lock path, operators' stock changes and the
//! consumer all write through these, so a row is shaped one way whoever writes it.

use crate::access::{Actor, Attribution};
use crate::error::StorageResult;
use crate::infra::mysql::push_list;
use crate::model::{Order, OrderStatus};
use sf_routing::{LocationId, ProductId};
use sqlx::{MySqlConnection, QueryBuilder};

/// Why a stock change was made, as the ledger names it. The reason also decides what the change
/// does to each state of the row ([`Reason::committed_delta`]) and what a decrement needs
/// ([`Reason::need`]): one definition, used by every writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// An online order persisted: its units move from `available` to `committed`.
    Order,
    /// An online order cancelled before hand-over: its units move back.
    Cancel,
    /// An online order handed over (collected, dispatched, shipped): its units leave `committed`
    /// and the building.
    Fulfilled,
    /// A pickup never collected, cancelled by the expiry job: like [`Reason::Cancel`].
    NotCollected,
    /// A sale at the till: a hand-over at once, from `available`.
    PosSale,
    /// A till sale returned: its units are on the shelf again.
    PosReturn,
    Restock,
    Adjust,
    /// A physical count: `onHand` set to what was counted.
    Count,
    Damaged,
    /// A checkout hold placed: its units move from `available` to `reserved`.
    Hold,
    /// A hold released by its customer: its units move back.
    HoldReleased,
    /// A hold past its `expiresAt`, released by the expiry job: like [`Reason::HoldReleased`].
    HoldExpired,
    /// A hold turned into an order: its units move from `reserved` to `committed`, `available`
    /// not at all (its rows are written by [`convert_reserved`]).
    HoldConverted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "ORDER",
            Self::Cancel => "CANCEL",
            Self::Fulfilled => "FULFILLED",
            Self::NotCollected => "NOT_COLLECTED",
            Self::PosSale => "POS_SALE",
            Self::PosReturn => "POS_RETURN",
            Self::Restock => "RESTOCK",
            Self::Adjust => "ADJUST",
            Self::Count => "COUNT",
            Self::Damaged => "DAMAGED",
            Self::Hold => "HOLD",
            Self::HoldReleased => "HOLD_RELEASED",
            Self::HoldExpired => "HOLD_EXPIRED",
            Self::HoldConverted => "HOLD_CONVERTED",
        }
    }

    /// The change of `committed` that goes with a change of `available` by `d` for this reason.
    /// An online order persisted moves its units from available to committed, a cancel before
    /// hand-over (or a pickup not collected) moves them back; a hand-over moves committed alone
    /// (its rows are written by [`insert_handovers`]); every other reason moves available, and so
    /// onHand, alone.
    pub(crate) fn committed_delta(self, d: i64) -> i64 {
        match self {
            Self::Order | Self::Cancel | Self::NotCollected => -d,
            _ => 0,
        }
    }

    /// The change of `reserved` that goes with a change of `available` by `d` for this reason: a
    /// hold moves its units from available to reserved, its release or expiry moves them back.
    /// A conversion moves reserved without available ([`convert_reserved`]).
    pub(crate) fn reserved_delta(self, d: i64) -> i64 {
        match self {
            Self::Hold | Self::HoldReleased | Self::HoldExpired => -d,
            _ => 0,
        }
    }

    /// What a decrement for this reason needs of the row.
    pub(crate) fn need(self) -> Need {
        match self {
            // A hold takes what an online order would: it is one, not yet paid.
            Self::Order | Self::Hold => Need::Sellable,
            Self::PosSale => Need::Available,
            Self::Restock | Self::Adjust | Self::Count | Self::Damaged => Need::OnHand,
            Self::Cancel
            | Self::Fulfilled
            | Self::NotCollected
            | Self::PosReturn
            | Self::HoldReleased
            | Self::HoldExpired
            | Self::HoldConverted => Need::Nothing,
        }
    }
}

/// The figure of a stock row a decrement may not take below zero. Each is defined here once, in
/// SQL over the `stock` row `s`; `reserve.lua` applies the same [`Need::Sellable`] rule to the
/// figures Redis holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// `sellableOnline` = available − safetyStock: what an online order may take.
    Sellable,
    /// `available` = onHand − committed − reserved: what the till may take.
    Available,
    /// `onHand`: what an operator's change may take (a count below `committed` leaves available
    /// negative: a real shortage, shown and refusing orders, not an error).
    OnHand,
    /// Increments and hand-overs need nothing.
    Nothing,
}

impl Need {
    /// The figure, as an SQL expression over the `stock` row `s`; `location_safety` is the
    /// location's default safety stock (read apart, without a lock: a buffer is a policy, not a
    /// count, and the location's row is not for every order to lock).
    pub(crate) fn sql(self, location_safety: i64) -> String {
        match self {
            Self::Sellable => {
                format!("(s.available - COALESCE(s.safety_stock, {location_safety}))")
            }
            Self::Available => "s.available".into(),
            Self::OnHand => "(s.available + s.committed + s.reserved)".into(),
            Self::Nothing => "NULL".into(),
        }
    }
}

/// The safety stock of each of `products` at `loc`, in order: its own, else the location's
/// default (read within the caller's transaction, which holds the rows' locks).
pub(crate) async fn safety_of(
    conn: &mut MySqlConnection,
    loc: LocationId,
    products: &[ProductId],
) -> StorageResult<Vec<i64>> {
    let default = location_safety(&mut *conn, loc).await?;
    let mut own = std::collections::HashMap::new();
    for chunk in products.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::new("SELECT product_id, safety_stock FROM stock WHERE location_id = ");
        q.push_bind(loc).push(" AND product_id IN ");
        push_list(&mut q, chunk.iter().copied());
        let rows: Vec<(ProductId, Option<i64>)> = q.build_query_as().fetch_all(&mut *conn).await?;
        own.extend(rows);
    }
    Ok(products
        .iter()
        .map(|p| own.get(p).copied().flatten().unwrap_or(default))
        .collect())
}

/// A location's default safety stock (0 for an unknown location), read without a lock.
pub(crate) async fn location_safety(
    conn: &mut MySqlConnection,
    loc: LocationId,
) -> StorageResult<i64> {
    let v: Option<i64> = sqlx::query_scalar("SELECT safety_stock FROM locations WHERE id = ?")
        .bind(loc)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(v.unwrap_or(0))
}

/// Rows per multi-row statement. MariaDB refuses a statement with more than 65,535 placeholders;
/// the widest row here has 14, so no statement comes near the limit (or the packet size).
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;

/// One ledger row to append: a change of `product` at `location` (of `available` for
/// [`insert_movements`], the units handed over for [`insert_handovers`]), referring to the order,
/// hold or change `ref_id`, made by `by`. The attribution is the row's own, not the statement's:
/// one statement may carry rows of many orders, each placed by its own channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Move<'a> {
    pub location: u64,
    pub product: u64,
    pub delta: i64,
    pub ref_id: &'a str,
    pub by: &'a Attribution,
}

impl<'a> Move<'a> {
    pub(crate) fn new(
        location: LocationId,
        product: ProductId,
        delta: i64,
        ref_id: &'a str,
        by: &'a Attribution,
    ) -> Self {
        Self {
            location: location.get(),
            product: product.get(),
            delta,
            ref_id,
            by,
        }
    }

    /// The rows of `deltas` at `loc`, all referring to `ref_id` and made by `by`.
    pub(crate) fn all(
        loc: LocationId,
        deltas: &'a [(ProductId, i64)],
        ref_id: &'a str,
        by: &'a Attribution,
    ) -> impl Iterator<Item = Move<'a>> + 'a {
        deltas
            .iter()
            .map(move |(p, d)| Move::new(loc, *p, *d, ref_id, by))
    }
}

/// Binds a row's attribution: its actor, note, reference and request id (the last four columns
/// of every ledger insert).
fn push_attribution(
    row: &mut sqlx::query_builder::Separated<'_, '_, sqlx::MySql, &'static str>,
    by: &Attribution,
) {
    row.push_bind(by.actor.to_string())
        .push_bind(by.note.clone())
        .push_bind(by.reference.clone())
        .push_bind(by.request_id.clone());
}

/// Inserts orders, their lines and their ledger rows (no stock change), a bounded number of rows
/// per statement; each order's rows name the actor paired with it (most often
/// [`Actor::of_order`]). Only `CONFIRMED` orders get ledger rows: the others took no stock.
pub(crate) async fn insert_orders(
    conn: &mut MySqlConnection,
    orders: &[(&Order, Actor)],
    reason: Reason,
) -> StorageResult<()> {
    let plain: Vec<&Order> = orders.iter().map(|(o, _)| *o).collect();
    insert_order_rows(conn, &plain).await?;
    let confirmed: Vec<(&Order, Attribution)> = orders
        .iter()
        .filter(|(o, _)| o.status == OrderStatus::Confirmed)
        .map(|(o, by)| (*o, Attribution::of(*by)))
        .collect();
    let moves: Vec<Move> = confirmed
        .iter()
        .flat_map(|(o, by)| {
            o.items.iter().map(move |i| Move {
                location: o.fulfillment_location_id,
                product: i.product_id,
                delta: -i64::from(i.quantity),
                ref_id: o.order_id.as_str(),
                by,
            })
        })
        .collect();
    insert_movements(conn, &moves, reason).await
}

/// Inserts orders and their lines alone, with their events ([`crate::events::orders_placed`]):
/// for an order whose units were set aside before (a converted hold), the ledger rows are its
/// conversion's ([`convert_reserved`]).
pub(crate) async fn insert_order_rows(
    conn: &mut MySqlConnection,
    orders: &[&Order],
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
            "INSERT INTO orders (id, path, delivery_type, status, fulfillment, location_id, \
             distance_km, delivery_latitude, delivery_longitude, total_amount, accepted_at, \
             cancelled_at, reject_reason, rejected_at, handed_over_at, pickup_code, ready_by, channel_id) ",
        )
        .push_values(chunk.iter().zip(accepted), |mut row, (o, accepted)| {
            let (status, cancelled_at, rejected_at) = match o.status {
                OrderStatus::Cancelled => ("'CANCELLED'", "NOW(3)", "NULL"),
                OrderStatus::Rejected => ("'REJECTED'", "NULL", "NOW(3)"),
                _ => ("'CONFIRMED'", "NULL", "NULL"),
            };
            // A till sale is handed over at once; every other order starts unfulfilled.
            let (fulfillment, handed_over_at) = match o.path {
                crate::model::OrderPath::Pos => ("'COLLECTED'", "NOW(3)"),
                _ => ("'UNFULFILLED'", "NULL"),
            };
            row.push_bind(&o.order_id)
                .push_bind(o.path.as_str())
                .push_bind(o.delivery_type.as_str())
                .push(status)
                .push(fulfillment)
                .push_bind(o.fulfillment_location_id)
                .push_bind(o.distance_km)
                .push_bind(o.delivery_address.map(|a| a.latitude))
                .push_bind(o.delivery_address.map(|a| a.longitude))
                .push_bind(o.total_amount)
                .push_bind(accepted)
                .push(cancelled_at)
                .push_bind(o.reason.as_deref())
                .push(rejected_at)
                .push(handed_over_at)
                .push_bind(o.fulfillment.pickup_code.as_deref())
                .push_bind(o.fulfillment.ready_by.as_deref())
                .push_bind(o.channel);
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
    crate::events::orders_placed(conn, orders).await
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

/// Appends ledger rows whose `delta` is one of `available`, a bounded number per statement; each
/// row's committed and reserved deltas follow from `reason`, its actor is its own.
pub(crate) async fn insert_movements(
    conn: &mut MySqlConnection,
    moves: &[Move<'_>],
    reason: Reason,
) -> StorageResult<()> {
    // The reason is the statement's own (one of a few fixed words), not a value per row.
    let reason_literal = format!("'{}'", reason.as_str());
    for chunk in moves.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::new(
            "INSERT INTO stock_movements (location_id, product_id, available_delta, committed_delta, reserved_delta, reason, ref_id, actor, note, reference, request_id) ",
        )
        .push_values(chunk, |mut row, m| {
            row.push_bind(m.location)
                .push_bind(m.product)
                .push_bind(m.delta)
                .push_bind(reason.committed_delta(m.delta))
                .push_bind(reason.reserved_delta(m.delta))
                .push(&reason_literal)
                .push_bind(m.ref_id);
            push_attribution(&mut row, m.by);
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

/// Changes one location's stock in MySQL by `deltas` of `available` (and, as `reason` says, of
/// `committed` and `reserved`): each row is locked, checked and changed by one conditional `UPDATE`, in product
/// order (the order every writer uses, so writers never deadlock on each other's rows). A
/// decrement must leave the figure `reason` needs ([`Reason::need`]) at zero or more. Answers the
/// first product that is short (with that figure), leaving the transaction to be rolled back.
pub(crate) async fn change_mysql_stock(
    conn: &mut MySqlConnection,
    loc: LocationId,
    deltas: &[(ProductId, i64)],
    reason: Reason,
) -> StorageResult<Option<(ProductId, i64)>> {
    let need = reason.need();
    let safety = match need {
        Need::Sellable => location_safety(&mut *conn, loc).await?,
        _ => 0,
    };
    for (p, d) in deltas {
        let mut q = QueryBuilder::new("UPDATE stock s SET s.available = s.available + ");
        q.push_bind(d)
            .push(", s.committed = s.committed + ")
            .push_bind(reason.committed_delta(*d))
            .push(", s.reserved = s.reserved + ")
            .push_bind(reason.reserved_delta(*d))
            .push(" WHERE s.location_id = ")
            .push_bind(loc)
            .push(" AND s.product_id = ")
            .push_bind(p);
        if *d < 0 && need != Need::Nothing {
            q.push(format_args!(" AND {} + ", need.sql(safety)))
                .push_bind(d)
                .push(" >= 0");
        }
        if q.build().execute(&mut *conn).await?.rows_affected() == 0 {
            let shown = match need {
                Need::Nothing => Need::Available,
                need => need,
            };
            let mut q = QueryBuilder::new(format!(
                "SELECT CAST({} AS SIGNED) FROM stock s WHERE s.location_id = ",
                shown.sql(safety)
            ));
            q.push_bind(loc).push(" AND s.product_id = ").push_bind(p);
            let have: Option<i64> = q.build_query_scalar().fetch_optional(&mut *conn).await?;
            return Ok(Some((*p, have.unwrap_or(0))));
        }
    }
    Ok(None)
}

/// Appends the ledger rows of hand-overs, whose `delta` is the units handed over: each moves
/// `committed` (and so onHand) down by its units, and `available` not at all.
pub(crate) async fn insert_handovers(
    conn: &mut MySqlConnection,
    moves: &[Move<'_>],
) -> StorageResult<()> {
    for chunk in moves.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::new(
            "INSERT INTO stock_movements (location_id, product_id, available_delta, committed_delta, reason, ref_id, actor, note, reference, request_id) ",
        )
        .push_values(chunk, |mut row, m| {
            row.push_bind(m.location)
                .push_bind(m.product)
                .push("0")
                .push_bind(-m.delta)
                .push("'FULFILLED'")
                .push_bind(m.ref_id);
            push_attribution(&mut row, m.by);
        })
        .build()
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Moves a converted hold's units from `reserved` to `committed` at `loc` (`available` does not
/// move, so neither does Redis) and appends its `HOLD_CONVERTED` ledger rows, referring to the
/// order `order_id` and made by `by`. `units` are `(product, quantity)`; the hold's rows hold them
/// reserved, so a row that does not is a fault, not a refusal.
pub(crate) async fn convert_reserved(
    conn: &mut MySqlConnection,
    loc: LocationId,
    units: &[(ProductId, i64)],
    order_id: &str,
    by: &Attribution,
) -> StorageResult<()> {
    for (p, q) in units {
        let changed = sqlx::query(
            "UPDATE stock SET reserved = reserved - ?, committed = committed + ? \
             WHERE location_id = ? AND product_id = ? AND reserved >= ?",
        )
        .bind(q)
        .bind(q)
        .bind(loc)
        .bind(p)
        .bind(q)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(crate::error::StorageError::internal(format!(
                "stock {loc}/{p} holds fewer than the {q} units a hold reserved"
            )));
        }
    }
    for chunk in units.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::new(
            "INSERT INTO stock_movements (location_id, product_id, available_delta, committed_delta, reserved_delta, reason, ref_id, actor, note, reference, request_id) ",
        )
        .push_values(chunk, |mut row, (p, q)| {
            row.push_bind(loc)
                .push_bind(p)
                .push("0")
                .push_bind(q)
                .push_bind(-q)
                .push("'HOLD_CONVERTED'")
                .push_bind(order_id);
            push_attribution(&mut row, by);
        })
        .build()
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
