//! `--bounce-to smtp://HOST:PORT`: each notification, once made, is also delivered by SMTP to
//! the one address the user named (typically the application's own inbound bounce endpoint on
//! localhost), from the null sender `<>` to the original envelope sender, with retries when the
//! endpoint answers 4xx or cannot be reached; the waits between attempts are counted on the
//! clock, as every later bounce is, so that moving it forward hurries them too. When the
//! attempts run out, failmail gives up on that notification and says so in its log (and in
//! the `bounce_forwarded` event). This is the only outbound SMTP failmail ever makes, and only
//! when asked: the target comes from the command line, never from a message.
//!
//! The SMTP client is the `lettre` crate.

use std::time::Duration;

use bytes::Bytes;
use lettre::address::Envelope;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// Where notifications are delivered, and how hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// The host (name or IP) to connect to.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Attempts per notification, the first included.
    pub attempts: u32,
    /// The wait before the second attempt, on the clock; each later wait doubles it.
    pub first_retry: Duration,
}

/// The `--bounce-to` value is not `smtp://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--bounce-to takes smtp://HOST:PORT, not {0:?}")]
pub struct BadTarget(pub String);

impl ForwardConfig {
    /// Reads `smtp://HOST:PORT` (`[v6]` hosts in brackets), with the default retries: five
    /// attempts, the first retry after a second.
    pub fn parse(url: &str) -> Result<Self, BadTarget> {
        let bad = || BadTarget(url.to_owned());
        let rest = url.strip_prefix("smtp://").ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            attempts: 5,
            first_retry: Duration::from_secs(1),
        })
    }

    /// `smtp://host:port`, as logs and events name it.
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("smtp://[{}]:{}", self.host, self.port)
        } else {
            format!("smtp://{}:{}", self.host, self.port)
        }
    }
}

/// One notification to deliver.
#[derive(Debug, Clone)]
pub(super) struct Job {
    /// Its bounce id.
    pub bounce: u64,
    /// The envelope recipient: the original message's envelope sender.
    pub to: String,
    /// The notification's bytes.
    pub raw: Bytes,
}

/// What one attempt came to.
#[derive(Debug)]
pub(super) enum Attempt {
    /// Accepted.
    Delivered,
    /// Refused for now (4xx) or not reached: try again.
    Retry(String),
    /// Refused for good (5xx), or the address cannot be sent to.
    Failed(String),
}

/// The SMTP client for the target.
pub(super) struct Forwarder {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Forwarder {
    /// A client of `config`'s target that says `EHLO hostname`.
    pub(super) fn new(config: &ForwardConfig, hostname: &str) -> Self {
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
                .port(config.port)
                .hello_name(ClientId::Domain(hostname.to_owned()))
                .timeout(Some(Duration::from_secs(30)))
                .build();
        Self { transport }
    }

    /// One attempt at delivering `job`, from `<>`.
    pub(super) async fn attempt(&self, job: &Job) -> Attempt {
        let to = match job.to.parse::<lettre::Address>() {
            Ok(address) => address,
            Err(error) => return Attempt::Failed(format!("bad address {:?}: {error}", job.to)),
        };
        let envelope = match Envelope::new(None, vec![to]) {
            Ok(envelope) => envelope,
            Err(error) => return Attempt::Failed(error.to_string()),
        };
        match self.transport.send_raw(&envelope, &job.raw).await {
            Ok(_) => Attempt::Delivered,
            Err(error) if error.is_permanent() => Attempt::Failed(error.to_string()),
            Err(error) => Attempt::Retry(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let config = ForwardConfig::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 2525));
        assert_eq!(config.target(), "smtp://127.0.0.1:2525");
        let v6 = ForwardConfig::parse("smtp://[::1]:25").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.target(), "smtp://[::1]:25");
        for bad in [
            "127.0.0.1:25",
            "smtp://host",
            "smtp://:25",
            "smtp://h:0",
            "http://h:25",
            "smtp://u@h:25",
        ] {
            assert!(ForwardConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
