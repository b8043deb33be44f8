//! The API tests' client: a tiny HTTP/1.1 client, [`Api`] whose every call is checked against
//! the OpenAPI document (see [`super::openapi`]), a [`Harness`] that starts a server with its SMTP
//! and HTTP listeners, and small helpers the `tests/api*.rs` files share.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use failmail::app::ScenarioConfig;
use failmail::{App, AppConfig, RunningApp};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::openapi::check_documented;
use super::{PlainConn, IO_TIMEOUT};

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client.

/// One HTTP answer: status, headers (in order) and the body, de-chunked.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; fails the test if it is not.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as UTF-8 text; fails the test if it is not.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub(crate) async fn http(
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
// A server under test.

/// The API of a server under test, called with its bearer token if it has one.
pub(crate) struct Api {
    pub(crate) addr: SocketAddr,
    pub(crate) token: Option<String>,
}

impl Api {
    /// Calls the API and checks the answer against the OpenAPI document.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> HttpResponse {
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

    /// `GET path`, which must answer 200 with JSON.
    pub(crate) async fn get(&self, path: &str) -> Value {
        let response = self.call("GET", path, None).await;
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post_json(&self, path: &str, body: Value) -> HttpResponse {
        let body = body.to_string();
        self.call("POST", path, Some(("application/json", body.as_bytes())))
            .await
    }

    /// The events of `session` in the journal so far.
    pub(crate) async fn events(&self, session: u64) -> Vec<Value> {
        let page = self.get(&format!("/api/events?session={session}")).await;
        page["events"].as_array().unwrap().clone()
    }

    /// Waits until the session's `session_end` event is in the journal, and returns its events.
    pub(crate) async fn ended(&self, session: u64) -> Vec<Value> {
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

/// A server under test with SMTP and HTTP on loopback, its scenario in a file of its own.
pub(crate) struct Harness {
    pub(crate) server: Option<RunningApp>,
    pub(crate) smtp: SocketAddr,
    pub(crate) api: Api,
    _dir: tempfile::TempDir,
    pub(crate) file: PathBuf,
}

impl Harness {
    /// A server with `scenario` as its file (or the built-in scenario for `None`).
    pub(crate) async fn start(scenario: Option<&str>) -> Self {
        Self::start_with(AppConfig::loopback(), scenario).await
    }

    /// A server of `config` (SMTP and HTTP on loopback), with `scenario` as its file (or the
    /// built-in scenario for `None`).
    pub(crate) async fn start_with(mut config: AppConfig, scenario: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scenario.toml");
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

    /// Shuts the server down (gracefully).
    pub(crate) async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// The session id of the connection from `local`, from its `session_start` event.
pub(crate) async fn session_of(api: &Api, local: SocketAddr) -> u64 {
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
pub(crate) fn summary(events: &[Value]) -> Vec<String> {
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
pub(crate) async fn send(
    api: &Api,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> HttpResponse {
    api.call(method, path, Some((content_type, body))).await
}

/// A scenario answer without its load history (compared separately).
pub(crate) fn without_reloads(mut scenario: Value) -> Value {
    scenario
        .as_object_mut()
        .expect("a scenario is an object")
        .remove("reloads");
    scenario
}

/// A scenario of one rule, `blocked` (index 0): recipients `blocked@*` are unknown users.
pub(crate) const BLOCKING_SCENARIO: &str = r#"[[rule]]
name = "blocked"
rcpt = "blocked@*"
reply = "user_unknown"
"#;

/// A session that delivered one message from a@example.com to b@example.net, still open.
pub(crate) async fn delivered(smtp: SocketAddr, message: &[u8]) -> PlainConn {
    let mut conn = PlainConn::ready(smtp).await;
    conn.deliver("a@example.com", "b@example.net", message)
        .await
        .assert_code(250);
    conn
}
