//! Operators' routes that look after what the service repairs: reconciliation runs, rejected
//! orders and their retry, Redis data losses, stale stock keys and dead letters.

use super::*;
use crate::auth::OperatorAuth;
use crate::problem::ApiResult;
use crate::state::ApiState;
use crate::types::OrderBody;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;
use std::sync::Arc;

pub struct RepairApi {
    pub state: Arc<ApiState>,
}

#[OpenApi(prefix_path = "/api/admin", tag = "AdminTag::Admin")]
impl RepairApi {
    /// Reconciliation runs
    ///
    /// The most recent runs of the scheduled jobs, newest first: when each started, how long it
    /// took, the keys it checked and repaired (with before and after values), and ledger
    /// mismatches. `job` filters (`reconcile`, `reclaim`, `housekeeping`); `limit` is 1 to 200
    /// (default 20).
    #[oai(path = "/reconciliation", method = "get", operation_id = "listJobRuns")]
    async fn job_runs(
        &self,
        _auth: OperatorAuth,
        #[oai(validator(pattern = r"^(reconcile|reclaim|housekeeping)$"))] job: Query<
            Option<String>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<JobRunList>> {
        let limit = limit.0.unwrap_or(20);
        let runs = recent_runs(&self.state.storage, job.0.as_deref(), limit as u32).await?;
        Ok(Json(JobRunList {
            runs: runs.into_iter().map(Into::into).collect(),
        }))
    }

    /// List orders by status
    ///
    /// `status=REJECTED` (the default) lists the orders accepted on the Redis path that MySQL
    /// could not take as sold, each with its `rejectReason`; retry one after a restock
    /// (`POST /api/admin/orders/{orderId}/retry`) or close it with a cancel. Any order status that
    /// is kept in MySQL may be listed (`CONFIRMED`, `CANCELLED`, `REJECTED`; `ACCEPTED` orders are
    /// not in MySQL yet); `limit` is 1 to 200 (default 50). Newest first.
    #[oai(path = "/orders", method = "get", operation_id = "listOrdersByStatus")]
    async fn list_orders(
        &self,
        _auth: OperatorAuth,
        #[oai(validator(pattern = r"^(CONFIRMED|CANCELLED|REJECTED)$"))] status: Query<
            Option<String>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<OrderList>> {
        let limit = limit.0.unwrap_or(50);
        let status = status.0.unwrap_or_else(|| "REJECTED".into());
        // The pattern admits only these; the parse turns the text into the status.
        let parsed = sf_persistence::model::OrderStatus::parse(&status)
            .filter(|s| *s != sf_persistence::model::OrderStatus::Accepted)
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "status must be one of CONFIRMED, CANCELLED, REJECTED (ACCEPTED orders are not in MySQL yet); got {status:?}"
                ))
            })?;
        let orders = self
            .state
            .storage
            .orders()
            .by_status(parsed, limit as u32)
            .await?;
        Ok(Json(OrderList {
            orders: orders.into_iter().map(Into::into).collect(),
        }))
    }

    /// List Redis data losses
    ///
    /// Each time the service found that Redis had lost the data it had loaded (a restart without
    /// its append-only file, a flush): when that data set had been loaded and when the loss was
    /// noticed. Redis-path orders accepted in between that had not reached MySQL were lost with
    /// it (their status look-up answers 410); orders accepted after the reload for units MySQL no
    /// longer had are listed as `REJECTED`. `limit` is 1 to 200 (default 20). Newest first.
    #[oai(
        path = "/redis-data-losses",
        method = "get",
        operation_id = "listRedisDataLosses"
    )]
    async fn data_losses(
        &self,
        _auth: OperatorAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<DataLossList>> {
        let limit = limit.0.unwrap_or(20);
        let losses = self
            .state
            .storage
            .orders()
            .data_losses(limit as u32)
            .await?;
        Ok(Json(DataLossList {
            losses: losses
                .into_iter()
                .map(|l| DataLossBody {
                    since: crate::types::rfc3339(l.since_ms),
                    detected_at: crate::types::rfc3339(l.detected_ms),
                    locations: l.locations,
                })
                .collect(),
        }))
    }

    /// List stale stock keys
    ///
    /// Stock keys written on MySQL alone (Redis was unreachable, or too few replicas held the
    /// change): each is set from MySQL before Redis decides an order on it again, by the
    /// recovery after an outage or the background re-sync, and leaves this list then. A key that
    /// stays here long says that Redis has not been trusted again since. `limit` is 1 to 1000
    /// (default 100); the oldest mark first.
    #[oai(path = "/stale-keys", method = "get", operation_id = "listStaleKeys")]
    async fn stale_keys(
        &self,
        _auth: OperatorAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<StaleKeyList>> {
        let keys = self
            .state
            .storage
            .recovery()
            .stale_keys(limit.0.unwrap_or(100) as u32)
            .await?;
        Ok(Json(StaleKeyList {
            keys: keys
                .into_iter()
                .map(|k| StaleKeyBody {
                    location_id: k.location_id.get(),
                    product_id: k.product_id.get(),
                    marked_at: crate::types::rfc3339(k.marked_at_ms),
                })
                .collect(),
        }))
    }

    /// List dead letters
    ///
    /// Events the consumer could not persist, whatever it tried (unreadable, inconsistent,
    /// refused by the schema), from every location's dead-letter stream, with their errors: the
    /// latest first, at most `limit` (1 to 200, default 50). Each blocked nothing else; a
    /// reservation's order ended `REJECTED` (`rejectReason` says why; `POST
    /// /api/admin/orders/{orderId}/retry` takes it as sold after a fix) and its units were set
    /// free.
    #[oai(
        path = "/dead-letters",
        method = "get",
        operation_id = "listDeadLetters"
    )]
    async fn dead_letters(
        &self,
        _auth: OperatorAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<DeadLetterList>> {
        let dead = self
            .state
            .storage
            .recovery()
            .dead_letters(limit.0.unwrap_or(50) as usize)
            .await?;
        Ok(Json(DeadLetterList {
            dead_letters: dead
                .into_iter()
                .map(|d| DeadLetterBody {
                    location_id: d.location_id.get(),
                    id: d.id,
                    event_id: d.event_id,
                    kind: d.kind,
                    order_id: d.order_id,
                    lines: d.lines,
                    error: d.error,
                })
                .collect(),
        }))
    }

    /// Replay a dead letter
    ///
    /// After a fix: a dead-lettered reservation's order (listed `REJECTED`) is taken as sold if
    /// its location has the units now, exactly as `POST /api/admin/orders/{orderId}/retry` does;
    /// a dead-lettered cancel is carried out. Answers 200 with the order as it is then, and the
    /// entry leaves the dead-letter list; an order settled before (sold, cancelled) answers as it
    /// is, and its entry leaves too. 404 when there is no such dead letter; 409 when it names no
    /// order that was persisted, is of a kind that changes nothing, or its order's units are not
    /// there (`/problems/out-of-stock`) — the entry then stays.
    #[oai(
        path = "/dead-letters/:deadLetterId/replay",
        method = "post",
        operation_id = "replayDeadLetter"
    )]
    async fn replay_dead_letter(
        &self,
        auth: OperatorAuth,
        /// A dead letter's `id` from the list: `<locationId>:<streamId>`.
        #[oai(name = "deadLetterId", validator(max_length = 64))]
        dead_letter_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let order = self
            .state
            .storage
            .recovery()
            .replay_dead_letter(&dead_letter_id.0, auth.0.actor())
            .await?;
        self.state
            .audit(
                &auth.0,
                "dead-letter.replayed",
                &format!("dead-letter:{}", dead_letter_id.0),
                Some(format!(
                    "order {} is {}",
                    order.order_id,
                    order.status.as_str()
                )),
            )
            .await;
        Ok(Json(order.into()))
    }

    /// Retry a rejected order
    ///
    /// For an order MySQL could not take as sold (`REJECTED`), after a restock: if its location
    /// has the units now, the order becomes `CONFIRMED` with its stock and ledger rows, exactly as
    /// the consumer would have written it, and 200 answers it; otherwise 409 names the missing
    /// product (`/problems/out-of-stock`) and nothing changes. Answers 404 when there is no such
    /// order; 409 (`/problems/conflict`) when the order is not `REJECTED`.
    #[oai(
        path = "/orders/:orderId/retry",
        method = "post",
        operation_id = "retryRejectedOrder"
    )]
    async fn retry_order(
        &self,
        auth: OperatorAuth,
        #[oai(name = "orderId")] order_id: Path<String>,
    ) -> ApiResult<Json<OrderBody>> {
        let id = order_id.0.clone();
        let by = auth.0.actor();
        let order = self
            .state
            .write(|s| async move { s.db_lock().retry_rejected(&id, by).await })
            .await?;
        self.state
            .audit(
                &auth.0,
                "order.retried",
                &format!("order:{}", order_id.0),
                Some(format!("now {}", order.status.as_str())),
            )
            .await;
        Ok(Json(order.into()))
    }

    /// Reconcile now
    ///
    /// Runs reconciliation at once and answers what it checked and repaired. Redis keys are
    /// repaired at a consistent point (orders in flight are counted, never erased); MySQL is
    /// never rewritten. Answers 200 when the run finished, with what it checked and repaired;
    /// 409 (`/problems/job-running`) when a run is already going (here or on another instance).
    #[oai(
        path = "/reconciliation/runs",
        method = "post",
        operation_id = "runReconciliation"
    )]
    async fn run_now(&self, auth: OperatorAuth) -> ApiResult<Json<JobRunBody>> {
        match self.state.jobs.run(JobKind::Reconcile).await? {
            RunOutcome::Ran(r) => {
                self.state
                    .audit(&auth.0, "job.run", "job:reconcile", None)
                    .await;
                Ok(Json(r.into()))
            }
            RunOutcome::Skipped(why) => Err(Problem::new(
                409,
                "job-running",
                "A run is already going",
                why,
            )),
        }
    }
}
