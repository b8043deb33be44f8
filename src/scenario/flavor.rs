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
    /// Outlook.com / Exchange Online.
    Outlook,
    /// Yahoo / AOL.
    Yahoo,
    /// Postfix defaults.
    Postfix,
    /// Exim defaults.
    Exim,
}

impl Flavor {
    /// Every flavor, generic first.
    pub const ALL: [Flavor; 7] = [
        Flavor::Generic,
        Flavor::Ovh,
        Flavor::Gmail,
        Flavor::Outlook,
        Flavor::Yahoo,
        Flavor::Postfix,
        Flavor::Exim,
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
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not a known flavor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown flavor {0:?} (known: generic, ovh, gmail, outlook, yahoo, postfix, exim)")]
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
