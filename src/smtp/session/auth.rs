//! The AUTH exchange (RFC 4954): PLAIN and LOGIN, with an initial response or through 334
//! challenges; the credentials are then decided by the policy at the auth phase.

use bytes::{BufMut, BytesMut};

use super::output::Step;
use super::{Mode, Pending, Session};
use crate::smtp::reply::fixed;
use crate::smtp::sasl::{decode_login, decode_plain, Credentials};

/// The challenges, in the order a client sees them.
const ASK_PLAIN: &[u8] = b"334 \r\n";
const ASK_USERNAME: &[u8] = b"334 VXNlcm5hbWU6\r\n";
const ASK_PASSWORD: &[u8] = b"334 UGFzc3dvcmQ6\r\n";

impl Session {
    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<&str>,
        out: &mut BytesMut,
    ) -> Option<Step> {
        let refusal = if self.helo.is_none() {
            Some(fixed::NEED_HELO)
        } else if self.auth_user.is_some() {
            Some(fixed::ALREADY_AUTHENTICATED)
        } else if self.transaction.from.is_some() {
            Some(fixed::AUTH_IN_TRANSACTION)
        } else if !self.tls && !self.config.auth.allow_plaintext {
            Some(fixed::AUTH_NEEDS_TLS)
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.send(out, &reply);
            return None;
        }
        if mechanism.eq_ignore_ascii_case("PLAIN") {
            self.auth_plain(initial, out)
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            self.auth_login(initial, out)
        } else {
            self.send(out, &fixed::AUTH_MECHANISM_UNKNOWN);
            None
        }
    }

    fn auth_plain(&mut self, initial: Option<&str>, out: &mut BytesMut) -> Option<Step> {
        match initial {
            None => {
                self.mode = Mode::AuthPlain;
                self.challenge(ASK_PLAIN, out);
                None
            }
            Some(text) => match decode_plain(text) {
                Ok(credentials) => {
                    self.credentials = Some(credentials);
                    self.ask(Pending::Auth)
                }
                Err(_) => {
                    self.syntax_error(&fixed::AUTH_UNDECODABLE, out);
                    None
                }
            },
        }
    }

    fn auth_login(&mut self, initial: Option<&str>, out: &mut BytesMut) -> Option<Step> {
        match initial {
            None => {
                self.mode = Mode::AuthLoginUser;
                self.challenge(ASK_USERNAME, out);
                None
            }
            Some(text) => match decode_login(text) {
                Ok(user) if !user.is_empty() => {
                    self.mode = Mode::AuthLoginPassword(user);
                    self.challenge(ASK_PASSWORD, out);
                    None
                }
                _ => {
                    self.syntax_error(&fixed::AUTH_UNDECODABLE, out);
                    None
                }
            },
        }
    }

    fn challenge(&mut self, wire: &'static [u8], out: &mut BytesMut) {
        let mark = out.len();
        out.put_slice(wire);
        self.sent(out, mark, 334, None);
    }

    /// A line answering a 334 challenge (already traced).
    pub(super) fn auth_line(&mut self, line: &[u8], out: &mut BytesMut) -> Option<Step> {
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::AuthPlain => self.auth_response(line, out, |session, text| {
                let credentials = decode_plain(text).ok()?;
                session.credentials = Some(credentials);
                Some(())
            }),
            Mode::AuthLoginUser => self.auth_response(line, out, |session, text| {
                let user = decode_login(text).ok().filter(|u| !u.is_empty())?;
                session.mode = Mode::AuthLoginPassword(user);
                Some(())
            }),
            Mode::AuthLoginPassword(user) => self.auth_response(line, out, |session, text| {
                let password = decode_login(text).ok()?;
                session.credentials = Some(Credentials { user, password });
                Some(())
            }),
            other => {
                self.mode = other;
                None
            }
        }
    }

    /// A line answering a 334 challenge: `*` cancels, else `decode` takes it.
    fn auth_response(
        &mut self,
        line: &[u8],
        out: &mut BytesMut,
        decode: impl FnOnce(&mut Self, &str) -> Option<()>,
    ) -> Option<Step> {
        let text = std::str::from_utf8(line).unwrap_or("\u{0}");
        if text == "*" {
            self.send(out, &fixed::AUTH_CANCELLED);
            return None;
        }
        if decode(self, text).is_none() {
            self.syntax_error(&fixed::AUTH_UNDECODABLE, out);
            return None;
        }
        match self.mode {
            Mode::AuthLoginPassword(_) => {
                self.challenge(ASK_PASSWORD, out);
                None
            }
            _ => self.ask(Pending::Auth),
        }
    }
}
