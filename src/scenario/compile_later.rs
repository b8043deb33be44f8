//! Compiling a rule's later fate: `bounce = { reply, after, delay_notice, give_up }` and
//! `deliver = { after }`, checked with the file, line and column of the faulty value.

use std::time::Duration;

use toml::Spanned;

use super::Context;
use crate::scenario::error::ScenarioError;
use crate::scenario::file::{BounceFile, RuleFile};
use crate::scenario::later::{LaterFate, LaterSpec, DEFAULT_AFTER, DEFAULT_GIVE_UP};
use crate::scenario::rule::Voice;

const LATER_HINT: &str = "a rule with bounce or deliver accepts the recipient now; the later reply goes inside: bounce = { reply = \"user_unknown\", after = \"10m\" }";

impl Context<'_> {
    /// The rule's later fate, if it has `bounce` or `deliver`; such a rule acts at rcpt and
    /// has no `reply`, `sequence` nor `then` of its own.
    pub(super) fn later(
        &self,
        rule: &RuleFile,
        voice: Voice,
    ) -> Result<Option<LaterSpec>, ScenarioError> {
        let (bounce, deliver) = (&rule.bounce, &rule.deliver);
        match (bounce, deliver) {
            (None, None) => return Ok(None),
            (Some(_), Some(deliver)) => {
                return Err(self.error(
                    deliver.span(),
                    "a rule has either bounce or deliver, not both",
                    Some("write two rules"),
                ))
            }
            _ => {}
        }
        let conflicting = [
            rule.reply.as_ref().map(|r| ("reply", r.span())),
            rule.sequence.as_ref().map(|s| ("sequence", s.span())),
            rule.then.as_ref().map(|t| ("then", t.span())),
        ];
        if let Some((key, span)) = conflicting.into_iter().flatten().next() {
            return Err(self.error(
                span,
                format!("{key} does not go with bounce or deliver"),
                Some(LATER_HINT),
            ));
        }
        if let Some(at) = rule.at.as_ref().filter(|at| at.get_ref() != "rcpt") {
            return Err(self.error(
                at.span(),
                format!("bounce and deliver act at rcpt, not {:?}", at.get_ref()),
                Some("remove at, or write at = \"rcpt\""),
            ));
        }
        let fate = match (bounce, deliver) {
            (Some(bounce), _) => self.bounce(bounce, voice)?,
            (None, Some(deliver)) => LaterFate::Deliver {
                after: self.later_duration(deliver.get_ref().after.as_ref(), DEFAULT_AFTER)?,
            },
            (None, None) => return Ok(None),
        };
        Ok(Some(LaterSpec {
            fate,
            flavor: voice.flavor,
        }))
    }

    fn bounce(
        &self,
        spanned: &Spanned<BounceFile>,
        voice: Voice,
    ) -> Result<LaterFate, ScenarioError> {
        let bounce = spanned.get_ref();
        let reply = self.later_reply(&bounce.reply, voice)?;
        let after = self.later_duration(bounce.after.as_ref(), DEFAULT_AFTER)?;
        let retried = (400..500).contains(&reply.code());
        let give_up = match (&bounce.give_up, retried) {
            (Some(give_up), false) => {
                return Err(self.error(
                    give_up.span(),
                    format!(
                        "give_up is for a retried (4xx) reply; a {} fails at after",
                        reply.code()
                    ),
                    Some("remove give_up, or use a 4xx reply"),
                ))
            }
            (Some(give_up), true) => self.duration(give_up)?,
            (None, true) => DEFAULT_GIVE_UP,
            (None, false) => after,
        };
        if retried && give_up < after {
            let span = bounce.give_up.as_ref().map_or(spanned.span(), |g| g.span());
            return Err(self.error(
                span,
                "give_up comes before after",
                Some("give_up counts from the message's acceptance, like after"),
            ));
        }
        let failure_at = if retried { give_up } else { after };
        let delay_notice = match &bounce.delay_notice {
            Some(notice) => {
                let at = self.duration(notice)?;
                if at >= failure_at {
                    return Err(self.error(
                        notice.span(),
                        "delay_notice must come before the failure",
                        Some("e.g. delay_notice = \"4h\" with give_up = \"5d\""),
                    ));
                }
                Some(at)
            }
            None => None,
        };
        Ok(LaterFate::Bounce {
            reply,
            after,
            delay_notice,
            give_up,
        })
    }

    fn later_duration(
        &self,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ScenarioError> {
        value.map_or(Ok(default), |v| self.duration(v))
    }
}
