//! Scenarios: the reply catalog, scenario files and the policy they compile into.

pub mod catalog;
pub mod compile;
pub mod domains;
pub mod engine;
pub mod error;
pub(crate) mod file;
pub mod flavor;
pub mod history;
pub(crate) mod index;
pub mod later;
pub mod live;
pub mod magic;
pub mod pattern;
pub(crate) mod phase_codes;
pub(crate) mod receiving;
pub mod rule;
pub mod settings;
pub mod source;
