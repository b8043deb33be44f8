//! The reply catalog: named failures with their code, enhanced status code and, per flavor, the
//! wording real servers send, each with its public source.
//!
//! The data lives in `catalog.toml` beside this file, compiled into the binary and checked by the
//! tests below (every entry has a generic variant, codes fit their phase, class digits agree).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;

use super::flavor::Flavor;
use super::phase_codes;
use crate::smtp::address::domain_of;
use crate::smtp::policy::Phase;
use crate::smtp::queue_id::{mix, AcceptedReply, QueueIdStyle};
use crate::smtp::reply::{EnhancedStatus, Reply};

const CATALOG_TOML: &str = include_str!("catalog.toml");

/// The placeholders a catalog text may hold.
pub const PLACEHOLDERS: [&str; 8] = [
    "{rcpt}",
    "{sender}",
    "{ip}",
    "{host}",
    "{domain}",
    "{sender_domain}",
    "{id}",
    "{helo}",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    entry: Vec<EntryFile>,
    accepted: BTreeMap<String, AcceptedFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    name: String,
    summary: String,
    phase: String,
    flavor: BTreeMap<String, VariantFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantFile {
    code: u16,
    status: String,
    text: Vec<String>,
    source: String,
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptedFile {
    status: String,
    text: String,
    queue_id: String,
    source: String,
    note: Option<String>,
}

/// One flavor's wording of a catalog entry.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The reply code.
    pub code: u16,
    /// The enhanced status code.
    pub status: EnhancedStatus,
    /// The reply lines, with placeholders.
    pub text: Vec<String>,
    /// Where the wording comes from.
    pub source: String,
    /// What we adapted, if anything.
    pub note: Option<String>,
    /// The reply ready to send when the text has no placeholder.
    fixed: Option<Reply>,
}

/// One named failure.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The catalog name (`user_unknown`).
    pub name: String,
    /// One line saying what it is.
    pub summary: String,
    /// The phase where it naturally happens.
    pub phase: Phase,
    variants: [Option<Variant>; Flavor::ALL.len()],
}

impl Entry {
    /// The wording for `flavor`, or the generic one when that flavor has none; with the flavor used.
    pub fn variant(&self, flavor: Flavor) -> (&Variant, Flavor) {
        match &self.variants[flavor as usize] {
            Some(variant) => (variant, flavor),
            None => (
                self.variants[Flavor::Generic as usize]
                    .as_ref()
                    .expect("every entry has a generic variant (checked at load)"),
                Flavor::Generic,
            ),
        }
    }

    /// The flavors with wording of their own.
    pub fn flavors(&self) -> impl Iterator<Item = Flavor> + '_ {
        Flavor::ALL
            .into_iter()
            .filter(|f| self.variants[*f as usize].is_some())
    }
}

/// What placeholders are filled with.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyContext<'a> {
    /// The recipient address.
    pub rcpt: Option<&'a str>,
    /// The MAIL FROM address.
    pub sender: Option<&'a str>,
    /// The client IP, as text.
    pub ip: Option<&'a str>,
    /// Our host name.
    pub host: &'a str,
    /// The EHLO argument.
    pub helo: Option<&'a str>,
    /// The session id, from which a provider-style trace id is derived.
    pub session_id: u64,
    /// The time of the reply in milliseconds since the Unix epoch (Outlook's trace shows it).
    pub now_unix_ms: u64,
}

impl Variant {
    /// The reply with its placeholders filled in.
    pub fn render(&self, flavor: Flavor, context: &ReplyContext<'_>) -> Reply {
        if let Some(reply) = &self.fixed {
            return reply.clone();
        }
        let trace = trace_id(flavor, context.session_id, context.now_unix_ms);
        let lines: Vec<String> = self
            .text
            .iter()
            .map(|line| {
                line.replace("{rcpt}", context.rcpt.unwrap_or(""))
                    .replace("{sender}", context.sender.unwrap_or(""))
                    .replace("{ip}", context.ip.unwrap_or(""))
                    .replace("{host}", context.host)
                    .replace("{domain}", context.rcpt.map(domain_of).unwrap_or(""))
                    .replace(
                        "{sender_domain}",
                        context.sender.map(domain_of).unwrap_or(""),
                    )
                    .replace("{helo}", context.helo.unwrap_or(""))
                    .replace("{id}", &trace)
            })
            .collect();
        Reply::new(self.code, Some(self.status), &lines).unwrap_or_else(|_| {
            Reply::new(self.code, Some(self.status), &["failure"]).expect("valid")
        })
    }
}

/// A provider-style trace id, stable per session: Outlook's and Exchange's
/// `<ISO time> <16 hex>`, Orange's 13 letters and digits (`hhtzumeItI371`), Yandex's
/// `<epoch-like number>-<12 letters and digits>`, else Gmail's `d75a77b69052e-4e8a3b3c2f1si12345qtb.123`.
fn trace_id(flavor: Flavor, session_id: u64, now_unix_ms: u64) -> String {
    let a = mix(session_id);
    let b = mix(a);
    match flavor {
        Flavor::Outlook | Flavor::Exchange => {
            return format!("{} {:016X}", iso_time(now_unix_ms), a)
        }
        Flavor::Orange => return alphanumeric(a, 13),
        // An epoch-like number (2020-2026) drawn from the session, not the clock, so that a
        // session's replies are the same whenever it runs.
        Flavor::Yandex => {
            return format!(
                "{}-{}",
                1_600_000_000 + a % 200_000_000,
                alphanumeric(b, 12)
            )
        }
        _ => {}
    }
    format!(
        "{:013x}-{:011x}si{}qtb.{}",
        a & 0xf_ffff_ffff_ffff,
        b & 0xfff_ffff_ffff,
        b % 10_000_000,
        session_id % 1000
    )
}

/// `len` letters and digits drawn from `bits` (mixed again for every 10 characters).
fn alphanumeric(mut bits: u64, len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|i| {
            if i > 0 && i % 10 == 0 {
                bits = mix(bits);
            }
            let c = ALPHABET[(bits % 62) as usize] as char;
            bits /= 62;
            c
        })
        .collect()
}

/// `2026-08-05T12:37:17.626Z` from milliseconds since the epoch (proleptic Gregorian, UTC).
pub(crate) fn iso_time(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let days = (seconds / 86_400) as i64;
    let in_day = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        unix_ms % 1000
    )
}

/// The 250 wording of a flavor.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// How the reply is built.
    pub reply: AcceptedReply,
    /// Where the wording comes from.
    pub source: String,
    /// What we adapted.
    pub note: Option<String>,
}

/// The longest entry name the catalog accepts (names are lower case, checked when it loads).
const MAX_NAME: usize = 64;

/// The whole catalog.
#[derive(Debug)]
pub struct Catalog {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    accepted: Vec<Accepted>,
}

/// The catalog data is inconsistent (caught by the tests, never at run time).
#[derive(Debug, thiserror::Error)]
#[error("catalog.toml: {0}")]
pub struct CatalogError(String);

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse(CATALOG_TOML).expect("the built-in catalog is valid (tested)")
        })
    }

    fn parse(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| CatalogError(e.to_string()))?;
        let mut entries = Vec::with_capacity(file.entry.len());
        let mut index = HashMap::new();
        for entry in file.entry {
            let phase = parse_phase(&entry.phase).ok_or_else(|| {
                CatalogError(format!("{}: unknown phase {:?}", entry.name, entry.phase))
            })?;
            let mut variants: [Option<Variant>; Flavor::ALL.len()] = Default::default();
            for (flavor_name, variant) in entry.flavor {
                let flavor: Flavor = flavor_name
                    .parse()
                    .map_err(|e| CatalogError(format!("{}: {e}", entry.name)))?;
                variants[flavor as usize] =
                    Some(check_variant(&entry.name, flavor, phase, variant)?);
            }
            if variants[Flavor::Generic as usize].is_none() {
                return Err(CatalogError(format!("{}: no generic variant", entry.name)));
            }
            if entry.name.len() > MAX_NAME
                || !entry
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(CatalogError(format!(
                    "{}: a name is at most {MAX_NAME} lower-case letters, digits and _",
                    entry.name
                )));
            }
            if index.insert(entry.name.clone(), entries.len()).is_some() {
                return Err(CatalogError(format!("{}: defined twice", entry.name)));
            }
            entries.push(Entry {
                name: entry.name,
                summary: entry.summary,
                phase,
                variants,
            });
        }
        let mut accepted: Vec<Accepted> = Vec::new();
        for flavor in Flavor::ALL {
            // A flavor without a public source for its 250 uses the generic wording.
            let file = match file.accepted.get(flavor.as_str()) {
                Some(file) => file,
                None if flavor == Flavor::Generic => {
                    return Err(CatalogError("no [accepted.generic]".to_owned()))
                }
                None => {
                    accepted.push(accepted[Flavor::Generic as usize].clone());
                    continue;
                }
            };
            let status = EnhancedStatus::parse(&file.status)
                .filter(|s| s.class == 2)
                .ok_or_else(|| {
                    CatalogError(format!("accepted.{flavor}: bad status {:?}", file.status))
                })?;
            let style = QueueIdStyle::from_name(&file.queue_id).ok_or_else(|| {
                CatalogError(format!(
                    "accepted.{flavor}: unknown queue_id {:?}",
                    file.queue_id
                ))
            })?;
            accepted.push(Accepted {
                reply: AcceptedReply::from_template(status, &file.text, style),
                source: file.source.clone(),
                note: file.note.clone(),
            });
        }
        Ok(Self {
            entries,
            index,
            accepted,
        })
    }

    /// Every entry, in catalog order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// The entry with this name, ignoring ASCII case (for magic addresses: every recipient is
    /// asked, so this is one lookup without allocating, not a scan of the catalog).
    pub fn get_ignore_case(&self, name: &str) -> Option<&Entry> {
        if name.len() > MAX_NAME {
            return None;
        }
        let mut lower = [0u8; MAX_NAME];
        let lower = &mut lower[..name.len()];
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        self.get(std::str::from_utf8(lower).ok()?)
    }

    /// The 250 wording of a flavor.
    pub fn accepted(&self, flavor: Flavor) -> &Accepted {
        &self.accepted[flavor as usize]
    }

    /// The generic entry whose code (and status, when given) match, for code addresses.
    pub fn by_code(&self, code: u16, status: Option<EnhancedStatus>) -> Option<&Entry> {
        let generic = |e: &&Entry| e.variant(Flavor::Generic).0.clone();
        self.entries
            .iter()
            .find(|e| {
                let v = generic(e);
                v.code == code && status.is_none_or(|s| s == v.status)
            })
            .or_else(|| self.entries.iter().find(|e| generic(e).code == code))
    }
}

fn check_variant(
    name: &str,
    flavor: Flavor,
    phase: Phase,
    file: VariantFile,
) -> Result<Variant, CatalogError> {
    let here = |what: String| CatalogError(format!("{name} ({flavor}): {what}"));
    let status = EnhancedStatus::parse(&file.status)
        .ok_or_else(|| here(format!("bad status {:?}", file.status)))?;
    if !phase_codes::is_allowed(phase, file.code) {
        return Err(here(format!(
            "{} {}",
            file.code,
            phase_codes::describe(phase)
        )));
    }
    for line in &file.text {
        let mut rest = line.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| here(format!("unclosed brace in {line:?}")))?;
            let placeholder = &rest[open..open + close + 1];
            if !PLACEHOLDERS.contains(&placeholder) {
                return Err(here(format!("unknown placeholder {placeholder}")));
            }
            rest = &rest[open + close + 1..];
        }
    }
    let fixed = if file.text.iter().any(|l| l.contains('{')) {
        None
    } else {
        Some(Reply::new(file.code, Some(status), &file.text).map_err(|e| here(e.to_string()))?)
    };
    // Building with sample values proves the reply is well formed (class digits, no CR/LF).
    Reply::new(file.code, Some(status), &file.text).map_err(|e| here(e.to_string()))?;
    Ok(Variant {
        code: file.code,
        status,
        text: file.text,
        source: file.source,
        note: file.note,
        fixed,
    })
}

/// Parses a phase name as used in scenario files.
pub fn parse_phase(name: &str) -> Option<Phase> {
    Phase::ALL.into_iter().find(|p| p.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [&str; 27] = [
        "user_unknown",
        "mailbox_disabled",
        "mailbox_full",
        "message_too_large",
        "domain_not_found",
        "relay_denied",
        "sender_rejected",
        "sender_domain_not_found",
        "spam_rejected",
        "policy_rejected",
        "ip_blocklisted",
        "rate_limited",
        "too_many_connections",
        "too_many_recipients",
        "greylisted",
        "auth_failed",
        "auth_required",
        "account_blocked_spam",
        "account_expired",
        "tls_required",
        "service_unavailable",
        "local_error",
        "insufficient_storage",
        "timeout",
        "syntax_error",
        "bad_sequence",
        "not_implemented",
    ];

    #[test]
    fn builtin_catalog_loads_and_has_every_required_name() {
        let catalog = Catalog::builtin();
        for name in REQUIRED {
            assert!(catalog.get(name).is_some(), "missing catalog entry {name}");
        }
    }

    #[test]
    fn every_seed_code_is_reachable_by_a_name() {
        let catalog = Catalog::builtin();
        let seed_codes = [
            420, 421, 432, 449, 450, 451, 452, 455, 500, 501, 502, 503, 504, 535, 550, 551, 552,
            553, 554, 555,
        ];
        for code in seed_codes {
            assert!(
                catalog
                    .entries()
                    .iter()
                    .any(|e| e.variant(Flavor::Generic).0.code == code),
                "no catalog name gives {code}"
            );
        }
    }

    #[test]
    fn every_variant_has_a_source_and_renders() {
        let context = ReplyContext {
            rcpt: Some("user@example.com"),
            sender: Some("sender@example.org"),
            ip: Some("192.0.2.7"),
            host: "mx.failmail.test",
            helo: Some("client.example"),
            session_id: 42,
            now_unix_ms: 1_754_397_437_626,
        };
        for entry in Catalog::builtin().entries() {
            for flavor in entry.flavors() {
                let (variant, used) = entry.variant(flavor);
                assert_eq!(used, flavor);
                assert!(
                    !variant.source.trim().is_empty(),
                    "{} {flavor} has no source",
                    entry.name
                );
                let reply = variant.render(flavor, &context);
                let text = String::from_utf8(reply.wire().to_vec()).unwrap();
                assert!(
                    !text.contains('{'),
                    "{} {flavor}: unfilled placeholder in {text}",
                    entry.name
                );
                let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
                for (i, line) in lines.iter().enumerate() {
                    let separator = if i + 1 == lines.len() { ' ' } else { '-' };
                    let head = format!("{}{}{}", variant.code, separator, variant.status);
                    assert!(
                        line.starts_with(&head),
                        "{} {flavor}: {line:?} lacks {head:?}",
                        entry.name
                    );
                }
            }
        }
    }

    #[test]
    fn missing_flavor_falls_back_to_generic() {
        let catalog = Catalog::builtin();
        let entry = catalog
            .entries()
            .iter()
            .find(|e| e.flavors().count() < Flavor::ALL.len())
            .expect("some entry lacks a flavor");
        let missing = Flavor::ALL
            .into_iter()
            .find(|f| !entry.flavors().any(|g| g == *f))
            .unwrap();
        assert_eq!(entry.variant(missing).1, Flavor::Generic);
    }

    #[test]
    fn accepted_wording_for_every_flavor() {
        let catalog = Catalog::builtin();
        for flavor in Flavor::ALL {
            let accepted = catalog.accepted(flavor);
            assert_eq!(accepted.reply.status.class, 2, "{flavor}");
            assert!(!accepted.source.is_empty(), "{flavor}");
        }
    }

    #[test]
    fn outlook_trace_carries_an_iso_time() {
        assert_eq!(iso_time(1_754_397_437_626), "2025-08-05T12:37:17.626Z");
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert!(trace_id(Flavor::Outlook, 1, 0).starts_with("1970-01-01T00:00:00.000Z "));
        assert!(trace_id(Flavor::Gmail, 1, 0).contains("si"));
        let orange = trace_id(Flavor::Orange, 1, 0);
        assert_eq!(orange.len(), 13, "{orange}");
        assert!(
            orange.chars().all(|c| c.is_ascii_alphanumeric()),
            "{orange}"
        );
        let yandex = trace_id(Flavor::Yandex, 1, 0);
        let (number, token) = yandex.split_once('-').expect("number-token");
        assert_eq!(number.len(), 10, "{yandex}");
        assert!(number.chars().all(|c| c.is_ascii_digit()), "{yandex}");
        assert_eq!(token.len(), 12, "{yandex}");
        assert_eq!(
            yandex,
            trace_id(Flavor::Yandex, 1, 9_999_999),
            "not from the clock"
        );
    }

    #[test]
    fn bad_catalog_data_is_refused() {
        let base = r#"
[[entry]]
name = "x"
summary = "s"
phase = "rcpt"
[entry.flavor.generic]
code = CODE
status = "STATUS"
text = ["TEXT"]
source = "test"
[accepted.generic]
status = "2.0.0"
text = "ok {queue_id}"
queue_id = "hex12"
source = "t"
"#;
        let make = |code: &str, status: &str, text: &str| {
            base.replace("CODE", code)
                .replace("STATUS", status)
                .replace("TEXT", text)
        };
        let error = Catalog::parse(&make("354", "5.0.0", "x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("354"), "{error}");
        let error = Catalog::parse(&make("550", "4.1.1", "x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not match"), "{error}");
        let error = Catalog::parse(&make("550", "5.1.1", "{nope}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("placeholder"), "{error}");
    }
}
