//! Turns a scenario file into a checked, compiled [`Scenario`], or a [`ScenarioError`] that names
//! the file, line and column and gives a hint.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::catalog::{parse_phase, Catalog};
use super::error::closest_name;
use super::file::{
    GreylistSection, LimitFile, LimitsSection, RuleFile, ScenarioFile, ServerSection,
};
use super::flavor::Flavor;
use super::index::RuleIndex;
use super::pattern::{Cidr, Pattern, PatternList};
use super::phase_codes;
use super::rule::{catalog_reply, Action, Matchers, Outcome, ReplySpec, Rule, LOSE_REPLY};
use super::settings::{
    GreylistSettings, LimitSettings, ServerSettings, DEFAULT_GREYLIST_DELAY,
    DEFAULT_GREYLIST_RETRY_WINDOW,
};
use crate::clock::parse_duration;
use crate::limits::{Count, LimitOverrides, Window};
use crate::smtp::policy::{Phase, RuleRef, SessionView};
use crate::smtp::reply::{EnhancedStatus, Reply};
use crate::smtp::session::AuthPolicy;

use super::error::ScenarioError;

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

    /// Loads and checks a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let origin = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: origin.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read the file: {e}"),
            hint: None,
        })?;
        Self::parse(&origin, &source)
    }

    /// Checks and compiles scenario text; `origin` names it in errors.
    pub fn parse(origin: &str, source: &str) -> Result<Self, ScenarioError> {
        let line_starts = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', source.as_bytes()).map(|i| i + 1))
            .collect();
        let context = Context {
            origin,
            source,
            line_starts,
        };
        let file: ScenarioFile = toml::from_str(source).map_err(|e| context.toml_error(&e))?;
        let server = context.server(file.server.unwrap_or_default())?;
        let limits = match file.limits {
            Some(limits) => Some(context.limits(limits, server.flavor)?),
            None => None,
        };
        let greylisting = match file.greylisting {
            Some(section) if section.enabled != Some(false) => {
                Some(context.greylisting(section, server.flavor)?)
            }
            _ => None,
        };
        let mut rules = Vec::with_capacity(file.rules.len());
        let mut by_phase: [Vec<u32>; Phase::ALL.len()] = Default::default();
        for (index, rule) in file.rules.into_iter().enumerate() {
            let rule = context.rule(index as u32, rule, server.flavor)?;
            by_phase[rule.phase as usize].push(rule.index);
            rules.push(rule);
        }
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

    /// Puts the command line's limits into this scenario: they replace its `per_account` /
    /// `per_ip`.
    pub fn apply_overrides(&mut self, overrides: &LimitOverrides) {
        if overrides.is_empty() {
            return;
        }
        let limits = self
            .limits
            .get_or_insert_with(|| LimitSettings::new(self.server.flavor));
        if overrides.per_account.is_some() {
            limits.per_account = overrides.per_account;
        }
        if overrides.per_ip.is_some() {
            limits.per_ip = overrides.per_ip;
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
    source: &'a str,
    /// Where each line starts, so that a position is found in O(log lines): every rule asks for
    /// its header's line, and counting from the start each time made loading quadratic.
    line_starts: Vec<usize>,
}

const REFERENCE_HINT: &str = "see \"Scenario reference\" in README.md for every key";

impl Context<'_> {
    fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> ScenarioError {
        let mut offset = span.start.min(self.source.len());
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
        Ok(ServerSettings {
            hostname: section.hostname,
            greeting: section.greeting,
            flavor,
            max_message_size: section.max_message_size,
            max_recipients: section.max_recipients,
            auth,
            magic_addresses: section.magic_addresses.unwrap_or(true),
        })
    }

    fn flavor(&self, name: &Spanned<String>) -> Result<Flavor, ScenarioError> {
        name.get_ref()
            .parse()
            .map_err(|e: super::flavor::UnknownFlavor| {
                self.error(
                    name.span(),
                    e.to_string(),
                    Some("flavors: generic, ovh, gmail, outlook, yahoo, postfix, exim"),
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

    fn window(&self, limit: &Spanned<LimitFile>) -> Result<Window, ScenarioError> {
        let file = limit.get_ref();
        let per = parse_duration(&file.per)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                self.error(
                    limit.span(),
                    format!("bad window {:?}", file.per),
                    Some("e.g. per = \"1h\""),
                )
            })?;
        if file.max == 0 {
            return Err(self.error(
                limit.span(),
                "max must be at least 1",
                Some("remove the limit to turn it off"),
            ));
        }
        Ok(Window { max: file.max, per })
    }

    fn limits(
        &self,
        section: LimitsSection,
        flavor: Flavor,
    ) -> Result<LimitSettings, ScenarioError> {
        let check_at = match &section.check_at {
            None => Phase::Mail,
            Some(value) => match value.get_ref().as_str() {
                "mail" => Phase::Mail,
                "rcpt" => Phase::Rcpt,
                other => {
                    return Err(self.error(
                        value.span(),
                        format!("limits are checked at mail or rcpt, not {other:?}"),
                        None,
                    ))
                }
            },
        };
        let count = match &section.count {
            None => Count::Messages,
            Some(value) => match value.get_ref().as_str() {
                "message" | "messages" => Count::Messages,
                "recipient" | "recipients" => Count::Recipients,
                other => {
                    return Err(self.error(
                        value.span(),
                        format!("count is message or recipient, not {other:?}"),
                        None,
                    ))
                }
            },
        };
        let reply = match &section.reply {
            Some(value) => self.reply(value, check_at, flavor)?,
            None => catalog_reply("rate_limited", flavor),
        };
        Ok(LimitSettings {
            per_account: section
                .per_account
                .as_ref()
                .map(|w| self.window(w))
                .transpose()?,
            per_ip: section
                .per_ip
                .as_ref()
                .map(|w| self.window(w))
                .transpose()?,
            connections_per_ip: section.connections_per_ip,
            messages_per_connection: section.messages_per_connection,
            reply,
            count,
            check_at,
            ipv6_prefix: section.ipv6_prefix.unwrap_or(128).min(128),
        })
    }

    fn greylisting(
        &self,
        section: GreylistSection,
        flavor: Flavor,
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
                Some(value) => self.reply(value, Phase::Rcpt, flavor)?,
                None => catalog_reply("greylisted", flavor),
            },
            rcpt: section
                .rcpt
                .as_ref()
                .map(|v| self.patterns(v))
                .transpose()?,
        })
    }

    fn rule(
        &self,
        index: u32,
        spanned: Spanned<RuleFile>,
        server_flavor: Flavor,
    ) -> Result<Rule, ScenarioError> {
        let span = spanned.span();
        let rule = spanned.into_inner();
        let header = self.error(span.clone(), "", None);
        let flavor = match &rule.flavor {
            Some(name) => self.flavor(name)?,
            None => server_flavor,
        };
        let matchers = self.matchers(&rule)?;
        let phase = self.rule_phase(&rule, span.clone())?;
        let action = self.action(&rule, phase, flavor, span)?;
        let probability = self.probability(rule.probability.as_ref())?;
        let times = self.times(rule.times.as_ref())?;
        Ok(Rule {
            index,
            name: rule.name.clone(),
            line: header.line,
            reference: Arc::new(RuleRef {
                index,
                name: rule.name.as_deref().map(Arc::from),
                origin: Arc::from(self.origin),
                line: u32::try_from(header.line).unwrap_or(u32::MAX),
            }),
            phase,
            matchers,
            action,
            probability,
            times,
            delay: rule.delay.as_ref().map(|d| self.duration(d)).transpose()?,
        })
    }

    /// The rule's patterns and CIDR blocks, compiled.
    fn matchers(&self, rule: &RuleFile) -> Result<Matchers, ScenarioError> {
        Ok(Matchers {
            rcpt: rule.rcpt.as_ref().map(|v| self.patterns(v)).transpose()?,
            mail_from: rule
                .mail_from
                .as_ref()
                .map(|v| self.patterns(v))
                .transpose()?,
            auth_user: rule
                .auth_user
                .as_ref()
                .map(|v| self.patterns(v))
                .transpose()?,
            helo: rule.helo.as_ref().map(|v| self.patterns(v)).transpose()?,
            client_ip: rule.client_ip.as_ref().map(|v| self.cidrs(v)).transpose()?,
        })
    }

    /// The phase a rule acts at: its `at` if given (no earlier than its matched values are
    /// known), else the later of the phase its values are known at and its reply's own phase.
    fn rule_phase(&self, rule: &RuleFile, span: Range<usize>) -> Result<Phase, ScenarioError> {
        let matcher_phase = matcher_phase(rule);
        let natural_phase = self.natural_phase(rule);
        match &rule.at {
            Some(at) => self.explicit_phase(at, matcher_phase),
            None => match (matcher_phase, natural_phase) {
                (Some(a), Some(b)) => Ok(a.max(b)),
                (Some(a), None) | (None, Some(a)) => Ok(a),
                (None, None) => Err(self.error(
                    span,
                    "cannot tell at which phase this rule acts",
                    Some("add at = \"connect\" (or ehlo, auth, mail, rcpt, data, data_end)"),
                )),
            },
        }
    }

    /// A rule's `at`, refused when the rule matches on a value not yet known there.
    fn explicit_phase(
        &self,
        at: &Spanned<String>,
        matcher_phase: Option<Phase>,
    ) -> Result<Phase, ScenarioError> {
        let phase = parse_phase(at.get_ref()).ok_or_else(|| {
            self.error(
                at.span(),
                format!("unknown phase {:?}", at.get_ref()),
                Some("phases: connect, ehlo, auth, mail, rcpt, data, data_end"),
            )
        })?;
        if let Some(needed) = matcher_phase.filter(|needed| *needed > phase) {
            return Err(self.error(
                at.span(),
                format!(
                    "this rule matches on a value only known from {needed} on, but acts at {phase}"
                ),
                Some("act at a later phase, or match on values known earlier"),
            ));
        }
        Ok(phase)
    }

    /// A rule's `probability`, which must be in (0, 1].
    fn probability(&self, value: Option<&Spanned<f64>>) -> Result<Option<f64>, ScenarioError> {
        match value {
            Some(p) if !(*p.get_ref() > 0.0 && *p.get_ref() <= 1.0) => Err(self.error(
                p.span(),
                "probability must be in (0, 1]",
                Some("e.g. probability = 0.3"),
            )),
            Some(p) => Ok(Some(*p.get_ref())),
            None => Ok(None),
        }
    }

    /// A rule's `times`, which must be at least 1.
    fn times(&self, value: Option<&Spanned<u64>>) -> Result<Option<u64>, ScenarioError> {
        match value {
            Some(t) if *t.get_ref() == 0 => Err(self.error(
                t.span(),
                "times must be at least 1",
                Some("remove the rule to turn it off"),
            )),
            Some(t) => Ok(Some(*t.get_ref())),
            None => Ok(None),
        }
    }

    /// The phase where the rule's catalog reply naturally happens, if it names one (a lost
    /// reply happens at the end of data).
    fn natural_phase(&self, rule: &RuleFile) -> Option<Phase> {
        let loses_reply = rule
            .then
            .as_ref()
            .is_some_and(|t| t.get_ref() == LOSE_REPLY)
            || rule.sequence.as_ref().is_some_and(|s| {
                s.get_ref()
                    .iter()
                    .any(|v| v.get_ref().as_str() == Some(LOSE_REPLY))
            });
        if loses_reply {
            return Some(Phase::DataEnd);
        }
        let catalog = Catalog::builtin();
        let first_name =
            |value: &toml::Value| value.as_str().and_then(|n| catalog.get(n)).map(|e| e.phase);
        if let Some(reply) = &rule.reply {
            return first_name(reply.get_ref());
        }
        if let Some(sequence) = &rule.sequence {
            return sequence
                .get_ref()
                .iter()
                .find_map(|v| first_name(v.get_ref()));
        }
        None
    }

    fn action(
        &self,
        rule: &RuleFile,
        phase: Phase,
        flavor: Flavor,
        span: Range<usize>,
    ) -> Result<Action, ScenarioError> {
        let then = rule.then.as_ref();
        match (&rule.reply, &rule.sequence, then.map(|t| t.get_ref().as_str())) {
            (Some(_), Some(sequence), _) => Err(self.error(
                sequence.span(),
                "a rule has either reply or sequence, not both",
                Some("put the reply into the sequence"),
            )),
            (None, Some(_), Some(_)) => Err(self.error(
                then.expect("matched").span(),
                "then does not go with sequence",
                Some("put \"accept\", \"disconnect\" or \"hang\" into the sequence"),
            )),
            (None, Some(sequence), None) => {
                if sequence.get_ref().is_empty() {
                    return Err(self.error(sequence.span(), "empty sequence", Some("e.g. sequence = [\"greylisted\", \"accept\"]")));
                }
                let steps = sequence
                    .get_ref()
                    .iter()
                    .map(|item| self.sequence_item(item, phase, flavor))
                    .collect::<Result<_, _>>()?;
                Ok(Action::Sequence(steps))
            }
            (reply, None, Some("abort")) => {
                let then = then.expect("matched");
                if phase != Phase::Data {
                    return Err(self.error(then.span(), format!("abort acts at data, not {phase}"), Some("add at = \"data\"")));
                }
                let Some(reply) = reply else {
                    return Err(self.error(then.span(), "abort needs a reply", Some("e.g. reply = \"spam_rejected\"")));
                };
                Ok(Action::Always(Outcome::Abort(self.reply(reply, phase, flavor)?)))
            }
            (Some(reply), None, Some(other)) => Err(self.error(
                then.expect("matched").span(),
                format!("then = {other:?} does not go with reply"),
                Some(match reply.get_ref().as_str() {
                    Some(_) => "remove reply, or remove then (a 421 reply closes the connection by itself)",
                    None => "remove reply, or remove then",
                }),
            )),
            (None, None, Some(word)) => match word {
                "accept" => Ok(Action::Always(Outcome::Accept)),
                "disconnect" => Ok(Action::Always(Outcome::Disconnect)),
                "hang" => Ok(Action::Always(Outcome::Hang)),
                LOSE_REPLY => Ok(Action::Always(self.lose_reply(then.expect("matched").span(), phase)?)),
                other => Err(self.error(
                    then.expect("matched").span(),
                    format!("unknown action {other:?}"),
                    Some("then is one of: accept, disconnect, hang, abort, lose_reply"),
                )),
            },
            (Some(reply), None, None) => Ok(Action::Always(Outcome::Reply(self.reply(reply, phase, flavor)?))),
            (None, None, None) => Err(self.error(
                span,
                "this rule does nothing",
                Some("give it reply = \"…\", sequence = [...] or then = \"accept\" / \"disconnect\" / \"hang\""),
            )),
        }
    }

    fn sequence_item(
        &self,
        item: &Spanned<toml::Value>,
        phase: Phase,
        flavor: Flavor,
    ) -> Result<Outcome, ScenarioError> {
        match item.get_ref().as_str() {
            Some("accept") => Ok(Outcome::Accept),
            Some("disconnect") => Ok(Outcome::Disconnect),
            Some("hang") => Ok(Outcome::Hang),
            Some(LOSE_REPLY) => self.lose_reply(item.span(), phase),
            _ => Ok(Outcome::Reply(self.reply(item, phase, flavor)?)),
        }
    }

    /// `lose_reply`: only the end of data has a reply to lose.
    fn lose_reply(&self, span: Range<usize>, phase: Phase) -> Result<Outcome, ScenarioError> {
        if phase != Phase::DataEnd {
            return Err(self.error(
                span,
                format!("lose_reply acts at data_end, not {phase}"),
                Some("use at = \"data_end\", or leave at out"),
            ));
        }
        Ok(Outcome::LoseReply)
    }

    /// A catalog name or `{ code, status, text }`, checked for the phase.
    fn reply(
        &self,
        value: &Spanned<toml::Value>,
        phase: Phase,
        flavor: Flavor,
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
                ReplySpec::Catalog { entry, flavor }
            }
            toml::Value::Table(table) => {
                ReplySpec::Inline(self.inline_reply(table, phase, span.clone())?)
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

    /// `{ code, status, text }`: a reply written in the scenario, its code checked for the phase.
    fn inline_reply(
        &self,
        table: &toml::Table,
        phase: Phase,
        span: Range<usize>,
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
        let status = self.inline_status(table, span.clone())?;
        let lines = self.inline_text(table, span.clone())?;
        Reply::new(code, Some(status), &lines).map_err(|e| self.error(span, e.to_string(), None))
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
            .collect::<Result<Vec<_>, _>>()
            .map(PatternList)
            .map_err(|e| {
                self.error(
                    value.span(),
                    e.to_string(),
                    Some("patterns are exact text, globs with * and ?, or /regex/"),
                )
            })
    }

    fn cidrs(&self, value: &Spanned<toml::Value>) -> Result<Vec<Cidr>, ScenarioError> {
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

/// The latest phase at which every value the rule matches on is known.
fn matcher_phase(rule: &RuleFile) -> Option<Phase> {
    [
        (rule.client_ip.is_some(), Phase::Connect),
        (rule.helo.is_some(), Phase::Ehlo),
        (rule.auth_user.is_some(), Phase::Auth),
        (rule.mail_from.is_some(), Phase::Mail),
        (rule.rcpt.is_some(), Phase::Rcpt),
    ]
    .into_iter()
    .filter(|(present, _)| *present)
    .map(|(_, phase)| phase)
    .max()
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
