//! The SMTP protocol core, free of I/O: command parser, replies, body decoders and the session.

pub(crate) mod address;
pub mod command;
pub mod data;
pub mod header;
pub mod policy;
pub mod queue_id;
pub mod reply;
pub(crate) mod sasl;
pub mod session;
