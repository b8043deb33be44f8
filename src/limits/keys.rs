//! The store's keys, in one place: which account, which client network, which greylisting
//! triplet a use or an attempt is counted under.
//!
//! Client IPs reach here canonical: the server turns an IPv4 client seen through a dual-stack
//! listener (`::ffff:192.0.2.1`) into the IPv4 address once, when it accepts the connection, so
//! that such a client is counted, limited and greylisted exactly like the same IPv4 client.

use std::net::{IpAddr, Ipv6Addr};

/// The prefix of every per-account key.
pub const ACCOUNT_PREFIX: &str = "account:";
/// The prefix of every per-IP key.
pub const IP_PREFIX: &str = "ip:";

/// The prefix of every per-recipient (receiving) key.
pub const RECIPIENT_PREFIX: &str = "rcpt:";
/// The prefix of every per-recipient-domain (receiving) key.
pub const RECIPIENT_DOMAIN_PREFIX: &str = "rcpt-domain:";

/// The mailbox a received message counts against: the recipient address, case-folded.
pub fn recipient_key(rcpt: &str) -> String {
    format!("{RECIPIENT_PREFIX}{}", rcpt.to_lowercase())
}

/// The domain a received message counts against: the recipient's domain, case-folded.
pub fn recipient_domain_key(rcpt: &str) -> String {
    let domain = rcpt.rsplit_once('@').map_or("", |(_, domain)| domain);
    format!("{RECIPIENT_DOMAIN_PREFIX}{}", domain.to_lowercase())
}

/// The account a message counts against: the AUTH identity, else the MAIL FROM address,
/// case-folded; the null sender is `<>`.
pub fn account_key(auth_user: Option<&str>, mail_from: Option<&str>) -> String {
    let account = auth_user.or(mail_from).unwrap_or("");
    if account.is_empty() {
        format!("{ACCOUNT_PREFIX}<>")
    } else {
        format!("{ACCOUNT_PREFIX}{}", account.to_lowercase())
    }
}

/// The client's per-IP key: its address, or for IPv6 its `/ipv6_prefix` network.
pub fn ip_key(ip: IpAddr, ipv6_prefix: u8) -> String {
    format!("{IP_PREFIX}{}", network(ip, 32, ipv6_prefix))
}

/// The greylisting triplet, postgrey style: the client's /24 (IPv6: /64), sender, recipient.
pub fn greylist_key(ip: IpAddr, mail_from: Option<&str>, rcpt: Option<&str>) -> String {
    format!(
        "{}/{}/{}",
        network(ip, 24, 64),
        mail_from.unwrap_or("").to_lowercase(),
        rcpt.unwrap_or("").to_lowercase()
    )
}

/// The parts of a greylisting key: the client's network, the sender and the recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistParts<'a> {
    /// The client's /24 (`192.0.2.0`) or /64 (`2001:db8::/64`).
    pub network: &'a str,
    /// The sender, case-folded (empty for the null sender).
    pub sender: &'a str,
    /// The recipient, case-folded.
    pub recipient: &'a str,
}

/// Splits a key made by [`greylist_key`] back into its parts. Domains never hold a `/`, so the
/// sender ends at the first `/` after the first `@` (a local part may hold a `/`); when no `/`
/// follows an `@` (a sender without a domain), at the first `/`. `None` for a key of another
/// form.
pub fn split_greylist_key(key: &str) -> Option<GreylistParts<'_>> {
    // An IPv6 network is written with its prefix length (`2001:db8::/64`).
    let network_end = if key.split('/').next()?.contains(':') {
        let first = key.find('/')?;
        first + 1 + key[first + 1..].find('/')?
    } else {
        key.find('/')?
    };
    let network = &key[..network_end];
    let rest = &key[network_end + 1..];
    let after_at = rest
        .find('@')
        .and_then(|at| rest[at..].find('/').map(|slash| at + slash));
    let sender_end = if rest.starts_with('/') {
        0
    } else {
        after_at.or_else(|| rest.find('/'))?
    };
    Some(GreylistParts {
        network,
        sender: &rest[..sender_end],
        recipient: &rest[sender_end + 1..],
    })
}

/// The key of a sequence rule's attempts: the rule's index in its scenario and a hash of the
/// (client IP, sender, recipient) triplet.
pub fn sequence_key(rule_index: u32, triplet_hash: u64) -> String {
    format!("{rule_index}:{triplet_hash:016x}")
}

/// The rule index a key made by [`sequence_key`] counts for.
pub fn sequence_rule(key: &str) -> Option<u32> {
    key.split_once(':')?.0.parse().ok()
}

/// `ip` as text: an IPv4 address cut to `v4_prefix` bits written as an address
/// (`192.0.2.0`), the full address when nothing is cut; an IPv6 one cut to `v6_prefix` bits
/// written as a network (`2001:db8::/64`), the full address when nothing is cut.
fn network(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) if v4_prefix >= 32 => v4.to_string(),
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(v4_prefix)).unwrap_or(0);
            std::net::Ipv4Addr::from(u32::from(v4) & mask).to_string()
        }
        IpAddr::V6(v6) if v6_prefix >= 128 => v6.to_string(),
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6_prefix))
                .unwrap_or(0);
            format!("{}/{v6_prefix}", Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(account_key(Some("Alice"), Some("x@y")), "account:alice");
        assert_eq!(
            account_key(None, Some("A@B.example")),
            "account:a@b.example"
        );
        assert_eq!(account_key(None, Some("")), "account:<>");
        let v4: IpAddr = "192.0.2.77".parse().unwrap();
        let v6: IpAddr = "2001:db8::1:2".parse().unwrap();
        assert_eq!(ip_key(v4, 64), "ip:192.0.2.77");
        assert_eq!(ip_key(v6, 128), "ip:2001:db8::1:2");
        assert_eq!(ip_key(v6, 64), "ip:2001:db8::/64");
        assert_eq!(
            greylist_key(v4, Some("A@x"), Some("B@y")),
            "192.0.2.0/a@x/b@y"
        );
        assert_eq!(greylist_key(v6, None, Some("b@y")), "2001:db8::/64//b@y");
        assert_eq!(recipient_key("Bob@Gmail.com"), "rcpt:bob@gmail.com");
        assert_eq!(
            recipient_domain_key("Bob@Gmail.com"),
            "rcpt-domain:gmail.com"
        );
        assert!(!recipient_domain_key("x@y").starts_with(RECIPIENT_PREFIX));
    }

    #[test]
    fn greylist_keys_split_back_into_their_parts() {
        let v4: IpAddr = "192.0.2.77".parse().unwrap();
        let v6: IpAddr = "2001:db8::1:2".parse().unwrap();
        for (ip, from, rcpt) in [
            (v4, Some("a@x.example"), Some("b@y.example")),
            (v6, Some("a@x.example"), Some("b@y.example")),
            (v4, None, Some("b@y.example")),
            (v6, None, Some("b@y.example")),
            (v4, Some("a/b@x.example"), Some("c/d@y.example")),
            (v6, Some("bounces+1/2@x.example"), Some("/x@y")),
            (v4, Some("postmaster"), Some("b@y")),
        ] {
            let key = greylist_key(ip, from, rcpt);
            let parts = split_greylist_key(&key).unwrap_or_else(|| panic!("{key}"));
            assert_eq!(
                parts,
                GreylistParts {
                    network: &network(ip, 24, 64),
                    sender: from.unwrap_or(""),
                    recipient: rcpt.unwrap(),
                },
                "{key}"
            );
        }
        assert_eq!(split_greylist_key("no-slash"), None);
    }

    #[test]
    fn sequence_keys_name_their_rule() {
        let key = sequence_key(7, 0xabc);
        assert_eq!(key, "7:0000000000000abc");
        assert_eq!(sequence_rule(&key), Some(7));
        assert_eq!(sequence_rule("x:1"), None);
    }
}
