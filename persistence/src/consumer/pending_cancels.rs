//! The cancels still in a location's stream and not in the batch: whether one of them frees
//! units that a short reservation could wait for.

use crate::error::StorageResult;
use crate::formats::decode_lines;
use crate::infra::mysql::push_list;
use crate::orders::ledger::ROWS_PER_STATEMENT;
use crate::Storage;
use redis::AsyncCommands;
use sf_routing::LocationId;
use sqlx::QueryBuilder;
use std::collections::{HashMap, HashSet};

/// The cancels still in a location's stream and not in this batch, read once per batch and
/// location (a shortage among many orders asks about many products: one stream read serves them
/// all, so a batch never holds its row locks through one stream scan per order), and, per
/// product, whether one of them restores units to MySQL.
/// The order and products of each cancel still in a stream; `None` when the stream was too long
/// to read (then every product counts as having one).
pub(super) type StreamCancels = Option<Vec<(String, Vec<u64>)>>;

#[derive(Default)]
pub(super) struct PendingCancels {
    /// Per location.
    pub(super) at: HashMap<LocationId, StreamCancels>,
    /// Per (location, product): the answer, once asked.
    pub(super) answers: HashMap<(LocationId, u64), bool>,
}

impl PendingCancels {
    /// Most stream entries read per location.
    const LOOK: usize = 10_000;

    /// Whether a cancel that gives back units of `product` at `loc` is still in the stream, not
    /// in this batch (`handled`), for an order MySQL holds as sold. Then a shortage may only be
    /// the order of work: Redis counted that cancel's units before later orders (and MySQL-first
    /// sales, which MySQL already holds) took them, and MySQL has not seen it yet. A stream too
    /// long to read counts as having one.
    pub(super) async fn restore(
        &mut self,
        store: &Storage,
        conn: &mut sqlx::MySqlConnection,
        loc: LocationId,
        product: u64,
        handled: &HashSet<(String, LocationId)>,
    ) -> StorageResult<bool> {
        if let Some(known) = self.answers.get(&(loc, product)) {
            return Ok(*known);
        }
        let cancels = match self.at.entry(loc) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Self::read(store, loc, handled).await?)
            }
        };
        let answer = match cancels {
            None => true,
            Some(cancels) => {
                // Only the cancel of an order MySQL holds as sold gives MySQL units back; one
                // whose order is not persisted yet nets to nothing (and waits for it), so waiting
                // on it could go in circles.
                let ids: Vec<&str> = cancels
                    .iter()
                    .filter(|(_, products)| products.contains(&product))
                    .map(|(o, _)| o.as_str())
                    .collect();
                let mut restores = false;
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::new(
                        "SELECT COUNT(*) FROM orders WHERE status = 'CONFIRMED' AND id IN ",
                    );
                    push_list(&mut q, chunk.iter().copied());
                    let count: i64 = q.build_query_scalar().fetch_one(&mut *conn).await?;
                    if count > 0 {
                        restores = true;
                        break;
                    }
                }
                restores
            }
        };
        self.answers.insert((loc, product), answer);
        Ok(answer)
    }

    async fn read(
        store: &Storage,
        loc: LocationId,
        handled: &HashSet<(String, LocationId)>,
    ) -> StorageResult<StreamCancels> {
        let entries: redis::streams::StreamRangeReply = {
            let mut redis = store.conn().await?;
            redis
                .xrange_count(store.keys.stream(loc), "-", "+", Self::LOOK)
                .await?
        };
        if entries.ids.len() >= Self::LOOK {
            return Ok(None);
        }
        let mut cancels = Vec::new();
        for entry in &entries.ids {
            if handled.contains(&(entry.id.clone(), loc)) {
                continue;
            }
            let (Some(t), Some(o), Some(l)) = (
                entry.get::<String>("t"),
                entry.get::<String>("o"),
                entry.get::<String>("l"),
            ) else {
                continue;
            };
            if t != "C" {
                continue;
            }
            if let Ok(lines) = decode_lines(&l) {
                cancels.push((o, lines.iter().map(|(p, _)| p.get()).collect()));
            }
        }
        Ok(Some(cancels))
    }
}
