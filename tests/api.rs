//! The HTTP API, over real sockets: events and captured messages of real SMTP sessions, limits
//! made to pass with the clock instead of waiting, scenario replacement, bad requests, metrics,
//! the bearer token and the event stream.
//!
//! Every API call goes through [`Api::call`], which checks the answer against
//! `/api/openapi.json`: the status must be documented for the route, the content type must be the
//! documented one, and a JSON body must validate against the documented schema. So the document
//! is proved true by every test, and [`openapi_lists_exactly_the_routes`] proves it lists exactly
//! the routes the router serves.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{PlainConn, IO_TIMEOUT};
use failmail::api::{self, ApiState};
use failmail::app::ScenarioConfig;
use failmail::{App, AppConfig, RunningApp};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client.

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    tokio::time::timeout(IO_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the API");
        let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read the answer");
        parse_response(&raw)
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {path} answered within 10 s"))
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete header");
    let head = std::str::from_utf8(&raw[..end]).expect("ASCII header");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document and a validator for the subset of JSON Schema it uses.

fn document() -> &'static Value {
    api::openapi::document()
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $refs: {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} resolves"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// Errors of `value` against `schema` (empty when valid). Supports the keywords the document
/// uses: $ref, type, nullable, enum, properties, required, additionalProperties: false, items,
/// oneOf, minimum, maximum. Any other keyword fails loudly, so the validator never silently
/// ignores a constraint the document states.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let object = schema.as_object().expect("a schema is an object");
    const KNOWN: [&str; 16] = [
        "type",
        "nullable",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "oneOf",
        "discriminator",
        "minimum",
        "maximum",
        "description",
        "format",
        "$ref",
        "example",
        "title",
    ];
    for key in object.keys() {
        assert!(
            KNOWN.contains(&key.as_str()),
            "unsupported keyword {key} at {at}"
        );
    }
    let mut errors = Vec::new();
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return errors;
    }
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = variants
            .iter()
            .filter(|v| validate(doc, v, value, at).is_empty())
            .count();
        if matching != 1 {
            errors.push(format!("{at}: {matching} oneOf variants match {value}"));
        }
    }
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        let ok = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => panic!("unknown type {other}"),
        };
        if !ok {
            errors.push(format!("{at}: {value} is not of type {kind}"));
            return errors;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errors.push(format!("{at}: {n} < minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errors.push(format!("{at}: {n} > maximum {max}"));
            }
        }
    }
    if let Some(fields) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            if !fields.contains_key(name) {
                errors.push(format!("{at}: required field {name} is missing"));
            }
        }
        for (name, field) in fields {
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => {
                    errors.extend(validate(doc, field_schema, field, &format!("{at}.{name}")))
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: field {name} is not documented"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (i, element) in elements.iter().enumerate() {
            errors.extend(validate(doc, items, element, &format!("{at}[{i}]")));
        }
    }
    errors
}

/// The documented operation for `method` and a concrete `path` (query string ignored).
fn operation(method: &str, path: &str) -> (&'static str, &'static Value) {
    let doc = document();
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')));
        if matches {
            if let Some(op) = item.get(method.to_ascii_lowercase()) {
                return (template.as_str(), op);
            }
        }
    }
    panic!("{method} {path} is not documented in /api/openapi.json")
}

/// Checks one real answer against the document.
fn check_documented(method: &str, path: &str, response: &HttpResponse) {
    let doc = document();
    let (template, op) = operation(method, path);
    let status = response.status.to_string();
    let documented = op["responses"]
        .get(&status)
        .map(|r| resolve(doc, r))
        .unwrap_or_else(|| {
            panic!(
                "{method} {template} answered {status}, which is not documented: {:?}",
                String::from_utf8_lossy(&response.body)
            )
        });
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        assert!(
            response.body.is_empty(),
            "{method} {template} {status} has a body but documents none"
        );
        return;
    };
    let media = response
        .header("content-type")
        .unwrap_or_else(|| panic!("{method} {template} {status} has no Content-Type"))
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    let schema = &content.get(&media).unwrap_or_else(|| {
        panic!("{method} {template} {status}: Content-Type {media} is not documented")
    })["schema"];
    let value = if media == "application/json" {
        response.json()
    } else {
        match String::from_utf8(response.body.clone()) {
            Ok(text) => Value::String(text),
            Err(_) => return, // binary
        }
    };
    let errors = validate(doc, schema, &value, "body");
    assert!(
        errors.is_empty(),
        "{method} {template} {status} does not match its schema:\n  {}\nbody: {value}",
        errors.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// A server under test.

struct Api {
    addr: SocketAddr,
    token: Option<String>,
}

impl Api {
    /// Calls the API and checks the answer against the OpenAPI document.
    async fn call(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> HttpResponse {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        let bytes = match body {
            Some((content_type, bytes)) => {
                headers.push(("Content-Type", content_type));
                bytes
            }
            None => &[][..],
        };
        let response = http(self.addr, method, path, &headers, bytes).await;
        check_documented(method, path, &response);
        response
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.call("GET", path, None).await;
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    async fn post_json(&self, path: &str, body: Value) -> HttpResponse {
        let body = body.to_string();
        self.call("POST", path, Some(("application/json", body.as_bytes())))
            .await
    }

    async fn events(&self, session: u64) -> Vec<Value> {
        let page = self.get(&format!("/api/events?session={session}")).await;
        page["events"].as_array().unwrap().clone()
    }

    /// Waits until the session's `session_end` event is in the journal, and returns its events.
    async fn ended(&self, session: u64) -> Vec<Value> {
        for _ in 0..200 {
            let events = self.events(session).await;
            if events.last().is_some_and(|e| e["type"] == "session_end") {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("session {session} did not end");
    }
}

struct Harness {
    server: Option<RunningApp>,
    smtp: SocketAddr,
    api: Api,
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Harness {
    /// A server with `scenario` as its file (or the built-in scenario for `None`).
    async fn start(scenario: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scenario.toml");
        let mut config = AppConfig::loopback();
        if let Some(text) = scenario {
            std::fs::write(&file, text).unwrap();
            config.scenario = Some(ScenarioConfig {
                path: Some(file.clone()),
                ..ScenarioConfig::default()
            });
        }
        let server = App::start(config).await.expect("the server starts");
        let addresses = server.addresses();
        Self {
            server: Some(server),
            smtp: addresses.smtp,
            api: Api {
                addr: addresses.http.expect("an HTTP listener"),
                token: None,
            },
            _dir: dir,
            file,
        }
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// The session id of the connection from `local`, from its `session_start` event.
async fn session_of(api: &Api, local: SocketAddr) -> u64 {
    for _ in 0..200 {
        let page = api.get("/api/events").await;
        let found = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "session_start" && e["peer"] == local.to_string());
        if let Some(event) = found {
            return event["session"].as_u64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no session_start for {local}");
}

/// Events as short strings, for comparing sequences: `reply 250`, `command EHLO x`, ...
fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["type"].as_str().unwrap() {
            "reply" => format!("reply {}", e["code"]),
            "command" => format!("command {}", e["line"].as_str().unwrap()),
            other => other.to_owned(),
        })
        .collect()
}

/// Sends `body` as `content_type` (checked against the document like every call).
async fn send(
    api: &Api,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> HttpResponse {
    api.call(method, path, Some((content_type, body))).await
}

/// A scenario answer without its load history (compared separately).
fn without_reloads(mut scenario: Value) -> Value {
    scenario
        .as_object_mut()
        .expect("a scenario is an object")
        .remove("reloads");
    scenario
}

const BLOCKING_SCENARIO: &str = r#"[[rule]]
name = "blocked"
rcpt = "blocked@*"
reply = "user_unknown"
"#;

// ---------------------------------------------------------------------------------------------
// Tests.

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
async fn clock_advance_and_reset_make_a_limit_pass_without_waiting() {
    let harness = Harness::start(Some("[limits]\nper_account = { max = 2, per = \"1h\" }\n")).await;
    let api = &harness.api;
    let limits = api.get("/api/limits").await;
    assert_eq!(
        limits["limits"]["per_account"],
        json!({"max": 2, "per_seconds": 3600.0})
    );
    assert_eq!(limits["limits"]["per_ip"], Value::Null);
    assert_eq!(limits["usage"], json!([]));

    let mut smtp = PlainConn::ready(harness.smtp).await;
    for _ in 0..2 {
        smtp.deliver(
            "alice@example.com",
            "bob@example.net",
            b"Subject: x\r\n\r\nx\r\n.\r\n",
        )
        .await
        .assert_code(250);
    }
    let refused = smtp.cmd_code("MAIL FROM:<alice@example.com>", 451).await;
    assert!(refused.text().contains("4.7.1"), "{:?}", refused.wire);
    let usage = api.get("/api/limits").await;
    let account = &usage["usage"][0];
    assert_eq!(usage["usage"].as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(
        (
            &account["key"],
            &account["used"],
            &account["max"],
            &account["full"]
        ),
        (
            &json!("account:alice@example.com"),
            &json!(2),
            &json!(2),
            &json!(true)
        ),
        "{usage}"
    );
    assert_limit_frees_in_an_hour(account);

    let clock_before = api.get("/api/clock").await;
    let advanced = api
        .post_json("/api/clock/advance", json!({"seconds": 3600}))
        .await;
    assert_eq!(advanced.status, 200, "{}", advanced.text());
    assert_eq!(advanced.json(), json!({"offset_seconds": 3600.0}));
    let clock_after = api.get("/api/clock").await;
    assert_eq!(clock_after["offset_seconds"], 3600.0);
    let moved = clock_after["now_ms"].as_u64().unwrap() - clock_before["now_ms"].as_u64().unwrap();
    assert!((3_600_000..3_660_000).contains(&moved), "moved {moved} ms");

    smtp.deliver(
        "alice@example.com",
        "bob@example.net",
        b"Subject: y\r\n\r\ny\r\n.\r\n",
    )
    .await
    .assert_code(250);
    smtp.cmd_code("QUIT", 221).await;
    assert_eq!(api.get("/api/messages").await["accepted"], 3);

    let reset = api.call("POST", "/api/reset", None).await;
    assert_eq!(reset.status, 204);
    let limits = api.get("/api/limits").await;
    assert_eq!(limits["usage"], json!([]), "{limits}");
    assert_eq!(
        api.get("/api/clock").await["offset_seconds"],
        0.0,
        "the reset moved it back"
    );
    assert_eq!(api.get("/api/messages").await["messages"], json!([]));
    assert_eq!(api.get("/api/events").await["events"], json!([]));

    // After the reset the account has its full allowance again, at once.
    let mut smtp = PlainConn::ready(harness.smtp).await;
    for _ in 0..2 {
        smtp.deliver(
            "alice@example.com",
            "bob@example.net",
            b"Subject: z\r\n\r\nz\r\n.\r\n",
        )
        .await
        .assert_code(250);
    }
    smtp.cmd_code("MAIL FROM:<alice@example.com>", 451).await;
    // DELETE /api/limits alone resets the limits too.
    assert_eq!(api.call("DELETE", "/api/limits", None).await.status, 204);
    smtp.deliver(
        "alice@example.com",
        "bob@example.net",
        b"Subject: w\r\n\r\nw\r\n.\r\n",
    )
    .await
    .assert_code(250);
    smtp.cmd_code("QUIT", 221).await;

    // Fractions are kept to the millisecond and offsets add up.
    for total in [1.5, 3.0] {
        let advanced = api
            .post_json("/api/clock/advance", json!({"seconds": 1.5}))
            .await;
        assert_eq!(advanced.json(), json!({"offset_seconds": total}));
    }
    harness.stop().await;
}

#[tokio::test]
async fn a_bad_scenario_is_refused_with_its_position_and_a_good_one_goes_live() {
    let harness = Harness::start(Some(BLOCKING_SCENARIO)).await;
    let api = &harness.api;
    let before = without_reloads(api.get("/api/scenario").await);
    assert_eq!(before["origin"], harness.file.display().to_string());
    assert_eq!(before["source"], BLOCKING_SCENARIO);
    assert_eq!(before["rules"], 1);
    assert_eq!(before["flavor"], "generic");
    assert_eq!(before["file"], harness.file.display().to_string());

    // An unknown reply name on line 4.
    let bad = "[[rule]]\nname = \"x\"\nrcpt = \"other@*\"\nreply = \"no_such_reply\"\n";
    let refused = api
        .call(
            "PUT",
            "/api/scenario",
            Some(("application/toml", bad.as_bytes())),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let error = refused.json();
    assert_eq!(error["line"], 4, "{error}");
    assert!(error["column"].as_u64().unwrap() >= 1, "{error}");
    let message = error["error"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("<api>:4:{}: ", error["column"])),
        "{message}"
    );
    // Broken TOML: also a position.
    let refused = api
        .call("PUT", "/api/scenario", Some(("text/plain", b"[[rule]\n")))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["line"], 1);

    // The old scenario is still live.
    assert_eq!(without_reloads(api.get("/api/scenario").await), before);
    let mut smtp = PlainConn::open(harness.smtp).await;
    smtp.cmd_code("EHLO c", 250).await;
    smtp.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    smtp.cmd_code("RCPT TO:<blocked@x.example>", 550).await;
    smtp.cmd_code("RCPT TO:<other@x.example>", 250).await;
    smtp.cmd_code("QUIT", 221).await;

    // A good one goes live for new sessions.
    let good = "[server]\nflavor = \"gmail\"\n\n[[rule]]\nname = \"full\"\nrcpt = \"other@*\"\nreply = \"mailbox_full\"\n";
    let accepted = api
        .call(
            "PUT",
            "/api/scenario",
            Some(("application/toml; charset=utf-8", good.as_bytes())),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(
        without_reloads(accepted.json()),
        json!({"origin": "<api>", "source": good, "rules": 1, "flavor": "gmail",
               "file": harness.file.display().to_string()})
    );
    let mut smtp = PlainConn::open(harness.smtp).await;
    smtp.cmd_code("EHLO c", 250).await;
    smtp.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    smtp.cmd_code("RCPT TO:<blocked@x.example>", 250).await;
    let reply = smtp.command("RCPT TO:<other@x.example>").await;
    assert!((400..600).contains(&reply.code), "{:?}", reply.wire);
    smtp.cmd_code("QUIT", 221).await;

    // Not TOML: 415 and nothing changes.
    let wrong_type = api
        .call(
            "PUT",
            "/api/scenario",
            Some(("application/x-www-form-urlencoded", b"a=b")),
        )
        .await;
    assert_eq!(wrong_type.status, 415);
    assert!(wrong_type.json()["hint"]
        .as_str()
        .unwrap()
        .contains("application/toml"));
    assert_eq!(api.get("/api/scenario").await["origin"], "<api>");

    // Reload reads the file again.
    let reloaded = api.call("POST", "/api/scenario/reload", None).await;
    assert_eq!(reloaded.status, 200);
    assert_eq!(without_reloads(reloaded.json()), before);
    // A broken file: 400 with its position, the previous scenario stays.
    std::fs::write(&harness.file, "[server]\nflavor = \"nope\"\n").unwrap();
    let broken = api.call("POST", "/api/scenario/reload", None).await;
    assert_eq!(broken.status, 400);
    let error = broken.json();
    assert_eq!(error["line"], 2, "{error}");
    assert!(error["error"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}:2:", harness.file.display())));
    assert_eq!(without_reloads(api.get("/api/scenario").await), before);
    harness.stop().await;

    // Without a file there is nothing to reload.
    let builtin = Harness::start(None).await;
    let scenario = builtin.api.get("/api/scenario").await;
    assert_eq!(scenario["origin"], "<built-in>");
    assert_eq!(scenario["source"], Value::Null);
    assert_eq!(scenario["file"], Value::Null);
    let conflict = builtin.api.call("POST", "/api/scenario/reload", None).await;
    assert_eq!(conflict.status, 409);
    builtin.stop().await;
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

/// Prometheus text format 0.0.4, parsed strictly enough to catch a broken exposition.
#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut parsed = Self::default();
        let mut helped = BTreeSet::new();
        assert!(text.ends_with('\n'), "the exposition ends with a newline");
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(valid_name(name) && !help.is_empty(), "{line}");
                assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(valid_name(name), "{line}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                assert!(
                    !parsed.samples.iter().any(|(n, ..)| family(n, kind) == name),
                    "TYPE after samples of {name}"
                );
                assert!(
                    parsed
                        .types
                        .insert(name.to_owned(), kind.to_owned())
                        .is_none(),
                    "TYPE twice for {name}"
                );
            } else {
                assert!(!line.starts_with('#'), "unknown comment {line}");
                parsed.samples.push(sample(line));
            }
        }
        for (name, ..) in &parsed.samples {
            let declared = parsed
                .types
                .iter()
                .any(|(family_name, kind)| family(name, kind) == family_name);
            assert!(declared, "sample {name} has no TYPE line");
        }
        parsed
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == labels)
            .map(|(.., v)| *v)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to (histogram samples carry suffixes).
fn family<'a>(sample: &'a str, kind: &str) -> &'a str {
    if kind == "histogram" {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                return base;
            }
        }
    }
    sample
}

fn sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("sample {line}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "{line}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let close = inner
            .find('}')
            .unwrap_or_else(|| panic!("labels of {line}"));
        for pair in inner[..close].split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').expect("label=value");
            assert!(valid_name(key), "{line}");
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("quoted label value in {line}"));
            assert!(labels.insert(key.to_owned(), value.to_owned()).is_none());
        }
        rest = &inner[close + 1..];
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("space before the value in {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
    };
    (name.to_owned(), labels, value)
}

#[tokio::test]
async fn metrics_parse_and_agree_with_the_events() {
    let harness = Harness::start(Some(BLOCKING_SCENARIO)).await;
    let api = &harness.api;
    let mut sessions = Vec::new();
    for round in 0..3 {
        let mut smtp = PlainConn::open(harness.smtp).await;
        sessions.push(smtp.local_addr());
        smtp.cmd_code("EHLO c", 250).await;
        smtp.cmd_code("MAIL FROM:<a@example.com>", 250).await;
        smtp.cmd_code("RCPT TO:<blocked@x.example>", 550).await;
        smtp.cmd_code("RCPT TO:<mailbox_full@x.example>", 452).await;
        if round < 2 {
            smtp.cmd_code("RCPT TO:<ok@x.example>", 250).await;
            smtp.cmd_code("DATA", 354).await;
            smtp.send(b"Subject: m\r\n\r\nbody\r\n.\r\n").await;
            smtp.expect_code(250).await;
        }
        smtp.cmd_code("NOOP", 250).await;
        smtp.cmd_code("BOGUS", 500).await;
        smtp.cmd_code("QUIT", 221).await;
    }
    for local in &sessions {
        let session = session_of(api, *local).await;
        api.ended(session).await;
    }
    // The open-sessions gauge goes down just after the session_end event: wait for it.
    let mut exposition = Exposition::default();
    for _ in 0..200 {
        let metrics = api.call("GET", "/metrics", None).await;
        assert_eq!(metrics.status, 200);
        assert_eq!(
            metrics.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        exposition = Exposition::parse(&metrics.text());
        if exposition.value("failmail_sessions_open", &[]) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(exposition.types["failmail_sessions_open"], "gauge");
    let events = api.get("/api/events?limit=10000").await;
    let events = events["events"].as_array().unwrap();
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count() as f64;

    assert_eq!(exposition.types["failmail_sessions_total"], "counter");
    assert_eq!(
        exposition.value("failmail_sessions_total", &[]),
        Some(count("session_start"))
    );
    assert_eq!(count("session_start"), 3.0);
    assert_eq!(
        exposition.value("failmail_messages_total", &[]),
        Some(count("message"))
    );
    assert_eq!(count("message"), 2.0);
    assert_eq!(exposition.value("failmail_sessions_open", &[]), Some(0.0));
    let mut replies: BTreeMap<u64, f64> = BTreeMap::new();
    for event in events.iter().filter(|e| e["type"] == "reply") {
        *replies.entry(event["code"].as_u64().unwrap()).or_default() += 1.0;
    }
    assert!(replies.len() >= 6, "{replies:?}");
    for (code, n) in &replies {
        let class = format!("{}xx", code / 100);
        assert_eq!(
            exposition.value(
                "failmail_replies_total",
                &[("code", &code.to_string()), ("class", &class)]
            ),
            Some(*n),
            "replies with code {code}"
        );
    }
    let reply_samples = exposition
        .samples
        .iter()
        .filter(|(n, ..)| n == "failmail_replies_total")
        .count();
    assert_eq!(
        reply_samples,
        replies.len(),
        "no reply code without an event"
    );
    let recorded = exposition
        .value("failmail_events_recorded_total", &[])
        .unwrap();
    assert_eq!(recorded, events.len() as f64);
    assert_eq!(
        exposition.value("failmail_events_dropped_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        exposition.value("failmail_messages_dropped_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        exposition.types["failmail_reply_latency_seconds"],
        "histogram"
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
        "size": 0, "subject": null});
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

#[tokio::test]
async fn the_event_stream_sends_each_event_as_json() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    stream
        .write_all(b"GET /api/events/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    // Read the header first: the subscription exists once the answer started.
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buffer = [0u8; 4096];
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        received.extend_from_slice(&buffer[..n]);
    }
    let head = String::from_utf8_lossy(&received).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );

    let mut smtp = PlainConn::open(harness.smtp).await;
    smtp.cmd_code("EHLO c", 250).await;
    smtp.cmd_code("QUIT", 221).await;

    let events = tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            let text = String::from_utf8_lossy(&received).to_string();
            let events: Vec<(u64, Value)> = sse_events(&text);
            if events.iter().any(|(_, e)| e["type"] == "session_end") {
                return events;
            }
            let mut buffer = [0u8; 4096];
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the stream ended early");
            received.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("the session's events within 10 s");
    let kinds: Vec<String> = summary(&events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>());
    assert_eq!(
        kinds,
        [
            "session_start",
            "reply 220",
            "command EHLO c",
            "reply 250",
            "command QUIT",
            "reply 221",
            "session_end"
        ]
    );
    for (id, event) in &events {
        assert_eq!(event["id"], *id, "the SSE id is the event id");
        let errors = validate(
            document(),
            &json!({"$ref": "#/components/schemas/Event"}),
            event,
            "event",
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    // With since=0 the kept events come first (replay), then new ones.
    let mut replay = TcpStream::connect(api.addr).await.unwrap();
    replay
        .write_all(b"GET /api/events/stream?since=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut data = Vec::new();
    let replayed = tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            let events = sse_events(&String::from_utf8_lossy(&data));
            if events.len() >= 7 {
                return events;
            }
            let mut buffer = [0u8; 4096];
            let n = replay.read(&mut buffer).await.unwrap();
            assert!(n > 0);
            data.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("the replay within 10 s");
    assert_eq!(replayed, events);
    harness.stop().await;
}

/// The `id:` / `data:` pairs of a (possibly chunked) SSE byte stream.
fn sse_events(text: &str) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut id = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if let Some(value) = line
            .strip_prefix("id: ")
            .or_else(|| line.strip_prefix("id:"))
        {
            id = value.trim().parse().ok();
        } else if let Some(data) = line
            .strip_prefix("data: ")
            .or_else(|| line.strip_prefix("data:"))
        {
            if let (Some(id), Ok(value)) = (id.take(), serde_json::from_str::<Value>(data)) {
                out.push((id, value));
            }
        }
    }
    out
}

/// `POST /api/reset` puts back what a test changed through the API: the journal, the limits,
/// the clock's offset and a scenario set with `PUT /api/scenario`; a JSON body keeps the parts it
/// sets to `false`, and an unknown part is refused.
#[tokio::test]
async fn reset_puts_back_the_clock_and_the_scenario_and_a_body_keeps_parts() {
    let harness = Harness::start(Some(BLOCKING_SCENARIO)).await;
    let api = &harness.api;
    let file_origin = harness.file.display().to_string();
    let change = || async {
        let put = api
            .call(
                "PUT",
                "/api/scenario",
                Some(("application/toml", b"[server]\nflavor = \"gmail\"\n")),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.text());
        let advanced = api
            .post_json("/api/clock/advance", json!({"seconds": 60}))
            .await;
        assert_eq!(advanced.status, 200, "{}", advanced.text());
        let mut smtp = PlainConn::ready(harness.smtp).await;
        smtp.deliver(
            "a@example.com",
            "b@example.net",
            b"Subject: x\r\n\r\nx\r\n.\r\n",
        )
        .await
        .assert_code(250);
        smtp.cmd_code("QUIT", 221).await;
        assert_eq!(api.get("/api/scenario").await["origin"], "<api>");
    };

    change().await;
    let kept = api
        .post_json("/api/reset", json!({"clock": false, "scenario": false}))
        .await;
    assert_eq!(kept.status, 204, "{}", kept.text());
    assert_eq!(api.get("/api/clock").await["offset_seconds"], 60.0);
    assert_eq!(api.get("/api/scenario").await["origin"], "<api>");
    assert_eq!(api.get("/api/messages").await["messages"], json!([]));

    change().await;
    let everything = api.call("POST", "/api/reset", None).await;
    assert_eq!(everything.status, 204, "{}", everything.text());
    assert_eq!(api.get("/api/clock").await["offset_seconds"], 0.0);
    let scenario = api.get("/api/scenario").await;
    assert_eq!(
        scenario["origin"], file_origin,
        "the file's scenario is back"
    );
    assert_eq!(scenario["source"], BLOCKING_SCENARIO);
    assert_eq!(api.get("/api/messages").await["messages"], json!([]));
    assert_eq!(api.get("/api/events").await["events"], json!([]));

    // `{}` is everything too; an unknown part or a wrong type is a 400 naming it.
    assert_eq!(api.post_json("/api/reset", json!({})).await.status, 204);
    let unknown = api.post_json("/api/reset", json!({"clocks": false})).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.text().contains("clocks"), "{}", unknown.text());
    let wrong = api.post_json("/api/reset", json!({"clock": "no"})).await;
    assert_eq!(wrong.status, 400, "{}", wrong.text());
    harness.stop().await;
}

/// `/api/bounces`, `/api/bounces/{id}/raw`, the bounce events and a stored DSN in
/// `/api/messages` all match the document, pending and sent.
#[tokio::test]
async fn bounces_and_their_events_match_the_document() {
    let harness = Harness::start(None).await;
    let mut conn = PlainConn::ready(harness.smtp).await;
    conn.cmd_code("MAIL FROM:<app@x.example>", 250).await;
    for rcpt in ["user_unknown+async@y.example", "complaint+async@y.example"] {
        conn.cmd_code(&format!("RCPT TO:<{rcpt}>"), 250).await;
    }
    conn.data(b"Subject: s\r\n\r\nbody\r\n.\r\n")
        .await
        .assert_code(250);
    conn.quit().await;
    let pending = harness.api.get("/api/bounces").await;
    assert_eq!(pending["pending"], 2, "{pending}");
    let first = pending["bounces"][0]["id"].as_u64().unwrap();
    let not_yet = harness
        .api
        .call("GET", &format!("/api/bounces/{first}/raw"), None)
        .await;
    assert_eq!(not_yet.status, 404);
    let advanced = harness
        .api
        .post_json("/api/clock/advance", json!({"seconds": 120}))
        .await;
    assert_eq!(advanced.status, 200);
    for _ in 0..500 {
        if harness.api.get("/api/bounces").await["pending"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = harness.api.get("/api/bounces").await;
    assert_eq!(sent["bounces"].as_array().unwrap().len(), 2, "{sent}");
    let raw = harness
        .api
        .call("GET", &format!("/api/bounces/{first}/raw"), None)
        .await;
    assert_eq!(raw.status, 200);
    assert!(raw.text().contains("multipart/report"), "{}", raw.text());
    let events = harness.api.get("/api/events?limit=1000").await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains(&"bounce_scheduled") && types.contains(&"bounce_sent"),
        "{types:?}"
    );
    let messages = harness.api.get("/api/messages").await;
    let marked = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["bounce"].is_u64())
        .count();
    assert_eq!(marked, 2, "{messages}");
    let metrics = harness.api.call("GET", "/metrics", None).await.text();
    assert!(
        metrics.contains("failmail_bounces_sent_total 2\n"),
        "{metrics}"
    );
    let reset = harness.api.call("POST", "/api/reset", None).await;
    assert_eq!(reset.status, 204);
    assert_eq!(harness.api.get("/api/bounces").await["bounces"], json!([]));
    harness.stop().await;
}

/// A malformed `Last-Event-ID` is refused with 400 whether or not `since` is given too (it
/// was ignored, with 200, when `since` was there).
#[tokio::test]
async fn a_malformed_last_event_id_is_refused_even_with_since() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    for path in ["/api/events/stream", "/api/events/stream?since=0"] {
        let response = http(api.addr, "GET", path, &[("Last-Event-ID", "abc")], b"").await;
        check_documented("GET", path, &response);
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert!(
            response.json()["error"]
                .as_str()
                .unwrap()
                .contains("Last-Event-ID"),
            "{path}: {}",
            response.text()
        );
    }
    harness.stop().await;
}

/// A full key's window frees its next use one window (an hour) after its oldest use.
fn assert_limit_frees_in_an_hour(usage: &Value) {
    let oldest = usage["oldest_at_ms"].as_u64().unwrap();
    assert_eq!(
        usage["frees_at_ms"].as_u64().unwrap(),
        oldest + 3_600_000,
        "{usage}"
    );
    let wait = usage["frees_in_seconds"].as_f64().unwrap();
    assert!((3590.0..=3600.0).contains(&wait), "{usage}");
}

/// `/api/limits` tells when each window frees its next use (it told only how many were used),
/// and that moves with the clock: half an hour on, the same use frees in half an hour.
#[tokio::test]
async fn limits_tell_when_each_window_frees_its_next_use() {
    let harness = Harness::start(Some(
        "[limits]\nper_account = { max = 1, per = \"1h\" }\nper_ip = { max = 5, per = \"1h\" }\n",
    ))
    .await;
    let api = &harness.api;
    common::full_transaction(harness.smtp, "alice").await;
    let usage = api.get("/api/limits").await["usage"].clone();
    let keys: Vec<&str> = usage
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["account:alice@client.example", "ip:127.0.0.1"],
        "{usage}"
    );
    assert_eq!(
        (&usage[0]["max"], &usage[0]["full"]),
        (&json!(1), &json!(true))
    );
    assert_eq!(
        (&usage[1]["max"], &usage[1]["full"]),
        (&json!(5), &json!(false))
    );
    for key in usage.as_array().unwrap() {
        assert_limit_frees_in_an_hour(key);
    }
    api.post_json("/api/clock/advance", json!({"seconds": 1800}))
        .await;
    let later = api.get("/api/limits").await["usage"][0].clone();
    assert_eq!(later["frees_at_ms"], usage[0]["frees_at_ms"]);
    let wait = later["frees_in_seconds"].as_f64().unwrap();
    assert!((1790.0..=1800.0).contains(&wait), "{later}");
    harness.stop().await;
}

/// `GET /api/events` filters by rule (name or index), type and catalog name, and with
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

/// A session that delivered one message from a@example.com to b@example.net, still open.
async fn delivered(smtp: SocketAddr, message: &[u8]) -> PlainConn {
    let mut conn = PlainConn::ready(smtp).await;
    conn.deliver("a@example.com", "b@example.net", message)
        .await
        .assert_code(250);
    conn
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

#[tokio::test]
async fn a_scenario_is_checked_without_going_live_and_loads_are_remembered() {
    let harness = Harness::start(Some(BLOCKING_SCENARIO)).await;
    let api = &harness.api;
    let before = api.get("/api/scenario").await;
    let reloads = before["reloads"].as_array().unwrap();
    assert_eq!(reloads.len(), 1);
    assert_eq!(reloads[0]["trigger"], "start");
    assert_eq!(reloads[0]["ok"], true);
    assert_eq!(reloads[0]["rules"], 1);

    let check = |body: &'static str| async move {
        let answer = send(
            api,
            "POST",
            "/api/scenario/check",
            "application/toml",
            body.as_bytes(),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()
    };
    let good = check("[server]\nflavor = \"gmail\"\n\n[[rule]]\nrcpt = \"a@*\"\nreply = \"user_unknown\"\n\n[[rule]]\nrcpt = \"b@*\"\nreply = \"mailbox_full\"\n").await;
    assert_eq!(
        good,
        json!({"valid": true, "rules": 2, "flavor": "gmail", "error": null})
    );
    let bad = check("[[rule]]\nrcpt = \"a@*\"\nreply = \"no_such_reply\"\n").await;
    assert_eq!(bad["valid"], false);
    assert_eq!(bad["error"]["line"], 3, "{bad}");
    assert!(bad["error"]["column"].as_u64().unwrap() >= 1, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_reply"),
        "{bad}"
    );
    let broken = check("[[rule]\n").await;
    assert_eq!(
        (broken["valid"].clone(), broken["error"]["line"].clone()),
        (json!(false), json!(1))
    );
    // Nothing went live.
    assert_eq!(api.get("/api/scenario").await, before);
    // A body that is not TOML is refused; then loads are remembered, newest first: a refused
    // one and an applied one.
    let bodies: [(&str, &str, &str, &[u8], u16); 3] = [
        (
            "POST",
            "/api/scenario/check",
            "application/json",
            b"{}",
            415,
        ),
        (
            "PUT",
            "/api/scenario",
            "application/toml",
            b"[[rule]\n",
            400,
        ),
        (
            "PUT",
            "/api/scenario",
            "application/toml",
            BLOCKING_SCENARIO.as_bytes(),
            200,
        ),
    ];
    for (method, path, content_type, body, expected) in bodies {
        let answer = send(api, method, path, content_type, body).await;
        assert_eq!(
            answer.status,
            expected,
            "{method} {path}: {}",
            answer.text()
        );
    }
    let reloads = api.get("/api/scenario").await["reloads"].clone();
    let summary: Vec<(Value, Value, Value)> = reloads
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["trigger"].clone(), r["ok"].clone(), r["origin"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!("api"), json!(true), json!("<api>")),
            (json!("api"), json!(false), json!("<api>")),
            (
                json!("start"),
                json!(true),
                json!(harness.file.display().to_string())
            ),
        ]
    );
    assert!(
        reloads[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("<api>:1:"),
        "{reloads}"
    );
    harness.stop().await;
}

#[tokio::test]
async fn the_counter_stream_sends_totals_at_once_and_every_second() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    let mut smtp = delivered(harness.smtp, b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    smtp.cmd("RCPT TO:<user_unknown@example.net>", 503, "5.5.1")
        .await;
    smtp.cmd_code("QUIT", 221).await;

    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    stream
        .write_all(b"GET /api/counters/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let ticks = tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            let text = String::from_utf8_lossy(&received).to_string();
            let ticks: Vec<Value> = text
                .split('\n')
                .filter_map(|l| l.trim_end_matches('\r').strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect();
            if ticks.len() >= 2 {
                return (text, ticks);
            }
            let mut buffer = [0u8; 4096];
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the stream ended early");
            received.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("two ticks within 10 s");
    let (text, ticks) = ticks;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    for tick in &ticks {
        let errors = validate(
            document(),
            &json!({"$ref": "#/components/schemas/Counters"}),
            tick,
            "tick",
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
    assert_eq!(ticks[0]["messages"], 1);
    assert_eq!(ticks[0]["replies_5xx"], 1, "the 503");
    assert_eq!(ticks[0]["sessions"], 1);
    assert!(ticks[1]["at_ms"].as_u64() >= ticks[0]["at_ms"].as_u64());
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

/// `dropped` in `GET /api/events` counts the events that fell out of the ring since the last
/// `POST /api/reset`, so that a test isolated by a reset sees only its own; the metric
/// `failmail_events_dropped_total` stays a counter.
#[tokio::test]
async fn reset_starts_the_dropped_count_over() {
    let mut config = AppConfig::loopback();
    config.journal.event_capacity = 3;
    let server = App::start(config).await.expect("the server starts");
    let api = Api {
        addr: server.addresses().http.expect("an HTTP listener"),
        token: None,
    };
    let mut smtp = PlainConn::ready(server.addresses().smtp).await;
    smtp.quit().await;
    let mut dropped = 0;
    for _ in 0..200 {
        dropped = api.get("/api/events").await["dropped"].as_u64().unwrap();
        if dropped > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(dropped > 0, "a session makes more than 3 events");
    assert_eq!(api.call("POST", "/api/reset", None).await.status, 204);
    assert_eq!(api.get("/api/events").await["dropped"], 0);
    let metrics = api.call("GET", "/metrics", None).await.text();
    let total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("failmail_events_dropped_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("the dropped counter");
    assert!(total >= dropped, "{metrics}");
    server.shutdown().await;
}

/// `GET /api/attempts` until it lists `n` attempts (the last one is recorded when its session
/// ends).
async fn attempts(api: &Api, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let page = api.get("/api/attempts").await;
        let listed = page["attempts"].as_array().unwrap().clone();
        if listed.len() >= n {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} attempts were recorded");
}

#[tokio::test]
async fn attempts_and_the_retry_report_are_documented_filtered_and_reset() {
    let harness = Harness::start(Some(BLOCKING_SCENARIO)).await;
    let api = &harness.api;
    let mut smtp = PlainConn::ready(harness.smtp).await;
    smtp.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    smtp.cmd_code("RCPT TO:<blocked@x.example>", 550).await;
    smtp.cmd_code("RCPT TO:<mailbox_full@x.example>", 452).await;
    smtp.cmd_code("RCPT TO:<ok@x.example>", 250).await;
    smtp.data(b"Message-ID: <api@x.example>\r\n\r\nbody\r\n.\r\n")
        .await
        .assert_code(250);
    smtp.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    smtp.cmd_code("RCPT TO:<mailbox_full@x.example>", 452).await;
    smtp.cmd_code("QUIT", 221).await;

    let listed = attempts(api, 2).await;
    let first = &listed[0];
    assert_eq!(first["message_id"], "<api@x.example>");
    assert_eq!(first["sender"], "a@example.com");
    let endings: Vec<(Value, Value, Value, Value)> = first["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["rcpt"].clone(),
                e["phase"].clone(),
                e["result"].clone(),
                e["code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        endings,
        [
            (
                json!("blocked@x.example"),
                json!("rcpt"),
                json!("permanent"),
                json!(550)
            ),
            (
                json!("mailbox_full@x.example"),
                json!("rcpt"),
                json!("temporary"),
                json!(452)
            ),
            (
                json!("ok@x.example"),
                json!("data_end"),
                json!("accepted"),
                json!(250)
            ),
        ]
    );
    assert_eq!(first["recipients"][0]["rule_name"], "blocked");
    // The retry, refused at RCPT, has no Message-ID of its own: joined by envelope.
    assert_eq!(listed[1]["message"], first["message"]);
    assert_eq!(listed[1]["message_id"], "<api@x.example>");
    let count = |page: Value| page["attempts"].as_array().unwrap().len();
    assert_eq!(count(api.get("/api/attempts?rcpt=OK@x.example").await), 1);
    assert_eq!(
        count(
            api.get("/api/attempts?message_id=%3Capi%40x.example%3E")
                .await
        ),
        2
    );
    assert_eq!(
        count(api.get("/api/attempts?message_id=%3Cother%3E").await),
        0
    );
    let since = first["attempt"].as_u64().unwrap();
    assert_eq!(
        count(api.get(&format!("/api/attempts?since={since}")).await),
        1
    );
    assert_eq!(
        api.call("GET", "/api/attempts?limit=0", None).await.status,
        400
    );
    assert_eq!(
        api.call("GET", "/api/attempts?bogus=1", None).await.status,
        400
    );

    let report = api.get("/api/report").await;
    // The retry at once after the 452 fails the backoff, and only that.
    assert_eq!(report["ok"], false, "{report}");
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0]
            .as_str()
            .unwrap()
            .starts_with("mailbox_full@x.example (<api@x.example>): backoff: retried 0s after 452 4.2.2 (attempt"),
        "{report}"
    );
    let recipients = &report["messages"][0]["recipients"];
    assert_eq!(recipients.as_array().unwrap().len(), 3);
    let full = &recipients[1];
    assert_eq!(full["rcpt"], "mailbox_full@x.example");
    assert_eq!(full["status"], "still_pending");
    assert_eq!(
        full["verdicts"]["retried_after_temporary"]["result"],
        "pass"
    );
    assert_eq!(
        recipients[0]["verdicts"]["stopped_after_permanent"]["result"],
        "pass"
    );
    assert_eq!(recipients[2]["delivered"], true);

    let metrics = Exposition::parse(&api.call("GET", "/metrics", None).await.text());
    assert_eq!(metrics.value("failmail_attempts_total", &[]), Some(2.0));
    assert_eq!(
        metrics.value("failmail_attempt_retries_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("failmail_attempt_duplicates_total", &[]),
        Some(0.0)
    );
    assert_eq!(metrics.types["failmail_attempts_per_message"], "histogram");

    assert_eq!(api.call("POST", "/api/reset", None).await.status, 204);
    assert_eq!(api.get("/api/attempts").await["attempts"], json!([]));
    assert_eq!(api.get("/api/report").await["messages"], json!([]));
    harness.stop().await;
}

#[tokio::test]
async fn without_attempts_the_routes_say_409() {
    let mut config = AppConfig::loopback();
    config.attempts.enabled = false;
    let server = App::start(config).await.expect("the server starts");
    let api = Api {
        addr: server.addresses().http.unwrap(),
        token: None,
    };
    for path in ["/api/attempts", "/api/report"] {
        let response = api.call("GET", path, None).await;
        assert_eq!(response.status, 409, "{path}");
        assert_eq!(response.json()["error"], "this server follows no attempts");
    }
    server.shutdown().await;
}
