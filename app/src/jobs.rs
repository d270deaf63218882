//! Background work of an instance besides the consumer.

use sf_persistence::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Reloads the catalogue and locations every few seconds, so that changes made through another
/// instance reach this one's pricing and routing.
pub async fn refresh_caches(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        if let Err(e) = store.refresh_catalog().await {
            tracing::warn!(error = %e, "catalogue refresh failed");
        }
        if let Err(e) = store.refresh_locations().await {
            tracing::warn!(error = %e, "locations refresh failed");
        }
    }
}
