//! The HTTP API for a web page and its guards, over real sockets: the routes the web page reads
//! (info, catalog, a message taken apart), who may call the API at all (the bearer token, the
//! loopback rule, the browser guard against other sites and rebound names), and the page's own
//! Content-Security-Policy and Host check.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use common::api::{delivered, http, session_of, Api, Harness};
use common::openapi::check_documented;
use common::PlainConn;
use failmail::api::{self, ApiState};
use failmail::{App, AppConfig};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The routes the web page reads.

#[tokio::test]
async fn info_and_catalog_describe_the_server() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    let info = api.get("/api/info").await;
    assert_eq!(info["smtp"], harness.smtp.to_string());
    assert_eq!(info["records_events"], true);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));

    let catalog = api.get("/api/catalog").await;
    let entries = catalog["entries"].as_array().unwrap();
    let builtin = failmail::scenario::catalog::Catalog::builtin();
    assert_eq!(entries.len(), builtin.entries().len());
    let unknown = entries
        .iter()
        .find(|e| e["name"] == "user_unknown")
        .unwrap();
    assert_eq!(unknown["phase"], "rcpt");
    let flavors: Vec<&str> = unknown["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["flavor"].as_str().unwrap())
        .collect();
    assert_eq!(flavors[0], "generic", "generic first: {flavors:?}");
    let gmail = &unknown["variants"][flavors.iter().position(|f| *f == "gmail").unwrap()];
    assert_eq!(
        (gmail["code"].clone(), gmail["status"].clone()),
        (json!(550), json!("5.1.1"))
    );
    assert!(!gmail["source"].as_str().unwrap().is_empty());
    harness.stop().await;
}

#[tokio::test]
async fn reply_events_name_the_flavor_whose_wording_was_sent() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    // An entry and a flavor without wording of its own: the generic wording is sent, and said.
    let builtin = failmail::scenario::catalog::Catalog::builtin();
    let (entry, missing) = builtin
        .entries()
        .iter()
        .filter(|e| e.phase == failmail::smtp::policy::Phase::Rcpt)
        .find_map(|e| {
            let own: Vec<_> = e.flavors().collect();
            failmail::scenario::flavor::Flavor::ALL
                .into_iter()
                .find(|f| !own.contains(f))
                .map(|f| (e.name.clone(), f))
        })
        .expect("some rcpt entry lacks some flavor");
    let mut smtp = PlainConn::ready(harness.smtp).await;
    let local = smtp.local_addr();
    smtp.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    smtp.cmd("RCPT TO:<user_unknown+gmail@example.net>", 550, "5.1.1")
        .await;
    let other = smtp
        .command(&format!("RCPT TO:<{entry}+{missing}@example.net>"))
        .await;
    assert!(other.code >= 400, "{:?}", other.wire);
    smtp.cmd_code("QUIT", 221).await;
    let session = session_of(api, local).await;
    let events = api.ended(session).await;
    let refusals: Vec<(Value, Value, Value)> = events
        .iter()
        .filter(|e| e["type"] == "reply" && e["code"].as_u64().unwrap() >= 400)
        .map(|e| {
            (
                e["catalog"].clone(),
                e["flavor"].clone(),
                e["phase"].clone(),
            )
        })
        .collect();
    assert_eq!(
        refusals,
        [
            (json!("user_unknown"), json!("gmail"), json!("rcpt")),
            (json!(entry), json!("generic"), json!("rcpt")),
        ]
    );
    let accept = events
        .iter()
        .find(|e| e["type"] == "reply" && e["code"] == 221)
        .unwrap();
    assert_eq!(accept["flavor"], Value::Null);
    harness.stop().await;
}

const MULTIPART: &str = "From: Ann <ann@example.com>\r\nTo: bob@example.net\r\nSubject: =?UTF-8?Q?caf=C3=A9?= report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain body\r\n--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html <script>x()</script>body</p>\r\n--b2--\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b1--\r\n.\r\n";

#[tokio::test]
async fn a_message_is_listed_since_an_id_and_taken_apart() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    let mut smtp = delivered(harness.smtp, b"Subject: first\r\n\r\nx\r\n.\r\n").await;
    smtp.deliver("ann@example.com", "bob@example.net", MULTIPART.as_bytes())
        .await
        .assert_code(250);
    smtp.cmd_code("QUIT", 221).await;

    let all = api.get("/api/messages").await;
    let messages = all["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["subject"], "first");
    assert_eq!(messages[1]["subject"], "café report");
    let first = messages[0]["id"].as_u64().unwrap();
    let second = messages[1]["id"].as_u64().unwrap();
    let newer = api.get(&format!("/api/messages?since={first}")).await;
    let ids: Vec<&Value> = newer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(ids, [&json!(second)]);
    assert_eq!(
        api.get(&format!("/api/messages?since={second}")).await["messages"],
        json!([])
    );
    let refused = api.call("GET", "/api/messages?sinse=1", None).await;
    assert_eq!(refused.status, 400, "{}", refused.text());

    let parts = api.get(&format!("/api/messages/{second}/parts")).await;
    assert_eq!(parts["subject"], "café report");
    assert_eq!(parts["from"], "Ann <ann@example.com>");
    assert_eq!(parts["to"], "bob@example.net");
    assert_eq!(parts["text"], "plain body");
    assert_eq!(parts["html"], "<p>html <script>x()</script>body</p>");
    assert_eq!(
        parts["attachments"],
        json!([{"filename": "report.pdf", "content_type": "application/pdf", "size": 5, "inline": false}])
    );
    let subject = parts["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "Subject")
        .unwrap();
    assert_eq!(subject["value"], "=?UTF-8?Q?caf=C3=A9?= report", "as sent");
    let missing = api.call("GET", "/api/messages/999/parts", None).await;
    assert_eq!(missing.status, 404);
    harness.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Who may call the API.

#[tokio::test]
async fn a_token_is_required_when_configured_and_non_loopback_needs_one() {
    use failmail::api::check_bind;
    let any: SocketAddr = "0.0.0.0:8025".parse().unwrap();
    let refused = check_bind(any, None).expect_err("0.0.0.0 without a token");
    assert!(refused.to_string().contains("0.0.0.0:8025"), "{refused}");
    assert!(refused.hint.as_deref().unwrap().contains("--http-token"));
    assert!(check_bind(any, Some("")).is_err());
    assert!(check_bind(any, Some("s3cret")).is_ok());
    assert!(check_bind("[::]:0".parse().unwrap(), None).is_err());
    assert!(check_bind("127.0.0.1:0".parse().unwrap(), None).is_ok());
    assert!(check_bind("[::1]:0".parse().unwrap(), None).is_ok());

    // The router with a token, on a listener of its own.
    let harness = Harness::start(None).await;
    let app = harness.server.as_ref().unwrap();
    let state = ApiState {
        journal: app.journal().clone(),
        clock: app.clock().clone(),
        scenario: app.scenario().cloned(),
        server: app.control(),
        bounces: Some(app.bounces().clone()),
        listening: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = api::router_with_token(state, Some(Arc::from("s3cret")));
    let served = tokio::spawn(async move { axum::serve(listener, app).await });

    let health = http(addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(health.status, 200);
    for (headers, status) in [
        (vec![], 401),
        (vec![("Authorization", "Bearer wrong")], 401),
        (vec![("Authorization", "Bearer s3cret2")], 401),
        (vec![("Authorization", "Basic czNjcmV0")], 401),
        (vec![("Authorization", "Bearer s3cret")], 200),
        (vec![("Authorization", "bearer s3cret")], 200),
    ] {
        for path in [
            "/api/messages",
            "/metrics",
            "/api/openapi.json",
            "/api/nope",
        ] {
            let response = http(addr, "GET", path, &headers, b"").await;
            let expected = if path == "/api/nope" && status == 200 {
                404
            } else {
                status
            };
            assert_eq!(response.status, expected, "{path} with {headers:?}");
            if expected == 401 {
                assert_eq!(response.header("www-authenticate"), Some("Bearer"));
                let error = response.json();
                assert!(
                    error["error"].as_str().unwrap().contains("token"),
                    "{error}"
                );
                assert!(
                    error["hint"].as_str().unwrap().contains("Bearer"),
                    "{error}"
                );
                if path != "/api/nope" {
                    check_documented("GET", path, &response);
                }
            }
        }
    }
    // A POST without the token changes nothing.
    let refused = http(
        addr,
        "POST",
        "/api/clock/advance",
        &[("Content-Type", "application/json")],
        br#"{"seconds": 60}"#,
    )
    .await;
    assert_eq!(refused.status, 401);
    let token = Api {
        addr,
        token: Some("s3cret".into()),
    };
    assert_eq!(token.get("/api/clock").await["offset_seconds"], 0.0);
    // The default router (what the loopback server serves) needs none.
    assert_eq!(harness.api.get("/api/clock").await["offset_seconds"], 0.0);
    served.abort();
    harness.stop().await;
}

/// The browser guard (`src/api/guard.rs`): a cross-site form post or `no-cors` fetch to
/// `POST /api/reset` is refused and wipes nothing; a page reached through a rebound name
/// (`Host: rebind.attacker.example`) cannot read a captured message; the listener's IP,
/// `localhost` and `--http-host` names can, any `Host` may ask `/healthz`, and programs (no
/// `Origin`) and same-site JSON requests work as before.
#[tokio::test]
async fn other_sites_can_neither_reset_nor_read_through_a_rebound_name() {
    let mut config = AppConfig::loopback();
    config.http.as_mut().expect("HTTP is on").hosts = vec!["failmail.test".into()];
    let server = App::start(config).await.expect("the server starts");
    let addr = server.addresses().http.expect("an HTTP listener");
    let api = Api { addr, token: None };
    let mut smtp = PlainConn::ready(server.addresses().smtp).await;
    smtp.deliver(
        "app@example.com",
        "user@example.net",
        b"Subject: reset your password\r\n\r\nhttps://app.example/reset?t=s3cret\r\n.\r\n",
    )
    .await
    .assert_code(250);
    let id = api.get("/api/messages").await["messages"][0]["id"]
        .as_u64()
        .expect("a message id");
    let raw = format!("/api/messages/{id}/raw");

    let form = ("Content-Type", "application/x-www-form-urlencoded");
    for headers in [
        vec![("Origin", "http://evil.example"), form],
        vec![("Origin", "null"), ("Content-Type", "text/plain")],
        vec![("Sec-Fetch-Site", "cross-site")],
    ] {
        let refused = http(addr, "POST", "/api/reset", &headers, b"x=1").await;
        check_documented("POST", "/api/reset", &refused);
        assert_eq!(refused.status, 403, "{headers:?}: {}", refused.text());
        assert!(refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("another site"));
    }
    assert_eq!(
        api.get("/api/messages").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let rebound = http(
        addr,
        "GET",
        &raw,
        &[("Host", "rebind.attacker.example")],
        b"",
    )
    .await;
    check_documented("GET", "/api/messages/{id}/raw", &rebound);
    assert_eq!(rebound.status, 403);
    assert!(!rebound.text().contains("s3cret"), "{}", rebound.text());
    let health = http(
        addr,
        "GET",
        "/healthz",
        &[("Host", "rebind.attacker.example")],
        b"",
    )
    .await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(health.text().starts_with("ok"), "{}", health.text());
    for host in [
        addr.to_string(),
        format!("localhost:{}", addr.port()),
        "failmail.test:8025".to_owned(),
    ] {
        let read = http(addr, "GET", &raw, &[("Host", host.as_str())], b"").await;
        assert_eq!(read.status, 200, "Host {host}");
        assert!(read.text().contains("s3cret"));
    }

    let same_site = http(
        addr,
        "POST",
        "/api/clock/advance",
        &[
            ("Origin", "http://localhost:3000"),
            ("Content-Type", "application/json"),
        ],
        br#"{"seconds": 60}"#,
    )
    .await;
    assert_eq!(same_site.status, 200, "{}", same_site.text());
    let reset = api.call("POST", "/api/reset", None).await;
    assert_eq!(reset.status, 204, "{}", reset.text());
    assert_eq!(api.get("/api/messages").await["messages"], json!([]));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The web page at `/`: its policy and its Host check.

/// The directives of a Content-Security-Policy, each with its sources.
fn directives(policy: &str) -> BTreeMap<String, Vec<String>> {
    policy
        .split(';')
        .filter_map(|directive| {
            let mut words = directive.split_whitespace();
            let name = words.next()?.to_ascii_lowercase();
            Some((name, words.map(str::to_owned).collect()))
        })
        .collect()
}

/// Every answer of the page carries a Content-Security-Policy that runs scripts from this
/// server only (no inline script, no `eval`), loads nothing from elsewhere, lets the page be
/// framed by nobody, and frames only what it makes itself (a message's HTML, in a frame the
/// page builds sandboxed). Without the header, or with a looser one, this fails.
#[tokio::test]
async fn the_page_forbids_inline_scripts_and_remote_loads() {
    let harness = Harness::start(None).await;
    let addr = harness.api.addr;
    for path in ["/", "/assets/js/main.js", "/assets/app.css"] {
        let answer = http(addr, "GET", path, &[], b"").await;
        assert_eq!(answer.status, 200, "{path}");
        let policy = answer
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path} is served without a Content-Security-Policy"));
        let policy = directives(policy);
        let sources = |name: &str| policy.get(name).cloned().unwrap_or_default();
        assert_eq!(sources("script-src"), ["'self'"], "{path}: {policy:?}");
        for (name, only) in [
            ("connect-src", ["'self'"]),
            ("frame-ancestors", ["'none'"]),
            ("base-uri", ["'none'"]),
        ] {
            assert_eq!(sources(name), only, "{path}: {name} in {policy:?}");
        }
        assert!(
            ["'none'", "'self'"].contains(&sources("default-src").join(" ").as_str()),
            "{path}: default-src {policy:?}"
        );
        assert!(
            ["'none'", "'self'"].contains(&sources("frame-src").join(" ").as_str()),
            "{path}: frame-src {policy:?}"
        );
        for (name, list) in &policy {
            for source in list {
                // Keywords, this server, and inline data (images) only: no other origin.
                assert!(
                    source.starts_with('\'') || source == "data:",
                    "{path}: {name} allows {source}"
                );
                assert!(
                    !["'unsafe-eval'", "'unsafe-hashes'", "'strict-dynamic'"]
                        .contains(&source.as_str()),
                    "{path}: {name} allows {source}"
                );
                if source == "'unsafe-inline'" {
                    assert_eq!(name, "style-src", "{path}: inline code allowed by {name}");
                }
            }
        }
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    }
    // A message's HTML is shown only in a frame the page builds sandboxed, without exceptions
    // (no allow-scripts), with a policy of its own that loads nothing remote.
    let frame = http(addr, "GET", "/assets/js/views/messages.js", &[], b"").await;
    let code = frame.text();
    assert!(code.contains("sandbox: '',"), "{code}");
    assert!(
        code.contains("\"default-src 'none'; img-src data:;"),
        "{code}"
    );
    harness.stop().await;
}

/// A page reached through a rebound name cannot read the page either: `GET /` with a foreign
/// `Host` is refused, while the listener's IP and `localhost` (any port) get the page.
#[tokio::test]
async fn the_page_refuses_a_foreign_host() {
    let harness = Harness::start(None).await;
    let addr = harness.api.addr;
    for path in ["/", "/assets/js/main.js"] {
        let refused = http(
            addr,
            "GET",
            path,
            &[("Host", "rebind.attacker.example")],
            b"",
        )
        .await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert!(
            refused.json()["error"]
                .as_str()
                .unwrap()
                .contains("does not name this server"),
            "{}",
            refused.text()
        );
    }
    for host in [addr.to_string(), format!("localhost:{}", addr.port())] {
        let page = http(addr, "GET", "/", &[("Host", host.as_str())], b"").await;
        assert_eq!(page.status, 200, "Host {host}");
        assert!(
            page.text().contains("<script type=\"module\""),
            "Host {host}"
        );
    }
    harness.stop().await;
}
