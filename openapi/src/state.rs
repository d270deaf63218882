//! What every operation can reach.

use crate::metrics::Metrics;
use sf_persistence::consumer::ConsumerStats;
use sf_persistence::Storage;
use std::sync::Arc;

pub struct ApiState {
    pub storage: Arc<Storage>,
    /// Bearer token of the operators' routes.
    pub admin_token: String,
    pub metrics: Metrics,
    pub consumer: Arc<ConsumerStats>,
    /// Runs the scheduled jobs on demand (the operators' "run now").
    pub jobs: Arc<sf_persistence::infra::jobs::JobRunner>,
    /// The body limit and the bounds on requests in flight.
    pub shedder: Arc<crate::edge::Shedder>,
    /// The product reads' kept answers.
    pub pages: PageAnswers,
    /// Write one access log line per request (`ACCESS_LOG`).
    pub access_log: bool,
    /// The shop's routes need a channel key (`SHOP_AUTH=required`, the default).
    pub shop_auth: bool,
}

/// The kept answers of the two product reads, one set per stock source's read.
pub struct PageAnswers {
    pub mysql: crate::catalog::ProductPages,
    pub redis: crate::catalog::ProductPages,
}

impl PageAnswers {
    /// Keeps the answers of at most `kept` products per read (0: none).
    pub fn new(kept: usize) -> Self {
        Self {
            mysql: crate::catalog::ProductPages::new(kept),
            redis: crate::catalog::ProductPages::new(kept),
        }
    }
}

impl ApiState {
    /// Places an order on the DB-lock path (an online order or a POS sale), as a write of its
    /// own ([`ApiState::write`]).
    pub async fn place_db_lock(
        &self,
        order: sf_persistence::db_lock::DbLockOrder,
    ) -> sf_persistence::StorageResult<sf_persistence::db_lock::Placed> {
        self.write(|s| async move { s.db_lock().place(&order).await })
            .await
    }

    /// Runs a write in a task of its own. When a client goes away, its request's future is
    /// dropped wherever it stands; a write cut between its Redis step and its MySQL commit would
    /// leave the two apart. In its own task, the write always reaches its end (each step bounded
    /// by its deadline), whether or not anyone waits for the answer.
    pub async fn write<T, F, Fut>(&self, write: F) -> sf_persistence::StorageResult<T>
    where
        F: FnOnce(Arc<Storage>) -> Fut,
        Fut: std::future::Future<Output = sf_persistence::StorageResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        // In the request's span, so that what the write logs names the request.
        let write = tracing::Instrument::in_current_span(write(self.storage.clone()));
        match tokio::spawn(write).await {
            Ok(r) => r,
            Err(e) => Err(sf_persistence::StorageError::internal(format!(
                "write task failed: {e}"
            ))),
        }
    }
}
