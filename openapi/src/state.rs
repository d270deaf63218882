//! What every operation can reach.

use crate::metrics::Metrics;
use sf_persistence::consumer::ConsumerStats;
use sf_persistence::Store;
use std::sync::Arc;

pub struct ApiState {
    pub store: Arc<Store>,
    /// Bearer token of the operators' routes.
    pub admin_token: String,
    pub metrics: Metrics,
    pub consumer: Arc<ConsumerStats>,
    /// Runs the scheduled jobs on demand (the operators' "run now").
    pub jobs: Arc<sf_persistence::jobs::JobRunner>,
}
