//! Each notification style keeps its own wording: every flavor's failed, delayed, expired and
//! delivered DSN is written in the style the flavor maps to (the table below names every
//! flavor), with that style's sender, subject and human-readable sentences — Postfix's "This is
//! the mail system at host …", Exim's "This message was created automatically by mail delivery
//! software", Gmail's "Delivery Status Notification (Failure)" / "(Delay)", Outlook / Exchange's
//! "Undeliverable:" and "Delivery has failed to these recipients or groups", and the generic
//! one. Losing a style, or a flavor's style, fails here.

mod common;

use std::collections::BTreeMap;

use common::bounces::{
    advance, delivered_rules, dsn_parts, field_blocks, raw, send, sent, serve, DAY, SENDER,
};
use common::HOSTNAME;
use failmail::bounces::view::BounceView;
use failmail::scenario::flavor::Flavor;
use mail_parser::MessageParser;

/// The style each flavor writes in; a new flavor must be added here.
const STYLE_OF: [(&str, &str); 14] = [
    ("generic", "generic"),
    ("ovh", "postfix"),
    ("gmail", "gmail"),
    ("outlook", "outlook"),
    ("yahoo", "generic"),
    ("postfix", "postfix"),
    ("exim", "exim"),
    ("exchange", "outlook"),
    ("icloud", "generic"),
    ("zoho", "generic"),
    ("gmx", "generic"),
    ("orange", "generic"),
    ("yandex", "postfix"),
    ("mailru", "exim"),
];

/// What a notification of `kind` in `style` must say: its `From` header, its subject, and
/// sentences of its human-readable part (`{host}` is failmail's host name).
fn wording(style: &str, kind: &str) -> (&'static str, &'static str, Vec<&'static str>) {
    match (style, kind) {
        ("postfix", _) => {
            let from = "\"Mail Delivery System\" <MAILER-DAEMON@{host}>";
            let mut said = vec!["This is the mail system at host {host}.\n"];
            let subject = match kind {
                "delayed" => {
                    said.push(
                        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
                    );
                    said.push("It will\nbe retried until it is 5 days old.");
                    "Delayed Mail (still being retried)"
                }
                "delivered" => {
                    said.push("Your message was successfully delivered to the destination(s)");
                    "Successful Mail Delivery Report"
                }
                _ => {
                    said.push("I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.");
                    said.push("(in reply to RCPT TO command)");
                    "Undelivered Mail Returned to Sender"
                }
            };
            (from, subject, said)
        }
        ("exim", _) => {
            let from = "\"Mail Delivery System\" <MAILER-DAEMON@{host}>";
            let mut said =
                vec!["This message was created automatically by mail delivery software.\n"];
            let subject = match kind {
                "delayed" => {
                    said.push("A message that you sent has not yet been delivered to one or more of its\nrecipients after more than 4 hour(s) on the queue on {host}.");
                    "Warning: message delayed"
                }
                "delivered" => {
                    said.push("Your message has been delivered to the following address(es):");
                    "Delivery Status Notification"
                }
                "expired" => {
                    said.push("This is a permanent error. The following address(es) failed:");
                    said.push("retry timeout exceeded");
                    "Mail delivery failed: returning message to sender"
                }
                _ => {
                    said.push("This is a permanent error. The following address(es) failed:");
                    said.push("SMTP error from remote mail server after RCPT TO:<");
                    "Mail delivery failed: returning message to sender"
                }
            };
            (from, subject, said)
        }
        ("gmail", _) => {
            let from = "\"Mail Delivery Subsystem\" <mailer-daemon@{host}>";
            let (subject, said) = match kind {
                "delayed" => (
                    "Delivery Status Notification (Delay)",
                    vec![
                        "** Message not delivered yet **",
                        "The response from the remote server was:",
                    ],
                ),
                "delivered" => (
                    "Delivery Status Notification (Success)",
                    vec!["** Message delivered **"],
                ),
                _ => (
                    "Delivery Status Notification (Failure)",
                    vec![
                        "** Message not delivered **",
                        "The response from the remote server was:",
                    ],
                ),
            };
            (from, subject, said)
        }
        ("outlook", _) => {
            let from = "\"Microsoft Outlook\" <postmaster@{host}>";
            let report = vec![
                "Diagnostic information for administrators:\n\nGenerating server: {host}",
                "Remote Server returned '",
                "Original message headers:\n\nFrom: <bounces+42-user=x@app.test>",
            ];
            let (subject, mut said) = match kind {
                "delayed" => (
                    "Delivery delayed:Invoice 42",
                    vec!["Delivery is delayed to these recipients or groups:"],
                ),
                "delivered" => (
                    "Delivered: Invoice 42",
                    vec!["Your message has been delivered to the following recipients:"],
                ),
                "expired" => (
                    "Undeliverable: Invoice 42",
                    vec![
                        "Delivery has failed to these recipients or groups:",
                        "550 4.4.7 QUEUE.Expired; message expired [Message=452 4.2.2",
                    ],
                ),
                _ => (
                    "Undeliverable: Invoice 42",
                    vec!["Delivery has failed to these recipients or groups:"],
                ),
            };
            if kind != "delivered" {
                said.extend(report);
            }
            (from, subject, said)
        }
        ("generic", _) => {
            let from = "\"Mail Delivery System\" <MAILER-DAEMON@{host}>";
            let first =
                "This is an automatically generated Delivery Status Notification from {host}.";
            let (subject, said) = match kind {
                "delayed" => (
                    "Delivery Status Notification (Delay)",
                    "Delivery to the following recipients has been delayed.",
                ),
                "delivered" => (
                    "Delivery Status Notification (Success)",
                    "Your message was delivered to the following recipients:",
                ),
                "expired" => (
                    "Delivery Status Notification (Failure)",
                    "could not be\ndelivered before its delivery time expired.",
                ),
                _ => (
                    "Delivery Status Notification (Failure)",
                    "Delivery to the following recipients failed permanently:",
                ),
            };
            (from, subject, vec![first, said])
        }
        _ => panic!("no wording known for style {style}"),
    }
}

/// The flavor a notification of `send_all` is about, from its recipient.
fn flavor_of(view: &BounceView) -> &'static str {
    let rcpt = &view.recipients[0].recipient;
    STYLE_OF
        .iter()
        .map(|(flavor, _)| *flavor)
        .find(|f| rcpt.contains(&format!("+{f}+")) || rcpt.starts_with(&format!("happy-{f}@")))
        .unwrap_or_else(|| panic!("no flavor in {rcpt}"))
}

#[tokio::test]
async fn every_flavor_writes_in_its_style() {
    let table: BTreeMap<&str, &str> = STYLE_OF.into_iter().collect();
    let flavors: Vec<&str> = Flavor::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(
        table.keys().copied().collect::<Vec<_>>(),
        {
            let mut sorted = flavors.clone();
            sorted.sort();
            sorted
        },
        "STYLE_OF names every flavor once"
    );
    let app = serve(&delivered_rules(), |_| {}).await;
    for flavor in &flavors {
        for rcpt in [
            format!("<user_unknown+{flavor}+async@failed.example>"),
            format!("<mailbox_full+{flavor}+async@retried.example>"),
            format!("<happy-{flavor}@delivered.example> NOTIFY=SUCCESS"),
        ] {
            send(&app, SENDER, "", &[&rcpt]).await;
        }
    }
    advance(&app, 6 * DAY).await;
    let views = sent(&app, 4 * flavors.len()).await;
    let mut seen = BTreeMap::new();
    for view in &views {
        let flavor = flavor_of(view);
        let style = table[flavor];
        assert_eq!(view.style, style, "{flavor}: {view:?}");
        *seen.entry((flavor, view.kind)).or_insert(0) += 1;
        let raw = raw(&app, view.id);
        let message = MessageParser::default().parse(&raw).expect("a message");
        let (from, subject, said) = wording(style, view.kind);
        let from = from.replace("{host}", HOSTNAME);
        let context = format!("{flavor} {} ({style})", view.kind);
        let header = |name: &str| {
            message
                .header_raw(name)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("From"), from, "{context}");
        assert_eq!(message.subject(), Some(subject), "{context}");
        let human = dsn_parts(&raw).human.replace("\r\n", "\n");
        for sentence in said {
            let sentence = sentence.replace("{host}", HOSTNAME);
            assert!(
                human.contains(&sentence),
                "{context}: {sentence:?} missing from\n{human}"
            );
        }
    }
    assert_eq!(seen.len(), 4 * flavors.len(), "{seen:?}");
}

/// Exchange's reports carry the headers Exchange Online stamps on them, which bounce parsers
/// read; the other styles add none.
#[tokio::test]
async fn outlook_reports_carry_exchange_headers() {
    let app = serve("", |_| {}).await;
    send(
        &app,
        SENDER,
        "",
        &[
            "<user_unknown+exchange+async@failed.example>",
            "<user_unknown+postfix+async@failed.example>",
        ],
    )
    .await;
    advance(&app, DAY).await;
    let views = sent(&app, 2).await;
    for view in views {
        let raw = raw(&app, view.id);
        let message = MessageParser::default().parse(&raw).expect("a message");
        let exchange = [
            ("Content-Language", "en-US"),
            ("X-MS-Exchange-Message-Is-Ndr", ""),
            (
                "X-MS-Exchange-CrossTenant-OriginalArrivalTime",
                "15 Jan 2027 08:00:00.0000 (UTC)",
            ),
            ("X-MS-Exchange-CrossTenant-FromEntityHeader", "Hosted"),
        ];
        for (name, value) in exchange {
            let found = message.header_raw(name).map(str::trim);
            match view.style {
                "outlook" => assert_eq!(found, Some(value), "{name}"),
                _ => assert_eq!(found, None, "{name} in a {} notice", view.style),
            }
        }
        // The host that answered, as the answering flavor names it: Exchange Online's for
        // its domains, the recipient's domain for the others.
        let parts = dsn_parts(&raw);
        let remote = field_blocks(&parts.fields)[1].get("Remote-MTA");
        if view.style == "outlook" {
            assert!(
                parts.human.contains("user_unknown+exchange+async@failed.example<mailto:user_unknown+exchange+async@failed.example>"),
                "{}", parts.human
            );
            assert_eq!(
                remote.as_deref(),
                Some("dns; failed-example.mail.protection.outlook.com")
            );
        } else {
            assert_eq!(remote.as_deref(), Some("dns; failed.example"));
        }
    }
}

/// The styles and their sources are in the catalog, as the replies' are: `GET /api/catalog`
/// (checked against the OpenAPI document) lists each style with the flavors that write in it —
/// every flavor exactly once, in the style its notifications are written in — each flavor with
/// its evidence, and the style's sender, subjects and source; `failmail catalog --styles
/// --format json` prints the same.
#[tokio::test]
async fn the_catalog_lists_every_style_with_its_flavors_and_sources() {
    let app = serve("", |_| {}).await;
    let api = common::api::Api {
        addr: app.addresses().http.expect("the API listens"),
        token: None,
    };
    let catalog = api.get("/api/catalog").await;
    let styles = catalog["styles"].as_array().expect("styles");
    let names: Vec<&str> = styles.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["generic", "postfix", "exim", "gmail", "outlook"]);
    let mut listed = BTreeMap::new();
    for style in styles {
        assert!(!style["source"].as_str().unwrap().is_empty(), "{style}");
        for f in style["flavors"].as_array().unwrap() {
            assert!(!f["evidence"].as_str().unwrap().is_empty(), "{f}");
            let previous = listed.insert(
                f["flavor"].as_str().unwrap(),
                style["name"].as_str().unwrap(),
            );
            assert!(previous.is_none(), "{f} listed twice");
        }
    }
    let table: BTreeMap<&str, &str> = STYLE_OF.into_iter().collect();
    assert_eq!(
        listed, table,
        "the catalog names the style each flavor writes in"
    );
    let outlook = &styles[4];
    assert_eq!(outlook["subjects"]["failed"], "Undeliverable: {subject}");
    assert_eq!(outlook["from"], "Microsoft Outlook <postmaster@{host}>");

    let output = common::binary::binary_command(&[], &["catalog", "--styles", "--format", "json"])
        .output()
        .expect("failmail runs");
    assert!(output.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(&printed, &catalog["styles"]);
}
