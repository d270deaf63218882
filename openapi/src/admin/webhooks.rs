//! Operators' routes for webhook endpoints and their deliveries: where events are pushed,
//! signed the Standard Webhooks way, and what became of each delivery.

use super::webhook_bodies::*;
use super::AdminTag;
use crate::auth::OperatorAuth;
use crate::problem::{ApiResult, Problem};
use crate::state::ApiState;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;
use sf_persistence::events::webhooks::{EndpointChange, EventTypes, NewEndpoint, WebhookUrl};
use sf_persistence::events::EventType;
use std::sync::Arc;

pub struct WebhooksApi {
    pub state: Arc<ApiState>,
}

fn webhook_in_path(id: i64) -> Result<u64, Problem> {
    u64::try_from(id).map_err(|_| Problem::not_found(format!("there is no webhook endpoint {id}")))
}

fn names(events: &[EventTypeBody]) -> Vec<&'static str> {
    events
        .iter()
        .map(|t| EventType::from(*t).as_str())
        .collect()
}

#[OpenApi(prefix_path = "/api/admin", tag = "AdminTag::Admin")]
impl WebhooksApi {
    /// Register a webhook endpoint
    ///
    /// Events of the given types are sent to `url` from now on, each as a `POST` of its JSON
    /// payload (`type`, `timestamp`, `data`, as `GET /api/events` shows it) with the Standard
    /// Webhooks headers `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` and the
    /// base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the base64-decoded part
    /// of the secret after `whsec_`). Any Standard Webhooks library verifies them. The answer
    /// shows the secret once. A 2xx answer delivers; anything else is retried with backoff for
    /// at least 24 h; an endpoint whose every delivery fails for 24 h is disabled. Per order
    /// (per hold, per location's product), events arrive in the order they happened. Answers
    /// 422 when the URL is not `http`/`https`, its host is not allowed, or an event type is
    /// unknown.
    #[oai(path = "/webhooks", method = "post", operation_id = "createWebhook")]
    async fn create(
        &self,
        auth: OperatorAuth,
        body: Json<CreateWebhookRequest>,
    ) -> ApiResult<WebhookCreated> {
        let rules = &self.state.webhooks;
        let new = NewEndpoint::new(
            WebhookUrl::parse(&body.url.0, rules)?,
            EventTypes::parse(&names(&body.events))?,
            body.description.as_ref().map(|d| d.0.as_str()),
        )?;
        let created = self.state.storage.events().create_endpoint(&new).await?;
        self.state
            .audit(
                &auth.0,
                "webhook.created",
                &format!("webhook:{}", created.endpoint.id),
                Some(format!(
                    "url {}, events {}",
                    created.endpoint.url,
                    created.endpoint.events().join(",")
                )),
            )
            .await;
        Ok(WebhookCreated::Created(Json(WebhookWithSecretBody {
            webhook: created.endpoint.into(),
            secret: created.secret,
        })))
    }

    /// List webhook endpoints
    ///
    /// Every endpoint, by id, with whether it is enabled and why not (never with its secret).
    #[oai(path = "/webhooks", method = "get", operation_id = "listWebhooks")]
    async fn list(&self, _auth: OperatorAuth) -> ApiResult<Json<WebhookList>> {
        let endpoints = self.state.storage.events().endpoints().await?;
        Ok(Json(WebhookList {
            webhooks: endpoints.into_iter().map(Into::into).collect(),
        }))
    }

    /// Get a webhook endpoint
    ///
    /// Answers 404 when there is no such endpoint.
    #[oai(
        path = "/webhooks/:webhookId",
        method = "get",
        operation_id = "getWebhook"
    )]
    async fn get(
        &self,
        _auth: OperatorAuth,
        #[oai(name = "webhookId", validator(minimum(value = "1")))] webhook_id: Path<i64>,
    ) -> ApiResult<Json<WebhookBody>> {
        let id = webhook_in_path(webhook_id.0)?;
        Ok(Json(self.state.storage.events().endpoint(id).await?.into()))
    }

    /// Change a webhook endpoint
    ///
    /// Change its URL, its event types or its description, disable it (`enabled: false`) or
    /// enable it again (`enabled: true`, which clears why it was disabled; its pending
    /// deliveries are due at once). Answers 404 when there is no such endpoint, 422 as on
    /// registration.
    #[oai(
        path = "/webhooks/:webhookId",
        method = "patch",
        operation_id = "updateWebhook"
    )]
    async fn update(
        &self,
        auth: OperatorAuth,
        #[oai(name = "webhookId", validator(minimum(value = "1")))] webhook_id: Path<i64>,
        body: Json<WebhookPatch>,
    ) -> ApiResult<Json<WebhookBody>> {
        let id = webhook_in_path(webhook_id.0)?;
        let rules = &self.state.webhooks;
        let change = EndpointChange {
            url: body
                .url
                .as_ref()
                .map(|u| WebhookUrl::parse(&u.0, rules))
                .transpose()?,
            events: body
                .events
                .as_ref()
                .map(|e| EventTypes::parse(&names(e)))
                .transpose()?,
            enabled: body.enabled,
            description: None,
        }
        .description(body.description.as_ref().map(|d| d.0.as_str()))?;
        let endpoint = self
            .state
            .storage
            .events()
            .update_endpoint(id, &change)
            .await?;
        self.state
            .audit(
                &auth.0,
                "webhook.changed",
                &format!("webhook:{id}"),
                Some(super::sent_fields(&body.0)),
            )
            .await;
        Ok(Json(endpoint.into()))
    }

    /// Delete a webhook endpoint
    ///
    /// It receives nothing more; its deliveries and their attempts are deleted with it. Answers
    /// 404 when there is no such endpoint.
    #[oai(
        path = "/webhooks/:webhookId",
        method = "delete",
        operation_id = "deleteWebhook"
    )]
    async fn delete(
        &self,
        auth: OperatorAuth,
        #[oai(name = "webhookId", validator(minimum(value = "1")))] webhook_id: Path<i64>,
    ) -> ApiResult<WebhookDeleted> {
        let id = webhook_in_path(webhook_id.0)?;
        self.state.storage.events().delete_endpoint(id).await?;
        self.state
            .audit(&auth.0, "webhook.deleted", &format!("webhook:{id}"), None)
            .await;
        Ok(WebhookDeleted::Deleted)
    }

    /// Rotate a webhook endpoint's secret
    ///
    /// A new signing secret, shown once. The previous one keeps signing for 24 h
    /// (`WEBHOOK_SECRET_OVERLAP_SECS`): meanwhile each delivery carries both signatures in
    /// `webhook-signature`, space-separated, so the receiver can switch without losing a call.
    /// Answers 404 when there is no such endpoint.
    #[oai(
        path = "/webhooks/:webhookId/rotate-secret",
        method = "post",
        operation_id = "rotateWebhookSecret"
    )]
    async fn rotate_secret(
        &self,
        auth: OperatorAuth,
        #[oai(name = "webhookId", validator(minimum(value = "1")))] webhook_id: Path<i64>,
    ) -> ApiResult<WebhookCreated> {
        let id = webhook_in_path(webhook_id.0)?;
        let rotated = self
            .state
            .storage
            .events()
            .rotate_secret(id, self.state.webhooks.secret_overlap)
            .await?;
        self.state
            .audit(
                &auth.0,
                "webhook.secret-rotated",
                &format!("webhook:{id}"),
                None,
            )
            .await;
        Ok(WebhookCreated::Created(Json(WebhookWithSecretBody {
            webhook: rotated.endpoint.into(),
            secret: rotated.secret,
        })))
    }

    /// List a webhook endpoint's deliveries
    ///
    /// Its deliveries, newest first, each with its attempts (status codes, errors, times);
    /// `status` keeps only the pending, delivered or failed (given up) ones; `limit` 1 to 500
    /// (default 50). Answers 404 when there is no such endpoint.
    #[oai(
        path = "/webhooks/:webhookId/deliveries",
        method = "get",
        operation_id = "listWebhookDeliveries"
    )]
    async fn deliveries(
        &self,
        _auth: OperatorAuth,
        #[oai(name = "webhookId", validator(minimum(value = "1")))] webhook_id: Path<i64>,
        status: Query<Option<DeliveryStatusBody>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<DeliveryList>> {
        let id = webhook_in_path(webhook_id.0)?;
        let deliveries = self
            .state
            .storage
            .events()
            .deliveries(id, status.0.map(Into::into), limit.0.unwrap_or(50) as u32)
            .await?;
        Ok(Json(DeliveryList {
            deliveries: deliveries.into_iter().map(Into::into).collect(),
        }))
    }

    /// Redeliver one event
    ///
    /// The event's delivery to this endpoint is pending again and due now, with a fresh retry
    /// window; it carries the same `webhook-id`. Later events of the same order wait for it.
    /// Answers 404 when the endpoint has no such event of its types.
    #[oai(
        path = "/webhooks/:webhookId/deliveries/:eventId/redeliver",
        method = "post",
        operation_id = "redeliverWebhookEvent"
    )]
    async fn redeliver(
        &self,
        auth: OperatorAuth,
        #[oai(name = "webhookId", validator(minimum(value = "1")))] webhook_id: Path<i64>,
        #[oai(name = "eventId", validator(max_length = 40))] event_id: Path<String>,
    ) -> ApiResult<RedeliveryQueued> {
        let id = webhook_in_path(webhook_id.0)?;
        self.state
            .storage
            .events()
            .redeliver(id, &event_id.0)
            .await?;
        self.state
            .audit(
                &auth.0,
                "webhook.redelivered",
                &format!("webhook:{id}"),
                Some(format!("event {}", event_id.0)),
            )
            .await;
        Ok(RedeliveryQueued::Queued(Json(RedeliveryBody { queued: 1 })))
    }

    /// Redeliver every event since a time
    ///
    /// Every event of the endpoint's types written since `since` is queued again (or for the
    /// first time, for events of a time it was disabled or did not exist), each with its own
    /// `webhook-id`, in order. Answers how many; 400 when `since` is not RFC 3339; 404 when
    /// there is no such endpoint.
    #[oai(
        path = "/webhooks/:webhookId/redeliver",
        method = "post",
        operation_id = "redeliverWebhookSince"
    )]
    async fn redeliver_since(
        &self,
        auth: OperatorAuth,
        #[oai(name = "webhookId", validator(minimum(value = "1")))] webhook_id: Path<i64>,
        body: Json<RedeliverSinceRequest>,
    ) -> ApiResult<RedeliveryQueued> {
        let id = webhook_in_path(webhook_id.0)?;
        let since = body.since;
        let queued = self
            .state
            .storage
            .events()
            // No event is older than the Unix epoch or newer than now, and MySQL holds no time
            // before the one nor far past the other.
            .redeliver_since(
                id,
                since
                    .timestamp_millis()
                    .clamp(0, chrono::Utc::now().timestamp_millis()),
            )
            .await?;
        self.state
            .audit(
                &auth.0,
                "webhook.redelivered",
                &format!("webhook:{id}"),
                Some(format!("since {}, {queued} events", since.to_rfc3339())),
            )
            .await;
        Ok(RedeliveryQueued::Queued(Json(RedeliveryBody { queued })))
    }
}
