//! The expiry job's pass: every hold written `ACTIVE` whose `expiresAt` has come is ended as
//! `EXPIRED`, each in its own MySQL-first transaction under its row lock ([`Storage::end_hold`]),
//! so a second pass, another instance or a conversion racing it finds it ended and leaves it.

use super::decide::Ending;
use super::Holds;
use crate::error::StorageResult;
use crate::infra::mysql::with_retry;

/// Holds one pass looks at; the next pass takes the rest.
const PER_PASS: u32 = 1000;

impl Holds<'_> {
    /// Expires the holds past their time; answers how many this pass ended.
    #[tracing::instrument(skip(self))]
    pub async fn expire_due(&self) -> StorageResult<u64> {
        let ids: Vec<String> = self
            .in_time(self.db_deadline(), async {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM holds WHERE status = 'ACTIVE' AND expires_at <= NOW(3) \
                     ORDER BY expires_at LIMIT ?",
                )
                .bind(PER_PASS)
                .fetch_all(&self.db)
                .await?)
            })
            .await?;
        let mut expired = 0;
        for id in &ids {
            let deadline = self.db_deadline();
            let (_, ended) = with_retry("hold expiry", || {
                self.end_hold(id, Ending::Expire, deadline)
            })
            .await?;
            if ended {
                tracing::info!(hold_id = %id, "hold {id} expired: its units are available again");
                expired += 1;
            }
        }
        Ok(expired)
    }
}
