//! Sales channels and their keys. A key is shown once and kept only as a SHA-256 hash; revoking
//! it stops it at once on every instance.
//!
//! Checking a key must not need MySQL on the Redis path (its orders are answered while MySQL is
//! down), so a checked key is also kept in Redis: `<p>{cred}:ck:<hash>` holds `<keyId>:<channelId>`.
//! A check reads Redis first and MySQL only when Redis does not know the key, then keeps it in
//! Redis — unless it was revoked meanwhile: revoking writes MySQL, then in one script marks the
//! hash revoked in Redis (`<p>{cred}:ckr:<hash>`) and drops the kept key, and the keeping script
//! refuses a hash marked revoked (`credential.lua`). A revoke whose Redis step fails answers an error, and is
//! repeated: it is harmless to repeat.

use crate::catalog::credentials::hash_key;
use crate::error::{Refusal, StorageError, StorageResult};
use crate::scripts::credential::{parse_kept, Credential, CredentialOp};
use crate::Storage;
use rand::RngCore;

crate::handle!(
    /// Sales channels and their keys: taken with [`crate::Storage::channels`].
    Channels
);

/// A sales channel.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Channel {
    pub id: u64,
    pub name: String,
    /// In ms since the Unix epoch.
    pub created_ms: i64,
    /// Its keys not revoked.
    pub active_keys: i64,
}

/// A newly issued channel key; `key` is never stored.
#[derive(Debug, Clone)]
pub struct IssuedChannelKey {
    pub key_id: u64,
    pub channel_id: u64,
    pub key: String,
}

/// Who a valid key acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelKey {
    pub key_id: u64,
    pub channel_id: u64,
}

/// The longest channel name.
pub const MAX_NAME: usize = 100;

impl Channels<'_> {
    /// Creates a channel; a name already taken is a conflict.
    pub async fn create(&self, name: &str) -> StorageResult<Channel> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(Refusal::Invalid(format!(
                "name must be 1 to {MAX_NAME} characters, not only spaces"
            ))
            .into());
        }
        self.in_time(self.db_deadline(), async {
            let inserted = sqlx::query("INSERT INTO channels (name) VALUES (?)")
                .bind(name)
                .execute(&self.db)
                .await;
            let id = match inserted {
                Ok(r) => r.last_insert_id(),
                Err(e) => {
                    let e = StorageError::from(e);
                    return Err(if e.is_duplicate_key() {
                        Refusal::Conflict(format!("there is already a channel named '{name}'"))
                            .into()
                    } else {
                        e
                    });
                }
            };
            self.read(id).await
        })
        .await
    }

    async fn read(&self, id: u64) -> StorageResult<Channel> {
        sqlx::query_as(&format!("{SELECT} WHERE c.id = ? GROUP BY c.id"))
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| Refusal::NotFound(format!("there is no channel {id}")).into())
    }

    /// Every channel, by id.
    pub async fn list(&self) -> StorageResult<Vec<Channel>> {
        self.in_time(self.db_deadline(), async {
            Ok(
                sqlx::query_as(&format!("{SELECT} GROUP BY c.id ORDER BY c.id"))
                    .fetch_all(&self.db)
                    .await?,
            )
        })
        .await
    }

    /// Issues a key for an existing channel.
    pub async fn issue_key(&self, channel_id: u64, label: &str) -> StorageResult<IssuedChannelKey> {
        let mut raw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut raw);
        self.insert_key(channel_id, label, &format!("sfc_{}", hex::encode(raw)))
            .await
    }

    /// Stores a key chosen by the caller (the demo's printed key).
    pub async fn insert_key(
        &self,
        channel_id: u64,
        label: &str,
        key: &str,
    ) -> StorageResult<IssuedChannelKey> {
        self.in_time(self.db_deadline(), async {
            self.read(channel_id).await?;
            let id = sqlx::query(
                "INSERT INTO channel_keys (channel_id, key_hash, label) VALUES (?, ?, ?)",
            )
            .bind(channel_id)
            .bind(hash_key(key))
            .bind(label)
            .execute(&self.db)
            .await?
            .last_insert_id();
            Ok(IssuedChannelKey {
                key_id: id,
                channel_id,
                key: key.to_owned(),
            })
        })
        .await
    }

    /// Revokes a key of `channel_id`: at once in MySQL, then in Redis. Revoking twice is
    /// harmless; a key of another channel is not found.
    pub async fn revoke_key(&self, channel_id: u64, key_id: u64) -> StorageResult<()> {
        let hash: String = self
            .in_time(self.db_deadline(), async {
                let hash: Option<String> = sqlx::query_scalar(
                    "SELECT key_hash FROM channel_keys WHERE id = ? AND channel_id = ?",
                )
                .bind(key_id)
                .bind(channel_id)
                .fetch_optional(&self.db)
                .await?;
                let Some(hash) = hash else {
                    return Err(Refusal::NotFound(format!(
                        "channel {channel_id} has no key {key_id}"
                    ))
                    .into());
                };
                sqlx::query(
                    "UPDATE channel_keys SET revoked_at = COALESCE(revoked_at, NOW(3)) WHERE id = ?",
                )
                .bind(key_id)
                .execute(&self.db)
                .await?;
                Ok(hash)
            })
            .await?;
        let mut conn = self.settling_conn().await?;
        Credential {
            kept: &self.keys.channel_key(&hash),
            revoked: &self.keys.revoked_channel_key(&hash),
            op: CredentialOp::Revoke,
        }
        .run(&mut conn)
        .await?;
        Ok(())
    }

    /// The channel a valid, unrevoked key acts for, looked up where `lookup` says. Answers an
    /// error only when no store it asks could answer.
    pub async fn of_key(&self, key: &str, lookup: KeyLookup) -> StorageResult<Option<ChannelKey>> {
        let hash = hash_key(key);
        if lookup == KeyLookup::Mysql {
            return self.of_hash_in_mysql(&hash).await;
        }
        let kept = self.keys.channel_key(&hash);
        let from_redis = async {
            let mut conn = self.conn().await?;
            let v: Option<String> = redis::cmd("GET").arg(&kept).query_async(&mut conn).await?;
            StorageResult::Ok(v)
        }
        .await;
        if let Ok(Some(v)) = &from_redis {
            if let Some((key_id, channel_id)) = parse_kept(v) {
                return Ok(Some(ChannelKey { key_id, channel_id }));
            }
        }
        let Some(found) = self.of_hash_in_mysql(&hash).await? else {
            return Ok(None);
        };
        if from_redis.is_ok() {
            // Best effort: the next check reads MySQL again when this does not land.
            if let Ok(mut conn) = self.conn().await {
                let _ = Credential {
                    kept: &kept,
                    revoked: &self.keys.revoked_channel_key(&hash),
                    op: CredentialOp::Keep {
                        key_id: found.key_id,
                        channel_id: found.channel_id,
                    },
                }
                .run(&mut conn)
                .await;
            }
        }
        Ok(Some(found))
    }

    async fn of_hash_in_mysql(&self, hash: &str) -> StorageResult<Option<ChannelKey>> {
        let found: Option<(u64, u64)> = self
            .in_time(self.db_deadline(), async {
                Ok(sqlx::query_as(
                    "SELECT id, channel_id FROM channel_keys \
                     WHERE key_hash = ? AND revoked_at IS NULL",
                )
                .bind(hash)
                .fetch_optional(&self.db)
                .await?)
            })
            .await?;
        Ok(found.map(|(key_id, channel_id)| ChannelKey { key_id, channel_id }))
    }
}

/// Where a key check looks a channel key up: in the store the request depends on anyway, so a
/// slow or lost store the request does not need never delays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    /// Redis, which keeps checked keys; MySQL when Redis does not hold the key or cannot answer.
    /// For requests Redis answers (the Redis path, order and hold reads).
    RedisFirst,
    /// MySQL alone, where every key and its revocation is written first. For requests that
    /// need MySQL anyway (DB-lock orders and cancels).
    Mysql,
}

const SELECT: &str = "SELECT c.id, c.name, \
     CAST(UNIX_TIMESTAMP(c.created_at) * 1000 AS SIGNED) AS created_ms, \
     CAST(COUNT(k.id) AS SIGNED) AS active_keys \
     FROM channels c LEFT JOIN channel_keys k ON k.channel_id = c.id AND k.revoked_at IS NULL";

impl Storage {
    /// Sales channels and their keys.
    pub fn channels(&self) -> Channels<'_> {
        Channels(self)
    }
}
