//! Counters for `GET /metrics`, in Prometheus text format. Lock-free: atomics only.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the reply latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] =
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The main counters at one moment, for a live view (totals since the start; a reader takes the
/// differences between two snapshots for rates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// SMTP sessions started.
    pub sessions: u64,
    /// SMTP sessions open now.
    pub sessions_open: u64,
    /// Messages accepted.
    pub messages: u64,
    /// Replies sent with a 4xx code.
    pub replies_4xx: u64,
    /// Replies sent with a 5xx code.
    pub replies_5xx: u64,
    /// Refusals by a rate or connection limit.
    pub limit_refusals: u64,
}

/// Everything counted.
#[derive(Debug)]
pub struct Metrics {
    sessions: AtomicU64,
    open_sessions: AtomicU64,
    replies: Vec<AtomicU64>,
    messages: AtomicU64,
    message_bytes: AtomicU64,
    limit_refusals: AtomicU64,
    tls_ok: AtomicU64,
    tls_failed: AtomicU64,
    /// Reply latency, in nanoseconds.
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sessions: AtomicU64::new(0),
            open_sessions: AtomicU64::new(0),
            replies: (0..600).map(|_| AtomicU64::new(0)).collect(),
            messages: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
            limit_refusals: AtomicU64::new(0),
            tls_ok: AtomicU64::new(0),
            tls_failed: AtomicU64::new(0),
            latency: Histogram::new(&LATENCY_BUCKETS, 1e9),
        }
    }
}

fn add(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Metrics {
    /// A session started.
    pub fn session_opened(&self) {
        add(&self.sessions, 1);
        add(&self.open_sessions, 1);
    }

    /// A session ended.
    pub fn session_closed(&self) {
        self.open_sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// A reply with this code was sent `times` times.
    pub fn replies_sent(&self, code: u16, times: u32) {
        if let Some(counter) = self.replies.get(usize::from(code)) {
            add(counter, u64::from(times));
        }
    }

    /// A message was accepted.
    pub fn message_accepted(&self, bytes: usize) {
        add(&self.messages, 1);
        add(&self.message_bytes, bytes as u64);
    }

    /// A rate limit or connection limit refused something, `times` times.
    pub fn limit_refused(&self, times: u32) {
        add(&self.limit_refusals, u64::from(times));
    }

    /// A TLS handshake ended.
    pub fn tls_handshake(&self, ok: bool) {
        add(if ok { &self.tls_ok } else { &self.tls_failed }, 1);
    }

    /// Time from reading a batch of commands to having written its replies.
    pub fn reply_latency(&self, elapsed: Duration) {
        self.latency.observe(elapsed.as_nanos() as u64);
    }

    /// The main counters now (a few hundred relaxed loads: cheap enough to take every second).
    pub fn counters(&self) -> Counters {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let class = |range: std::ops::Range<usize>| self.replies[range].iter().map(load).sum();
        Counters {
            sessions: load(&self.sessions),
            sessions_open: load(&self.open_sessions),
            messages: load(&self.messages),
            replies_4xx: class(400..500),
            replies_5xx: class(500..600),
            limit_refusals: load(&self.limit_refusals),
        }
    }

    /// Replies sent with this code.
    pub fn replies_with_code(&self, code: u16) -> u64 {
        self.replies
            .get(usize::from(code))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition (format 0.0.4). `extra` adds gauges from elsewhere.
    pub fn render(&self, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        self.render_totals(&mut out, extra);
        self.render_tls(&mut out);
        self.render_replies(&mut out);
        self.latency.render(
            &mut out,
            "failmail_reply_latency_seconds",
            "Time from reading commands to writing their replies.",
        );
        out
    }

    /// The single-value metrics: sessions, messages, limit refusals, then `extra`.
    fn render_totals(&self, out: &mut String, extra: &[(&str, &str, u64)]) {
        let totals = [
            (
                "failmail_sessions_total",
                "SMTP sessions started.",
                &self.sessions,
                "counter",
            ),
            (
                "failmail_sessions_open",
                "SMTP sessions open now.",
                &self.open_sessions,
                "gauge",
            ),
            (
                "failmail_messages_total",
                "Messages accepted.",
                &self.messages,
                "counter",
            ),
            (
                "failmail_message_bytes_total",
                "Octets of accepted messages.",
                &self.message_bytes,
                "counter",
            ),
            (
                "failmail_limit_refusals_total",
                "Refusals by rate or connection limits.",
                &self.limit_refusals,
                "counter",
            ),
        ];
        for (name, help, value, kind) in totals {
            single(out, name, help, get(value), kind);
        }
        for (name, help, value) in extra {
            single(out, name, help, *value, "counter");
        }
    }

    /// TLS handshakes, by result.
    fn render_tls(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP failmail_tls_handshakes_total TLS handshakes by result.\n# TYPE failmail_tls_handshakes_total counter");
        let _ = writeln!(
            out,
            "failmail_tls_handshakes_total{{result=\"ok\"}} {}",
            get(&self.tls_ok)
        );
        let _ = writeln!(
            out,
            "failmail_tls_handshakes_total{{result=\"error\"}} {}",
            get(&self.tls_failed)
        );
    }

    /// Replies by code and class; codes never sent are left out.
    fn render_replies(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP failmail_replies_total SMTP replies sent, by code and class.\n# TYPE failmail_replies_total counter");
        for (code, value) in self.replies.iter().enumerate() {
            let value = get(value);
            if value > 0 {
                let _ = writeln!(
                    out,
                    "failmail_replies_total{{code=\"{code}\",class=\"{}xx\"}} {value}",
                    code / 100
                );
            }
        }
    }
}

/// A counter's current value, for rendering.
fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A Prometheus histogram of values observed one at a time: lock-free buckets, sum and count.
/// Values are observed in whole units (nanoseconds, attempts) and shown divided by `scale`.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, in shown units.
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum: AtomicU64,
    /// Observed units per shown unit (1e9 for nanoseconds shown as seconds).
    scale: f64,
}

impl Histogram {
    /// A histogram with these bucket bounds (shown units), observing `scale` units per shown
    /// unit.
    pub fn new(bounds: &'static [f64], scale: f64) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    /// Counts one value, in observed units.
    pub fn observe(&self, units: u64) {
        let value = units as f64 / self.scale;
        if let Some(bucket) = self.bounds.iter().position(|b| value <= *b) {
            add(&self.buckets[bucket], 1);
        }
        add(&self.count, 1);
        add(&self.sum, units);
    }

    /// Values observed so far.
    pub fn count(&self) -> u64 {
        get(&self.count)
    }

    /// The exposition: HELP and TYPE, cumulative buckets, sum and count.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += get(bucket);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = get(&self.count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", get(&self.sum) as f64 / self.scale);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// One metric with a single value: its HELP and TYPE lines, then the value.
pub(crate) fn single(out: &mut String, name: &str, help: &str, value: u64, kind: &str) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_replies_by_code_and_renders() {
        let metrics = Metrics::default();
        metrics.replies_sent(250, 1);
        metrics.replies_sent(550, 1);
        metrics.reply_latency(Duration::from_micros(300));
        metrics.reply_latency(Duration::from_secs(10));
        assert_eq!(metrics.replies_with_code(250), 1);
        assert_eq!(metrics.replies_with_code(550), 1);
        let text = metrics.render(&[("failmail_events_dropped_total", "Events dropped.", 3)]);
        assert!(
            text.contains("failmail_replies_total{code=\"550\",class=\"5xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("failmail_reply_latency_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("failmail_reply_latency_seconds_bucket{le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(text.contains("failmail_events_dropped_total 3"), "{text}");
    }
}
