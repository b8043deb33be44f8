//! Decoding of the SASL PLAIN (RFC 4616) and LOGIN responses used by AUTH (RFC 4954).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Why a SASL response was refused (all answered with 501 5.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SaslError {
    /// Not valid base64.
    #[error("response is not valid base64")]
    Base64,
    /// Decoded, but not `authzid NUL authcid NUL password` in UTF-8.
    #[error("response is not a valid PLAIN message")]
    Plain,
    /// Decoded, but not UTF-8.
    #[error("response is not UTF-8")]
    Utf8,
}

/// Credentials from a PLAIN or LOGIN exchange.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// The authentication identity (the "account").
    pub user: String,
    /// The password. Never logged: `Debug` hides it.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

fn decode(text: &str) -> Result<Vec<u8>, SaslError> {
    if text == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(text.trim()).map_err(|_| SaslError::Base64)
}

/// Decodes a PLAIN response: base64 of `[authzid] NUL authcid NUL passwd`.
pub(crate) fn decode_plain(response: &str) -> Result<Credentials, SaslError> {
    let raw = decode(response)?;
    let mut fields = raw.split(|&b| b == 0);
    let (Some(_authzid), Some(user), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::Plain);
    };
    if user.is_empty() {
        return Err(SaslError::Plain);
    }
    Ok(Credentials {
        user: String::from_utf8(user.to_vec()).map_err(|_| SaslError::Utf8)?,
        password: String::from_utf8(password.to_vec()).map_err(|_| SaslError::Utf8)?,
    })
}

/// Decodes one LOGIN response (the user name or the password).
pub(crate) fn decode_login(response: &str) -> Result<String, SaslError> {
    String::from_utf8(decode(response)?).map_err(|_| SaslError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_authzid() {
        let creds = decode_plain(&STANDARD.encode("\0alice\0secret")).unwrap();
        assert_eq!(creds.user, "alice");
        assert_eq!(creds.password, "secret");
        let creds = decode_plain(&STANDARD.encode("admin\0bob\0pw")).unwrap();
        assert_eq!(creds.user, "bob");
    }

    #[test]
    fn plain_faults() {
        assert_eq!(decode_plain("!!!"), Err(SaslError::Base64));
        assert_eq!(
            decode_plain(&STANDARD.encode("alice")),
            Err(SaslError::Plain)
        );
        assert_eq!(
            decode_plain(&STANDARD.encode("\0\0pw")),
            Err(SaslError::Plain)
        );
        assert_eq!(
            decode_plain(&STANDARD.encode("a\0b\0c\0d")),
            Err(SaslError::Plain)
        );
        assert_eq!(
            decode_plain(&STANDARD.encode(b"\0\xff\0pw")),
            Err(SaslError::Utf8)
        );
        assert_eq!(decode_plain("="), Err(SaslError::Plain));
    }

    #[test]
    fn login_and_debug_hides_password() {
        assert_eq!(decode_login(&STANDARD.encode("carol")).unwrap(), "carol");
        assert_eq!(decode_login("="), Ok(String::new()));
        let creds = Credentials {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
