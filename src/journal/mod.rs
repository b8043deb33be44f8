//! What happened: captured messages, the event journal and the maildir, all bounded.

pub mod events;
pub mod maildir;
pub mod messages;

pub use events::{Event, EventKind, EventLog};
pub use messages::{MessageStore, StoredMessage};
