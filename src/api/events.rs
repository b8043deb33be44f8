//! `GET /api/events` (a page of the journal) and `GET /api/events/stream` (server-sent events).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::error::{json, ApiError, QueryParams};
use super::ApiState;
use crate::journal::brief::{leave_out_settled, Settler};
use crate::journal::event_json::write_u64;
use crate::journal::tail::Tail;
use crate::journal::{Event, EventFilter, EventKind, EventLog, EVENT_TYPES};
use crate::server::ShutdownState;

/// Events per page when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 1000;
/// Most events per page.
pub(crate) const MAX_LIMIT: usize = 10_000;
/// A stream with nothing to send says so this often (an SSE comment), so that proxies and
/// readers know it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The events ready at once are written together, up to about this many bytes per write.
const CHUNK_BYTES: usize = 256 * 1024;
/// At most one read of the journal, and one write, per reader this often: events that come in
/// the meantime wait in the journal's ring and go out together. A busy server pays nothing per
/// event for a reader, and one wake-up and one write per reader a tenth of a second; a brief
/// chunk sees most transactions whole (its messages settle their commands). A tenth of a second
/// is not seen on a live page; the ring keeps far more than that (100,000 events by default;
/// a reader that falls behind by more is told what it missed).
const WRITE_INTERVAL: Duration = Duration::from_millis(100);

/// `GET /api/events` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only this session's events.
    session: Option<u64>,
    /// Only events of this type (`reply`, `command`, …).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Only the replies and silent decisions of this scenario rule (its name or index).
    rule: Option<String>,
    /// Only replies with this catalog name.
    catalog: Option<String>,
    /// Only what a list of sessions needs: no commands but HELO, EHLO, MAIL and RCPT, no reply
    /// below 400 that no rule or catalog entry chose; no MAIL or RCPT that a message settles.
    #[serde(default)]
    brief: bool,
    /// Only events with a larger id.
    #[serde(default)]
    since: u64,
    /// At most this many (1 to 10000, default 1000).
    limit: Option<usize>,
    /// `asc` (default): the oldest matching events first; `desc`: the newest first.
    #[serde(default)]
    order: Order,
}

/// The journal's filter from the query's fields; an unknown type is a 400 that lists the types.
fn event_filter(
    session: Option<u64>,
    kind: Option<String>,
    rule: Option<String>,
    catalog: Option<String>,
    brief: bool,
) -> Result<EventFilter, ApiError> {
    if let Some(kind) = kind.as_deref().filter(|k| !EVENT_TYPES.contains(k)) {
        return Err(
            ApiError::bad_request(format!("unknown event type {kind:?}"))
                .hint(format!("type is one of: {}", EVENT_TYPES.join(", "))),
        );
    }
    Ok(EventFilter {
        session,
        since: 0,
        kind,
        rule,
        catalog,
        brief,
    })
}

/// The order of a page.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

#[derive(Serialize)]
struct Page<'a> {
    events: Vec<&'a Event>,
    dropped: u64,
}

fn journal(state: &ApiState) -> Result<&Arc<EventLog>, ApiError> {
    state.journal.events().ok_or_else(|| {
        ApiError::conflict("this server records no events")
            .hint("it was started with --no-store; start it without to record events")
    })
}

/// A page's `limit` (default [`DEFAULT_LIMIT`]), or 400 when it is not from 1 to [`MAX_LIMIT`];
/// `what` names the items paged (`event`, `attempt`).
pub(crate) fn page_limit(limit: Option<usize>, what: &str) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {limit}"
        ))
        .hint(match what {
            "event" => "page with since=<id of the last event you read>, or order=desc for the \
                        latest"
                .to_owned(),
            _ => format!("page with since=<id of the last {what} you read>"),
        }));
    }
    Ok(limit)
}

/// `GET /api/events`: kept events that match the filters, oldest first (or newest first with
/// `order=desc`), at most `limit` (default 1000).
pub(crate) async fn list(
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit, "event")?;
    let filter = EventFilter {
        since: query.since,
        ..event_filter(
            query.session,
            query.kind,
            query.rule,
            query.catalog,
            query.brief,
        )?
    };
    let log = journal(&state)?;
    let newest_first = query.order == Order::Desc;
    let events = if filter.brief {
        // Which MAIL and RCPT commands a message settles is read in journal order, over every
        // kept event that matches; then the page is cut.
        let mut events = log.find(&filter, usize::MAX, false);
        leave_out_settled(&mut events, |e| Some(e));
        if newest_first {
            events.reverse();
        }
        events.truncate(limit);
        events
    } else {
        log.find(&filter, limit, newest_first)
    };
    Ok(json(
        StatusCode::OK,
        &Page {
            events: events.iter().map(|e| &**e).collect(),
            dropped: log.dropped_since_clear(),
        },
    ))
}

/// `GET /api/events/stream` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Only this session's events.
    session: Option<u64>,
    /// Only events of this type.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Only the replies and silent decisions of this scenario rule (its name or index).
    rule: Option<String>,
    /// Only replies with this catalog name.
    catalog: Option<String>,
    /// Only what a list of sessions needs: no commands but HELO, EHLO, MAIL and RCPT, no reply
    /// below 400 that no rule or catalog entry chose; no MAIL or RCPT that a message settles; a
    /// run of one session's messages in a chunk written as its last, `merged`.
    #[serde(default)]
    brief: bool,
    /// First replay the kept events with a larger id (else the `Last-Event-ID` header; else
    /// only new events are sent).
    since: Option<u64>,
}

/// The server's shutdown signal, so that streams end when the server stops.
#[derive(Clone)]
pub(crate) struct ShutdownSignal(pub watch::Receiver<ShutdownState>);

struct Feed {
    /// Where the reader is in the journal.
    tail: Tail,
    /// What the reader wants (its `since` is 0: the tail's cursor moves on instead).
    filter: EventFilter,
    /// Whether each chunk leaves out the MAIL and RCPT commands its messages settle (`brief`),
    /// with what does it.
    settle: Option<Settler>,
    shutdown: Option<watch::Receiver<ShutdownState>>,
    /// When the journal was last read, unless the chunk it made was full (then more is ready:
    /// no wait).
    last_read: Option<tokio::time::Instant>,
    /// When the last chunk (or keep-alive) was sent.
    last_sent: tokio::time::Instant,
    /// The first chunk, sent at once: a comment naming the journal's run.
    greeting: Option<Bytes>,
    /// The events of the chunk being made (one allocation, reused).
    events: Vec<Arc<Event>>,
    /// Where chunks are written (one allocation, reused from chunk to chunk).
    buffer: BytesMut,
}

/// What a stream sends next.
#[derive(Debug, PartialEq)]
enum Item {
    /// An event.
    Event(Arc<Event>),
    /// The last of a run of one session's `message` events read together (brief streams), with
    /// how many they were and every recipient they named.
    Merged {
        event: Arc<Event>,
        messages: usize,
        rcpts: Vec<String>,
    },
    /// The reader fell behind and this many events, after `last_id`, fell out of the ring
    /// before it read them.
    Lagged { skipped: u64, last_id: u64 },
}

impl Item {
    /// The event, if the item is one.
    fn event(&self) -> Option<&Event> {
        match self {
            Item::Event(event) | Item::Merged { event, .. } => Some(event),
            Item::Lagged { .. } => None,
        }
    }

    /// About how many bytes the item writes, to bound a chunk before it is written.
    fn size_hint(&self) -> usize {
        match self {
            Item::Event(event) | Item::Merged { event, .. } => match &event.kind {
                EventKind::Message { rcpts, .. } => {
                    200 + rcpts.iter().map(|r| r.len() + 3).sum::<usize>()
                }
                EventKind::Command { line } => 100 + line.len(),
                _ => 200,
            },
            Item::Lagged { .. } => 100,
        }
    }

    /// Appends the item as one SSE message: `id:` and `data:` (one line of JSON) for an event,
    /// a `:` comment for a lag notice.
    fn write_sse(&self, out: &mut BytesMut) {
        match self {
            Item::Event(event) => {
                out.put_slice(b"id: ");
                write_u64(out, event.id);
                out.put_slice(b"\ndata: ");
                event.write_json(out);
                out.put_slice(b"\n\n");
            }
            Item::Merged {
                event,
                messages,
                rcpts,
            } => {
                out.put_slice(b"id: ");
                write_u64(out, event.id);
                out.put_slice(b"\ndata: ");
                event.write_json_merged(out, *messages, rcpts);
                out.put_slice(b"\n\n");
            }
            Item::Lagged { skipped, last_id } => {
                out.put_slice(
                    format!(
                        ": lagged: {skipped} events were skipped: recorded after event \
                         {last_id}, they were no longer kept when this reader got to them \
                         (--keep-events)\n\n"
                    )
                    .as_bytes(),
                );
            }
        }
    }
}

/// Kept events looked at per hold of the journal's lock (a chunk goes past [`CHUNK_BYTES`] by at
/// most one batch's events).
const SCAN_BATCH: usize = 128;

impl Feed {
    fn new(
        log: Arc<EventLog>,
        since: Option<u64>,
        filter: EventFilter,
        shutdown: Option<watch::Receiver<ShutdownState>>,
    ) -> Self {
        let log_run = log.run();
        Self {
            tail: Tail::new(log, since),
            settle: filter.brief.then(Settler::default),
            filter,
            shutdown,
            last_read: None,
            last_sent: tokio::time::Instant::now(),
            greeting: Some(Bytes::from(format!(": journal {}\n\n", log_run))),
            events: Vec::new(),
            buffer: BytesMut::new(),
        }
    }

    /// Returns when the journal has events the reader has not read (`Some(true)`), when
    /// [`KEEP_ALIVE`] has passed since the last chunk (`Some(false)`), or at shutdown (`None`).
    async fn wait(&mut self) -> Option<bool> {
        let stopping = |s: &watch::Receiver<ShutdownState>| *s.borrow() != ShutdownState::Running;
        if self.shutdown.as_ref().is_some_and(stopping) {
            return None;
        }
        if self.tail.has_new() {
            return Some(true);
        }
        let keep_alive = tokio::time::sleep_until(self.last_sent + KEEP_ALIVE);
        let shutdown = async {
            match &mut self.shutdown {
                Some(shutdown) => {
                    let _ = shutdown.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.tail.wait() => Some(true),
            () = keep_alive => Some(false),
            () = shutdown => None,
        }
    }

    /// The items of one chunk: what the reader wants of the events after its cursor, up to
    /// about [`CHUNK_BYTES`] (a lag notice first, if events fell out of the ring before it got
    /// to them); and whether the chunk is full (more is ready).
    fn read_chunk(&mut self) -> (Vec<Item>, bool) {
        let mut items = Vec::new();
        let mut size = 0;
        while size < CHUNK_BYTES {
            let from = self.tail.cursor();
            let filter = &self.filter;
            let read = self
                .tail
                .read(SCAN_BATCH, |e| filter.matches(e), &mut self.events);
            if read.skipped > 0 {
                items.push(Item::Lagged {
                    skipped: read.skipped,
                    last_id: from,
                });
            }
            for event in self.events.drain(..) {
                let item = Item::Event(event);
                size += item.size_hint();
                items.push(item);
            }
            if read.scanned < SCAN_BATCH {
                break;
            }
        }
        (items, size >= CHUNK_BYTES)
    }

    /// The next bytes to send: every wanted event recorded by [`WRITE_INTERVAL`] after the last
    /// read (up to about [`CHUNK_BYTES`]), written at once; a keep-alive comment after
    /// [`KEEP_ALIVE`] without any; `None` at shutdown.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(greeting) = self.greeting.take() {
            return Some(greeting);
        }
        loop {
            if !self.wait().await? {
                self.last_sent = tokio::time::Instant::now();
                return Some(Bytes::from_static(b":\n\n"));
            }
            if let Some(last) = self.last_read {
                tokio::time::sleep_until(last + WRITE_INTERVAL).await;
            }
            let now = tokio::time::Instant::now();
            let (mut items, full) = self.read_chunk();
            self.last_read = (!full).then_some(now);
            if items.is_empty() {
                // Nothing this reader wants: wait again, saying it is alive now and then (a busy
                // server keeps it from waiting long enough to say so there).
                if now >= self.last_sent + KEEP_ALIVE {
                    self.last_sent = now;
                    return Some(Bytes::from_static(b":\n\n"));
                }
                continue;
            }
            if let Some(settler) = &mut self.settle {
                let merged = |item: &mut Item, messages, rcpts| {
                    if let Item::Event(event) = item {
                        *item = Item::Merged {
                            event: event.clone(),
                            messages,
                            rcpts,
                        };
                    }
                };
                settler.run(&mut items, Item::event, Some(merged));
            }
            // Room for a full chunk; once the previous chunk has been sent, this takes its
            // memory back instead of allocating again.
            self.buffer.reserve(CHUNK_BYTES + 4096);
            for item in &items {
                item.write_sse(&mut self.buffer);
            }
            self.last_sent = now;
            return Some(self.buffer.split().freeze());
        }
    }
}

/// `GET /api/events/stream`: first a comment naming the journal's run (`: journal <run>`, new at
/// each start of the server), then every new event as one `data:` line of JSON (with `id:`); a lagging
/// reader gets a comment saying how many events it missed, and the stream goes on. The events
/// ready at once are written together (a busy server sends one write per batch, not per event).
pub(crate) async fn stream(
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<StreamQuery>,
    shutdown: Option<Extension<ShutdownSignal>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let log = journal(&state)?;
    // A malformed header is refused whether or not `since` is given, so that a client never
    // resumes from somewhere it did not ask for.
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be an event id")
                        .hint("event ids are whole numbers")
                })?,
        ),
        None => None,
    };
    // An id beyond every id recorded comes from an earlier run of the server (a page
    // reconnecting after a restart): this run's events are read from the start, and the reader
    // sees by their ids that the server started over.
    let since = query
        .since
        .or(resume)
        .map(|since| if since > log.recorded() { 0 } else { since });
    let filter = event_filter(
        query.session,
        query.kind,
        query.rule,
        query.catalog,
        query.brief,
    )?;
    if log.capacity() == 0 {
        return Err(
            ApiError::conflict("this server keeps no events to stream").hint(
                "a live reader reads the kept events; start failmail with --keep-events above 0",
            ),
        );
    }
    let feed = Feed::new(
        log.clone(),
        since,
        filter,
        shutdown.map(|Extension(ShutdownSignal(rx))| rx),
    );
    let chunks = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), feed))
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::EventKind;

    fn feed(log: &Arc<EventLog>, since: Option<u64>, session: Option<u64>) -> Feed {
        let filter = EventFilter {
            session,
            ..EventFilter::default()
        };
        let mut feed = Feed::new(log.clone(), since, filter, None);
        assert_eq!(
            feed.greeting.take(),
            Some(Bytes::from(format!(": journal {}\n\n", log.run())))
        );
        feed
    }

    /// The ids of the events in an SSE chunk, in order (0 for a comment).
    fn ids(chunk: &[u8]) -> Vec<u64> {
        std::str::from_utf8(chunk)
            .unwrap()
            .split_terminator("\n\n")
            .map(|m| {
                m.strip_prefix("id: ")
                    .and_then(|m| m.split('\n').next())
                    .map_or(0, |id| id.parse().unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn kept_events_then_new_ones_filtered() {
        let log = Arc::new(EventLog::new(100));
        log.record(0, 1, [EventKind::TlsStarted, EventKind::TlsStarted]);
        let mut replay = feed(&log, Some(0), None);
        let mut only_new = feed(&log, None, None);
        let mut only_two = feed(&log, None, Some(2));
        log.record(0, 2, [EventKind::TlsStarted]);
        assert_eq!(ids(&replay.next_chunk().await.unwrap()), [1, 2, 3]);
        assert_eq!(ids(&only_new.next_chunk().await.unwrap()), [3]);
        log.record(0, 1, [EventKind::TlsStarted]);
        log.record(0, 2, [EventKind::TlsStarted]);
        assert_eq!(ids(&only_two.next_chunk().await.unwrap()), [3, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_reader_is_woken_and_writes_once_per_interval() {
        let log = Arc::new(EventLog::new(100));
        let mut feed = feed(&log, None, None);
        let reader = tokio::spawn(async move {
            let mut chunks = Vec::new();
            for _ in 0..2 {
                chunks.push(ids(&feed.next_chunk().await.unwrap()));
            }
            chunks
        });
        tokio::task::yield_now().await;
        log.record(0, 1, [EventKind::TlsStarted]);
        tokio::task::yield_now().await;
        // Recorded within the interval after the first write: they wait for it, and go out
        // together.
        for _ in 0..3 {
            log.record(0, 1, [EventKind::TlsStarted]);
            tokio::time::advance(WRITE_INTERVAL / 4).await;
        }
        tokio::time::advance(WRITE_INTERVAL).await;
        assert_eq!(reader.await.unwrap(), [vec![1], vec![2, 3, 4]]);
    }

    #[tokio::test]
    async fn a_lagging_reader_is_told_and_goes_on() {
        let log = Arc::new(EventLog::new(10));
        let mut feed = feed(&log, Some(0), None);
        for _ in 0..86 {
            log.record(0, 1, [EventKind::TlsStarted]);
        }
        let chunk = feed.next_chunk().await.unwrap();
        let text = std::str::from_utf8(&chunk).unwrap();
        assert!(
            text.starts_with(": lagged: 76 events were skipped: recorded after event 0,"),
            "{text}"
        );
        assert_eq!(ids(&chunk), [0, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86]);
        feed.last_read = None;
        log.record(0, 1, [EventKind::TlsStarted]);
        assert_eq!(ids(&feed.next_chunk().await.unwrap()), [87]);
    }

    #[tokio::test]
    async fn a_chunk_is_bounded_and_the_rest_follows_at_once() {
        let log = Arc::new(EventLog::new(100_000));
        let line = "x".repeat(1000);
        for _ in 0..1000 {
            log.record(0, 1, [EventKind::Command { line: line.clone() }]);
        }
        let mut feed = feed(&log, Some(0), None);
        let first = feed.next_chunk().await.unwrap();
        let most = CHUNK_BYTES + SCAN_BATCH * 1100;
        assert!(
            (CHUNK_BYTES - 1000 * 100..most).contains(&first.len()),
            "{}",
            first.len()
        );
        // Full: the next is read without waiting for the interval.
        assert_eq!(feed.last_read, None);
        let mut seen = ids(&first);
        while seen.len() < 1000 {
            seen.extend(ids(&feed.next_chunk().await.unwrap()));
        }
        assert_eq!(seen, (1..=1000).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn the_stream_ends_at_shutdown_even_with_events_to_send() {
        let log = Arc::new(EventLog::new(10));
        let (tx, rx) = watch::channel(ShutdownState::Running);
        // One reader waits (it wants none of the events), one has events to send.
        let mut idle = feed(&log, None, Some(99));
        idle.shutdown = Some(rx.clone());
        let waiting = tokio::spawn(async move { idle.next_chunk().await });
        let mut busy = feed(&log, Some(0), None);
        busy.shutdown = Some(rx);
        log.record(0, 1, [EventKind::TlsStarted]);
        assert_eq!(ids(&busy.next_chunk().await.unwrap()), [1]);
        log.record(0, 1, [EventKind::TlsStarted]);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        tx.send(ShutdownState::Draining).unwrap();
        assert_eq!(busy.next_chunk().await, None);
        assert_eq!(waiting.await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_wants_none_of_a_busy_servers_events_is_kept_alive() {
        let log = Arc::new(EventLog::new(1000));
        let mut feed = feed(&log, None, Some(2));
        let reader = tokio::spawn(async move { feed.next_chunk().await });
        for _ in 0..200 {
            log.record(0, 1, [EventKind::TlsStarted]);
            tokio::time::advance(WRITE_INTERVAL).await;
            if reader.is_finished() {
                break;
            }
        }
        assert!(reader.is_finished(), "no keep-alive in 20 s");
        assert_eq!(&reader.await.unwrap().unwrap()[..], b":\n\n");
    }
}
