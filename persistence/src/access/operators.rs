//! Named operators and their roles: created by an administrator with a token shown once (kept
//! only as a SHA-256 hash, like store keys), revoked at once on every instance (every check reads
//! MySQL). `ADMIN_TOKEN` acts as the operator `bootstrap`, whose row has no token hash and which
//! cannot be revoked.

use crate::catalog::credentials::hash_key;
use crate::error::{Refusal, StorageError, StorageResult};
use rand::RngCore;
use std::fmt;

/// The name of the operator that `ADMIN_TOKEN` acts as.
pub const BOOTSTRAP: &str = "bootstrap";

/// What an operator may do. Ordered: `Admin` > `Stock` > `Viewer`; a role may do everything the
/// roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Reads, stock changes, safety stock, fulfilment steps, retries of rejected orders.
    Stock,
    /// Everything, operators and keys included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Stock, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Stock => "stock",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may do what `needed` may.
    pub fn covers(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's name: 1 to 100 characters after trimming, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorName(String);

impl OperatorName {
    pub fn parse(s: &str) -> Result<Self, Refusal> {
        let s = s.trim();
        let n = s.chars().count();
        if n == 0 || n > 100 {
            return Err(Refusal::Invalid(format!(
                "name must be 1 to 100 characters (not only white space); got {n}"
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(Refusal::Invalid(
                "name must not contain control characters".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An operator as the service knows it (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: u64,
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A newly created operator, with its token; the token is never stored.
#[derive(Debug, Clone)]
pub struct CreatedOperator {
    pub operator: Operator,
    pub token: String,
}

crate::handle!(
    /// Operators and the audit trail, as callers use them: taken with
    /// [`crate::Storage::access`].
    Access
);

type OperatorRow = (u64, String, String, i64, Option<i64>);

const COLUMNS: &str = "id, name, CAST(role AS CHAR), \
     CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED), \
     CAST(UNIX_TIMESTAMP(revoked_at) * 1000 AS SIGNED)";

fn operator_of(row: OperatorRow) -> StorageResult<Operator> {
    let (id, name, role, created_ms, revoked_ms) = row;
    let role = Role::parse(&role).ok_or_else(|| {
        StorageError::internal(format!("operator {id} has an unknown role {role:?}"))
    })?;
    Ok(Operator {
        id,
        name,
        role,
        created_ms,
        revoked_ms,
    })
}

impl Access<'_> {
    /// Makes sure the operator `bootstrap` exists (role admin, no token hash of its own) and
    /// answers its id. Run at start; several instances starting at once agree on one row.
    pub async fn ensure_bootstrap(&self) -> StorageResult<u64> {
        self.in_time(self.db_deadline(), async {
            sqlx::query(
                "INSERT IGNORE INTO operators (name, role, token_hash) VALUES (?, 'admin', NULL)",
            )
            .bind(BOOTSTRAP)
            .execute(&self.db)
            .await?;
            let id: u64 = sqlx::query_scalar("SELECT id FROM operators WHERE name = ?")
                .bind(BOOTSTRAP)
                .fetch_one(&self.db)
                .await?;
            Ok(id)
        })
        .await
    }

    /// Creates an operator with a new token. A name taken already (revoked operators keep
    /// theirs) is a conflict.
    pub async fn create_operator(
        &self,
        name: &OperatorName,
        role: Role,
    ) -> StorageResult<CreatedOperator> {
        self.in_time(self.db_deadline(), async {
            let mut raw = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut raw);
            let token = format!("sfo_{}", hex::encode(raw));
            let id = sqlx::query("INSERT INTO operators (name, role, token_hash) VALUES (?, ?, ?)")
                .bind(name.as_str())
                .bind(role.as_str())
                .bind(hash_key(&token))
                .execute(&self.db)
                .await
                .map_err(|e| {
                    let e = StorageError::from(e);
                    if e.is_duplicate_key() {
                        Refusal::Conflict(format!(
                            "an operator named {:?} exists already",
                            name.as_str()
                        ))
                        .into()
                    } else {
                        e
                    }
                })?
                .last_insert_id();
            let operator = self.operator(id).await?;
            Ok(CreatedOperator { operator, token })
        })
        .await
    }

    async fn operator(&self, id: u64) -> StorageResult<Operator> {
        let row: Option<OperatorRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM operators WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.db)
                .await?;
        operator_of(row.ok_or_else(|| Refusal::NotFound(format!("there is no operator {id}")))?)
    }

    /// Every operator, revoked ones too, in id order.
    pub async fn operators(&self) -> StorageResult<Vec<Operator>> {
        self.in_time(self.db_deadline(), async {
            let rows: Vec<OperatorRow> =
                sqlx::query_as(&format!("SELECT {COLUMNS} FROM operators ORDER BY id"))
                    .fetch_all(&self.db)
                    .await?;
            rows.into_iter().map(operator_of).collect()
        })
        .await
    }

    /// Revokes an operator: its token stops working at once, on every instance. Revoking twice
    /// is harmless; `bootstrap` cannot be revoked (its token is `ADMIN_TOKEN`: change that
    /// instead).
    pub async fn revoke_operator(&self, id: u64) -> StorageResult<Operator> {
        self.in_time(self.db_deadline(), async {
            let operator = self.operator(id).await?;
            if operator.name == BOOTSTRAP {
                return Err(Refusal::Conflict(
                    "the operator bootstrap cannot be revoked: its token is ADMIN_TOKEN; change ADMIN_TOKEN instead"
                        .into(),
                )
                .into());
            }
            sqlx::query(
                "UPDATE operators SET revoked_at = COALESCE(revoked_at, NOW(3)) WHERE id = ?",
            )
            .bind(id)
            .execute(&self.db)
            .await?;
            self.operator(id).await
        })
        .await
    }

    /// The unrevoked operator a token belongs to (read from MySQL on every call, so a revoke
    /// holds at once on every instance).
    pub async fn operator_of_token(&self, token: &str) -> StorageResult<Option<Operator>> {
        self.in_time(self.db_deadline(), async {
            let row: Option<OperatorRow> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM operators WHERE token_hash = ? AND revoked_at IS NULL"
            ))
            .bind(hash_key(token))
            .fetch_optional(&self.db)
            .await?;
            row.map(operator_of).transpose()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_admin_over_stock_over_viewer() {
        assert!(Role::Admin.covers(Role::Stock) && Role::Admin.covers(Role::Viewer));
        assert!(Role::Stock.covers(Role::Viewer) && Role::Stock.covers(Role::Stock));
        assert!(!Role::Stock.covers(Role::Admin));
        assert!(!Role::Viewer.covers(Role::Stock));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(OperatorName::parse("  ana ").unwrap().as_str(), "ana");
        assert!(OperatorName::parse("   ").is_err());
        assert!(OperatorName::parse(&"x".repeat(101)).is_err());
        assert!(OperatorName::parse(&"가".repeat(100)).is_ok());
        assert!(OperatorName::parse("a\nb").is_err());
    }
}
