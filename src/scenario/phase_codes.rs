//! Which failure codes a phase may answer with (RFC 5321 §4.3.2 and the extensions' RFCs).
//!
//! A scenario that asks for, say, 354 at RCPT or 250 where a failure is wanted is refused at load.

use crate::smtp::policy::Phase;

/// Codes some real servers send outside the RFC lists, named by the seed guides: 420 (GroupWise
/// timeout), 432 (Exchange: queue stopped), 449 (Exchange: routing error). Allowed at every phase.
const SEEN_ANYWHERE: &[u16] = &[420, 421, 432, 449];

/// The failure codes (4xx/5xx) allowed at `phase`.
pub(crate) fn allowed_failures(phase: Phase) -> &'static [u16] {
    match phase {
        Phase::Connect => &[450, 451, 550, 554],
        Phase::Ehlo => &[450, 451, 500, 501, 502, 504, 550, 554],
        Phase::Auth => &[
            451, 454, 500, 501, 502, 503, 504, 530, 534, 535, 538, 550, 554,
        ],
        Phase::Mail => &[
            450, 451, 452, 455, 500, 501, 502, 503, 530, 550, 552, 553, 554, 555,
        ],
        Phase::Rcpt => &[
            450, 451, 452, 455, 500, 501, 502, 503, 530, 550, 551, 552, 553, 554, 555,
        ],
        Phase::Data => &[450, 451, 452, 500, 501, 502, 503, 550, 552, 554],
        Phase::DataEnd => &[450, 451, 452, 550, 552, 553, 554],
    }
}

/// Whether `code` may be a failure reply at `phase`.
pub(crate) fn is_allowed(phase: Phase, code: u16) -> bool {
    SEEN_ANYWHERE.contains(&code) || allowed_failures(phase).contains(&code)
}

/// A one-line explanation of what is allowed, for error messages.
pub(crate) fn describe(phase: Phase) -> String {
    let mut codes: Vec<u16> = SEEN_ANYWHERE
        .iter()
        .chain(allowed_failures(phase))
        .copied()
        .collect();
    codes.sort_unstable();
    let list: Vec<String> = codes.iter().map(u16::to_string).collect();
    format!("a failure at {phase} must be one of {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_success_or_intermediate_code_is_a_failure() {
        for phase in Phase::ALL {
            for code in [220, 221, 235, 250, 251, 252, 334, 354] {
                assert!(!is_allowed(phase, code), "{code} at {phase}");
            }
            assert!(is_allowed(phase, 421), "421 is allowed anywhere");
        }
        assert!(is_allowed(Phase::Rcpt, 550));
        assert!(!is_allowed(Phase::Connect, 535));
        assert!(describe(Phase::Data).contains("554"));
    }
}
