//! Webhook delivery: events pushed from the outbox to the operators' endpoints, signed the way
//! the Standard Webhooks specification describes.
//!
//! - [`dispatcher`]: the loop. One instance at a time holds its lease (MySQL only, so Redis
//!   being down stops nothing); each tick it places new events in the feed, fans them out to the
//!   endpoints and sends what is due, a bounded number per endpoint at once;
//! - [`send`]: one attempt: the signed HTTP call and what its answer means;
//! - [`signing`]: the signature (pure);
//! - [`retry`]: when to try again and when to give up (pure).
//!
//! What is owed lives in MySQL (`webhook_deliveries`), never in memory: a killed instance loses
//! nothing, and a receiver that is down only grows a table. Delivery runs in tasks of its own and
//! never touches the order paths.

pub mod dispatcher;
pub mod retry;
pub mod send;
pub mod signing;

pub use dispatcher::{run, DispatcherSettings};
