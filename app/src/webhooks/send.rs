//! One attempt of a delivery: the signed `POST` of the stored body, and what its answer means.
//! A 2xx answer delivers; anything else (another status, a redirect, which is not followed, a
//! timeout, a refused connection) is a failed attempt.

use super::signing;
use sf_persistence::events::deliveries::{ActiveEndpoint, DueDelivery};
use std::time::Duration;

/// The client every attempt goes through: no redirects, a bound on each call.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("stock-flow-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What an attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx.
    Delivered(u16),
    /// Another status.
    Refused { status_code: u16, error: String },
    /// No answer.
    NoAnswer(String),
}

/// Makes one attempt, signed at `timestamp` (Unix seconds).
pub async fn attempt(
    client: &reqwest::Client,
    endpoint: &ActiveEndpoint,
    delivery: &DueDelivery,
    timestamp: i64,
    timeout: Duration,
) -> Answer {
    let signature = match signing::signature_header(
        &endpoint.secrets(),
        &delivery.event_id,
        timestamp,
        delivery.payload.as_bytes(),
    ) {
        Ok(s) => s,
        Err(e) => return Answer::NoAnswer(format!("not sent: {e}")),
    };
    let sent = client
        .post(&endpoint.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &delivery.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.payload.clone())
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Answer::Delivered(r.status().as_u16()),
        Ok(r) => {
            let status = r.status();
            let mut error = format!("answered {status}");
            if status.is_redirection() {
                error.push_str(" (redirects are not followed)");
            }
            Answer::Refused {
                status_code: status.as_u16(),
                error,
            }
        }
        Err(e) if e.is_timeout() => {
            Answer::NoAnswer(format!("no answer within {} ms", timeout.as_millis()))
        }
        Err(e) => Answer::NoAnswer(describe(&e)),
    }
}

/// An error with its causes, for the operators' view (`could not connect: … : Connection
/// refused`).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the call failed".to_owned()
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
