//! Leases of MySQL-only work (the `leases` table): one instance holds a named lease until its
//! time runs out, renews it while it works, and another takes it over once it has lapsed. Only
//! MySQL is involved, so that the work goes on while Redis is down.

use super::Events;
use crate::error::StorageResult;
use std::time::Duration;

impl Events<'_> {
    /// Takes or renews the lease `name` for `holder` for `ttl`: answers whether `holder` holds
    /// it now. A lease held by another instance that has not lapsed is left alone.
    pub async fn take_lease(&self, name: &str, holder: &str, ttl: Duration) -> StorageResult<bool> {
        self.in_time(self.db_deadline(), async {
            sqlx::query(
                "INSERT IGNORE INTO leases (name, holder, until) \
                 VALUES (?, '', NOW(3) - INTERVAL 1 SECOND)",
            )
            .bind(name)
            .execute(&self.db)
            .await?;
            sqlx::query(
                "UPDATE leases SET holder = ?, until = NOW(3) + INTERVAL ? MICROSECOND \
                 WHERE name = ? AND (until < NOW(3) OR holder = ?)",
            )
            .bind(holder)
            .bind(ttl.as_micros() as u64)
            .bind(name)
            .bind(holder)
            .execute(&self.db)
            .await?;
            // Read back rather than trust the count of changed rows, which is 0 for a renewal
            // within the same millisecond.
            let held: Option<String> =
                sqlx::query_scalar("SELECT holder FROM leases WHERE name = ? AND until >= NOW(3)")
                    .bind(name)
                    .fetch_optional(&self.db)
                    .await?;
            Ok(held.as_deref() == Some(holder))
        })
        .await
    }

    /// Gives the lease up at once, if `holder` holds it (a clean stop), so that another instance
    /// takes over without waiting for it to lapse.
    pub async fn release_lease(&self, name: &str, holder: &str) -> StorageResult<()> {
        self.in_time(self.db_deadline(), async {
            sqlx::query(
                "UPDATE leases SET until = NOW(3) - INTERVAL 1 SECOND \
                 WHERE name = ? AND holder = ?",
            )
            .bind(name)
            .bind(holder)
            .execute(&self.db)
            .await?;
            Ok(())
        })
        .await
    }
}
