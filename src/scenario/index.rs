//! The rule index: finds the few rules that can match a session without trying them all.
//!
//! A scenario may hold thousands of rules, and every SMTP phase asks "which rule, in file order,
//! matches first?". Trying each rule costs a pattern match per rule per phase; the index answers
//! with a handful of hash lookups and one `RegexSet` pass instead. Each rule is filed under one
//! value it looks at (the most selective that can be indexed: recipient, sender, AUTH identity,
//! HELO, then client IP):
//!
//! - exact patterns in a hash map;
//! - globs by their literal prefix (before the first wildcard) and suffix (after the last): a
//!   value that matches has both, so one lookup per distinct prefix/suffix length pair finds it;
//! - regexes in `RegexSet`s per value (one, unless the regexes are too big for one set: then
//!   the set is split in halves until each part fits);
//! - CIDR blocks by their masked network (one lookup per distinct prefix length).
//!
//! Rules that fit none of these (globs such as `*@*` with neither prefix nor suffix, no matcher
//! at all) are always candidates. The index
//! only narrows: every candidate is still checked in full by the engine, in file order, so the
//! first rule that matches is the same as with a plain scan (a property test checks that).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use regex::{RegexSet, RegexSetBuilder};
use smallvec::SmallVec;

use super::pattern::{Cidr, Pattern, PatternList};
use super::rule::{Matchers, Rule};
use crate::smtp::policy::{Phase, SessionView};

/// Separates a glob's prefix from its suffix in an index key; never occurs in UTF-8.
const AFFIX_SEPARATOR: u8 = 0xFF;

/// Candidate rule positions found by lookups; most lookups find none or a few.
type Hits = SmallVec<[u32; 8]>;

/// Past this many hits the collected positions are sorted and deduplicated before more are
/// added, so a message to many recipients that hit the same rules holds each rule once.
const HITS_BEFORE_DEDUP: usize = 64;

/// The compiled size one regex set may take (the `regex` crate's own default limit).
const REGEX_SET_SIZE_LIMIT: usize = 10 << 20;

/// The most regexes compiled into one set. Building a set holds every pattern's syntax tree at
/// once: 10,000 regexes in one set took about 100 MB while it was built, in chunks a fraction
/// of that, for a few more set searches per lookup when a field has that many regexes.
const REGEX_SET_PATTERNS: usize = 1000;

/// The index of every phase's rules.
#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    phases: [PhaseIndex; Phase::ALL.len()],
}

impl RuleIndex {
    /// Files every rule under its phase.
    pub(crate) fn build(rules: &[Rule]) -> Self {
        Self::build_with(rules, REGEX_SET_SIZE_LIMIT)
    }

    /// Builds with a given size limit for each regex set (small in tests, to make sets split).
    fn build_with(rules: &[Rule], regex_set_size_limit: usize) -> Self {
        let mut builders: [PhaseBuilder; Phase::ALL.len()] = Default::default();
        for rule in rules {
            builders[rule.phase as usize].add(rule);
        }
        Self {
            phases: builders.map(|builder| builder.finish(regex_set_size_limit)),
        }
    }

    /// The positions of the rules acting at `phase` that may match `view`, ascending (file
    /// order). A superset of the rules that match: check each in full.
    pub(crate) fn candidates<'a>(&'a self, phase: Phase, view: &SessionView<'_>) -> Candidates<'a> {
        Candidates {
            hits: self.hits(phase, view).into_iter().peekable(),
            always: self.phases[phase as usize]
                .always
                .iter()
                .copied()
                .peekable(),
        }
    }

    /// The lookups' hits, ascending and each once.
    fn hits(&self, phase: Phase, view: &SessionView<'_>) -> Hits {
        let index = &self.phases[phase as usize];
        let mut hits = Hits::new();
        if phase == Phase::Rcpt {
            index.text[Field::Rcpt as usize].lookup(view.rcpt, &mut hits);
        } else {
            for rcpt in view.recipients {
                index.text[Field::Rcpt as usize].lookup(Some(rcpt), &mut hits);
                if hits.len() > HITS_BEFORE_DEDUP {
                    hits.sort_unstable();
                    hits.dedup();
                }
            }
        }
        index.text[Field::MailFrom as usize].lookup(view.mail_from, &mut hits);
        index.text[Field::AuthUser as usize].lookup(view.auth_user, &mut hits);
        index.text[Field::Helo as usize].lookup(view.helo, &mut hits);
        index.ip.lookup(view.peer.ip(), &mut hits);
        hits.sort_unstable();
        hits.dedup();
        hits
    }
}

/// Candidate rule positions in ascending order: the lookups' hits merged with the rules that are
/// always candidates.
pub(crate) struct Candidates<'a> {
    hits: std::iter::Peekable<smallvec::IntoIter<[u32; 8]>>,
    always: std::iter::Peekable<std::iter::Copied<std::slice::Iter<'a, u32>>>,
}

impl Iterator for Candidates<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match (self.hits.peek(), self.always.peek()) {
            (Some(&hit), Some(&always)) if always < hit => self.always.next(),
            (Some(&hit), Some(&always)) if always == hit => {
                self.always.next();
                self.hits.next()
            }
            (Some(_), _) => self.hits.next(),
            (None, _) => self.always.next(),
        }
    }
}

/// The text values a rule can be filed under, most selective first.
#[derive(Debug, Clone, Copy)]
enum Field {
    Rcpt,
    MailFrom,
    AuthUser,
    Helo,
}

impl Field {
    const ALL: [Field; 4] = [Field::Rcpt, Field::MailFrom, Field::AuthUser, Field::Helo];

    fn patterns(self, matchers: &Matchers) -> Option<&PatternList> {
        match self {
            Field::Rcpt => matchers.rcpt.as_ref(),
            Field::MailFrom => matchers.mail_from.as_ref(),
            Field::AuthUser => matchers.auth_user.as_ref(),
            Field::Helo => matchers.helo.as_ref(),
        }
    }
}

/// One phase's index.
#[derive(Debug, Default)]
struct PhaseIndex {
    text: [TextIndex; Field::ALL.len()],
    ip: IpIndex,
    always: Vec<u32>,
}

/// Rules filed under one text value.
#[derive(Debug, Default)]
struct TextIndex {
    /// Lower-cased exact values.
    exact: HashMap<Box<[u8]>, Vec<u32>>,
    /// Lower-cased `prefix 0xFF suffix` of globs.
    affix: HashMap<Box<[u8]>, Vec<u32>>,
    /// The distinct (prefix length, suffix length) pairs in `affix`.
    affix_shapes: Vec<(usize, usize)>,
    /// Every regex, in one or more sets, and the rule of each.
    regexes: Vec<(RegexSet, Vec<u32>)>,
}

impl TextIndex {
    fn lookup(&self, value: Option<&str>, hits: &mut Hits) {
        let Some(value) = value else { return };
        if self.exact.is_empty() && self.affix.is_empty() && self.regexes.is_empty() {
            return;
        }
        let mut lower: SmallVec<[u8; 256]> = SmallVec::from_slice(value.as_bytes());
        lower.make_ascii_lowercase();
        if let Some(rules) = self.exact.get(&lower[..]) {
            hits.extend_from_slice(rules);
        }
        let mut key: SmallVec<[u8; 256]> = SmallVec::new();
        for &(prefix, suffix) in &self.affix_shapes {
            if prefix + suffix > lower.len() {
                continue;
            }
            key.clear();
            key.extend_from_slice(&lower[..prefix]);
            key.push(AFFIX_SEPARATOR);
            key.extend_from_slice(&lower[lower.len() - suffix..]);
            if let Some(rules) = self.affix.get(&key[..]) {
                hits.extend_from_slice(rules);
            }
        }
        for (set, rules) in &self.regexes {
            // `is_match` needs no allocation; the slower `matches` runs only on a hit.
            if set.is_match(value) {
                hits.extend(set.matches(value).into_iter().map(|i| rules[i]));
            }
        }
    }
}

/// Rules filed under the client IP.
#[derive(Debug, Default)]
struct IpIndex {
    /// Masked network and prefix length.
    blocks: HashMap<(IpAddr, u8), Vec<u32>>,
    /// The distinct prefix lengths of IPv4 and of IPv6 blocks.
    v4_prefixes: Vec<u8>,
    v6_prefixes: Vec<u8>,
}

impl IpIndex {
    fn lookup(&self, ip: IpAddr, hits: &mut Hits) {
        if self.blocks.is_empty() {
            return;
        }
        let ip = Cidr::normalize(ip);
        let prefixes = if ip.is_ipv4() {
            &self.v4_prefixes
        } else {
            &self.v6_prefixes
        };
        for &prefix in prefixes {
            if let Some(rules) = self.blocks.get(&(Cidr::mask(ip, prefix), prefix)) {
                hits.extend_from_slice(rules);
            }
        }
    }
}

#[derive(Default)]
struct PhaseBuilder {
    text: [TextBuilder; Field::ALL.len()],
    ip: IpIndex,
    always: Vec<u32>,
}

#[derive(Default)]
struct TextBuilder {
    index: TextIndex,
    shapes: HashSet<(usize, usize)>,
    regexes: Vec<(String, u32)>,
}

impl PhaseBuilder {
    fn add(&mut self, rule: &Rule) {
        let matchers = &rule.matchers;
        for field in Field::ALL {
            if let Some(list) = field.patterns(matchers) {
                if list.0.iter().all(indexable) {
                    self.text[field as usize].add(list, rule.index);
                    return;
                }
            }
        }
        if let Some(blocks) = &matchers.client_ip {
            for block in blocks {
                let prefix = block.prefix();
                let network = Cidr::mask(block.network(), prefix);
                self.ip
                    .blocks
                    .entry((network, prefix))
                    .or_default()
                    .push(rule.index);
                let prefixes = if network.is_ipv4() {
                    &mut self.ip.v4_prefixes
                } else {
                    &mut self.ip.v6_prefixes
                };
                if !prefixes.contains(&prefix) {
                    prefixes.push(prefix);
                }
            }
            return;
        }
        self.always.push(rule.index);
    }

    fn finish(self, regex_set_size_limit: usize) -> PhaseIndex {
        let mut always = self.always;
        let text = self
            .text
            .map(|builder| builder.finish(regex_set_size_limit, &mut always));
        always.sort_unstable();
        // A rule with several regexes that fit no set would be here once per regex.
        always.dedup();
        PhaseIndex {
            text,
            ip: self.ip,
            always,
        }
    }
}

impl TextBuilder {
    fn add(&mut self, list: &PatternList, rule: u32) {
        for pattern in &list.0 {
            match pattern {
                Pattern::Exact(text) => push(&mut self.index.exact, text.as_bytes(), rule),
                Pattern::Glob(glob) => {
                    let (prefix, suffix) = glob_affixes(glob);
                    let mut key = prefix.as_bytes().to_vec();
                    key.push(AFFIX_SEPARATOR);
                    key.extend_from_slice(suffix.as_bytes());
                    push(&mut self.index.affix, &key, rule);
                    self.shapes.insert((prefix.len(), suffix.len()));
                }
                Pattern::Regex(regex) => self.regexes.push((regex.as_str().to_owned(), rule)),
            }
        }
    }

    /// Builds the regex sets; a regex that fits no set (too large even alone) makes its rule
    /// always a candidate, which is slower but still right.
    fn finish(mut self, regex_set_size_limit: usize, always: &mut Vec<u32>) -> TextIndex {
        let mut shapes: Vec<_> = self.shapes.into_iter().collect();
        shapes.sort_unstable();
        self.index.affix_shapes = shapes;
        build_regex_sets(
            &self.regexes,
            regex_set_size_limit,
            &mut self.index.regexes,
            always,
        );
        for rules in self
            .index
            .exact
            .values_mut()
            .chain(self.index.affix.values_mut())
        {
            rules.dedup();
        }
        self.index
    }
}

/// Compiles `regexes` into sets of at most [`REGEX_SET_PATTERNS`] that fit `size_limit`: each
/// chunk in one set if it fits, else each half on its own, and so on down to single regexes.
fn build_regex_sets(
    regexes: &[(String, u32)],
    size_limit: usize,
    sets: &mut Vec<(RegexSet, Vec<u32>)>,
    always: &mut Vec<u32>,
) {
    for chunk in regexes.chunks(REGEX_SET_PATTERNS) {
        build_regex_set(chunk, size_limit, sets, always);
    }
}

fn build_regex_set(
    regexes: &[(String, u32)],
    size_limit: usize,
    sets: &mut Vec<(RegexSet, Vec<u32>)>,
    always: &mut Vec<u32>,
) {
    if regexes.is_empty() {
        return;
    }
    let built = RegexSetBuilder::new(regexes.iter().map(|(source, _)| source))
        .size_limit(size_limit)
        .build();
    match built {
        Ok(set) => sets.push((set, regexes.iter().map(|&(_, rule)| rule).collect())),
        Err(_) if regexes.len() == 1 => always.push(regexes[0].1),
        Err(_) => {
            let (first, second) = regexes.split_at(regexes.len() / 2);
            build_regex_set(first, size_limit, sets, always);
            build_regex_set(second, size_limit, sets, always);
        }
    }
}

/// Whether a pattern can be filed: exact, a regex, or a glob with a literal prefix or suffix.
fn indexable(pattern: &Pattern) -> bool {
    match pattern {
        Pattern::Exact(_) | Pattern::Regex(_) => true,
        Pattern::Glob(glob) => {
            let (prefix, suffix) = glob_affixes(glob);
            !prefix.is_empty() || !suffix.is_empty()
        }
    }
}

/// A glob's literal text before its first wildcard and after its last (`*` or `?`).
fn glob_affixes(glob: &str) -> (&str, &str) {
    let first = glob.find(['*', '?']).unwrap_or(glob.len());
    let last = glob.rfind(['*', '?']).map_or(glob.len(), |i| i + 1);
    (&glob[..first], &glob[last.max(first)..])
}

fn push(map: &mut HashMap<Box<[u8]>, Vec<u32>>, key: &[u8], rule: u32) {
    map.entry(key.into()).or_default().push(rule);
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
