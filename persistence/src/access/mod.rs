//! Who acts: sales channels and their keys, named operators and their roles, store keys, and the
//! [`Actor`] every ledger row and audit entry names.

mod actor;
pub mod channels;

pub use actor::{Actor, Attribution, SystemJob};
pub use channels::{Channel, ChannelKey, Channels, IssuedChannelKey};
