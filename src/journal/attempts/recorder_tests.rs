//! A real session, driven without sockets, its trace fed to a recorder: what each kind of
//! transaction becomes in the history.

use std::net::SocketAddr;

use bytes::BytesMut;

use super::*;
use crate::journal::attempts::{AttemptFilter, AttemptsConfig};
use crate::smtp::policy::{Decision, SessionView, Verdict};
use crate::smtp::reply::Reply;
use crate::smtp::session::{drive, Session, SessionConfig, Step, Trace};

type Decider = Box<dyn FnMut(Phase, &SessionView<'_>) -> Verdict>;

struct Client {
    session: Session,
    recorder: Recorder,
    book: Arc<AttemptBook>,
    input: BytesMut,
    out: BytesMut,
    decide: Decider,
    now_ms: u64,
}

impl Client {
    fn with(config: SessionConfig, decide: Decider) -> Self {
        let book = Arc::new(AttemptBook::new(AttemptsConfig::default()));
        let peer: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let mut session = Session::new(Arc::new(config), 42, peer, false);
        session.set_envelope_tracing(true);
        let recorder = Recorder::new(book.clone(), 42, peer.ip(), false);
        let mut client = Self {
            session,
            recorder,
            book,
            input: BytesMut::new(),
            out: BytesMut::new(),
            decide,
            now_ms: 1_000,
        };
        let step = client.session.start();
        client.run(step);
        client
    }

    fn new(decide: impl FnMut(Phase, &SessionView<'_>) -> Verdict + 'static) -> Self {
        Self::with(SessionConfig::default(), Box::new(decide))
    }

    fn run(&mut self, step: Step) -> Step {
        let decide = &mut self.decide;
        let step = drive::run(
            &mut self.session,
            &mut self.input,
            &mut self.out,
            step,
            |phase, view| Decision::from(decide(phase, view)),
            |_| Ok(()),
        );
        self.now_ms += 10;
        self.recorder
            .observe(self.session.is_tls(), self.session.auth_user());
        for item in self.session.drain_trace() {
            match item {
                Trace::Envelope(step) => self.recorder.envelope(step, self.now_ms),
                Trace::Reply(reply) => self.recorder.reply(&reply, self.now_ms),
                Trace::Silent { action, decided } => {
                    self.recorder.silent(action, &decided, self.now_ms)
                }
                Trace::Command(_) => {}
            }
        }
        if step == Step::Close {
            self.recorder.finish(self.now_ms);
        }
        step
    }

    fn send(&mut self, text: &str) -> Step {
        self.input.extend_from_slice(text.as_bytes());
        let step = self.session.advance(&mut self.input, &mut self.out);
        self.run(step)
    }

    fn attempts(&self) -> Vec<Arc<Attempt>> {
        self.book
            .attempts(&AttemptFilter {
                limit: usize::MAX,
                ..AttemptFilter::default()
            })
            .into_iter()
            .map(|listed| listed.attempt)
            .collect()
    }

    /// Each recipient's (address, kind, phase, code) of attempt `n`.
    fn endings(&self, n: usize) -> Vec<(String, EndKind, Phase, Option<u16>)> {
        let attempt = &self.attempts()[n];
        match &attempt.mail_ending {
            Some(e) => vec![(String::new(), e.kind, e.phase, e.code)],
            None => attempt
                .recipients
                .iter()
                .map(|(r, e)| (r.to_string(), e.kind, e.phase, e.code))
                .collect(),
        }
    }
}

fn refuse(code: u16, status: &str) -> Verdict {
    Verdict::Reply(Reply::parse_parts(code, Some(status), &["no"]).unwrap())
}

const MESSAGE: &str = "DATA\r\nMessage-ID: <m1@x.example>\r\nSubject: t\r\n\r\nhi\r\n.\r\n";

fn row(
    rcpt: &str,
    kind: EndKind,
    phase: Phase,
    code: Option<u16>,
) -> (String, EndKind, Phase, Option<u16>) {
    (rcpt.to_owned(), kind, phase, code)
}

#[test]
fn a_transaction_is_one_attempt_with_an_ending_per_recipient() {
    let mut c = Client::new(|phase, view| match (phase, view.rcpt) {
        (Phase::Rcpt, Some("no@y")) => refuse(550, "5.1.1"),
        _ => Verdict::Continue,
    });
    c.recorder.observe(false, None);
    c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<no@y>\r\nRCPT TO:<ok@y>\r\nNOOP\r\n");
    assert!(c.attempts().is_empty(), "recorded when it ends");
    c.send(MESSAGE);
    let attempt = c.attempts()[0].clone();
    assert_eq!(
        (
            attempt.session,
            &*attempt.sender,
            attempt.message_id.as_deref()
        ),
        (42, "a@x", Some("<m1@x.example>"))
    );
    assert_eq!(attempt.client_ip.to_string(), "192.0.2.7");
    assert_eq!(
        c.endings(0),
        [
            row("no@y", EndKind::Permanent, Phase::Rcpt, Some(550)),
            row("ok@y", EndKind::Accepted, Phase::DataEnd, Some(250)),
        ]
    );
    assert!(attempt.started_ms < attempt.ended_ms());
    // A refusal at MAIL is an attempt of its own; MAIL then RSET attempted nothing.
    let mut c = Client::new(|phase, _| match phase {
        Phase::Mail => refuse(451, "4.7.0"),
        _ => Verdict::Continue,
    });
    c.send("EHLO c\r\nMAIL FROM:<a@x>\r\n");
    assert_eq!(
        c.endings(0),
        [row("", EndKind::Temporary, Phase::Mail, Some(451))]
    );
    let mut c = Client::new(|_, _| Verdict::Continue);
    c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRSET\r\nMAIL FROM:<a@x>\r\nQUIT\r\n");
    assert!(c.attempts().is_empty());
}

#[test]
fn refused_recipients_end_at_reset_and_the_limit_gives_452_4_5_3() {
    let mut c = Client::with(
        SessionConfig {
            max_recipients: 1,
            ..SessionConfig::default()
        },
        Box::new(|_, _| Verdict::Continue),
    );
    c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<one@y>\r\nRCPT TO:<two@y>\r\n");
    c.send("DATA\r\nSubject: no id\r\n\r\nhi\r\n.\r\n");
    let attempt = c.attempts()[0].clone();
    assert_eq!(attempt.message_id, None);
    assert_eq!(
        c.endings(0),
        [
            row("one@y", EndKind::Accepted, Phase::DataEnd, Some(250)),
            row("two@y", EndKind::Temporary, Phase::Rcpt, Some(452)),
        ]
    );
    assert!(attempt.recipients[1].1.too_many_recipients());
    // Everyone refused: the attempt ends when the client resets, or when DATA is refused.
    let mut c = Client::new(|phase, _| match phase {
        Phase::Rcpt => refuse(450, "4.2.1"),
        _ => Verdict::Continue,
    });
    c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<a@y>\r\n");
    assert!(c.attempts().is_empty());
    c.send("RSET\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    assert_eq!(
        c.endings(0),
        [row("a@y", EndKind::Temporary, Phase::Rcpt, Some(450))]
    );
    assert_eq!(
        c.endings(1),
        [row("b@y", EndKind::Temporary, Phase::Rcpt, Some(450))]
    );
}

#[test]
fn a_421_closes_the_transaction_for_every_recipient() {
    let mut c = Client::new(|phase, view| match (phase, view.rcpt) {
        (Phase::Rcpt, Some("bye@y")) => refuse(421, "4.3.2"),
        _ => Verdict::Continue,
    });
    let step = c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<ok@y>\r\nRCPT TO:<bye@y>\r\n");
    assert_eq!(step, Step::Close);
    assert_eq!(
        c.endings(0),
        [
            row("ok@y", EndKind::Temporary, Phase::Rcpt, Some(421)),
            row("bye@y", EndKind::Temporary, Phase::Rcpt, Some(421)),
        ]
    );
    assert!(c.attempts()[0].recipients[0].1.closed_with_421());
    assert_eq!(c.attempts().len(), 1, "finishing the session adds nothing");
}

#[test]
fn silent_ends_aborts_and_lost_replies() {
    let cases: Vec<(Verdict, Phase, EndKind, Option<u16>)> = vec![
        (Verdict::LoseReply, Phase::DataEnd, EndKind::ReplyLost, None),
        (Verdict::Disconnect, Phase::DataEnd, EndKind::NoReply, None),
        (Verdict::Hang, Phase::Data, EndKind::NoReply, None),
        (
            Verdict::Abort(Reply::parse_parts(554, Some("5.7.1"), &["spam"]).unwrap()),
            Phase::Data,
            EndKind::Permanent,
            Some(554),
        ),
        (
            refuse(451, "4.3.0"),
            Phase::DataEnd,
            EndKind::Temporary,
            Some(451),
        ),
    ];
    for (verdict, at, kind, code) in cases {
        let mut c = Client::new(move |phase, _| {
            if phase == at {
                verdict.clone()
            } else {
                Verdict::Continue
            }
        });
        c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n");
        c.send(MESSAGE);
        if c.session.is_hung() {
            c.recorder.finish(c.now_ms);
        }
        assert_eq!(c.endings(0), [row("b@y", kind, at, code)], "{kind:?}");
    }
}

#[test]
fn bdat_tls_auth_and_an_abandoned_transaction() {
    let mut c = Client::new(|_, _| Verdict::Continue);
    c.recorder.observe(true, Some("alice"));
    c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 4\r\nMess");
    c.send("BDAT 23 LAST\r\nage-Id: <b@x>\r\n\r\nbody\r\n");
    let attempt = c.attempts()[0].clone();
    assert_eq!(attempt.message_id.as_deref(), Some("<b@x>"));
    assert_eq!(
        c.endings(0),
        [row("b@y", EndKind::Accepted, Phase::DataEnd, Some(250))]
    );
    // The recorder reads the session's own state when it runs.
    assert!(!attempt.tls && attempt.auth_user.is_none());
    // The connection ends in the middle: abandoned.
    c.send("MAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\n");
    c.recorder.finish(c.now_ms);
    assert_eq!(
        c.endings(1),
        [row("c@y", EndKind::Abandoned, Phase::Rcpt, None)]
    );
}
