//! Operators' routes for sales channels and their keys: the credentials the shop's writes need.

use super::{AdminTag, KeyRevoked};
use crate::auth::OperatorAuth;
use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use crate::types::Text;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use std::sync::Arc;

pub struct ChannelsApi {
    pub state: Arc<ApiState>,
}

/// A new sales channel.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct CreateChannelRequest {
    /// Its name, unique: 1 to 100 characters, not only spaces.
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"[^\s\x1C-\x1F\u0085\uFEFF]"
    ))]
    pub name: Text,
}

impl Example for CreateChannelRequest {
    fn example() -> Self {
        Self {
            name: Text("web".into()),
        }
    }
}

/// A sales channel.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct ChannelBody {
    pub channel_id: u64,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Its keys not revoked.
    pub active_keys: i64,
}

impl Example for ChannelBody {
    fn example() -> Self {
        Self {
            channel_id: 1,
            name: "web".into(),
            created_at: "2026-12-07T09:00:00.000Z".into(),
            active_keys: 1,
        }
    }
}

impl From<sf_persistence::access::Channel> for ChannelBody {
    fn from(c: sf_persistence::access::Channel) -> Self {
        Self {
            channel_id: c.id,
            name: c.name,
            created_at: crate::types::rfc3339(c.created_ms),
            active_keys: c.active_keys,
        }
    }
}

/// Every sales channel.
#[derive(Debug, Clone, Object)]
pub struct ChannelList {
    pub channels: Vec<ChannelBody>,
}

/// A new key of a channel.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct IssueChannelKeyRequest {
    /// A note for operators, such as where the key is deployed; at most 100 characters.
    #[oai(validator(max_length = 100))]
    pub label: Option<Text>,
}

impl Example for IssueChannelKeyRequest {
    fn example() -> Self {
        Self {
            label: Some(Text("checkout servers".into())),
        }
    }
}

/// An issued channel key.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct ChannelKeyBody {
    pub key_id: u64,
    pub channel_id: u64,
    /// The key itself, for `Authorization: Bearer <key>` on the shop's routes. Shown this once;
    /// only its hash is kept.
    pub key: String,
}

impl Example for ChannelKeyBody {
    fn example() -> Self {
        Self {
            key_id: 3,
            channel_id: 1,
            key: "sfc_0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778".into(),
        }
    }
}

#[derive(ApiResponse)]
pub enum ChannelCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<ChannelBody>),
}

#[derive(ApiResponse)]
pub enum ChannelKeyIssued {
    /// Issued.
    #[oai(status = 201)]
    Created(Json<ChannelKeyBody>),
}

fn channel_in_path(id: i64) -> Result<u64, Problem> {
    u64::try_from(id).map_err(|_| Problem::not_found(format!("there is no channel {id}")))
}

#[OpenApi(prefix_path = "/api/admin", tag = "AdminTag::Admin")]
impl ChannelsApi {
    /// Create a sales channel
    ///
    /// A channel is what places orders and holds (the web shop, an app); its keys authorize the
    /// shop's routes, and each channel sees only its own orders and holds. Answers 409 when the
    /// name is taken.
    #[oai(path = "/channels", method = "post", operation_id = "createChannel")]
    async fn create(
        &self,
        auth: OperatorAuth,
        body: Json<CreateChannelRequest>,
    ) -> ApiResult<ChannelCreated> {
        let c = self.state.storage.channels().create(&body.name.0).await?;
        self.state
            .audit(
                &auth.0,
                "channel.created",
                &format!("channel:{}", c.id),
                Some(c.name.clone()),
            )
            .await;
        Ok(ChannelCreated::Created(Json(c.into())))
    }

    /// List sales channels
    #[oai(path = "/channels", method = "get", operation_id = "listChannels")]
    async fn list(&self, _auth: OperatorAuth) -> ApiResult<Json<ChannelList>> {
        let channels = self.state.storage.channels().list().await?;
        Ok(Json(ChannelList {
            channels: channels.into_iter().map(Into::into).collect(),
        }))
    }

    /// Issue a channel key
    ///
    /// A new key for the channel. The answer shows the key once; only its hash is kept. Answers
    /// 404 when there is no such channel.
    #[oai(
        path = "/channels/:channelId/keys",
        method = "post",
        operation_id = "issueChannelKey"
    )]
    async fn issue_key(
        &self,
        auth: OperatorAuth,
        #[oai(name = "channelId", validator(minimum(value = "1")))] channel_id: Path<i64>,
        body: Json<IssueChannelKeyRequest>,
    ) -> ApiResult<ChannelKeyIssued> {
        let channel = channel_in_path(channel_id.0)?;
        let label = body.label.as_ref().map_or("", |l| l.0.trim());
        let k = self
            .state
            .storage
            .channels()
            .issue_key(channel, label)
            .await?;
        self.state
            .audit(
                &auth.0,
                "channel-key.issued",
                &format!("channel-key:{}", k.key_id),
                Some(format!("channel {channel}, label {label:?}")),
            )
            .await;
        Ok(ChannelKeyIssued::Created(Json(ChannelKeyBody {
            key_id: k.key_id,
            channel_id: k.channel_id,
            key: k.key,
        })))
    }

    /// Revoke a channel key
    ///
    /// The key stops working at once, on every instance. Answers 404 when the channel has no such
    /// key.
    #[oai(
        path = "/channels/:channelId/keys/:keyId",
        method = "delete",
        operation_id = "revokeChannelKey"
    )]
    async fn revoke_key(
        &self,
        auth: OperatorAuth,
        #[oai(name = "channelId", validator(minimum(value = "1")))] channel_id: Path<i64>,
        #[oai(name = "keyId", validator(minimum(value = "1")))] key_id: Path<i64>,
    ) -> ApiResult<KeyRevoked> {
        let channel = channel_in_path(channel_id.0)?;
        let key = u64::try_from(key_id.0).map_err(|_| {
            Problem::not_found(format!("channel {channel} has no key {}", key_id.0))
        })?;
        self.state
            .storage
            .channels()
            .revoke_key(channel, key)
            .await?;
        self.state
            .audit(
                &auth.0,
                "channel-key.revoked",
                &format!("channel-key:{key}"),
                Some(format!("channel {channel}")),
            )
            .await;
        Ok(KeyRevoked::Revoked)
    }
}
