//! Whose voice a recipient's domain gets: `user_unknown@gmail.com` answers as Gmail does, with
//! no scenario.
//!
//! The built-in table maps the large providers' own domains to their flavor; a scenario's
//! `[server] flavor_by_domain = { "corp.example" = "exchange" }` extends it, and its entries win
//! over the built-in ones (map a built-in domain to `"generic"` to silence it), or, with
//! `flavor_by_domain_builtin = false`, replaces it (no entry at all: no voice by domain). A key is a domain
//! (`gmail.com`), or a glob (`hotmail.*` is any domain that starts with `hotmail.`,
//! `*.onmicrosoft.com` any subdomain); case is ignored. Exact names are tried before globs, the
//! scenario's before the built-in ones, and among globs the longer first, so the most specific
//! entry decides.

use std::collections::HashMap;

use super::flavor::Flavor;
use super::pattern::{Pattern, PatternError};

/// The built-in table: each provider's own mail domains (the ones whose MX is the provider's).
pub const BUILTIN: &[(&str, Flavor)] = &[
    ("gmail.com", Flavor::Gmail),
    ("googlemail.com", Flavor::Gmail),
    ("outlook.com", Flavor::Outlook),
    ("outlook.*", Flavor::Outlook),
    ("hotmail.*", Flavor::Outlook),
    ("live.*", Flavor::Outlook),
    ("msn.com", Flavor::Outlook),
    ("*.onmicrosoft.com", Flavor::Exchange),
    ("yahoo.*", Flavor::Yahoo),
    ("ymail.com", Flavor::Yahoo),
    ("rocketmail.com", Flavor::Yahoo),
    ("aol.com", Flavor::Yahoo),
    ("aim.com", Flavor::Yahoo),
    ("ovh.com", Flavor::Ovh),
    ("ovh.net", Flavor::Ovh),
    ("ovhcloud.com", Flavor::Ovh),
    ("icloud.com", Flavor::Icloud),
    ("me.com", Flavor::Icloud),
    ("mac.com", Flavor::Icloud),
    ("zoho.*", Flavor::Zoho),
    ("zohomail.*", Flavor::Zoho),
    ("gmx.*", Flavor::Gmx),
    ("web.de", Flavor::Gmx),
    ("orange.fr", Flavor::Orange),
    ("wanadoo.fr", Flavor::Orange),
    ("yandex.*", Flavor::Yandex),
    ("ya.ru", Flavor::Yandex),
    ("mail.ru", Flavor::Mailru),
    ("inbox.ru", Flavor::Mailru),
    ("list.ru", Flavor::Mailru),
    ("bk.ru", Flavor::Mailru),
];

/// Where an entry of the table comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The scenario's `flavor_by_domain`.
    Scenario,
    /// The built-in table.
    Builtin,
}

impl Origin {
    /// `scenario` or `built-in`, for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Scenario => "scenario",
            Origin::Builtin => "built-in",
        }
    }
}

/// One row: a domain or domain glob, its flavor and where it comes from.
#[derive(Debug, Clone)]
pub struct DomainEntry {
    /// The key as written (`hotmail.*`).
    pub domain: String,
    /// The voice its recipients get.
    pub flavor: Flavor,
    /// Built-in or from the scenario.
    pub origin: Origin,
    pattern: Pattern,
}

/// The table, in lookup order, with what makes a lookup cheap: every recipient is looked up
/// at RCPT, so a linear scan of the table (about forty globs and names) was most of a plain
/// message's cost.
#[derive(Debug, Clone)]
pub struct DomainFlavors {
    entries: Vec<DomainEntry>,
    /// Exact names (lower case) to their flavor, the first entry of each name.
    exact: HashMap<Box<str>, Flavor>,
    /// The other entries, in lookup order, each with the literal text a match must start and
    /// end with (`gmx.` for `gmx.*`, `.onmicrosoft.com` for `*.onmicrosoft.com`), checked
    /// before the pattern.
    patterns: Vec<(usize, Box<str>, Box<str>)>,
}

/// The longest name a domain may have (RFC 1035): longer ones are looked up the slow way.
const MAX_DOMAIN: usize = 255;

/// The literal text before the first and after the last wildcard of a glob (empty for a
/// regex, which is always tried).
fn literal_ends(pattern: &Pattern) -> (Box<str>, Box<str>) {
    match pattern {
        Pattern::Glob(glob) => {
            let head = glob.find(['*', '?']).map_or(&**glob, |at| &glob[..at]);
            let tail = glob.rfind(['*', '?']).map_or("", |at| &glob[at + 1..]);
            (head.into(), tail.into())
        }
        _ => (Box::from(""), Box::from("")),
    }
}

impl Default for DomainFlavors {
    fn default() -> Self {
        Self::builtin()
    }
}

impl DomainFlavors {
    /// The built-in table alone.
    pub fn builtin() -> Self {
        Self::with(&[]).expect("the built-in domains are valid patterns (tested)")
    }

    /// The built-in table extended by a scenario's entries, which win for their domains.
    pub fn with(scenario: &[(String, Flavor)]) -> Result<Self, PatternError> {
        Self::build(scenario, BUILTIN)
    }

    /// A scenario's entries alone, instead of the built-in table.
    pub fn only(scenario: &[(String, Flavor)]) -> Result<Self, PatternError> {
        Self::build(scenario, &[])
    }

    fn build(
        scenario: &[(String, Flavor)],
        builtin: &[(&str, Flavor)],
    ) -> Result<Self, PatternError> {
        let mut entries = Vec::with_capacity(scenario.len() + builtin.len());
        let mut add = |domain: &str, flavor: Flavor, origin: Origin| -> Result<(), PatternError> {
            entries.push(DomainEntry {
                domain: domain.to_ascii_lowercase(),
                flavor,
                origin,
                pattern: Pattern::compile(domain)?,
            });
            Ok(())
        };
        for (domain, flavor) in scenario {
            add(domain, *flavor, Origin::Scenario)?;
        }
        for (domain, flavor) in builtin {
            add(domain, *flavor, Origin::Builtin)?;
        }
        // Exact before glob, scenario before built-in, longer globs first; stable otherwise.
        entries.sort_by_key(|e| {
            (
                !matches!(e.pattern, Pattern::Exact(_)),
                e.origin == Origin::Builtin,
                std::cmp::Reverse(e.domain.len()),
            )
        });
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for (at, entry) in entries.iter().enumerate() {
            match &entry.pattern {
                Pattern::Exact(name) => {
                    exact.entry(name.clone()).or_insert(entry.flavor);
                }
                pattern => {
                    let (head, tail) = literal_ends(pattern);
                    patterns.push((at, head, tail));
                }
            }
        }
        Ok(Self {
            entries,
            exact,
            patterns,
        })
    }

    /// The table extended by a scenario's `flavor_by_domain` (replaced by it when `builtin` is
    /// false); a refusal is (message, hint).
    pub fn from_table(table: &toml::Table, builtin: bool) -> Result<Self, (String, String)> {
        let mut entries = Vec::with_capacity(table.len());
        for (domain, value) in table {
            let flavor = value
                .as_str()
                .and_then(|name| name.parse::<Flavor>().ok())
                .ok_or_else(|| {
                    (
                        format!("flavor_by_domain: {domain:?} = {value}: not a flavor name"),
                        format!("flavors: {}", Flavor::names()),
                    )
                })?;
            if domain.is_empty() || domain.contains(['@', ' ', '/']) {
                return Err((
                    format!("flavor_by_domain: {domain:?} is not a domain"),
                    "write a domain (\"corp.example\") or a glob (\"*.corp.example\")".to_owned(),
                ));
            }
            entries.push((domain.clone(), flavor));
        }
        let table = match builtin {
            true => Self::with(&entries),
            false => Self::only(&entries),
        };
        table.map_err(|e| (e.to_string(), "write a domain or a glob".to_owned()))
    }

    /// The flavor of recipients at `domain`, if the table names it. Does not allocate.
    pub fn lookup(&self, domain: &str) -> Option<Flavor> {
        if domain.is_empty() {
            return None;
        }
        if domain.len() > MAX_DOMAIN {
            return self
                .entries
                .iter()
                .find(|e| e.pattern.matches(domain))
                .map(|e| e.flavor);
        }
        // Exact names come first in the order, so a name found is the answer.
        let mut lower = [0u8; MAX_DOMAIN];
        let lower = &mut lower[..domain.len()];
        lower.copy_from_slice(domain.as_bytes());
        lower.make_ascii_lowercase();
        let lower = std::str::from_utf8(lower).ok()?;
        if let Some(flavor) = self.exact.get(lower) {
            return Some(*flavor);
        }
        self.patterns
            .iter()
            .filter(|(_, head, tail)| lower.starts_with(&**head) && lower.ends_with(&**tail))
            .map(|(at, _, _)| &self.entries[*at])
            .find(|e| e.pattern.matches(domain))
            .map(|e| e.flavor)
    }

    /// The flavor of `address`'s domain, if the table names it.
    pub fn lookup_address(&self, address: &str) -> Option<Flavor> {
        let domain = address.rsplit_once('@')?.1;
        self.lookup(domain.trim_end_matches('>'))
    }

    /// Every row, in lookup order.
    pub fn entries(&self) -> &[DomainEntry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup as the table's order defines it: the first entry that matches.
    fn scanned(table: &DomainFlavors, domain: &str) -> Option<Flavor> {
        table
            .entries()
            .iter()
            .find(|e| e.pattern.matches(domain))
            .map(|e| e.flavor)
    }

    #[test]
    fn the_indexed_lookup_answers_as_the_ordered_scan() {
        let scenario = [
            ("*.corp.example".to_owned(), Flavor::Exim),
            ("gmail.com".to_owned(), Flavor::Postfix),
            ("a?c.example".to_owned(), Flavor::Zoho),
            ("*mail*".to_owned(), Flavor::Yahoo),
        ];
        let tables = [
            DomainFlavors::builtin(),
            DomainFlavors::with(&scenario).unwrap(),
            DomainFlavors::only(&scenario).unwrap(),
        ];
        let mut domains: Vec<String> = BUILTIN
            .iter()
            .flat_map(|(d, _)| [d.replace('*', "x"), d.replace('*', "").to_uppercase()])
            .collect();
        domains.extend(
            [
                "GMAIL.COM",
                "gmail.co",
                "mail.gmx.net",
                "gmx.",
                "x.onmicrosoft.com",
                "onmicrosoft.com",
                "a.corp.example",
                "corp.example",
                "abc.example",
                "ac.example",
                "hotmail",
                "example.com",
                "",
                "notgmail.com",
                "yahoo.co.jp",
            ]
            .map(str::to_owned),
        );
        domains.push("x".repeat(300) + ".onmicrosoft.com");
        for table in &tables {
            for domain in &domains {
                assert_eq!(
                    table.lookup(domain),
                    scanned(table, domain).filter(|_| !domain.is_empty()),
                    "{domain}"
                );
            }
        }
    }

    #[test]
    fn providers_are_known_by_their_domains() {
        let table = DomainFlavors::builtin();
        for (address, flavor) in [
            ("user_unknown@gmail.com", Flavor::Gmail),
            ("x@GoogleMail.com", Flavor::Gmail),
            ("x@hotmail.co.uk", Flavor::Outlook),
            ("x@live.fr", Flavor::Outlook),
            ("x@msn.com", Flavor::Outlook),
            ("x@contoso.onmicrosoft.com", Flavor::Exchange),
            ("x@yahoo.co.jp", Flavor::Yahoo),
            ("x@aol.com", Flavor::Yahoo),
            ("x@me.com", Flavor::Icloud),
            ("x@zohomail.eu", Flavor::Zoho),
            ("x@web.de", Flavor::Gmx),
            ("x@gmx.net", Flavor::Gmx),
            ("x@wanadoo.fr", Flavor::Orange),
            ("x@yandex.ru", Flavor::Yandex),
            ("x@bk.ru", Flavor::Mailru),
            ("x@ovh.net", Flavor::Ovh),
        ] {
            assert_eq!(table.lookup_address(address), Some(flavor), "{address}");
        }
        for address in [
            "x@example.com",
            "x@notgmail.com",
            "x@onmicrosoft.com",
            "nodomain",
            "x@",
        ] {
            assert_eq!(table.lookup_address(address), None, "{address}");
        }
    }

    #[test]
    fn a_scenario_extends_and_overrides_the_table() {
        let table = DomainFlavors::with(&[
            ("corp.example".to_owned(), Flavor::Exchange),
            ("gmail.com".to_owned(), Flavor::Generic),
            ("*.corp.example".to_owned(), Flavor::Postfix),
        ])
        .unwrap();
        assert_eq!(table.lookup("corp.example"), Some(Flavor::Exchange));
        assert_eq!(table.lookup("mx.corp.example"), Some(Flavor::Postfix));
        assert_eq!(
            table.lookup("gmail.com"),
            Some(Flavor::Generic),
            "the scenario wins"
        );
        assert_eq!(
            table.lookup("googlemail.com"),
            Some(Flavor::Gmail),
            "the rest stays"
        );
        let first = &table.entries()[0];
        assert_eq!(
            (first.origin, first.domain.as_str()),
            (Origin::Scenario, "corp.example")
        );
    }

    #[test]
    fn a_scenario_table_can_replace_the_builtin_one() {
        let corp = [("corp.example".to_owned(), Flavor::Exchange)];
        let only = DomainFlavors::only(&corp).unwrap();
        assert_eq!(only.lookup("corp.example"), Some(Flavor::Exchange));
        assert_eq!(only.lookup("gmail.com"), None);
        assert_eq!(only.entries().len(), 1);
        assert_eq!(
            DomainFlavors::with(&corp).unwrap().lookup("gmail.com"),
            Some(Flavor::Gmail)
        );
    }
}
