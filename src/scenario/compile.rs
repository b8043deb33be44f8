//! Turns a scenario file into a checked, compiled [`Scenario`], or a [`ScenarioError`] that names
//! the file, line and column and gives a hint.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::catalog::Catalog;
use super::domains::DomainFlavors;
use super::error::closest_name;
use super::file::{GreylistSection, ServerSection};
use super::flavor::Flavor;
use super::index::RuleIndex;
use super::pattern::{Cidr, Pattern, PatternList};
use super::phase_codes;
use super::rule::{catalog_reply, ReplySpec, Rule, Voice};
use super::settings::{
    GreylistSettings, LimitSettings, ServerSettings, DEFAULT_GREYLIST_DELAY,
    DEFAULT_GREYLIST_RETRY_WINDOW,
};
use crate::clock::parse_duration;
use crate::limits::LimitOverrides;
use crate::smtp::policy::{Phase, SessionView};
use crate::smtp::reply::{EnhancedStatus, Reply};
use crate::smtp::session::AuthPolicy;

use super::error::{ScenarioError, ScenarioErrors};

#[path = "compile_limits.rs"]
mod limits;

#[path = "compile_pieces.rs"]
mod pieces;

/// A loaded scenario, ready to evaluate.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// Where it came from.
    pub origin: String,
    /// `[server]`.
    pub server: ServerSettings,
    /// `[limits]`.
    pub limits: Option<LimitSettings>,
    /// `[greylisting]`.
    pub greylisting: Option<GreylistSettings>,
    /// The rules in file order.
    pub rules: Vec<Rule>,
    by_phase: [Vec<u32>; Phase::ALL.len()],
    /// Finds the rules that may match a session without trying them all.
    index: Arc<RuleIndex>,
}

impl Scenario {
    /// The scenario used when no file is given: magic addresses on, no rules.
    pub fn builtin() -> Self {
        Self {
            origin: "<built-in>".to_owned(),
            server: ServerSettings {
                magic_addresses: true,
                ..ServerSettings::default()
            },
            ..Self::default()
        }
    }

    /// Loads and checks a scenario file; the first error, if any.
    pub fn load(path: &std::path::Path) -> Result<Self, ScenarioError> {
        Self::check_file(path).map_err(ScenarioErrors::first)
    }

    /// Loads and checks a scenario file; every error found ([`ScenarioErrors`] says which).
    pub fn check_file(path: &std::path::Path) -> Result<Self, ScenarioErrors> {
        let origin = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: origin.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read the file: {e}"),
            hint: None,
        })?;
        Self::check(&origin, &source)
    }

    /// Checks and compiles scenario text; `origin` names it in errors. The first error, if any.
    pub fn parse(origin: &str, source: &str) -> Result<Self, ScenarioError> {
        Self::check(origin, source).map_err(ScenarioErrors::first)
    }

    /// Checks and compiles scenario text; every error found, in file order. When the file does
    /// not fit the format (an unknown key, a wrong type), each section and rule is then checked
    /// on its own, so that the errors of the others are found too. A large file is parsed in
    /// pieces of rules when its layout allows (`compile_pieces.rs`); one with errors is checked again
    /// whole, so that the errors are the same either way.
    pub fn check(origin: &str, source: &str) -> Result<Self, ScenarioErrors> {
        if let Some(pieces) = pieces::split(source) {
            if let Ok(scenario) = Self::check_pieces(origin, source, &pieces, false) {
                return Ok(scenario);
            }
        }
        Self::check_one(origin, source, true)
    }

    /// [`Scenario::check`] in one piece; with `recover` false, a file that does not fit the
    /// format gives that one error.
    fn check_one(origin: &str, source: &str, recover: bool) -> Result<Self, ScenarioErrors> {
        Self::check_pieces(
            origin,
            source,
            std::slice::from_ref(&(0..source.len())),
            recover,
        )
    }

    /// Puts the command line's limits into this scenario: each one given replaces the
    /// scenario's limit of that kind.
    pub fn apply_overrides(&mut self, overrides: &LimitOverrides) {
        if overrides.is_empty() {
            return;
        }
        let limits = self
            .limits
            .get_or_insert_with(|| LimitSettings::new(self.server.flavor));
        let pairs = [
            (&mut limits.per_account, overrides.per_account),
            (&mut limits.per_ip, overrides.per_ip),
            (&mut limits.per_recipient, overrides.per_recipient),
            (
                &mut limits.per_recipient_domain,
                overrides.per_recipient_domain,
            ),
        ];
        for (limit, given) in pairs {
            if given.is_some() {
                *limit = given;
            }
        }
    }

    /// The rules acting at `phase`, in file order.
    pub fn rules_at(&self, phase: Phase) -> impl Iterator<Item = &Rule> {
        self.by_phase[phase as usize]
            .iter()
            .map(|&i| &self.rules[i as usize])
    }

    /// The rules acting at `phase` that may match `view`, in file order: every rule that
    /// matches is among them, found by index lookups rather than by trying each rule.
    pub fn candidates<'a>(
        &'a self,
        phase: Phase,
        view: &SessionView<'_>,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.index
            .candidates(phase, view)
            .map(|i| &self.rules[i as usize])
    }
}

struct Context<'a> {
    origin: &'a str,
    /// `origin`, shared by every rule's [`RuleRef`] rather than copied into each.
    shared_origin: Arc<str>,
    source: &'a str,
    /// Where the piece being parsed starts in `source`: spans are counted from there.
    base: usize,
    /// Where each line starts, so that a position is found in O(log lines): every rule asks for
    /// its header's line, and counting from the start each time made loading quadratic.
    line_starts: &'a [usize],
}

const REFERENCE_HINT: &str = "see \"Scenario reference\" in README.md for every key";

impl Context<'_> {
    fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> ScenarioError {
        let mut offset = (self.base + span.start).min(self.source.len());
        while !self.source.is_char_boundary(offset) {
            offset -= 1;
        }
        // The number of line starts at or before `offset` is the 1-based line.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.source[line_start..offset].chars().count() + 1;
        ScenarioError {
            origin: self.origin.to_owned(),
            line,
            column,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    fn toml_error(&self, error: &toml::de::Error) -> ScenarioError {
        let message = error.message().trim().to_owned();
        let hint = if message.contains("unknown field") {
            Some(REFERENCE_HINT)
        } else if message.contains("invalid type") {
            Some("check the value's type: strings are quoted, numbers are not")
        } else {
            Some("the file must be valid TOML (https://toml.io)")
        };
        self.error(error.span().unwrap_or(0..0), message, hint)
    }

    fn server(&self, section: ServerSection) -> Result<ServerSettings, ScenarioError> {
        let flavor = match &section.flavor {
            Some(name) => self.flavor(name)?,
            None => Flavor::Generic,
        };
        let auth = match &section.auth {
            None => None,
            Some(value) => Some(match value.get_ref().as_str() {
                "optional" => AuthPolicy {
                    allow_plaintext: true,
                    required: false,
                },
                "required" => AuthPolicy {
                    allow_plaintext: true,
                    required: true,
                },
                "tls_only" => AuthPolicy {
                    allow_plaintext: false,
                    required: false,
                },
                "required_tls" => AuthPolicy {
                    allow_plaintext: false,
                    required: true,
                },
                other => {
                    return Err(self.error(
                        value.span(),
                        format!("unknown auth policy {other:?}"),
                        Some("use one of: optional, required, tls_only, required_tls"),
                    ))
                }
            }),
        };
        let builtin = section.flavor_by_domain_builtin.unwrap_or(true);
        let domains = match &section.flavor_by_domain {
            Some(table) => Arc::new(self.domain_flavors(table, builtin)?),
            None if builtin => Arc::default(),
            None => Arc::new(DomainFlavors::only(&[]).expect("an empty table is valid")),
        };
        Ok(ServerSettings {
            hostname: section.hostname,
            greeting: section.greeting,
            flavor,
            max_message_size: section.max_message_size,
            max_recipients: section.max_recipients,
            auth,
            magic_addresses: section.magic_addresses.unwrap_or(true),
            tls: section.tls,
            domains,
        })
    }

    /// `flavor_by_domain = { "corp.example" = "exchange" }`: the built-in table, extended (or
    /// replaced, with `flavor_by_domain_builtin = false`).
    fn domain_flavors(
        &self,
        table: &Spanned<toml::Table>,
        builtin: bool,
    ) -> Result<DomainFlavors, ScenarioError> {
        DomainFlavors::from_table(table.get_ref(), builtin)
            .map_err(|(message, hint)| self.error(table.span(), message, Some(&hint)))
    }

    fn flavor(&self, name: &Spanned<String>) -> Result<Flavor, ScenarioError> {
        name.get_ref()
            .parse()
            .map_err(|e: super::flavor::UnknownFlavor| {
                self.error(
                    name.span(),
                    e.to_string(),
                    Some(&format!("flavors: {}", Flavor::names())),
                )
            })
    }

    fn duration(&self, text: &Spanned<String>) -> Result<Duration, ScenarioError> {
        parse_duration(text.get_ref()).ok_or_else(|| {
            self.error(
                text.span(),
                format!("bad duration {:?}", text.get_ref()),
                Some("write a number and a unit: 500ms, 20s, 5m, 1h, 2d"),
            )
        })
    }

    fn greylisting(
        &self,
        section: GreylistSection,
        voice: Voice,
    ) -> Result<GreylistSettings, ScenarioError> {
        Ok(GreylistSettings {
            delay: match &section.delay {
                Some(d) => self.duration(d)?,
                None => DEFAULT_GREYLIST_DELAY,
            },
            retry_window: match &section.retry_window {
                Some(d) => self.duration(d)?,
                None => DEFAULT_GREYLIST_RETRY_WINDOW,
            },
            reply: match &section.reply {
                Some(value) => self.reply(value, Phase::Rcpt, voice)?,
                None => catalog_reply("greylisted", voice),
            },
            rcpt: section
                .rcpt
                .as_ref()
                .map(|v| self.patterns(v))
                .transpose()?,
        })
    }

    /// A catalog name or `{ code, status, text }`, checked for the phase.
    fn reply(
        &self,
        value: &Spanned<toml::Value>,
        phase: Phase,
        voice: Voice,
    ) -> Result<ReplySpec, ScenarioError> {
        let span = value.span();
        let spec = match value.get_ref() {
            toml::Value::String(name) => {
                let entry = Catalog::builtin().get(name).ok_or_else(|| {
                    self.error(
                        span.clone(),
                        format!("unknown catalog name {name:?}"),
                        Some(&format!(
                            "{}; `failmail catalog` lists every name",
                            closest_name(name)
                        )),
                    )
                })?;
                ReplySpec::Catalog {
                    entry,
                    flavor: voice.flavor,
                    by_domain: voice.by_domain,
                }
            }
            toml::Value::Table(table) => {
                ReplySpec::Inline(self.inline_reply(table, phase, span.clone(), true)?)
            }
            _ => {
                return Err(self.error(
                    span,
                    "a reply is a catalog name or { code, status, text }",
                    Some("e.g. reply = \"user_unknown\""),
                ))
            }
        };
        self.check_code(spec.code(), phase, span)?;
        Ok(spec)
    }

    /// A later bounce's reply: as [`Context::reply`], except that an inline one may leave out
    /// `status`. It is the next hop's reply, which the DSN quotes as that host said it (many
    /// hosts send no enhanced status code); it never goes on the wire, where failmail announces
    /// ENHANCEDSTATUSCODES and every reply carries one.
    pub(super) fn later_reply(
        &self,
        value: &Spanned<toml::Value>,
        voice: Voice,
    ) -> Result<ReplySpec, ScenarioError> {
        match value.get_ref() {
            toml::Value::Table(table) if !table.contains_key("status") => {
                let reply = self.inline_reply(table, Phase::Rcpt, value.span(), false)?;
                Ok(ReplySpec::Inline(reply))
            }
            _ => self.reply(value, Phase::Rcpt, voice),
        }
    }

    /// `{ code, status, text }`: a reply written in the scenario, its code checked for the phase
    /// (`status` required unless `status_required` is false: see [`Context::later_reply`]).
    fn inline_reply(
        &self,
        table: &toml::Table,
        phase: Phase,
        span: Range<usize>,
        status_required: bool,
    ) -> Result<Reply, ScenarioError> {
        for key in table.keys() {
            if !["code", "status", "text"].contains(&key.as_str()) {
                return Err(self.error(
                    span.clone(),
                    format!("unknown key {key:?} in an inline reply"),
                    Some("an inline reply is { code = 550, status = \"5.1.1\", text = \"…\" }"),
                ));
            }
        }
        let code = table
            .get("code")
            .and_then(toml::Value::as_integer)
            .and_then(|c| u16::try_from(c).ok())
            .ok_or_else(|| {
                self.error(
                    span.clone(),
                    "an inline reply needs code = <number>",
                    Some("e.g. code = 550"),
                )
            })?;
        self.check_code(code, phase, span.clone())?;
        let status = match status_required || table.contains_key("status") {
            true => Some(self.inline_status(table, span.clone())?),
            false => None,
        };
        let lines = self.inline_text(table, span.clone())?;
        Reply::new(code, status, &lines).map_err(|e| self.error(span, e.to_string(), None))
    }

    /// An inline reply's `status`: every failure carries its enhanced status code.
    fn inline_status(
        &self,
        table: &toml::Table,
        span: Range<usize>,
    ) -> Result<EnhancedStatus, ScenarioError> {
        let status = table
            .get("status")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| {
                self.error(
                    span.clone(),
                    "an inline reply needs status = \"X.Y.Z\"",
                    Some("every failure carries its enhanced status code (RFC 3463), e.g. status = \"5.1.1\""),
                )
            })?;
        EnhancedStatus::parse(status).ok_or_else(|| {
            self.error(
                span,
                format!("bad enhanced status code {status:?}"),
                Some("write class.subject.detail, e.g. 5.7.1"),
            )
        })
    }

    /// An inline reply's `text`: one line, or a list of lines.
    fn inline_text(
        &self,
        table: &toml::Table,
        span: Range<usize>,
    ) -> Result<Vec<String>, ScenarioError> {
        match table.get("text") {
            Some(toml::Value::String(text)) => Ok(vec![text.clone()]),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| self.error(span, "text lines must be strings", None)),
            _ => Err(self.error(
                span,
                "an inline reply needs text = \"…\" (or a list of lines)",
                None,
            )),
        }
    }

    /// A rule's reply must be a failure that fits its phase.
    fn check_code(&self, code: u16, phase: Phase, span: Range<usize>) -> Result<(), ScenarioError> {
        if phase_codes::is_allowed(phase, code) {
            return Ok(());
        }
        let what = if code < 400 {
            "is not a failure"
        } else {
            "does not fit this phase"
        };
        Err(self.error(
            span,
            format!(
                "reply code {code} {what} ({})",
                phase_codes::describe(phase)
            ),
            Some("use then = \"accept\" for the normal reply, or pick a code that fits the phase"),
        ))
    }

    fn patterns(&self, value: &Spanned<toml::Value>) -> Result<PatternList, ScenarioError> {
        let texts = self.strings(value)?;
        texts
            .iter()
            .map(|t| Pattern::compile(t))
            .collect::<Result<Box<[_]>, _>>()
            .map(PatternList)
            .map_err(|e| {
                self.error(
                    value.span(),
                    e.to_string(),
                    Some("patterns are exact text, globs with * and ?, or /regex/"),
                )
            })
    }

    fn cidrs(&self, value: &Spanned<toml::Value>) -> Result<Box<[Cidr]>, ScenarioError> {
        self.strings(value)?
            .iter()
            .map(|t| Cidr::parse(t))
            .collect::<Result<_, _>>()
            .map_err(|e| self.error(value.span(), e.to_string(), None))
    }

    fn strings(&self, value: &Spanned<toml::Value>) -> Result<Vec<String>, ScenarioError> {
        let bad = || {
            self.error(
                value.span(),
                "expected a string or a list of strings",
                Some("e.g. rcpt = \"*@example.com\" or rcpt = [\"a@x\", \"b@x\"]"),
            )
        };
        match value.get_ref() {
            toml::Value::String(s) => Ok(vec![s.clone()]),
            toml::Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
                .collect(),
            _ => Err(bad()),
        }
    }
}

/// How one `[[rule]]` is compiled: matchers, phase, action.
#[path = "compile_rules.rs"]
mod rules;

/// Finding the errors of every part of a file that does not fit the format.
#[path = "compile_recover.rs"]
mod recover;

#[path = "compile_later.rs"]
mod later;

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
