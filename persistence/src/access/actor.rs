//! The one way an actor is named, in the ledger, the audit trail and the access log.

use crate::model::Order;
use std::fmt;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A named operator (`ADMIN_TOKEN` is the operator `bootstrap`).
    Operator(u64),
    /// A store's POS key.
    StoreKey(u64),
    /// A sales channel, by its id (whichever of its keys was used).
    Channel(u64),
    /// A shop write made without a channel (`SHOP_AUTH=off`).
    NoChannel,
    /// The service itself.
    System(SystemJob),
}

/// The service's own writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemJob {
    /// The consumer, for what it decides itself (an order it rejects).
    Consumer,
    Reconciliation,
    NotCollected,
    HoldExpiry,
    /// Demo and bench data.
    Seed,
}

impl SystemJob {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consumer => "consumer",
            Self::Reconciliation => "reconciliation",
            Self::NotCollected => "not-collected",
            Self::HoldExpiry => "hold-expiry",
            Self::Seed => "seed",
        }
    }
}

impl Actor {
    /// The actor of an order's own rows: the channel that placed it.
    pub fn of_order(order: &Order) -> Self {
        Self::of_channel(order.channel)
    }

    /// The actor of a write made by the channel `channel` (`None`: without a channel), such as
    /// an order's or a hold's, as their rows store it.
    pub fn of_channel(channel: Option<u64>) -> Self {
        match channel {
            Some(id) => Self::Channel(id),
            None => Self::NoChannel,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operator(id) => write!(f, "operator:{id}"),
            Self::StoreKey(id) => write!(f, "store-key:{id}"),
            Self::Channel(id) => write!(f, "channel:{id}"),
            Self::NoChannel => f.write_str("channel:none"),
            Self::System(job) => write!(f, "system:{}", job.as_str()),
        }
    }
}

/// An actor with what an operator may add to a change: a free-text note, a reference (a delivery
/// note number), and the request that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub actor: Actor,
    pub note: Option<String>,
    pub reference: Option<String>,
    pub request_id: Option<String>,
}

impl Attribution {
    pub fn of(actor: Actor) -> Self {
        Self {
            actor,
            note: None,
            reference: None,
            request_id: None,
        }
    }

    pub fn system(job: SystemJob) -> Self {
        Self::of(Actor::System(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_named_one_way() {
        assert_eq!(Actor::Operator(3).to_string(), "operator:3");
        assert_eq!(Actor::StoreKey(7).to_string(), "store-key:7");
        assert_eq!(Actor::Channel(2).to_string(), "channel:2");
        assert_eq!(Actor::NoChannel.to_string(), "channel:none");
        assert_eq!(
            Actor::System(SystemJob::NotCollected).to_string(),
            "system:not-collected"
        );
    }
}
