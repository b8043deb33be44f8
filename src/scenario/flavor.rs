//! Flavors: whose wording the replies use (RFC generic, or a real provider's).

use std::fmt;
use std::str::FromStr;

/// A reply wording style, named after the mail system it imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Flavor {
    /// RFC 5321/3463 wording, our own.
    #[default]
    Generic,
    /// OVHcloud's mail servers.
    Ovh,
    /// Gmail / Google Workspace.
    Gmail,
    /// Outlook.com (Microsoft's consumer mail: hotmail.com, live.com, msn.com).
    Outlook,
    /// Yahoo / AOL.
    Yahoo,
    /// Postfix defaults.
    Postfix,
    /// Exim defaults.
    Exim,
    /// Exchange Online (Microsoft 365) and Exchange Server.
    Exchange,
    /// iCloud Mail (icloud.com, me.com, mac.com).
    Icloud,
    /// Zoho Mail.
    Zoho,
    /// GMX and WEB.DE (United Internet).
    Gmx,
    /// Orange (orange.fr, wanadoo.fr).
    Orange,
    /// Yandex Mail.
    Yandex,
    /// Mail.ru.
    Mailru,
}

impl Flavor {
    /// Every flavor, generic first.
    pub const ALL: [Flavor; 14] = [
        Flavor::Generic,
        Flavor::Ovh,
        Flavor::Gmail,
        Flavor::Outlook,
        Flavor::Yahoo,
        Flavor::Postfix,
        Flavor::Exim,
        Flavor::Exchange,
        Flavor::Icloud,
        Flavor::Zoho,
        Flavor::Gmx,
        Flavor::Orange,
        Flavor::Yandex,
        Flavor::Mailru,
    ];

    /// The name used in scenario files, magic addresses and the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Generic => "generic",
            Flavor::Ovh => "ovh",
            Flavor::Gmail => "gmail",
            Flavor::Outlook => "outlook",
            Flavor::Yahoo => "yahoo",
            Flavor::Postfix => "postfix",
            Flavor::Exim => "exim",
            Flavor::Exchange => "exchange",
            Flavor::Icloud => "icloud",
            Flavor::Zoho => "zoho",
            Flavor::Gmx => "gmx",
            Flavor::Orange => "orange",
            Flavor::Yandex => "yandex",
            Flavor::Mailru => "mailru",
        }
    }

    /// Every flavor's name, comma separated, for help texts and error hints.
    pub fn names() -> String {
        let names: Vec<&str> = Flavor::ALL.iter().map(|f| f.as_str()).collect();
        names.join(", ")
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not a known flavor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown flavor {0:?} (known: {names})", names = Flavor::names())]
pub struct UnknownFlavor(pub String);

impl FromStr for Flavor {
    type Err = UnknownFlavor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Flavor::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownFlavor(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for flavor in Flavor::ALL {
            assert_eq!(flavor.as_str().parse::<Flavor>(), Ok(flavor));
            assert_eq!(Flavor::ALL[flavor as usize], flavor, "ALL is in enum order");
        }
        let error = "hotmail".parse::<Flavor>().unwrap_err().to_string();
        assert!(error.contains("mailru"), "{error}");
    }
}
