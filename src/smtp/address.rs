//! Mailbox and path syntax of RFC 5321 §4.1.2, with the UTF-8 extensions of RFC 6531.
//!
//! Parsing borrows from the command line; nothing is allocated.

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AddressError {
    /// Not of the form `<local@domain>` (or a bare address).
    #[error("malformed path")]
    Malformed,
    /// Local part over 64 octets, domain over 255 or path over 256 (RFC 5321 §4.5.3.1).
    #[error("address too long")]
    TooLong,
}

/// A parsed path: the address between the angle brackets, and where the line goes on after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParsedPath<'a> {
    /// The mailbox, `local@domain`, without brackets or source route; empty for the null path `<>`.
    pub address: &'a str,
    /// The rest of the line after the path (the ESMTP parameters).
    pub rest: &'a str,
}

/// Parses a path at the start of `text`.
///
/// Accepts `<mailbox>`, `<@route,@route:mailbox>` (the route is dropped, RFC 5321 §4.1.2), `<>` when
/// `allow_null` is set, and, like Postfix's default, a bare `mailbox` without brackets.
pub(crate) fn parse_path(text: &str, allow_null: bool) -> Result<ParsedPath<'_>, AddressError> {
    let (inner, rest) = if let Some(after) = text.strip_prefix('<') {
        let close = find_path_end(after).ok_or(AddressError::Malformed)?;
        (&after[..close], &after[close + 1..])
    } else {
        let end = text.find(' ').unwrap_or(text.len());
        (&text[..end], &text[end..])
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(AddressError::Malformed);
    }
    let rest = rest.trim_start_matches(' ');
    if inner.is_empty() {
        return if allow_null && text.starts_with('<') {
            Ok(ParsedPath { address: "", rest })
        } else {
            Err(AddressError::Malformed)
        };
    }
    let mailbox = strip_source_route(inner)?;
    if mailbox.len() > 254 {
        return Err(AddressError::TooLong);
    }
    validate_mailbox(mailbox)?;
    Ok(ParsedPath {
        address: mailbox,
        rest,
    })
}

/// Finds the `>` closing a path, skipping over quoted strings in the local part.
fn find_path_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if quoted => index += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(index),
            _ => {}
        }
        index += 1;
    }
    None
}

fn strip_source_route(inner: &str) -> Result<&str, AddressError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let colon = inner.find(':').ok_or(AddressError::Malformed)?;
    for hop in inner[..colon].split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressError::Malformed)?;
        if !is_domain(domain) {
            return Err(AddressError::Malformed);
        }
    }
    Ok(&inner[colon + 1..])
}

/// Checks `local@domain` (or the special `postmaster` without a domain).
fn validate_mailbox(mailbox: &str) -> Result<(), AddressError> {
    if mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok(());
    }
    let at = local_part_end(mailbox).ok_or(AddressError::Malformed)?;
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    if local.len() > 64 {
        return Err(AddressError::TooLong);
    }
    if domain.len() > 255 {
        return Err(AddressError::TooLong);
    }
    if !(is_dot_string(local) || is_quoted_string(local)) {
        return Err(AddressError::Malformed);
    }
    if !(is_domain(domain) || is_address_literal(domain)) {
        return Err(AddressError::Malformed);
    }
    Ok(())
}

/// The index of the `@` that ends the local part (the last `@` outside a quoted string).
fn local_part_end(mailbox: &str) -> Option<usize> {
    if mailbox.starts_with('"') {
        let bytes = mailbox.as_bytes();
        let mut index = 1;
        while index < bytes.len() {
            match bytes[index] {
                b'\\' => index += 1,
                b'"' => {
                    return (bytes.get(index + 1) == Some(&b'@')).then_some(index + 1);
                }
                _ => {}
            }
            index += 1;
        }
        None
    } else {
        mailbox.rfind('@')
    }
}

/// atext of RFC 5322 plus any non-ASCII UTF-8 (RFC 6531 `UTF8-non-ascii`).
fn is_atext(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&byte) || byte >= 0x80
}

fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

fn is_quoted_string(local: &str) -> bool {
    let Some(inner) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return false;
    };
    let bytes = inner.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => {
                // quoted-pairSMTP: backslash followed by any ASCII graphic or space.
                match bytes.get(index + 1) {
                    Some(next) if (32..=126).contains(next) => index += 2,
                    _ => return false,
                }
            }
            b'"' => return false,
            32..=126 => index += 1,
            byte if byte >= 0x80 => index += 1,
            _ => return false,
        }
    }
    true
}

/// A domain of letters, digits and hyphens (or UTF-8 U-labels), at least one label.
pub(crate) fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        })
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3), as RCPT and EHLO take it.
pub(crate) fn is_address_literal(domain: &str) -> bool {
    let Some(inner) = domain
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    else {
        return false;
    };
    if let Some(v6) = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
    {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    inner.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The domain part of an address (after the last `@`), empty when there is none.
pub(crate) fn domain_of(address: &str) -> &str {
    address.rfind('@').map_or("", |at| &address[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> &str {
        parse_path(text, true).unwrap().address
    }

    #[test]
    fn plain_and_bare_paths() {
        assert_eq!(ok("<a@b.example>"), "a@b.example");
        assert_eq!(ok("a@b.example"), "a@b.example");
        assert_eq!(
            parse_path("<a@b.example> SIZE=10", false).unwrap().rest,
            "SIZE=10"
        );
        assert_eq!(ok("<Postmaster>"), "Postmaster");
    }

    #[test]
    fn null_path_only_where_allowed() {
        assert_eq!(ok("<>"), "");
        assert_eq!(parse_path("<>", false), Err(AddressError::Malformed));
        assert_eq!(parse_path("", true), Err(AddressError::Malformed));
    }

    #[test]
    fn quoted_local_parts() {
        assert_eq!(ok(r#"<"john doe"@x.example>"#), r#""john doe"@x.example"#);
        assert_eq!(ok(r#"<"a>b@c"@x.example>"#), r#""a>b@c"@x.example"#);
        assert_eq!(ok(r#"<"a\"b"@x.example>"#), r#""a\"b"@x.example"#);
        assert!(parse_path(r#"<"unterminated@x.example>"#, true).is_err());
    }

    #[test]
    fn utf8_addresses() {
        assert_eq!(ok("<用户@例子.广告>"), "用户@例子.广告");
        assert_eq!(ok("<jöran@bücher.example>"), "jöran@bücher.example");
    }

    #[test]
    fn source_routes_are_dropped() {
        assert_eq!(
            ok("<@relay.example,@b.example:user@c.example>"),
            "user@c.example"
        );
        assert!(parse_path("<@relay.example user@c.example>", true).is_err());
    }

    #[test]
    fn address_literals() {
        assert_eq!(ok("<u@[127.0.0.1]>"), "u@[127.0.0.1]");
        assert_eq!(ok("<u@[IPv6:::1]>"), "u@[IPv6:::1]");
        assert!(parse_path("<u@[300.0.0.1]>", true).is_err());
    }

    #[test]
    fn malformed_paths() {
        for bad in [
            "<a@>",
            "<@b.example>",
            "<a..b@c.example>",
            "<a@-b.example>",
            "<a b@c.example>",
            "<a@b.example",
            "<a@b.example>x",
            "<noat>",
        ] {
            assert!(parse_path(bad, true).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn length_limits() {
        let long_local = format!("<{}@x.example>", "a".repeat(65));
        assert_eq!(parse_path(&long_local, true), Err(AddressError::TooLong));
        let long_domain = format!("<a@{}.example>", vec!["b".repeat(60); 5].join("."));
        assert_eq!(parse_path(&long_domain, true), Err(AddressError::TooLong));
    }

    #[test]
    fn domain_of_address() {
        assert_eq!(domain_of("a@b.example"), "b.example");
        assert_eq!(domain_of(r#""x@y"@z.example"#), "z.example");
        assert_eq!(domain_of("postmaster"), "");
    }
}
