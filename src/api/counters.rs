//! `GET /api/counters/stream`: the main counters (sessions, messages, 4xx and 5xx replies, limit
//! refusals) once a second as server-sent events, for a live chart of rates during a load test.
//!
//! Unlike the event stream, this never falls behind and works with `--no-store`: each reader
//! gets a fresh snapshot when its next tick comes, and a reader that does not read simply gets
//! no new ticks (nothing is queued for it: the stream makes its next item only when asked).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Extension;
use futures_util::stream::Stream;
use serde::Serialize;
use tokio::time::MissedTickBehavior;

use super::events::ShutdownSignal;
use super::ApiState;
use crate::journal::Counters;

/// How often a snapshot is sent.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct Tick {
    /// When, in ms since the epoch on the server's clock.
    at_ms: u64,
    #[serde(flatten)]
    counters: Counters,
}

/// `GET /api/counters/stream`: a snapshot at once, then one a second until shutdown.
pub(crate) async fn stream(
    State(state): State<ApiState>,
    shutdown: Option<Extension<ShutdownSignal>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut ticker = tokio::time::interval(PERIOD);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let shutdown = shutdown.map(|Extension(ShutdownSignal(rx))| rx);
    let ticks = futures_util::stream::unfold(
        (ticker, shutdown, state),
        |(mut ticker, mut shutdown, state)| async move {
            match &mut shutdown {
                Some(signal) => tokio::select! {
                    _ = ticker.tick() => {}
                    _ = signal.changed() => return None,
                },
                None => {
                    ticker.tick().await;
                }
            }
            let tick = Tick {
                at_ms: state.clock.now_ms(),
                counters: state.journal.metrics().counters(),
            };
            let data = serde_json::to_string(&tick).unwrap_or_else(|_| "{}".to_owned());
            Some((
                Ok(SseEvent::default().data(data)),
                (ticker, shutdown, state),
            ))
        },
    );
    Sse::new(ticks).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
