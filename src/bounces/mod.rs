//! Bounces that arrive later: delivery status notifications (RFC 3464) and the other later
//! answers (complaints, auto-replies) for recipients accepted with a later fate, scheduled on
//! the controllable clock.
//!
//! The policy decides a recipient's fate at RCPT ([`Later`](crate::smtp::policy::Later)); the
//! session keeps it with the recipient; the server reserves room here before the message's 250
//! ([`Bounces::reserve`]) and commits once the message is stored. [`Bounces::run`] sends what
//! comes due, earliest first, whenever the clock passes a due time — including when
//! `POST /api/clock/advance` jumps days ahead ([`WakingClock`]). A sent notification is stored as
//! a message to the envelope sender (marked with its bounce id), listed by the API, and, with
//! `--bounce-to`, delivered by SMTP ([`forward`]).
//!
//! Files: [`notice`] (what a notification is about), [`plan`] (which recipients get which
//! notification when), [`schedule`] (the bounded pending queue), [`dsn`] and `report` (the
//! messages themselves), [`style`] (each mail system's wording), [`forward`] (`--bounce-to`),
//! [`view`] (what the API shows).

pub mod dsn;
pub mod forward;
pub mod notice;
pub mod plan;
mod report;
pub mod schedule;
pub mod style;
pub mod view;
mod waking;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

pub use forward::ForwardConfig;
pub use notice::{Kind, Notice};
pub use schedule::Full;
pub use waking::WakingClock;

use crate::clock::SharedClock;
use crate::journal::{EventKind, Journal};
use crate::smtp::session::Message;
use forward::{Attempt, Forwarder, Job};
use schedule::Schedule;

/// How many notifications may wait, and how many sent ones are kept for the API.
#[derive(Debug, Clone)]
pub struct BounceConfig {
    /// Most pending notifications (`--max-pending-bounces`); past it, a message that would add
    /// more is refused with 451 4.3.0.
    pub max_pending: usize,
    /// Most bytes the pending notifications may hold (the originals they return included).
    pub max_bytes: usize,
    /// Sent notifications kept for `/api/bounces` (the oldest are forgotten; they stay in
    /// `/api/messages` while its ring keeps them).
    pub sent_capacity: usize,
    /// `--bounce-to`: also deliver each notification there by SMTP.
    pub forward: Option<ForwardConfig>,
}

impl Default for BounceConfig {
    fn default() -> Self {
        Self {
            max_pending: 100_000,
            max_bytes: 512 * 1024 * 1024,
            sent_capacity: 10_000,
            forward: None,
        }
    }
}

/// At most this many notifications are made per turn of [`Bounces::run`], so that a clock jump
/// over a hundred thousand of them keeps memory to one batch of messages at a time.
const BATCH: usize = 1_000;
/// The longest the runner sleeps without looking at the clock (a wall clock moves by itself).
const MAX_NAP: Duration = Duration::from_secs(30);
/// Notifications waiting to be delivered to `--bounce-to`.
const FORWARD_QUEUE: usize = 10_000;

/// The `--bounce-to` state of a sent notification, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Forwarded {
    /// No `--bounce-to`.
    No = 0,
    /// Waiting or being retried.
    Pending = 1,
    /// Accepted by the target.
    Delivered = 2,
    /// Given up.
    Failed = 3,
}

/// A notification that was sent.
#[derive(Debug)]
pub struct Sent {
    /// What it was.
    pub notice: Notice,
    /// When it was made, on the clock.
    pub sent_ms: u64,
    /// Its bytes.
    pub raw: Bytes,
    /// Its id in `/api/messages`, if it could be stored.
    pub message_id: Option<u64>,
    forwarded: AtomicU8,
}

impl Sent {
    /// Its `--bounce-to` state.
    pub fn forwarded(&self) -> Forwarded {
        match self.forwarded.load(Ordering::Relaxed) {
            1 => Forwarded::Pending,
            2 => Forwarded::Delivered,
            3 => Forwarded::Failed,
            _ => Forwarded::No,
        }
    }
}

#[derive(Debug)]
struct State {
    schedule: Schedule,
    /// Room promised to messages not yet stored: (notices, bytes).
    reserved: (usize, usize),
    sent: VecDeque<Arc<Sent>>,
}

/// The bounce scheduler of one running failmail.
#[derive(Debug)]
pub struct Bounces {
    config: BounceConfig,
    clock: SharedClock,
    journal: Arc<Journal>,
    state: Mutex<State>,
    wake: Arc<Notify>,
    /// Passed on from `wake` by [`Bounces::run`]: a moved clock may end a `--bounce-to` retry
    /// wait.
    forward_wake: Notify,
    next_id: AtomicU64,
    sent_total: AtomicU64,
    refused_total: AtomicU64,
    forward_failed: AtomicU64,
    forward: Mutex<Option<mpsc::Sender<Job>>>,
}

/// Room kept for the notices of a message being stored; [`Reservation::commit`] schedules them
/// once it is, and dropping it gives the room back.
#[derive(Debug)]
pub struct Reservation {
    bounces: Arc<Bounces>,
    notices: Vec<Notice>,
    cost: (usize, usize),
    session: u64,
}

impl Bounces {
    /// A scheduler reading `clock`, storing what it sends in `journal`, woken through `wake`
    /// (the [`WakingClock`] built on the same clock notifies it).
    pub fn new(
        config: BounceConfig,
        clock: SharedClock,
        journal: Arc<Journal>,
        wake: Arc<Notify>,
    ) -> Arc<Self> {
        let schedule = Schedule::new(config.max_pending, config.max_bytes);
        Arc::new(Self {
            config,
            clock,
            journal,
            state: Mutex::new(State {
                schedule,
                reserved: (0, 0),
                sent: VecDeque::new(),
            }),
            wake,
            forward_wake: Notify::new(),
            next_id: AtomicU64::new(1),
            sent_total: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            forward_failed: AtomicU64::new(0),
            forward: Mutex::new(None),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plans `message`'s notices (as received by `hostname`, now on the clock) and keeps room
    /// for them. `Ok(None)` when it has none; [`Full`] when there is no room: the message must
    /// then be refused (451 4.3.0), not accepted with a notification that would never come.
    pub fn reserve(
        self: &Arc<Self>,
        message: &Message,
        hostname: &str,
    ) -> Result<Option<Reservation>, Full> {
        let arrival = plan::Arrival {
            arrival_ms: self.clock.now_ms(),
            hostname,
        };
        let notices = plan::notices(message, &arrival);
        if notices.is_empty() {
            return Ok(None);
        }
        let bytes = notices.iter().map(Schedule::cost).sum();
        let cost = (notices.len(), bytes);
        let mut state = self.state();
        if let Err(full) = state.schedule.room(cost.0, cost.1, state.reserved) {
            drop(state);
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            if let Some(events) = self.journal.events() {
                let kind = EventKind::BounceRefused {
                    pending: full.pending,
                };
                events.record(self.clock.now_ms(), message.session_id, [kind]);
            }
            return Err(full);
        }
        state.reserved.0 += cost.0;
        state.reserved.1 += cost.1;
        Ok(Some(Reservation {
            bounces: self.clone(),
            notices,
            cost,
            session: message.session_id,
        }))
    }

    /// Makes and sends every notification due now, earliest first, in batches; returns how
    /// many were sent.
    pub async fn send_due(&self) -> usize {
        let mut count = 0;
        loop {
            let made = self.make_due(BATCH);
            if made.is_empty() {
                return count;
            }
            count += made.len();
            for (notice, raw) in made {
                self.sent(notice, raw).await;
            }
        }
    }

    /// Takes up to `limit` notifications due now and makes their messages (no I/O: what the
    /// benchmark times).
    pub fn make_due(&self, limit: usize) -> Vec<(Notice, Vec<u8>)> {
        let due = self.state().schedule.take_due(self.clock.now_ms(), limit);
        due.into_iter()
            .map(|notice| {
                let raw = dsn::build(&notice);
                (notice, raw)
            })
            .collect()
    }

    /// Stores a made notification as a message to the envelope sender, keeps it for the API,
    /// records it, and hands it to `--bounce-to`.
    async fn sent(&self, notice: Notice, raw: Vec<u8>) {
        let raw = Bytes::from(raw);
        let to = notice.original.mail_from.clone();
        let message = Message {
            session_id: 0,
            queue_id: format!("bounce-{}", notice.id),
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            helo: None,
            auth_user: None,
            tls: false,
            mail_from: String::new(),
            recipients: vec![to.clone()],
            data: raw.clone(),
            dsn: None,
        };
        let message_id = match self.journal.deliver_marked(message, Some(notice.id)).await {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(%error, bounce = notice.id, "bounce could not be stored");
                None
            }
        };
        let forwarding = self.queue_forward(notice.id, &to, &raw);
        let now = self.clock.now_ms();
        if let (Some(events), Some(message_id)) = (self.journal.events(), message_id) {
            let kind = EventKind::BounceSent {
                bounce: notice.id,
                message_id,
                kind: notice.kind.as_str(),
                to,
            };
            events.record(now, 0, [kind]);
        }
        self.sent_total.fetch_add(1, Ordering::Relaxed);
        let sent = Arc::new(Sent {
            notice,
            sent_ms: now,
            raw,
            message_id,
            forwarded: AtomicU8::new(forwarding as u8),
        });
        let mut state = self.state();
        if state.sent.len() >= self.config.sent_capacity.max(1) {
            state.sent.pop_front();
        }
        state.sent.push_back(sent);
    }

    /// Queues a notification for `--bounce-to`, if set.
    fn queue_forward(&self, bounce: u64, to: &str, raw: &Bytes) -> Forwarded {
        let sender = self
            .forward
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(sender) = sender else {
            return Forwarded::No;
        };
        let job = Job {
            bounce,
            to: to.to_owned(),
            raw: raw.clone(),
        };
        if sender.try_send(job).is_err() {
            tracing::warn!(
                bounce,
                "the --bounce-to queue is full; this bounce is not delivered"
            );
            self.forward_failed.fetch_add(1, Ordering::Relaxed);
            return Forwarded::Failed;
        }
        Forwarded::Pending
    }

    /// Sends notifications as they come due, until the task is aborted; with `--bounce-to`,
    /// also delivers them there. `hostname` is what failmail says in EHLO to the target.
    pub async fn run(self: Arc<Self>, hostname: String) {
        // The delivering task ends with this one (aborted when the app stops).
        let _forwarding = self.config.forward.clone().map(|config| {
            let (sender, receiver) = mpsc::channel(FORWARD_QUEUE);
            *self.forward.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
            AbortOnDrop(tokio::spawn(
                self.clone().forward_loop(receiver, config, hostname),
            ))
        });
        loop {
            self.send_due().await;
            let now = self.clock.now_ms();
            let next = self.state().schedule.next_due();
            let nap = next.map_or(MAX_NAP, |at| {
                Duration::from_millis(at.saturating_sub(now)).min(MAX_NAP)
            });
            tokio::select! {
                () = self.wake.notified() => self.forward_wake.notify_one(),
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Waits `wait` on the clock, as the schedule does: on a wall clock the time passes by
    /// itself, and moving the clock forward (`POST /api/clock/advance`) past it ends the wait
    /// at once.
    async fn wait_on_clock(&self, wait: Duration) {
        let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let until = self.clock.now_ms().saturating_add(wait);
        loop {
            let now = self.clock.now_ms();
            if now >= until {
                return;
            }
            let nap = Duration::from_millis(until - now).min(MAX_NAP);
            tokio::select! {
                () = self.forward_wake.notified() => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn forward_loop(
        self: Arc<Self>,
        mut jobs: mpsc::Receiver<Job>,
        config: ForwardConfig,
        hostname: String,
    ) {
        let forwarder = Forwarder::new(&config, &hostname);
        let target = config.target();
        let attempts = config.attempts.max(1);
        while let Some(job) = jobs.recv().await {
            let mut wait = config.first_retry;
            let mut outcome = Forwarded::Failed;
            for attempt in 1..=attempts {
                let (ok, error, again) = match forwarder.attempt(&job).await {
                    Attempt::Delivered => (true, None, false),
                    Attempt::Retry(error) => (false, Some(error), attempt < attempts),
                    Attempt::Failed(error) => (false, Some(error), false),
                };
                match (&error, again) {
                    (Some(error), true) => {
                        tracing::warn!(bounce = job.bounce, %target, attempt, of = attempts, %error, retry_in = ?wait, "bounce not delivered to --bounce-to; retrying")
                    }
                    (Some(error), false) => {
                        tracing::error!(bounce = job.bounce, %target, attempt, of = attempts, %error, "bounce not delivered to --bounce-to; giving up")
                    }
                    (None, _) => {}
                }
                if let Some(events) = self.journal.events() {
                    let kind = EventKind::BounceForwarded {
                        bounce: job.bounce,
                        target: target.clone(),
                        attempt,
                        ok,
                        error,
                    };
                    events.record(self.clock.now_ms(), 0, [kind]);
                }
                if ok {
                    outcome = Forwarded::Delivered;
                    break;
                }
                if !again {
                    break;
                }
                self.wait_on_clock(wait).await;
                wait = wait.saturating_mul(2);
            }
            if outcome == Forwarded::Failed {
                self.forward_failed.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(sent) = self.state().sent.iter().find(|s| s.notice.id == job.bounce) {
                sent.forwarded.store(outcome as u8, Ordering::Relaxed);
            }
        }
    }

    /// The pending notifications (earliest first), then the sent ones kept (oldest first).
    pub fn list(&self) -> (Vec<Notice>, Vec<Arc<Sent>>) {
        let state = self.state();
        (
            state.schedule.iter().cloned().collect(),
            state.sent.iter().cloned().collect(),
        )
    }

    /// A sent notification kept for the API.
    pub fn sent_by_id(&self, id: u64) -> Option<Arc<Sent>> {
        self.state()
            .sent
            .iter()
            .find(|s| s.notice.id == id)
            .cloned()
    }

    /// Whether `id` is still pending.
    pub fn is_pending(&self, id: u64) -> bool {
        self.state().schedule.iter().any(|n| n.id == id)
    }

    /// Forgets every pending and sent notification (`POST /api/reset`, test isolation).
    pub fn clear(&self) {
        let mut state = self.state();
        state.schedule.clear();
        state.sent.clear();
    }

    /// The Prometheus lines of the scheduler's gauges and counters.
    pub fn metrics_text(&self) -> String {
        let (pending, bytes) = {
            let state = self.state();
            (state.schedule.len(), state.schedule.bytes())
        };
        let mut out = String::new();
        for (name, help, kind, value) in [
            (
                "failmail_bounces_pending",
                "Later notifications waiting for their time.",
                "gauge",
                pending as u64,
            ),
            (
                "failmail_bounces_pending_bytes",
                "Bytes the pending notifications hold.",
                "gauge",
                bytes as u64,
            ),
            (
                "failmail_bounces_sent_total",
                "Later notifications sent.",
                "counter",
                self.sent_total.load(Ordering::Relaxed),
            ),
            (
                "failmail_bounces_refused_total",
                "Messages refused (451) because too many notifications were pending.",
                "counter",
                self.refused_total.load(Ordering::Relaxed),
            ),
            (
                "failmail_bounces_forward_failed_total",
                "Notifications --bounce-to could not deliver.",
                "counter",
                self.forward_failed.load(Ordering::Relaxed),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out
    }
}

/// A task that is aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Reservation {
    /// The message was stored as `message_id`: its notices are scheduled.
    pub fn commit(mut self, message_id: u64) {
        let bounces = self.bounces.clone();
        let notices = std::mem::take(&mut self.notices);
        let now = bounces.clock.now_ms();
        let mut events = Vec::with_capacity(notices.len());
        {
            let mut state = bounces.state();
            for mut notice in notices {
                notice.id = bounces.next_id.fetch_add(1, Ordering::Relaxed);
                notice.message_id = message_id;
                events.push(EventKind::BounceScheduled {
                    bounce: notice.id,
                    message_id,
                    kind: notice.kind.as_str(),
                    to: notice.original.mail_from.clone(),
                    recipients: notice
                        .recipients
                        .iter()
                        .map(|r| r.recipient.clone())
                        .collect(),
                    due_at_ms: notice.due_ms,
                });
                state.schedule.insert(notice);
            }
        }
        if let Some(log) = bounces.journal.events() {
            log.record(now, self.session, events);
        }
        bounces.wake.notify_one();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.bounces.state();
        state.reserved.0 -= self.cost.0;
        state.reserved.1 -= self.cost.1;
    }
}
