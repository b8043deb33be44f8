//! Large scenario files, parsed in pieces of rules: a fraction of the memory.
//!
//! The TOML parser builds a document of the whole file, and then the file's whole mirror
//! ([`ScenarioFile`]) is made from it, before a single rule is compiled: for 100,000 rules,
//! about 150 MB at once. A file laid out as usual (its sections first, then `[[rule]]` tables,
//! with no multi-line string) is cut before every thousandth `[[rule]]` header instead; the
//! first piece holds the sections, and each piece is parsed and its rules compiled before the
//! next is read, positions still counted in the whole file. Anything unusual (a section after
//! the rules, a multi-line string, a piece that does not load) makes the file load in one
//! piece, exactly as it always did, errors included.

use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::{recover, Context, Scenario, ScenarioErrors};
use crate::scenario::file::{RuleFile, ScenarioFile};
use crate::scenario::index::RuleIndex;
use crate::scenario::rule::Voice;
use crate::scenario::settings::{GreylistSettings, LimitSettings, ServerSettings};
use crate::smtp::policy::Phase;

/// `[[rule]]` tables per piece.
const RULES_PER_PIECE: usize = 1000;

/// Where to cut `source`: the first piece holds everything before a rule header, each other
/// piece starts at one; `None` when the file should load in one piece.
pub(super) fn split(source: &str) -> Option<Vec<Range<usize>>> {
    if source.contains("\"\"\"") || source.contains("'''") {
        return None;
    }
    let mut cuts = vec![0];
    let (mut rules, mut offset) = (0, 0);
    for line in source.split_inclusive('\n') {
        let header = line.split('#').next().unwrap_or("").trim();
        if header == "[[rule]]" {
            if rules % RULES_PER_PIECE == 0 {
                cuts.push(offset);
            }
            rules += 1;
        } else if header.starts_with('[')
            && rules > 0
            && !header.starts_with("[rule.")
            && !header.starts_with("[[rule.")
        {
            // A section after the rules, or a line of a multi-line array: not cut.
            return None;
        }
        offset += line.len();
    }
    if cuts.len() <= 2 {
        return None;
    }
    cuts.push(source.len());
    let mut pieces: Vec<Range<usize>> = cuts.windows(2).map(|w| w[0]..w[1]).collect();
    pieces.retain(|piece| !piece.is_empty() || piece.start == 0);
    Some(pieces)
}

impl Scenario {
    /// Checks and compiles `source` in `pieces` (see [`split`]): the first holds the sections,
    /// the others only `[[rule]]` tables. With `recover`, a first piece that does not fit the
    /// format has each of its parts checked on its own (see [`recover`]).
    pub(super) fn check_pieces(
        origin: &str,
        source: &str,
        pieces: &[Range<usize>],
        recover: bool,
    ) -> Result<Self, ScenarioErrors> {
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', source.as_bytes()).map(|i| i + 1))
            .collect();
        let shared_origin: Arc<str> = Arc::from(origin);
        let context = |piece: &Range<usize>| Context {
            origin,
            shared_origin: shared_origin.clone(),
            source,
            line_starts: &line_starts,
            base: piece.start,
        };
        let head = context(&pieces[0]);
        let mut file = match head.toml(&pieces[0]) {
            Ok(file) => file,
            Err(error) if recover => return Err(recover::each_part(&head, &error)),
            Err(error) => return Err(head.toml_error(&error).into()),
        };
        if pieces.len() > 1 && !file.rules.is_empty() {
            return Err(head
                .error(0..0, "rules before the first [[rule]] header", None)
                .into());
        }
        let mut errors = ScenarioErrors::default();
        let (server, limits, greylisting) = head.sections(&mut file, &mut errors);
        // Sized once: doubling a vector of 100,000 rules wastes a third of it and copies it.
        let headers = memchr::memmem::find_iter(source.as_bytes(), "[[rule]]").count();
        let mut rules = Vec::with_capacity(file.rules.len().max(headers));
        let mut by_phase: [Vec<u32>; Phase::ALL.len()] = Default::default();
        let mut next_index = 0u32;
        let mut compile =
            |context: &Context, list: Vec<Spanned<RuleFile>>, errors: &mut ScenarioErrors| {
                for rule in list {
                    if let Some(rule) = errors.keep(context.rule(next_index, rule, server.flavor)) {
                        by_phase[rule.phase as usize].push(rule.index);
                        rules.push(rule);
                    }
                    next_index += 1;
                }
            };
        compile(&head, file.rules, &mut errors);
        for piece in &pieces[1..] {
            let context = context(piece);
            let file = context
                .toml(piece)
                .map_err(|error| context.toml_error(&error))?;
            if file.server.is_some() || file.limits.is_some() || file.greylisting.is_some() {
                return Err(context
                    .error(0..0, "a section among the rules", None)
                    .into());
            }
            compile(&context, file.rules, &mut errors);
        }
        errors.into_result()?;
        let index = Arc::new(RuleIndex::build(&rules));
        Ok(Self {
            origin: origin.to_owned(),
            server,
            limits,
            greylisting,
            rules,
            by_phase,
            index,
        })
    }
}

impl Context<'_> {
    /// The first piece's `[server]`, `[limits]` and `[greylisting]`, taken out of `file`: a
    /// broken section is reported, and the rest checked as if it were the default.
    fn sections(
        &self,
        file: &mut ScenarioFile,
        errors: &mut ScenarioErrors,
    ) -> (
        ServerSettings,
        Option<LimitSettings>,
        Option<GreylistSettings>,
    ) {
        let server = errors
            .keep(self.server(file.server.take().unwrap_or_default()))
            .unwrap_or_else(|| Scenario::builtin().server);
        let voice = Voice::default_for(server.flavor);
        let limits = file
            .limits
            .take()
            .and_then(|limits| errors.keep(self.limits(limits, voice)));
        let greylisting = match file.greylisting.take() {
            Some(section) if section.enabled != Some(false) => {
                errors.keep(self.greylisting(section, voice))
            }
            _ => None,
        };
        (server, limits, greylisting)
    }

    /// Parses one piece of the file as a whole scenario file.
    fn toml(&self, piece: &Range<usize>) -> Result<ScenarioFile, toml::de::Error> {
        toml::from_str(&self.source[piece.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(count: usize) -> String {
        (0..count)
            .map(|i| format!("[[rule]]\nrcpt = \"u{i}@x.example\"\nreply = \"user_unknown\"\n\n"))
            .collect()
    }

    fn whole(origin: &str, source: &str) -> Result<Scenario, ScenarioErrors> {
        Scenario::check_one(origin, source, true)
    }

    #[test]
    fn cuts_before_every_thousandth_rule() {
        let source = format!("[server]\nflavor = \"ovh\"\n\n{}", rules(2500));
        let pieces = split(&source).expect("cut");
        assert_eq!(pieces.len(), 4);
        assert!(source[pieces[0].clone()].starts_with("[server]"));
        assert!(!source[pieces[0].clone()].contains("[[rule]]"));
        for piece in &pieces[1..] {
            assert!(source[piece.clone()].starts_with("[[rule]]"));
        }
        assert_eq!(pieces.last().unwrap().end, source.len());
        let whole = whole("s", &source).unwrap();
        let cut = Scenario::check_pieces("s", &source, &pieces, false).unwrap();
        assert_eq!(whole.rules.len(), cut.rules.len());
        assert_eq!(
            format!("{:?}", whole.rules[2400]),
            format!("{:?}", cut.rules[2400])
        );
    }

    #[test]
    fn unusual_layouts_load_in_one_piece() {
        let many = rules(1500);
        for source in [
            rules(10),
            format!("{many}[server]\nflavor = \"ovh\"\n"),
            format!("[server]\ngreeting = \"\"\"a\n[[rule]]\"\"\"\n{many}"),
        ] {
            assert!(split(&source).is_none(), "{source:.60}");
        }
        // A sub-table of a rule stays in its piece.
        let table = format!("{many}[[rule]]\nrcpt = \"x@y\"\n[rule.reply]\ncode = 550\n");
        assert!(split(&table).is_some());
    }

    #[test]
    fn errors_name_the_same_places_as_in_one_piece() {
        let mut source = rules(2500);
        source.push_str("[[rule]]\nrcpt = \"z@x.example\"\nreply = \"no_such_reply\"\n");
        source.push_str("[[rule]]\nrcpt = \"y@x.example\"\nreply = \"no_such_either\"\n");
        let found = Scenario::check("s.toml", &source).unwrap_err();
        let whole = whole("s.toml", &source).unwrap_err();
        assert_eq!(found, whole);
        assert_eq!(found.errors.len(), 2);
        assert_eq!(found.errors[0].line, 2500 * 4 + 3);
        let pieces = split(&source).unwrap();
        assert_eq!(
            Scenario::check_pieces("s.toml", &source, &pieces, false).unwrap_err(),
            whole
        );
    }
}
