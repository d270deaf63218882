//! The operators' audit trail: what an operator did other than stock changes (those are in the
//! ledger, `stock_movements`, with their actor). One function writes an entry; one reads a page.

use super::operators::Access;
use super::Actor;
use crate::error::StorageResult;

/// What an operator did, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: u64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: Option<String>,
    pub request_id: Option<String>,
    pub at_ms: i64,
}

/// One action to record: who, what (`operator.created`, `store-key.revoked`, ...), on what
/// (`operator:4`, `store:3`, `product:17`, ...), with a free-text detail and the request's id.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    pub actor: Actor,
    pub action: &'a str,
    pub subject: &'a str,
    pub detail: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

impl Access<'_> {
    /// Records an operator's action. Called after the action succeeded.
    pub async fn record(&self, entry: AuditRecord<'_>) -> StorageResult<u64> {
        self.in_time(self.db_deadline(), async {
            Ok(sqlx::query(
                "INSERT INTO audit_log (actor, action, subject, detail, request_id) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(entry.actor.to_string())
            .bind(entry.action)
            .bind(entry.subject)
            .bind(entry.detail)
            .bind(entry.request_id)
            .execute(&self.db)
            .await?
            .last_insert_id())
        })
        .await
    }

    /// A page of the audit trail, newest first: at most `limit` entries older than `after` (the
    /// last id of the previous page).
    pub async fn audit(&self, after: Option<u64>, limit: u32) -> StorageResult<Vec<AuditEntry>> {
        self.in_time(self.db_deadline(), async {
            type Row = (
                u64,
                String,
                String,
                String,
                Option<String>,
                Option<String>,
                i64,
            );
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT id, actor, action, subject, detail, request_id, \
                        CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) \
                 FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
            )
            .bind(after.unwrap_or(u64::MAX))
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(id, actor, action, subject, detail, request_id, at_ms)| AuditEntry {
                        id,
                        actor,
                        action,
                        subject,
                        detail,
                        request_id,
                        at_ms,
                    },
                )
                .collect())
        })
        .await
    }
}
