//! Extending a hold: a new `expiresAt` from now, only while it is active, never past 2 h after
//! its creation ([`super::decide::extend`]).

use super::decide::{extend, Ttl};
use super::{rows, Hold, Holds};
use crate::error::StorageResult;
use crate::infra::mysql::with_retry;

impl Holds<'_> {
    /// Sets the hold's `expiresAt` to `ttl` from now (under its row lock, so the expiry job and
    /// a conversion see either the old time or the new one).
    #[tracing::instrument(skip(self))]
    pub async fn extend(&self, hold_id: &str, ttl: Ttl) -> StorageResult<Hold> {
        let deadline = self.db_deadline();
        with_retry("extend hold", || async {
            let statements = async {
                let mut tx = self.begin().await?;
                let row = rows::row(&mut tx, hold_id, true).await?;
                let until_ms = extend(
                    hold_id,
                    row.now()?,
                    row.order_id.as_deref(),
                    row.created_ms,
                    row.now_ms,
                    ttl,
                )?;
                sqlx::query("UPDATE holds SET expires_at = FROM_UNIXTIME(? / 1000) WHERE id = ?")
                    .bind(until_ms)
                    .bind(hold_id)
                    .execute(&mut *tx)
                    .await?;
                let hold = rows::read(&mut tx, hold_id, false).await?;
                Ok((tx, hold))
            };
            let (tx, hold) = self.in_time(deadline, statements).await?;
            self.commit_in_time(tx).await?;
            Ok(hold)
        })
        .await
    }
}
