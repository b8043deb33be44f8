//! TLS for STARTTLS and implicit TLS: loading certificates into a rustls configuration, and the
//! switch that says whether sessions are offered TLS at all.
//!
//! TLS is off unless asked for (`--tls`, `--tls-cert`/`--tls-key`, or a scenario's
//! `[server] tls = true`): mailers such as nodemailer and Go's `net/smtp` upgrade whenever STARTTLS
//! is offered and then refuse a certificate they do not trust. Only TLS 1.2 and 1.3 are offered
//! (rustls has nothing older). Without a certificate of the user's, the development certificate
//! shipped in `certs/` (for localhost, 127.0.0.1 and ::1) is used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The development certificate chain (leaf for localhost), embedded so that no file is needed.
pub const DEV_CERT_PEM: &[u8] = include_bytes!("../../certs/localhost.pem");
/// The development certificate's private key.
pub const DEV_KEY_PEM: &[u8] = include_bytes!("../../certs/localhost-key.pem");
/// The development CA that signed [`DEV_CERT_PEM`]; clients in tests trust it.
pub const DEV_CA_PEM: &[u8] = include_bytes!("../../certs/ca.pem");

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(String),
    /// The key file holds no private key.
    #[error("{0}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(String),
    /// rustls refused the pair (key does not match, unsupported algorithm…).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// PEM syntax error.
    #[error("{0}: bad PEM: {1}")]
    Pem(String, std::io::Error),
}

/// Where the certificate comes from.
#[derive(Debug, Clone, Default)]
pub enum CertificateSource {
    /// The embedded development certificate.
    #[default]
    Development,
    /// PEM files given by the user.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

/// Builds the acceptor shared by every TLS handshake.
pub fn acceptor(source: &CertificateSource) -> Result<TlsAcceptor, TlsError> {
    let (cert_pem, key_pem, cert_name, key_name) = match source {
        CertificateSource::Development => (
            DEV_CERT_PEM.to_vec(),
            DEV_KEY_PEM.to_vec(),
            "development certificate".to_owned(),
            "development key".to_owned(),
        ),
        CertificateSource::Files { cert, key } => (
            read(cert)?,
            read(key)?,
            cert.display().to_string(),
            key.display().to_string(),
        ),
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(cert_name.clone(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_name));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Pem(key_name.clone(), e))?
        .ok_or(TlsError::NoKey(key_name))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether new sessions are offered TLS, and the acceptor their handshakes use.
///
/// The acceptor is built at start from the command line's certificate, or, when a scenario turns
/// TLS on and the command line gave none, from the development certificate at that moment (a
/// reload may do so). Once built it stays: sessions that were offered TLS can always complete it.
pub(crate) struct TlsSwitch {
    acceptor: ArcSwapOption<TlsAcceptor>,
    /// `--no-tls`: never, whatever a scenario says.
    forbidden: bool,
}

impl TlsSwitch {
    /// The switch for a server given `certificate` (or none), `forbidden` by `--no-tls`.
    pub(crate) fn new(
        certificate: Option<&CertificateSource>,
        forbidden: bool,
    ) -> Result<Self, TlsError> {
        let acceptor = match certificate {
            Some(source) if !forbidden => Some(Arc::new(acceptor(source)?)),
            _ => None,
        };
        Ok(Self {
            acceptor: ArcSwapOption::new(acceptor),
            forbidden,
        })
    }

    /// The acceptor, once TLS was ever on.
    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.acceptor.load().as_deref().cloned()
    }

    /// Whether sessions that `want` TLS (the command line's or the scenario's choice) get it:
    /// never under `--no-tls`; otherwise yes, with the development certificate if no other was
    /// given.
    pub(crate) fn offer(&self, want: bool) -> bool {
        if !want || self.forbidden {
            return false;
        }
        if self.acceptor.load().is_some() {
            return true;
        }
        match acceptor(&CertificateSource::Development) {
            Ok(built) => {
                self.acceptor.store(Some(Arc::new(built)));
                true
            }
            Err(error) => {
                tracing::error!(%error, "the development certificate does not load: TLS stays off");
                false
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificate_loads() {
        acceptor(&CertificateSource::Development).unwrap();
    }

    #[test]
    fn tls_is_offered_only_when_wanted_and_never_when_forbidden() {
        let off = TlsSwitch::new(None, false).unwrap();
        assert!(!off.offer(false));
        assert!(
            off.acceptor().is_none(),
            "nothing is loaded unless asked for"
        );
        assert!(
            off.offer(true),
            "a scenario turns it on with the development certificate"
        );
        assert!(off.acceptor().is_some());
        let forbidden = TlsSwitch::new(Some(&CertificateSource::Development), true).unwrap();
        assert!(!forbidden.offer(true));
        assert!(forbidden.acceptor().is_none());
    }

    #[test]
    fn missing_files_name_the_path() {
        let Err(error) = acceptor(&CertificateSource::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        }) else {
            panic!("missing files were accepted");
        };
        assert!(
            error.to_string().contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }

    #[test]
    fn key_file_without_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, DEV_CERT_PEM).unwrap();
        std::fs::write(&key, b"not a key").unwrap();
        let Err(error) = acceptor(&CertificateSource::Files { cert, key }) else {
            panic!("a key file without a key was accepted");
        };
        assert!(matches!(error, TlsError::NoKey(_)), "{error}");
    }
}
