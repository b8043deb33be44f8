//! Compiles one `[[rule]]` of a scenario file: its matchers, the phase it acts at, and its
//! action (a reply, a sequence, or `then`), each checked with file:line:column errors.

use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::super::catalog::{parse_phase, Catalog};
use super::super::error::closest;
use super::super::file::RuleFile;
use super::super::flavor::Flavor;
use super::super::rule::{Action, Matchers, Outcome, Rule, Voice, LOSE_REPLY};
use super::{Context, ScenarioError};
use crate::smtp::policy::{Phase, RuleRef};

/// What `then` takes.
const THEN_WORDS: [&str; 5] = ["accept", "disconnect", "hang", "abort", LOSE_REPLY];
/// The words a sequence step may be besides a reply.
const STEP_WORDS: [&str; 4] = ["accept", "disconnect", "hang", LOSE_REPLY];

impl Context<'_> {
    pub(super) fn rule(
        &self,
        index: u32,
        spanned: Spanned<RuleFile>,
        server_flavor: Flavor,
    ) -> Result<Rule, ScenarioError> {
        let span = spanned.span();
        let rule = spanned.into_inner();
        let header = self.error(span.clone(), "", None);
        let voice = match &rule.flavor {
            Some(name) => Voice {
                flavor: self.flavor(name)?,
                by_domain: false,
            },
            None => Voice::default_for(server_flavor),
        };
        let matchers = self.matchers(&rule)?;
        let (phase, action) = match self.later(&rule, voice)? {
            Some(later) => (Phase::Rcpt, Action::Always(Outcome::Later(Box::new(later)))),
            None => {
                let phase = self.rule_phase(&rule, span.clone())?;
                (phase, self.action(&rule, phase, voice, span)?)
            }
        };
        let probability = self.probability(rule.probability.as_ref())?;
        let times = self.times(rule.times.as_ref())?;
        Ok(Rule {
            index,
            reference: Arc::new(RuleRef {
                index,
                name: rule.name.as_deref().map(Arc::from),
                origin: self.shared_origin.clone(),
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
        voice: Voice,
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
                    .map(|item| self.sequence_item(item, phase, voice))
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
                Ok(Action::Always(Outcome::Abort(self.reply(reply, phase, voice)?)))
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
                    Some(&match closest(other, THEN_WORDS) {
                        Some(best) => format!("did you mean {best:?}? then is one of: accept, disconnect, hang, abort, lose_reply"),
                        None => "then is one of: accept, disconnect, hang, abort, lose_reply".to_owned(),
                    }),
                )),
            },
            (Some(reply), None, None) => Ok(Action::Always(Outcome::Reply(self.reply(reply, phase, voice)?))),
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
        voice: Voice,
    ) -> Result<Outcome, ScenarioError> {
        match item.get_ref().as_str() {
            Some("accept") => Ok(Outcome::Accept),
            Some("disconnect") => Ok(Outcome::Disconnect),
            Some("hang") => Ok(Outcome::Hang),
            Some(LOSE_REPLY) => self.lose_reply(item.span(), phase),
            Some(word) if Catalog::builtin().get(word).is_none() => {
                match closest(word, STEP_WORDS) {
                    Some(best) => Err(self.error(
                        item.span(),
                        format!("unknown sequence step {word:?}"),
                        Some(&format!("did you mean {best:?}? a step is a catalog name, an inline reply, \"accept\", \"disconnect\", \"hang\" or \"lose_reply\"")),
                    )),
                    None => Ok(Outcome::Reply(self.reply(item, phase, voice)?)),
                }
            }
            _ => Ok(Outcome::Reply(self.reply(item, phase, voice)?)),
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
