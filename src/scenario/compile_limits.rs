//! The `[limits]` section: sending limits (per account, per client IP), receiving limits (per
//! recipient, per recipient domain) and what their refusals say.

use toml::Spanned;

use super::super::file::{LimitFile, LimitsSection};
use super::super::rule::{catalog_reply, Voice};
use super::super::settings::LimitSettings;
use super::{Context, ScenarioError};
use crate::clock::parse_duration;
use crate::limits::{Count, Window};
use crate::smtp::policy::Phase;

impl Context<'_> {
    pub(super) fn window(&self, limit: &Spanned<LimitFile>) -> Result<Window, ScenarioError> {
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

    pub(super) fn limits(
        &self,
        section: LimitsSection,
        voice: Voice,
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
            Some(value) => self.reply(value, check_at, voice)?,
            None => catalog_reply("rate_limited", voice),
        };
        let receiving =
            |w: &Option<Spanned<LimitFile>>| w.as_ref().map(|w| self.window(w)).transpose();
        Ok(LimitSettings {
            per_recipient: receiving(&section.per_recipient)?,
            per_recipient_domain: receiving(&section.per_recipient_domain)?,
            recipient_reply: catalog_reply("recipient_rate_limited", voice),
            domain_reply: catalog_reply("rate_limited", voice),
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
}
