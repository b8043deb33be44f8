//! An IPv4 client seen through a dual-stack listener (as `::ffff:127.0.0.1`) is the same client
//! as over IPv4: counted, limited and greylisted under the same keys.
//!
//! Each server listens for SMTP on `[::]:0` (an IPv4 client arrives there IPv4-mapped) and for
//! SMTPS on `127.0.0.1:0` (plain IPv4), so one test client from 127.0.0.1 shows up both ways.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{PlainConn, TlsConn};
use failmail::app::ScenarioConfig;
use failmail::clock::ManualClock;
use failmail::{AppConfig, RunningApp};

/// A server with `scenario`, SMTP on `[::]:0` and SMTPS on `127.0.0.1:0`, on a manual clock.
async fn dual_stack(scenario: &str) -> (RunningApp, std::sync::Arc<ManualClock>) {
    let clock = std::sync::Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)));
    let config = AppConfig {
        scenario: Some(ScenarioConfig::default()),
        clock: clock.clone(),
        ..common::scenario_with(|c| {
            c.server.smtp = "[::]:0".parse().unwrap();
            c.server.smtps = Some("127.0.0.1:0".parse().unwrap());
        })
    };
    let app = common::start_toml(config, "client_ip.toml", scenario).await;
    (app, clock)
}

/// The SMTP listener's port, reached over IPv4: the server sees `::ffff:127.0.0.1`.
fn mapped(app: &RunningApp) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], app.addresses().smtp.port()))
}

fn smtps(app: &RunningApp) -> SocketAddr {
    app.addresses().smtps.expect("an SMTPS listener")
}

#[tokio::test]
async fn a_mapped_client_counts_among_the_connections_of_its_ipv4_address() {
    let (app, _clock) = dual_stack("[limits]\nconnections_per_ip = 1\n").await;
    let mut over_ipv4 = TlsConn::connect_tls(smtps(&app)).await;
    over_ipv4.expect_greeting().await;
    let mut through_ipv6 = PlainConn::connect(mapped(&app)).await;
    through_ipv6.expect(421, "4.7.0").await;
    over_ipv4.quit().await;
}

#[tokio::test]
async fn a_mapped_client_uses_the_rate_limit_of_its_ipv4_address() {
    let (app, _clock) = dual_stack("[limits]\nper_ip = { max = 1, per = \"1h\" }\n").await;
    let mut over_ipv4 = TlsConn::connect_tls(smtps(&app)).await;
    over_ipv4.expect_greeting().await;
    common::transaction_on(&mut over_ipv4, "first").await;
    let mut through_ipv6 = PlainConn::greeted(mapped(&app)).await;
    through_ipv6.ehlo("client.example").await;
    // The catalog's rate_limited: 451 4.7.1, the same as the IPv4 client would get.
    through_ipv6
        .cmd("MAIL FROM:<second@client.example>", 451, "4.7.1")
        .await;
    let usage = app.scenario().unwrap().engine().usage().await.unwrap();
    assert_eq!(
        usage
            .iter()
            .map(|u| (u.key.as_str(), u.used))
            .collect::<Vec<_>>(),
        [("ip:127.0.0.1", 1)]
    );
}

#[tokio::test]
async fn a_mapped_client_retries_greylisting_as_its_ipv4_network() {
    let (app, clock) = dual_stack("[greylisting]\ndelay = \"300s\"\n").await;
    let attempt = |mut conn: PlainConn| async move {
        conn.ehlo("client.example").await;
        conn.cmd("MAIL FROM:<a@client.example>", 250, "2.1.0").await;
        conn.send("RCPT TO:<b@dest.example>\r\n").await;
        let reply = conn.reply().await;
        conn.quit().await;
        reply.code
    };
    // First seen over IPv4 (SMTPS), then retried from the same address through IPv6.
    let mut over_ipv4 = TlsConn::connect_tls(smtps(&app)).await;
    over_ipv4.expect_greeting().await;
    over_ipv4.ehlo("client.example").await;
    over_ipv4
        .cmd("MAIL FROM:<a@client.example>", 250, "2.1.0")
        .await;
    over_ipv4.send("RCPT TO:<b@dest.example>\r\n").await;
    assert_eq!(
        over_ipv4.reply().await.code / 100,
        4,
        "first sight is greylisted"
    );
    over_ipv4.quit().await;
    clock.advance(Duration::from_secs(301));
    let retry = PlainConn::greeted(mapped(&app)).await;
    assert_eq!(attempt(retry).await, 250);
    // A neighbour in the same /24 is the same greylisting network too.
    let mut neighbour = PlainConn::connect_from([127, 0, 0, 2].into(), mapped(&app)).await;
    neighbour.expect_greeting().await;
    assert_eq!(attempt(neighbour).await, 250);
}
