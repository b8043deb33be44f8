//! failmail: an SMTP test server that answers with the realistic failures real providers send.
//!
//! # Layout
//!
//! A client's bytes go from the socket to the protocol core and back as replies; on the way,
//! the core asks a policy what to answer and reports what it did:
//!
//! ```text
//! TCP accept ─► server (connection task, TLS, timeouts) ─► smtp::session::Session (sans-IO)
//!                                                              │ asks at each phase   │ reports typed events
//!                                                              ▼                      ▼ (reply + phase + rule,
//!                                    scenario (rules, catalog, limits via limits)     message to store)
//!                                                              │                      │
//!                                                              ▼                      ▼
//!                                                    clock · limit store       journal (events,
//!                                                    (memory | Redis)          messages, metrics)
//!                                                                                     │
//!                                                                  api (HTTP routes, event stream)
//!                                                                                     │
//!                                                                  web (the page at /, over the API)
//! ```
//!
//! Layers, from the bottom up: a module uses only the layers below its own, never one above,
//! and `tests/layers.rs` fails when an import breaks this order.
//!
//! 1. [`clock`], [`eventual`]: the one clock tests can move forward; a value ready now or later.
//! 2. [`smtp`]: the protocol core, free of I/O: the command parser, pre-encoded replies, the
//!    session state machine and the [`smtp::policy::Policy`] it asks at each phase.
//! 3. [`limits`]: rate-limit windows, the store's keys, the per-IP connection counter, and the
//!    stores (memory, Redis) that hold limits, greylisting and sequence state.
//! 4. [`scenario`]: scenario files, their compiler and rule index, the reply catalog, and the
//!    engine that turns them into a policy; the live scenario and its reloads.
//! 5. [`import`]: real bounces read back into scenario rules (`failmail import`): the reply,
//!    its phase and recipient, written as rules or magic addresses.
//! 6. [`journal`], [`bounces`]: what happened: events, captured messages, the attempt history
//!    and its retry report, the Maildir, metrics; and the later notifications (RFC 3464 DSNs,
//!    complaints, auto-replies) scheduled on the clock and stored through the journal (the
//!    journal never uses bounces).
//! 7. [`server`]: listeners and connection tasks that only carry bytes and events between
//!    sockets, sessions, the policy and the journal.
//! 8. [`api`]: the HTTP routes and event stream over the journal, clock and scenario.
//! 9. [`web`]: the web page at `/`: files compiled into the binary that watch and steer the
//!    server only through the API under `/api`.
//! 10. [`app`]: the one composition root, which builds the pieces above once and wires them.
//! 11. [`testing`]: [`testing::TestServer`], failmail inside a Rust test, started through
//!     [`app`]. (`main.rs`, the command line, also starts through [`app`]; `cli.rs` beside
//!     it is the binary's own, formatting what `failmail catalog` and `failmail report` print.)
//!
//! Where to look: "where is the RCPT reply decided?" — [`scenario::engine`]; "what does the
//! server say on its own?" — [`smtp::session`] and [`smtp::reply::fixed`]; "where do I add a
//! limit?" — [`limits`], then the `[limits]` section in [`scenario::settings`]; "how is a
//! retry judged?" — [`journal::attempts`].

pub mod api;
pub mod app;
pub mod bounces;
pub mod clock;
pub mod eventual;
pub mod import;
pub mod journal;
pub mod limits;
pub mod scenario;
pub mod server;
pub mod smtp;
pub mod testing;
pub mod web;

pub use app::{App, AppConfig, RunningApp};
