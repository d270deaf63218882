//! The bodies of the operators' routes that look after what the service repairs: job runs, the
//! orders by status, Redis data losses, stale keys and dead letters, each with its Swagger
//! example where it has one.

use crate::types::OrderBody;
use poem_openapi::types::Example;
use poem_openapi::Object;

/// One run of a scheduled job.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobRunBody {
    pub run_id: u64,
    /// `reconcile`, `reclaim` or `housekeeping`.
    pub job: String,
    /// The instance that ran it.
    pub instance: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// False when the run failed or panicked (`details.error` says why).
    pub ok: bool,
    pub keys_checked: u64,
    /// Redis keys whose value differed from MySQL and were set right.
    pub keys_repaired: u64,
    /// Stock rows whose on-hand is not initial stock plus the ledger (reported, never rewritten).
    pub ledger_mismatches: u64,
    /// For reconcile: `repairs` (location, product, before, after), `mismatches`, `keysLoaded`.
    pub details: serde_json::Value,
}

impl From<sf_persistence::infra::jobs::JobRun> for JobRunBody {
    fn from(r: sf_persistence::infra::jobs::JobRun) -> Self {
        Self {
            run_id: r.run_id,
            job: r.job,
            instance: r.instance,
            started_at: r.started_at,
            duration_ms: r.duration_ms,
            ok: r.ok,
            keys_checked: r.keys_checked,
            keys_repaired: r.keys_repaired,
            ledger_mismatches: r.ledger_mismatches,
            details: r.details,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct JobRunList {
    /// Newest first.
    pub runs: Vec<JobRunBody>,
}

#[derive(Debug, Clone, Object)]
pub struct OrderList {
    /// Newest first.
    pub orders: Vec<OrderBody>,
}

/// A time Redis lost the data the service had loaded into it.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct DataLossBody {
    /// When the lost data set had been loaded into Redis (RFC 3339). Redis-path orders accepted
    /// between this and `detectedAt` that had not reached MySQL were lost with it.
    pub since: String,
    /// When the service noticed (RFC 3339).
    pub detected_at: String,
    /// The locations whose Redis data was lost (each location's data lives on one shard of a
    /// cluster; a single server loses them all).
    pub locations: Vec<u64>,
}

#[derive(Debug, Clone, Object)]
pub struct DataLossList {
    /// Newest first.
    pub losses: Vec<DataLossBody>,
}

/// A stock key marked stale: written on MySQL alone (Redis unreachable, or too few replicas held
/// the change), set from MySQL before Redis decides an order on it again.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct StaleKeyBody {
    pub location_id: u64,
    pub product_id: u64,
    /// The latest write on MySQL alone (RFC 3339).
    pub marked_at: String,
}

impl Example for StaleKeyBody {
    fn example() -> Self {
        Self {
            location_id: 3,
            product_id: 1,
            marked_at: "2026-12-07T09:00:00.000Z".into(),
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct StaleKeyList {
    /// The oldest mark first.
    pub keys: Vec<StaleKeyBody>,
}

/// An event the consumer could not persist, whatever it tried, as its location's dead-letter
/// stream holds it. A reservation's order was answered `REJECTED` and is listed in MySQL so; its
/// units were set free. Fields the event lacked are absent.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct DeadLetterBody {
    pub location_id: u64,
    /// `<locationId>:<its id in the location's dead-letter stream>`: what the replay route takes.
    pub id: String,
    /// Its id in the location's event stream.
    pub event_id: Option<String>,
    /// `R` a reservation, `C` a cancel, or what the event said.
    pub kind: Option<String>,
    pub order_id: Option<String>,
    /// Its lines as the stream held them: `productId:quantity`, comma separated.
    pub lines: Option<String>,
    /// Why it could not be persisted.
    pub error: Option<String>,
}

impl Example for DeadLetterBody {
    fn example() -> Self {
        Self {
            location_id: 1,
            id: "1:1765098000123-0".into(),
            event_id: Some("1765098000001-0".into()),
            kind: Some("R".into()),
            order_id: Some("1-01936f0c2b7e7c3a9d1e5f2a3b4c5d6e".into()),
            lines: Some("7:2".into()),
            error: Some("unreadable order record: expected value at line 1 column 2".into()),
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct DeadLetterList {
    /// The latest moved first, across locations.
    pub dead_letters: Vec<DeadLetterBody>,
}
