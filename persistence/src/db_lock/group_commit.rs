//! Group commit of the DB-lock path: orders (and cancels) that wait for the same location's rows
//! are decided together, in one transaction with one durable commit.
//!
//! Each location has a lane. An order's attempt at a location joins the lane's queue; whichever
//! attempt then gets the lane runs, in one transaction, every attempt queued so far (its group),
//! while the attempts that arrive meanwhile queue up for the next group. So under a burst on one
//! product the row lock is taken, and the commit made durable, once per group instead of once
//! per order, and with no burst a group is one order, decided as before.
//!
//! A group's transaction locks its rows (`SELECT … FOR UPDATE`, in product order like every
//! writer), decides each order in arrival order against what the earlier ones left — an order
//! that does not fit is refused alone, never its group —, writes each order's own rows, ledger
//! entries and idempotency record, changes each stock row by one conditional `UPDATE` for the
//! whole group, and ends with the commit step every MySQL-first write ends with
//! ([`Storage::commit_writes_with_redis`]): the group's change goes to Redis while the locks are held.
//! When Redis holds fewer units of a product than MySQL (online orders not yet persisted), the
//! group is decided again with Redis's figure for it; after [`REDECIDES`] tries the group's
//! orders are decided one by one.
//!
//! Cancels of orders MySQL holds wait in the same lanes ([`crate::db_lock::group_cancel`]): a
//! group's cancels run first, in one transaction of their own, so a cancel in a burst waits for
//! one group rather than for every writer of its rows in turn.
//!
//! Groups run inside the write's own task ([`crate::db_lock::DbLock::place`] is called from one), so a
//! client that goes away never cuts a group short.

use crate::access::Actor;
use crate::db_lock::group_cancel::Cancelling;
use crate::db_lock::{Attempt, DbLockOrder, Placed};
use crate::error::{Refusal, StorageError, StorageResult};
use crate::infra::mysql::{push_list, with_retry};
use crate::model::{Order, OrderPath, OrderStatus};
use crate::orders::build::build_order;
use crate::orders::idempotency::{claim_mysql, complete_mysql, Claim};
use crate::orders::ledger::{insert_orders, location_safety, Reason};
use crate::scripts::adjust::AdjustMode;
use crate::Storage;
use sf_routing::{Candidate, LocationId, OrderLines, ProductId};
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often a group is decided again with Redis's lower figure before its orders are decided
/// one by one.
const REDECIDES: usize = 3;

/// One order's attempt at one location.
pub(crate) struct Member {
    pub req: Arc<DbLockOrder>,
    pub prices: Arc<Vec<i64>>,
    pub candidate: Candidate,
    pub deadline: Instant,
    /// When a pickup will be ready ([`crate::orders::build::ready_by`]), decided with the request.
    pub ready_by: Option<Arc<str>>,
}

/// What waits in a lane.
pub(super) enum Work {
    Order(Member),
    Cancel(Cancelling),
}

/// What a group answers one of its members. (Sent once per order through a oneshot: boxing the
/// large variant would add an allocation per order for nothing.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Answer {
    Decided(StorageResult<Attempt>),
    /// An earlier member of the group holds the same `Idempotency-Key`: this one joins the next
    /// group, which finds that member's answer.
    Again(Member),
    /// A cancel's: done (or nothing to do), or refused, or failed.
    Cancelled(StorageResult<()>),
}

struct Queued {
    work: Work,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Lane {
    queue: Mutex<Vec<Queued>>,
    /// Held by the attempt that runs the lane's current group.
    run: tokio::sync::Mutex<()>,
}

/// The lanes, one per location, and how many groups and orders went through them.
#[derive(Default)]
pub struct GroupCommit {
    lanes: Mutex<HashMap<LocationId, Arc<Lane>>>,
    /// Groups decided in one transaction, and the orders they decided (placed or refused).
    pub groups: AtomicU64,
    pub orders: AtomicU64,
    /// Cancel groups done in one transaction, and the cancels in them.
    pub cancel_groups: AtomicU64,
    pub cancels: AtomicU64,
}

impl GroupCommit {
    fn lane(&self, loc: LocationId) -> Arc<Lane> {
        self.lanes
            .lock()
            .expect("lanes")
            .entry(loc)
            .or_default()
            .clone()
    }
}

/// One group transaction's decision.
enum Outcome {
    /// One answer per member, in the group's order.
    Decided(Vec<StorageResult<Attempt>>),
    /// Redis holds only this many units of this product (online orders MySQL has not seen yet):
    /// nothing was changed; decide again with that figure.
    RedisShort(ProductId, i64),
}

impl Storage {
    /// Decides one order's attempt at its candidate location, in a group with the attempts at
    /// that location that wait beside it.
    pub(crate) async fn decide_in_group(&self, member: Member) -> StorageResult<Attempt> {
        let loc = member.candidate.location;
        let mut work = Work::Order(member);
        loop {
            match self.through_lane(loc, work).await? {
                Answer::Decided(r) => return r,
                Answer::Again(m) => work = Work::Order(m),
                Answer::Cancelled(_) => {
                    return Err(StorageError::internal("an order was answered as a cancel"))
                }
            }
        }
    }

    /// Queues `work` in `loc`'s lane and answers it, running the lane's next group when its turn
    /// comes and no group took the work meanwhile.
    pub(super) async fn through_lane(&self, loc: LocationId, work: Work) -> StorageResult<Answer> {
        let lane = self.groups.lane(loc);
        let (tx, mut rx) = oneshot::channel();
        lane.queue
            .lock()
            .expect("lane queue")
            .push(Queued { work, answer: tx });
        let _running = lane.run.lock().await;
        match rx.try_recv() {
            // A group decided it while this work waited for the lane.
            Ok(answer) => Ok(answer),
            Err(_) => {
                let group = std::mem::take(&mut *lane.queue.lock().expect("lane queue"));
                self.run_group(loc, group).await;
                rx.await
                    .map_err(|_| StorageError::internal("a group left its work unanswered"))
            }
        }
    }

    /// Runs one group and answers each of its members: its cancels first (the units they give
    /// back are there for its orders), then its orders.
    async fn run_group(&self, loc: LocationId, group: Vec<Queued>) {
        let now = Instant::now();
        let mut keys = HashSet::new();
        let mut members = Vec::with_capacity(group.len());
        let mut senders = Vec::with_capacity(group.len());
        let mut cancels = Vec::new();
        let mut cancel_senders = Vec::new();
        for Queued { work, answer } in group {
            let deadline = match &work {
                Work::Order(m) => m.deadline,
                Work::Cancel(c) => c.deadline,
            };
            if deadline <= now {
                let late = match work {
                    Work::Order(_) => Answer::Decided(Err(self.late())),
                    Work::Cancel(_) => Answer::Cancelled(Err(self.late())),
                };
                let _ = answer.send(late);
                continue;
            }
            let member = match work {
                Work::Cancel(c) => {
                    cancels.push(c);
                    cancel_senders.push(answer);
                    continue;
                }
                Work::Order(m) => m,
            };
            let repeated = member
                .req
                .idempotency
                .as_ref()
                .is_some_and(|i| !keys.insert((i.scope.clone(), i.key.clone())));
            if repeated {
                let _ = answer.send(Answer::Again(member));
                continue;
            }
            members.push(member);
            senders.push(answer);
        }
        if !cancels.is_empty() {
            let answers = self.cancel_group(loc, &cancels).await;
            for (answer, sender) in answers.into_iter().zip(cancel_senders) {
                let _ = sender.send(Answer::Cancelled(answer));
            }
        }
        if members.is_empty() {
            return;
        }
        let answers = self.decide_group(loc, &members).await;
        for (answer, sender) in answers.into_iter().zip(senders) {
            // A member whose request is gone has nobody to answer; its order stands.
            let _ = sender.send(Answer::Decided(answer));
        }
    }

    pub(super) fn late(&self) -> StorageError {
        StorageError::unavailable(format!(
            "MySQL did not answer within {} ms; nothing was changed",
            self.config.db_timeout.as_millis()
        ))
    }

    /// Decides a group: in one transaction, again with Redis's lower figures while Redis holds
    /// fewer units than MySQL, and one by one after [`REDECIDES`] tries.
    async fn decide_group(
        &self,
        loc: LocationId,
        members: &[Member],
    ) -> Vec<StorageResult<Attempt>> {
        let deadline = members
            .iter()
            .map(|m| m.deadline)
            .min()
            .unwrap_or_else(Instant::now);
        let mut caps: BTreeMap<ProductId, i64> = BTreeMap::new();
        for _ in 0..REDECIDES {
            let tried = with_retry("mysql-first order group", || {
                self.try_group(loc, members, &caps, deadline)
            })
            .await;
            match tried {
                Ok(Outcome::Decided(answers)) => {
                    self.groups.groups.fetch_add(1, Ordering::Relaxed);
                    self.groups
                        .orders
                        .fetch_add(members.len() as u64, Ordering::Relaxed);
                    return answers;
                }
                Ok(Outcome::RedisShort(product, have)) => {
                    let cap = caps.entry(product).or_insert(have);
                    *cap = (*cap).min(have);
                }
                // One failure answers every member as it is; each request logs it with its id.
                Err(e) => return members.iter().map(|_| Err(e.clone())).collect(),
            }
        }
        let mut answers = Vec::with_capacity(members.len());
        for m in members {
            answers.push(with_retry("mysql-first order", || self.try_db_lock(m)).await);
        }
        answers
    }

    /// One try at a group: its statements, then the commit step.
    async fn try_group(
        &self,
        loc: LocationId,
        members: &[Member],
        caps: &BTreeMap<ProductId, i64>,
        deadline: Instant,
    ) -> StorageResult<Outcome> {
        let statements = async {
            let mut tx = self.begin().await?;
            let mut answers: Vec<Option<StorageResult<Attempt>>> =
                members.iter().map(|_| None).collect();
            // Each keyed order's claim; a replay or a mismatch is that order's answer alone.
            let mut claimed = vec![false; members.len()];
            for (i, m) in members.iter().enumerate() {
                let Some(idem) = &m.req.idempotency else {
                    continue;
                };
                match claim_mysql(&mut tx, idem, self.config.idempotency_ttl_secs).await {
                    Ok(Claim::Replay(order)) => {
                        answers[i] = Some(Ok(Attempt::Placed(Placed::Replayed(*order))))
                    }
                    Ok(_) => claimed[i] = true,
                    Err(
                        e @ StorageError::Refused(
                            Refusal::IdempotencyMismatch | Refusal::IdempotencyInFlight,
                        ),
                    ) => answers[i] = Some(Err(e)),
                    Err(e) => return Err(e),
                }
            }

            // Lock the group's rows and read what they hold.
            let products: BTreeSet<ProductId> = members
                .iter()
                .zip(&answers)
                .filter(|(_, a)| a.is_none())
                .flat_map(|(m, _)| m.req.lines.products())
                .collect();
            let mut have: BTreeMap<ProductId, i64> = BTreeMap::new();
            let mut safety: BTreeMap<ProductId, i64> = BTreeMap::new();
            if !products.is_empty() {
                let default = location_safety(&mut tx, loc).await?;
                let mut q = QueryBuilder::new(
                    "SELECT product_id, available, safety_stock FROM stock WHERE location_id = ",
                );
                q.push_bind(loc).push(" AND product_id IN ");
                push_list(&mut q, products.iter().copied());
                q.push(" ORDER BY product_id FOR UPDATE");
                for row in q.build_query_as::<Row>().fetch_all(&mut *tx).await? {
                    have.insert(row.product_id, row.available);
                    safety.insert(row.product_id, row.safety_stock.unwrap_or(default));
                }
            }
            let open: Vec<Option<Ask<'_>>> = members
                .iter()
                .zip(&answers)
                .map(|(m, a)| {
                    a.is_none().then_some(Ask {
                        lines: &m.req.lines,
                        online: m.req.path != OrderPath::Pos,
                    })
                })
                .collect();
            let Allotment {
                fits,
                taken,
                committed,
            } = allot(have, caps, &safety, &open);

            let mut placed: Vec<(usize, Order)> = Vec::new();
            for (i, m) in members.iter().enumerate() {
                match fits[i] {
                    None => continue,
                    Some(Err((product, have))) => {
                        answers[i] = Some(Ok(Attempt::Short { product, have }));
                        continue;
                    }
                    Some(Ok(())) => {}
                }
                let mut order = build_order(
                    Order::new_id(loc.get()),
                    OrderStatus::Confirmed,
                    m.req.path,
                    &m.req.destination,
                    m.candidate,
                    &m.req.lines,
                    &m.prices,
                    m.req.channel,
                );
                order.fulfillment.ready_by = m.ready_by.as_deref().map(str::to_owned);
                placed.push((i, order));
            }
            if placed.is_empty() {
                // Nothing placed: the claims of the refused go with the rollback.
                tx.rollback().await?;
                return Ok(Err(answers));
            }

            // Each order's own rows and ledger entries, one statement per table.
            for (reason, path_is_pos) in [(Reason::Order, false), (Reason::PosSale, true)] {
                let orders: Vec<(&Order, Actor)> = placed
                    .iter()
                    .filter(|(i, _)| (members[*i].req.path == OrderPath::Pos) == path_is_pos)
                    .map(|(i, o)| (o, members[*i].req.by.unwrap_or_else(|| Actor::of_order(o))))
                    .collect();
                if !orders.is_empty() {
                    insert_orders(&mut tx, &orders, reason).await?;
                }
            }
            // One conditional UPDATE per row for the whole group.
            for (p, units) in &taken {
                let changed = sqlx::query(
                    "UPDATE stock SET available = available - ?, committed = committed + ? \
                     WHERE location_id = ? AND product_id = ? AND available >= ?",
                )
                .bind(units)
                .bind(committed.get(p).copied().unwrap_or(0))
                .bind(loc)
                .bind(p)
                .bind(units)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed != 1 {
                    return Err(StorageError::internal(format!(
                        "stock of product {p} at location {loc} changed under its row lock"
                    )));
                }
            }
            for (i, order) in &placed {
                if let Some(idem) = &members[*i].req.idempotency {
                    complete_mysql(&mut tx, idem, order).await?;
                }
            }
            // A refused keyed order leaves its key free for a retry, as a rolled-back one would.
            for (i, m) in members.iter().enumerate() {
                let refused = matches!(answers[i], Some(Ok(Attempt::Short { .. })));
                if let (true, true, Some(idem)) = (refused, claimed[i], &m.req.idempotency) {
                    sqlx::query("DELETE FROM idempotency_keys WHERE scope = ? AND idem_key = ?")
                        .bind(&idem.scope)
                        .bind(&idem.key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let deltas: Vec<(ProductId, i64)> = taken.iter().map(|(p, u)| (*p, -u)).collect();
            // Redis keeps the safety stock of a row an online order takes from.
            let floors: Vec<i64> = taken
                .keys()
                .map(|p| match committed.get(p) {
                    Some(_) => safety.get(p).copied().unwrap_or(0),
                    None => 0,
                })
                .collect();
            Ok(Ok((tx, placed, answers, deltas, floors)))
        };
        let (tx, placed, mut answers, deltas, floors) =
            match self.in_time(deadline, statements).await? {
                Ok(ready) => ready,
                Err(refused) => {
                    return Ok(Outcome::Decided(
                        refused.into_iter().map(answered).collect(),
                    ))
                }
            };
        let writes = placed.len() as u64;
        if let Some((product, have)) = self
            .commit_writes_with_redis(tx, loc, &deltas, &floors, writes, AdjustMode::Check)
            .await?
        {
            return Ok(Outcome::RedisShort(product, have));
        }
        for (i, order) in placed {
            answers[i] = Some(Ok(Attempt::Placed(Placed::New(order))));
        }
        Ok(Outcome::Decided(
            answers.into_iter().map(answered).collect(),
        ))
    }
}

/// A locked stock row of a group: its available figure and its own safety stock.
#[derive(sqlx::FromRow)]
struct Row {
    product_id: ProductId,
    available: i64,
    safety_stock: Option<i64>,
}

/// How a group's orders fit the stock its rows hold.
#[derive(Debug, PartialEq, Eq)]
struct Allotment {
    /// Per member, in arrival order: `None` for one already answered, `Ok` for one that fits what
    /// the earlier ones left, `Err((product, have))` for one short of `product`, of which `have`
    /// units were left for it (for an online order: above the safety stock).
    fits: Vec<Option<Result<(), (ProductId, i64)>>>,
    /// The units the fitting orders take from `available`, per product.
    taken: BTreeMap<ProductId, i64>,
    /// The units the fitting online orders commit, per product (a till sale commits none: it is
    /// handed over at once).
    committed: BTreeMap<ProductId, i64>,
}

/// One member of a group, as [`allot`] weighs it.
#[derive(Debug, Clone, Copy)]
struct Ask<'a> {
    lines: &'a OrderLines,
    /// An online order (it may not take the safety stock), not a till sale.
    online: bool,
}

/// Decides a group in arrival order against what its rows hold (`have`: available; a product
/// without a row has none), each figure capped by Redis's lower one where a try found it lower
/// (`caps`): an order takes its units only if every line fits what the earlier orders left —
/// above the product's `safety` stock for an online order ([`Reason::need`]) — and an order that
/// does not fit is refused alone. Pure: the transaction executes what it decides.
fn allot(
    mut have: BTreeMap<ProductId, i64>,
    caps: &BTreeMap<ProductId, i64>,
    safety: &BTreeMap<ProductId, i64>,
    members: &[Option<Ask<'_>>],
) -> Allotment {
    for (p, cap) in caps {
        if let Some(h) = have.get_mut(p) {
            *h = (*h).min(*cap);
        }
    }
    let mut taken: BTreeMap<ProductId, i64> = BTreeMap::new();
    let mut committed: BTreeMap<ProductId, i64> = BTreeMap::new();
    let fits = members
        .iter()
        .map(|ask| {
            let ask = (*ask)?;
            let floor = |p: &ProductId| match ask.online {
                true => safety.get(p).copied().unwrap_or(0),
                false => 0,
            };
            let short = ask.lines.iter().find_map(|(p, q)| {
                let h = have.get(&p).copied().unwrap_or(0) - floor(&p);
                (h < i64::from(q.get())).then_some((p, h.max(0)))
            });
            if let Some(short) = short {
                return Some(Err(short));
            }
            for (p, q) in ask.lines.iter() {
                *have.get_mut(&p).expect("checked above") -= i64::from(q.get());
                *taken.entry(p).or_default() += i64::from(q.get());
                if ask.online {
                    *committed.entry(p).or_default() += i64::from(q.get());
                }
            }
            Some(Ok(()))
        })
        .collect();
    Allotment {
        fits,
        taken,
        committed,
    }
}

/// Every member of a decided group has its answer.
fn answered(a: Option<StorageResult<Attempt>>) -> StorageResult<Attempt> {
    a.unwrap_or_else(|| Err(StorageError::internal("a group left an order undecided")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64) -> ProductId {
        ProductId::new_unchecked(id)
    }

    fn lines(raw: &[(i64, i64)]) -> OrderLines {
        OrderLines::parse(raw.iter().copied()).unwrap()
    }

    fn till(lines: &OrderLines) -> Ask<'_> {
        Ask {
            lines,
            online: false,
        }
    }

    fn online(lines: &OrderLines) -> Ask<'_> {
        Ask {
            lines,
            online: true,
        }
    }

    #[test]
    fn an_online_order_leaves_the_safety_stock_and_the_till_takes_it() {
        let (web, till_sale) = (lines(&[(1, 3)]), lines(&[(1, 3)]));
        let safety = stock(&[(1, 2)]);
        let got = allot(
            stock(&[(1, 4)]),
            &BTreeMap::new(),
            &safety,
            &[Some(online(&web)), Some(till(&till_sale))],
        );
        // 4 on the shelf, 2 kept back: the web order sees 2 sellable, the till sees 4.
        assert_eq!(got.fits, vec![Some(Err((p(1), 2))), Some(Ok(()))]);
        assert_eq!(got.taken, stock(&[(1, 3)]));
        assert_eq!(got.committed, BTreeMap::new());
        let small = lines(&[(1, 2)]);
        let got = allot(
            stock(&[(1, 4)]),
            &BTreeMap::new(),
            &safety,
            &[Some(online(&small))],
        );
        assert_eq!(got.fits, vec![Some(Ok(()))]);
        assert_eq!(
            (got.taken.clone(), got.committed),
            (stock(&[(1, 2)]), stock(&[(1, 2)]))
        );
    }

    fn stock(raw: &[(u64, i64)]) -> BTreeMap<ProductId, i64> {
        raw.iter().map(|(id, v)| (p(*id), *v)).collect()
    }

    #[test]
    fn orders_take_stock_in_arrival_order_and_a_short_one_is_refused_alone() {
        let (a, b, c) = (lines(&[(1, 3)]), lines(&[(1, 3)]), lines(&[(1, 2)]));
        let got = allot(
            stock(&[(1, 5)]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[Some(till(&a)), Some(till(&b)), Some(till(&c))],
        );
        assert_eq!(
            got,
            Allotment {
                fits: vec![Some(Ok(())), Some(Err((p(1), 2))), Some(Ok(()))],
                taken: stock(&[(1, 5)]),
                committed: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn an_order_short_of_one_line_takes_none_of_the_others() {
        let both = lines(&[(1, 1), (2, 4)]);
        let one = lines(&[(1, 2)]);
        let got = allot(
            stock(&[(1, 2), (2, 3)]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[Some(till(&both)), Some(till(&one))],
        );
        assert_eq!(got.fits, vec![Some(Err((p(2), 3))), Some(Ok(()))]);
        assert_eq!(got.taken, stock(&[(1, 2)]));
    }

    #[test]
    fn answered_members_are_skipped_and_a_product_without_a_row_has_nothing() {
        let a = lines(&[(9, 1)]);
        let b = lines(&[(1, 1)]);
        let got = allot(
            stock(&[(1, 1)]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[None, Some(till(&a)), Some(till(&b))],
        );
        assert_eq!(got.fits, vec![None, Some(Err((p(9), 0))), Some(Ok(()))]);
        assert_eq!(got.taken, stock(&[(1, 1)]));
    }

    #[test]
    fn redis_lower_figure_caps_what_mysql_holds() {
        let a = lines(&[(1, 2)]);
        let b = lines(&[(1, 2)]);
        let caps = stock(&[(1, 3), (7, 0)]);
        let got = allot(
            stock(&[(1, 10)]),
            &caps,
            &BTreeMap::new(),
            &[Some(till(&a)), Some(till(&b))],
        );
        assert_eq!(got.fits, vec![Some(Ok(())), Some(Err((p(1), 1)))]);
        assert_eq!(got.taken, stock(&[(1, 2)]));
    }

    #[test]
    fn a_group_of_none_takes_nothing() {
        let got = allot(stock(&[(1, 10)]), &BTreeMap::new(), &BTreeMap::new(), &[]);
        assert_eq!(
            got,
            Allotment {
                fits: vec![],
                taken: BTreeMap::new(),
                committed: BTreeMap::new(),
            }
        );
    }
}
