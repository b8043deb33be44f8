//! The SMTP command parser: one command line in, a borrowed [`Command`] or the exact fault out.
//!
//! Written by hand over byte slices (no regex, no allocation); every refusal maps to the reply
//! RFC 5321 and its extensions prescribe, via [`ParseError::reply`].

use super::address::{parse_path, AddressError};
use super::reply::{fixed, Reply};

/// `BODY=` values of RFC 6152 and RFC 3030.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME` (RFC 6152).
    EightBitMime,
    /// `BODY=BINARYMIME` (RFC 3030), only with BDAT.
    BinaryMime,
}

/// `RET=` of RFC 3461.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// Return the full message in a DSN.
    Full,
    /// Return headers only.
    Headers,
}

/// `NOTIFY=` of RFC 3461, as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// `NEVER`, exclusive of the others.
    pub never: bool,
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

/// `MAIL FROM:` with its ESMTP parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailCommand<'a> {
    /// The reverse path's mailbox; empty for the null path `<>`.
    pub from: &'a str,
    /// `SIZE=` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=` (RFC 3461), still xtext-encoded.
    pub envid: Option<&'a str>,
    /// `AUTH=` (RFC 4954 §5), still xtext-encoded; `<>` when the submitter is unknown.
    pub auth: Option<&'a str>,
}

/// `RCPT TO:` with its ESMTP parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RcptCommand<'a> {
    /// The forward path's mailbox.
    pub to: &'a str,
    /// `NOTIFY=` (RFC 3461).
    pub notify: Option<Notify>,
    /// `ORCPT=` (RFC 3461): `addr-type;xtext`.
    pub orcpt: Option<&'a str>,
}

/// One parsed command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `EHLO domain`.
    Ehlo(&'a str),
    /// `HELO domain`.
    Helo(&'a str),
    /// `MAIL FROM:<path> params`.
    Mail(MailCommand<'a>),
    /// `RCPT TO:<path> params`.
    Rcpt(RcptCommand<'a>),
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// The chunk's exact length in octets.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy(&'a str),
    /// `EXPN string`.
    Expn(&'a str),
    /// `HELP [string]`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism name as sent.
        mechanism: &'a str,
        /// The initial response, still base64 (`=` means empty).
        initial: Option<&'a str>,
    },
}

/// Why a line is not a valid command. Each maps to one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Unknown verb: 500 5.5.1.
    #[error("command not recognized")]
    Unrecognized,
    /// NUL or invalid UTF-8: 500 5.5.2.
    #[error("bad characters in command")]
    BadCharacters,
    /// EHLO/HELO without a domain: 501 5.5.4.
    #[error("HELO/EHLO needs a domain")]
    HeloSyntax,
    /// A verb that takes no argument got one: 501 5.5.4.
    #[error("no arguments allowed")]
    NoArguments,
    /// MAIL not of the form `MAIL FROM:<path>`: 501 5.5.4.
    #[error("MAIL syntax")]
    MailSyntax,
    /// RCPT not of the form `RCPT TO:<path>`: 501 5.5.4.
    #[error("RCPT syntax")]
    RcptSyntax,
    /// The reverse path is malformed: 501 5.1.7.
    #[error("bad sender address")]
    BadSender,
    /// The forward path is malformed: 501 5.1.3.
    #[error("bad recipient address")]
    BadRecipient,
    /// A known parameter with a bad value: 501 5.5.4.
    #[error("bad parameter value")]
    BadParameter,
    /// The same parameter twice: 501 5.5.4.
    #[error("duplicate parameter")]
    DuplicateParameter,
    /// A parameter we do not know: 555 5.5.4.
    #[error("unknown parameter")]
    UnknownParameter,
    /// BDAT without a valid size: 501 5.5.4.
    #[error("BDAT syntax")]
    BdatSyntax,
    /// VRFY without argument: 501 5.5.4.
    #[error("VRFY syntax")]
    VrfySyntax,
    /// AUTH without mechanism: 501 5.5.4.
    #[error("AUTH syntax")]
    AuthSyntax,
}

impl ParseError {
    /// The reply this fault gets on the wire.
    pub fn reply(self) -> Reply {
        match self {
            Self::Unrecognized => fixed::UNRECOGNIZED,
            Self::BadCharacters => fixed::BAD_CHARACTERS,
            Self::HeloSyntax => fixed::HELO_SYNTAX,
            Self::NoArguments => fixed::NO_ARGUMENTS,
            Self::MailSyntax => fixed::MAIL_SYNTAX,
            Self::RcptSyntax => fixed::RCPT_SYNTAX,
            Self::BadSender => fixed::BAD_SENDER,
            Self::BadRecipient => fixed::BAD_RECIPIENT,
            Self::BadParameter => fixed::BAD_PARAMETER,
            Self::DuplicateParameter => fixed::DUPLICATE_PARAMETER,
            Self::UnknownParameter => fixed::UNKNOWN_PARAMETER,
            Self::BdatSyntax => fixed::BDAT_SYNTAX,
            Self::VrfySyntax => fixed::VRFY_SYNTAX,
            Self::AuthSyntax => fixed::AUTH_SYNTAX,
        }
    }
}

/// Parses one command line, given without its line terminator.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    if line.contains(&0) {
        return Err(ParseError::BadCharacters);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::BadCharacters)?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, args) = match line.find(' ') {
        Some(space) => (&line[..space], line[space + 1..].trim_start_matches(' ')),
        None => (line, ""),
    };
    if verb.len() > 8 {
        return Err(ParseError::Unrecognized);
    }
    let mut upper = [0u8; 8];
    upper[..verb.len()].copy_from_slice(verb.as_bytes());
    upper.make_ascii_uppercase();
    match &upper[..verb.len()] {
        b"EHLO" => helo_argument(args).map(Command::Ehlo),
        b"HELO" => helo_argument(args).map(Command::Helo),
        b"MAIL" => parse_mail(args).map(Command::Mail),
        b"RCPT" => parse_rcpt(args).map(Command::Rcpt),
        b"DATA" => no_arguments(args, Command::Data),
        b"BDAT" => parse_bdat(args),
        b"RSET" => no_arguments(args, Command::Rset),
        b"NOOP" => Ok(Command::Noop),
        b"QUIT" => no_arguments(args, Command::Quit),
        b"VRFY" if args.is_empty() => Err(ParseError::VrfySyntax),
        b"VRFY" => Ok(Command::Vrfy(args)),
        b"EXPN" => Ok(Command::Expn(args)),
        b"HELP" => Ok(Command::Help),
        b"STARTTLS" => no_arguments(args, Command::StartTls),
        b"AUTH" => parse_auth(args),
        _ => Err(ParseError::Unrecognized),
    }
}

fn no_arguments(args: &str, command: Command<'static>) -> Result<Command<'static>, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::NoArguments)
    }
}

fn helo_argument(args: &str) -> Result<&str, ParseError> {
    // RFC 5321 says EHLO takes a domain or address literal; real servers accept any single word
    // as a name (Windows hosts send underscores), but a bracketed word must be an address
    // literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), as in RCPT.
    let domain = args.split(' ').next().unwrap_or("");
    let bracketed = domain.starts_with('[') || domain.ends_with(']');
    if domain.is_empty() || (bracketed && !super::address::is_address_literal(domain)) {
        Err(ParseError::HeloSyntax)
    } else {
        Ok(domain)
    }
}

/// Strips `keyword:` (case-insensitive) and optional spaces after the colon.
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(args[keyword.len()..].trim_start_matches(' '))
}

fn parse_mail(args: &str) -> Result<MailCommand<'_>, ParseError> {
    let rest = strip_keyword(args, "FROM:").ok_or(ParseError::MailSyntax)?;
    let path = parse_path(rest, true).map_err(|error| match error {
        AddressError::Malformed | AddressError::TooLong => ParseError::BadSender,
    })?;
    let mut mail = MailCommand {
        from: path.address,
        ..MailCommand::default()
    };
    for param in parameters(path.rest) {
        let (key, value) = split_parameter(param);
        if key.eq_ignore_ascii_case("SIZE") {
            let value = value.ok_or(ParseError::BadParameter)?;
            set_once(&mut mail.size, parse_number(value)?)?;
        } else if key.eq_ignore_ascii_case("BODY") {
            let body = match value.ok_or(ParseError::BadParameter)? {
                v if v.eq_ignore_ascii_case("7BIT") => Body::SevenBit,
                v if v.eq_ignore_ascii_case("8BITMIME") => Body::EightBitMime,
                v if v.eq_ignore_ascii_case("BINARYMIME") => Body::BinaryMime,
                _ => return Err(ParseError::BadParameter),
            };
            set_once(&mut mail.body, body)?;
        } else if key.eq_ignore_ascii_case("SMTPUTF8") {
            if value.is_some() {
                return Err(ParseError::BadParameter);
            }
            if mail.smtputf8 {
                return Err(ParseError::DuplicateParameter);
            }
            mail.smtputf8 = true;
        } else if key.eq_ignore_ascii_case("RET") {
            let ret = match value.ok_or(ParseError::BadParameter)? {
                v if v.eq_ignore_ascii_case("FULL") => Ret::Full,
                v if v.eq_ignore_ascii_case("HDRS") => Ret::Headers,
                _ => return Err(ParseError::BadParameter),
            };
            set_once(&mut mail.ret, ret)?;
        } else if key.eq_ignore_ascii_case("ENVID") {
            let value = value.filter(|v| is_xtext(v) && v.len() <= 100);
            set_once(&mut mail.envid, value.ok_or(ParseError::BadParameter)?)?;
        } else if key.eq_ignore_ascii_case("AUTH") {
            let value = value.filter(|v| *v == "<>" || is_xtext(v));
            set_once(&mut mail.auth, value.ok_or(ParseError::BadParameter)?)?;
        } else {
            return Err(ParseError::UnknownParameter);
        }
    }
    Ok(mail)
}

fn parse_rcpt(args: &str) -> Result<RcptCommand<'_>, ParseError> {
    let rest = strip_keyword(args, "TO:").ok_or(ParseError::RcptSyntax)?;
    let path = parse_path(rest, false).map_err(|_| ParseError::BadRecipient)?;
    let mut rcpt = RcptCommand {
        to: path.address,
        ..RcptCommand::default()
    };
    for param in parameters(path.rest) {
        let (key, value) = split_parameter(param);
        if key.eq_ignore_ascii_case("NOTIFY") {
            let notify = parse_notify(value.ok_or(ParseError::BadParameter)?)?;
            set_once(&mut rcpt.notify, notify)?;
        } else if key.eq_ignore_ascii_case("ORCPT") {
            let value = value.filter(|v| is_orcpt(v));
            set_once(&mut rcpt.orcpt, value.ok_or(ParseError::BadParameter)?)?;
        } else {
            return Err(ParseError::UnknownParameter);
        }
    }
    Ok(rcpt)
}

fn parse_bdat(args: &str) -> Result<Command<'static>, ParseError> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(ParseError::BdatSyntax)?;
    let size = parse_number(size).map_err(|_| ParseError::BdatSyntax)?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(ParseError::BdatSyntax),
    };
    if words.next().is_some() {
        return Err(ParseError::BdatSyntax);
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(args: &str) -> Result<Command<'_>, ParseError> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or(ParseError::AuthSyntax)?;
    let initial = words.next();
    if words.next().is_some() {
        return Err(ParseError::AuthSyntax);
    }
    Ok(Command::Auth { mechanism, initial })
}

fn parse_notify(value: &str) -> Result<Notify, ParseError> {
    let mut notify = Notify::default();
    for word in value.split(',') {
        let flag = match word {
            w if w.eq_ignore_ascii_case("NEVER") => &mut notify.never,
            w if w.eq_ignore_ascii_case("SUCCESS") => &mut notify.success,
            w if w.eq_ignore_ascii_case("FAILURE") => &mut notify.failure,
            w if w.eq_ignore_ascii_case("DELAY") => &mut notify.delay,
            _ => return Err(ParseError::BadParameter),
        };
        if *flag {
            return Err(ParseError::BadParameter);
        }
        *flag = true;
    }
    if notify.never && (notify.success || notify.failure || notify.delay) {
        return Err(ParseError::BadParameter);
    }
    Ok(notify)
}

fn parameters(rest: &str) -> impl Iterator<Item = &str> {
    rest.split(' ').filter(|p| !p.is_empty())
}

fn split_parameter(param: &str) -> (&str, Option<&str>) {
    match param.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (param, None),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::DuplicateParameter);
    }
    *slot = Some(value);
    Ok(())
}

fn parse_number(text: &str) -> Result<u64, ParseError> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadParameter);
    }
    text.parse().map_err(|_| ParseError::BadParameter)
}

/// xtext of RFC 3461 §4: printable ASCII but `+` and `=`, or `+HH` with upper-case hex.
fn is_xtext(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => {
                let hex = bytes.get(index + 1..index + 3);
                let valid = hex.is_some_and(|h| {
                    h.iter()
                        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
                });
                if !valid {
                    return false;
                }
                index += 3;
            }
            b'=' => return false,
            33..=126 => index += 1,
            _ => return false,
        }
    }
    !text.is_empty()
}

fn is_orcpt(value: &str) -> bool {
    match value.split_once(';') {
        Some((addr_type, address)) => {
            !addr_type.is_empty()
                && addr_type
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (is_xtext(address) || (!address.is_empty() && !address.contains(['\r', '\n'])))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command<'_>, ParseError> {
        parse_command(line.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse("ehlo client.example"),
            Ok(Command::Ehlo("client.example"))
        );
        assert_eq!(
            parse("HeLo client.example"),
            Ok(Command::Helo("client.example"))
        );
        assert_eq!(parse("data"), Ok(Command::Data));
        assert_eq!(parse("RsEt"), Ok(Command::Rset));
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("noop anything at all"), Ok(Command::Noop));
        assert_eq!(parse("help mail"), Ok(Command::Help));
        assert_eq!(parse("starttls"), Ok(Command::StartTls));
        assert_eq!(parse("vrfy postmaster"), Ok(Command::Vrfy("postmaster")));
        assert_eq!(parse("expn list"), Ok(Command::Expn("list")));
    }

    #[test]
    fn unknown_and_bad_lines() {
        assert_eq!(parse("FOO bar"), Err(ParseError::Unrecognized));
        assert_eq!(parse(""), Err(ParseError::Unrecognized));
        assert_eq!(parse("VERYLONGVERB x"), Err(ParseError::Unrecognized));
        assert_eq!(parse_command(b"MAIL\0"), Err(ParseError::BadCharacters));
        assert_eq!(
            parse_command(b"EHLO \xff\xfe"),
            Err(ParseError::BadCharacters)
        );
        assert_eq!(parse("EHLO"), Err(ParseError::HeloSyntax));
        assert_eq!(parse("HELO   "), Err(ParseError::HeloSyntax));
        for bad in [
            "[300.0.0.1]",
            "[192.0.2.1",
            "192.0.2.1]",
            "[IPv6:not-an-ip]",
            "[]",
            "[a.example]",
        ] {
            assert_eq!(
                parse(&format!("EHLO {bad}")),
                Err(ParseError::HeloSyntax),
                "{bad}"
            );
            assert_eq!(
                parse(&format!("HELO {bad}")),
                Err(ParseError::HeloSyntax),
                "{bad}"
            );
        }
        for good in [
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "my_host",
            "192.0.2.1",
            "client.example",
        ] {
            assert_eq!(
                parse(&format!("EHLO {good}")),
                Ok(Command::Ehlo(good)),
                "{good}"
            );
        }
        assert_eq!(parse("DATA now"), Err(ParseError::NoArguments));
        assert_eq!(parse("QUIT now"), Err(ParseError::NoArguments));
        assert_eq!(parse("RSET x"), Err(ParseError::NoArguments));
        assert_eq!(parse("STARTTLS x"), Err(ParseError::NoArguments));
        assert_eq!(parse("VRFY"), Err(ParseError::VrfySyntax));
        assert_eq!(parse("AUTH"), Err(ParseError::AuthSyntax));
        assert_eq!(parse("AUTH PLAIN a b"), Err(ParseError::AuthSyntax));
    }

    #[test]
    fn mail_from_with_every_parameter() {
        let line = "MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1 AUTH=<>";
        let Ok(Command::Mail(mail)) = parse(line) else {
            panic!("{line} did not parse")
        };
        assert_eq!(
            mail,
            MailCommand {
                from: "a@b.example",
                size: Some(1000),
                body: Some(Body::EightBitMime),
                smtputf8: true,
                ret: Some(Ret::Headers),
                envid: Some("QQ+2B1"),
                auth: Some("<>"),
            }
        );
        let Ok(Command::Mail(mail)) = parse("mail from: <> body=binarymime ret=full") else {
            panic!()
        };
        assert_eq!(mail.from, "");
        assert_eq!(mail.body, Some(Body::BinaryMime));
        assert_eq!(mail.ret, Some(Ret::Full));
        let Ok(Command::Mail(mail)) = parse("MAIL FROM:<x@y.example> BODY=7bit") else {
            panic!()
        };
        assert_eq!(mail.body, Some(Body::SevenBit));
    }

    #[test]
    fn mail_from_faults() {
        assert_eq!(parse("MAIL <a@b.example>"), Err(ParseError::MailSyntax));
        assert_eq!(parse("MAIL TO:<a@b.example>"), Err(ParseError::MailSyntax));
        assert_eq!(parse("MAIL FROM:<a@@b>"), Err(ParseError::BadSender));
        assert_eq!(parse("MAIL FROM:"), Err(ParseError::BadSender));
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SIZE=abc"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SIZE"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SIZE=99999999999999999999999"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> BODY=9BIT"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SMTPUTF8=yes"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> RET=ALL"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> ENVID=a=b"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> AUTH=a+zz"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SIZE=1 SIZE=2"),
            Err(ParseError::DuplicateParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SMTPUTF8 SMTPUTF8"),
            Err(ParseError::DuplicateParameter)
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> FOO=1"),
            Err(ParseError::UnknownParameter)
        );
    }

    #[test]
    fn rcpt_to_with_parameters() {
        let Ok(Command::Rcpt(rcpt)) =
            parse("RCPT TO:<u@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@d.example")
        else {
            panic!()
        };
        assert_eq!(rcpt.to, "u@d.example");
        let notify = rcpt.notify.unwrap();
        assert!(notify.success && notify.failure && !notify.delay && !notify.never);
        assert_eq!(rcpt.orcpt, Some("rfc822;u@d.example"));
        let Ok(Command::Rcpt(rcpt)) = parse("rcpt to:<u@d.example> notify=never") else {
            panic!()
        };
        assert!(rcpt.notify.unwrap().never);
    }

    #[test]
    fn rcpt_to_faults() {
        assert_eq!(parse("RCPT <u@d.example>"), Err(ParseError::RcptSyntax));
        assert_eq!(parse("RCPT TO:<>"), Err(ParseError::BadRecipient));
        assert_eq!(parse("RCPT TO:<u@>"), Err(ParseError::BadRecipient));
        assert_eq!(
            parse("RCPT TO:<u@d.example> NOTIFY=NEVER,SUCCESS"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("RCPT TO:<u@d.example> NOTIFY=SOMETIMES"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("RCPT TO:<u@d.example> ORCPT=nosemicolon"),
            Err(ParseError::BadParameter)
        );
        assert_eq!(
            parse("RCPT TO:<u@d.example> NOTIFY=DELAY NOTIFY=DELAY"),
            Err(ParseError::DuplicateParameter)
        );
        assert_eq!(
            parse("RCPT TO:<u@d.example> SIZE=1"),
            Err(ParseError::UnknownParameter)
        );
    }

    #[test]
    fn bdat_forms() {
        assert_eq!(
            parse("BDAT 100"),
            Ok(Command::Bdat {
                size: 100,
                last: false
            })
        );
        assert_eq!(
            parse("bdat 0 last"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(parse("BDAT"), Err(ParseError::BdatSyntax));
        assert_eq!(parse("BDAT -1"), Err(ParseError::BdatSyntax));
        assert_eq!(parse("BDAT 10 FIRST"), Err(ParseError::BdatSyntax));
        assert_eq!(parse("BDAT 10 LAST x"), Err(ParseError::BdatSyntax));
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            parse("AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            Ok(Command::Auth {
                mechanism: "PLAIN",
                initial: Some("AGFsaWNlAHNlY3JldA==")
            })
        );
        assert_eq!(
            parse("auth login"),
            Ok(Command::Auth {
                mechanism: "login",
                initial: None
            })
        );
    }

    #[test]
    fn every_fault_has_its_reply() {
        let cases = [
            (ParseError::Unrecognized, 500, "5.5.1"),
            (ParseError::BadCharacters, 500, "5.5.2"),
            (ParseError::HeloSyntax, 501, "5.5.4"),
            (ParseError::NoArguments, 501, "5.5.4"),
            (ParseError::MailSyntax, 501, "5.5.4"),
            (ParseError::RcptSyntax, 501, "5.5.4"),
            (ParseError::BadSender, 501, "5.1.7"),
            (ParseError::BadRecipient, 501, "5.1.3"),
            (ParseError::BadParameter, 501, "5.5.4"),
            (ParseError::DuplicateParameter, 501, "5.5.4"),
            (ParseError::UnknownParameter, 555, "5.5.4"),
            (ParseError::BdatSyntax, 501, "5.5.4"),
            (ParseError::VrfySyntax, 501, "5.5.4"),
            (ParseError::AuthSyntax, 501, "5.5.4"),
        ];
        for (error, code, status) in cases {
            let reply = error.reply();
            assert_eq!(reply.code(), code, "{error:?}");
            assert_eq!(reply.status().unwrap().to_string(), status, "{error:?}");
        }
    }
}
