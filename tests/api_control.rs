//! What a test controls through the HTTP API, over real sockets: the clock and the limits (made
//! to pass with the clock instead of waiting), the scenario (replaced, refused with its position,
//! checked without going live), greylisting and sequences in progress (with either limit store)
//! and `POST /api/reset`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::api::{send, without_reloads, Api, Harness, BLOCKING_SCENARIO};
use common::limits::{for_each_store, manual_clock, options};
use common::PlainConn;
use failmail::limits::{LimitOverrides, LimitStore};
use failmail::AppConfig;
use serde_json::{json, Value};

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

/// `dropped` in `GET /api/events` counts the events that fell out of the ring since the last
/// `POST /api/reset`, so that a test isolated by a reset sees only its own; the metric
/// `failmail_events_dropped_total` stays a counter.
#[tokio::test]
async fn reset_starts_the_dropped_count_over() {
    let mut config = AppConfig::loopback();
    config.journal.event_capacity = 3;
    let harness = Harness::start_with(config, None).await;
    let api = &harness.api;
    let mut smtp = PlainConn::ready(harness.smtp).await;
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
    harness.stop().await;
}

const IN_PROGRESS: &str = "[greylisting]\ndelay = \"5m\"\nretry_window = \"1h\"\n\n[[rule]]\nname = \"flaky\"\nrcpt = \"flaky@*\"\nsequence = [\"greylisted\", \"greylisted\", \"accept\"]\n";

/// `GET /api/limits` lists greylisting and sequences in progress: each triplet with when it
/// passes (and moves with the clock), each sequence with its rule, steps and next step; both
/// bounded, the store saying when it left entries out; `DELETE /api/limits` empties both.
async fn greylisting_and_sequences_in_progress_are_listed(store: Arc<dyn LimitStore>) {
    let mut config = options(manual_clock(), store.clone(), LimitOverrides::default());
    config.http = AppConfig::loopback().http;
    let server = common::start_toml(config, "in-progress.toml", IN_PROGRESS).await;
    let api = Api {
        addr: server.addresses().http.expect("an HTTP listener"),
        token: None,
    };
    let smtp = server.addresses().smtp;
    let before = api.get("/api/limits").await;
    assert_eq!(
        before["limits"]["greylisting"],
        json!({"delay_seconds": 300.0, "retry_window_seconds": 3600.0})
    );
    for list in ["greylist", "sequences"] {
        assert_eq!(before[list], json!([]), "{before}");
        assert_eq!(before[format!("{list}_truncated")], false);
    }

    let first_ms = api.get("/api/clock").await["now_ms"].as_u64().unwrap();
    let mut conn = PlainConn::ready(smtp).await;
    conn.cmd_code("MAIL FROM:<App@Example.com>", 250).await;
    conn.cmd_code("RCPT TO:<Grey@Dest.example>", 451).await;
    conn.cmd_code("RCPT TO:<flaky@dest.example>", 451).await;
    conn.cmd_code("RCPT TO:<flaky@dest.example>", 451).await;
    conn.quit().await;
    api.post_json("/api/clock/advance", json!({"seconds": 10}))
        .await;
    common::rcpt_reply(smtp, "app@example.com", "later@dest.example")
        .await
        .assert_code(451);

    let limits = api.get("/api/limits").await;
    let grey = &limits["greylist"];
    assert_eq!(grey.as_array().unwrap().len(), 2, "{limits}");
    assert_eq!(
        grey[0]["recipient"], "later@dest.example",
        "the newest first"
    );
    assert_eq!(
        grey[1],
        json!({
            "key": "127.0.0.0/app@example.com/grey@dest.example",
            "network": "127.0.0.0",
            "sender": "app@example.com",
            "recipient": "grey@dest.example",
            "first_seen_ms": first_ms,
            "passes_at_ms": first_ms + 300_000,
            "passes_in_seconds": 290.0,
            "expires_at_ms": first_ms + 3_600_000,
        })
    );
    let sequence = &limits["sequences"][0];
    assert!(
        sequence["key"].as_str().unwrap().starts_with("0:"),
        "{sequence}"
    );
    assert_eq!(
        (
            &sequence["attempts"],
            &sequence["rule"],
            &sequence["rule_name"],
            &sequence["rule_at"],
            &sequence["next_step"]
        ),
        (
            &json!(2),
            &json!(0),
            &json!("flaky"),
            &json!("in-progress.toml:5"),
            &json!("accept")
        ),
        "{sequence}"
    );
    assert_eq!(
        sequence["steps"],
        json!(["greylisted", "greylisted", "accept"])
    );

    // The store keeps at most what is asked for, and says when it left some out.
    let newest = store.greylist_entries(0, 1).await.unwrap();
    assert_eq!(newest.entries.len(), 1);
    assert!(newest.entries[0].key.ends_with("/later@dest.example"));
    assert!(newest.truncated);
    assert!(!store.greylist_entries(0, 2).await.unwrap().truncated);
    assert!(store.sequences(0).await.unwrap().truncated);

    // Five minutes on, the first triplet passes; an hour on, it is forgotten.
    api.post_json("/api/clock/advance", json!({"seconds": 290}))
        .await;
    let limits = api.get("/api/limits").await;
    assert_eq!(limits["greylist"][1]["passes_in_seconds"], 0.0, "{limits}");
    common::rcpt_reply(smtp, "app@example.com", "grey@dest.example")
        .await
        .assert_code(250);
    api.post_json("/api/clock/advance", json!({"seconds": 3600}))
        .await;
    let limits = api.get("/api/limits").await;
    assert_eq!(limits["greylist"], json!([]), "{limits}");
    assert_eq!(limits["sequences"][0]["attempts"], 2);

    assert_eq!(api.call("DELETE", "/api/limits", None).await.status, 204);
    let limits = api.get("/api/limits").await;
    assert_eq!(
        (&limits["greylist"], &limits["sequences"]),
        (&json!([]), &json!([]))
    );
    server.shutdown().await;
}

for_each_store! {
    check: greylisting_and_sequences_in_progress_are_listed,
    memory: greylisting_and_sequences_in_progress_are_listed_memory,
    redis: greylisting_and_sequences_in_progress_are_listed_redis,
    worker_threads: 2,
}
