//! Queue ids and the 250 reply after an accepted message, in the style of each mail system.
//!
//! Ids are derived from the session id and the message's number within the session, so they are
//! unique per server process and reproducible in tests (no clock, no randomness).

use std::fmt::Write as _;

use super::reply::{status, EnhancedStatus};

/// How a queue id looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueIdStyle {
    /// 12 upper-case hex digits, like Postfix's short queue ids.
    #[default]
    Hex12,
    /// Postfix's long queue ids (`enable_long_queue_ids`): 12 base-52 characters, `z`, 5 more.
    PostfixLong,
    /// Exim's classic message ids: `XXXXXX-XXXXXX-XX` in base 62.
    Exim,
    /// Gmail's trace: `<epoch-like digits> <13 hex>-<hex>si<digits><3 letters>.<n> - gsmtp`.
    Gmail,
    /// Exchange/Outlook's internal message id, GUID-like in angle brackets.
    Outlook,
    /// Yahoo sends no id at all.
    None,
}

impl QueueIdStyle {
    /// Parses the catalog's name for a style.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "hex12" => Self::Hex12,
            "postfix_long" => Self::PostfixLong,
            "exim" => Self::Exim,
            "gmail" => Self::Gmail,
            "outlook" => Self::Outlook,
            "yahoo" | "none" => Self::None,
            _ => return None,
        })
    }

    /// Writes the id of message number `sequence` of session `session` into `out`.
    pub fn write(self, session: u64, sequence: u64, out: &mut String) {
        let mut state = mix(session.rotate_left(20) ^ sequence);
        let mut next = || {
            state = mix(state);
            state
        };
        match self {
            Self::Hex12 => {
                push_upper_hex(out, u64::from(session as u32), 8);
                push_upper_hex(out, u64::from(sequence as u16), 4);
            }
            Self::PostfixLong => {
                push_base(out, &mut next, B52, 12);
                out.push('z');
                push_base(out, &mut next, B52, 5);
            }
            Self::Exim => {
                push_base(out, &mut next, B62, 6);
                out.push('-');
                push_base(out, &mut next, B62, 6);
                out.push('-');
                push_base(out, &mut next, B62, 2);
            }
            Self::Gmail => {
                let _ = write!(
                    out,
                    "{} {:013x}-{:x}si{}{}.{}",
                    1_700_000_000 + next() % 100_000_000,
                    next() & 0xf_ffff_ffff_ffff,
                    next() & 0xfff_ffff_ffff,
                    next() % 10_000_000,
                    ["qtb", "pjb", "ejc", "wra"][(next() % 4) as usize],
                    sequence + 1
                );
            }
            Self::Outlook => {
                let a = next();
                let b = next();
                let _ = write!(
                    out,
                    "<{:08X}-{:04X}-{:04X}-{:04X}-{:012X}>",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xffff,
                    b >> 48,
                    b & 0xffff_ffff_ffff
                );
            }
            Self::None => {}
        }
    }
}

const B52: &[u8] = b"BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy0123456789";
const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Writes the low `width` hex digits of `value`, upper case, zero-padded (as `{:0width$X}`).
fn push_upper_hex(out: &mut String, value: u64, width: u32) {
    for shift in (0..width).rev() {
        let digit = (value >> (shift * 4)) & 0xF;
        out.push(char::from(b"0123456789ABCDEF"[digit as usize]));
    }
}

fn push_base(out: &mut String, next: &mut impl FnMut() -> u64, alphabet: &[u8], count: usize) {
    for _ in 0..count {
        out.push(alphabet[(next() % alphabet.len() as u64) as usize] as char);
    }
}

/// SplitMix64's finalizer: a cheap, well-spread hash of a counter.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The 250 sent after a message is accepted: `250 <status> <before><queue id><after>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedReply {
    /// The enhanced status code (2.0.0 for most, 2.6.0 for Exchange).
    pub status: EnhancedStatus,
    /// Text before the queue id.
    pub before: String,
    /// Text after the queue id.
    pub after: String,
    /// How the queue id looks.
    pub style: QueueIdStyle,
}

impl Default for AcceptedReply {
    fn default() -> Self {
        Self {
            status: status(2, 0, 0),
            before: "Ok: queued as ".to_owned(),
            after: String::new(),
            style: QueueIdStyle::Hex12,
        }
    }
}

impl AcceptedReply {
    /// Builds it from a template holding `{queue_id}` once (or not at all).
    pub fn from_template(status: EnhancedStatus, template: &str, style: QueueIdStyle) -> Self {
        let (before, after) = template.split_once("{queue_id}").unwrap_or((template, ""));
        Self {
            status,
            before: before.to_owned(),
            after: after.to_owned(),
            style,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(style: QueueIdStyle, session: u64, sequence: u64) -> String {
        let mut out = String::new();
        style.write(session, sequence, &mut out);
        out
    }

    #[test]
    fn styles_look_like_their_systems() {
        assert_eq!(id(QueueIdStyle::Hex12, 7, 1), "000000070001");
        assert_eq!(
            id(QueueIdStyle::Hex12, 0x1_DEAD_BEEF, 0x1_ABCD),
            "DEADBEEFABCD"
        );
        let long = id(QueueIdStyle::PostfixLong, 7, 1);
        assert_eq!(long.len(), 18);
        assert_eq!(&long[12..13], "z");
        let exim = id(QueueIdStyle::Exim, 7, 1);
        assert_eq!(exim.split('-').map(str::len).collect::<Vec<_>>(), [6, 6, 2]);
        let gmail = id(QueueIdStyle::Gmail, 7, 1);
        assert!(gmail.contains("si") && gmail.ends_with(".2"), "{gmail}");
        let outlook = id(QueueIdStyle::Outlook, 7, 1);
        assert!(
            outlook.starts_with('<') && outlook.ends_with('>') && outlook.len() == 38,
            "{outlook}"
        );
        assert_eq!(id(QueueIdStyle::None, 7, 1), "");
    }

    #[test]
    fn ids_differ_between_messages_and_sessions() {
        for style in [
            QueueIdStyle::Hex12,
            QueueIdStyle::PostfixLong,
            QueueIdStyle::Exim,
            QueueIdStyle::Gmail,
        ] {
            let a = id(style, 1, 0);
            assert_ne!(a, id(style, 1, 1), "{style:?}");
            assert_ne!(a, id(style, 2, 0), "{style:?}");
            assert_eq!(a, id(style, 1, 0), "{style:?} is reproducible");
        }
    }

    #[test]
    fn template_splits_around_the_id() {
        let reply =
            AcceptedReply::from_template(status(2, 0, 0), "OK id={queue_id}", QueueIdStyle::Exim);
        assert_eq!(reply.before, "OK id=");
        assert_eq!(reply.after, "");
    }
}
