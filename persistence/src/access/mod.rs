//! Who acts: sales channels and their keys, named operators and their roles, store keys, and the
//! [`Actor`] every ledger row and audit entry names; the operators' audit trail.

mod actor;
pub mod audit;
pub mod channels;
pub mod operators;
pub mod secret;

pub use actor::{Actor, Attribution, SystemJob};
pub use audit::{AuditEntry, AuditRecord};
pub use channels::{Channel, ChannelKey, Channels, IssuedChannelKey, KeyLookup};
pub use operators::{Access, CreatedOperator, Operator, OperatorName, Role, BOOTSTRAP};
pub use secret::{Secret, SecretUrl};
