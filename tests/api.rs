//! The HTTP API's core, over real sockets: events and captured messages of real SMTP sessions,
//! bad requests, the event filters, and the OpenAPI document itself.
//!
//! Every API call goes through [`Api::call`] (in `tests/common/api.rs`), which checks the answer
//! against `/api/openapi.json`: the status must be documented for the route, the content type must
//! be the documented one, and a JSON body must validate against the documented schema. So the
//! document is proved true by every test (here and in the other `tests/api_*.rs` files), and
//! [`openapi_lists_exactly_the_routes`] proves it lists exactly the routes the router serves.

mod common;

use std::collections::BTreeSet;

use common::api::{http, session_of, summary, Harness, BLOCKING_SCENARIO};
use common::openapi::{document, resolve, validate};
use common::PlainConn;
use failmail::api;
use serde_json::{json, Value};

#[tokio::test]
async fn a_session_is_journaled_in_order_and_its_message_kept_byte_exact() {
    let harness = Harness::start(Some(BLOCKING_SCENARIO)).await;
    let api = &harness.api;
    let mut smtp = PlainConn::ready(harness.smtp).await;
    let local = smtp.local_addr();
    smtp.cmd_code("MAIL FROM:<sender@example.com>", 250).await;
    smtp.cmd_code("RCPT TO:<user_unknown@x.example>", 550).await;
    smtp.cmd_code("RCPT TO:<blocked@x.example>", 550).await;
    smtp.cmd_code("RCPT TO:<rcpt@x.example>", 250).await;
    smtp.cmd_code("DATA", 354).await;
    // Dot-stuffed on the wire; kept unstuffed. Bare LF and trailing spaces survive.
    smtp.send(b"Subject: hi\r\n\r\n..leading dot\r\nbare\nlf  \r\n.\r\n")
        .await;
    smtp.expect_code(250).await;
    smtp.cmd_code("QUIT", 221).await;

    let session = session_of(api, local).await;
    let events = api.ended(session).await;
    assert_eq!(
        summary(&events),
        [
            "session_start",
            "reply 220",
            "command EHLO client.example",
            "reply 250",
            "command MAIL FROM:<sender@example.com>",
            "reply 250",
            "command RCPT TO:<user_unknown@x.example>",
            "reply 550",
            "command RCPT TO:<blocked@x.example>",
            "reply 550",
            "command RCPT TO:<rcpt@x.example>",
            "reply 250",
            "command DATA",
            "reply 354",
            "message",
            "reply 250",
            "command QUIT",
            "reply 221",
            "session_end",
        ],
        "{events:#?}"
    );
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert!(events.iter().all(|e| e["session"] == session));
    assert_eq!(events[0]["peer"], local.to_string());

    // The magic address: a catalog reply, no rule.
    let magic = &events[7];
    assert_eq!(magic["status"], "5.1.1");
    assert_eq!(magic["catalog"], "user_unknown");
    assert_eq!(magic["phase"], "rcpt");
    assert_eq!(magic["rule"], Value::Null);
    // The scenario rule: its index in the file.
    let ruled = &events[9];
    assert_eq!(ruled["rule"], 0);
    assert_eq!(ruled["catalog"], "user_unknown");

    // The captured message, from its event.
    let message_event = &events[14];
    let id = message_event["message_id"].as_u64().unwrap();
    let message = api.get(&format!("/api/messages/{id}")).await;
    let expected_data: &[u8] = b"Subject: hi\r\n\r\n.leading dot\r\nbare\nlf  \r\n";
    assert_eq!(message["id"], id);
    assert_eq!(message["session"], session);
    assert_eq!(message["queue_id"], message_event["queue_id"]);
    assert_eq!(message["peer"], local.to_string());
    assert_eq!(message["helo"], "client.example");
    assert_eq!(message["auth_user"], Value::Null);
    assert_eq!(message["tls"], false);
    assert_eq!(message["mail_from"], "sender@example.com");
    assert_eq!(message["recipients"], json!(["rcpt@x.example"]));
    assert_eq!(message["size"], expected_data.len());
    assert_eq!(message_event["size"], expected_data.len());
    let received = message["received_at_ms"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(received <= now && now - received < 60_000);

    let raw = api
        .call("GET", &format!("/api/messages/{id}/raw"), None)
        .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("message/rfc822"));
    assert_eq!(raw.body, expected_data);

    let list = api.get("/api/messages").await;
    assert_eq!(list["messages"], json!([message]));
    assert_eq!(list["accepted"], 1);
    assert_eq!(list["dropped"], 0);

    // Paging: since and limit.
    let first_two = api
        .get(&format!("/api/events?session={session}&limit=2"))
        .await;
    assert_eq!(first_two["events"].as_array().unwrap().len(), 2);
    let rest = api
        .get(&format!("/api/events?session={session}&since={}", ids[1]))
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), events.len() - 2);
    assert_eq!(rest["dropped"], 0);

    // DELETE forgets the messages; the id is then unknown.
    let deleted = api.call("DELETE", "/api/messages", None).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    let gone = api.call("GET", &format!("/api/messages/{id}"), None).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"], format!("no message {id}"));
    let list = api.get("/api/messages").await;
    assert_eq!(list["messages"], json!([]));
    assert_eq!(list["accepted"], 1);
    harness.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    let advance = "/api/clock/advance";
    let cases: [(&str, u16, &str); 7] = [
        ("{", 400, "EOF"),
        ("[]", 400, "expected struct"),
        ("{}", 400, "missing field `seconds`"),
        (
            r#"{"seconds": 1, "minutes": 2}"#,
            400,
            "unknown field `minutes`",
        ),
        (r#"{"seconds": "1"}"#, 400, "invalid type"),
        (r#"{"seconds": -1}"#, 400, "from 0 to"),
        (r#"{"seconds": 1e12}"#, 400, "from 0 to"),
    ];
    for (body, status, needle) in cases {
        let response = api
            .call("POST", advance, Some(("application/json", body.as_bytes())))
            .await;
        assert_eq!(response.status, status, "{body}: {}", response.text());
        let error = response.json();
        assert!(
            error["error"].as_str().unwrap().contains(needle),
            "{body}: {error}"
        );
    }
    let no_type = api
        .call("POST", advance, Some(("text/plain", br#"{"seconds": 1}"#)))
        .await;
    assert_eq!(no_type.status, 415);
    assert!(no_type.json()["hint"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    // Nothing moved.
    assert_eq!(api.get("/api/clock").await["offset_seconds"], 0.0);

    for path in [
        "/api/events?limit=0",
        "/api/events?limit=10001",
        "/api/events?limit=x",
        "/api/events?since=-1",
        "/api/events?session=abc",
        "/api/events?sesion=1",
        "/api/messages/abc",
        "/api/messages/-1/raw",
    ] {
        let response = api.call("GET", path, None).await;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        let error = response.json();
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(error["hint"].as_str().is_some(), "{path}: {error}");
    }
    for path in ["/api/messages/999", "/api/messages/999/raw"] {
        let response = api.call("GET", path, None).await;
        assert_eq!(response.status, 404);
        assert_eq!(response.json()["error"], "no message 999");
    }

    // Undocumented routes and methods: JSON too.
    let unknown = http(api.addr, "GET", "/api/nope", &[], b"").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "no route GET /api/nope");
    let wrong_method = http(api.addr, "PATCH", "/api/messages", &[], b"").await;
    assert_eq!(wrong_method.status, 405);
    let allow = wrong_method.header("allow").expect("an Allow header");
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    assert!(wrong_method.json()["error"]
        .as_str()
        .unwrap()
        .contains("PATCH"));

    let health = api.call("GET", "/healthz", None).await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (200, "ok tls=on\n")
    );
    harness.stop().await;
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = api::ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(routed.len(), api::ROUTES.len(), "a route is listed twice");
    assert_eq!(documented, routed);

    // Every $ref resolves, every operation documents at least one 2xx answer, and every path
    // parameter is declared.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        assert!(
            doc.pointer(r.strip_prefix('#').unwrap()).is_some(),
            "{r} resolves"
        );
    }
    let operation_ids: BTreeSet<&str> = routed
        .iter()
        .map(|(method, path)| {
            doc["paths"][path][method.to_ascii_lowercase()]["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has an operationId"))
        })
        .collect();
    assert_eq!(operation_ids.len(), routed.len(), "operationIds are unique");
    for (method, path) in &routed {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(
            op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|s| s.starts_with('2')),
            "{method} {path} documents a success"
        );
        assert!(op["operationId"].is_string(), "{method} {path}");
        for response in op["responses"].as_object().unwrap().values() {
            for link in response
                .get("links")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|l| l.values())
            {
                assert!(
                    operation_ids.contains(link["operationId"].as_str().unwrap()),
                    "{method} {path}: link to {link}"
                );
            }
        }
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(['{', '}']);
            let declared = op["parameters"].as_array().into_iter().flatten().any(|p| {
                let p = resolve(doc, p);
                p["in"] == "path" && p["name"] == name && p["required"] == true
            });
            assert!(declared, "{method} {path} declares {name}");
        }
    }

    // The served document is this one, and every route answers (none is a 404 of the router).
    let harness = Harness::start(None).await;
    let served = harness.api.get("/api/openapi.json").await;
    assert_eq!(&served, doc);
    for route in api::ROUTES {
        if route.path.ends_with("/stream") || route.method != "GET" {
            continue;
        }
        let path = route.path.replace("{id}", "1");
        let response = harness.api.call(route.method, &path, None).await;
        let item = ["messages", "bounces"]
            .into_iter()
            .find(|item| path.contains(&format!("/{item}/1")));
        assert!(
            response.status == 200 || (item.is_some() && response.status == 404),
            "{} {path}: {}",
            route.method,
            response.status
        );
        if let (404, Some(item)) = (response.status, item) {
            let what = item.trim_end_matches('s');
            assert_eq!(response.json()["error"], format!("no {what} 1"));
        }
    }
    harness.stop().await;
}

#[tokio::test]
async fn the_validator_catches_what_the_document_forbids() {
    let doc = document();
    let message = json!({"$ref": "#/components/schemas/Message"});
    let good = json!({"id": 1, "received_at_ms": 5, "session": 2, "queue_id": "Q", "peer": "p",
        "helo": null, "auth_user": null, "tls": false, "mail_from": "", "recipients": ["a@b"],
        "size": 0, "subject": null, "content_type": null});
    assert_eq!(validate(doc, &message, &good, "m"), Vec::<String>::new());
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("size");
    assert_eq!(validate(doc, &message, &missing, "m").len(), 1);
    let mut extra = good.clone();
    extra["surprise"] = json!(1);
    assert_eq!(validate(doc, &message, &extra, "m").len(), 1);
    let mut wrong = good.clone();
    wrong["tls"] = json!("no");
    assert_eq!(validate(doc, &message, &wrong, "m").len(), 1);
    let event = json!({"$ref": "#/components/schemas/Event"});
    let reply = json!({"id": 1, "at_ms": 1, "session": 1, "type": "reply", "code": 250,
        "status": null, "text": "ok", "phase": null, "rule": null, "catalog": null,
        "flavor": null});
    assert!(validate(doc, &event, &reply, "e").is_empty());
    let mut unknown_type = reply.clone();
    unknown_type["type"] = json!("nope");
    assert!(!validate(doc, &event, &unknown_type, "e").is_empty());
}

/// `GET /api/events` filters by rule (name or index), type, catalog name and `brief`, and with
/// `order=desc` gives the newest events first, so that "the last reply" is found however many
/// events came before (the default page is the oldest 1000).
#[tokio::test]
async fn events_filter_by_rule_type_and_catalog_and_read_newest_first() {
    let harness = Harness::start(Some(BLOCKING_SCENARIO)).await;
    let api = &harness.api;
    let mut smtp = PlainConn::ready(harness.smtp).await;
    smtp.cmd_code("MAIL FROM:<a@client.example>", 250).await;
    // Over a thousand events before the one looked for (a new transaction every few commands,
    // so that the junk-command limit is not reached).
    for _ in 0..300 {
        smtp.cmd_code("RSET", 250).await;
        smtp.cmd_code("MAIL FROM:<a@client.example>", 250).await;
    }
    smtp.cmd_code("RCPT TO:<blocked@dest.example>", 550).await;
    smtp.cmd_code("RCPT TO:<user_unknown@dest.example>", 550)
        .await;
    smtp.cmd_code("QUIT", 221).await;
    let page = |query: &str| {
        let path = format!("/api/events?{query}");
        async move { api.get(&path).await["events"].as_array().unwrap().clone() }
    };
    let oldest = page("").await;
    assert_eq!(oldest.len(), 1000, "the default page is the oldest 1000");
    assert!(!oldest.iter().any(|e| e["catalog"] == "user_unknown"));
    let newest = page("order=desc&limit=3").await;
    assert_eq!(
        summary(&newest),
        ["session_end", "reply 221", "command QUIT"]
    );
    assert!(newest[0]["id"].as_u64() > newest[1]["id"].as_u64());

    let by_name = page("rule=blocked").await;
    assert_eq!(by_name.len(), 1, "{by_name:?}");
    assert_eq!(
        (&by_name[0]["code"], &by_name[0]["rule_name"]),
        (&json!(550), &json!("blocked"))
    );
    assert_eq!(page("rule=0").await, by_name);
    assert_eq!(page("rule=nosuchrule").await, Vec::<Value>::new());
    let magic = page("type=reply&catalog=user_unknown").await;
    assert_eq!(
        magic.len(),
        2,
        "the rule's reply and the magic address's: {magic:?}"
    );
    assert!(magic
        .iter()
        .all(|e| e["type"] == "reply" && e["code"] == 550));
    let commands = page("type=command&order=desc&limit=1").await;
    assert_eq!(summary(&commands), ["command QUIT"]);
    // `brief`: of the commands, only those naming client, sender and recipients (no RSET,
    // no QUIT).
    let brief = page("brief=true&type=command").await;
    assert_eq!(brief.len(), 1 + 301 + 2, "EHLO, the MAILs, the RCPTs");
    assert!(brief.iter().all(|e| {
        let line = e["line"].as_str().unwrap();
        ["EHLO", "MAIL", "RCPT"].iter().any(|v| line.starts_with(v))
    }));

    let bad = api.call("GET", "/api/events?type=replies", None).await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["hint"]
        .as_str()
        .unwrap()
        .contains("session_start, command, reply"));
    let bad = api.call("GET", "/api/events?order=newest", None).await;
    assert_eq!(bad.status, 400);
    harness.stop().await;
}
