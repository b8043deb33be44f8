//! Matchers for scenario rules: exact text, globs, `/regex/`, lists of them, and CIDR blocks.
//!
//! Text matching ignores ASCII case (addresses and host names are compared case-insensitively by
//! every real MTA); regexes are taken as written (add `(?i)` to ignore case). Nothing allocates
//! while matching, but a rule's own regex is compiled the first time it is asked ([`LazyRegex`]).

use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;
use regex_automata::nfa::thompson;

/// One compiled text pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Equal, ignoring ASCII case.
    Exact(Box<str>),
    /// `*` (any run) and `?` (one character), ignoring ASCII case.
    Glob(Box<str>),
    /// A regular expression, searched (anchor it with `^…$` to match whole values). Boxed:
    /// the other kinds are far more common and a pattern is as large as its largest kind.
    Regex(Box<LazyRegex>),
}

/// The NFA size limit of the `regex` crate's defaults: a regex within it compiles.
const REGEX_SIZE_LIMIT: usize = 10 << 20;

/// A regex checked when the scenario loads and compiled on first use.
///
/// Compiling a regex (with the DFA the `regex` crate builds for small ones) costs tens of
/// microseconds and kilobytes: of a scenario of 100,000 rules with 20,000 regexes, that was most
/// of the load time and memory. The rule index matches every regex of a field at once in its own
/// sets, so a rule's own regex is needed only when that rule is a candidate; checking the syntax
/// and the compiled size at load (the NFA alone, then dropped) keeps every error at load time.
#[derive(Debug, Clone)]
pub struct LazyRegex {
    source: Box<str>,
    compiled: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    /// Checks `source` as the `regex` crate would compile it; the error is its explanation.
    fn new(source: &str) -> Result<Self, String> {
        let last_line = |text: String| text.lines().last().unwrap_or("").trim().to_owned();
        let hir =
            regex_automata::util::syntax::parse(source).map_err(|e| last_line(e.to_string()))?;
        thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build_from_hir(&hir)
            .map_err(|e| last_line(e.to_string()))?;
        Ok(Self {
            source: source.into(),
            compiled: OnceLock::new(),
        })
    }

    /// The regex as written (without its slashes).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the regex matches somewhere in `value` (compiled on the first call).
    pub fn is_match(&self, value: &str) -> bool {
        self.compiled
            .get_or_init(|| Regex::new(&self.source).ok())
            .as_ref()
            .is_some_and(|regex| regex.is_match(value))
    }
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The regex does not compile.
    #[error("bad regex {pattern}: {reason}")]
    Regex {
        /// The pattern as written.
        pattern: String,
        /// The regex crate's explanation.
        reason: String,
    },
    /// The CIDR block does not parse.
    #[error("bad CIDR block {0:?} (expected an IP address or address/prefix, e.g. 192.0.2.0/24 or 2001:db8::/32)")]
    Cidr(String),
}

impl Pattern {
    /// Compiles `text`: `/…/` is a regex, text with `*` or `?` a glob, anything else exact
    /// (`""` is exact too: it matches the null sender `<>`).
    pub fn compile(text: &str) -> Result<Self, PatternError> {
        if text.len() >= 2 && text.starts_with('/') && text.ends_with('/') {
            let source = &text[1..text.len() - 1];
            return LazyRegex::new(source)
                .map(|regex| Pattern::Regex(Box::new(regex)))
                .map_err(|reason| PatternError::Regex {
                    pattern: text.to_owned(),
                    reason,
                });
        }
        if text.contains(['*', '?']) {
            Ok(Pattern::Glob(text.to_ascii_lowercase().into_boxed_str()))
        } else {
            Ok(Pattern::Exact(text.to_ascii_lowercase().into_boxed_str()))
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact.eq_ignore_ascii_case(value),
            Pattern::Glob(glob) => glob_match(glob.as_bytes(), value.as_bytes()),
            Pattern::Regex(regex) => regex.is_match(value),
        }
    }
}

/// Glob matching with `*` and `?`, ASCII case-insensitive, linear time (one backtrack point).
fn glob_match(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == value[v].to_ascii_lowercase())
        {
            p += 1;
            v += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, v));
            p += 1;
        } else if let Some((star_p, star_v)) = star {
            p = star_p + 1;
            v = star_v + 1;
            star = Some((star_p, star_v + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A list of patterns; matches when any does.
#[derive(Debug, Clone, Default)]
pub struct PatternList(pub Box<[Pattern]>);

impl PatternList {
    /// Whether any pattern matches `value`.
    pub fn matches(&self, value: &str) -> bool {
        self.0.iter().any(|p| p.matches(value))
    }
}

/// An IP block, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `192.0.2.0/24`, `2001:db8::/32` or a single address.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let bad = || PatternError::Cidr(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = Self::normalize(ip);
        ip.is_ipv4() == self.network.is_ipv4()
            && Self::mask(ip, self.prefix) == Self::mask(self.network, self.prefix)
    }

    /// The address as written (host bits kept); with [`Cidr::prefix`], what the rule index files.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) as the IPv4 address they carry, so that a
    /// dual-stack listener's peers match IPv4 blocks.
    pub fn normalize(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        }
    }

    /// `ip` with every bit past the first `prefix` cleared (a `prefix` past the family's width
    /// keeps every bit).
    pub fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32u32.saturating_sub(u32::from(prefix)))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(u32::from(prefix)))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_glob_and_regex() {
        let exact = Pattern::compile("Bob@Example.com").unwrap();
        assert!(exact.matches("bob@example.COM"));
        assert!(!exact.matches("bob@example.org"));
        let glob = Pattern::compile("*@nowhere.example").unwrap();
        assert!(glob.matches("anyone@NOWHERE.example"));
        assert!(!glob.matches("anyone@nowhere.example.org"));
        let glob = Pattern::compile("flaky?@*").unwrap();
        assert!(glob.matches("flaky1@x"));
        assert!(!glob.matches("flaky@x"));
        assert!(Pattern::compile("a*b*c").unwrap().matches("aXXbYYbZZc"));
        assert!(!Pattern::compile("a*b*c").unwrap().matches("aXXbYYbZZ"));
        let regex = Pattern::compile("/^user[0-9]+@/").unwrap();
        assert!(regex.matches("user42@x"));
        assert!(!regex.matches("USER42@x"));
    }

    #[test]
    fn bad_patterns() {
        assert!(matches!(
            Pattern::compile("/(unclosed/"),
            Err(PatternError::Regex { .. })
        ));
        // Too large to compile: refused at load, as the regex crate would refuse it.
        let huge = Pattern::compile("/(\\w{1000}){1000}/").unwrap_err();
        assert!(huge.to_string().contains("exceeded limit"), "{huge}");
        let null = Pattern::compile("").unwrap();
        assert!(null.matches(""));
        assert!(!null.matches("a@b"));
    }

    #[test]
    fn cidr_blocks() {
        let block = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(block.contains("192.0.2.200".parse().unwrap()));
        assert!(!block.contains("192.0.3.1".parse().unwrap()));
        assert!(block.contains("::ffff:192.0.2.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("203.0.113.1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.1".parse().unwrap()));
        for bad in ["192.0.2.0/33", "nope", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_at_and_past_the_family_width() {
        let v4: IpAddr = "192.0.2.77".parse().unwrap();
        assert_eq!(Cidr::mask(v4, 0), "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(Cidr::mask(v4, 24), "192.0.2.0".parse::<IpAddr>().unwrap());
        assert_eq!(Cidr::mask(v4, 32), v4);
        assert_eq!(Cidr::mask(v4, 33), v4, "never a panic, every bit kept");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(Cidr::mask(v6, 32), "2001:db8::".parse::<IpAddr>().unwrap());
        assert_eq!(Cidr::mask(v6, 128), v6);
        assert_eq!(Cidr::mask(v6, 200), v6);
    }
}
