//! Magic addresses: a recipient whose local part asks for a failure, with no scenario file:
//! a catalog name (`user_unknown@…`), optionally in a flavor (`user_unknown+gmail@…`), or a code
//! and enhanced code (`550-5.1.1@…`). With the `+async` tag (tags in any order) the failure comes
//! later, as a bounce: accepted now, bounced after a minute; `complaint+async@…` and
//! `ooto+async@…` bring an abuse report or an auto-reply instead.
//!
//! A recipient that plainly asks for a failure but asks for one the scenario checker would refuse
//! (an unknown flavor, a code that is no failure at RCPT, a status whose class disagrees with the
//! code) is not let through as if nothing was asked: it gets a `501 5.1.3` that says why.

use super::catalog::{Catalog, Entry};
use super::error::closest;
use super::flavor::Flavor;
use super::later::{LaterFate, LaterSpec};
use super::phase_codes;
use super::rule::{ReplySpec, LOSE_REPLY};
use crate::smtp::policy::Phase;
use crate::smtp::reply::{fixed, EnhancedStatus, Reply};

/// What a magic address asks for.
#[derive(Debug, Clone)]
pub struct Magic {
    /// The reply (for `complaint+async` and `ooto+async`, which exist only as later fates, the
    /// plain 250).
    pub spec: ReplySpec,
    /// Where it is given: rcpt, or data / data_end for failures that belong there.
    pub phase: Phase,
    /// With `+async`: accepted now, and this later (the reply goes into the bounce).
    pub later: Option<LaterSpec>,
}

/// Why a recipient that asks for a failure cannot have it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMagic {
    /// `NAME+FLAVOR` with a flavor that does not exist.
    #[error("unknown flavor {flavor:?} in a magic address; {suggestion}")]
    UnknownFlavor {
        /// The flavor as written.
        flavor: String,
        /// "did you mean …" or the list of flavors.
        suggestion: String,
    },
    /// `CODE-X.Y.Z` that the scenario checker would refuse.
    #[error("{0} (as in a scenario file)")]
    Refused(String),
}

impl BadMagic {
    /// The reply that says why: `501 5.1.3 <rcpt>: …` (bad destination address syntax, given
    /// at RCPT, where the client sees it at once).
    pub fn reply(&self, rcpt: &str) -> Reply {
        let status = EnhancedStatus {
            class: 5,
            subject: 1,
            detail: 3,
        };
        // A long address is left out, so that the line stays within 512 octets.
        let text = if rcpt.len() <= 100 && !rcpt.contains(['\r', '\n']) {
            format!("<{rcpt}>: {self}")
        } else {
            self.to_string()
        };
        Reply::new(501, Some(status), &[text]).expect("a 501 with one line of text is valid")
    }
}

/// What the local part before the tags names.
enum Asked<'a> {
    /// A catalog failure.
    Entry(&'static Entry),
    /// `CODE-X.Y.Z`, checked as a scenario's inline reply would be.
    Code(&'a str),
    /// `complaint` or `ooto`: a later fate only.
    Fate(LaterFate),
}

/// Reads a recipient: `None` when it is an ordinary address, else what it asks for, or why
/// that cannot be given.
pub fn magic_address(address: &str, default_flavor: Flavor) -> Option<Result<Magic, BadMagic>> {
    magic_address_in(address, || default_flavor)
}

/// [`magic_address`] with the default flavor found only when the address is magic: finding it
/// (the recipient domain's voice) costs a table lookup, and most recipients are not magic.
pub fn magic_address_in(
    address: &str,
    default_flavor: impl FnOnce() -> Flavor,
) -> Option<Result<Magic, BadMagic>> {
    let at = address.rfind('@')?;
    let mut parts = address[..at].split('+');
    let name = parts.next()?;
    let asked = asked_for(name)?;
    let tags: Vec<&str> = parts.collect();
    let later = tags.iter().any(|t| t.eq_ignore_ascii_case("async"));
    if matches!(asked, Asked::Fate(_)) && !later {
        // `complaint@…` and `ooto@…` mean something only as later fates.
        return None;
    }
    Some(tagged(asked, &tags, later, default_flavor()))
}

fn asked_for(name: &str) -> Option<Asked<'_>> {
    if name.eq_ignore_ascii_case("complaint") {
        return Some(Asked::Fate(LaterFate::Complaint));
    }
    if name.eq_ignore_ascii_case("ooto") {
        return Some(Asked::Fate(LaterFate::AutoReply));
    }
    if let Some(entry) = Catalog::builtin().get_ignore_case(name) {
        return Some(Asked::Entry(entry));
    }
    looks_like_code(name).then_some(Asked::Code(name))
}

/// The failure `asked` for, with its tags: at most one `+async` and, for a catalog name or a
/// later fate, at most one flavor (a code has no wording: its other tags are ignored).
fn tagged(
    asked: Asked<'_>,
    tags: &[&str],
    later: bool,
    default_flavor: Flavor,
) -> Result<Magic, BadMagic> {
    if tags
        .iter()
        .filter(|t| t.eq_ignore_ascii_case("async"))
        .count()
        > 1
    {
        return Err(BadMagic::Refused("+async is given twice".to_owned()));
    }
    let flavor = match &asked {
        Asked::Code(_) => default_flavor,
        Asked::Entry(_) | Asked::Fate(_) => flavor_tag(tags, default_flavor)?,
    };
    let (spec, phase) = match asked {
        Asked::Entry(entry) => (
            ReplySpec::Catalog {
                entry,
                flavor,
                by_domain: false,
            },
            entry.phase,
        ),
        Asked::Code(name) => {
            let (code, status) = name.split_once('-').expect("checked by looks_like_code");
            (
                checked_code(code.parse().unwrap_or(0), status)?,
                Phase::Rcpt,
            )
        }
        Asked::Fate(fate) => {
            return Ok(Magic {
                spec: ReplySpec::Inline(fixed::RECIPIENT_OK),
                phase: Phase::Rcpt,
                later: Some(LaterSpec { fate, flavor }),
            })
        }
    };
    let phase = if phase >= Phase::Data {
        phase
    } else {
        Phase::Rcpt
    };
    if !later {
        return Ok(Magic {
            spec,
            phase,
            later: None,
        });
    }
    Ok(Magic {
        later: Some(LaterSpec::magic_bounce(spec.clone(), flavor)),
        spec,
        phase: Phase::Rcpt,
    })
}

/// The one flavor among `tags` (other than `async`), else `default_flavor`.
fn flavor_tag(tags: &[&str], default_flavor: Flavor) -> Result<Flavor, BadMagic> {
    let mut flavors = tags.iter().filter(|t| !t.eq_ignore_ascii_case("async"));
    let Some(text) = flavors.next() else {
        return Ok(default_flavor);
    };
    if flavors.next().is_some() {
        return Err(BadMagic::Refused(
            "a magic address takes one flavor tag at most".to_owned(),
        ));
    }
    text.parse().map_err(|_| unknown_flavor(text))
}

fn unknown_flavor(text: &str) -> BadMagic {
    let names = Flavor::ALL.map(Flavor::as_str);
    let suggestion = match closest(text, names) {
        Some(best) => format!("did you mean {best:?}?"),
        None => format!("flavors: {}", names.join(", ")),
    };
    BadMagic::UnknownFlavor {
        flavor: text.to_owned(),
        suggestion,
    }
}

/// `CODE-X.Y.Z`: three digits, a dash, then digits and two dots. Anything else (`555-1234`) is
/// an ordinary address.
fn looks_like_code(name: &str) -> bool {
    let Some((code, status)) = name.split_once('-') else {
        return false;
    };
    let looks_like_status = status.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && status.bytes().filter(|&b| b == b'.').count() == 2;
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) && looks_like_status
}

/// The checks a scenario's inline reply at RCPT gets: a failure code that fits RCPT, a valid
/// enhanced status code of the same class.
fn checked_code(code: u16, status_text: &str) -> Result<ReplySpec, BadMagic> {
    if !phase_codes::is_allowed(Phase::Rcpt, code) {
        let what = if code < 400 {
            "is not a failure"
        } else {
            "does not fit RCPT"
        };
        return Err(BadMagic::Refused(format!(
            "reply code {code} {what}: {}",
            phase_codes::describe(Phase::Rcpt)
        )));
    }
    let status = EnhancedStatus::parse(status_text).ok_or_else(|| {
        BadMagic::Refused(format!(
            "bad enhanced status code {status_text:?}: write class.subject.detail, e.g. 5.7.1"
        ))
    })?;
    if u16::from(status.class) != code / 100 {
        return Err(BadMagic::Refused(format!(
            "reply code {code} and enhanced status {status} disagree: the class must be {}",
            code / 100
        )));
    }
    let text = Catalog::builtin()
        .by_code(code, Some(status))
        .map(|e| e.variant(Flavor::Generic).0.text.join(" "))
        .filter(|t| !t.contains('{'))
        .unwrap_or_else(|| "Requested action not taken".to_owned());
    let reply =
        Reply::new(code, Some(status), &[text]).map_err(|e| BadMagic::Refused(e.to_string()))?;
    Ok(ReplySpec::Inline(reply))
}

/// Whether `address` is the magic `lose_reply@…` (case ignored): its message is stored, and
/// the connection closed without the 250 that says so.
pub(crate) fn loses_reply(address: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(local, _)| local.eq_ignore_ascii_case(LOSE_REPLY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(address: &str) -> Option<Result<u16, String>> {
        magic_address(address, Flavor::Generic)
            .map(|r| r.map(|m| m.spec.code()).map_err(|e| e.to_string()))
    }

    #[test]
    fn ordinary_addresses_are_not_magic() {
        for address in [
            "someone@x",
            "555-1234@x",
            "a+b@x",
            "550@x",
            "5500-5.1.1@x",
            "x",
        ] {
            assert_eq!(read(address), None, "{address}");
        }
    }

    #[test]
    fn names_flavors_and_codes() {
        assert_eq!(read("user_unknown@x"), Some(Ok(550)));
        assert_eq!(read("USER_UNKNOWN+Gmail@x"), Some(Ok(550)));
        assert_eq!(read("451-4.7.1@x"), Some(Ok(451)));
        assert_eq!(read("550-5.1.1+tag@x"), Some(Ok(550)));
    }

    #[test]
    fn async_tags_in_any_order() {
        for address in ["user_unknown+gmail+async@x", "user_unknown+ASYNC+gmail@x"] {
            let magic = magic_address(address, Flavor::Generic).unwrap().unwrap();
            let later = magic.later.expect("a later bounce");
            assert_eq!((later.flavor, magic.phase), (Flavor::Gmail, Phase::Rcpt));
        }
        let complaint = magic_address("complaint+async@x", Flavor::Generic)
            .unwrap()
            .unwrap();
        assert!(matches!(
            complaint.later.map(|l| l.fate),
            Some(LaterFate::Complaint)
        ));
        assert!(magic_address("complaint@x", Flavor::Generic).is_none());
        assert!(magic_address("user_unknown@x", Flavor::Generic)
            .unwrap()
            .unwrap()
            .later
            .is_none());
    }

    #[test]
    fn what_the_checker_refuses_is_refused_with_the_reason() {
        let refused = |address: &str| match read(address) {
            Some(Err(why)) => why,
            other => panic!("{address}: {other:?}"),
        };
        assert!(refused("user_unknown+gmial@x").contains("did you mean \"gmail\"?"));
        assert!(refused("user_unknown+hotmail@x").contains("flavors: generic, ovh"));
        assert!(refused("599-5.9.9@x").contains("599 does not fit RCPT"));
        assert!(refused("250-2.0.0@x").contains("250 is not a failure"));
        assert!(refused("550-4.2.0@x").contains("the class must be 5"));
        assert!(refused("550-6.1.1@x").contains("bad enhanced status"));
        assert!(refused("user_unknown+gmail+exim@x").contains("one flavor tag"));
        assert!(refused("user_unknown+async+async@x").contains("twice"));
        let reply = magic_address("599-5.9.9@x", Flavor::Generic)
            .unwrap()
            .unwrap_err()
            .reply("599-5.9.9@x");
        assert!(
            reply
                .to_string()
                .starts_with("501 5.1.3 <599-5.9.9@x>: reply code 599"),
            "{reply}"
        );
    }
}
