//! Arbitrary bytes from a client, fed to a `Session` in arbitrary pieces.
//!
//! The session is the state machine every connection runs, so whatever a client sends must never
//! make it panic or keep more than a bounded amount of input. And since TCP may deliver a stream
//! in any pieces, the replies, the policy questions and the accepted messages must not depend on
//! where the stream was split. Policy verdicts are drawn from the input too, so that refusals,
//! aborts, hangs, disconnects and lost replies at every phase are explored, not only the happy path.
//!
//! Input layout: a policy byte (0 = accept everything), a settings byte (bits below), a repeat
//! byte (the stream is sent 1 + n % 4 times, to reach the long-line limits past `-max_len`), a
//! split header (see `failmail_fuzz::split_header`), then the client's bytes.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use failmail::smtp::command::{parse_command, Command};
use failmail::smtp::policy::{AcceptAll, Decision, Phase, SessionPolicy, Verdict};
use failmail::smtp::reply::{status, Reply};
use failmail::smtp::session::{
    drive, AuthPolicy, Session, SessionConfig, Step, Trace, Waiting, MAX_AUTH_LINE,
};
use failmail_fuzz::{split_header, splits};
use libfuzzer_sys::fuzz_target;

/// Session settings and policy chosen by the input.
struct Setup {
    policy: u8,
    tls: bool,
    shutdown: bool,
    tracing: bool,
    config: Arc<SessionConfig>,
}

impl Setup {
    fn new(policy: u8, flags: u8) -> Self {
        let bit = |n: u8| flags & (1 << n) != 0;
        let config = SessionConfig {
            tls_available: !bit(1),
            auth: AuthPolicy {
                allow_plaintext: !bit(2),
                required: bit(3),
            },
            max_message_size: if bit(4) { 64 } else { 10 * 1024 * 1024 },
            max_recipients: if bit(5) { 2 } else { 100 },
            ..SessionConfig::default()
        };
        Self {
            policy,
            tls: bit(0),
            shutdown: bit(6),
            tracing: bit(7),
            config: Arc::new(config),
        }
    }

    /// The verdict for the `n`th decision: deterministic, so every split sees the same ones.
    fn verdict(
        &self,
        n: u64,
        phase: Phase,
        view: &failmail::smtp::policy::SessionView<'_>,
    ) -> Verdict {
        if self.policy == 0 {
            return match AcceptAll.decide(phase, view).ready() {
                Ok(decision) => decision.verdict,
                Err(_) => unreachable!("AcceptAll always answers at once"),
            };
        }
        let mixed = (u64::from(self.policy) << 32 | n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        match mixed % 16 {
            0..=7 => Verdict::Continue,
            8 => Verdict::LoseReply,
            9 => Verdict::Reply(reply(451, "Try again later")),
            10 => Verdict::Reply(reply(550, "Refused")),
            11 => Verdict::Reply(reply(421, "Closing")),
            12 => Verdict::Reply(reply(250, "Fine by me")),
            13 => Verdict::Abort(reply(554, "Aborted")),
            14 => Verdict::Disconnect,
            _ => Verdict::Hang,
        }
    }
}

fn reply(code: u16, text: &str) -> Reply {
    let class = (code / 100) as u8;
    Reply::new(code, Some(status(class, 0, 0)), &[text]).expect("a valid reply")
}

/// What a client saw up to the first STARTTLS or close: must not depend on the split.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Everything written, as text so that a failing comparison is readable.
    replies: String,
    phases: Vec<Phase>,
    messages: Vec<(String, Vec<String>, Vec<u8>)>,
    commands: Vec<String>,
    /// How the compared part ended: still open, STARTTLS, or closed.
    ended: Option<Step>,
}

struct Driver<'a> {
    setup: &'a Setup,
    session: Session,
    input: BytesMut,
    out: BytesMut,
    decisions: u64,
    seen: Seen,
    closed: bool,
}

impl<'a> Driver<'a> {
    fn new(setup: &'a Setup) -> Self {
        let peer = "192.0.2.1:4000".parse().expect("an address");
        let mut session = Session::new(setup.config.clone(), 1, peer, setup.tls);
        session.set_tracing(setup.tracing);
        session.set_envelope_tracing(setup.tracing);
        let mut driver = Self {
            setup,
            session,
            input: BytesMut::new(),
            out: BytesMut::new(),
            decisions: 0,
            seen: Seen::default(),
            closed: false,
        };
        let step = driver.session.start();
        driver.drive(step);
        if setup.shutdown {
            driver.session.begin_shutdown();
        }
        driver
    }

    fn feed(&mut self, piece: &[u8]) {
        if self.closed {
            return;
        }
        self.input.extend_from_slice(piece);
        let step = self.session.advance(&mut self.input, &mut self.out);
        self.drive(step);
    }

    /// Runs steps as the connection task does, until the session needs input or closes.
    fn drive(&mut self, step: Step) {
        let (setup, decisions, seen) = (self.setup, &mut self.decisions, &mut self.seen);
        let step = drive::run(
            &mut self.session,
            &mut self.input,
            &mut self.out,
            step,
            |phase, view| {
                if let Some(message) = view.message {
                    assert!(message.len() as u64 <= setup.config.max_message_size);
                }
                let verdict = setup.verdict(*decisions, phase, view);
                *decisions += 1;
                if seen.ended.is_none() {
                    seen.phases.push(phase);
                }
                Decision::from(verdict)
            },
            |message| {
                assert!(message.data.len() as u64 <= setup.config.max_message_size);
                if seen.ended.is_none() {
                    seen.messages.push((
                        message.mail_from,
                        message.recipients,
                        message.data.to_vec(),
                    ));
                }
                Ok(())
            },
        );
        match step {
            Step::NeedInput => {
                self.record_output();
                // Everything that could be processed was; what is kept is bounded.
                assert!(
                    self.input.len() < MAX_AUTH_LINE,
                    "{} bytes kept",
                    self.input.len()
                );
                if self.session.waiting() == Waiting::Data {
                    assert!(self.input.is_empty(), "body bytes left unread");
                } else {
                    assert!(!self.input.contains(&b'\n'), "a complete line left unread");
                }
            }
            Step::StartTls => {
                assert!(self.input.is_empty(), "plaintext kept across STARTTLS");
                self.record_output();
                self.seen.ended.get_or_insert(Step::StartTls);
                // Go on as after a handshake, to explore the session under TLS as well.
                self.session.tls_established();
            }
            Step::Close => {
                self.record_output();
                self.seen.ended.get_or_insert(Step::Close);
                self.closed = true;
            }
            other => unreachable!("run returns only steps that need I/O, not {other:?}"),
        }
    }

    fn comparing(&self) -> bool {
        self.seen.ended.is_none()
    }

    fn record_output(&mut self) {
        let written = self.out.split();
        let trace: Vec<Trace> = self.session.drain_trace().collect();
        if !self.setup.tracing {
            // Off: replies are reported for the metrics, but no command and no copy.
            assert!(
                trace
                    .iter()
                    .all(|t| matches!(t, Trace::Reply(r) if r.reply.is_none())
                        || matches!(t, Trace::Silent { .. })),
                "traced with tracing off"
            );
        }
        if !self.comparing() {
            return;
        }
        let mut traced = Vec::new();
        for entry in trace {
            match entry {
                Trace::Command(line) => {
                    // The journal must never show an AUTH initial response (a password).
                    if let Ok(Command::Auth {
                        initial: Some(initial),
                        ..
                    }) = parse_command(line.as_bytes())
                    {
                        assert_eq!(initial, "****", "credentials in the trace: {line:?}");
                    }
                    self.seen.commands.push(line);
                }
                Trace::Silent { .. } | Trace::Envelope(_) => {}
                Trace::Reply(reply) => {
                    if let Some(copy) = reply.reply {
                        traced.extend_from_slice(copy.wire());
                    }
                }
            }
        }
        if self.setup.tracing {
            assert_eq!(traced, written[..], "the trace differs from what was sent");
        }
        let text = std::str::from_utf8(&written).expect("replies are text");
        self.seen.replies.push_str(text);
    }
}

fuzz_target!(|data: &[u8]| {
    let [policy, flags, repeat, rest @ ..] = data else {
        return;
    };
    let (lengths, payload) = split_header(rest);
    let stream = payload.repeat(1 + usize::from(*repeat % 4));
    let setup = Setup::new(*policy, *flags);
    let mut first: Option<Seen> = None;
    for pieces in splits(&stream, &lengths) {
        let mut driver = Driver::new(&setup);
        for piece in pieces {
            driver.feed(piece);
        }
        match &first {
            None => first = Some(driver.seen),
            Some(expected) => assert_eq!(
                &driver.seen, expected,
                "the result depends on how the stream was split"
            ),
        }
    }
});
