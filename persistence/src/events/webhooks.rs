//! Webhook endpoints: where events are pushed, which types each receives, and the secret its
//! deliveries are signed with (Standard Webhooks, `whsec_<base64>`).
//!
//! A URL and a list of types are checked once, into [`WebhookUrl`] and [`EventTypes`]; past
//! that no code checks them again. A secret is shown once, when it is made; the reads never
//! show it. A rotation keeps the previous secret signing for an overlap, so that receivers can
//! switch without losing a delivery.

use super::{EventType, Events};
use crate::error::{Refusal, StorageError, StorageResult};
use base64::Engine;
use rand::RngCore;
use std::time::Duration;

/// The longest URL an endpoint may have (the column's width).
pub const MAX_URL: usize = 2000;
/// The longest description.
pub const MAX_DESCRIPTION: usize = 500;

/// What every endpoint must satisfy, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct EndpointRules {
    /// The hosts endpoints may point at (`WEBHOOK_ALLOWED_HOSTS`), lower case; empty: any host.
    pub allowed_hosts: Vec<String>,
    /// How long a rotated-out secret keeps signing (`WEBHOOK_SECRET_OVERLAP_SECS`).
    pub secret_overlap: Duration,
}

/// An endpoint's URL: absolute, `http` or `https`, with a host the rules allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(raw: &str, rules: &EndpointRules) -> Result<Self, Refusal> {
        let raw = raw.trim();
        if raw.len() > MAX_URL {
            return Err(Refusal::Invalid(format!(
                "url must be at most {MAX_URL} characters"
            )));
        }
        let url = url::Url::parse(raw)
            .map_err(|e| Refusal::Invalid(format!("url is not an absolute URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Invalid(format!(
                "url must be http or https, not {}",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Refusal::Invalid("url has no host".into()))?
            .to_ascii_lowercase();
        if !rules.allowed_hosts.is_empty() && !rules.allowed_hosts.contains(&host) {
            return Err(Refusal::Invalid(format!(
                "url's host {host} is not among the allowed hosts (WEBHOOK_ALLOWED_HOSTS: {})",
                rules.allowed_hosts.join(", ")
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Invalid(
                "url must not carry credentials; deliveries are signed instead".into(),
            ));
        }
        Ok(Self(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event types an endpoint receives: at least one, each known, each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypes(Vec<EventType>);

impl EventTypes {
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, Refusal> {
        if names.is_empty() {
            return Err(Refusal::Invalid(
                "events must name at least one event type".into(),
            ));
        }
        let mut types = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_ref().trim();
            let t = EventType::parse(name).ok_or_else(|| {
                Refusal::Invalid(format!(
                    "events: '{name}' is no event type; the types are {}",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ))
            })?;
            if !types.contains(&t) {
                types.push(t);
            }
        }
        Ok(Self(types))
    }

    /// As stored: comma-separated names.
    fn stored(&self) -> String {
        self.0
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A new endpoint's description, trimmed.
fn description(raw: &str) -> Result<String, Refusal> {
    let d = raw.trim();
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Refusal::Invalid(format!(
            "description must be at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(d.to_owned())
}

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// An endpoint as operators see it (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Endpoint {
    pub id: u64,
    pub url: String,
    pub description: String,
    /// Comma-separated, as stored; see [`Endpoint::events`].
    event_types: String,
    #[sqlx(try_from = "i8")]
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_ms: Option<i64>,
    /// Since when every attempt has failed; `None` when the last one succeeded.
    pub failing_since_ms: Option<i64>,
    /// Until when the previous secret still signs, after a rotation.
    pub previous_secret_until_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Endpoint {
    /// The types it receives.
    pub fn events(&self) -> Vec<String> {
        self.event_types.split(',').map(str::to_owned).collect()
    }
}

const SELECT: &str = "SELECT id, url, description, event_types, enabled, disabled_reason, \
     CAST(UNIX_TIMESTAMP(disabled_at) * 1000 AS SIGNED) AS disabled_ms, \
     CAST(UNIX_TIMESTAMP(failing_since) * 1000 AS SIGNED) AS failing_since_ms, \
     CAST(UNIX_TIMESTAMP(IF(previous_until > NOW(3), previous_until, NULL)) * 1000 AS SIGNED) \
         AS previous_secret_until_ms, \
     CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) AS created_ms, \
     CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) AS updated_ms \
     FROM webhook_endpoints";

/// A new endpoint, checked.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: WebhookUrl,
    pub events: EventTypes,
    pub description: String,
}

impl NewEndpoint {
    pub fn new(url: WebhookUrl, events: EventTypes, note: Option<&str>) -> Result<Self, Refusal> {
        Ok(Self {
            url,
            events,
            description: note.map(description).transpose()?.unwrap_or_default(),
        })
    }
}

/// A change of an endpoint; a field left `None` stays as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<WebhookUrl>,
    pub events: Option<EventTypes>,
    pub description: Option<String>,
    /// `true` re-enables a disabled endpoint: its reason and its failing streak are cleared.
    pub enabled: Option<bool>,
}

impl EndpointChange {
    pub fn description(mut self, raw: Option<&str>) -> Result<Self, Refusal> {
        self.description = raw.map(description).transpose()?;
        Ok(self)
    }
}

/// A secret, with the endpoint it signs for: shown this once.
#[derive(Debug, Clone)]
pub struct EndpointWithSecret {
    pub endpoint: Endpoint,
    pub secret: String,
}

fn not_found(id: u64) -> StorageError {
    Refusal::NotFound(format!("there is no webhook endpoint {id}")).into()
}

impl Events<'_> {
    /// Registers an endpoint. It receives the events placed in the feed from now on: those
    /// already placed are behind it (an operator can redeliver them).
    pub async fn create_endpoint(&self, new: &NewEndpoint) -> StorageResult<EndpointWithSecret> {
        // Events committed before now get their places first, so that "from now on" is exact.
        self.sequence().await?;
        let secret = new_secret();
        self.in_time(self.db_deadline(), async {
            let id = sqlx::query(
                "INSERT INTO webhook_endpoints (url, description, event_types, secret, \
                 fanned_to_seq) SELECT ?, ?, ?, ?, COALESCE(MAX(seq), 0) FROM events",
            )
            .bind(new.url.as_str())
            .bind(&new.description)
            .bind(new.events.stored())
            .bind(&secret)
            .execute(&self.db)
            .await?
            .last_insert_id();
            Ok(EndpointWithSecret {
                endpoint: self.read_endpoint(id).await?,
                secret,
            })
        })
        .await
    }

    async fn read_endpoint(&self, id: u64) -> StorageResult<Endpoint> {
        sqlx::query_as(&format!("{SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// One endpoint.
    pub async fn endpoint(&self, id: u64) -> StorageResult<Endpoint> {
        self.in_time(self.db_deadline(), self.read_endpoint(id))
            .await
    }

    /// Every endpoint, by id.
    pub async fn endpoints(&self) -> StorageResult<Vec<Endpoint>> {
        self.in_time(self.db_deadline(), async {
            Ok(sqlx::query_as(&format!("{SELECT} ORDER BY id"))
                .fetch_all(&self.db)
                .await?)
        })
        .await
    }

    /// Changes an endpoint. Re-enabling clears why it was disabled and its failing streak; it
    /// receives events from then on, and its deliveries still pending are due at once.
    pub async fn update_endpoint(
        &self,
        id: u64,
        change: &EndpointChange,
    ) -> StorageResult<Endpoint> {
        if change.enabled == Some(true) {
            self.sequence().await?;
        }
        self.in_time(self.db_deadline(), async {
            let mut tx = self.begin().await?;
            let was: Option<i8> =
                sqlx::query_scalar("SELECT enabled FROM webhook_endpoints WHERE id = ? FOR UPDATE")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let was_enabled = was.ok_or_else(|| not_found(id))? != 0;
            sqlx::query(
                "UPDATE webhook_endpoints SET url = COALESCE(?, url), \
                 event_types = COALESCE(?, event_types), description = COALESCE(?, description) \
                 WHERE id = ?",
            )
            .bind(change.url.as_ref().map(WebhookUrl::as_str))
            .bind(change.events.as_ref().map(EventTypes::stored))
            .bind(change.description.as_deref())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            match change.enabled {
                Some(true) if !was_enabled => {
                    // Events of the time it was off are not sent (an operator can redeliver
                    // them); what was pending is.
                    sqlx::query(
                        "UPDATE webhook_endpoints SET enabled = 1, disabled_reason = NULL, \
                         disabled_at = NULL, failing_since = NULL, \
                         fanned_to_seq = GREATEST(fanned_to_seq, \
                             (SELECT COALESCE(MAX(seq), 0) FROM events)) WHERE id = ?",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE webhook_deliveries SET next_attempt_at = NOW(3) \
                         WHERE endpoint_id = ? AND status = 'PENDING'",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                Some(false) if was_enabled => {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET enabled = 0, \
                         disabled_reason = 'disabled by an operator', disabled_at = NOW(3) \
                         WHERE id = ?",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                _ => {}
            }
            tx.commit().await?;
            self.read_endpoint(id).await
        })
        .await
    }

    /// Deletes an endpoint with its deliveries and their attempts.
    pub async fn delete_endpoint(&self, id: u64) -> StorageResult<()> {
        self.in_time(self.db_deadline(), async {
            let gone = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
                .bind(id)
                .execute(&self.db)
                .await?
                .rows_affected();
            if gone == 0 {
                return Err(not_found(id));
            }
            Ok(())
        })
        .await
    }

    /// Gives an endpoint a new secret; the current one keeps signing for `overlap` (deliveries
    /// carry both signatures meanwhile).
    pub async fn rotate_secret(
        &self,
        id: u64,
        overlap: Duration,
    ) -> StorageResult<EndpointWithSecret> {
        let secret = new_secret();
        self.in_time(self.db_deadline(), async {
            let changed = sqlx::query(
                "UPDATE webhook_endpoints SET previous_secret = secret, \
                 previous_until = NOW(3) + INTERVAL ? MICROSECOND, secret = ? WHERE id = ?",
            )
            .bind(overlap.as_micros() as u64)
            .bind(&secret)
            .bind(id)
            .execute(&self.db)
            .await?
            .rows_affected();
            if changed == 0 {
                return Err(not_found(id));
            }
            Ok(EndpointWithSecret {
                endpoint: self.read_endpoint(id).await?,
                secret,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(hosts: &[&str]) -> EndpointRules {
        EndpointRules {
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            secret_overlap: Duration::from_secs(1),
        }
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_endpoints() {
        let any = rules(&[]);
        assert!(WebhookUrl::parse("https://shop.example/hooks", &any).is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/h", &any).is_ok());
        for bad in [
            "ftp://shop.example/h",
            "file:///etc/passwd",
            "/relative",
            "shop.example/h",
            "https://user:pw@shop.example/h",
            "",
        ] {
            assert!(WebhookUrl::parse(bad, &any).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_allow_list_admits_only_its_hosts() {
        let some = rules(&["hooks.example.com"]);
        assert!(WebhookUrl::parse("https://HOOKS.example.com/x", &some).is_ok());
        let refused = WebhookUrl::parse("https://evil.example/x", &some).unwrap_err();
        assert!(refused.to_string().contains("evil.example"), "{refused}");
    }

    #[test]
    fn event_types_are_known_and_at_least_one() {
        assert!(EventTypes::parse::<&str>(&[]).is_err());
        assert!(EventTypes::parse(&["order.nope"]).is_err());
        let t = EventTypes::parse(&["order.confirmed", "stock.out", "order.confirmed"]).unwrap();
        assert_eq!(t.stored(), "order.confirmed,stock.out");
    }

    #[test]
    fn a_secret_is_whsec_and_base64_of_32_bytes() {
        let s = new_secret();
        let key = base64::engine::general_purpose::STANDARD
            .decode(s.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(s, new_secret());
    }
}
