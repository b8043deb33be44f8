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
}
