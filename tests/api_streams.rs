//! What the HTTP API lets a test watch, over real sockets: `/metrics` parsed strictly and compared
//! with the events, the event stream (SSE, with `Last-Event-ID` and its filters) and the counter
//! stream.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::api::{delivered, http, session_of, summary, Harness, BLOCKING_SCENARIO};
use common::openapi::{check_documented, document, validate};
use common::prometheus::Exposition;
use common::{PlainConn, IO_TIMEOUT};
use failmail::AppConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
async fn the_event_stream_sends_each_event_as_json() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    let mut stream = Sse::open(api.addr, "/api/events/stream").await;

    let mut smtp = PlainConn::open(harness.smtp).await;
    smtp.cmd_code("EHLO c", 250).await;
    smtp.cmd_code("QUIT", 221).await;

    let events = stream
        .until(|events| events.iter().any(|(_, e)| e["type"] == "session_end"))
        .await;
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
    let mut replay = Sse::open(api.addr, "/api/events/stream?since=0").await;
    let replayed = replay.until(|events| events.len() >= 7).await;
    assert_eq!(replayed, events);
    harness.stop().await;
}

/// An open `GET /api/events/stream` and what it sent so far.
struct Sse {
    stream: TcpStream,
    received: Vec<u8>,
}

impl Sse {
    /// Opens the stream at `path` and reads the answer's head (200, `text/event-stream`): the
    /// subscription exists once it is read.
    async fn open(addr: std::net::SocketAddr, path: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut sse = Sse {
            stream,
            received: Vec::new(),
        };
        while !sse.received.windows(4).any(|w| w == b"\r\n\r\n") {
            sse.read().await;
        }
        let head = String::from_utf8_lossy(&sse.received).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{path}: {head}"
        );
        sse
    }

    async fn read(&mut self) {
        let mut buffer = [0u8; 4096];
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut buffer))
            .await
            .expect("the stream sends within 10 s")
            .unwrap();
        assert!(n > 0, "the stream ended early");
        self.received.extend_from_slice(&buffer[..n]);
    }

    /// Reads until the events received so far satisfy `done`; returns them.
    async fn until(&mut self, done: impl Fn(&[(u64, Value)]) -> bool) -> Vec<(u64, Value)> {
        loop {
            let events = sse_events(&String::from_utf8_lossy(&self.received));
            if done(&events) {
                return events;
            }
            self.read().await;
        }
    }
}

/// Two rules, so that a rule is told from a catalog entry: `blocked` (index 0) answers
/// `user_unknown`, `full` (index 1) `mailbox_full`; the magic addresses answer the same entries
/// without a rule.
const TWO_RULES: &str = r#"[[rule]]
name = "blocked"
rcpt = "blocked@*"
reply = "user_unknown"

[[rule]]
name = "full"
rcpt = "full@*"
reply = "mailbox_full"
"#;

/// The stream's filters (`type`, `rule` by name or index, `catalog`, `session`, together, and
/// `brief`, what the web page's list of sessions reads):
/// each stream, live and replayed, sends exactly the events the filter names, in order, and
/// an unknown type is refused.
#[tokio::test]
async fn the_event_stream_sends_only_what_its_filters_name() {
    let harness = Harness::start(Some(TWO_RULES)).await;
    let api = &harness.api;
    type Wanted = fn(&Value) -> bool;
    let filters: [(&str, Wanted, usize); 5] = [
        ("type=session_end", |e| e["type"] == "session_end", 2),
        ("rule=blocked", |e| e["rule_name"] == "blocked", 2),
        ("rule=1", |e| e["rule"] == 1, 1),
        (
            "catalog=mailbox_full",
            |e| e["catalog"] == "mailbox_full",
            2,
        ),
        (
            "type=reply&catalog=user_unknown&rule=0",
            |e| e["type"] == "reply" && e["catalog"] == "user_unknown" && e["rule"] == 0,
            2,
        ),
    ];
    let mut live = Vec::new();
    for (query, ..) in &filters {
        live.push(Sse::open(api.addr, &format!("/api/events/stream?{query}")).await);
    }
    let live_brief = Sse::open(api.addr, "/api/events/stream?brief=true").await;

    let mut first = PlainConn::ready(harness.smtp).await;
    let first_local = first.local_addr();
    first.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    for (rcpt, code) in [
        ("blocked@x.example", 550),
        ("full@x.example", 452),
        ("mailbox_full@x.example", 452),
        ("ok@x.example", 250),
    ] {
        first.cmd_code(&format!("RCPT TO:<{rcpt}>"), code).await;
    }
    first
        .data(b"Subject: s\r\n\r\nbody\r\n.\r\n")
        .await
        .assert_code(250);
    first.quit_221().await;
    let mut second = PlainConn::ready(harness.smtp).await;
    let second_local = second.local_addr();
    second.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    second
        .cmd_code("RCPT TO:<user_unknown@x.example>", 550)
        .await;
    second.cmd_code("RCPT TO:<blocked@x.example>", 550).await;
    second.quit_221().await;
    let first_session = session_of(api, first_local).await;
    let second_session = session_of(api, second_local).await;
    api.ended(first_session).await;
    api.ended(second_session).await;

    let all = api.get("/api/events?limit=10000").await["events"]
        .as_array()
        .unwrap()
        .clone();
    let ids = |wanted: &dyn Fn(&Value) -> bool| -> Vec<u64> {
        all.iter()
            .filter(|e| wanted(e))
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    };
    let sent = |events: Vec<(u64, Value)>| events.into_iter().map(|(id, _)| id).collect();
    for ((query, wanted, count), stream) in filters.iter().zip(&mut live) {
        let expected = ids(wanted);
        assert_eq!(expected.len(), *count, "{query}: {expected:?}");
        let got: Vec<u64> = sent(stream.until(|e| e.len() >= *count).await);
        assert_eq!(got, expected, "{query} (live)");
        let path = format!("/api/events/stream?since=0&{query}");
        let mut replay = Sse::open(api.addr, &path).await;
        let got: Vec<u64> = sent(replay.until(|e| e.len() >= *count).await);
        assert_eq!(got, expected, "{query} (replayed)");
    }
    check_brief(api, &all, live_brief).await;

    // One session's replies only: the second session's greeting, EHLO, MAIL, two RCPTs, QUIT.
    let query = format!("session={second_session}&type=reply");
    let expected = ids(&|e: &Value| e["session"] == second_session && e["type"] == "reply");
    assert_eq!(expected.len(), 6, "{expected:?}");
    let mut replay = Sse::open(api.addr, &format!("/api/events/stream?since=0&{query}")).await;
    let got: Vec<u64> = sent(replay.until(|e| e.len() >= 6).await);
    assert_eq!(got, expected, "{query}");

    let refused = http(api.addr, "GET", "/api/events/stream?type=nope", &[], b"").await;
    check_documented("GET", "/api/events/stream?type=nope", &refused);
    assert_eq!(refused.status, 400, "{}", refused.text());
    harness.stop().await;
}

/// `brief` on the two sessions of `the_event_stream_sends_only_what_its_filters_name`: replayed
/// (one chunk) and listed, the message's RCPT is left out (the message names it); live, the
/// chunks fall where they fall, so it may be there too.
async fn check_brief(api: &common::api::Api, all: &[Value], mut live_brief: Sse) {
    let ids = |wanted: &dyn Fn(&Value) -> bool| -> Vec<u64> {
        all.iter()
            .filter(|e| wanted(e))
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    };
    let sent =
        |events: Vec<(u64, Value)>| -> Vec<u64> { events.into_iter().map(|(id, _)| id).collect() };
    let stateless = ids(&brief);
    assert_eq!(stateless.len(), BRIEF_EVENTS, "{stateless:?}");
    let settled = api.get("/api/events?brief=true").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect::<Vec<u64>>();
    let ok_rcpt = ids(&|e: &Value| e["line"] == "RCPT TO:<ok@x.example>");
    let without_ok = |ids: &[u64]| -> Vec<u64> {
        ids.iter()
            .copied()
            .filter(|id| !ok_rcpt.contains(id))
            .collect()
    };
    let expected = without_ok(&stateless);
    assert_eq!(settled, expected, "GET brief=true");
    let mut replay = Sse::open(api.addr, "/api/events/stream?since=0&brief=true").await;
    let got = sent(replay.until(|e| e.len() >= expected.len()).await);
    assert_eq!(got, expected, "brief=true (replayed)");
    let last = *expected.last().unwrap();
    let got = sent(
        live_brief
            .until(|e| e.len() >= expected.len() && e.last().is_some_and(|(id, _)| *id == last))
            .await,
    );
    assert_eq!(without_ok(&got), expected, "brief=true (live)");
    // The message names its envelope.
    let message = all.iter().find(|e| e["type"] == "message").unwrap();
    assert_eq!(message["from"], "a@example.com");
    assert_eq!(message["rcpts"], json!(["ok@x.example"]));
}

/// The events of the two sessions above that `brief` keeps one by one: of each session its
/// start, EHLO, MAIL, RCPTs and end; the refusals (three in the first session, two in the
/// second); the first session's message (its 250 and every other protocol reply, DATA and QUIT
/// left out). Read together, the message also leaves out the RCPT it names.
const BRIEF_EVENTS: usize = 2 + 2 + 2 + 4 + 2 + 2 + 3 + 2 + 1;

/// What `brief=true` keeps, written out independently of the server's code.
fn brief(event: &Value) -> bool {
    match event["type"].as_str().unwrap() {
        "command" => {
            let verb = event["line"].as_str().unwrap().get(..4).unwrap_or("");
            ["HELO", "EHLO", "MAIL", "RCPT"]
                .iter()
                .any(|v| v.eq_ignore_ascii_case(verb))
        }
        "reply" => {
            event["code"].as_u64().unwrap() >= 400
                || !event["rule"].is_null()
                || !event["catalog"].is_null()
        }
        _ => true,
    }
}

/// A connection that sends many messages is one brief event per chunk: the run's last message,
/// `merged` with how many they were and every recipient they named; its MAIL and RCPT commands
/// are left out. Replayed at once, the whole run is one chunk.
#[tokio::test]
async fn a_run_of_messages_is_one_brief_event() {
    let harness = Harness::start(None).await;
    let api = &harness.api;
    let mut smtp = PlainConn::ready(harness.smtp).await;
    for i in 0..6 {
        smtp.cmd_code("MAIL FROM:<app@example.com>", 250).await;
        smtp.cmd_code(&format!("RCPT TO:<r{}@x.example>", i % 2), 250)
            .await;
        smtp.data(b"Subject: s\r\n\r\nbody\r\n.\r\n")
            .await
            .assert_code(250);
    }
    smtp.quit_221().await;
    let all = api.get("/api/events?limit=10000").await["events"]
        .as_array()
        .unwrap()
        .clone();
    let session = all[0]["session"].as_u64().unwrap();
    api.ended(session).await;
    let last_message = all.iter().rev().find(|e| e["type"] == "message").unwrap()["id"].clone();
    let mut replay = Sse::open(api.addr, "/api/events/stream?since=0&brief=true").await;
    let events = replay
        .until(|e| e.iter().any(|(_, e)| e["type"] == "session_end"))
        .await;
    let summary: Vec<String> = events
        .iter()
        .map(|(_, e)| match e["type"].as_str().unwrap() {
            "command" => e["line"].as_str().unwrap().to_owned(),
            kind => kind.to_owned(),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "session_start",
            "EHLO client.example",
            "message",
            "session_end"
        ],
        "{events:?}"
    );
    let merged = &events[2].1;
    assert_eq!(merged["id"], last_message);
    assert_eq!(
        merged["merged"],
        json!({"messages": 6, "rcpts": ["r0@x.example", "r1@x.example"]})
    );
    harness.stop().await;
}

/// A reader reads the ring of kept events (`--keep-events`): one that starts further behind than
/// the ring keeps is told, in the stream, how many events it missed, then gets every kept one;
/// a server that keeps none refuses the stream (409, as documented).
#[tokio::test]
async fn a_reader_behind_the_ring_is_told_what_it_missed() {
    let keeping = |events| {
        let mut config = AppConfig::loopback();
        config.journal.event_capacity = events;
        config
    };
    let harness = Harness::start_with(keeping(0), None).await;
    let response = http(harness.api.addr, "GET", "/api/events/stream", &[], b"").await;
    check_documented("GET", "/api/events/stream", &response);
    assert_eq!(response.status, 409, "{}", response.text());
    harness.stop().await;

    let harness = Harness::start_with(keeping(20), None).await;
    let api = &harness.api;
    for _ in 0..3 {
        let mut smtp = delivered(harness.smtp, b"Subject: x\r\n\r\nx\r\n.\r\n").await;
        smtp.quit().await;
    }
    // The third session's end is the newest event: every session has been recorded.
    let mut newest = Value::Null;
    for _ in 0..500 {
        newest = api.get("/api/events?order=desc&limit=1").await["events"][0].clone();
        if newest["type"] == "session_end" && newest["session"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (&newest["type"], &newest["session"]),
        (&json!("session_end"), &json!(3))
    );
    let newest = newest["id"].as_u64().unwrap();
    assert!(
        newest > 30,
        "three sessions make more events than the ring keeps"
    );

    let mut sse = Sse::open(api.addr, "/api/events/stream?since=0").await;
    let events = sse
        .until(|events| events.last().is_some_and(|e| e.0 == newest))
        .await;
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(ids, (newest - 19..=newest).collect::<Vec<u64>>());
    let text = String::from_utf8_lossy(&sse.received).to_string();
    let notice = format!(
        ": lagged: {} events were skipped: recorded after event 0,",
        newest - 20
    );
    let at = text
        .find(&notice)
        .unwrap_or_else(|| panic!("no {notice:?} in {text}"));
    assert!(
        at < text.find("data:").unwrap(),
        "the notice comes first: {text}"
    );
    harness.stop().await;
}

/// Every stream begins with a comment naming the journal's run, the same for every stream of
/// one server and another for the next server; a `since` beyond every id recorded (a reader of
/// an earlier run) reads this run's events from the start.
#[tokio::test]
async fn the_stream_names_its_run_and_a_since_from_another_run_reads_from_the_start() {
    let run_of = |sse: &Sse| {
        let text = String::from_utf8_lossy(&sse.received).to_string();
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        // The body is chunked: the greeting is the first chunk's content.
        let start = body.find(": journal ").expect("a journal greeting");
        assert!(
            !body[..start].contains("data:"),
            "the greeting comes first: {body}"
        );
        body[start..].lines().next().unwrap().to_owned()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let harness = Harness::start(None).await;
        let mut smtp = delivered(harness.smtp, b"Subject: x\r\n\r\nx\r\n.\r\n").await;
        smtp.quit().await;
        let mut far = Sse::open(harness.api.addr, "/api/events/stream?since=1000000").await;
        let events = far
            .until(|events| events.iter().any(|e| e.1["type"] == "session_end"))
            .await;
        assert_eq!(events[0].0, 1, "read from the start: {events:?}");
        let mut other = Sse::open(harness.api.addr, "/api/events/stream").await;
        while !String::from_utf8_lossy(&other.received).contains(": journal ") {
            other.read().await;
        }
        assert_eq!(run_of(&far), run_of(&other));
        runs.push(run_of(&far));
        harness.stop().await;
    }
    assert_ne!(runs[0], runs[1]);
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
