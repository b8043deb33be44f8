//! `GET /api/events` (a page of the journal) and `GET /api/events/stream` (server-sent events).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::Response;
use axum::Extension;
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::error::{json, ApiError, QueryParams};
use super::ApiState;
use crate::journal::{Event, EventLog};
use crate::server::ShutdownState;

/// Events per page when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 1000;
/// Most events per page.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// `GET /api/events` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only this session's events.
    session: Option<u64>,
    /// Only events with a larger id.
    #[serde(default)]
    since: u64,
    /// At most this many (1 to 10000, default 1000).
    limit: Option<usize>,
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
        .hint(format!("page with since=<id of the last {what} you read>")));
    }
    Ok(limit)
}

/// `GET /api/events`: kept events, oldest first.
pub(crate) async fn list(
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit, "event")?;
    let log = journal(&state)?;
    let events = log.list(query.session, query.since, limit);
    Ok(json(
        StatusCode::OK,
        &Page {
            events: events.iter().map(|e| &**e).collect(),
            dropped: log.dropped(),
        },
    ))
}

/// `GET /api/events/stream` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Only this session's events.
    session: Option<u64>,
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
    session: Option<u64>,
    shutdown: Option<watch::Receiver<ShutdownState>>,
}

/// What a stream sends next.
#[derive(Debug, PartialEq)]
enum Item {
    /// An event.
    Event(Arc<Event>),
    /// The reader fell behind and this many events were skipped (`last_id` is the last one sent).
    Lagged { skipped: u64, last_id: u64 },
}

impl Item {
    fn into_sse(self) -> SseEvent {
        match self {
            Item::Event(event) => {
                let data = serde_json::to_string(&*event).unwrap_or_else(|_| "{}".to_owned());
                SseEvent::default().id(event.id.to_string()).data(data)
            }
            Item::Lagged { skipped, last_id } => SseEvent::default().comment(format!(
                "lagged: {skipped} events were skipped; read them with GET \
                 /api/events?since={last_id}"
            )),
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
                Ok(event) => {
                    if event.id <= self.last_id || self.session.is_some_and(|s| s != event.session)
                    {
                        continue;
                    }
                    self.last_id = event.id;
                    return Some(Item::Event(event));
                }
                Err(RecvError::Lagged(skipped)) => {
                    return Some(Item::Lagged {
                        skipped,
                        last_id: self.last_id,
                    });
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// `GET /api/events/stream`: every new event as one `data:` line of JSON (with `id:`); a lagging
/// reader gets a comment saying how many events it missed, and the stream goes on.
pub(crate) async fn stream(
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<StreamQuery>,
    shutdown: Option<Extension<ShutdownSignal>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let log = journal(&state)?;
    let since = match query.since {
        Some(since) => Some(since),
        None => match headers.get("last-event-id") {
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("Last-Event-ID must be an event id")
                            .hint("event ids are whole numbers")
                    })?,
            ),
            None => None,
        },
    };
    // Subscribe first, then read the backlog: nothing falls between the two (duplicates are
    // skipped by id).
    let live = log.subscribe();
    let (backlog, last_id) = match since {
        Some(since) => (log.list(query.session, since, usize::MAX).into(), since),
        None => (VecDeque::new(), 0),
    };
    let feed = Feed {
        live,
        backlog,
        last_id,
        session: query.session,
        shutdown: shutdown.map(|Extension(ShutdownSignal(rx))| rx),
    };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let item = feed.next().await?;
        Some((Ok(item.into_sse()), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
            session,
            shutdown: None,
        }
    }

    fn ids(items: &[Item]) -> Vec<u64> {
        items
            .iter()
            .map(|i| match i {
                Item::Event(e) => e.id,
                Item::Lagged { .. } => 0,
            })
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
        for _ in 0..1100 {
            log.record(0, 1, [EventKind::TlsStarted]);
        }
        assert_eq!(
            feed.next().await,
            Some(Item::Lagged {
                skipped: 1100 - 1024,
                last_id: 0
            })
        );
        // Then the oldest event still in the channel, and on.
        assert_eq!(ids(&[feed.next().await.unwrap()]), [1100 - 1024 + 1]);
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
        assert_eq!(last, 1101);
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
