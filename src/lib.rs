//! failmail: an SMTP test server that answers with the realistic failures real providers send.
//!
//! The protocol core ([`smtp`]) is sans-IO and tested without sockets; the [`server`] moves bytes
//! between sockets and sessions; a [`policy::Policy`] decides each phase's reply.

pub mod api;
pub mod app;
pub mod clock;
pub mod eventual;
pub mod journal;
pub mod limits;
pub mod scenario;
pub mod server;
pub mod smtp;
pub mod testing;

pub use app::{App, AppConfig, RunningApp};
