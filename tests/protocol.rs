//! Raw-socket protocol tests: PIPELINING in one write, BDAT chunks (binary-safe), the STARTTLS
//! command-injection class (CVE-2011-0411) and the session reset after STARTTLS, and overlong
//! command lines. Every reply is checked by code and enhanced status code, in order, and each
//! conversation ends with QUIT and the end of the stream, so that no stray reply goes unnoticed.

mod common;

use base64::Engine as _;
use common::*;

/// The whole transaction in one write, before even the greeting was read.
#[tokio::test]
async fn pipelined_transaction_in_one_write() {
    let server = start_loopback().await;
    let body = b"From: alice@client.example\r\n\
                 Subject: pipelined\r\n\
                 \r\n\
                 .starts with a dot\r\n\
                 .\r\n\
                 last line\r\n";
    let mut batch = b"EHLO client.example\r\n\
                      MAIL FROM:<alice@client.example>\r\n\
                      RCPT TO:<r1@failmail.test>\r\n\
                      RCPT TO:<r2@failmail.test>\r\n\
                      RCPT TO:<r3@failmail.test>\r\n\
                      DATA\r\n"
        .to_vec();
    batch.extend_from_slice(&dot_stuff(body));
    batch.extend_from_slice(b".\r\nQUIT\r\n");

    let mut conn = PlainConn::connect(server.addresses().smtp).await;
    conn.send(&batch).await;
    conn.expect_greeting().await;
    let ehlo = conn.reply().await;
    assert_ehlo(&ehlo);
    conn.expect(250, "2.1.0").await;
    for _ in 0..3 {
        conn.expect(250, "2.1.5").await;
    }
    conn.expect(354, "").await;
    let queued = conn.reply().await;
    let id = queue_id(&queued);
    conn.expect(221, "2.0.0").await;
    conn.expect_closed().await;

    let messages = server.messages().list();
    assert_eq!(messages.len(), 1);
    let message = &messages[0].message;
    assert_eq!(show(&message.data), show(body));
    assert_eq!(message.mail_from, "alice@client.example");
    assert_eq!(
        message.recipients,
        ["r1@failmail.test", "r2@failmail.test", "r3@failmail.test"]
    );
    assert_eq!(message.queue_id, id);
    assert!(!message.tls);
    server.shutdown().await;
}

/// Two transactions back to back in one write: the second starts right after the first's end.
#[tokio::test]
async fn two_pipelined_transactions_in_one_write() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    let mut batch = Vec::new();
    for n in 1..=2 {
        batch.extend_from_slice(
            format!(
                "MAIL FROM:<s{n}@client.example>\r\nRCPT TO:<r{n}@failmail.test>\r\nDATA\r\n\
                 Subject: {n}\r\n\r\n..body {n}\r\n.\r\n"
            )
            .as_bytes(),
        );
    }
    batch.extend_from_slice(b"QUIT\r\n");
    conn.send(&batch).await;
    for _ in 1..=2 {
        conn.expect(250, "2.1.0").await;
        conn.expect(250, "2.1.5").await;
        conn.expect(354, "").await;
        queue_id(&conn.reply().await);
    }
    conn.expect(221, "2.0.0").await;
    conn.expect_closed().await;
    let messages = server.messages().list();
    let data: Vec<String> = messages.iter().map(|m| show(&m.message.data)).collect();
    assert_eq!(
        data,
        [
            "Subject: 1\r\n\r\n.body 1\r\n",
            "Subject: 2\r\n\r\n.body 2\r\n"
        ]
    );
    assert_eq!(messages[1].message.mail_from, "s2@client.example");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// BDAT (RFC 3030)

fn chunk_reply_text(total: usize) -> String {
    format!("2.0.0 Ok: {total} octets received")
}

/// Three chunks, each its own round trip; chunks split lines, hold `CRLF.CRLF`, text that looks
/// like commands, and a large binary middle part. Nothing is unstuffed or interpreted.
#[tokio::test]
async fn bdat_three_chunks_byte_exact() {
    let server = start_loopback().await;
    let chunk1: Vec<u8> =
        b"From: alice@client.example\r\nSubject: chunked\r\n\r\nfirst li".to_vec();
    let mut chunk2: Vec<u8> =
        b"ne ends here\r\n.\r\n..stays two dots\r\nQUIT\r\nBDAT 5 LAST\r\n".to_vec();
    // 100 KiB of every byte value: longer than any read, and binary.
    chunk2.extend((0..100 * 1024).map(|i| (i % 256) as u8));
    chunk2.extend_from_slice(b"\r\n.\r");
    let chunk3: Vec<u8> = b"\n.\r\nlast line without the dot rules\r\n".to_vec();

    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    conn.cmd(
        "MAIL FROM:<alice@client.example> BODY=BINARYMIME",
        250,
        "2.1.0",
    )
    .await;
    conn.cmd("RCPT TO:<bob@failmail.test>", 250, "2.1.5").await;

    let mut total = 0;
    for (n, chunk) in [&chunk1, &chunk2].into_iter().enumerate() {
        let mut write = format!("BDAT {}\r\n", chunk.len()).into_bytes();
        write.extend_from_slice(chunk);
        conn.send(&write).await;
        total += chunk.len();
        let reply = conn.expect(250, "2.0.0").await;
        assert_eq!(reply.lines, [chunk_reply_text(total)], "chunk {}", n + 1);
    }
    let mut write = format!("BDAT {} LAST\r\n", chunk3.len()).into_bytes();
    write.extend_from_slice(&chunk3);
    conn.send(&write).await;
    let id = queue_id(&conn.reply().await);
    conn.cmd("NOOP", 250, "2.0.0").await;
    conn.quit().await;

    let messages = server.messages().list();
    assert_eq!(messages.len(), 1);
    let message = &messages[0].message;
    let expected = [chunk1, chunk2, chunk3].concat();
    assert_eq!(message.data.len(), expected.len(), "received length");
    assert!(
        message.data[..] == expected[..],
        "BDAT content is kept byte for byte"
    );
    assert_eq!(message.queue_id, id);
    assert_eq!(message.recipients, ["bob@failmail.test"]);
    server.shutdown().await;
}

/// The whole BDAT conversation in one write, then a second message ending with `BDAT 0 LAST`.
#[tokio::test]
async fn bdat_pipelined_in_one_write() {
    let server = start_loopback().await;
    let chunks: [&[u8]; 3] = [
        b"Subject: one write\r\n\r\nspl",
        b"it line\r\n.\r\nRSET\r\n\x00\xff\r",
        b"\n.\r\n",
    ];
    let mut batch = b"EHLO client.example\r\n\
                      MAIL FROM:<alice@client.example>\r\n\
                      RCPT TO:<bob@failmail.test>\r\n"
        .to_vec();
    for (n, chunk) in chunks.iter().enumerate() {
        let last = if n == 2 { " LAST" } else { "" };
        batch.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
        batch.extend_from_slice(chunk);
    }
    batch.extend_from_slice(
        b"MAIL FROM:<carol@client.example>\r\n\
          RCPT TO:<dave@failmail.test>\r\n\
          BDAT 5\r\nhelloBDAT 0 LAST\r\n\
          QUIT\r\n",
    );

    let mut conn = PlainConn::connect(server.addresses().smtp).await;
    conn.send(&batch).await;
    conn.expect_greeting().await;
    assert_ehlo(&conn.reply().await);
    conn.expect(250, "2.1.0").await;
    conn.expect(250, "2.1.5").await;
    let first = chunks[0].len();
    let reply = conn.expect(250, "2.0.0").await;
    assert_eq!(reply.lines, [chunk_reply_text(first)]);
    let reply = conn.expect(250, "2.0.0").await;
    assert_eq!(reply.lines, [chunk_reply_text(first + chunks[1].len())]);
    let id1 = queue_id(&conn.reply().await);
    conn.expect(250, "2.1.0").await;
    conn.expect(250, "2.1.5").await;
    let reply = conn.expect(250, "2.0.0").await;
    assert_eq!(reply.lines, [chunk_reply_text(5)]);
    let id2 = queue_id(&conn.reply().await);
    assert_ne!(id1, id2, "each message has its own queue id");
    conn.expect(221, "2.0.0").await;
    conn.expect_closed().await;

    let messages = server.messages().list();
    assert_eq!(messages.len(), 2);
    assert!(messages[0].message.data[..] == chunks.concat()[..]);
    assert_eq!(messages[0].message.queue_id, id1);
    assert_eq!(&messages[1].message.data[..], b"hello");
    assert_eq!(messages[1].message.mail_from, "carol@client.example");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// STARTTLS

/// CVE-2011-0411: "RSET" sent in plaintext in the same packet as STARTTLS must not be answered
/// over TLS. The first reply under TLS must be the one to the client's EHLO.
#[tokio::test]
async fn starttls_discards_injected_plaintext_commands() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted(server.addresses().smtp).await;
    let ehlo = conn.ehlo("client.example").await;
    assert!(
        announces(&ehlo, "STARTTLS"),
        "STARTTLS offered: {}",
        ehlo.text()
    );
    conn.send("STARTTLS\r\nRSET\r\n").await;
    conn.expect(220, "2.0.0").await;
    let mut tls = conn.starttls().await;
    tls.send("EHLO client.example\r\n").await;
    let first = tls.reply().await;
    assert_ehlo(&first);
    assert!(
        !announces(&first, "STARTTLS"),
        "STARTTLS is not offered under TLS: {}",
        first.text()
    );
    tls.cmd("NOOP", 250, "2.0.0").await;
    tls.quit().await;
    server.shutdown().await;
}

/// A whole plaintext prefix pipelined with STARTTLS, with an injected EHLO and MAIL after it:
/// under TLS, no transaction exists (RCPT gets 503 5.5.1 "need MAIL").
#[tokio::test]
async fn starttls_injected_mail_is_not_carried_into_tls() {
    let server = start_loopback().await;
    let mut conn = PlainConn::connect(server.addresses().smtp).await;
    conn.send(
        "EHLO client.example\r\nSTARTTLS\r\nEHLO injected.example\r\n\
         MAIL FROM:<attacker@evil.example>\r\n",
    )
    .await;
    conn.expect_greeting().await;
    assert_ehlo(&conn.reply().await);
    conn.expect(220, "2.0.0").await;
    let mut tls = conn.starttls().await;
    // Before any EHLO under TLS, the injected EHLO must not count either.
    tls.cmd("RCPT TO:<bob@failmail.test>", 503, "5.5.1").await;
    tls.ehlo("client.example").await;
    tls.cmd("RCPT TO:<bob@failmail.test>", 503, "5.5.1").await;
    tls.quit().await;
    assert!(server.messages().list().is_empty());
    server.shutdown().await;
}

/// RFC 3207 §4.2: after the handshake the server forgets EHLO and AUTH: MAIL before a new EHLO
/// gets 503 5.5.1, AUTH is offered again, and the message carries no identity from before TLS.
#[tokio::test]
async fn starttls_resets_the_session() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    let credentials = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0s3cret");
    conn.cmd(&format!("AUTH PLAIN {credentials}"), 235, "2.7.0")
        .await;
    conn.cmd("STARTTLS", 220, "2.0.0").await;
    let mut tls = conn.starttls().await;
    tls.cmd("MAIL FROM:<alice@client.example>", 503, "5.5.1")
        .await;
    let ehlo = tls.ehlo("tls.client.example").await;
    assert!(
        announces(&ehlo, "AUTH"),
        "AUTH is offered again after STARTTLS (identity forgotten): {}",
        ehlo.text()
    );
    assert!(!announces(&ehlo, "STARTTLS"), "{}", ehlo.text());
    tls.begin_data("alice@client.example", "bob@failmail.test")
        .await;
    tls.send("Subject: after TLS\r\n\r\nbody\r\n.\r\n").await;
    queue_id(&tls.reply().await);
    tls.quit().await;

    let messages = server.messages().list();
    assert_eq!(messages.len(), 1);
    let message = &messages[0].message;
    assert!(message.tls, "message marked as received under TLS");
    assert_eq!(message.auth_user, None, "AUTH before STARTTLS is forgotten");
    assert_eq!(message.helo.as_deref(), Some("tls.client.example"));
    server.shutdown().await;
}

/// STARTTLS is refused under implicit TLS, and the session goes on.
#[tokio::test]
async fn starttls_under_implicit_tls_is_refused() {
    let server = start_loopback().await;
    let mut tls = TlsConn::connect_tls(server.addresses().smtps.unwrap()).await;
    tls.expect_greeting().await;
    let ehlo = tls.ehlo("client.example").await;
    assert!(!announces(&ehlo, "STARTTLS"), "{}", ehlo.text());
    tls.cmd("STARTTLS", 503, "5.5.1").await;
    tls.cmd("NOOP", 250, "2.0.0").await;
    tls.quit().await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Line length (RFC 5321 §4.5.3.1.4: 512 octets with CRLF)

fn noop_line(octets: usize) -> String {
    let line = format!("NOOP {}\r\n", "x".repeat(octets - 7));
    assert_eq!(line.len(), octets);
    line
}

#[tokio::test]
async fn command_line_limit_is_512_octets() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted(server.addresses().smtp).await;
    conn.send(noop_line(512)).await;
    conn.expect(250, "2.0.0").await;
    conn.send(noop_line(513)).await;
    conn.expect(500, "5.5.2").await;
    conn.cmd("NOOP", 250, "2.0.0").await;
    conn.quit().await;
    server.shutdown().await;
}

/// A 600-octet MAIL line gets 500 5.5.2, is not executed (RCPT then lacks a MAIL), and the
/// commands pipelined after it in the same write are answered in order.
#[tokio::test]
async fn long_command_line_gets_500_and_stays_in_sync() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    let prefix = "MAIL FROM:<";
    let suffix = "@client.example>\r\n";
    let local = "a".repeat(600 - prefix.len() - suffix.len());
    let long = format!("{prefix}{local}{suffix}");
    assert_eq!(long.len(), 600);
    conn.send(format!("{long}NOOP\r\nRCPT TO:<bob@failmail.test>\r\n"))
        .await;
    conn.expect(500, "5.5.2").await;
    conn.expect(250, "2.0.0").await;
    conn.expect(503, "5.5.1").await;
    conn.quit().await;
    assert!(server.messages().list().is_empty());
    server.shutdown().await;
}

/// 100 KiB without a line end, in several writes, then the line end: exactly one 500 5.5.2, and
/// the transaction that was open before it is intact.
#[tokio::test]
async fn huge_line_without_newline_gets_one_500() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    conn.cmd("MAIL FROM:<alice@client.example>", 250, "2.1.0")
        .await;
    let block = "y".repeat(4 * 1024);
    for _ in 0..25 {
        conn.send(&block).await;
    }
    conn.send("\r\nRCPT TO:<bob@failmail.test>\r\nNOOP\r\n")
        .await;
    conn.expect(500, "5.5.2").await;
    conn.expect(250, "2.1.5").await;
    conn.expect(250, "2.0.0").await;
    conn.cmd("DATA", 354, "").await;
    conn.send("Subject: still in sync\r\n\r\nok\r\n.\r\n").await;
    queue_id(&conn.reply().await);
    conn.quit().await;
    let messages = server.messages().list();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].message.recipients, ["bob@failmail.test"]);
    server.shutdown().await;
}

/// The same 100 KiB line in one write followed at once by its newline and the next command.
#[tokio::test]
async fn huge_line_in_one_write_gets_one_500() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted(server.addresses().smtp).await;
    let mut write = "z".repeat(100 * 1024);
    write.push_str("\r\nNOOP\r\n");
    conn.send(&write).await;
    conn.expect(500, "5.5.2").await;
    conn.expect(250, "2.0.0").await;
    conn.quit().await;
    server.shutdown().await;
}

/// Body lines are not command lines: a 100 KiB line inside DATA is kept as sent.
#[tokio::test]
async fn long_line_in_data_is_kept() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    conn.begin_data("alice@client.example", "bob@failmail.test")
        .await;
    let body = format!("Subject: long\r\n\r\n{}\r\n", "w".repeat(100 * 1024));
    conn.send(format!("{body}.\r\n")).await;
    queue_id(&conn.reply().await);
    conn.quit().await;
    let messages = server.messages().list();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].message.data[..] == body.as_bytes()[..]);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Policies a client meets in the plain sink: AUTH only under TLS, AUTH required, size limit

fn plain_credentials() -> String {
    base64::engine::general_purpose::STANDARD.encode(b"\0alice\0s3cret")
}

/// With `allow_plaintext = false`, AUTH is neither offered nor accepted before STARTTLS, and
/// works after it.
#[tokio::test]
async fn auth_only_after_starttls_when_plaintext_is_not_allowed() {
    let config = sink_with(|c| c.session.auth.allow_plaintext = false);
    let server = start(config).await;
    let mut conn = PlainConn::greeted(server.addresses().smtp).await;
    let ehlo = conn.ehlo("client.example").await;
    assert!(
        !announces(&ehlo, "AUTH"),
        "no AUTH before TLS: {}",
        ehlo.text()
    );
    conn.cmd(
        &format!("AUTH PLAIN {}", plain_credentials()),
        538,
        "5.7.11",
    )
    .await;
    conn.cmd("STARTTLS", 220, "2.0.0").await;
    let mut tls = conn.starttls().await;
    let ehlo = tls.ehlo("client.example").await;
    assert!(announces(&ehlo, "AUTH"), "AUTH under TLS: {}", ehlo.text());
    tls.cmd(&format!("AUTH PLAIN {}", plain_credentials()), 235, "2.7.0")
        .await;
    tls.cmd("AUTH LOGIN", 503, "5.5.1").await;
    tls.quit().await;
    server.shutdown().await;
}

/// With `required = true`, MAIL before AUTH gets 530 5.7.0; after AUTH the message carries the
/// identity.
#[tokio::test]
async fn mail_needs_auth_when_required() {
    let config = sink_with(|c| c.session.auth.required = true);
    let server = start(config).await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    conn.cmd("MAIL FROM:<alice@client.example>", 530, "5.7.0")
        .await;
    conn.send("AUTH LOGIN\r\n").await;
    let challenge = conn.expect(334, "").await;
    assert_eq!(challenge.lines, ["VXNlcm5hbWU6"], "base64 of Username:");
    conn.send("YWxpY2U=\r\n").await;
    let challenge = conn.expect(334, "").await;
    assert_eq!(challenge.lines, ["UGFzc3dvcmQ6"], "base64 of Password:");
    conn.cmd("czNjcmV0", 235, "2.7.0").await;
    conn.begin_data("alice@client.example", "bob@failmail.test")
        .await;
    conn.send("Subject: authenticated\r\n\r\nhi\r\n.\r\n").await;
    queue_id(&conn.reply().await);
    conn.quit().await;
    let messages = server.messages().list();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].message.auth_user.as_deref(), Some("alice"));
    server.shutdown().await;
}

/// Over `max_message_size`: SIZE= is refused at MAIL, a longer body gets 552 5.3.4 at its end,
/// nothing is stored, and the session goes on.
#[tokio::test]
async fn message_over_the_size_limit_is_refused_and_the_session_goes_on() {
    let config = sink_with(|c| c.session.max_message_size = 1000);
    let server = start(config).await;
    let mut conn = PlainConn::greeted(server.addresses().smtp).await;
    let ehlo = conn.ehlo("client.example").await;
    assert!(
        ehlo.lines.iter().any(|l| l == "SIZE 1000"),
        "{}",
        ehlo.text()
    );
    conn.cmd("MAIL FROM:<alice@client.example> SIZE=1001", 552, "5.3.4")
        .await;
    conn.cmd("MAIL FROM:<alice@client.example> SIZE=900", 250, "2.1.0")
        .await;
    conn.cmd("RCPT TO:<bob@failmail.test>", 250, "2.1.5").await;
    conn.cmd("DATA", 354, "").await;
    let body = format!("Subject: big\r\n\r\n{}\r\n", "b".repeat(2000));
    conn.send(format!("{body}.\r\n")).await;
    conn.expect(552, "5.3.4").await;
    conn.cmd("NOOP", 250, "2.0.0").await;
    conn.cmd("RCPT TO:<bob@failmail.test>", 503, "5.5.1").await;
    conn.quit().await;
    assert!(server.messages().list().is_empty());
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// End of data

/// The end-of-data sequence and a stuffed dot split over several writes still end the message
/// exactly once, at the right place.
#[tokio::test]
async fn end_of_data_split_across_writes() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    conn.begin_data("alice@client.example", "bob@failmail.test")
        .await;
    for part in [
        "Subject: split\r\n\r\nline\r",
        "\n.",
        ".stuffed\r\n.",
        "\r",
        "\nNOOP\r\n",
    ] {
        conn.send(part).await;
    }
    queue_id(&conn.reply().await);
    conn.expect(250, "2.0.0").await;
    conn.quit().await;
    let messages = server.messages().list();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        show(&messages[0].message.data),
        "Subject: split\r\n\r\nline\r\n.stuffed\r\n"
    );
    server.shutdown().await;
}

/// SMTP smuggling: `<LF>.<CRLF>` and `<CR>.<CRLF>` do not end DATA, so the "smuggled" commands
/// after them stay message text and only one message is accepted.
#[tokio::test]
async fn bare_lf_or_cr_before_the_dot_does_not_end_data() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    conn.begin_data("alice@client.example", "bob@failmail.test")
        .await;
    let body = "Subject: smuggling\r\n\r\nhello\n.\r\n\
                MAIL FROM:<evil@attacker.example>\r\n\
                RCPT TO:<victim@failmail.test>\r\n\
                DATA\r\n\
                smuggled\r.\r\n\
                tail\r\n";
    conn.send(format!("{body}.\r\nNOOP\r\n")).await;
    queue_id(&conn.reply().await);
    conn.expect(250, "2.0.0").await;
    conn.quit().await;
    let messages = server.messages().list();
    assert_eq!(messages.len(), 1, "exactly one message");
    assert_eq!(show(&messages[0].message.data), body);
    assert_eq!(messages[0].message.mail_from, "alice@client.example");
    server.shutdown().await;
}

/// EHLO and HELO take a name or an address literal: a malformed literal gets `501 5.5.4`, as in
/// RCPT, and the session goes on; a well-formed one, or any plain word, is greeted.
#[tokio::test]
async fn malformed_address_literals_in_ehlo_get_501_5_5_4() {
    let server = start_loopback().await;
    let mut conn = PlainConn::greeted(server.addresses().smtp).await;
    for bad in [
        "EHLO [300.0.0.1]",
        "HELO [IPv6:not-an-address]",
        "EHLO [192.0.2.1",
    ] {
        conn.cmd(bad, 501, "5.5.4").await;
    }
    conn.cmd_code("EHLO [IPv6:2001:db8::1]", 250).await;
    conn.cmd_code("HELO [192.0.2.1]", 250).await;
    conn.cmd_code("EHLO my_host", 250).await;
    transaction_on(&mut conn, "literals").await;
    server.shutdown().await;
}
