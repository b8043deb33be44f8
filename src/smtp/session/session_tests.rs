//! Unit tests of the session state machine, driven without sockets.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::BytesMut;

use super::transaction::REUSED_BODY_CAPACITY;
use super::write::push_decimal;
use super::*;
use crate::smtp::policy::{Decision, Phase, SessionView, Verdict};
use crate::smtp::reply::fixed;

type Decider = Box<dyn FnMut(Phase, &SessionView<'_>) -> Verdict>;

struct Harness {
    session: Session,
    input: BytesMut,
    out: BytesMut,
    decide: Decider,
    closed: bool,
    starttls: bool,
    messages: Vec<Message>,
    asked: Vec<Phase>,
}

impl Harness {
    fn with(config: SessionConfig, tls: bool, decide: Decider) -> Self {
        let mut harness = Self {
            session: Session::new(Arc::new(config), 7, "192.0.2.1:4000".parse().unwrap(), tls),
            input: BytesMut::new(),
            out: BytesMut::new(),
            decide,
            closed: false,
            starttls: false,
            messages: Vec::new(),
            asked: Vec::new(),
        };
        let step = harness.session.start();
        harness.run(step);
        harness
    }

    fn new() -> Self {
        Self::with(
            SessionConfig::default(),
            false,
            Box::new(|_, _| Verdict::Continue),
        )
    }

    fn policy(decide: impl FnMut(Phase, &SessionView<'_>) -> Verdict + 'static) -> Self {
        Self::with(SessionConfig::default(), false, Box::new(decide))
    }

    fn config(config: SessionConfig) -> Self {
        Self::with(config, false, Box::new(|_, _| Verdict::Continue))
    }

    fn run(&mut self, step: Step) {
        let step = drive::run(
            &mut self.session,
            &mut self.input,
            &mut self.out,
            step,
            |phase, view| {
                self.asked.push(phase);
                Decision::from((self.decide)(phase, view))
            },
            |message| {
                self.messages.push(message);
                Ok(())
            },
        );
        match step {
            Step::StartTls => self.starttls = true,
            Step::Close => self.closed = true,
            _ => {}
        }
    }

    /// Sends bytes and returns everything the session answered.
    fn send(&mut self, bytes: &str) -> String {
        self.send_bytes(bytes.as_bytes())
    }

    fn send_bytes(&mut self, bytes: &[u8]) -> String {
        self.input.extend_from_slice(bytes);
        let step = self.session.advance(&mut self.input, &mut self.out);
        self.run(step);
        self.take()
    }

    fn take(&mut self) -> String {
        String::from_utf8(self.out.split().to_vec()).unwrap()
    }

    fn greeted() -> Self {
        let mut harness = Self::new();
        harness.take();
        harness.send("EHLO client.example\r\n");
        harness
    }

    fn in_transaction() -> Self {
        let mut harness = Self::greeted();
        harness.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n");
        harness
    }
}

fn codes(replies: &str) -> Vec<String> {
    replies
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn greeting_then_ehlo_advertises_every_extension() {
    let mut h = Harness::new();
    assert_eq!(h.take(), "220 mx.failmail.test ESMTP failmail\r\n");
    let reply = h.send("EHLO client.example\r\n");
    assert_eq!(
        reply,
        "250-mx.failmail.test\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n\
         250-BINARYMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n\
         250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 DSN\r\n"
    );
    assert_eq!(h.asked, vec![Phase::Connect, Phase::Ehlo]);
}

#[test]
fn ehlo_under_tls_and_auth_policy() {
    let mut h = Harness::with(
        SessionConfig::default(),
        true,
        Box::new(|_, _| Verdict::Continue),
    );
    let reply = h.send("EHLO c\r\n");
    assert!(!reply.contains("STARTTLS"));
    assert!(reply.contains("250-AUTH PLAIN LOGIN\r\n"));
    let config = SessionConfig {
        auth: AuthPolicy {
            allow_plaintext: false,
            required: false,
        },
        ..SessionConfig::default()
    };
    let mut h = Harness::config(config);
    let reply = h.send("EHLO c\r\n");
    assert!(reply.contains("STARTTLS") && !reply.contains("AUTH"));
    assert_eq!(
        h.send("AUTH PLAIN AGEAYg==\r\n"),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    let config = SessionConfig {
        tls_available: false,
        ..SessionConfig::default()
    };
    let mut h = Harness::config(config);
    assert!(!h.send("EHLO c\r\n").contains("STARTTLS"));
    assert_eq!(codes(&h.send("STARTTLS\r\n")), ["454 4.7.0"]);
}

#[test]
fn helo_gets_a_plain_reply() {
    let mut h = Harness::new();
    h.take();
    assert_eq!(
        h.send("HELO client.example\r\n"),
        "250 mx.failmail.test\r\n"
    );
    assert_eq!(codes(&h.send("MAIL FROM:<a@x.example>\r\n")), ["250 2.1.0"]);
}

#[test]
fn whole_transaction_and_message_bytes() {
    let mut h = Harness::greeted();
    let reply = h.send(
        "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\nDATA\r\n",
    );
    assert_eq!(
        codes(&reply),
        ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354 End"]
    );
    assert!(reply.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"));
    let reply = h.send("Subject: t\r\n\r\n..dot\r\nx\r\n.\r\n");
    assert_eq!(reply, "250 2.0.0 Ok: queued as 000000070000\r\n");
    assert_eq!(h.messages.len(), 1);
    let message = &h.messages[0];
    assert_eq!(&message.data[..], b"Subject: t\r\n\r\n.dot\r\nx\r\n");
    assert_eq!(message.mail_from, "a@x.example");
    assert_eq!(message.recipients, ["b@y.example", "c@y.example"]);
    assert_eq!(message.queue_id, "000000070000");
    // The next transaction needs a new MAIL and gets a new queue id.
    assert_eq!(codes(&h.send("RCPT TO:<b@y.example>\r\n")), ["503 5.5.1"]);
    h.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n");
    assert_eq!(h.send(".\r\n"), "250 2.0.0 Ok: queued as 000000070001\r\n");
}

#[test]
fn pipelined_commands_get_all_replies_in_one_batch() {
    let mut h = Harness::new();
    h.take();
    let reply = h.send(
        "EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<1@y.example>\r\nRCPT TO:<2@y.example>\r\n\
         RCPT TO:<3@y.example>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        codes(&reply),
        [
            "250 DSN",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "354 End",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert!(h.closed);
    assert_eq!(&h.messages[0].data[..], b"hello\r\n");
}

#[test]
fn sequencing_errors_are_503() {
    let mut h = Harness::new();
    h.take();
    for command in [
        "MAIL FROM:<a@x.example>",
        "RCPT TO:<b@y.example>",
        "DATA",
        "BDAT 0 LAST",
        "AUTH PLAIN",
    ] {
        assert_eq!(
            codes(&h.send(&format!("{command}\r\n"))),
            ["503 5.5.1"],
            "{command}"
        );
    }
    h.send("EHLO c\r\n");
    assert_eq!(codes(&h.send("RCPT TO:<b@y.example>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send("DATA\r\n")), ["503 5.5.1"]);
    h.send("MAIL FROM:<a@x.example>\r\n");
    assert_eq!(
        h.send("MAIL FROM:<a@x.example>\r\n"),
        "503 5.5.1 Error: nested MAIL command\r\n"
    );
    assert_eq!(h.send("DATA\r\n"), "503 5.5.1 Error: need RCPT command\r\n");
    assert_eq!(codes(&h.send("AUTH PLAIN AGEAYg==\r\n")), ["503 5.5.1"]);
}

#[test]
fn data_after_every_recipient_was_refused_is_554() {
    let mut h = Harness::policy(|phase, _| match phase {
        Phase::Rcpt => {
            Verdict::Reply(Reply::parse_parts(550, Some("5.1.1"), &["unknown"]).unwrap())
        }
        _ => Verdict::Continue,
    });
    h.take();
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\n");
    assert_eq!(h.send("RCPT TO:<b@y.example>\r\n"), "550 5.1.1 unknown\r\n");
    assert_eq!(
        h.send("DATA\r\n"),
        "554 5.5.1 Error: no valid recipients\r\n"
    );
}

#[test]
fn rset_clears_the_transaction_only() {
    let mut h = Harness::in_transaction();
    h.send("AUTH PLAIN AGFsaWNlAHB3\r\n");
    assert_eq!(h.send("RSET\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(codes(&h.send("RCPT TO:<b@y.example>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send("MAIL FROM:<a@x.example>\r\n")), ["250 2.1.0"]);
    // EHLO also resets a transaction (RFC 5321 §4.1.4).
    h.send("EHLO again\r\n");
    assert_eq!(codes(&h.send("RCPT TO:<b@y.example>\r\n")), ["503 5.5.1"]);
}

#[test]
fn a_big_refused_body_is_not_kept_for_the_next_transaction() {
    let mut h = Harness::policy(|phase, _| match phase {
        Phase::DataEnd => {
            Verdict::Reply(Reply::parse_parts(550, Some("5.7.1"), &["spam"]).unwrap())
        }
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n");
    h.take();
    h.send(&"x".repeat(4 * REUSED_BODY_CAPACITY));
    assert!(h.session.transaction.body.capacity() > REUSED_BODY_CAPACITY);
    // Refused at the end of data: the transaction is over, and its grown buffer goes with it.
    assert_eq!(codes(&h.send("\r\n.\r\n")), ["550 5.7.1"]);
    assert!(h.session.transaction.body.capacity() <= REUSED_BODY_CAPACITY);
    assert!(h.messages.is_empty());
}

#[test]
fn simple_commands() {
    let mut h = Harness::greeted();
    assert_eq!(h.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(codes(&h.send("VRFY someone\r\n")), ["252 2.0.0"]);
    assert_eq!(codes(&h.send("EXPN list\r\n")), ["502 5.5.1"]);
    assert_eq!(codes(&h.send("HELP\r\n")), ["214 2.0.0"]);
    assert_eq!(codes(&h.send("FROB\r\n")), ["500 5.5.1"]);
    assert_eq!(codes(&h.send("EHLO\r\n")), ["501 5.5.4"]);
    assert_eq!(
        codes(&h.send("MAIL FROM:<a@x.example> FOO=BAR\r\n")),
        ["555 5.5.4"]
    );
    assert_eq!(codes(&h.send("MAIL FROM:<bad@@x>\r\n")), ["501 5.1.7"]);
    assert_eq!(codes(&h.send("AUTH CRAM-MD5\r\n")), ["504 5.5.4"]);
    assert_eq!(codes(&h.send_bytes(b"NOOP \xff\r\n")), ["500 5.5.2"]);
    assert_eq!(h.send("QUIT\r\n"), "221 2.0.0 Bye\r\n");
    assert!(h.closed);
}

#[test]
fn size_limits() {
    let config = SessionConfig {
        max_message_size: 10,
        ..SessionConfig::default()
    };
    let mut h = Harness::config(config);
    h.send("EHLO c\r\n");
    assert_eq!(
        codes(&h.send("MAIL FROM:<a@x.example> SIZE=11\r\n")),
        ["552 5.3.4"]
    );
    h.send("MAIL FROM:<a@x.example> SIZE=10\r\nRCPT TO:<b@y.example>\r\nDATA\r\n");
    let reply = h.send("0123456789abcdef\r\n.\r\nNOOP\r\n");
    assert_eq!(codes(&reply), ["552 5.3.4", "250 2.0.0"]);
    assert!(h.messages.is_empty());
    // BDAT: the over-limit chunk is read, refused, and later chunks get 503 until RSET.
    h.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n");
    assert_eq!(codes(&h.send("BDAT 12\r\n0123456789ab")), ["552 5.3.4"]);
    assert_eq!(codes(&h.send("BDAT 2 LAST\r\nxy")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send("RSET\r\n")), ["250 2.0.0"]);
}

#[test]
fn recipient_limit_is_452() {
    let config = SessionConfig {
        max_recipients: 2,
        ..SessionConfig::default()
    };
    let mut h = Harness::config(config);
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\n");
    let reply =
        h.send("RCPT TO:<1@y.example>\r\nRCPT TO:<2@y.example>\r\nRCPT TO:<3@y.example>\r\n");
    assert_eq!(codes(&reply), ["250 2.1.5", "250 2.1.5", "452 4.5.3"]);
    h.send("DATA\r\nx\r\n.\r\n");
    assert_eq!(h.messages[0].recipients.len(), 2);
}

#[test]
fn bdat_chunks_are_byte_exact() {
    let mut h = Harness::in_transaction();
    assert_eq!(
        h.send("BDAT 5\r\nab\r\n."),
        "250 2.0.0 Ok: 5 octets received\r\n"
    );
    assert_eq!(codes(&h.send("BDAT 4\r\n\r\n.\r")), ["250 2.0.0"]);
    assert_eq!(codes(&h.send("BDAT 3 LAST\r\n\nzz")), ["250 2.0.0"]);
    assert_eq!(&h.messages[0].data[..], b"ab\r\n.\r\n.\r\nzz");
    // Chunk content split over several reads.
    h.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n");
    assert_eq!(h.send("BDAT 6 LAST\r\nabc"), "");
    assert_eq!(codes(&h.send("def")), ["250 2.0.0"]);
    assert_eq!(&h.messages[1].data[..], b"abcdef");
    // BDAT 0 LAST ends a message.
    h.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nBDAT 2\r\nhi");
    assert_eq!(codes(&h.send("BDAT 0 LAST\r\n")), ["250 2.0.0"]);
    assert_eq!(&h.messages[2].data[..], b"hi");
}

#[test]
fn bdat_and_data_do_not_mix() {
    let mut h = Harness::in_transaction();
    h.send("BDAT 2\r\nab");
    assert_eq!(codes(&h.send("DATA\r\n")), ["503 5.5.1"]);
    let mut h = Harness::greeted();
    h.send("MAIL FROM:<a@x.example> BODY=BINARYMIME\r\nRCPT TO:<b@y.example>\r\n");
    assert_eq!(codes(&h.send("DATA\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send("BDAT 1 LAST\r\n\0")), ["250 2.0.0"]);
    // A refused BDAT still consumes its chunk, so the stream stays in sync.
    let mut h = Harness::greeted();
    assert_eq!(codes(&h.send("BDAT 9\r\nNOOP\r\nxyz")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send("NOOP\r\n")), ["250 2.0.0"]);
}

#[test]
fn auth_plain_and_login_in_every_form() {
    let plain = STANDARD.encode("\0alice\0secret");
    let mut h = Harness::greeted();
    assert_eq!(
        h.send(&format!("AUTH PLAIN {plain}\r\n")),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(h.session.auth_user(), Some("alice"));
    assert_eq!(
        codes(&h.send(&format!("AUTH PLAIN {plain}\r\n"))),
        ["503 5.5.1"]
    );
    assert!(
        !h.send("EHLO c\r\n").contains("AUTH"),
        "AUTH is not offered twice"
    );

    let mut h = Harness::greeted();
    assert_eq!(h.send("AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(codes(&h.send(&format!("{plain}\r\n"))), ["235 2.7.0"]);

    let mut h = Harness::greeted();
    assert_eq!(h.send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(
        h.send(&format!("{}\r\n", STANDARD.encode("bob"))),
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(
        codes(&h.send(&format!("{}\r\n", STANDARD.encode("pw")))),
        ["235 2.7.0"]
    );
    assert_eq!(h.session.auth_user(), Some("bob"));

    let mut h = Harness::greeted();
    assert_eq!(
        h.send(&format!("AUTH LOGIN {}\r\n", STANDARD.encode("carol"))),
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(
        codes(&h.send(&format!("{}\r\n", STANDARD.encode("pw")))),
        ["235 2.7.0"]
    );
    assert_eq!(h.session.auth_user(), Some("carol"));
}

#[test]
fn auth_faults() {
    let mut h = Harness::greeted();
    assert_eq!(h.send("AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(h.send("*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
    assert_eq!(
        h.send("AUTH PLAIN not-base64!\r\n"),
        "501 5.5.2 Cannot decode response\r\n"
    );
    assert_eq!(
        codes(&h.send("AUTH LOGIN\r\n%%%\r\n")),
        ["334 VXNlcm5hbWU6", "501 5.5.2"]
    );
    assert_eq!(codes(&h.send("AUTH\r\n")), ["501 5.5.4"]);
    assert_eq!(h.session.auth_user(), None);
    // A policy that refuses sees the user and password, and nothing is remembered.
    let mut h = Harness::policy(|phase, view| match phase {
        Phase::Auth if view.auth_password == Some("wrong") => Verdict::Reply(fixed::AUTH_FAILED),
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\n");
    let bad = STANDARD.encode("\0dave\0wrong");
    assert_eq!(
        codes(&h.send(&format!("AUTH PLAIN {bad}\r\n"))),
        ["535 5.7.8"]
    );
    assert_eq!(h.session.auth_user(), None);
    let good = STANDARD.encode("\0dave\0right");
    assert_eq!(
        codes(&h.send(&format!("AUTH PLAIN {good}\r\n"))),
        ["235 2.7.0"]
    );
}

#[test]
fn auth_required_policy() {
    let config = SessionConfig {
        auth: AuthPolicy {
            allow_plaintext: true,
            required: true,
        },
        ..SessionConfig::default()
    };
    let mut h = Harness::config(config);
    h.send("EHLO c\r\n");
    assert_eq!(codes(&h.send("MAIL FROM:<a@x.example>\r\n")), ["530 5.7.0"]);
    h.send(&format!("AUTH PLAIN {}\r\n", STANDARD.encode("\0u\0p")));
    assert_eq!(codes(&h.send("MAIL FROM:<a@x.example>\r\n")), ["250 2.1.0"]);
}

#[test]
fn starttls_discards_plaintext_injection_and_resets_state() {
    let mut h = Harness::greeted();
    h.send("AUTH PLAIN AGFsaWNlAHB3\r\n");
    let reply = h.send("STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n");
    assert_eq!(reply, "220 2.0.0 Ready to start TLS\r\n");
    assert!(h.starttls);
    assert!(
        h.input.is_empty(),
        "plaintext after STARTTLS must be dropped"
    );
    h.session.tls_established();
    assert!(h.session.is_tls());
    assert_eq!(h.session.auth_user(), None);
    assert_eq!(codes(&h.send("MAIL FROM:<a@x.example>\r\n")), ["503 5.5.1"]);
    assert!(!h.send("EHLO c\r\n").contains("STARTTLS"));
    assert_eq!(codes(&h.send("STARTTLS\r\n")), ["503 5.5.1"]);
}

#[test]
fn overlong_lines_keep_the_session_in_sync() {
    let mut h = Harness::greeted();
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(600));
    assert_eq!(codes(&h.send(&long)), ["500 5.5.2", "250 2.0.0"]);
    // A huge line arriving in pieces is dropped as it comes and answered once.
    let piece = "y".repeat(8000);
    for _ in 0..20 {
        assert_eq!(h.send(&piece), "");
        assert!(h.input.len() <= MAX_AUTH_LINE);
    }
    assert_eq!(codes(&h.send("\r\nNOOP\r\n")), ["500 5.5.2", "250 2.0.0"]);
    // AUTH lines may be longer than 512 octets but not unbounded.
    assert_eq!(h.send("AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(
        codes(&h.send(&format!("{}\r\n", "A".repeat(20000)))),
        ["500 5.5.6"]
    );
    assert_eq!(codes(&h.send("NOOP\r\n")), ["250 2.0.0"]);
}

#[test]
fn smtputf8_is_needed_for_non_ascii_addresses() {
    let mut h = Harness::greeted();
    assert_eq!(
        codes(&h.send("MAIL FROM:<jöran@x.example>\r\n")),
        ["553 5.6.7"]
    );
    assert_eq!(codes(&h.send("MAIL FROM:<a@x.example>\r\n")), ["250 2.1.0"]);
    assert_eq!(
        codes(&h.send("RCPT TO:<用户@例子.广告>\r\n")),
        ["553 5.6.7"]
    );
    h.send("RSET\r\n");
    assert_eq!(
        codes(&h.send("MAIL FROM:<jöran@x.example> SMTPUTF8\r\n")),
        ["250 2.1.0"]
    );
    assert_eq!(
        codes(&h.send("RCPT TO:<用户@例子.广告>\r\n")),
        ["250 2.1.5"]
    );
}

#[test]
fn policy_sees_each_phase_with_its_subject() {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = seen.clone();
    let mut h = Harness::policy(move |phase, view| {
        let subject = match phase {
            Phase::Ehlo => view.helo.map(str::to_owned),
            Phase::Mail => view.mail_from.map(str::to_owned),
            Phase::Rcpt => view.rcpt.map(str::to_owned),
            Phase::DataEnd => view
                .message
                .map(|m| String::from_utf8_lossy(m).into_owned()),
            _ => None,
        };
        log.borrow_mut().push((phase, subject));
        Verdict::Continue
    });
    h.send("EHLO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nbody\r\n.\r\n");
    let seen = seen.borrow();
    assert_eq!(
        *seen,
        vec![
            (Phase::Connect, None),
            (Phase::Ehlo, Some("c.example".to_owned())),
            (Phase::Mail, Some(String::new())),
            (Phase::Rcpt, Some("b@y.example".to_owned())),
            (Phase::Data, None),
            (Phase::DataEnd, Some("body\r\n".to_owned())),
        ]
    );
}

#[test]
fn policy_421_closes_after_the_reply() {
    let mut h = Harness::policy(|phase, _| match phase {
        Phase::Mail => {
            Verdict::Reply(Reply::parse_parts(421, Some("4.7.0"), &["go away"]).unwrap())
        }
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\n");
    assert_eq!(
        h.send("MAIL FROM:<a@x.example>\r\nNOOP\r\n"),
        "421 4.7.0 go away\r\n"
    );
    assert!(h.closed);
}

#[test]
fn connect_refusal_leaves_only_quit() {
    let mut h = Harness::policy(|phase, _| match phase {
        Phase::Connect => {
            Verdict::Reply(Reply::parse_parts(554, Some("5.7.1"), &["no service"]).unwrap())
        }
        _ => Verdict::Continue,
    });
    assert_eq!(h.take(), "554 5.7.1 no service\r\n");
    assert_eq!(codes(&h.send("EHLO c\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send("QUIT\r\n")), ["221 2.0.0"]);
    assert!(h.closed);
}

#[test]
fn disconnect_hang_and_abort_verdicts() {
    let mut h = Harness::policy(|phase, _| match phase {
        Phase::Rcpt => Verdict::Disconnect,
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\n");
    assert_eq!(
        h.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"),
        "250 2.1.0 Ok\r\n"
    );
    assert!(h.closed);

    let mut h = Harness::policy(|phase, _| match phase {
        Phase::Mail => Verdict::Hang,
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\n");
    assert_eq!(h.send("MAIL FROM:<a@x.example>\r\nNOOP\r\n"), "");
    assert!(h.session.is_hung() && !h.closed);
    assert_eq!(h.send("NOOP\r\n"), "");

    let mut h = Harness::policy(|phase, _| match phase {
        Phase::Data => Verdict::Abort(Reply::parse_parts(554, Some("5.7.1"), &["spam"]).unwrap()),
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n");
    assert_eq!(codes(&h.send("DATA\r\n")), ["354 End"]);
    assert_eq!(h.send("Subject: x\r\n"), "554 5.7.1 spam\r\n");
    assert!(h.closed);
    assert!(h.messages.is_empty());
}

#[test]
fn refused_message_is_not_kept() {
    let mut h = Harness::policy(|phase, _| match phase {
        Phase::DataEnd => {
            Verdict::Reply(Reply::parse_parts(554, Some("5.7.1"), &["spam"]).unwrap())
        }
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n");
    assert_eq!(h.send("x\r\n.\r\n"), "554 5.7.1 spam\r\n");
    assert!(h.messages.is_empty());
    assert_eq!(codes(&h.send("RCPT TO:<b@y.example>\r\n")), ["503 5.5.1"]);
}

#[test]
fn shutdown_answers_421_to_new_commands() {
    let mut h = Harness::greeted();
    h.session.begin_shutdown();
    assert_eq!(codes(&h.send("NOOP\r\n")), ["421 4.3.2"]);
    assert!(h.closed);
}

#[test]
fn input_split_anywhere_gives_the_same_replies() {
    let script = "EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n\
                  ..a\r\n.b\r\n\r\n.\r\nBDAT 1\r\nx";
    let mut whole = Harness::new();
    let expected = whole.take() + &whole.send(script);
    for split in 0..script.len() {
        let mut h = Harness::new();
        let mut got = h.take();
        got += &h.send(&script[..split]);
        got += &h.send(&script[split..]);
        assert_eq!(got, expected, "split at {split}");
        assert_eq!(&h.messages[0].data[..], b".a\r\nb\r\n\r\n");
    }
}

#[test]
fn tracing_records_commands_and_replies_in_order_without_secrets() {
    let mut h = Harness::new();
    h.session.set_tracing(true);
    h.take();
    let plain = STANDARD.encode("\0alice\0secret");
    h.send(&format!("EHLO c\r\nAUTH PLAIN {plain}\r\nAUTH LOGIN\r\n"));
    h.send(&format!("{}\r\n", STANDARD.encode("x")));
    // Replies are always reported (for the metrics); only those traced carry a copy.
    let trace: Vec<Trace> = h.session.drain_trace().collect();
    let text: Vec<String> = trace
        .iter()
        .cloned()
        .filter_map(|t| match t {
            Trace::Command(c) => Some(format!("C {c}")),
            Trace::Silent { .. } | Trace::Envelope(_) => None,
            Trace::Reply(r) => {
                let wire = r.reply?;
                Some(format!(
                    "R {}",
                    String::from_utf8_lossy(wire.wire()).lines().last().unwrap()
                ))
            }
        })
        .collect();
    assert_eq!(
        text,
        [
            "C EHLO c",
            "R 250 DSN",
            "C AUTH PLAIN ****",
            "R 235 2.7.0 Authentication successful",
            "C AUTH LOGIN",
            "R 503 5.5.1 Error: already authenticated",
            "C eA==",
            "R 500 5.5.1 Error: command not recognized",
        ]
    );
    let all = format!("{trace:?}");
    assert!(!all.contains(&plain) && !all.contains("secret"));
    // Off: nothing is kept (no command, no copy of a reply; only its code, for the metrics).
    h.session.set_tracing(false);
    h.send("NOOP\r\n");
    assert!(h
        .session
        .drain_trace()
        .all(|t| matches!(t, Trace::Reply(ReplyTrace { reply: None, .. }))));
}

#[test]
fn tracing_hides_auth_continuation_lines() {
    let mut h = Harness::greeted();
    h.session.set_tracing(true);
    h.send("AUTH LOGIN\r\n");
    h.send(&format!("{}\r\n", STANDARD.encode("bob")));
    h.send(&format!("{}\r\n", STANDARD.encode("hunter2")));
    let trace = format!("{:?}", h.session.drain_trace().collect::<Vec<_>>());
    assert!(!trace.contains(&STANDARD.encode("hunter2")), "{trace}");
    assert!(
        trace.contains("****") && trace.contains("235 2.7.0"),
        "{trace}"
    );
}

#[test]
fn too_many_syntax_errors_get_421_4_7_0_and_close() {
    let config = SessionConfig {
        max_errors: 4,
        ..SessionConfig::default()
    };
    let mut h = Harness::config(config.clone());
    h.send("EHLO c\r\n");
    // Bad sequence and policy refusals are not syntax errors.
    for _ in 0..10 {
        assert_eq!(codes(&h.send("RCPT TO:<b@y.example>\r\n")), ["503 5.5.1"]);
    }
    // Unknown verb, bad arguments, an overlong line, an undecodable AUTH response.
    assert_eq!(codes(&h.send("XYZZY\r\n")), ["500 5.5.1"]);
    assert_eq!(codes(&h.send("MAIL TO:<a@x.example>\r\n")), ["501 5.5.4"]);
    assert_eq!(
        codes(&h.send(&format!("NOOP {}\r\n", "x".repeat(600)))),
        ["500 5.5.2"]
    );
    assert!(!h.closed);
    // The fourth: its own reply, then the 421, then the close; what follows is not read.
    h.send("AUTH PLAIN\r\n");
    assert_eq!(
        h.send("%%%\r\nNOOP\r\n"),
        "501 5.5.2 Cannot decode response\r\n\
         421 4.7.0 mx.failmail.test Error: too many errors\r\n"
    );
    assert!(h.closed);

    // An accepted message starts the count over.
    let mut h = Harness::config(config);
    h.send("EHLO c\r\nX\r\nX\r\nX\r\n");
    h.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nhi\r\n.\r\n");
    assert_eq!(h.messages.len(), 1);
    assert_eq!(codes(&h.send("X\r\nX\r\nX\r\n")), ["500 5.5.1"; 3]);
    assert!(!h.closed);
    assert_eq!(codes(&h.send("X\r\n")), ["500 5.5.1", "421 4.7.0"]);
    assert!(h.closed);

    // 0: no limit.
    let mut h = Harness::config(SessionConfig {
        max_errors: 0,
        ..SessionConfig::default()
    });
    h.take();
    assert_eq!(h.send(&"X\r\n".repeat(1000)).lines().count(), 1000);
    assert!(!h.closed);
}

/// A session in a transaction whose messages may be at most 100 octets.
fn in_transaction_with_a_100_octet_limit() -> Harness {
    let mut h = Harness::config(SessionConfig {
        max_message_size: 100,
        ..SessionConfig::default()
    });
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n");
    h
}

#[test]
fn bdat_over_the_size_limit_is_refused_before_its_chunk() {
    let mut h = in_transaction_with_a_100_octet_limit();
    // The largest size there is: answered at once, nothing kept, the chunk is skipped.
    assert_eq!(
        codes(&h.send(&format!("BDAT {} LAST\r\n", u64::MAX))),
        ["552 5.3.4"]
    );
    assert_eq!(h.session.waiting(), Waiting::Data);
    assert_eq!(h.send(&"z".repeat(64 * 1024)), "");
    assert!(h.input.is_empty());
    assert!(h.session.transaction.body.is_empty());
    assert!(h.messages.is_empty());
    assert!(!h.asked.contains(&Phase::Data), "no policy asked");

    // A chunk that would pass the limit with those before it: 552 at once, then read and
    // dropped, so the stream stays in sync; the failed transaction refuses more BDAT.
    let mut h = in_transaction_with_a_100_octet_limit();
    assert_eq!(
        codes(&h.send(&format!("BDAT 60\r\n{}", "a".repeat(60)))),
        ["250 2.0.0"]
    );
    assert_eq!(codes(&h.send("BDAT 41\r\n")), ["552 5.3.4"]);
    assert_eq!(h.send(&"b".repeat(40)), "");
    assert_eq!(codes(&h.send("bNOOP\r\n")), ["250 2.0.0"]);
    assert_eq!(codes(&h.send("BDAT 1 LAST\r\nc")), ["503 5.5.1"]);
    // Exactly at the limit is fine.
    h.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n");
    assert_eq!(
        codes(&h.send(&format!("BDAT 100 LAST\r\n{}", "d".repeat(100)))),
        ["250 2.0.0"]
    );
    assert_eq!(h.messages.len(), 1);

    // A first chunk refused for its size still makes the transaction a BDAT one: DATA after
    // it is a bad sequence (RFC 3030 §3), not a fresh start.
    let mut h = in_transaction_with_a_100_octet_limit();
    assert_eq!(
        codes(&h.send(&format!("BDAT 101\r\n{}", "e".repeat(101)))),
        ["552 5.3.4"]
    );
    assert_eq!(codes(&h.send("DATA\r\n")), ["503 5.5.1"]);
    assert!(!h.asked.contains(&Phase::Data), "no policy asked");
    assert!(h.messages.is_empty());
}

#[test]
fn a_mebibyte_line_is_never_buffered() {
    let mut h = Harness::greeted();
    let piece = vec![b'x'; 16 * 1024];
    for _ in 0..64 {
        assert_eq!(h.send_bytes(&piece), "");
        assert!(h.input.len() < MAX_AUTH_LINE, "{}", h.input.len());
    }
    assert_eq!(h.session.lines_received(), 1, "only EHLO so far");
    assert_eq!(codes(&h.send("\r\nNOOP\r\n")), ["500 5.5.2", "250 2.0.0"]);
    assert_eq!(h.session.lines_received(), 3);
}

#[test]
fn ten_thousand_pipelined_commands_in_one_buffer() {
    // Nothing but NOOPs: without the junk-command limit, which would close the session.
    let mut h = Harness::config(SessionConfig {
        max_junk_commands: 0,
        ..SessionConfig::default()
    });
    h.take();
    h.send("EHLO client.example\r\n");
    let replies = h.send(&"NOOP\r\n".repeat(10_000));
    assert_eq!(replies, "250 2.0.0 Ok\r\n".repeat(10_000));
    assert!(h.input.is_empty());
    // Lines are counted as they complete, not as bytes come.
    let before = h.session.lines_received();
    for byte in "NOOP".bytes() {
        h.send_bytes(&[byte]);
    }
    assert_eq!(h.session.lines_received(), before);
    h.send("\r\n");
    assert_eq!(h.session.lines_received(), before + 1);
}

#[test]
fn decimal_numbers_are_written_like_display() {
    for value in [0, 7, 10, 100, 10_485_760, u64::MAX] {
        let mut out = BytesMut::new();
        push_decimal(&mut out, value);
        assert_eq!(&out[..], value.to_string().as_bytes());
    }
}

#[test]
fn lose_reply_stores_the_message_then_closes_without_its_250() {
    let mut h = Harness::policy(|phase, _| match phase {
        Phase::DataEnd => Verdict::LoseReply,
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n");
    // Nothing is written for the message, QUIT pipelined after it included.
    assert_eq!(h.send("Subject: kept\r\n\r\nhi\r\n.\r\nQUIT\r\n"), "");
    assert!(h.closed);
    assert_eq!(h.messages.len(), 1, "stored before the connection closed");
    assert_eq!(&h.messages[0].data[..], b"Subject: kept\r\n\r\nhi\r\n");
    let silent: Vec<SilentAction> = h
        .session
        .drain_trace()
        .filter_map(|t| match t {
            Trace::Silent { action, decided } => {
                assert_eq!(decided.phase, Phase::DataEnd);
                Some(action)
            }
            _ => None,
        })
        .collect();
    assert_eq!(silent, [SilentAction::LoseReply]);

    // Anywhere else it closes as a disconnect does.
    let mut h = Harness::policy(|phase, _| match phase {
        Phase::Rcpt => Verdict::LoseReply,
        _ => Verdict::Continue,
    });
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\n");
    assert_eq!(h.send("RCPT TO:<b@y.example>\r\n"), "");
    assert!(h.closed && h.messages.is_empty());
}

/// The trace as short strings: `E …` for envelope steps, `R code` for replies, `S action`.
fn envelope_steps(h: &mut Harness) -> Vec<String> {
    h.session
        .drain_trace()
        .filter_map(|t| match t {
            Trace::Envelope(step) => Some(format!("E {step:?}")),
            Trace::Reply(r) => Some(format!("R {}", r.code)),
            Trace::Silent { action, .. } => Some(format!("S {}", action.as_str())),
            Trace::Command(_) => None,
        })
        .collect()
}

#[test]
fn envelope_steps_come_just_before_their_replies() {
    let mut h = Harness::policy(|phase, view| match (phase, view.rcpt) {
        (Phase::Rcpt, Some(r)) if r.starts_with("no@") => {
            Verdict::Reply(Reply::parse_parts(550, Some("5.1.1"), &["unknown"]).unwrap())
        }
        _ => Verdict::Continue,
    });
    h.take();
    // Off by default: nothing is copied.
    h.send("EHLO c\r\nMAIL FROM:<a@x.example>\r\nRSET\r\n");
    assert!(envelope_steps(&mut h).iter().all(|s| s.starts_with("R ")));
    h.session.set_envelope_tracing(true);
    h.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<no@y.example>\r\nRCPT TO:<b@y.example>\r\n");
    h.send("NOOP\r\nDATA\r\nMessage-Id: <m1@x.example>\r\n\r\nhi\r\n.\r\n");
    h.send("BDAT 3 LAST\r\nabc");
    h.send("RSET\r\nEHLO again\r\n");
    assert_eq!(
        envelope_steps(&mut h),
        [
            r#"E Mail("a@x.example")"#,
            "R 250",
            r#"E Rcpt("no@y.example")"#,
            "R 550",
            r#"E Rcpt("b@y.example")"#,
            "R 250",
            "R 250",
            "E Data",
            "R 354",
            r#"E DataEnd { message_id: Some("<m1@x.example>") }"#,
            "R 250",
            // BDAT without MAIL: refused, no message.
            "E Data",
            "R 503",
            "E Reset",
            "R 250",
            "E Reset",
            "R 250",
        ]
    );
}
