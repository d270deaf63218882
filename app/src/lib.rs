//! The Stock Flow service: configuration, wiring, background jobs, and the binary's commands.
//!
//! # Layout
//!
//! - [`config`]: environment variables and flags;
//! - [`telemetry`] sets up logging;
//! - [`startup`]: [`Application`], which connects, migrates, serves, and runs the consumer and jobs;
//! - [`jobs`]: scheduled background work;
//! - [`webhooks`]: the webhook dispatcher (signed deliveries from the events outbox).

pub mod config;
pub mod jobs;
pub mod startup;
pub mod telemetry;
pub mod webhooks;

pub use config::Config;
pub use startup::Application;
