//! Two failmail instances on one real Redis (`--state redis://…`) share their clock as they share
//! their limits: after `POST /api/clock/advance` on one, both accept and refuse exactly alike,
//! at once (no waiting for the other to hear of it), and `POST /api/reset` on either takes both
//! clocks back.
//!
//! Before the clock was shared, the advanced instance stamped its uses an hour ahead and found its
//! window free while the other still counted the old uses: the pair accepted twice the limit in
//! one real hour.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::binary::{http_get, http_post};
use common::redis::RedisServer;
use common::PlainConn;
use failmail::app::{ScenarioConfig, StateConfig};
use failmail::limits::{LimitOverrides, Window};
use failmail::{AppConfig, RunningApp};
use serde_json::Value;

const LIMIT: u64 = 3;

async fn instance(redis: &RedisServer) -> RunningApp {
    let mut config = AppConfig::loopback();
    config.server.smtps = None;
    config.state = StateConfig::Redis(redis.url());
    config.scenario = Some(ScenarioConfig {
        limits: LimitOverrides {
            per_account: Some(Window {
                max: LIMIT,
                per: Duration::from_secs(3600),
            }),
            ..LimitOverrides::default()
        },
        ..ScenarioConfig::default()
    });
    common::start(config).await
}

/// One message from alice on a new connection: the code of the refusal at MAIL, or of the end of
/// data.
async fn send(app: &RunningApp) -> u16 {
    let mut conn = PlainConn::greeted(app.addresses().smtp).await;
    conn.ehlo("client.example").await;
    let mail = conn.command("MAIL FROM:<alice@example.org>").await;
    if mail.code != 250 {
        mail.assert(451, "4.7.1");
        conn.quit().await;
        return mail.code;
    }
    conn.cmd("RCPT TO:<bob@dest.example>", 250, "2.1.5").await;
    let end = conn.data(b"Subject: shared\r\n\r\nx\r\n.\r\n").await;
    conn.quit().await;
    end.code
}

fn http(app: &RunningApp) -> SocketAddr {
    app.addresses().http.expect("an HTTP listener")
}

async fn offset_seconds(app: &RunningApp) -> f64 {
    let (_, body) = http_get(http(app), "/api/clock").await;
    let clock: Value = serde_json::from_str(&body).unwrap();
    clock["offset_seconds"].as_f64().unwrap()
}

/// Waits (bounded: 100 × 20 ms) until `app`'s own reading of the shared offset is `expected`.
async fn wait_offset(app: &RunningApp, expected: f64) {
    let mut last = 0.0;
    for _ in 0..100 {
        last = offset_seconds(app).await;
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the instance reads an offset of {last} s, not {expected} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_accept_and_refuse_alike_after_the_clock_moves_on_one() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis).await;
    let b = instance(&redis).await;

    // One limit for both: 3 through A, then B refuses.
    for _ in 0..LIMIT {
        assert_eq!(send(&a).await, 250);
    }
    assert_eq!(send(&b).await, 451);

    // An hour later, said to A only. B decides with the new time at once: its very next message
    // is accepted, and the two share the fresh window's 3 uses.
    let (status, body) =
        http_post(http(&a), "/api/clock/advance", Some(r#"{"seconds": 3600}"#)).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let codes = [
        send(&b).await,
        send(&a).await,
        send(&b).await,
        send(&a).await,
        send(&b).await,
    ];
    assert_eq!(codes, [250, 250, 250, 451, 451]);

    // B's own clock (event stamps, GET /api/clock) follows too.
    assert_eq!(offset_seconds(&a).await, 3600.0);
    wait_offset(&b, 3600.0).await;

    // A reset on B takes both clocks back, and frees the window for both.
    let (status, body) = http_post(http(&b), "/api/reset", None).await;
    assert_eq!(status, "HTTP/1.1 204 No Content", "{body}");
    assert_eq!(offset_seconds(&b).await, 0.0);
    wait_offset(&a, 0.0).await;
    assert_eq!(send(&a).await, 250);
    assert_eq!(send(&b).await, 250);
}
