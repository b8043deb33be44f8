//! Scenarios: the reply catalog, scenario files and the policy they compile into.

pub mod catalog;
pub mod compile;
pub mod engine;
pub mod error;
pub(crate) mod file;
pub mod flavor;
pub(crate) mod index;
pub mod live;
pub mod pattern;
pub(crate) mod phase_codes;
pub mod rule;
pub mod settings;
pub mod source;
