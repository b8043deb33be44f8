//! Scenarios: the reply catalog, scenario files and the policy they compile into.

pub mod catalog;
pub mod flavor;
pub mod phase_codes;
