//! What every operation can reach.

use crate::metrics::Metrics;
use sf_persistence::consumer::ConsumerStats;
use sf_persistence::Storage;
use std::sync::Arc;

pub struct ApiState {
    pub storage: Arc<Storage>,
    /// `ADMIN_TOKEN`: the token of the operator `bootstrap`.
    pub admin_token: sf_persistence::access::Secret<String>,
    /// The id of the operator `bootstrap` (made sure of at start).
    pub bootstrap_operator: u64,
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
    /// What webhook endpoints must satisfy (`WEBHOOK_ALLOWED_HOSTS`, the secrets' overlap).
    pub webhooks: sf_persistence::events::webhooks::EndpointRules,
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
    /// Records what an operator did in the audit trail, with the request's id. The action is
    /// done by then: the entry is written in a task of its own, so a client that goes away does
    /// not cut it off, and a failure to write it is logged as an error while the answer stands.
    pub async fn audit(
        &self,
        caller: &crate::auth::Caller,
        action: &'static str,
        subject: &str,
        detail: Option<String>,
    ) {
        let storage = self.storage.clone();
        let actor = caller.actor();
        let subject = subject.to_owned();
        let request_id = caller.request_id.as_ref().map(|r| r.as_str().to_owned());
        // In the request's span, so that a failure's log line names the request.
        let span = tracing::Span::current();
        let written = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let record = sf_persistence::access::AuditRecord {
                    actor,
                    action,
                    subject: &subject,
                    detail: detail.as_deref(),
                    request_id: request_id.as_deref(),
                };
                if let Err(e) = storage.access().record(record).await {
                    tracing::error!(error = %e, action, subject, "could not record an audit entry");
                }
            },
            span,
        ));
        if let Err(e) = written.await {
            tracing::error!(error = %e, action, "the audit entry's task failed");
        }
    }

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
