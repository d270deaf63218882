//! POS credentials: one or more keys per store, shown once, kept only as a SHA-256 hash, revocable
//! at once (every check reads MySQL, so a revoked key stops working on every instance).

use super::Catalog;
use crate::error::{Refusal, StorageResult};
use crate::Storage;
use rand::RngCore;
use sf_routing::{LocationId, LocationKind};
use sha2::{Digest, Sha256};

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A newly issued key; `key` is never stored.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key_id: u64,
    pub store_id: u64,
    pub key: String,
}

impl Storage {
    pub(crate) async fn insert_store_key(
        &self,
        store: LocationId,
        label: &str,
        key: &str,
    ) -> StorageResult<IssuedKey> {
        let kind: Option<String> =
            sqlx::query_scalar("SELECT CAST(kind AS CHAR) FROM locations WHERE id = ?")
                .bind(store)
                .fetch_optional(&self.db)
                .await?;
        match kind.as_deref().and_then(LocationKind::parse) {
            Some(LocationKind::Store) => {}
            Some(LocationKind::Warehouse) => {
                return Err(Refusal::NotFound(format!(
                    "there is no store {store} (location {store} is a warehouse; POS keys are for stores)"
                )).into())
            }
            None => return Err(Refusal::UnknownLocation(store).into()),
        }
        let id = sqlx::query("INSERT INTO store_keys (store_id, key_hash, label) VALUES (?, ?, ?)")
            .bind(store)
            .bind(hash_key(key))
            .bind(label)
            .execute(&self.db)
            .await?
            .last_insert_id();
        Ok(IssuedKey {
            key_id: id,
            store_id: store.get(),
            key: key.to_owned(),
        })
    }
}

impl Catalog<'_> {
    /// Issues a key for an existing store.
    pub async fn issue_store_key(
        &self,
        store: LocationId,
        label: &str,
    ) -> StorageResult<IssuedKey> {
        self.in_time(self.db_deadline(), async {
            let mut raw = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut raw);
            let key = format!("sfk_{}", hex::encode(raw));
            self.insert_store_key(store, label, &key).await
        })
        .await
    }

    /// Revokes a key of `store`. Revoking twice is harmless; a key of another store is not found.
    pub async fn revoke_store_key(&self, store: LocationId, key_id: u64) -> StorageResult<()> {
        self.in_time(self.db_deadline(), async {
            let found: Option<u64> =
                sqlx::query_scalar("SELECT id FROM store_keys WHERE id = ? AND store_id = ?")
                    .bind(key_id)
                    .bind(store)
                    .fetch_optional(&self.db)
                    .await?;
            if found.is_none() {
                return Err(Refusal::NotFound(format!("store {store} has no key {key_id}")).into());
            }
            sqlx::query(
                "UPDATE store_keys SET revoked_at = COALESCE(revoked_at, NOW(3)) WHERE id = ?",
            )
            .bind(key_id)
            .execute(&self.db)
            .await?;
            Ok(())
        })
        .await
    }

    /// The store a valid, unrevoked key belongs to, and the key's id (whom the ledger names).
    pub async fn store_of_key(&self, key: &str) -> StorageResult<Option<(LocationId, u64)>> {
        self.in_time(self.db_deadline(), async {
            Ok(sqlx::query_as(
                "SELECT store_id, id FROM store_keys WHERE key_hash = ? AND revoked_at IS NULL",
            )
            .bind(hash_key(key))
            .fetch_optional(&self.db)
            .await?)
        })
        .await
    }
}
