//! `GET /api/events` (a page of the journal) and `GET /api/events/stream` (server-sent events).

use std::collections::VecDeque;
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
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use super::error::{json, ApiError, QueryParams};
use super::ApiState;
use crate::journal::brief::{leave_out_settled, Settler};
use crate::journal::event_json::write_u64;
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
/// At most one write per reader this often: events that come in the meantime wait and go out
/// together. While it waits, the reader is not woken by each new event, so a busy server pays a
/// slot in the channel per event, not a wake-up and a write; and a brief chunk sees most
/// transactions whole (its messages settle their commands). A tenth of a second is not seen on
/// a live page; the channel holds more than that of a busy server's brief events (about 80,000
/// a second). (A reader that falls behind by more than the channel holds in this time is told
/// what it missed, as always.)
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
    live: broadcast::Receiver<Arc<Event>>,
    backlog: VecDeque<Arc<Event>>,
    last_id: u64,
    /// What the reader wants (its `since` is 0: `last_id` moves on instead).
    filter: EventFilter,
    /// Whether each chunk leaves out the MAIL and RCPT commands its messages settle (`brief`),
    /// with what does it.
    settle: Option<Settler>,
    shutdown: Option<watch::Receiver<ShutdownState>>,
    /// When the last chunk was written, unless it was full (then more is ready: no wait).
    last_write: Option<tokio::time::Instant>,
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
    /// The reader fell behind and this many events were skipped (`last_id` is the last one sent).
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
                        ": lagged: {skipped} events were skipped; read them with GET \
                         /api/events?since={last_id}\n\n"
                    )
                    .as_bytes(),
                );
            }
        }
    }
}

impl Feed {
    /// The next item; `None` when the server shuts down.
    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.last_id = event.id;
                return Some(Item::Event(event));
            }
            let received = match &mut self.shutdown {
                Some(shutdown) => tokio::select! {
                    received = self.live.recv() => received,
                    _ = shutdown.changed() => return None,
                },
                None => self.live.recv().await,
            };
            match received {
                Ok(event) => match self.accept(event) {
                    Some(item) => return Some(item),
                    None => continue,
                },
                Err(RecvError::Lagged(skipped)) => return Some(self.lagged(skipped)),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The next item if one is ready now, without waiting.
    fn try_next(&mut self) -> Option<Item> {
        if let Some(event) = self.backlog.pop_front() {
            self.last_id = event.id;
            return Some(Item::Event(event));
        }
        loop {
            match self.live.try_recv() {
                Ok(event) => {
                    if let Some(item) = self.accept(event) {
                        return Some(item);
                    }
                }
                Err(TryRecvError::Lagged(skipped)) => return Some(self.lagged(skipped)),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            }
        }
    }

    /// A live event, unless it was already sent (from the backlog) or the reader's filter
    /// does not want it.
    fn accept(&mut self, event: Arc<Event>) -> Option<Item> {
        if event.id <= self.last_id || !self.filter.matches(&event) {
            return None;
        }
        self.last_id = event.id;
        Some(Item::Event(event))
    }

    fn lagged(&self, skipped: u64) -> Item {
        Item::Lagged {
            skipped,
            last_id: self.last_id,
        }
    }

    /// The next bytes to send: the next item and every other one ready by [`WRITE_INTERVAL`]
    /// after the last write (up to about [`CHUNK_BYTES`]), written at once; a keep-alive comment
    /// after [`KEEP_ALIVE`] without any; `None` at shutdown.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let first = match tokio::time::timeout(KEEP_ALIVE, self.next()).await {
            Ok(item) => item?,
            Err(_) => return Some(Bytes::from_static(b":\n\n")),
        };
        if let Some(last) = self.last_write {
            tokio::time::sleep_until(last + WRITE_INTERVAL).await;
        }
        let now = tokio::time::Instant::now();
        // Room for a full chunk; once the previous chunk has been sent, this takes its memory
        // back instead of allocating again.
        self.buffer.reserve(CHUNK_BYTES + 4096);
        let mut full = false;
        if let Some(mut settler) = self.settle.take() {
            // The chunk's events first, so that its messages settle their commands; its size
            // reckoned from the events as it goes (about what each writes).
            let mut items = vec![first];
            let mut size = 0;
            while size < CHUNK_BYTES {
                let Some(item) = self.try_next() else { break };
                size += item.size_hint();
                items.push(item);
            }
            full = size >= CHUNK_BYTES;
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
            for item in &items {
                item.write_sse(&mut self.buffer);
            }
            self.settle = Some(settler);
        } else {
            first.write_sse(&mut self.buffer);
            while !full {
                match self.try_next() {
                    Some(item) => item.write_sse(&mut self.buffer),
                    None => break,
                }
                full = self.buffer.len() >= CHUNK_BYTES;
            }
        }
        self.last_write = (!full).then_some(now);
        Some(self.buffer.split().freeze())
    }
}

/// `GET /api/events/stream`: every new event as one `data:` line of JSON (with `id:`); a lagging
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
    let since = query.since.or(resume);
    // Subscribe first, then read the backlog: nothing falls between the two (duplicates are
    // skipped by id).
    let filter = event_filter(
        query.session,
        query.kind,
        query.rule,
        query.catalog,
        query.brief,
    )?;
    let live = if filter.brief {
        log.subscribe_brief()
    } else {
        log.subscribe()
    };
    let (backlog, last_id) = match since {
        Some(since) => {
            let after = EventFilter {
                since,
                ..filter.clone()
            };
            (log.find(&after, usize::MAX, false).into(), since)
        }
        None => (VecDeque::new(), 0),
    };
    let feed = Feed {
        live,
        backlog,
        last_id,
        settle: filter.brief.then(Settler::default),
        // The brief channel carries brief events only: not checked again.
        filter: EventFilter {
            brief: false,
            ..filter
        },
        shutdown: shutdown.map(|Extension(ShutdownSignal(rx))| rx),
        last_write: None,
        buffer: BytesMut::new(),
    };
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

    fn feed(log: &EventLog, backlog: Vec<Arc<Event>>, last_id: u64, session: Option<u64>) -> Feed {
        Feed {
            live: log.subscribe(),
            backlog: backlog.into(),
            last_id,
            filter: EventFilter {
                session,
                ..EventFilter::default()
            },
            settle: None,
            shutdown: None,
            last_write: None,
            buffer: BytesMut::new(),
        }
    }

    fn ids(items: &[Item]) -> Vec<u64> {
        items
            .iter()
            .map(|i| i.event().map_or(0, |e| e.id))
            .collect()
    }

    #[tokio::test]
    async fn backlog_then_live_without_duplicates_and_filtered() {
        let log = EventLog::new(100);
        log.record(0, 1, [EventKind::TlsStarted, EventKind::TlsStarted]);
        let mut feed = feed(&log, log.list(None, 0, 100), 0, None);
        // Recorded after subscribing: comes live, and the backlog's ids are not repeated.
        log.record(0, 2, [EventKind::TlsStarted]);
        let mut items = Vec::new();
        for _ in 0..3 {
            items.push(feed.next().await.unwrap());
        }
        assert_eq!(ids(&items), [1, 2, 3]);

        let mut only_two = super::tests::feed(&log, Vec::new(), 0, Some(2));
        log.record(0, 1, [EventKind::TlsStarted]);
        log.record(0, 2, [EventKind::TlsStarted]);
        assert_eq!(ids(&[only_two.next().await.unwrap()]), [5]);
    }

    #[tokio::test]
    async fn a_lagging_reader_is_told_and_goes_on() {
        let log = EventLog::new(10);
        let mut feed = feed(&log, Vec::new(), 0, None);
        let capacity = EventLog::LIVE_CAPACITY as u64;
        for _ in 0..capacity + 76 {
            log.record(0, 1, [EventKind::TlsStarted]);
        }
        assert_eq!(
            feed.next().await,
            Some(Item::Lagged {
                skipped: 76,
                last_id: 0
            })
        );
        // Then the oldest event still in the channel, and on.
        assert_eq!(ids(&[feed.next().await.unwrap()]), [77]);
        log.record(0, 1, [EventKind::TlsStarted]);
        let mut last = 0;
        while let Some(Item::Event(e)) =
            tokio::time::timeout(Duration::from_millis(100), feed.next())
                .await
                .ok()
                .flatten()
        {
            last = e.id;
        }
        assert_eq!(last, capacity + 76 + 1);
    }

    #[tokio::test]
    async fn events_ready_together_are_written_together() {
        let log = EventLog::new(100);
        let mut feed = feed(&log, Vec::new(), 0, Some(1));
        log.record(0, 1, [EventKind::TlsStarted, EventKind::TlsStarted]);
        log.record(0, 2, [EventKind::TlsStarted]);
        log.record(0, 1, [EventKind::TlsStarted]);
        let chunk = feed.next_chunk().await.unwrap();
        let text = std::str::from_utf8(&chunk).unwrap();
        assert_eq!(text.matches("\n\n").count(), 3, "{text}");
        assert!(text.starts_with("id: 1\ndata: {\"id\":1,"), "{text}");
        assert!(!text.contains("id: 3\n"), "another session's event: {text}");
        assert!(text.contains("id: 4\ndata: "), "{text}");
    }

    #[tokio::test]
    async fn the_stream_ends_at_shutdown() {
        let log = EventLog::new(10);
        let (tx, rx) = watch::channel(ShutdownState::Running);
        let mut feed = feed(&log, Vec::new(), 0, None);
        feed.shutdown = Some(rx);
        tx.send(ShutdownState::Draining).unwrap();
        assert_eq!(feed.next().await, None);
    }
}
