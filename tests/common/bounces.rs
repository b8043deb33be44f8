//! Helpers of the later-bounce tests (`tests/bounce*.rs`): failmail on a clock that moves only
//! when told, a message sent with DSN parameters, the clock moved through the API as a CI job
//! would, the notifications once sent, and their parts and fields read with mail-parser.

use std::sync::Arc;
use std::time::Duration;

use failmail::bounces::view::BounceView;
use failmail::clock::ManualClock;
use failmail::scenario::flavor::Flavor;
use failmail::{AppConfig, RunningApp};
use mail_parser::{HeaderForm, MessageParser, MimeHeaders};

use super::binary::http_post;
use super::Conn;

/// A VERP sender, which must come back byte for byte.
pub(crate) const SENDER: &str = "bounces+42-user=x@app.test";
/// One day on the clock.
pub(crate) const DAY: Duration = Duration::from_secs(86_400);
/// Where the clock of [`serve`] starts, in seconds since the epoch.
pub(crate) const START_SECS: u64 = 1_800_000_000;

/// One rule per flavor: `happy-<flavor>@…` is delivered a minute after its 250, so that a
/// `NOTIFY=SUCCESS` gets that flavor's success DSN.
pub(crate) fn delivered_rules() -> String {
    let mut text = String::new();
    for flavor in Flavor::ALL {
        text.push_str(&format!(
            "[[rule]]\nrcpt = \"happy-{flavor}@*\"\nflavor = \"{flavor}\"\ndeliver = {{ after = \"1m\" }}\n\n"
        ));
    }
    text
}

/// failmail on a clock that moves only when told (at [`START_SECS`]), with the HTTP API,
/// serving `scenario`, after `change` had its say on the configuration.
pub(crate) async fn serve(scenario: &str, change: impl FnOnce(&mut AppConfig)) -> RunningApp {
    let config = super::scenario_with(|c| {
        c.clock = Arc::new(ManualClock::new(Duration::from_secs(START_SECS)));
        c.http = AppConfig::loopback().http;
        change(c);
    });
    super::start_toml(config, "bounces.toml", scenario).await
}

/// Sends one message from `from` (with MAIL parameters) to `rcpts` (each with its RCPT
/// parameters), every recipient accepted.
pub(crate) async fn send(app: &RunningApp, from: &str, mail_params: &str, rcpts: &[&str]) {
    let mut conn = Conn::ready(app.addresses().smtp).await;
    conn.cmd_code(&format!("MAIL FROM:<{from}>{mail_params}"), 250)
        .await;
    for rcpt in rcpts {
        conn.cmd_code(&format!("RCPT TO:{rcpt}"), 250).await;
    }
    conn.cmd_code("DATA", 354).await;
    let body = format!("From: <{from}>\r\nTo: <someone@x.example>\r\nSubject: Invoice 42\r\nMessage-ID: <m42@app.test>\r\n\r\nThe body line.\r\n.\r\n");
    conn.send(body).await;
    conn.reply().await.assert_code(250);
    conn.quit().await;
}

/// Moves the clock through the HTTP API, as a CI job would.
pub(crate) async fn advance(app: &RunningApp, by: Duration) {
    let http = app.addresses().http.expect("the API listens");
    let body = format!("{{\"seconds\": {}}}", by.as_secs());
    let (status, answer) = http_post(http, "/api/clock/advance", Some(&body)).await;
    assert!(status.contains("200"), "{status} {answer}");
}

/// The sent notifications, once `n` are sent (bounded wait).
pub(crate) async fn sent(app: &RunningApp, n: usize) -> Vec<BounceView> {
    super::eventually(&format!("{n} bounces sent"), || {
        let sent = app.bounces().list().1;
        (sent.len() >= n).then(|| sent.iter().map(|s| BounceView::sent(s)).collect())
    })
    .await
}

/// The bytes of the sent notification `id`.
pub(crate) fn raw(app: &RunningApp, id: u64) -> Vec<u8> {
    app.bounces().sent_by_id(id).expect("sent").raw.to_vec()
}

/// A DSN's parts, as text: the human-readable part, the `message/delivery-status` part, and
/// the returned part with its content type.
pub(crate) struct DsnParts {
    /// The first part, decoded.
    pub human: String,
    /// The `message/delivery-status` body.
    pub fields: String,
    /// `message/rfc822` or `text/rfc822-headers`.
    pub returned_type: String,
    /// Its body.
    pub returned: String,
}

/// Reads a DSN with mail-parser, checking that it is a `multipart/report;
/// report-type=delivery-status`.
pub(crate) fn dsn_parts(raw: &[u8]) -> DsnParts {
    let message = MessageParser::default().parse(raw).expect("a MIME message");
    let ctype = message.root_part().content_type().expect("a content type");
    assert_eq!(ctype.ctype(), "multipart");
    assert_eq!(ctype.subtype(), Some("report"));
    assert_eq!(ctype.attribute("report-type"), Some("delivery-status"));
    let mut parts = DsnParts {
        human: message.body_text(0).expect("a text part").into_owned(),
        fields: String::new(),
        returned_type: String::new(),
        returned: String::new(),
    };
    for part in message.parts.iter().skip(1) {
        let Some(t) = part.content_type() else {
            continue;
        };
        let kind = format!("{}/{}", t.ctype(), t.subtype().unwrap_or(""));
        let text = String::from_utf8_lossy(part.contents()).into_owned();
        match kind.as_str() {
            "message/delivery-status" => parts.fields = text,
            "message/rfc822" | "text/rfc822-headers" if parts.returned_type.is_empty() => {
                parts.returned_type = kind;
                parts.returned = text;
            }
            _ => {}
        }
    }
    parts
}

/// The `message/delivery-status` body as its blocks of fields (RFC 3464 §2.1: the
/// per-message fields, then one block per recipient), each parsed by mail-parser as a header
/// section.
pub(crate) fn field_blocks(fields: &str) -> Vec<FieldBlock> {
    fields
        .split("\r\n\r\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| FieldBlock(format!("{}\r\n\r\n", block.trim_end())))
        .collect()
}

/// One block of DSN fields.
pub(crate) struct FieldBlock(String);

impl FieldBlock {
    /// The unfolded value of field `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        let message = MessageParser::default()
            .parse_headers(self.0.as_bytes())
            .expect("a header section");
        message
            .header_as(name.to_owned(), HeaderForm::Raw)
            .first()
            .and_then(|v| v.as_text())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// Field `name` read as a date, in seconds since the epoch.
    pub(crate) fn date(&self, name: &str) -> Option<i64> {
        let message = MessageParser::default()
            .parse_headers(self.0.as_bytes())
            .expect("a header section");
        message
            .header_as(name.to_owned(), HeaderForm::Date)
            .first()
            .and_then(|v| v.as_datetime())
            .map(|d| d.to_timestamp())
    }
}
